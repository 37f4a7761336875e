//! Sends a connector's request over HTTP: resolves its URL against the sync's base URL,
//! refuses hosts the operator did not allow, adds credentials, and bounds time and size.
//!
//! Everything that comes back (response headers and body, the text of a transport error)
//! is scrubbed of the sync's secrets here, before `send` returns: this is the one place
//! on the way in, so the connector, the ledger, the inspector, logs and reports only ever
//! see `[redacted]` where a destination echoed a credential.

use std::time::{Duration, Instant};

use reqwest::Url;

use crate::auth::AuthHeader;
use crate::sandbox::{HttpRequest, HttpResponse};
use crate::secrets::{Scrubber, Secrets};

mod hosts;
mod request;

pub use hosts::HostPattern;
pub use request::{Prepared, Refusal};

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connector built a request the host will not send (a forbidden host, a bad
    /// method or header): the connector is at fault, so the run stops.
    Refused(Refusal),
    /// The request was sent but failed on the way (a timeout, a refused connection):
    /// transient, so the batch is retried.
    Failed { code: String, message: String },
}

/// A response and when it arrived.
pub struct Received {
    pub response: HttpResponse,
    pub at: Instant,
}

pub struct Transport {
    client: reqwest::Client,
    base_url: Url,
    allowed_hosts: Vec<HostPattern>,
    timeout: Duration,
    max_response_bytes: usize,
    /// What to scrub from everything that comes back.
    secrets: Secrets,
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
            secrets: Secrets::new(),
        }
    }

    /// Scrubs responses of `secrets` (the sync's credentials, as they are renewed).
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Sends `request` with `auth`, and returns the response (or why there was none)
    /// scrubbed of every secret.
    pub async fn send(
        &self,
        request: &HttpRequest,
        auth: Option<&AuthHeader>,
    ) -> Result<Received, SendError> {
        let sent = self.exchange(request, auth).await;
        // Taken after the answer: a renewal while the request was out only adds secrets.
        let scrubber = self.secrets.scrubber();
        match sent {
            Ok((mut received, cut)) => {
                if !scrubber.is_empty() {
                    let response = &mut received.response;
                    for (name, value) in &mut response.headers {
                        *name = scrubber.scrub_string(std::mem::take(name));
                        *value = scrubber.scrub_string(std::mem::take(value));
                    }
                    response.body = scrubber.scrub_body(std::mem::take(&mut response.body), cut);
                }
                Ok(received)
            }
            Err(err) => Err(scrub_error(err, &scrubber)),
        }
    }

    /// Sends `request`; the response as received, and whether its body was cut at
    /// `max_response_bytes`.
    async fn exchange(
        &self,
        request: &HttpRequest,
        auth: Option<&AuthHeader>,
    ) -> Result<(Received, bool), SendError> {
        let Prepared {
            method,
            url,
            mut headers,
            ..
        } = self.prepare(request).map_err(SendError::Refused)?;
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
        let received_at_ms = crate::clock::now_ms();
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
        let mut cut = false;
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            let room = self.max_response_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                cut = true;
                tracing::warn!(
                    limit = self.max_response_bytes,
                    "response body cut at max_response_bytes"
                );
                break;
            }
        }
        Ok((
            Received {
                response: HttpResponse {
                    status,
                    headers,
                    body,
                    truncated: cut,
                    received_at_ms,
                },
                at,
            },
            cut,
        ))
    }
}

fn scrub_error(err: SendError, scrubber: &Scrubber) -> SendError {
    match err {
        SendError::Refused(why) => SendError::Refused(why.scrubbed(scrubber)),
        SendError::Failed { code, message } => SendError::Failed {
            code,
            message: scrubber.scrub_string(message),
        },
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
        message: crate::error_chain::one_line(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::request::tests::transport;
    use super::*;

    #[tokio::test]
    async fn transport_errors_are_scrubbed() {
        // A closed port: the error quotes the URL, here holding what is also a secret.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let secrets = Secrets::new();
        secrets.add("path-that-is-a-5ecret", "TEST");
        let t = transport(&base, &[]).with_secrets(secrets);
        let request = HttpRequest {
            method: "POST".into(),
            url: "/v1/path-that-is-a-5ecret".into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        match t.send(&request, None).await {
            Err(SendError::Failed { code, message }) => {
                assert_eq!(code, "CONNECTION_FAILED");
                assert!(
                    message.contains("/v1/[redacted]") && !message.contains("5ecret"),
                    "{message}"
                );
            }
            other => panic!("{:?}", other.map(|r| r.response.status)),
        }
    }
}
