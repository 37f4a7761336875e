//! Who is calling the console: the operator's token (may look and act) or the read-only
//! token (may look), sent as `Authorization: Bearer <token>`. The tokens come from the
//! environment variables `[console]` names, read once at start; they are never printed.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::Console;
use crate::concern::{Concern, ErrorKind};
use crate::config::ConsoleConfig;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Look and act: retry, resolve, run now.
    Operator,
    /// Look only.
    ReadOnly,
}

/// The console's tokens.
pub struct Tokens {
    operator: String,
    read_only: Option<String>,
}

/// The console refuses to start with a token shorter than this: a guessable token would
/// open the ledger's payloads to anyone who can reach the address.
const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// Reads the tokens from the variables `config` names; an error names a variable that
    /// is unset, empty or too short, never its value.
    pub fn from_env(config: &ConsoleConfig) -> Result<Tokens> {
        let read = |var: &str| -> Result<String> {
            let value = std::env::var(var).unwrap_or_default();
            if value.len() < MIN_TOKEN_LEN {
                let problem = if value.is_empty() {
                    "is not set".to_string()
                } else {
                    format!("holds fewer than {MIN_TOKEN_LEN} characters")
                };
                let text = format!("console: environment variable `{var}` {problem}");
                bail!(Concern::new(ErrorKind::Credentials, text));
            }
            Ok(value)
        };
        let operator = read(&config.token_env)?;
        let read_only = config
            .read_only_token_env
            .as_deref()
            .map(read)
            .transpose()?;
        if read_only.as_ref() == Some(&operator) {
            bail!(
                "console: the read-only token and the operator's token are the same; give \
                 each its own"
            );
        }
        Ok(Tokens {
            operator,
            read_only,
        })
    }

    /// The role `token` grants, compared in constant time.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        if equal(token, &self.operator) {
            return Some(Role::Operator);
        }
        match &self.read_only {
            Some(read_only) if equal(token, read_only) => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A caller the console let in, and what it may do.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub role: Role,
}

impl Caller {
    /// Refuses a caller that may only look (403).
    pub fn may_act(&self) -> Result<(), (StatusCode, &'static str)> {
        match self.role {
            Role::Operator => Ok(()),
            Role::ReadOnly => Err((
                StatusCode::FORBIDDEN,
                "this token may look, not act: use the operator's token",
            )),
        }
    }
}

impl FromRequestParts<Arc<Console>> for Caller {
    type Rejection = (StatusCode, [(&'static str, &'static str); 1], &'static str);

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token.and_then(|t| console.tokens.role_of(t.trim())) {
            Some(role) => Ok(Caller { role }),
            None => Err((
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Bearer")],
                "a console token is needed: `Authorization: Bearer <token>`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_their_role_and_nothing_else() {
        let tokens = Tokens {
            operator: "operator-token-0123456789".into(),
            read_only: Some("reader-token-0123456789".into()),
        };
        assert_eq!(
            tokens.role_of("operator-token-0123456789"),
            Some(Role::Operator)
        );
        assert_eq!(
            tokens.role_of("reader-token-0123456789"),
            Some(Role::ReadOnly)
        );
        for wrong in [
            "",
            "operator-token-012345678",
            "operator-token-0123456789x",
            "x",
        ] {
            assert_eq!(tokens.role_of(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn a_missing_or_short_token_is_refused_naming_its_variable_only() {
        let config = ConsoleConfig {
            token_env: "SLUICE_CONSOLE_TEST_UNSET".into(),
            read_only_token_env: None,
        };
        let err = Tokens::from_env(&config).err().unwrap().to_string();
        assert!(
            err.contains("`SLUICE_CONSOLE_TEST_UNSET` is not set"),
            "{err}"
        );
    }
}
