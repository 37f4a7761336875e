//! A connector on its own, outside any run: a configured instance, recorded responses, and
//! a check of its verdict on each.

use sluice::sandbox::{ConnectorInstance, HttpResponse, SandboxLimits};

use super::{guest, runtime};

/// A bundled connector's instance, configured with `settings`.
pub fn configured(name: &str, settings: &[(&str, &str)]) -> ConnectorInstance {
    let connector = runtime()
        .load(name, &guest(name), SandboxLimits::default())
        .unwrap();
    let mut instance = connector.instantiate("test").unwrap();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(f) = instance.configure(&settings).unwrap() {
        panic!("configure refused: {}: {}", f.code, f.message);
    }
    instance
}

/// A recorded response.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse::recorded(status, headers, body.as_bytes().to_vec(), 1_700_000_000_000)
}

/// A verdict in a short, readable form for assertions (the checker's own).
pub use sluice::conformance::show;

/// A canned response and what the connector must make of it: status, headers, body, and
/// the verdict as `show` prints it.
pub type ResponseCase<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, &'a str);

/// Classifies each canned response for a batch of `keys` and checks the verdict.
pub fn assert_classified(
    instance: &mut ConnectorInstance,
    keys: &[String],
    cases: &[ResponseCase],
) {
    for (status, headers, body, expected) in cases {
        let verdict = instance
            .classify(
                keys,
                sluice::sandbox::Operation::Upsert,
                &response(*status, headers, body),
            )
            .unwrap();
        assert_eq!(show(&verdict), *expected, "{status} {headers:?} {body}");
    }
}
