//! What a sync does at its destination: its behaviour (which operations it sends), the
//! bound on a mirror's deletes, and the mapping of source fields into the payload.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use serde_json::value::RawValue;

use crate::sandbox::Operation;

/// Which records a run sends, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Every new or changed record, created or updated by its key.
    #[default]
    Upsert,
    /// Only records the destination already has.
    Update,
    /// Only records never delivered.
    Insert,
    /// Upserts, then deletes what was delivered before and the source no longer has.
    Mirror,
}

impl Behavior {
    pub const NAMES: &'static str = "\"upsert\", \"update\", \"insert\" or \"mirror\"";

    pub fn parse(name: &str) -> Option<Behavior> {
        Some(match name {
            "upsert" => Behavior::Upsert,
            "update" => Behavior::Update,
            "insert" => Behavior::Insert,
            "mirror" => Behavior::Mirror,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Behavior::Upsert => "upsert",
            Behavior::Update => "update",
            Behavior::Insert => "insert",
            Behavior::Mirror => "mirror",
        }
    }

    /// The operations a connector must support for this behaviour.
    pub fn operations(self) -> &'static [Operation] {
        match self {
            Behavior::Upsert => &[Operation::Upsert],
            Behavior::Update => &[Operation::Update],
            Behavior::Insert => &[Operation::Insert],
            Behavior::Mirror => &[Operation::Upsert, Operation::Delete],
        }
    }

    /// The operation of a record read from the source and sent.
    pub fn operation(self) -> Operation {
        match self {
            Behavior::Upsert | Behavior::Mirror => Operation::Upsert,
            Behavior::Update => Operation::Update,
            Behavior::Insert => Operation::Insert,
        }
    }
}

/// The most records one mirror run may delete (`max_deletes`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDeletes {
    Count(u64),
    /// A percentage of the records delivered before the run.
    Percent(f64),
}

impl Default for MaxDeletes {
    fn default() -> Self {
        MaxDeletes::Percent(10.0)
    }
}

impl MaxDeletes {
    /// `100` or `"100"` is a count, `"5%"` a percentage.
    pub fn parse(value: &toml::Value) -> Result<MaxDeletes> {
        let bad = || {
            anyhow!(
                "max_deletes: `{value}` is not a limit: expected a count (`500`) or a \
                 percentage of the delivered records (`\"10%\"`)"
            )
        };
        match value {
            toml::Value::Integer(n) => u64::try_from(*n).map(MaxDeletes::Count).map_err(|_| bad()),
            toml::Value::String(s) => {
                let s = s.trim();
                if let Some(percent) = s.strip_suffix('%') {
                    let p: f64 = percent.trim().parse().map_err(|_| bad())?;
                    if !(0.0..=100.0).contains(&p) {
                        bail!("max_deletes: `{s}` is not between 0% and 100%");
                    }
                    Ok(MaxDeletes::Percent(p))
                } else {
                    s.parse().map(MaxDeletes::Count).map_err(|_| bad())
                }
            }
            _ => Err(bad()),
        }
    }

    /// The limit for a sync whose ledger holds `delivered` records.
    pub fn limit(self, delivered: u64) -> u64 {
        match self {
            MaxDeletes::Count(n) => n,
            MaxDeletes::Percent(p) => (delivered as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for MaxDeletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDeletes::Count(n) => write!(f, "{n}"),
            MaxDeletes::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `[sync.fields]`: the payload a connector sees, field by field from the source's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMap {
    /// In the payload's order (by destination name).
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// Its name in the payload.
    to: String,
    /// Its name in the source row.
    from: String,
    /// A row without it is unusable (skipped and reported), not sent without it.
    required: bool,
}

impl FieldMap {
    /// `Email = "email"` or `Name = { from = "full_name", required = true }`.
    pub fn parse(table: BTreeMap<String, toml::Value>) -> Result<FieldMap> {
        if table.is_empty() {
            bail!("fields: the table is empty: map at least one field, or leave it out");
        }
        let mut fields = Vec::with_capacity(table.len());
        for (to, value) in table {
            let field = match value {
                toml::Value::String(from) => Field {
                    to,
                    from,
                    required: false,
                },
                toml::Value::Table(mut t) => {
                    let from = match t.remove("from") {
                        Some(toml::Value::String(from)) => from,
                        _ => bail!("fields.{to}: name the source field: `{{ from = \"...\" }}`"),
                    };
                    let required = match t.remove("required") {
                        None => false,
                        Some(toml::Value::Boolean(b)) => b,
                        Some(other) => {
                            bail!("fields.{to}.required: expected true or false, got `{other}`")
                        }
                    };
                    if let Some(extra) = t.keys().next() {
                        bail!("fields.{to}: unknown key `{extra}`: expected `from` and `required`");
                    }
                    Field { to, from, required }
                }
                other => bail!(
                    "fields.{to}: expected the source field's name (`\"email\"`) or \
                     `{{ from = \"email\", required = true }}`, got `{other}`"
                ),
            };
            if field.from.is_empty() {
                bail!("fields.{}: the source field's name is empty", field.to);
            }
            fields.push(field);
        }
        Ok(FieldMap { fields })
    }

    /// The payload of `row` (a JSON object) as the connector sees it; `Err` says why the
    /// row is unusable (a required field missing).
    pub fn apply(&self, row: &str) -> Result<String, String> {
        let object: BTreeMap<String, &RawValue> =
            serde_json::from_str(row).map_err(|e| format!("the row is not a JSON object: {e}"))?;
        let mut out = String::with_capacity(row.len());
        out.push('{');
        for field in &self.fields {
            let Some(value) = object.get(&field.from) else {
                if field.required {
                    return Err(format!(
                        "field `{}` (mapped to `{}`) is missing and is required",
                        field.from, field.to
                    ));
                }
                continue;
            };
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(&field.to).expect("a string serializes"));
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(toml_text: &str) -> FieldMap {
        let table: BTreeMap<String, toml::Value> = toml::from_str(toml_text).unwrap();
        FieldMap::parse(table).unwrap()
    }

    #[test]
    fn fields_are_selected_and_renamed_and_the_rest_dropped() {
        let m = map("Email = \"email\"\nName = \"full_name\"\n");
        let out = m
            .apply(r#"{"email": "a@b.c", "full_name": "A \"B\"", "secret": 1}"#)
            .unwrap();
        assert_eq!(out, r#"{"Email":"a@b.c","Name":"A \"B\""}"#);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["Name"], "A \"B\"");
    }

    #[test]
    fn a_missing_field_is_absent_unless_required() {
        let m = map("Email = \"email\"\nName = { from = \"full_name\", required = true }\n");
        assert_eq!(m.apply(r#"{"full_name": "x"}"#).unwrap(), r#"{"Name":"x"}"#);
        let err = m.apply(r#"{"email": "x"}"#).unwrap_err();
        assert!(err.contains("`full_name` (mapped to `Name`)"), "{err}");
    }

    #[test]
    fn nested_values_are_kept_as_written() {
        let m = map("Address = \"addr\"\n");
        assert_eq!(
            m.apply(r#"{"addr": {"city": "Oslo", "zip": [1, 2]}}"#)
                .unwrap(),
            r#"{"Address":{"city": "Oslo", "zip": [1, 2]}}"#
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_the_field_named() {
        let bad = |text: &str| {
            let table: BTreeMap<String, toml::Value> = toml::from_str(text).unwrap();
            FieldMap::parse(table).unwrap_err().to_string()
        };
        assert!(bad("Email = 3\n").contains("fields.Email"));
        assert!(bad("Email = { required = true }\n").contains("name the source field"));
        assert!(bad("Email = { from = \"e\", needed = true }\n").contains("unknown key `needed`"));
        assert!(bad("Email = \"\"\n").contains("empty"));
    }

    #[test]
    fn max_deletes_is_a_count_or_a_percentage() {
        use toml::Value;
        assert_eq!(
            MaxDeletes::parse(&Value::Integer(5)).unwrap(),
            MaxDeletes::Count(5)
        );
        assert_eq!(
            MaxDeletes::parse(&Value::String("2.5%".into())).unwrap(),
            MaxDeletes::Percent(2.5)
        );
        assert_eq!(MaxDeletes::Percent(10.0).limit(1_005), 100);
        assert_eq!(MaxDeletes::Count(3).limit(1_000_000), 3);
        for bad in [
            Value::Integer(-1),
            Value::String("ten".into()),
            Value::String("150%".into()),
        ] {
            assert!(MaxDeletes::parse(&bad).is_err(), "{bad}");
        }
    }
}
