//! Which hosts a connector's requests may go to besides the sync's base_url: the
//! `allowed_hosts` patterns, parsed from the config and applied by the transport.

use std::fmt;

/// An entry of `allowed_hosts`: `host`, `host:port`, or `*.domain` with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = match text.rsplit_once(':') {
            // A bracketed IPv6 address without a port has colons but ends in `]`.
            Some((host, port)) if !port.ends_with(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: `{port}` is not a port number"))?;
                (host.to_string(), Some(port))
            }
            _ => (text.clone(), None),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "`{text}` is not a host: expected `host`, `host:port` or `*.domain`"
            ));
        }
        Ok(HostPattern { host, port })
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(p.matches("127.0.0.1", 8080));
        assert!(!p.matches("127.0.0.1", 8081));
        let p = HostPattern::parse("API.example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(!p.matches("evil.com", 443));
        let p = HostPattern::parse("*.example.com:443").unwrap();
        assert!(p.matches("a.example.com", 443));
        assert!(!p.matches("example.com", 443));
        assert!(!p.matches("a.example.com.evil.com", 443));
        assert!(HostPattern::parse("http://x/").is_err());
        assert!(HostPattern::parse("x:notaport").is_err());
    }
}
