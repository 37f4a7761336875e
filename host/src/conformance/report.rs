//! What a conformance check found: each step with its status, the contract rules broken
//! by name, and the report `sluice connector check` prints.

use std::fmt;

use crate::sandbox::{GuestError, GuestErrorKind};

/// A broken rule of the contract, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Violation {
    /// The file is not a WebAssembly component.
    NotAComponent,
    /// It does not export `sluice:connector/destination`.
    World,
    /// It exports a version of the world this host does not support.
    WorldVersion,
    /// It imports something the sandbox does not provide.
    Imports,
    /// `configure` refused the settings given.
    ConfigureRefused,
    /// `configure` stated batch limits of zero.
    Limits,
    /// `precheck` or a per-record verdict answered for another number of records.
    WrongLength,
    /// `build-request` built a request the host will not send (a bad method, URL or header).
    MalformedRequest,
    /// `build-request` addressed an absolute URL outside `allowed_hosts`.
    ForbiddenHost,
    /// A call trapped (a panic, an uncaught exception, `unreachable`).
    Trap,
    /// A call ran past its time limit.
    Timeout,
    /// The instance grew its memory past its limit.
    MemoryLimit,
}

impl Violation {
    /// The name the report gives it.
    pub fn name(self) -> &'static str {
        match self {
            Violation::NotAComponent => "not-a-component",
            Violation::World => "world",
            Violation::WorldVersion => "world-version",
            Violation::Imports => "imports",
            Violation::ConfigureRefused => "configure-refused",
            Violation::Limits => "limits",
            Violation::WrongLength => "wrong-length",
            Violation::MalformedRequest => "malformed-request",
            Violation::ForbiddenHost => "forbidden-host",
            Violation::Trap => "trap",
            Violation::Timeout => "timeout",
            Violation::MemoryLimit => "memory-limit",
        }
    }

    /// What an author does about it.
    pub fn advice(self) -> &'static str {
        match self {
            Violation::NotAComponent => {
                "build a component (wasm32-wasip2, componentize-py, componentize-js), not a core module"
            }
            Violation::World => {
                "build against the `destination-connector` world of wit/ and export `destination`"
            }
            Violation::WorldVersion => {
                "build against a version of sluice:connector this Sluice supports"
            }
            Violation::Imports => {
                "import only the world's `host` interface and WASI 0.2 (no wasi:http, no sockets of your own)"
            }
            Violation::ConfigureRefused => {
                "pass the settings a sync would give (--settings key=value), or fix `configure`"
            }
            Violation::Limits => {
                "state limits of at least 1 record and 1 byte, and at least one operation, in \
                 `configure`"
            }
            Violation::WrongLength => {
                "answer exactly one outcome per record, in the order of the batch (precheck) or of `keys` (classify)"
            }
            Violation::MalformedRequest => {
                "use GET, POST, PUT, PATCH or DELETE, a path relative to base_url or an http(s) URL, and valid header names and values"
            }
            Violation::ForbiddenHost => {
                "address paths relative to base_url, or document the host operators must add to `allowed_hosts`"
            }
            Violation::Trap => {
                "never trap: turn an unexpected input into a failure (`transient` or `fatal` in classify, an error in build-request)"
            }
            Violation::Timeout => {
                "finish every call well within `call_timeout` (default 1s): no loops without a bound"
            }
            Violation::MemoryLimit => {
                "stay within `memory_limit` (default 64 MiB): do not buffer without bound; refuse bodies too large to read"
            }
        }
    }

    pub(super) fn of(error: &GuestError) -> Self {
        match error.kind {
            GuestErrorKind::Timeout => Violation::Timeout,
            GuestErrorKind::MemoryLimit => Violation::MemoryLimit,
            GuestErrorKind::Contract(_) => Violation::WrongLength,
            GuestErrorKind::Trap(_) | GuestErrorKind::Unusable => Violation::Trap,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one step of the check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Allowed by the contract, but likely a mistake.
    Warning,
    /// Not run, because an earlier step failed or the sample gave it nothing to do.
    Skipped,
    /// The connector refused the sample records, so this step was never exercised: not a
    /// violation, but no reason to call the connector conformant either (give
    /// `--records` it accepts).
    NotChecked,
    Violation(Violation),
    /// The checker itself could not run the step (not the connector's fault).
    Error,
}

/// One step: a call into the connector, or one canned response through `classify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was checked: `configure`, `classify: 429 with Retry-After: 30`, ...
    pub name: String,
    pub status: Status,
    /// What the connector decided, or what is wrong.
    pub detail: String,
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The version of `sluice:connector` the component was built against, when found.
    pub version: Option<String>,
    /// The limits `configure` stated: records and bytes a batch.
    pub limits: Option<(u32, u64)>,
    /// The operations `configure` stated (0.1.0: upsert).
    pub operations: Vec<crate::sandbox::Operation>,
    pub steps: Vec<Step>,
}

impl Report {
    /// True when every step ran and none found a contract violation (warnings allowed).
    pub fn conformant(&self) -> bool {
        self.steps.iter().all(|s| {
            !matches!(
                s.status,
                Status::Violation(_) | Status::Error | Status::NotChecked
            )
        })
    }

    /// The steps the sample records could not exercise.
    pub fn not_checked(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| s.status == Status::NotChecked)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Every violation found, in the order of the steps, each once.
    pub fn violations(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        for step in &self.steps {
            if let Status::Violation(v) = step.status
                && !found.contains(&v)
            {
                found.push(v);
            }
        }
        found
    }

    pub fn warnings(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Warning)
            .count()
    }

    pub(super) fn push(
        &mut self,
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
    ) {
        self.steps.push(Step {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .steps
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        for step in &self.steps {
            let label = match &step.status {
                Status::Ok => "ok".to_string(),
                Status::Warning => "warn".to_string(),
                Status::Skipped => "skip".to_string(),
                Status::NotChecked => "????".to_string(),
                Status::Violation(_) | Status::Error => "FAIL".to_string(),
            };
            let detail = match &step.status {
                Status::Violation(v) => format!("[{v}] {}", step.detail),
                _ => step.detail.clone(),
            };
            writeln!(f, "{label:<4}  {:<width$}  {detail}", step.name)?;
        }
        writeln!(f)?;
        let warnings = match self.warnings() {
            0 => String::new(),
            1 => " (1 warning)".to_string(),
            n => format!(" ({n} warnings)"),
        };
        if self.conformant() {
            let version = self.version.as_deref().unwrap_or("?");
            writeln!(
                f,
                "conformant: implements sluice:connector/destination@{version} and kept the contract in every step{warnings}"
            )
        } else {
            let violations = self.violations();
            let names: Vec<&str> = violations.iter().map(|v| v.name()).collect();
            let unchecked = self.not_checked();
            if names.is_empty() && !unchecked.is_empty() {
                return writeln!(
                    f,
                    "NOT checked: {} never ran with records the connector accepts; give \
                     `--records FILE` (JSONL) with records it takes{warnings}",
                    unchecked.join(", ")
                );
            }
            writeln!(
                f,
                "NOT conformant: {}{warnings}",
                if names.is_empty() {
                    "the check could not run".to_string()
                } else {
                    names.join(", ")
                }
            )?;
            for v in violations {
                writeln!(f, "  {v}: {}", v.advice())?;
            }
            Ok(())
        }
    }
}
