//! Bearer tokens with a per-token request budget, and an OAuth refresh-token grant.
//!
//! Expiry is counted in requests rather than time so that tests can expire a session at an
//! exact point in a run without sleeping. Tokens and secrets are never logged: the `Debug`
//! impls below print counts and ids only.

use std::collections::HashMap;
use std::fmt;

use crate::faults::StableHash;

/// Authentication required by a simulator's data endpoints.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// Bearer tokens accepted from the start.
    pub tokens: Vec<String>,
    /// A token stops being accepted after this many requests made with it, counted per
    /// token; `None` means tokens never expire.
    pub session_requests: Option<u64>,
    /// Enables `POST /oauth2/token` with the refresh-token grant.
    pub oauth: Option<OAuthClient>,
}

/// The one OAuth client the token endpoint knows.
#[derive(Clone, Default)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("session_requests", &self.session_requests)
            .field("oauth", &self.oauth)
            .finish()
    }
}

impl OAuthClient {
    pub fn new(client_id: &str, client_secret: &str, refresh_token: &str) -> Self {
        OAuthClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            refresh_token: refresh_token.to_owned(),
        }
    }
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why a data request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization: Bearer ...` header.
    Missing,
    /// A token the simulator never accepted.
    Unknown,
    /// A token whose request budget is used up.
    Expired,
}

/// The tokens a simulator accepts and how often each has been used. (No `Debug`: it
/// holds the tokens.)
#[derive(Default)]
pub(crate) struct Tokens {
    uses: HashMap<String, u64>,
    issued: u64,
}

/// The outcome of a token request.
pub(crate) enum Grant {
    Issued(String),
    Refused(&'static str),
}

impl Tokens {
    pub(crate) fn new(config: &AuthConfig) -> Self {
        let uses = config.tokens.iter().map(|t| (t.clone(), 0)).collect();
        Tokens { uses, issued: 0 }
    }

    /// Checks a data request's `Authorization` header and, if accepted, charges the token
    /// one request of its budget.
    pub(crate) fn admit(
        &mut self,
        config: &AuthConfig,
        header: Option<&str>,
    ) -> Result<(), AuthFailure> {
        let token = header.and_then(bearer).ok_or(AuthFailure::Missing)?;
        let uses = self.uses.get_mut(token).ok_or(AuthFailure::Unknown)?;
        if config
            .session_requests
            .is_some_and(|budget| *uses >= budget)
        {
            return Err(AuthFailure::Expired);
        }
        *uses += 1;
        Ok(())
    }

    /// Runs the refresh-token grant on a decoded form; on success the new token is
    /// accepted from now on, with a fresh budget.
    pub(crate) fn grant(
        &mut self,
        config: &AuthConfig,
        seed: u64,
        form: &HashMap<String, String>,
    ) -> Grant {
        let Some(client) = &config.oauth else {
            return Grant::Refused("invalid_client");
        };
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("grant_type") != Some("refresh_token") {
            return Grant::Refused("unsupported_grant_type");
        }
        if field("client_id") != Some(&client.client_id)
            || field("client_secret") != Some(&client.client_secret)
        {
            return Grant::Refused("invalid_client");
        }
        if field("refresh_token") != Some(&client.refresh_token) {
            return Grant::Refused("invalid_grant");
        }
        let token = loop {
            self.issued += 1;
            let mut h = StableHash::new(seed);
            h.bytes(b"access-token");
            h.u64(self.issued);
            let candidate = format!("00Dsim{}!{:016x}", self.issued, h.finish());
            if !self.uses.contains_key(&candidate) {
                break candidate;
            }
        };
        self.uses.insert(token.clone(), 0);
        Grant::Issued(token)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            tokens: vec!["t0".into()],
            session_requests: Some(2),
            oauth: Some(OAuthClient::new("id", "secret", "refresh")),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn budget_per_token() {
        let cfg = config();
        let mut t = Tokens::new(&cfg);
        assert_eq!(t.admit(&cfg, None), Err(AuthFailure::Missing));
        assert_eq!(t.admit(&cfg, Some("Basic t0")), Err(AuthFailure::Missing));
        assert_eq!(
            t.admit(&cfg, Some("Bearer nope")),
            Err(AuthFailure::Unknown)
        );
        assert_eq!(t.admit(&cfg, Some("Bearer t0")), Ok(()));
        assert_eq!(t.admit(&cfg, Some("bearer t0")), Ok(()));
        assert_eq!(t.admit(&cfg, Some("Bearer t0")), Err(AuthFailure::Expired));
    }

    #[test]
    fn refresh_grant() {
        let cfg = config();
        let mut t = Tokens::new(&cfg);
        let good = [
            ("grant_type", "refresh_token"),
            ("client_id", "id"),
            ("client_secret", "secret"),
            ("refresh_token", "refresh"),
        ];
        let Grant::Issued(a) = t.grant(&cfg, 1, &form(&good)) else {
            panic!("grant refused")
        };
        let Grant::Issued(b) = t.grant(&cfg, 1, &form(&good)) else {
            panic!("grant refused")
        };
        assert_ne!(a, b);
        assert_eq!(t.admit(&cfg, Some(&format!("Bearer {a}"))), Ok(()));
        let mut bad = good;
        bad[2].1 = "wrong";
        assert!(matches!(
            t.grant(&cfg, 1, &form(&bad)),
            Grant::Refused("invalid_client")
        ));
        let mut bad = good;
        bad[3].1 = "wrong";
        assert!(matches!(
            t.grant(&cfg, 1, &form(&bad)),
            Grant::Refused("invalid_grant")
        ));
        let mut bad = good;
        bad[0].1 = "password";
        assert!(matches!(
            t.grant(&cfg, 1, &form(&bad)),
            Grant::Refused("unsupported_grant_type")
        ));
    }

    #[test]
    fn debug_redacts() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("t0") && !shown.contains("secret") && !shown.contains("refresh\""));
    }
}
