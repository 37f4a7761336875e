//! The request inspector: every request of a run and what the destination answered, with
//! secrets redacted before anything is written, kept in the state directory for a while.
//!
//! An operator answers "what did we send, what did it say, why was this refused" from
//! here without reading code. Entries are keyed by time, so pruning by age and by count
//! walks from the oldest.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::ledger::{StoreError, Tree};

/// What replaces a secret (the same everywhere).
pub use crate::secrets::REDACTED;

/// Headers that always carry secrets.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Retention and redaction settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectorConfig {
    pub enabled: bool,
    /// Most entries kept per sync.
    pub max_requests: usize,
    /// Entries older than this are pruned.
    pub max_age: Duration,
    /// Request and response bodies are cut to this many bytes each.
    pub max_body: usize,
}

impl Default for InspectorConfig {
    fn default() -> Self {
        InspectorConfig {
            enabled: true,
            max_requests: 10_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_body: 8 * 1024,
        }
    }
}

/// One request and its response (or why there was none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub at_ms: u64,
    pub sync: String,
    pub run: String,
    /// The send number of these records in this run (1 for the first).
    pub attempt: u32,
    pub batch_size: usize,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    /// 0 when no response came (timeout, connection error).
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub duration_ms: u64,
    /// What the connector (or the transport) made of it, e.g. `per-record`,
    /// `rate-limited`, `transient(TIMEOUT)`.
    pub verdict: String,
}

/// Redacts secrets from an exchange; kept separate so that redaction is one function with
/// its own tests.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Lower-case header names and JSON field names named by the operator.
    names: Vec<String>,
}

impl Redactor {
    pub fn new(names: &[String]) -> Self {
        Redactor {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// The URL to store: without userinfo or fragment, and with the value of every query parameter
    /// that looks like a credential (`api_key`, `token`, `sig`, ...) or is named in
    /// `redact` replaced. Config refuses credentials in base_url; this also covers a
    /// connector's own path and absolute URLs.
    pub fn url(&self, url: &str) -> String {
        let Ok(mut parsed) = reqwest::Url::parse(url) else {
            return crate::secrets::display_url_text(url);
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        // Never sent, and where an implicit OAuth flow puts a token.
        parsed.set_fragment(None);
        if let Some(query) = parsed.query() {
            let mut changed = false;
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                    if !value.is_empty()
                        && (crate::secrets::looks_like_secret(&decoded)
                            || self.names.contains(&decoded.to_ascii_lowercase()))
                    {
                        changed = true;
                        format!("{name}={REDACTED}")
                    } else {
                        pair.to_string()
                    }
                })
                .collect();
            if changed {
                parsed.set_query(Some(&pairs.join("&")));
            }
        }
        parsed.to_string()
    }

    pub fn headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                if SECRET_HEADERS.contains(&lower.as_str()) || self.names.contains(&lower) {
                    (name.clone(), REDACTED.to_string())
                } else {
                    (name.clone(), value.clone())
                }
            })
            .collect()
    }

    /// The body as text with every named JSON field's value replaced, cut to `max` bytes.
    /// Redaction happens on the whole body, before cutting, so that a cut never exposes
    /// half a secret.
    pub fn body(&self, body: &[u8], max: usize) -> String {
        if self.names.is_empty() {
            return cut_bytes(body, max);
        }
        let text = String::from_utf8_lossy(body);
        let redacted = {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(mut value) => {
                    self.json(&mut value);
                    value.to_string()
                }
                // Not JSON: a body the inspector cannot redact field by field is not kept.
                Err(_) if !text.trim().is_empty() => {
                    format!("{REDACTED}: not JSON, so named fields could not be redacted")
                }
                Err(_) => String::new(),
            }
        };
        cut_bytes(redacted.as_bytes(), max)
    }

    fn json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if self.names.contains(&key.to_ascii_lowercase()) {
                        *item = serde_json::Value::String(REDACTED.to_string());
                    } else {
                        self.json(item);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.json(item)),
            _ => {}
        }
    }
}

/// The first `max` bytes of `body` as text (ending before a character cut in two),
/// without copying the rest.
fn cut_bytes(body: &[u8], max: usize) -> String {
    if body.len() <= max {
        return String::from_utf8_lossy(body).into_owned();
    }
    let prefix = &body[..max];
    let text = match std::str::from_utf8(prefix) {
        Ok(text) => text.to_string(),
        // Cut inside a character: end before it.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&prefix[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(prefix).into_owned(),
    };
    format!("{text}… [{} bytes, cut]", body.len())
}

/// The inspector of one sync, writing into the ledger's database.
pub struct Inspector {
    tree: Arc<dyn Tree>,
    config: InspectorConfig,
    redactor: Redactor,
    seq: AtomicU64,
    written: AtomicU64,
    /// Entries in the tree: sled counts by walking every entry, too slow to do on each
    /// prune. Counted once when opened, then kept up to date.
    entries: AtomicUsize,
    /// One prune at a time, so two cannot both remove the same excess.
    pruning: Mutex<()>,
    /// The ledger it writes into, named in storage errors (see [`Inspector::at`]).
    ledger_path: Option<std::path::PathBuf>,
}

impl Inspector {
    pub fn new(tree: Arc<dyn Tree>, config: InspectorConfig, redact: &[String]) -> Self {
        Inspector {
            config,
            redactor: Redactor::new(redact),
            seq: AtomicU64::new(0),
            written: AtomicU64::new(0),
            entries: AtomicUsize::new(tree.len()),
            pruning: Mutex::new(()),
            tree,
            ledger_path: None,
        }
    }

    /// Names the ledger at `path` in storage errors (a full disk, a damaged ledger).
    pub fn at(mut self, path: &std::path::Path) -> Self {
        self.ledger_path = Some(path.to_path_buf());
        self
    }

    fn storage_error(&self, err: StoreError) -> anyhow::Error {
        match &self.ledger_path {
            Some(path) => crate::ledger::storage_error(path, "recording a request", err),
            None => err.into(),
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn max_body(&self) -> usize {
        self.config.max_body
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Stores an exchange (already redacted by the caller through `redactor`), pruning
    /// old entries now and then.
    pub fn record(&self, exchange: &Exchange) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let key = entry_key(exchange.at_ms, self.seq.fetch_add(1, Ordering::Relaxed));
        self.tree
            .insert(&key, &encode(exchange)?)
            .map_err(|err| self.storage_error(err))?;
        self.entries.fetch_add(1, Ordering::Relaxed);
        if self
            .written
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(64)
        {
            self.prune(exchange.at_ms)?;
        }
        Ok(())
    }

    /// Removes entries beyond `max_requests` and older than `max_age` (relative to
    /// `now_ms`: the clock is given, so tests need no waiting).
    pub fn prune(&self, now_ms: u64) -> Result<usize> {
        let Ok(_pruning) = self.pruning.try_lock() else {
            return Ok(0);
        };
        let oldest_kept = now_ms.saturating_sub(self.config.max_age.as_millis() as u64);
        let excess = self
            .entries
            .load(Ordering::Relaxed)
            .saturating_sub(self.config.max_requests);
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, _) = item.map_err(|err| self.storage_error(err))?;
            let at_ms = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
            if removed < excess || at_ms < oldest_kept {
                if self
                    .tree
                    .remove(&key)
                    .map_err(|err| self.storage_error(err))?
                {
                    self.entries.fetch_sub(1, Ordering::Relaxed);
                }
                removed += 1;
            } else {
                break;
            }
        }
        Ok(removed)
    }

    /// Entries, newest first, that pass `filter`, at most `limit`.
    pub fn list(&self, limit: usize, filter: impl Fn(&Exchange) -> bool) -> Result<Vec<Exchange>> {
        let mut out = Vec::new();
        // `limit` 0 is none (the check after each push would have let one through).
        if limit == 0 {
            return Ok(out);
        }
        for item in self.tree.iter_rev() {
            let (_, value) = item?;
            let exchange = decode(&value)?;
            if filter(&exchange) {
                out.push(exchange);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// The first byte of an entry stored as LZ4-compressed JSON. Bodies are mostly JSON and
/// shrink several times, and sled's cost grows with the bytes it writes; entries from
/// before compression are plain JSON (`{`) and still read.
const LZ4_TAG: u8 = 4;

fn encode(exchange: &Exchange) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(exchange)?;
    let mut bytes = Vec::with_capacity(json.len() / 2);
    bytes.push(LZ4_TAG);
    bytes.extend_from_slice(&lz4_flex::compress_prepend_size(&json));
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Result<Exchange> {
    Ok(match bytes.split_first() {
        Some((&LZ4_TAG, compressed)) => {
            serde_json::from_slice(&lz4_flex::decompress_size_prepended(compressed)?)?
        }
        _ => serde_json::from_slice(bytes)?,
    })
}

/// Time first (big-endian, so keys sort by time), then a sequence number for requests in
/// the same millisecond.
fn entry_key(at_ms: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&at_ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_nested_fields_are_redacted() {
        let r = Redactor::new(&["SSN".into(), "X-Tenant-Key".into()]);
        let headers = r.headers(&[
            ("Authorization".into(), "Bearer s3cret".into()),
            ("x-tenant-key".into(), "k".into()),
            ("content-type".into(), "application/json".into()),
        ]);
        assert_eq!(headers[0].1, REDACTED);
        assert_eq!(headers[1].1, REDACTED);
        assert_eq!(headers[2].1, "application/json");
        let body = r.body(
            br#"[{"id": 1, "ssn": "123-45-6789", "nested": {"SSN": "x", "ok": [{"ssn": 5}]}}]"#,
            10_000,
        );
        assert!(
            !body.contains("123-45") && !body.contains("\"x\"") && !body.contains(":5"),
            "{body}"
        );
        assert_eq!(body.matches(REDACTED).count(), 3);
        assert!(r.body(b"ssn=123", 100).starts_with(REDACTED));
    }

    #[test]
    fn stored_urls_carry_no_credentials() {
        let r = Redactor::new(&["Tenant".into()]);
        assert_eq!(
            r.url("https://u:pw@h.example/v1/x?api_key=k1&API-KEY=k2&tenant=t&page=2&sig=s#f"),
            "https://h.example/v1/x?api_key=[redacted]&API-KEY=[redacted]&tenant=[redacted]&page=2&sig=[redacted]"
        );
        assert_eq!(
            r.url("https://h.example/v1/x?page=2&q=a%20b"),
            "https://h.example/v1/x?page=2&q=a%20b"
        );
        assert_eq!(r.url("not a url?token=t"), "not a url…");
    }

    #[test]
    fn entries_are_compressed_and_older_plain_ones_still_read() {
        let body = format!(
            "[{}]",
            vec![r#"{"id":"c-1","email":"a@b.example"}"#; 200].join(",")
        );
        let exchange = Exchange {
            at_ms: 7,
            sync: "s".into(),
            run: "r".into(),
            attempt: 1,
            batch_size: 200,
            method: "POST".into(),
            url: "http://127.0.0.1:1/v1/records".into(),
            request_headers: vec![("content-type".into(), "application/json".into())],
            request_body: body,
            status: 200,
            response_headers: vec![],
            response_body: r#"{"accepted":200}"#.into(),
            duration_ms: 3,
            verdict: "per-record(200 delivered)".into(),
        };
        let stored = encode(&exchange).unwrap();
        let plain = serde_json::to_vec(&exchange).unwrap();
        assert!(
            stored.len() * 4 < plain.len(),
            "{} of {}",
            stored.len(),
            plain.len()
        );
        assert_eq!(decode(&stored).unwrap(), exchange);
        assert_eq!(decode(&plain).unwrap(), exchange);
    }

    #[test]
    fn bodies_are_cut_after_redaction() {
        let r = Redactor::new(&["secret".into()]);
        let long = format!(
            r#"{{"pad": "{}", "secret": "tail-secret"}}"#,
            "p".repeat(100)
        );
        let body = r.body(long.as_bytes(), 40);
        assert!(body.contains("cut") && !body.contains("tail-secret"));
        assert_eq!(
            Redactor::new(&[]).body("é".repeat(10).as_bytes(), 3),
            "é… [20 bytes, cut]"
        );
    }
}
