//! How the delivered log's files are framed: a fixed header, then frames of
//! `[length u32 LE][CRC32C of the body u32 LE][body]`. A frame holds many records (one
//! verdict's in a segment, up to [`CHUNK`] bytes of them in a snapshot), so the framing
//! costs next to nothing per record and a torn write costs at most one frame.

use std::io::{self, Read, Write};

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

/// The frames of one file, read as a stream (a snapshot of ten million records is read
/// through a small buffer, never held whole), and how the file ends.
pub struct Frames<R> {
    input: R,
    /// Bytes of the file not read yet.
    left: u64,
    /// Where the next frame starts.
    at: u64,
    body: Vec<u8>,
    pub ending: Ending,
}

impl<R: Read> Frames<R> {
    /// Checks the magic of a file of `len` bytes; `Err` with how it ends when it is not
    /// one (an empty or shorter file counts as torn at 0: a crash between its creation and
    /// its header).
    pub fn new(mut input: R, len: u64) -> io::Result<Result<Frames<R>, Ending>> {
        let mut magic = [0u8; MAGIC.len()];
        let have = len.min(MAGIC.len() as u64) as usize;
        input.read_exact(&mut magic[..have])?;
        let magic = &magic[..have];
        if have < MAGIC.len() {
            return Ok(Err(if MAGIC.starts_with(magic) {
                Ending::Torn { offset: 0 }
            } else {
                not_ours()
            }));
        }
        if magic != MAGIC {
            return Ok(Err(
                if magic[..MAGIC.len() - 1] == MAGIC[..MAGIC.len() - 1] {
                    Ending::Damaged {
                        offset: 0,
                        what: format!(
                            "written in layout {} of the delivered log, which this Sluice does not read",
                            magic[MAGIC.len() - 1]
                        ),
                    }
                } else {
                    not_ours()
                },
            ));
        }
        Ok(Ok(Frames {
            input,
            left: len - MAGIC.len() as u64,
            at: MAGIC.len() as u64,
            body: Vec::new(),
            ending: Ending::Clean,
        }))
    }

    /// Where the next frame starts.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// The next frame's body; `None` at the end of the file or of its good frames (then
    /// [`Frames::ending`] says which).
    pub fn next(&mut self) -> io::Result<Option<&[u8]>> {
        if self.ending != Ending::Clean || self.left == 0 {
            return Ok(None);
        }
        let torn = Ending::Torn { offset: self.at };
        if self.left < FRAME_HEAD as u64 {
            self.ending = torn;
            return Ok(None);
        }
        let mut head = [0u8; FRAME_HEAD];
        self.input.read_exact(&mut head)?;
        self.left -= FRAME_HEAD as u64;
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len > MAX_FRAME {
            self.ending = Ending::Damaged {
                offset: self.at,
                what: format!("a frame declares {len} bytes"),
            };
            return Ok(None);
        }
        if len as u64 > self.left {
            // Cut short: the crash came while this frame was being written.
            self.ending = torn;
            return Ok(None);
        }
        self.body.resize(len, 0);
        self.input.read_exact(&mut self.body)?;
        self.left -= len as u64;
        if crc32c::crc32c(&self.body) != crc || (len == 0 && crc == 0) {
            // A bad last frame (nothing but zeros after it, as a file system may leave
            // after a power cut) is a write cut short; one with data after it is damage.
            self.ending = if self.rest_is_zeros()? {
                torn
            } else {
                Ending::Damaged {
                    offset: self.at,
                    what: "a frame fails its checksum".into(),
                }
            };
            return Ok(None);
        }
        self.at += (FRAME_HEAD + len) as u64;
        Ok(Some(&self.body))
    }

    /// Reads the rest of the file: whether it is all zeros.
    fn rest_is_zeros(&mut self) -> io::Result<bool> {
        let mut buffer = [0u8; 8192];
        while self.left > 0 {
            let n = self.left.min(buffer.len() as u64) as usize;
            self.input.read_exact(&mut buffer[..n])?;
            self.left -= n as u64;
            if !only_zeros(&buffer[..n]) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn not_ours() -> Ending {
    Ending::Damaged {
        offset: 0,
        what: "not a file of Sluice's delivered log".into(),
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

    fn open(bytes: &[u8]) -> Result<Frames<&[u8]>, Ending> {
        Frames::new(bytes, bytes.len() as u64).unwrap()
    }

    fn read(bytes: &[u8]) -> (Vec<Vec<u8>>, Ending) {
        let mut frames = open(bytes).unwrap();
        let mut bodies = Vec::new();
        while let Some(body) = frames.next().unwrap() {
            bodies.push(body.to_vec());
        }
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
            matches!(open(&other), Err(Ending::Damaged { what, .. }) if what.contains("layout 9"))
        );
        assert!(matches!(
            open(b"{\"json\": true}"),
            Err(Ending::Damaged { .. })
        ));
        assert!(matches!(open(&MAGIC[..3]), Err(Ending::Torn { offset: 0 })));
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
