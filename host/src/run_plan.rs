//! `sluice plan`: what a run of a sync would do, worked out by the run's own reading and
//! deciding (`engine::read_with`), with nothing sent and nothing written.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::{Count, Counters, InvalidRow};
use crate::sandbox::Operation;
use crate::source::Record;

/// How many keys each kind of action shows by example.
pub const EXAMPLES: usize = 10;

/// What a run would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunPlan {
    pub sync: String,
    pub behavior: String,
    /// Records read from the source.
    pub read: u64,
    /// Records to send that the destination does not hold: created.
    pub insert: u64,
    /// Records to send that the destination holds with other data: updated.
    pub update: u64,
    /// Records the destination holds and the source no longer has (mirror).
    pub delete: u64,
    /// Failed records, never delivered, that the source no longer has: a mirror forgets
    /// them.
    pub failures_forgotten: u64,
    /// The destination holds them with the same data: skipped.
    pub unchanged: u64,
    /// Permanent records whose data has not changed: held for a person.
    pub held: u64,
    /// `behavior = "update"`: never delivered, skipped.
    pub not_at_destination: u64,
    /// `behavior = "insert"`: delivered before, skipped.
    pub already_at_destination: u64,
    pub invalid_rows: u64,
    pub duplicate_keys: u64,
    /// Deletes a run would not send, and why.
    pub deletes_withheld: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes_withheld_because: Option<String>,
    /// Why a run would send records the destination confirmed before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resent_because: Option<String>,
    /// The first keys of each action (`insert`, `update`, `delete`), in the order a run
    /// would send them.
    pub examples: BTreeMap<&'static str, Vec<String>>,
    /// The first source rows a run would skip, and why (as a run's summary keeps them).
    pub skipped_rows: Vec<InvalidRow>,
    /// What a row's position counts in the source (`line`, `row`): the plan names skipped
    /// rows as the run's report does.
    #[serde(skip)]
    pub position: &'static str,
}

impl RunPlan {
    pub fn new(sync: &str, behavior: &str) -> RunPlan {
        RunPlan {
            sync: sync.to_string(),
            behavior: behavior.to_string(),
            ..RunPlan::default()
        }
    }

    /// Notes a record a run would send; `at_destination` says whether the destination
    /// holds its key.
    pub fn send(&mut self, record: &Record, at_destination: bool) {
        let action = match record.operation {
            Operation::Delete => "delete",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert if at_destination => "update",
            Operation::Upsert => "insert",
        };
        *match action {
            "delete" => &mut self.delete,
            "update" => &mut self.update,
            _ => &mut self.insert,
        } += 1;
        let examples = self.examples.entry(action).or_default();
        if examples.len() < EXAMPLES {
            examples.push(record.key.clone());
        }
    }

    /// Takes what the read counted.
    pub fn counted(&mut self, counters: &Counters) {
        self.read = counters.get(Count::Read);
        self.unchanged = counters.get(Count::Unchanged);
        self.held = counters.get(Count::Held);
        self.not_at_destination = counters.get(Count::NotAtDestination);
        self.already_at_destination = counters.get(Count::AtDestination);
        self.invalid_rows = counters.get(Count::InvalidRows);
        self.duplicate_keys = counters.get(Count::Duplicates);
        self.failures_forgotten = counters.get(Count::FailuresForgotten);
    }

    /// For people.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan for sync `{}` (behavior \"{}\"): nothing is sent",
            self.sync, self.behavior
        );
        if let Some(why) = &self.resent_because {
            let _ = writeln!(out, "  sent again: {why}");
        }
        let rows = [
            ("read", self.read, None),
            ("insert", self.insert, Some("insert")),
            ("update", self.update, Some("update")),
            ("delete", self.delete, Some("delete")),
            ("failures to forget", self.failures_forgotten, None),
            ("unchanged (skip)", self.unchanged, None),
            ("held for a person", self.held, None),
            ("not at destination", self.not_at_destination, None),
            ("already at destination", self.already_at_destination, None),
            ("invalid source rows", self.invalid_rows, None),
            ("repeated keys", self.duplicate_keys, None),
        ];
        for (label, value, examples) in rows {
            let shown = examples
                .and_then(|action| self.examples.get(action))
                .filter(|keys| !keys.is_empty())
                .map(|keys| {
                    let more = if value > keys.len() as u64 {
                        ", ..."
                    } else {
                        ""
                    };
                    let keys: Vec<String> = keys
                        .iter()
                        .map(|k| crate::report::printable(k).into_owned())
                        .collect();
                    format!("  e.g. {}{more}", keys.join(", "))
                })
                .unwrap_or_default();
            let _ = writeln!(out, "  {label:<24}{value:>10}{shown}");
        }
        if let Some(why) = &self.deletes_withheld_because {
            let _ = writeln!(out, "  deletes withheld: {why}");
        }
        let skipped = self.invalid_rows + self.duplicate_keys;
        crate::report::skipped_rows(&mut out, &self.skipped_rows, skipped, self.position);
        out
    }
}
