//! What an error is about, for scripts: a stable kind, and the file, sync or key it
//! concerns. Errors stay `anyhow` chains with their full text for people; a [`Concern`] is
//! one link of the chain (the error itself, or a context) that a caller finds with
//! [`Concern::of`] and turns into `--json`'s error object and the exit code (see
//! docs/cli.md).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The kinds of error a script can branch on. Stable: new kinds may be added, none
/// renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The config file cannot be read, or is not a valid config.
    Config,
    /// A sync or a record named on the command line does not exist.
    NotFound,
    /// The state (the ledger) cannot be used: held by another process, damaged, or its
    /// database unreachable.
    State,
    /// A credential the config names is not in the environment.
    Credentials,
    /// Anything else: a run that could not start or failed, output that could not be
    /// written.
    Failed,
}

impl ErrorKind {
    /// The process's exit code for an error of this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Config => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::State => 5,
            ErrorKind::Credentials => 6,
        }
    }
}

/// A link of an error chain saying what the error is about; its text is the link's text.
#[derive(Debug, Clone, Serialize)]
pub struct Concern {
    pub kind: ErrorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip)]
    text: String,
}

impl Concern {
    pub fn new(kind: ErrorKind, text: impl Into<String>) -> Concern {
        Concern {
            kind,
            file: None,
            sync: None,
            key: None,
            text: text.into(),
        }
    }

    /// The config file at `path`; its text names the file.
    pub fn config(path: &Path) -> Concern {
        Concern::new(
            ErrorKind::Config,
            format!("config file `{}`", path.display()),
        )
        .file(path)
    }

    pub fn file(mut self, path: &Path) -> Concern {
        self.file = Some(path.to_path_buf());
        self
    }

    pub fn sync(mut self, name: &str) -> Concern {
        self.sync = Some(name.to_string());
        self
    }

    pub fn key(mut self, key: &str) -> Concern {
        self.key = Some(key.to_string());
        self
    }

    /// What `err` is about: the outermost concern in its chain; a ledger that cannot be
    /// opened or used (held elsewhere, damaged storage, a state database of another
    /// version) is about the state; anything else is a failure.
    pub fn of(err: &anyhow::Error) -> Concern {
        if let Some(concern) = err.downcast_ref::<Concern>() {
            return concern.clone();
        }
        for cause in err.chain() {
            if let Some(concern) = cause.downcast_ref::<Concern>() {
                return concern.clone();
            }
            let state = cause.is::<crate::ledger::OpenError>()
                || cause.is::<crate::ledger::postgres::SchemaError>()
                || cause.is::<crate::ledger::StoreError>();
            if state {
                return Concern::new(ErrorKind::State, String::new());
            }
        }
        Concern::new(ErrorKind::Failed, String::new())
    }

    /// `--json`'s error object for `err`: its kind, its whole text, and what it concerns.
    pub fn json(err: &anyhow::Error) -> serde_json::Value {
        let concern = Concern::of(err);
        let mut object = serde_json::to_value(&concern).expect("a concern serializes");
        object["message"] = serde_json::Value::String(format!("{err:#}"));
        serde_json::json!({ "error": object })
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Concern {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concern_is_found_as_the_error_or_as_a_context_and_keeps_the_text() {
        let err = anyhow::anyhow!("expected a string")
            .context(Concern::config(Path::new("a.toml")))
            .context("loading");
        let concern = Concern::of(&err);
        assert_eq!(concern.kind, ErrorKind::Config);
        assert_eq!(concern.file.as_deref(), Some(Path::new("a.toml")));
        assert_eq!(
            format!("{err:#}"),
            "loading: config file `a.toml`: expected a string"
        );
        let json = Concern::json(&err);
        assert_eq!(json["error"]["kind"], "config");
        assert_eq!(json["error"]["file"], "a.toml");
        assert!(json["error"].get("sync").is_none());

        let err =
            anyhow::Error::new(Concern::new(ErrorKind::NotFound, "no sync named `x`").sync("x"));
        assert_eq!(Concern::of(&err).sync.as_deref(), Some("x"));
        assert_eq!(err.to_string(), "no sync named `x`");
        assert_eq!(
            Concern::of(&anyhow::anyhow!("other")).kind,
            ErrorKind::Failed
        );
    }
}
