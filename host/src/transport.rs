//! Sends a connector's request over HTTP: resolves its URL against the sync's base URL,
//! refuses hosts the operator did not allow, adds credentials, and bounds time and size.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::auth::AuthHeader;
use crate::config::HostPattern;
use crate::sandbox::{HttpRequest, HttpResponse};

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connector built a request the host will not send (a forbidden host, a bad
    /// method or header): the connector is at fault, so the run stops.
    Refused(String),
    /// The request was sent but failed on the way (a timeout, a refused connection):
    /// transient, so the batch is retried.
    Failed { code: String, message: String },
}

/// A response and when it arrived.
pub struct Received {
    pub response: HttpResponse,
    pub at: Instant,
}

/// Headers a connector may not set: the host owns credentials and framing.
pub(crate) const HOST_OWNED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

pub struct Transport {
    client: reqwest::Client,
    base_url: Url,
    allowed_hosts: Vec<HostPattern>,
    timeout: Duration,
    max_response_bytes: usize,
}

impl Transport {
    pub fn new(
        client: reqwest::Client,
        base_url: Url,
        allowed_hosts: Vec<HostPattern>,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Self {
        Transport {
            client,
            base_url,
            allowed_hosts,
            timeout,
            max_response_bytes,
        }
    }

    /// Where a request for `url` would go, or why it may not be sent.
    pub fn resolve(&self, url: &str) -> Result<Url, SendError> {
        let resolved = if url.starts_with("http://") || url.starts_with("https://") {
            Url::parse(url)
                .map_err(|err| SendError::Refused(format!("`{url}` is not a valid URL: {err}")))?
        } else if url.contains("://") || url.starts_with("//") {
            return Err(SendError::Refused(format!(
                "`{url}` is neither an http(s) URL nor a path relative to base_url"
            )));
        } else {
            let base = self.base_url.as_str().trim_end_matches('/');
            let path = url.trim_start_matches('/');
            Url::parse(&format!("{base}/{path}")).map_err(|err| {
                SendError::Refused(format!("`{url}` does not join base_url {base}: {err}"))
            })?
        };
        let host = resolved.host_str().unwrap_or_default();
        let port = resolved.port_or_known_default().unwrap_or(0);
        let same_origin = self.base_url.host_str() == Some(host)
            && self.base_url.port_or_known_default() == Some(port)
            && self.base_url.scheme() == resolved.scheme();
        if same_origin || self.allowed_hosts.iter().any(|p| p.matches(host, port)) {
            Ok(resolved)
        } else {
            Err(SendError::Refused(format!(
                "a request to {host}:{port} was refused before it left: that host is not the \
                 sync's base_url and not in the connector's allowed_hosts ({})",
                if self.allowed_hosts.is_empty() {
                    "empty".to_string()
                } else {
                    self.allowed_hosts
                        .iter()
                        .map(|h| h.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )))
        }
    }

    pub async fn send(
        &self,
        request: &HttpRequest,
        auth: Option<&AuthHeader>,
    ) -> Result<Received, SendError> {
        let url = self.resolve(&request.url)?;
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => {
                return Err(SendError::Refused(format!(
                    "method `{other}` is not one of GET, POST, PUT, PATCH, DELETE"
                )));
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| SendError::Refused(format!("`{name}` is not a valid header name")))?;
            if HOST_OWNED.contains(&name.as_str()) {
                continue;
            }
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                SendError::Refused(format!("the value of header `{name}` is not valid"))
            })?;
            headers.append(name, value);
        }
        if let Some(auth) = auth {
            headers.insert(auth.name.clone(), auth.value.clone());
        }

        let mut response = self
            .client
            .request(method, url)
            .headers(headers)
            .timeout(self.timeout)
            .body(request.body.clone())
            .send()
            .await
            .map_err(failed)?;
        let at = Instant::now();
        let received_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            let room = self.max_response_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                tracing::warn!(
                    limit = self.max_response_bytes,
                    "response body cut at max_response_bytes"
                );
                break;
            }
        }
        Ok(Received {
            response: HttpResponse {
                status,
                headers,
                body,
                received_at_ms,
            },
            at,
        })
    }
}

fn failed(err: reqwest::Error) -> SendError {
    let code = if err.is_timeout() {
        "TIMEOUT"
    } else if err.is_connect() {
        "CONNECTION_FAILED"
    } else {
        "HTTP_TRANSPORT"
    };
    SendError::Failed {
        code: code.to_string(),
        message: error_chain(&err),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
