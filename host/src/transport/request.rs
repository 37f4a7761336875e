//! What the host checks before a connector's request leaves: its URL resolved against
//! base_url and allowed, its method and headers valid, host-owned headers dropped. The
//! transport and the conformance check share it, so they cannot disagree.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::Transport;
use crate::sandbox::HttpRequest;
use crate::secrets::Scrubber;

/// Why the host will not send a request a connector built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{url}` is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("`{0}` is neither an http(s) URL nor a path relative to base_url")]
    NotHttp(String),
    /// The URL's host is neither base_url's nor in `allowed_hosts` (listed, or `empty`).
    #[error(
        "a request to {host}:{port} was refused before it left: that host is not the \
         sync's base_url and not in the connector's allowed_hosts ({allowed})"
    )]
    ForbiddenHost {
        host: String,
        port: u16,
        allowed: String,
    },
    #[error("method `{0}` is not one of GET, POST, PUT, PATCH, DELETE")]
    Method(String),
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
    #[error("the value of header `{0}` is not valid")]
    HeaderValue(String),
}

impl Refusal {
    /// The same refusal with every secret in its text replaced.
    pub(super) fn scrubbed(self, scrubber: &Scrubber) -> Refusal {
        let s = |text: String| scrubber.scrub_string(text);
        match self {
            Refusal::InvalidUrl { url, reason } => Refusal::InvalidUrl {
                url: s(url),
                reason: s(reason),
            },
            Refusal::NotHttp(url) => Refusal::NotHttp(s(url)),
            Refusal::ForbiddenHost {
                host,
                port,
                allowed,
            } => Refusal::ForbiddenHost {
                host: s(host),
                port,
                allowed: s(allowed),
            },
            Refusal::Method(method) => Refusal::Method(s(method)),
            Refusal::HeaderName(name) => Refusal::HeaderName(s(name)),
            Refusal::HeaderValue(name) => Refusal::HeaderValue(s(name)),
        }
    }
}

/// A connector's request as it will be sent: checked, resolved, credentials not yet added.
#[derive(Debug)]
pub struct Prepared {
    pub method: Method,
    pub url: Url,
    /// The connector's headers, less those the host owns.
    pub headers: HeaderMap,
    /// Headers the connector set that the host owns, so dropped (lower-case names).
    pub dropped: Vec<String>,
}

/// Headers a connector may not set: the host owns credentials and framing.
const HOST_OWNED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

impl Transport {
    /// Where a request for `url` would go, or why it may not be sent.
    ///
    /// An absolute `http(s)` URL is taken as it is. Anything else is a path relative to
    /// base_url, appended to base_url's path whether or not it starts with `/`
    /// (`/v1/items` on `https://h/api` is `https://h/api/v1/items`), with base_url's
    /// query parameters kept first and the request's own after them. A fragment is never
    /// sent, so it is dropped.
    pub fn resolve(&self, url: &str) -> Result<Url, Refusal> {
        let resolved = if url.starts_with("http://") || url.starts_with("https://") {
            let mut absolute = Url::parse(url).map_err(|err| Refusal::InvalidUrl {
                url: url.to_string(),
                reason: err.to_string(),
            })?;
            absolute.set_fragment(None);
            absolute
        } else if url.contains("://") || url.starts_with("//") {
            return Err(Refusal::NotHttp(url.to_string()));
        } else {
            join(&self.base_url, url)
        };
        let host = resolved.host_str().unwrap_or_default();
        let port = resolved.port_or_known_default().unwrap_or(0);
        let same_origin = self.base_url.host_str() == Some(host)
            && self.base_url.port_or_known_default() == Some(port)
            && self.base_url.scheme() == resolved.scheme();
        if same_origin || self.allowed_hosts.iter().any(|p| p.matches(host, port)) {
            Ok(resolved)
        } else {
            Err(Refusal::ForbiddenHost {
                host: host.to_string(),
                port,
                allowed: if self.allowed_hosts.is_empty() {
                    "empty".to_string()
                } else {
                    self.allowed_hosts
                        .iter()
                        .map(|h| h.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
        }
    }

    /// Checks `request` as the host does before sending it: its URL resolved and allowed,
    /// its method one the host sends, its headers valid, those the host owns dropped.
    /// The transport and the conformance check both go through here.
    pub fn prepare(&self, request: &HttpRequest) -> Result<Prepared, Refusal> {
        let url = self.resolve(&request.url)?;
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => return Err(Refusal::Method(other.to_string())),
        };
        let mut headers = HeaderMap::new();
        let mut dropped = Vec::new();
        for (name, value) in &request.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| Refusal::HeaderName(name.clone()))?;
            // A header the host owns is dropped whatever its value.
            if HOST_OWNED.contains(&name.as_str()) {
                dropped.push(name.as_str().to_string());
                continue;
            }
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| Refusal::HeaderValue(name.to_string()))?;
            headers.append(name, value);
        }
        Ok(Prepared {
            method,
            url,
            headers,
            dropped,
        })
    }
}

/// `relative` (a path, maybe with a query) joined to `base`: appended to base's path,
/// base's query first. Scheme, host and port are base's.
fn join(base: &Url, relative: &str) -> Url {
    let relative = relative.split('#').next().unwrap_or_default();
    let (path, query) = match relative.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (relative, None),
    };
    let mut url = base.clone();
    url.set_fragment(None);
    url.set_path(&format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    ));
    let query = [base.query(), query]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    url.set_query((!query.is_empty()).then_some(query.as_str()));
    url
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::transport::HostPattern;
    use proptest::prelude::*;
    use std::time::Duration;

    /// The one check the transport and the conformance check share, case by case.
    #[test]
    fn a_request_is_prepared_or_refused_by_kind() {
        let t = transport("https://h.example/api", &[]);
        let request = |method: &str, url: &str, headers: &[(&str, &str)]| HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        };
        let ok = t
            .prepare(&request(
                "post",
                "/v1/items",
                &[("Authorization", "x\n"), ("x-id", "7")],
            ))
            .unwrap();
        assert_eq!(ok.method, Method::POST);
        assert_eq!(ok.url.as_str(), "https://h.example/api/v1/items");
        assert_eq!(ok.dropped, ["authorization"]);
        assert_eq!(ok.headers.len(), 1);
        let refused = |r: HttpRequest| t.prepare(&r).unwrap_err();
        assert!(matches!(
            refused(request("POST", "https://evil.example/x", &[])),
            Refusal::ForbiddenHost { port: 443, .. }
        ));
        assert_eq!(
            refused(request("TRACE", "/x", &[])),
            Refusal::Method("TRACE".into())
        );
        assert_eq!(
            refused(request("GET", "ftp://h.example/x", &[])),
            Refusal::NotHttp("ftp://h.example/x".into())
        );
        assert_eq!(
            refused(request("GET", "/x", &[("bad name", "1")])),
            Refusal::HeaderName("bad name".into())
        );
        assert_eq!(
            refused(request("GET", "/x", &[("x-a", "1\n")])),
            Refusal::HeaderValue("x-a".into())
        );
    }

    pub(in crate::transport) fn transport(base: &str, allowed: &[&str]) -> Transport {
        Transport::new(
            reqwest::Client::new(),
            Url::parse(base).unwrap(),
            allowed
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            Duration::from_secs(1),
            1024,
        )
    }

    #[test]
    fn paths_join_base_url_keeping_its_path_and_query() {
        // (base_url, the connector's url, where it goes)
        let cases = [
            (
                "https://h.example",
                "/v1/items",
                "https://h.example/v1/items",
            ),
            (
                "https://h.example/",
                "v1/items",
                "https://h.example/v1/items",
            ),
            (
                "https://h.example/api",
                "/bulk",
                "https://h.example/api/bulk",
            ),
            (
                "https://h.example/api/",
                "/bulk",
                "https://h.example/api/bulk",
            ),
            (
                "https://h.example/api",
                "bulk/",
                "https://h.example/api/bulk/",
            ),
            ("https://h.example/api", "", "https://h.example/api/"),
            (
                "https://h.example/api?tenant=acme",
                "/bulk",
                "https://h.example/api/bulk?tenant=acme",
            ),
            (
                "https://h.example/api?tenant=acme&region=eu",
                "/bulk?mode=upsert",
                "https://h.example/api/bulk?tenant=acme&region=eu&mode=upsert",
            ),
            (
                "http://127.0.0.1:8080/api",
                "/bulk?mode=upsert",
                "http://127.0.0.1:8080/api/bulk?mode=upsert",
            ),
            (
                "https://h.example/api?tenant=a%20b",
                "/x?q=1%262",
                "https://h.example/api/x?tenant=a%20b&q=1%262",
            ),
            (
                "https://h.example/api",
                "/bulk#part",
                "https://h.example/api/bulk",
            ),
            (
                "https://h.example/api",
                "/a b",
                "https://h.example/api/a%20b",
            ),
            // Absolute URLs on the same origin or an allowed host are taken as they are.
            (
                "https://h.example/api?tenant=acme",
                "https://h.example/other?x=1",
                "https://h.example/other?x=1",
            ),
            (
                "https://h.example/api",
                "https://login.example/token",
                "https://login.example/token",
            ),
        ];
        for (base, url, expected) in cases {
            let resolved = transport(base, &["login.example:443"]).resolve(url);
            assert_eq!(
                resolved.map(|u| u.to_string()),
                Ok(expected.to_string()),
                "{url} on {base}"
            );
        }
    }

    #[test]
    fn other_hosts_and_schemes_are_refused() {
        let t = transport("https://h.example/api?tenant=acme", &[]);
        for url in [
            "https://evil.example/x",
            "http://h.example/x",
            "https://h.example:8443/x",
            "//evil.example/x",
            "ftp://h.example/x",
        ] {
            assert!(t.resolve(url).is_err(), "{url}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A relative URL, whatever its text, stays on base_url's scheme, host and port,
        /// under its path, with its query first.
        #[test]
        fn a_joined_url_keeps_base_urls_origin_path_and_query(
            scheme in prop::sample::select(vec!["http", "https"]),
            host in "[a-z]{1,10}(\\.[a-z]{1,5}){0,2}",
            port in prop::option::of(1u16..),
            path in "(/[a-zA-Z0-9._~-]{1,8}){0,3}/?",
            query in prop::option::of("[a-z]{1,5}=[a-zA-Z0-9%]{0,6}(&[a-z]{1,5}=[a-z0-9]{0,4}){0,2}"),
            relative in "[^:]{0,40}",
        ) {
            let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query_text = query.clone().map(|q| format!("?{q}")).unwrap_or_default();
            let base = Url::parse(&format!("{scheme}://{host}{port_text}{path}{query_text}")).unwrap();
            prop_assume!(!relative.starts_with("//"));
            let t = transport(base.as_str(), &[]);
            let joined = t.resolve(&relative).unwrap();
            prop_assert_eq!(joined.scheme(), base.scheme());
            prop_assert_eq!(joined.host_str(), base.host_str());
            prop_assert_eq!(joined.port_or_known_default(), base.port_or_known_default());
            prop_assert!(joined.username().is_empty() && joined.fragment().is_none());
            // Dot segments (`..`, also as `%2e`) are resolved as URLs always are; any
            // other path stays under base_url's.
            if !relative.contains('.') && !relative.to_ascii_lowercase().contains("%2e") {
                let base_path = base.path().trim_end_matches('/');
                prop_assert!(
                    joined.path().starts_with(&format!("{base_path}/")),
                    "{} under {}", joined, base
                );
            }
            if let Some(base_query) = base.query() {
                let joined_query = joined.query().unwrap_or_default();
                prop_assert!(
                    joined_query == base_query || joined_query.starts_with(&format!("{base_query}&")),
                    "{} keeps the query of {}", joined, base
                );
            }
        }
    }
}
