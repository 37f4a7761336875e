//! OAuth2 renewal, both sides of it: the destination's sessions and the sync's credentials.

use super::set_env;

/// The `auth` line of a sync that renews its sessions through OAuth2 at `base_url`'s token
/// endpoint, as client `client` with secret `secret` and refresh token `refresh`, read from
/// `{prefix}_ID`, `{prefix}_SECRET` and `{prefix}_REFRESH` (set here).
pub fn oauth2_renewal(prefix: &str, base_url: &str) -> String {
    set_env(&format!("{prefix}_ID"), "client");
    set_env(&format!("{prefix}_SECRET"), "secret");
    set_env(&format!("{prefix}_REFRESH"), "refresh");
    format!(
        "auth = {{ oauth2 = {{ token_url = \"{base_url}/oauth2/token\", client_id_env = \"{prefix}_ID\", client_secret_env = \"{prefix}_SECRET\", refresh_token_env = \"{prefix}_REFRESH\" }} }}"
    )
}

/// A destination's credentials: no token valid at the start, sessions of
/// `session_requests` requests, renewed through the OAuth2 client [`oauth2_renewal`] signs
/// in as.
pub fn sessions_renewed_by_oauth2(session_requests: u64) -> sluice_sim::AuthConfig {
    sluice_sim::AuthConfig {
        tokens: vec![],
        session_requests: Some(session_requests),
        oauth: Some(sluice_sim::OAuthClient::new("client", "secret", "refresh")),
    }
}
