//! Why a run stopped early, as a type: a caller (`sluice serve`, the summary) can tell a
//! connector that failed from a destination that said no, without reading message text.
//! Each cause's Display is the run's error text.

use crate::sandbox::{Failure, GuestError};

/// Why a worker stopped early: the run as a whole cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The connector failed (trap, time or memory limit, contract violation); the error
    /// names the connector and the call.
    #[error(transparent)]
    Guest(GuestError),
    /// The destination answered with a fatal verdict.
    #[error("the destination failed fatally: {}: {}", .0.code, .0.message)]
    FatalVerdict(Failure),
    /// Credentials renewed for this batch were refused before they ever worked.
    #[error("the destination refused renewed credentials: {}: {}", .0.code, .0.message)]
    CredentialsRefused(Failure),
    /// Credentials expired and renewing them failed.
    #[error("credentials expired ({code}) and could not be renewed: {error:#}")]
    RenewFailed { code: String, error: anyhow::Error },
    /// The host refused to send the request the connector built (a forbidden host, a bad
    /// method or header).
    #[error("connector `{connector}`: {why}")]
    HostRefused { connector: String, why: String },
    /// A fresh connector instance could not be configured.
    #[error("{0:#}")]
    Configure(anyhow::Error),
    /// A worker task panicked.
    #[error("a worker crashed: {0}")]
    Crashed(tokio::task::JoinError),
}

/// Which cause stopped a run, without its text (which may quote the destination): for
/// callers that branch on it, such as `sluice serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    Guest,
    FatalVerdict,
    CredentialsRefused,
    RenewFailed,
    HostRefused,
    Configure,
    Crashed,
}

impl Stop {
    pub fn kind(&self) -> StopKind {
        match self {
            Stop::Guest(_) => StopKind::Guest,
            Stop::FatalVerdict(_) => StopKind::FatalVerdict,
            Stop::CredentialsRefused(_) => StopKind::CredentialsRefused,
            Stop::RenewFailed { .. } => StopKind::RenewFailed,
            Stop::HostRefused { .. } => StopKind::HostRefused,
            Stop::Configure(_) => StopKind::Configure,
            Stop::Crashed(_) => StopKind::Crashed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str, message: &str) -> Failure {
        Failure {
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn each_cause_reads_as_the_run_error_it_always_was() {
        assert_eq!(
            Stop::FatalVerdict(failure("ACCOUNT_CLOSED", "gone")).to_string(),
            "the destination failed fatally: ACCOUNT_CLOSED: gone"
        );
        assert_eq!(
            Stop::CredentialsRefused(failure("INVALID_SESSION_ID", "no")).to_string(),
            "the destination refused renewed credentials: INVALID_SESSION_ID: no"
        );
        let error = anyhow::anyhow!("refused").context("token endpoint");
        assert_eq!(
            Stop::RenewFailed {
                code: "HTTP_401".into(),
                error
            }
            .to_string(),
            "credentials expired (HTTP_401) and could not be renewed: token endpoint: refused"
        );
        assert_eq!(
            Stop::HostRefused {
                connector: "rest".into(),
                why: "host evil.example is not allowed".into()
            }
            .to_string(),
            "connector `rest`: host evil.example is not allowed"
        );
        let error = anyhow::anyhow!("bad option").context("configure");
        assert_eq!(Stop::Configure(error).to_string(), "configure: bad option");
    }
}
