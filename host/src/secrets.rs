//! Secrets: every credential value the host adds to a request, and the one scrubber that
//! takes them out of whatever comes back from a destination.
//!
//! A destination may echo a credential: into an error code or message, a field list, a
//! response header, a body. The transport scrubs every response (and every transport
//! error) with [`Secrets::scrubber`] before returning it, so that the connector, the
//! ledger, the inspector, logs and reports only ever see `[redacted]`, and no later path
//! can forget to redact. Credentials in a sync's `base_url` are refused at config time
//! ([`url_credentials`]), so that no URL the host stores can carry one either. The log's
//! writer scrubs every line of every secret alive once more ([`live`]).

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use reqwest::Url;

/// What replaces a secret, everywhere.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed: a short string (`admin`, `1234`) turns up
/// by chance in ordinary responses, and replacing it would corrupt answers the connector
/// must read, while a secret that short protects little anyway. A warning names the
/// variable of such a credential (never its value).
pub const MIN_SECRET_LEN: usize = 8;

/// A cut body that ends with at least this many bytes of the start of a secret has that
/// tail replaced too, so that a cut never shows half a token.
const MIN_PARTIAL_LEN: usize = 4;

/// The credentials of one sync that the host has added to requests so far, shared by the
/// credentials (which add to it, on the first fetch and on every renewal) and the
/// transport (which scrubs with it). Values are only ever added: a token that was renewed
/// away is still a secret when a destination echoes it later.
#[derive(Clone)]
pub struct Secrets {
    current: Arc<RwLock<Arc<Scrubber>>>,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets::new()
    }
}

impl Secrets {
    /// An empty set, which the log's writer scrubs with from now on (see [`live`]).
    pub fn new() -> Self {
        let current = Arc::new(RwLock::new(Arc::new(Scrubber::default())));
        live::register(&current);
        Secrets { current }
    }

    /// Adds a credential value (a token, a password, a client secret). `source` names
    /// where it came from (an environment variable) for the warning about short values.
    pub fn add(&self, value: &str, source: &str) {
        self.extend(vec![value.as_bytes().to_vec()], source);
    }

    /// Adds the value of a header the host sets: the whole value, the credential after
    /// an auth scheme (`Bearer t`: `t`), and for `Basic <base64>` also the decoded
    /// `user:password` and the password.
    pub fn add_header_value(&self, value: &str, source: &str) {
        let mut values = vec![value.as_bytes().to_vec()];
        if let Some((scheme, credential)) = value.split_once(' ')
            && !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            let credential = credential.trim();
            values.push(credential.as_bytes().to_vec());
            if scheme.eq_ignore_ascii_case("basic")
                && let Ok(pair) = STANDARD
                    .decode(credential)
                    .or_else(|_| STANDARD_NO_PAD.decode(credential))
            {
                if let Some(colon) = pair.iter().position(|&b| b == b':') {
                    values.push(pair[colon + 1..].to_vec());
                }
                values.push(pair);
            }
        }
        self.extend(values, source);
    }

    /// The scrubber for every secret added so far.
    pub fn scrubber(&self) -> Arc<Scrubber> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn extend(&self, values: Vec<Vec<u8>>, source: &str) {
        let mut short = false;
        {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut all = current.values.clone();
            for value in values {
                if value.is_empty() || all.contains(&value) {
                    continue;
                }
                short |= value.len() < MIN_SECRET_LEN;
                all.push(value);
            }
            if all.len() != current.values.len() {
                *current = Arc::new(Scrubber::new(all));
            }
        }
        // Logged with the lock released: the log's writer reads every set of secrets.
        if short {
            tracing::warn!(
                source,
                "a credential (or part of one) from {source} is shorter than \
                 {MIN_SECRET_LEN} bytes: too short to scrub safely from what destinations \
                 send back"
            );
        }
    }
}

/// Replaces every occurrence of a set of secrets, and of the forms a destination may
/// echo them in, by [`REDACTED`]. Built once per change of the set; one multi-pattern
/// pass over each text, which is returned as is (not copied) when it holds no secret.
pub struct Scrubber {
    /// The secrets themselves, as added.
    values: Vec<Vec<u8>>,
    /// Every form of every secret at least `MIN_SECRET_LEN` long.
    patterns: Vec<Vec<u8>>,
    /// `None` when there is nothing to scrub.
    matcher: Option<AhoCorasick>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Scrubber")
            .field("secrets", &self.values.len())
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Scrubber::new(Vec::new())
    }
}

impl Scrubber {
    pub fn new(values: Vec<Vec<u8>>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values.iter().filter(|v| v.len() >= MIN_SECRET_LEN) {
            for form in forms(value) {
                if form.len() >= MIN_SECRET_LEN && !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        let matcher = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                // Percent-encoding may use either case of hex digits, and header names
                // come back lower-cased. Matching a secret in another case too costs
                // nothing that matters and hides a near-copy.
                .ascii_case_insensitive(true)
                // Standard semantics allow overlapping search, so that two secrets
                // overlapping in a text are both removed whole.
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .expect("a few short literal patterns always build")
        });
        Scrubber {
            values,
            patterns,
            matcher,
        }
    }

    /// Whether there is no secret to scrub.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `bytes` with every secret replaced; borrowed when there was none.
    pub fn scrub<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let spans = self.spans(bytes);
        if spans.is_empty() {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len() + spans.len() * REDACTED.len());
        let mut at = 0;
        for (start, end) in spans {
            out.extend_from_slice(&bytes[at..start]);
            out.extend_from_slice(REDACTED.as_bytes());
            at = end;
        }
        out.extend_from_slice(&bytes[at..]);
        Cow::Owned(out)
    }

    /// `text` with every secret replaced; borrowed when there was none.
    pub fn scrub_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.scrub(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // A match of valid UTF-8 in valid UTF-8 starts and ends on character
            // boundaries, so the result is UTF-8; lossy only as a safety net.
            Cow::Owned(bytes) => Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// An owned text scrubbed, reusing it when it holds no secret.
    pub fn scrub_string(&self, text: String) -> String {
        match self.scrub_str(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(scrubbed) => scrubbed,
        }
    }

    /// An owned body scrubbed, reusing it when it holds no secret. `cut` says the body
    /// was cut short: then a tail that is the start of a secret is replaced too.
    pub fn scrub_body(&self, body: Vec<u8>, cut: bool) -> Vec<u8> {
        let mut body = match self.scrub(&body) {
            Cow::Borrowed(_) => body,
            Cow::Owned(scrubbed) => scrubbed,
        };
        if cut {
            let partial = self.partial_tail(&body);
            if partial > 0 {
                body.truncate(body.len() - partial);
                body.extend_from_slice(REDACTED.as_bytes());
            }
        }
        body
    }

    /// The spans of `bytes` covered by a secret, sorted and merged: found as they are,
    /// and in the text with its escapes decoded, so that a secret escaped only in part
    /// (`\u0050lain`, `%2Bkey`, any mix a serializer chooses) is found too.
    fn spans(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let Some(matcher) = &self.matcher else {
            return Vec::new();
        };
        let mut spans: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(bytes)
            .map(|m| (m.start(), m.end()))
            .collect();
        for decoded in [Decoded::json(bytes), Decoded::percent(bytes)]
            .into_iter()
            .flatten()
        {
            spans.extend(
                matcher
                    .find_overlapping_iter(&decoded.bytes)
                    .map(|m| decoded.origin(m.start(), m.end())),
            );
        }
        if spans.len() > 1 {
            spans.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
            for (start, end) in spans {
                match merged.last_mut() {
                    Some(last) if start <= last.1 => last.1 = last.1.max(end),
                    _ => merged.push((start, end)),
                }
            }
            spans = merged;
        }
        spans
    }

    /// The length of the longest tail of `bytes` (at least `MIN_PARTIAL_LEN`) that is the
    /// start, but not the whole, of a secret's form; 0 when none.
    fn partial_tail(&self, bytes: &[u8]) -> usize {
        let mut longest = 0;
        for pattern in &self.patterns {
            let most = (pattern.len() - 1).min(bytes.len());
            for len in (MIN_PARTIAL_LEN.max(longest + 1)..=most).rev() {
                if bytes[bytes.len() - len..].eq_ignore_ascii_case(&pattern[..len]) {
                    longest = len;
                    break;
                }
            }
        }
        longest
    }
}

/// A text with its escapes decoded, and where each decoded byte came from.
struct Decoded {
    bytes: Vec<u8>,
    /// For each decoded byte, where in the original the byte or escape it was decoded
    /// from starts (4 bytes a byte: a body of megabytes costs a few times its size, once).
    starts: Vec<u32>,
    /// The original's length.
    len: usize,
}

impl Decoded {
    /// JSON string escapes decoded (`\uXXXX`, surrogate pairs, `\/`, `\"`...); `None`
    /// when there is no `\u` (the other escapes a secret's own forms already cover).
    fn json(text: &[u8]) -> Option<Decoded> {
        if !text.windows(2).any(|pair| pair == b"\\u") {
            return None;
        }
        let mut out = Decoded::with_capacity(text.len())?;
        let mut at = 0;
        while at < text.len() {
            let (char, len) = match text[at..] {
                [b'\\', b'u', ..] => match json_unicode(&text[at..]) {
                    Some((char, len)) => (Some(char), len),
                    None => (None, 1),
                },
                [b'\\', e, ..] => match e {
                    b'"' | b'\\' | b'/' => (Some(e as char), 2),
                    b'n' => (Some('\n'), 2),
                    b't' => (Some('\t'), 2),
                    b'r' => (Some('\r'), 2),
                    b'b' => (Some('\u{8}'), 2),
                    b'f' => (Some('\u{c}'), 2),
                    _ => (None, 1),
                },
                _ => (None, 1),
            };
            match char {
                Some(char) => out.push_char(char, at),
                None => out.push(text[at], at),
            }
            at += len;
        }
        Some(out)
    }

    /// Percent escapes decoded (`%2B`); `None` when there is none.
    fn percent(text: &[u8]) -> Option<Decoded> {
        if !text.contains(&b'%') {
            return None;
        }
        let mut out = Decoded::with_capacity(text.len())?;
        let mut at = 0;
        while at < text.len() {
            let hex = |i: usize| text.get(i).and_then(|&b| (b as char).to_digit(16));
            match (text[at], hex(at + 1), hex(at + 2)) {
                (b'%', Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8, at);
                    at += 3;
                }
                (byte, _, _) => {
                    out.push(byte, at);
                    at += 1;
                }
            }
        }
        Some(out)
    }

    /// `None` for a text too long to index with 32 bits (no response is).
    fn with_capacity(len: usize) -> Option<Decoded> {
        u32::try_from(len).ok()?;
        Some(Decoded {
            bytes: Vec::with_capacity(len),
            starts: Vec::with_capacity(len),
            len,
        })
    }

    fn push(&mut self, byte: u8, start: usize) {
        self.bytes.push(byte);
        self.starts.push(start as u32);
    }

    fn push_char(&mut self, char: char, start: usize) {
        let mut buf = [0u8; 4];
        for &byte in char.encode_utf8(&mut buf).as_bytes() {
            self.push(byte, start);
        }
    }

    /// The span of the original that decoded bytes `start..end` came from: from where the
    /// first one's escape starts to where the last one's ends (where the next escape, or
    /// byte, starts).
    fn origin(&self, start: usize, end: usize) -> (usize, usize) {
        let last = self.starts[end - 1];
        let after = self.starts[end..]
            .iter()
            .find(|&&next| next > last)
            .map_or(self.len, |&next| next as usize);
        (self.starts[start] as usize, after)
    }
}

/// The character of a `\uXXXX` escape (or a surrogate pair of two) at the start of
/// `text`, and the length of its escape.
fn json_unicode(text: &[u8]) -> Option<(char, usize)> {
    let unit = |at: usize| -> Option<u32> {
        let digits = text.get(at..at + 6)?;
        if &digits[..2] != b"\\u" {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&digits[2..]).ok()?, 16).ok()
    };
    let first = unit(0)?;
    if (0xD800..0xDC00).contains(&first) {
        let second = unit(6).filter(|u| (0xDC00..0xE000).contains(u))?;
        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
        return char::from_u32(code).map(|c| (c, 12));
    }
    char::from_u32(first).map(|c| (c, 6))
}

/// Percent-encoding as the common encoders do it: everything but letters and digits;
/// RFC 3986 unreserved kept; HTML forms (space as `+`); JavaScript's
/// `encodeURIComponent`; and a path segment's looser set.
const STRICT: &AsciiSet = NON_ALPHANUMERIC;
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');
const COMPONENT: &AsciiSet = &UNRESERVED
    .remove(b'!')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
const PATH: &AsciiSet = &COMPONENT
    .remove(b'/')
    .remove(b':')
    .remove(b'@')
    .remove(b'+')
    .remove(b'=')
    .remove(b',')
    .remove(b';')
    .remove(b'$')
    .remove(b'&');

/// The forms in which a destination may send a secret back: as is, in base64 (standard
/// and URL-safe, at each of the three alignments it can have inside a longer encoded
/// text), percent-encoded, and escaped in a JSON string.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![
        secret.to_vec(),
        // Whole, with its padding, so that no stray `=` is left.
        STANDARD.encode(secret).into_bytes(),
        URL_SAFE.encode(secret).into_bytes(),
    ];
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(secret).into_bytes());
        // Inside a longer encoded text, the secret starts at some offset modulo 3: from
        // the next multiple of 3 on, its encoding does not depend on what precedes it.
        for skip in 0..3 {
            let aligned = &secret[skip.min(secret.len())..];
            let whole = &aligned[..aligned.len() - aligned.len() % 3];
            if whole.len() >= 6 {
                forms.push(engine.encode(whole).into_bytes());
            }
        }
    }
    for set in [STRICT, UNRESERVED, COMPONENT, PATH] {
        forms.push(percent_encode(secret, set).to_string().into_bytes());
    }
    forms.push(
        percent_encode(secret, FORM)
            .to_string()
            .replace("%20", "+")
            .into_bytes(),
    );
    if let Ok(text) = std::str::from_utf8(secret) {
        // A JSON string of the text, without its quotes.
        let json = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
        let inner = json[1..json.len() - 1].to_string();
        if inner.contains('/') {
            forms.push(inner.replace('/', "\\/").into_bytes());
        }
        forms.push(inner.into_bytes());
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Query parameter names that carry credentials, compared without case and without `-`,
/// `_` or `.`: `api_key`, `API-Key` and `apikey` are one name.
const SECRET_PARAMETERS: &[&str] = &[
    "token",
    "key",
    "apikey",
    "xapikey",
    "secret",
    "password",
    "passwd",
    "accesstoken",
    "authtoken",
    "apitoken",
    "refreshtoken",
    "idtoken",
    "sessiontoken",
    "clientsecret",
    "apisecret",
    "sig",
    "signature",
];

/// Whether a query parameter named `name` looks like it carries a credential.
pub fn looks_like_secret(name: &str) -> bool {
    let compact: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_PARAMETERS.contains(&compact.as_str())
}

/// What in `url` is a credential: userinfo, or query parameters whose names look like
/// secrets (named, never with their values). Empty when there is none.
pub fn url_credentials(url: &Url) -> Vec<String> {
    let mut found = Vec::new();
    if !url.username().is_empty() || url.password().is_some() {
        found.push("a user name or password (`user:password@`)".to_string());
    }
    let mut names: Vec<String> = url
        .query_pairs()
        .map(|(name, _)| name.into_owned())
        .filter(|name| looks_like_secret(name))
        .collect();
    names.dedup();
    for name in names {
        found.push(format!("the query parameter `{name}`"));
    }
    found
}

/// `url` without userinfo, query or fragment: safe to print in an error.
pub fn display_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let query = url.query().is_some();
    url.set_query(None);
    url.set_fragment(None);
    let mut text = url.to_string();
    if query {
        text.push_str("?…");
    }
    text
}

/// A text meant as a URL but not one, shown without what could be credentials: the part
/// before an `@` in its authority, and its query and fragment.
pub fn display_url_text(text: &str) -> String {
    let mut text = text.to_string();
    if let Some(cut) = text.find(['?', '#']) {
        text.truncate(cut);
        text.push('…');
    }
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..].find('/').map_or(text.len(), |i| start + i);
    if let Some(at) = text[start..end].rfind('@') {
        text.replace_range(start..start + at, REDACTED);
    }
    text
}

pub mod live;
#[cfg(test)]
mod tests;
