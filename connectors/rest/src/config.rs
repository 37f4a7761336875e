//! The operator's settings, checked once by `configure`.

use crate::sluice::connector::types::{Failure, Limits, Operation};

const KNOWN_SETTINGS: &[&str] = &[
    "path",
    "method",
    "records_field",
    "results_pointer",
    "id_field",
    "permanent_codes",
    "retry_codes",
    "max_batch_records",
    "max_batch_bytes",
    "delete_path",
    "delete_method",
    "idempotency_header",
];

/// Headers the host or this connector sets on every request: naming one as the
/// idempotency header would send it twice.
const RESERVED_HEADERS: &[&str] = &["authorization", "content-type", "content-length", "host"];

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) path: String,
    pub(crate) method: String,
    pub(crate) records_field: Option<String>,
    pub(crate) results_pointer: Option<String>,
    pub(crate) id_field: Option<String>,
    pub(crate) permanent_codes: Vec<String>,
    pub(crate) retry_codes: Vec<String>,
    pub(crate) limits: Limits,
    pub(crate) delete_path: Option<String>,
    pub(crate) delete_method: String,
    pub(crate) idempotency_header: Option<String>,
}

/// The operations a configuration can build requests for.
pub(crate) fn operations(config: &Config) -> Vec<Operation> {
    let mut operations = vec![Operation::Upsert];
    if config.delete_path.is_some() {
        operations.push(Operation::Delete);
    }
    operations
}

/// An RFC 9110 token: what a header name may be made of.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn parse_config(settings: Vec<(String, String)>) -> Result<Config, Failure> {
    use common::SettingError as E;
    let s = common::Settings::parse(settings, KNOWN_SETTINGS)?;
    let url = |key: &str, path: String| -> Result<String, Failure> {
        if path.starts_with('/') || path.starts_with("https://") || path.starts_with("http://") {
            Ok(path)
        } else {
            let message = format!("expected /a/path or an http(s):// URL, got {path:?}");
            Err(E::invalid(key, message).into())
        }
    };
    let method = |key: &str, allowed: &[&str]| -> Result<String, Failure> {
        let method = s
            .optional(key)
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if allowed.contains(&method.as_str()) {
            Ok(method)
        } else {
            let message = format!("expected {}, got {method:?}", allowed.join(", "));
            Err(E::invalid(key, message).into())
        }
    };
    let path = url("path", s.required("path")?)?;
    let method_ = method("method", &["POST", "PUT", "PATCH"])?;
    let delete_path = s
        .optional("delete_path")
        .map(|p| url("delete_path", p))
        .transpose()?;
    let delete_method = method("delete_method", &["POST", "PUT", "PATCH", "DELETE"])?;
    if delete_path.is_none() && s.optional("delete_method").is_some() {
        return Err(E::invalid("delete_method", "only applies when delete_path is set").into());
    }
    let idempotency_header = s.optional("idempotency_header");
    if let Some(name) = &idempotency_header {
        if !is_token(name) {
            let message = format!("{name:?} is not a valid header name");
            return Err(E::invalid("idempotency_header", message).into());
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            let message = format!("{name} is set by the host or the connector");
            return Err(E::invalid("idempotency_header", message).into());
        }
    }
    let results_pointer = s.optional("results_pointer");
    if let Some(p) = &results_pointer
        && !p.starts_with('/')
    {
        return Err(E::invalid(
            "results_pointer",
            format!("expected a JSON pointer like /results, got {p:?}"),
        )
        .into());
    }
    let codes = |key: &str| -> Vec<String> {
        s.optional(key)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (permanent_codes, retry_codes) = (codes("permanent_codes"), codes("retry_codes"));
    if let Some(code) = permanent_codes.iter().find(|c| retry_codes.contains(c)) {
        return Err(E::invalid("retry_codes", format!("{code} is also in permanent_codes")).into());
    }
    // These only read per-record results: without a pointer they would be silently unused.
    for key in ["id_field", "permanent_codes", "retry_codes"] {
        if results_pointer.is_none() && s.optional(key).is_some() {
            return Err(E::invalid(key, "only applies when results_pointer is set").into());
        }
    }
    Ok(Config {
        path,
        method: method_,
        records_field: s.optional("records_field"),
        results_pointer,
        id_field: s.optional("id_field"),
        permanent_codes,
        retry_codes,
        limits: Limits {
            max_batch_records: s.number("max_batch_records", 1000, 1..=100_000)?,
            max_batch_bytes: s.number("max_batch_bytes", 10_000_000, 1..=u64::MAX)?,
        },
        delete_path,
        delete_method,
        idempotency_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{config, settings};

    #[test]
    fn configure_checks_settings() {
        let c = config(&[]);
        assert_eq!(
            (
                c.method.as_str(),
                c.limits.max_batch_records,
                c.limits.max_batch_bytes
            ),
            ("POST", 1000, 10_000_000)
        );
        for bad in [
            &[("path", "/x"), ("pth", "/y")][..],
            &[("path", "x")],
            &[("path", "/x"), ("method", "GET")],
            &[("path", "/x"), ("max_batch_records", "0")],
            &[("path", "/x"), ("max_batch_records", "100001")],
            &[("path", "/x"), ("results_pointer", "results")],
            &[("path", "/x"), ("id_field", "id")],
            &[
                ("path", "/x"),
                ("results_pointer", "/r"),
                ("permanent_codes", "A"),
                ("retry_codes", "B, A"),
            ],
            &[("path", "/x"), ("delete_path", "x/delete")],
            &[("path", "/x"), ("delete_method", "DELETE")],
            &[
                ("path", "/x"),
                ("delete_path", "/d"),
                ("delete_method", "GET"),
            ],
            &[("path", "/x"), ("idempotency_header", "Idempotency Key")],
            &[("path", "/x"), ("idempotency_header", "Idempotency-Key:")],
            &[("path", "/x"), ("idempotency_header", "Authorization")],
        ] {
            assert_eq!(
                parse_config(settings(bad)).unwrap_err().code,
                "INVALID_SETTING",
                "{bad:?}"
            );
        }
        assert_eq!(parse_config(vec![]).unwrap_err().code, "MISSING_SETTING");
        let c = config(&[
            ("method", "patch"),
            ("results_pointer", "/r"),
            ("retry_codes", " LOCKED , BUSY,"),
        ]);
        assert_eq!(
            (c.method.as_str(), c.retry_codes),
            ("PATCH", vec!["LOCKED".to_string(), "BUSY".into()])
        );
    }

    #[test]
    fn capabilities_follow_delete_path() {
        assert_eq!(operations(&config(&[])), [Operation::Upsert]);
        let c = config(&[
            ("delete_path", "/v1/contacts/delete"),
            ("delete_method", "delete"),
        ]);
        assert_eq!(operations(&c), [Operation::Upsert, Operation::Delete]);
        assert_eq!(
            (c.delete_path.as_deref(), c.delete_method.as_str()),
            (Some("/v1/contacts/delete"), "DELETE")
        );
        assert_eq!(config(&[("delete_path", "/d")]).delete_method, "POST");
    }
}
