//! JSONL: one JSON object per line, which becomes the record's payload as written.

use std::borrow::Cow;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::lines::Lines;
use super::{Row, RowReader, not_utf8};

pub(super) struct JsonlRows {
    lines: Lines,
    path: String,
    key: String,
    /// The key of the current row when it had escapes to undo.
    unescaped: String,
}

impl JsonlRows {
    pub fn new(lines: Lines, key: String, path: String) -> Self {
        JsonlRows {
            lines,
            path,
            key,
            unescaped: String::new(),
        }
    }
}

impl RowReader for JsonlRows {
    fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        let at = self.lines.next_number();
        let line = self
            .lines
            .next_where(|line| !line.iter().all(|b| JSON_WHITESPACE.contains(b)))
            .with_context(|| format!("reading {} at line {at}", self.path))?;
        let Some(line) = line else { return Ok(None) };
        Ok(Some(match std::str::from_utf8(line.content) {
            Ok(text) => row(
                text.trim_matches([' ', '\t', '\r', '\n']),
                &self.key,
                line.number,
                &mut self.unescaped,
            ),
            Err(err) => Row::Invalid {
                line: line.number,
                reason: not_utf8("the line", err.valid_up_to()),
            },
        }))
    }
}

/// What JSON allows around a value; a line of nothing else is blank.
const JSON_WHITESPACE: &[u8] = b" \t\r\n";

/// A row whose payload is exactly one JSON object: connectors may rely on that (see
/// docs/connectors.md), so nothing may follow the object on its line. The object is parsed
/// once, for its key only.
pub(super) fn row<'a>(text: &'a str, key: &str, line: u64, unescaped: &'a mut String) -> Row<'a> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = serde::de::DeserializeSeed::deserialize(KeyField(key), &mut de)
        .and_then(|value| de.end().map(|()| value));
    let raw = match parsed {
        Ok(Some(raw)) => raw.get().trim(),
        Ok(None) => {
            return Row::Invalid {
                line,
                reason: format!("the key field `{key}` is missing"),
            };
        }
        Err(err) => {
            return Row::Invalid {
                line,
                reason: format!("not a JSON object: {err}"),
            };
        }
    };
    keyed(text, raw, key, line, unescaped)
}

/// The row of `payload` whose key field `key` holds the JSON `raw`: a record when that is a
/// key, else an invalid row saying why. Shared with the readers that write their payloads
/// themselves (a PostgreSQL query), so that a key means the same in every source.
pub(super) fn keyed<'a>(
    payload: &'a str,
    raw: &'a str,
    key: &str,
    line: u64,
    unescaped: &'a mut String,
) -> Row<'a> {
    match key_text(raw, unescaped) {
        Some(k) => Row::Record {
            line,
            key: k,
            payload,
        },
        None => Row::Invalid {
            line,
            reason: format!(
                "the key field `{key}` is {}, expected a non-empty string or a number",
                shortened(raw)
            ),
        },
    }
}

/// A key is a non-empty string (unescaped), or a number kept exactly as written: read
/// through a float, `12345678901234567890123` and `...124` would be one key.
fn key_text<'a>(raw: &'a str, unescaped: &'a mut String) -> Option<&'a str> {
    match raw.as_bytes().first()? {
        b'"' => {
            let mut de = serde_json::Deserializer::from_str(raw);
            let text = match Text::deserialize(&mut de).ok()?.0 {
                Cow::Borrowed(text) => text,
                Cow::Owned(text) => {
                    *unescaped = text;
                    unescaped.as_str()
                }
            };
            (!text.trim().is_empty()).then_some(text)
        }
        b'-' | b'0'..=b'9' => Some(raw),
        _ => None,
    }
}

/// A value in an error message, cut short: it may be a whole object.
fn shortened(raw: &str) -> Cow<'_, str> {
    const MAX: usize = 40;
    match raw.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &raw[..at]).into(),
        None => raw.into(),
    }
}

/// Reads one field of a JSON object, as its raw text, and skips the rest without building
/// it: the reader needs only the key, and parsing whole records would cost more than
/// sending them.
struct KeyField<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyField<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyField<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            if name == self.0 {
                // A repeated field: the last one wins, as in most JSON readers.
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A JSON string, borrowed from the line unless it has escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::SourceFormat;
    use super::super::tests::{Owned, rows};
    use super::*;

    fn one(text: &str, key: &str, line: u64) -> Owned {
        let mut buf = String::new();
        Owned::from(row(text, key, line, &mut buf))
    }

    fn record(key: &str, payload: &str) -> Owned {
        Owned::Record(key.into(), payload.into())
    }

    #[test]
    fn keys_and_payloads() {
        let text = r#"{"id": "a1", "x": [1, {"y": 2}]}"#;
        assert_eq!(one(text, "id", 1), record("a1", text));
        assert_eq!(one(r#"{"id": 42}"#, "id", 1), record("42", r#"{"id": 42}"#));
        assert_eq!(one(r#"{"i\u0064": "e\"sc"}"#, "id", 1).key(), Some("e\"sc"));
        assert_eq!(one(r#"{"id": 1, "id": "b"}"#, "id", 1).key(), Some("b"));
        let missing = one(r#"{"name": "x"}"#, "id", 3);
        assert!(missing.reason().unwrap().contains("missing"), "{missing:?}");
        for bad in [
            r#"{"id": ""}"#,
            r#"{"id": " "}"#,
            r#"{"id": null}"#,
            r#"{"id": [1]}"#,
        ] {
            let reason = one(bad, "id", 1).reason().map(str::to_string);
            assert!(
                reason
                    .as_deref()
                    .is_some_and(|r| r.contains("expected a non-empty")),
                "{bad}: {reason:?}"
            );
        }
        assert!(
            one("[1,2]", "id", 1)
                .reason()
                .unwrap()
                .contains("not a JSON object")
        );
        assert!(one("{oops", "id", 1).reason().is_some());
        // A payload is one JSON object and nothing else: connectors rely on it.
        for text in [r#"{"id": 1} x"#, r#"{"id": 1}{"id": 2}"#, r#"{"id": 1},"#] {
            let reason = one(text, "id", 1).reason().map(str::to_string);
            assert!(
                reason.as_deref().is_some_and(|r| r.contains("trailing")),
                "{text}"
            );
        }
        let long = format!(r#"{{"id": {{"a": "{}"}}}}"#, "x".repeat(100));
        assert!(one(&long, "id", 1).reason().unwrap().len() < 150);
    }

    /// Through a float, these would be one key (or lose their form); a key is its text.
    #[test]
    fn numeric_keys_keep_their_exact_text() {
        for n in [
            "12345678901234567890123",
            "12345678901234567890124",
            "-0",
            "1.50",
            "1e3",
            "0.1000000000000000055511151231257827",
        ] {
            let text = format!(r#"{{"id": {n}, "v": 1}}"#);
            assert_eq!(one(&text, "id", 1), record(n, &text));
        }
    }

    #[test]
    fn bad_bytes_bom_and_line_endings() {
        let input = b"\xEF\xBB\xBF{\"id\": \"a\"}\r\n{\"id\": \"\xff\"}\n\n  \n{\"id\": \"c\", \"n\": \"\xc3\"}\n{\"id\": \"d\"}";
        assert_eq!(
            rows(SourceFormat::Jsonl, input),
            [
                (1, record("a", r#"{"id": "a"}"#)),
                (
                    2,
                    Owned::Invalid("not UTF-8: the line has an invalid byte at byte 8".into())
                ),
                (
                    5,
                    Owned::Invalid("not UTF-8: the line has an invalid byte at byte 18".into())
                ),
                (6, record("d", r#"{"id": "d"}"#)),
            ]
        );
    }
}
