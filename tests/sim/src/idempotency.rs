//! Idempotency keys as Stripe honours them: the first request with a key is applied and
//! its response kept; a later request with the same key gets that response again, and is
//! not applied. A key reused for another request is refused, and so is one whose first
//! request is still being handled.
//!
//! Only responses of requests that were applied, whole or in part, or refused for their
//! records, are kept: a request turned away before it ran (credentials, rate limit, an
//! error burst, a row lock refusing the batch) may be sent again with its key and run.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode, header::CONTENT_TYPE};

use crate::faults::StableHash;
use crate::outcome;

/// The responses kept by key.
#[derive(Default)]
pub(crate) struct Replays {
    seen: Mutex<HashMap<String, Entry>>,
}

enum Entry {
    /// The first request with the key is being handled.
    Pending { fingerprint: u64 },
    Done {
        fingerprint: u64,
        status: StatusCode,
        content_type: Option<axum::http::HeaderValue>,
        body: Bytes,
    },
}

/// What to do with a request, given its idempotency key.
pub(crate) enum Claim {
    /// No key: handle it as usual.
    Unkeyed,
    /// A new key: handle it, then [`Replays::settle`] it.
    Fresh { key: String, fingerprint: u64 },
    /// Seen before: answer with this, apply nothing.
    Replay(Response<Body>),
    /// The key's first request is still being handled.
    InUse,
    /// The key was used for a request with another method, path or body.
    Reused,
}

impl Replays {
    /// Claims `key` for a request of `method` to `path` with `body`.
    pub(crate) fn claim(&self, key: Option<&str>, method: &str, path: &str, body: &[u8]) -> Claim {
        let Some(key) = key else {
            return Claim::Unkeyed;
        };
        let mut hash = StableHash::new(0);
        for part in [method.as_bytes(), path.as_bytes(), body] {
            hash.u64(part.len() as u64);
            hash.bytes(part);
        }
        let fingerprint = hash.finish();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match seen.get(key) {
            None => {
                seen.insert(key.to_owned(), Entry::Pending { fingerprint });
                Claim::Fresh {
                    key: key.to_owned(),
                    fingerprint,
                }
            }
            Some(Entry::Pending { fingerprint: f } | Entry::Done { fingerprint: f, .. })
                if *f != fingerprint =>
            {
                Claim::Reused
            }
            Some(Entry::Pending { .. }) => Claim::InUse,
            Some(Entry::Done {
                status,
                content_type,
                body,
                ..
            }) => {
                let mut response = Response::new(Body::from(body.clone()));
                *response.status_mut() = *status;
                if let Some(value) = content_type {
                    response.headers_mut().insert(CONTENT_TYPE, value.clone());
                }
                Claim::Replay(response)
            }
        }
    }

    /// Keeps the response of a fresh claim when its request ran (outcome `label`), or
    /// frees the key for a later request when it did not; gives the response back.
    pub(crate) async fn settle(
        &self,
        claim: Claim,
        label: &str,
        response: Response<Body>,
    ) -> Response<Body> {
        let Claim::Fresh { key, fingerprint } = claim else {
            return response;
        };
        let ran = [outcome::OK, outcome::PARTIAL, outcome::BATCH_REJECTED].contains(&label);
        if !ran {
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            return response;
        }
        let (parts, body) = response.into_parts();
        // The simulators' bodies are whole in memory: reading one back cannot fail.
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let entry = Entry::Done {
            fingerprint,
            status: parts.status,
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            body: body.clone(),
        };
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, entry);
        Response::from_parts(parts, Body::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(response: Response<Body>) -> (u16, String) {
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_key_replays_its_first_answer_once_it_ran() {
        let replays = Replays::default();
        assert!(matches!(
            replays.claim(None, "POST", "/r", b"[]"),
            Claim::Unkeyed
        ));
        let first = replays.claim(Some("k"), "POST", "/r", b"[1]");
        assert!(matches!(first, Claim::Fresh { .. }));
        assert!(matches!(
            replays.claim(Some("k"), "POST", "/r", b"[1]"),
            Claim::InUse
        ));
        assert!(matches!(
            replays.claim(Some("k"), "POST", "/r", b"[2]"),
            Claim::Reused
        ));
        let mut answer = Response::new(Body::from("{\"n\":1}"));
        *answer.status_mut() = StatusCode::CREATED;
        let answer = replays.settle(first, outcome::OK, answer).await;
        assert_eq!(text(answer).await, (201, "{\"n\":1}".into()));
        let Claim::Replay(again) = replays.claim(Some("k"), "POST", "/r", b"[1]") else {
            panic!("a replay")
        };
        assert_eq!(text(again).await, (201, "{\"n\":1}".into()));
        assert!(matches!(
            replays.claim(Some("k"), "PUT", "/r", b"[1]"),
            Claim::Reused
        ));
    }

    #[tokio::test]
    async fn a_request_that_did_not_run_frees_its_key() {
        let replays = Replays::default();
        let first = replays.claim(Some("k"), "POST", "/r", b"[1]");
        let refused = Response::new(Body::from("locked"));
        replays.settle(first, outcome::CONFLICT, refused).await;
        assert!(matches!(
            replays.claim(Some("k"), "POST", "/r", b"[1]"),
            Claim::Fresh { .. }
        ));
    }
}
