//! How the delivered log's files are framed: a fixed header, then frames of
//! `[length u32 LE][CRC32C of the body u32 LE][body]`. A frame holds many records (one
//! verdict's in a segment, up to [`CHUNK`] bytes of them in a snapshot), so the framing
//! costs next to nothing per record and a torn write costs at most one frame.

use std::io::{self, Write};

/// The first bytes of every file of the log; the last byte is the layout's version.
pub const MAGIC: [u8; 8] = *b"SLUICDL\x01";
/// Bytes of a frame before its body.
pub const FRAME_HEAD: usize = 8;
/// A snapshot's frames hold about this many bytes of records.
pub const CHUNK: usize = 64 * 1024;
/// No frame is larger: a length beyond it is damage, not a frame.
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Writes one frame holding `body`, which is never empty: a frame of length and checksum
/// zero is what a file system leaves after a power cut, so the reader takes it for one.
pub fn write_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    debug_assert!(!body.is_empty(), "an empty frame reads as a torn write");
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::other("a frame of the delivered log is too large"))?;
    let mut head = [0u8; FRAME_HEAD];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.write_all(&head)?;
    out.write_all(body)
}

/// What reading a file's frames found past its last good frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The file ends exactly after a frame.
    Clean,
    /// The file ends inside its last frame, or its last frame fails its checksum with
    /// nothing after it (or only zeros, as a file system may leave after a power cut):
    /// a write cut short by a crash. `offset` is where the good frames end.
    Torn { offset: u64 },
    /// A frame fails its checksum (or declares an impossible length) with data after it:
    /// the file was damaged, not cut short.
    Damaged { offset: u64, what: String },
}

/// The frames of one file's bytes (after checking its magic), and how the file ends.
pub struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
    pub ending: Ending,
}

impl<'a> Frames<'a> {
    /// `None` when `bytes` does not start with [`MAGIC`] (an empty file counts as torn
    /// at 0: a crash between its creation and its header).
    pub fn new(bytes: &'a [u8]) -> Result<Frames<'a>, Ending> {
        if bytes.len() < MAGIC.len() {
            if MAGIC.starts_with(bytes) {
                return Err(Ending::Torn { offset: 0 });
            }
            return Err(Ending::Damaged {
                offset: 0,
                what: "not a file of Sluice's delivered log".into(),
            });
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(Ending::Damaged {
                offset: 0,
                what: if bytes[..MAGIC.len() - 1] == MAGIC[..MAGIC.len() - 1] {
                    format!(
                        "written in layout {} of the delivered log, which this Sluice does not read",
                        bytes[MAGIC.len() - 1]
                    )
                } else {
                    "not a file of Sluice's delivered log".into()
                },
            });
        }
        Ok(Frames {
            bytes,
            at: MAGIC.len(),
            ending: Ending::Clean,
        })
    }
}

impl Frames<'_> {
    /// Where the next frame starts.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.ending != Ending::Clean || self.at == self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.at..];
        let offset = self.at as u64;
        let torn = Ending::Torn { offset };
        if rest.len() < FRAME_HEAD {
            self.ending = torn;
            return None;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        let after = rest.len() - FRAME_HEAD;
        if len > MAX_FRAME {
            self.ending = if only_zeros(rest) {
                torn
            } else {
                Ending::Damaged {
                    offset,
                    what: format!("a frame declares {len} bytes"),
                }
            };
            return None;
        }
        if len > after {
            // Cut short: the crash came while this frame was being written.
            self.ending = torn;
            return None;
        }
        let body = &rest[FRAME_HEAD..FRAME_HEAD + len];
        if crc32c::crc32c(body) != crc || (len == 0 && crc == 0) {
            let tail = &rest[FRAME_HEAD + len..];
            self.ending = if only_zeros(tail) {
                torn
            } else {
                Ending::Damaged {
                    offset,
                    what: "a frame fails its checksum".into(),
                }
            };
            return None;
        }
        self.at += FRAME_HEAD + len;
        Some(body)
    }
}

fn only_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for body in bodies {
            write_frame(&mut out, body).unwrap();
        }
        out
    }

    fn read(bytes: &[u8]) -> (Vec<Vec<u8>>, Ending) {
        let mut frames = Frames::new(bytes).unwrap();
        let bodies = frames.by_ref().map(<[u8]>::to_vec).collect();
        (bodies, frames.ending)
    }

    #[test]
    fn frames_read_back_as_written() {
        let bytes = file(&[b"one", b"two", b"three"]);
        assert_eq!(
            read(&bytes),
            (
                vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()],
                Ending::Clean
            )
        );
    }

    #[test]
    fn a_last_frame_cut_short_is_torn_where_the_good_frames_end() {
        let good = file(&[b"one"]);
        let whole = file(&[b"one", b"two two two"]);
        for cut in good.len() + 1..whole.len() {
            let (bodies, ending) = read(&whole[..cut]);
            assert_eq!(bodies, [b"one".to_vec()], "cut at {cut}");
            assert_eq!(
                ending,
                Ending::Torn {
                    offset: good.len() as u64
                }
            );
        }
    }

    #[test]
    fn zeros_after_the_last_frame_are_a_torn_write() {
        let mut bytes = file(&[b"one"]);
        let end = bytes.len() as u64;
        bytes.extend([0u8; 100]);
        assert_eq!(read(&bytes).1, Ending::Torn { offset: end });
    }

    #[test]
    fn a_flipped_byte_with_frames_after_it_is_damage() {
        let mut bytes = file(&[b"one", b"two", b"three"]);
        let second = MAGIC.len() + FRAME_HEAD + 3;
        bytes[second + FRAME_HEAD] ^= 0x40;
        let (bodies, ending) = read(&bytes);
        assert_eq!(bodies, [b"one".to_vec()]);
        assert_eq!(
            ending,
            Ending::Damaged {
                offset: second as u64,
                what: "a frame fails its checksum".into()
            }
        );
    }

    #[test]
    fn a_file_of_another_layout_or_kind_is_refused() {
        let mut other = file(&[b"x"]);
        other[MAGIC.len() - 1] = 9;
        assert!(
            matches!(Frames::new(&other), Err(Ending::Damaged { what, .. }) if what.contains("layout 9"))
        );
        assert!(matches!(
            Frames::new(b"{\"json\": true}"),
            Err(Ending::Damaged { .. })
        ));
        assert!(matches!(
            Frames::new(&MAGIC[..3]),
            Err(Ending::Torn { offset: 0 })
        ));
    }

    proptest! {
        /// Whatever a crash leaves (any prefix of a file), reading never panics, returns
        /// only frames that were written, in order, and calls the rest torn.
        #[test]
        fn any_prefix_reads_as_good_frames_then_torn(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let whole = file(&refs);
            let cut = MAGIC.len() + cut.index(whole.len() - MAGIC.len() + 1);
            let (read_bodies, ending) = read(&whole[..cut]);
            prop_assert_eq!(&read_bodies[..], &bodies[..read_bodies.len()]);
            if cut == whole.len() {
                prop_assert_eq!(ending, Ending::Clean);
                prop_assert_eq!(read_bodies.len(), bodies.len());
            } else {
                // A cut at a frame's end reads as a shorter clean file.
                let read_len: usize = read_bodies.iter().map(|b| FRAME_HEAD + b.len()).sum();
                let clean = MAGIC.len() + read_len == cut;
                let expected = if clean { Ending::Clean } else { Ending::Torn { offset: (MAGIC.len() + read_len) as u64 } };
                prop_assert_eq!(ending, expected);
            }
        }

        /// Arbitrary bytes after the magic never panic the reader.
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(tail);
            let _ = read(&bytes);
        }
    }
}
