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

/// Why a caller was turned away: the API answers each with its status and kind
/// (docs/console.md), the pages with its status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No token, or one that is neither of the console's (401).
    NoToken,
    /// The read-only token, asking to act (403).
    ReadOnly,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::NoToken => StatusCode::UNAUTHORIZED,
            Refused::ReadOnly => StatusCode::FORBIDDEN,
        }
    }

    /// The error object's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Refused::NoToken => "unauthorized",
            Refused::ReadOnly => "forbidden",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refused::NoToken => "a console token is needed: `Authorization: Bearer <token>`",
            Refused::ReadOnly => "this token may look, not act: use the operator's token",
        }
    }
}

/// A caller the console let in, and what it may do.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub role: Role,
}

impl Caller {
    /// Refuses a caller that may only look (403).
    pub fn may_act(&self) -> Result<(), Refused> {
        match self.role {
            Role::Operator => Ok(()),
            Role::ReadOnly => Err(Refused::ReadOnly),
        }
    }
}

impl FromRequestParts<Arc<Console>> for Caller {
    type Rejection = Refused;

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
            None => Err(Refused::NoToken),
        }
    }
}

/// A caller that may act: the operator's token. An extractor of the request's head, so a
/// handler that takes it before its body refuses the read-only token (403) before the
/// body is read: whatever the body, the answer is the same.
#[derive(Debug, Clone, Copy)]
pub struct Acting;

impl FromRequestParts<Arc<Console>> for Acting {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        Caller::from_request_parts(parts, console)
            .await?
            .may_act()?;
        Ok(Acting)
    }
}

/// A person signed in through the login form: a random session id in an HttpOnly,
/// SameSite=Strict cookie, and a CSRF token every form that acts must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    pub csrf: String,
    /// Who signed in, as they said (kept with every action they take).
    pub name: String,
}

/// The cookie that carries a session's id.
pub const COOKIE: &str = "sluice_console";

/// A random 128-bit token, in hex.
pub fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Sessions of the people signed in (in memory: a restart signs everyone out). A session
/// unused for `idle` ends: a browser left open on a shared machine does not stay signed in.
pub struct Sessions {
    open: std::sync::Mutex<std::collections::HashMap<String, (Session, std::time::Instant)>>,
    idle: std::time::Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::ending_after(std::time::Duration::from_secs(8 * 3600))
    }
}

impl Sessions {
    /// Sessions that end after `idle` unused.
    pub fn ending_after(idle: std::time::Duration) -> Sessions {
        Sessions {
            open: Default::default(),
            idle,
        }
    }

    /// A new session for `role`, of the person who gave `name`; its id.
    pub fn open(&self, role: Role, name: String) -> String {
        let id = random_token();
        let session = Session {
            role,
            csrf: random_token(),
            name,
        };
        let mut open = self.open.lock().unwrap();
        // Ended sessions go when a new one starts: the map stays as small as the use.
        let idle = self.idle;
        open.retain(|_, (_, seen)| seen.elapsed() < idle);
        open.insert(id.clone(), (session, std::time::Instant::now()));
        id
    }

    /// The session `id`, if it has not ended; using it keeps it going.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut open = self.open.lock().unwrap();
        let (session, seen) = open.get_mut(id)?;
        if seen.elapsed() >= self.idle {
            open.remove(id);
            return None;
        }
        *seen = std::time::Instant::now();
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        self.open.lock().unwrap().remove(id);
    }
}

/// A person with a session, as the pages see them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub id: String,
    pub session: Session,
}

impl Viewer {
    /// Refuses a form without this session's CSRF token (403).
    pub fn sent_by_this_session(
        &self,
        csrf: Option<&str>,
    ) -> Result<(), (StatusCode, &'static str)> {
        if csrf.is_some_and(|token| equal(token, &self.session.csrf)) {
            return Ok(());
        }
        Err((
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        ))
    }

    /// Refuses a form without this session's CSRF token (403), or from a read-only
    /// session.
    pub fn may_act(&self, csrf: Option<&str>) -> Result<(), (StatusCode, &'static str)> {
        self.sent_by_this_session(csrf)?;
        Caller {
            role: self.session.role,
        }
        .may_act()
        .map_err(|refused| (refused.status(), refused.message()))
    }
}

impl FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = axum::response::Redirect;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_string());
        match id.and_then(|id| console.sessions.get(&id).map(|session| (id, session))) {
            Some((id, session)) => Ok(Viewer { id, session }),
            None => Err(axum::response::Redirect::to("/login")),
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
    fn a_session_unused_for_its_idle_time_ends() {
        let sessions = Sessions::ending_after(std::time::Duration::from_millis(50));
        let id = sessions.open(Role::Operator, "ann".into());
        assert_eq!(sessions.get(&id).unwrap().name, "ann");
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get("never-opened").is_none());
        let other = sessions.open(Role::ReadOnly, "bob".into());
        sessions.close(&other);
        assert!(sessions.get(&other).is_none());
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
