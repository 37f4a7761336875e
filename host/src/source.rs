//! Reading records from the source, one at a time: a source is never loaded whole.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};

use crate::config::{SourceFormat, SourceSpec};

/// A record as read from the source: its key, and its fields as a serialized JSON
/// object. The same type crosses into connectors, so a batch is never copied to convert.
pub use crate::sandbox::SourceRecord as Record;

/// One row of the source: a record, or a row that cannot become one (reported, skipped).
#[derive(Debug, Clone)]
pub enum Row {
    Record { line: u64, record: Record },
    Invalid { line: u64, reason: String },
}

/// Opens the source; the iterator yields an error only when the file cannot be read.
pub fn open(spec: &SourceSpec) -> Result<Box<dyn Iterator<Item = Result<Row>> + Send>> {
    let file = File::open(&spec.path)
        .with_context(|| format!("cannot open source file `{}`", spec.path.display()))?;
    Ok(match spec.format {
        SourceFormat::Jsonl => Box::new(jsonl(file, spec.key.clone(), &spec.path)),
        SourceFormat::Csv => Box::new(csv(file, spec.key.clone(), &spec.path)?),
    })
}

fn jsonl(file: File, key: String, path: &Path) -> impl Iterator<Item = Result<Row>> + Send + use<> {
    let path = path.display().to_string();
    let mut lines = BufReader::with_capacity(256 * 1024, file).lines();
    let mut line_no = 0u64;
    std::iter::from_fn(move || {
        loop {
            line_no += 1;
            let line = match lines.next()? {
                Ok(line) => line,
                Err(err) => {
                    return Some(Err(anyhow::Error::new(err)
                        .context(format!("reading source file `{path}` at line {line_no}"))));
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(Ok(jsonl_row(line, &key, line_no)));
        }
    })
}

/// A row whose payload is exactly one JSON object: connectors may rely on that (see
/// docs/connectors.md), so nothing may follow the object on its line. The line becomes
/// the payload without a copy unless it has surrounding blanks to trim.
fn jsonl_row(text: String, key: &str, line: u64) -> Row {
    let trimmed = text.trim();
    let mut de = serde_json::Deserializer::from_str(trimmed);
    let parsed = serde::de::DeserializeSeed::deserialize(KeyField(key), &mut de)
        .and_then(|value| de.end().map(|()| value));
    let key_value = match parsed {
        Ok(value) => value,
        Err(err) => {
            return Row::Invalid {
                line,
                reason: format!("not a JSON object: {err}"),
            };
        }
    };
    match key_value.as_ref().and_then(key_string) {
        Some(k) => {
            let payload = if trimmed.len() == text.len() {
                text
            } else {
                trimmed.to_string()
            };
            Row::Record {
                line,
                record: Record { key: k, payload },
            }
        }
        None => Row::Invalid {
            line,
            reason: match key_value {
                None => format!("the key field `{key}` is missing"),
                Some(v) => {
                    format!("the key field `{key}` is {v}, expected a non-empty string or a number")
                }
            },
        },
    }
}

/// Reads one field of a JSON object and skips the rest without building it: the reader
/// needs only the key, and parsing whole records would cost more than sending them.
struct KeyField<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyField<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyField<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(FieldName(name)) = map.next_key::<FieldName<'de>>()? {
            if name == self.0 {
                // A repeated field: the last one wins, as in most JSON readers.
                found = Some(map.next_value::<serde_json::Value>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A field name, borrowed from the line unless it has escapes.
struct FieldName<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> serde::de::Visitor<'de> for Name {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Name)
    }
}

/// A key is a non-empty string, or a number written as one.
fn key_string(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn csv(
    file: File,
    key: String,
    path: &Path,
) -> Result<impl Iterator<Item = Result<Row>> + Send + use<>> {
    let path = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(BufReader::with_capacity(256 * 1024, file));
    let headers = reader
        .headers()
        .with_context(|| format!("reading the header row of source file `{path}`"))?
        .clone();
    let key_index = headers.iter().position(|h| h == key).with_context(|| {
        format!(
            "source file `{path}` has no column `{key}` for the key (columns: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut records = reader.into_records();
    Ok(std::iter::from_fn(move || {
        let record = records.next()?;
        Some(match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let key = record.get(key_index).unwrap_or("").trim();
                if key.is_empty() {
                    Ok(Row::Invalid {
                        line,
                        reason: format!("the key column `{}` is empty", &headers[key_index]),
                    })
                } else {
                    let object: serde_json::Map<String, serde_json::Value> = headers
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
                        .collect();
                    Ok(Row::Record {
                        line,
                        record: Record {
                            key: key.to_string(),
                            payload: serde_json::Value::Object(object).to_string(),
                        },
                    })
                }
            }
            // A row with the wrong number of fields is that row's problem; an I/O error
            // is the file's.
            Err(err) if matches!(err.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                Ok(Row::Invalid {
                    line: err.position().map_or(0, |p| p.line()),
                    reason: err.to_string(),
                })
            }
            Err(err) => {
                Err(anyhow::Error::new(err).context(format!("reading source file `{path}`")))
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str, key: &str, line: u64) -> Row {
        jsonl_row(text.to_string(), key, line)
    }

    #[test]
    fn jsonl_rows() {
        let Row::Record { record: r, .. } = row(r#"{"id": "a1", "x": [1, {"y": 2}]}"#, "id", 1)
        else {
            panic!()
        };
        assert_eq!(
            (r.key.as_str(), r.payload.as_str()),
            ("a1", r#"{"id": "a1", "x": [1, {"y": 2}]}"#)
        );
        let Row::Record { record: r, .. } = row(r#"{"id": 42}"#, "id", 1) else {
            panic!()
        };
        assert_eq!(r.key, "42");
        let Row::Record { record: r, .. } = row(r#"{"i\u0064": "esc"}"#, "id", 1) else {
            panic!()
        };
        assert_eq!(r.key, "esc");
        assert!(
            matches!(row(r#"{"name": "x"}"#, "id", 3), Row::Invalid { line: 3, reason } if reason.contains("missing"))
        );
        assert!(matches!(row(r#"{"id": ""}"#, "id", 1), Row::Invalid { .. }));
        assert!(matches!(
            row(r#"{"id": null}"#, "id", 1),
            Row::Invalid { .. }
        ));
        assert!(
            matches!(row("[1,2]", "id", 1), Row::Invalid { reason, .. } if reason.contains("not a JSON object"))
        );
        assert!(matches!(row("{oops", "id", 1), Row::Invalid { .. }));
        // A payload is one JSON object and nothing else: connectors rely on it.
        for text in [r#"{"id": 1} x"#, r#"{"id": 1}{"id": 2}"#, r#"{"id": 1},"#] {
            assert!(
                matches!(row(text, "id", 1), Row::Invalid { ref reason, .. } if reason.contains("trailing")),
                "{text}"
            );
        }
        let Row::Record { record: r, .. } = row(" \t{\"id\": \"t\"}  ", "id", 1) else {
            panic!()
        };
        assert_eq!(r.payload, r#"{"id": "t"}"#);
    }
}
