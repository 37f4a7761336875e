//! Credentials for a destination. Connectors never see them: the host adds them to each
//! request, renews them when the destination says they expired, and never logs them.
//! Every secret value is added to a [`Secrets`] set that the transport scrubs responses
//! with, so that a destination echoing one cannot make it printed or stored.

use anyhow::{Context, Result, anyhow, bail};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RefreshToken, TokenResponse, TokenUrl};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::config::AuthSpec;
use crate::secrets::{Secrets, display_url};

/// The header that authenticates a request, marked sensitive so that no debug output of
/// the HTTP stack shows it.
#[derive(Clone)]
pub struct AuthHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// The current credentials of one sync, and a generation count that tells a worker
/// whether someone else renewed them since it last sent.
pub struct Credentials {
    spec: AuthSpec,
    state: Mutex<State>,
    /// The newest generation the destination accepted at least once, plus one (0: none).
    accepted: AtomicU64,
    http: reqwest::Client,
    /// Every secret these credentials ever added to a request, for the transport to
    /// scrub from responses.
    secrets: Secrets,
    /// Requests sent to an OAuth2 token endpoint, answered or not.
    token_requests: AtomicU64,
}

struct State {
    header: Option<AuthHeader>,
    generation: u64,
}

impl Credentials {
    /// Reads the initial credentials (an OAuth2 sync fetches its first access token).
    pub async fn new(spec: AuthSpec, http: reqwest::Client) -> Result<Self> {
        let credentials = Credentials {
            spec,
            state: Mutex::new(State {
                header: None,
                generation: 0,
            }),
            accepted: AtomicU64::new(0),
            http,
            secrets: Secrets::new(),
            token_requests: AtomicU64::new(0),
        };
        let header = credentials.fetch().await?;
        credentials.state.lock().await.header = header;
        Ok(credentials)
    }

    /// The secrets these credentials add, kept up to date on every renewal: whoever
    /// handles what a destination sends back scrubs with it.
    pub fn secrets(&self) -> Secrets {
        self.secrets.clone()
    }

    /// The header to send now, and its generation.
    pub async fn current(&self) -> (Option<AuthHeader>, u64) {
        let state = self.state.lock().await;
        (state.header.clone(), state.generation)
    }

    /// How many requests went to the token endpoint (the first token and each renewal):
    /// the destination counts them, so the run's summary does too.
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// Notes that the destination accepted the credentials of `generation`.
    pub fn accepted(&self, generation: u64) {
        self.accepted.fetch_max(generation + 1, Ordering::Relaxed);
    }

    /// Whether the credentials of `generation` ever worked. Renewed credentials refused
    /// before they ever worked mean renewal cannot help.
    pub fn ever_accepted(&self, generation: u64) -> bool {
        self.accepted.load(Ordering::Relaxed) > generation
    }

    /// Renews the credentials that were refused, unless another worker already did.
    /// Returns whether this call renewed them.
    pub async fn renew(&self, refused_generation: u64) -> Result<bool> {
        let mut state = self.state.lock().await;
        if state.generation != refused_generation {
            return Ok(false);
        }
        state.header = self.fetch().await?;
        state.generation += 1;
        Ok(true)
    }

    /// Reads or fetches the credentials, adding each secret to `secrets` before the
    /// header that carries it can be sent.
    async fn fetch(&self) -> Result<Option<AuthHeader>> {
        match &self.spec {
            AuthSpec::None => Ok(None),
            AuthSpec::Bearer { env } => {
                let value = format!("Bearer {}", read_env(env)?);
                self.secrets.add_header_value(&value, env);
                Ok(Some(AuthHeader {
                    name: AUTHORIZATION,
                    value: sensitive(&value, env)?,
                }))
            }
            AuthSpec::Header { name, env } => {
                let value = read_env(env)?;
                self.secrets.add_header_value(&value, env);
                Ok(Some(AuthHeader {
                    name: HeaderName::try_from(name.as_str())
                        .with_context(|| format!("auth.header `{name}` is not a header name"))?,
                    value: sensitive(&value, env)?,
                }))
            }
            AuthSpec::OAuth2 {
                token_url,
                client_id_env,
                client_secret_env,
                refresh_token_env,
            } => {
                let client_secret = read_env(client_secret_env)?;
                self.secrets.add(&client_secret, client_secret_env);
                let refresh_token = read_env(refresh_token_env)?;
                self.secrets.add(&refresh_token, refresh_token_env);
                // Config allows a password or key in token_url, and an endpoint error may
                // quote its URL: scrub them too.
                if let Some(password) = token_url.password() {
                    self.secrets.add(password, "auth.oauth2.token_url");
                }
                for (name, value) in token_url.query_pairs() {
                    if crate::secrets::looks_like_secret(&name) {
                        self.secrets.add(&value, "auth.oauth2.token_url");
                    }
                }
                let client = BasicClient::new(ClientId::new(read_env(client_id_env)?))
                    .set_client_secret(ClientSecret::new(client_secret))
                    .set_token_uri(TokenUrl::from_url(token_url.clone()))
                    // Client credentials in the form body, as Salesforce and most SaaS
                    // token endpoints accept (HTTP Basic is not universal).
                    .set_auth_type(AuthType::RequestBody);
                self.token_requests.fetch_add(1, Ordering::Relaxed);
                let token = client
                    .exchange_refresh_token(&RefreshToken::new(refresh_token))
                    .request_async(&self.http)
                    .await
                    // The error names the endpoint and what it said, with every secret
                    // scrubbed: an endpoint may quote what it was sent.
                    .map_err(|err| {
                        anyhow!(
                            "OAuth2 token refresh at {} failed: {}",
                            display_url(token_url),
                            self.secrets.scrubber().scrub_string(describe(&err))
                        )
                    })?;
                let value = format!("Bearer {}", token.access_token().secret());
                self.secrets
                    .add_header_value(&value, "the OAuth2 access token");
                Ok(Some(AuthHeader {
                    name: AUTHORIZATION,
                    value: sensitive(&value, "the OAuth2 access token")?,
                }))
            }
        }
    }
}

/// What went wrong at the token endpoint, for the operator. May quote what the endpoint
/// said, so the caller scrubs it.
fn describe<E: std::error::Error>(
    err: &oauth2::RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
) -> String {
    match err {
        oauth2::RequestTokenError::ServerResponse(response) => match response.error_description() {
            Some(description) => {
                format!("the server answered `{}`: {description}", response.error())
            }
            None => format!("the server answered `{}`", response.error()),
        },
        oauth2::RequestTokenError::Request(err) => {
            format!("request error: {}", crate::error_chain::one_line(err))
        }
        oauth2::RequestTokenError::Parse(err, _) => format!("unreadable response: {err}"),
        oauth2::RequestTokenError::Other(what) => what.clone(),
    }
}

fn read_env(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => bail!("environment variable `{name}` (a credential) is empty"),
        Err(_) => bail!("environment variable `{name}` (a credential) is not set"),
    }
}

fn sensitive(value: &str, source: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| anyhow!("the credential from {source} is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}
