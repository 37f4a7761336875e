//! A CSV source's header, checked (each column named once, the key among them), and how
//! a row's fields become a payload: a JSON object of strings, byte for byte what
//! `serde_json` would write, so that a payload never changes with the reader.

use anyhow::{Context, Result, bail};

/// The header, checked, and how a row becomes a payload.
#[derive(Default)]
pub(super) struct Columns {
    pub(super) names: Vec<String>,
    pub(super) key: usize,
    /// Each payload field: its name as JSON followed by `:`, and its column; in the order
    /// of a `serde_json::Map`, so that payloads are the bytes they always were (a changed
    /// payload would be sent again).
    pub(super) payload: Vec<(String, usize)>,
}

impl Columns {
    pub(super) fn new(names: Vec<String>, key: &str) -> Result<Self> {
        let mut order = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(earlier) = order.insert(name.clone(), i.into()) {
                bail!(
                    "column `{name}` appears twice (columns {} and {}): a row would lose one of its values",
                    earlier.as_u64().unwrap_or_default() + 1,
                    i + 1
                );
            }
        }
        let key = names.iter().position(|h| h == key).with_context(|| {
            format!(
                "no column `{key}` for the key (columns: {})",
                names.join(", ")
            )
        })?;
        let payload = order
            .iter()
            .map(|(name, column)| {
                let mut prefix = String::new();
                json_string(&mut prefix, name);
                prefix.push(':');
                (prefix, column.as_u64().unwrap_or_default() as usize)
            })
            .collect();
        Ok(Columns {
            names,
            key,
            payload,
        })
    }
}

/// Appends `value` as a JSON string, escaped as serde_json escapes it.
pub(super) fn json_string(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[start..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
    out.push('"');
}
