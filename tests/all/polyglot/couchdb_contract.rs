//! The JavaScript CouchDB connector on its own: the settings it accepts, the `_bulk_docs`
//! requests it builds, and its verdict on every kind of recorded response.

use super::*;

#[test]
fn js_couchdb_checks_its_settings() {
    assert_eq!(
        configure("js-couchdb", &[("db", "crm")]),
        Ok((1000, 8_000_000))
    );
    assert_eq!(
        configure(
            "js-couchdb",
            &[
                ("db", "crm"),
                ("max_batch_records", "50"),
                ("max_batch_bytes", "18446744073709551615")
            ]
        ),
        Ok((50, u64::MAX))
    );
    let (code, message) = configure("js-couchdb", &[]).unwrap_err();
    assert_eq!(code, "MISSING_SETTING");
    assert!(message.contains("db"), "{message}");
    for (settings, mention) in [
        (&[("db", "Crm")][..], "db"),
        (&[("db", "crm"), ("database", "x")], "database"),
        (
            &[("db", "crm"), ("max_batch_records", "0")],
            "from 1 to 100000",
        ),
    ] {
        let (code, message) = configure("js-couchdb", settings).unwrap_err();
        assert_eq!(code, "INVALID_SETTING", "{settings:?}");
        assert!(message.contains(mention), "{settings:?}: {message}");
    }
}

#[test]
fn js_couchdb_builds_bulk_docs_requests() {
    let mut couch = configured("js-couchdb", &[("db", "crm/contacts")]);
    let batch = [
        record(
            "k1",
            r#" {"name": "Ann", "big": 12345678901234567890123, "ratio": 1.50} "#,
        ),
        record("k2", "{}"),
        record("k3", r#"{"_id": "other", "_rev": "1-abc", "n": 1}"#),
    ];
    let request = couch
        .build_request(&batch, "sluice-test-key")
        .unwrap()
        .unwrap();
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", "/crm%2Fcontacts/_bulk_docs")
    );
    // The payload's own text is kept, so large numbers and decimals survive; the key is
    // the document id, whatever `_id` the payload held.
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"{"docs":[{"_id":"k1","name": "Ann", "big": 12345678901234567890123, "ratio": 1.50},{"_id":"k2"},{"_id":"k3","_rev":"1-abc","n":1}]}"#
    );
    let checked = show_precheck(
        &mut couch,
        &[
            record("ok", r#"{"_rev": "2-x", "_deleted": false}"#),
            record("_design/x", "{}"),
            record("bad-member", r#"{"_secret": 1}"#),
            record("list", "[]"),
            record("broken", "{"),
        ],
    );
    assert_eq!(
        checked,
        [
            "-",
            "rejected(INVALID_ID)",
            "rejected(doc_validation)",
            "rejected(INVALID_JSON)",
            "rejected(INVALID_JSON)"
        ]
    );
    assert_inexpressible(&mut couch, record("x", "7"), "\"x\"");
}

#[test]
fn js_couchdb_classifies_recorded_responses() {
    let mut couch = configured("js-couchdb", &[("db", "crm")]);
    let keys = strings(&["k1", "k2", "k3", "k4", "k5"]);
    let classify = |couch: &mut ConnectorInstance, status, headers: &[(&str, &str)], body: &str| {
        show(
            &couch
                .classify(
                    &keys,
                    sluice::sandbox::Operation::Upsert,
                    &response(status, headers, body),
                )
                .unwrap(),
        )
    };
    let answers = json!([
        {"id": "k2", "error": "conflict", "reason": "Document update conflict."},
        {"id": "k1", "ok": true, "rev": "1-aaa"},
        {"id": "k3", "error": "forbidden", "reason": "name is required"},
        {"id": "k4", "error": "unauthorized", "reason": "not yours"},
    ]);
    assert_eq!(
        classify(&mut couch, 201, &[], &answers.to_string()),
        "per-record[delivered(1-aaa), retry(conflict), rejected(forbidden), rejected(unauthorized), retry(NO_RESULT)]"
    );
    #[rustfmt::skip]
    let cases: &[common::ResponseCase] = &[
        (202, &[], r#"[{"id":"k1","ok":true},{"id":"k2","ok":true},{"id":"k3","ok":true},{"id":"k4","ok":true},{"id":"k5","ok":true,"rev":""}]"#, "per-record[delivered(-), delivered(-), delivered(-), delivered(-), delivered(-)]"),
        (400, &[], r#"{"error": "bad_request", "reason": "invalid UTF-8 JSON"}"#, "batch-rejected(bad_request)"),
        (413, &[], r#"{"error": "too_large", "reason": "the request entity is too large"}"#, "batch-rejected(too_large)"),
        (417, &[], "", "batch-rejected(HTTP_417)"),
        (401, &[], r#"{"error": "unauthorized", "reason": "You are not authorized"}"#, "auth-expired(unauthorized)"),
        (403, &[], r#"{"error": "forbidden", "reason": "no"}"#, "fatal(forbidden)"),
        (404, &[], r#"{"error": "not_found", "reason": "Database does not exist."}"#, "fatal(not_found)"),
        (429, &[("retry-after", "3")], "", "rate-limited(after 3000 ms)"),
        (429, &[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")], "", "rate-limited(until 1700000005000 ms since the epoch)"),
        (429, &[("retry-after", "soon")], "", "rate-limited(no wait given)"),
        (503, &[], "", "rate-limited(no wait given)"),
        (500, &[], r#"{"error": "unknown_error", "reason": "function_clause"}"#, "transient(unknown_error)"),
        (502, &[], "<html>Bad Gateway</html>", "transient(HTTP_502)"),
        (408, &[], "", "transient(HTTP_408)"),
        (409, &[], "", "fatal(HTTP_409)"),
        (201, &[], "", "transient(MALFORMED_RESPONSE)"),
        (201, &[], "{}", "transient(MALFORMED_RESPONSE)"),
        (201, &[], "[1]", "transient(MALFORMED_RESPONSE)"),
        (201, &[], "\u{0}\u{1}", "transient(MALFORMED_RESPONSE)"),
    ];
    common::assert_classified(&mut couch, &keys, cases);
    let huge = format!("[\"{}\"]", "x".repeat(10 << 20));
    assert_eq!(
        classify(&mut couch, 201, &[], &huge),
        "transient(MALFORMED_RESPONSE)"
    );
    // An id twice in a batch takes its answers in order.
    let twice = strings(&["k1", "k1"]);
    let body = r#"[{"id":"k1","ok":true,"rev":"1-a"},{"id":"k1","error":"conflict","reason":"r"}]"#;
    let v = couch
        .classify(
            &twice,
            sluice::sandbox::Operation::Upsert,
            &response(201, &[], body),
        )
        .unwrap();
    assert_eq!(show(&v), "per-record[delivered(1-a), retry(conflict)]");
}
