//! Helpers shared by the bundled connectors.
//!
//! Plain Rust with no WIT bindings: each connector generates its own bindings, so these
//! helpers speak in their own small types and the connectors map them onto the WIT ones.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// How long a destination asked to wait, read from a `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Milliseconds from when the response was received (delta-seconds form).
    AfterMs(u64),
    /// Milliseconds since the Unix epoch (HTTP-date form).
    UntilUnixMs(u64),
}

/// The value of the first header called `name`; the host gives header names in lower case.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads `Retry-After` as delta-seconds (`30`) or an HTTP-date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`). Absent or unreadable gives `None`, so that the host
/// falls back on its own backoff rather than on a made-up wait.
pub fn retry_after(headers: &[(String, String)]) -> Option<Wait> {
    let value = header(headers, "retry-after")?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64: wait as long as can be said.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Wait::AfterMs(secs.saturating_mul(1000)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let ms = when.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(Wait::UntilUnixMs(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// The fallback failure code for a status: `HTTP_503`.
pub fn http_code(status: u16) -> String {
    format!("HTTP_{status}")
}

/// The start of a response body, for a failure message: lossy UTF-8, at most `max` chars,
/// so that a huge or binary body never floods the ledger.
pub fn snippet(body: &[u8], max: usize) -> String {
    let head = &body[..body.len().min(max.saturating_mul(4))];
    let text = String::from_utf8_lossy(head);
    let text = text.trim();
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() || head.len() < body.len() {
        out.push('…');
    }
    out
}

/// The failure code of a 2xx body the host cut at its size limit.
pub const RESPONSE_TRUNCATED: &str = "RESPONSE_TRUNCATED";

/// Why a cut body stops the run: its per-record results cannot be read, and sending the
/// batch again would only be cut again.
pub const TRUNCATED_MESSAGE: &str = "the response was cut at the host's max_response_bytes, \
     so its per-record results cannot be read; raise max_response_bytes for this connector";

/// The one value every item shares: `Ok(None)` for no items, `Err` with the first two that
/// differ. The host sends one operation per batch; a connector checks rather than trusts.
pub fn one_kind<T: Copy + PartialEq>(
    items: impl IntoIterator<Item = T>,
) -> Result<Option<T>, (T, T)> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Ok(None);
    };
    match items.find(|item| *item != first) {
        Some(other) => Err((first, other)),
        None => Ok(Some(first)),
    }
}

/// A settings error, to be turned into the connector's `failure` with code `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub code: &'static str,
    pub message: String,
}

impl SettingError {
    /// A setting with a value that is not what was expected.
    pub fn invalid(key: &str, message: impl std::fmt::Display) -> Self {
        SettingError {
            code: "INVALID_SETTING",
            message: format!("setting `{key}`: {message}"),
        }
    }
}

/// An operator's settings table, checked against the keys a connector knows.
#[derive(Debug, Clone, Default)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// Refuses unknown and repeated keys: a misspelt optional setting would otherwise be
    /// silently ignored.
    pub fn parse(settings: Vec<(String, String)>, known: &[&str]) -> Result<Self, SettingError> {
        let mut map = BTreeMap::new();
        for (key, value) in settings {
            if !known.contains(&key.as_str()) {
                return Err(SettingError::invalid(
                    &key,
                    format!("unknown setting; known settings are: {}", known.join(", ")),
                ));
            }
            if map.contains_key(&key) {
                return Err(SettingError::invalid(&key, "given more than once"));
            }
            map.insert(key, value);
        }
        Ok(Settings(map))
    }

    /// An optional setting; blank counts as absent.
    pub fn optional(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A required setting; blank counts as missing.
    pub fn required(&self, key: &str) -> Result<String, SettingError> {
        self.optional(key).ok_or_else(|| SettingError {
            code: "MISSING_SETTING",
            message: format!("setting `{key}` is required"),
        })
    }

    /// An optional integer setting within `range`, or `default` when absent.
    pub fn number<T>(
        &self,
        key: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, SettingError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.optional(key) else {
            return Ok(default);
        };
        let bad = || {
            SettingError::invalid(
                key,
                format!(
                    "expected a whole number from {} to {}, got {raw:?}",
                    range.start(),
                    range.end()
                ),
            )
        };
        let n: T = raw.parse().map_err(|_| bad())?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    }
}

/// Where a connector keeps what `configure` decided: the WIT exports are free functions,
/// and an instance serves one call at a time.
pub struct Slot<T>(Mutex<Option<T>>);

impl<T: Clone> Slot<T> {
    pub const fn new() -> Self {
        Slot(Mutex::new(None))
    }

    pub fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    /// The configuration, or `None` when `configure` has not succeeded yet.
    pub fn get(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<T: Clone> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> Vec<(String, String)> {
        vec![("retry-after".into(), v.into())]
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after(&h("30")), Some(Wait::AfterMs(30_000)));
        assert_eq!(retry_after(&h(" 0 ")), Some(Wait::AfterMs(0)));
        assert_eq!(
            retry_after(&h("Wed, 21 Oct 2026 07:28:00 GMT")),
            Some(Wait::UntilUnixMs(1_792_567_680_000))
        );
        assert_eq!(
            retry_after(&h("99999999999999999999999")),
            Some(Wait::AfterMs(u64::MAX))
        );
        assert_eq!(retry_after(&h("soon")), None);
        assert_eq!(retry_after(&h("-5")), None);
        assert_eq!(retry_after(&[]), None);
    }

    #[test]
    fn settings_checks() {
        let s = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let err = Settings::parse(s(&[("objet", "x")]), &["object", "api_version"]).unwrap_err();
        assert_eq!(err.code, "INVALID_SETTING");
        assert!(err.message.contains("`objet`") && err.message.contains("object, api_version"));
        let ok =
            Settings::parse(s(&[("object", " A "), ("n", "7")]), &["object", "n", "m"]).unwrap();
        assert_eq!(ok.required("object").unwrap(), "A");
        assert_eq!(ok.required("m").unwrap_err().code, "MISSING_SETTING");
        assert_eq!(ok.number("n", 1u32, 1..=10).unwrap(), 7);
        assert_eq!(ok.number("m", 3u32, 1..=10).unwrap(), 3);
        assert!(ok.number("n", 1u32, 1..=5).is_err());
    }

    #[test]
    fn one_kind_of_items() {
        assert_eq!(one_kind(Vec::<u8>::new()), Ok(None));
        assert_eq!(one_kind([2, 2, 2]), Ok(Some(2)));
        assert_eq!(one_kind([2, 2, 3, 4]), Err((2, 3)));
    }

    #[test]
    fn snippet_is_bounded() {
        assert_eq!(snippet(b"  short ", 10), "short");
        assert_eq!(snippet(b"abcdef", 3), "abc…");
        assert_eq!(snippet(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}
