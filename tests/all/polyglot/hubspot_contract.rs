//! The Python HubSpot connector on its own: the settings it accepts, the batch upserts it
//! builds, and its verdict on every kind of recorded response.

use super::*;

const EMAIL_KEYS: &[&str] = &[
    "a@example.com",
    "b@example.com",
    "c@example.com",
    "d@example.com",
];

#[test]
fn python_hubspot_checks_its_settings() {
    assert_eq!(configure("python-hubspot", &[]), Ok((100, 3_000_000)));
    assert_eq!(
        configure(
            "python-hubspot",
            &[("max_batch_records", "10"), ("id_property", "external_id")]
        ),
        Ok((10, 3_000_000))
    );
    for (settings, mention) in [
        (&[("idproperty", "email")][..], "idproperty"),
        (&[("object", "contacts/../x")], "object"),
        (&[("max_batch_records", "101")], "from 1 to 100"),
        (&[("max_batch_records", "ten")], "max_batch_records"),
        (&[("object", "a"), ("object", "b")], "more than once"),
    ] {
        let (code, message) = configure("python-hubspot", settings).unwrap_err();
        assert_eq!(code, "INVALID_SETTING", "{settings:?}");
        assert!(message.contains(mention), "{settings:?}: {message}");
    }
}

#[test]
fn python_hubspot_builds_batch_upserts() {
    let mut hs = configured("python-hubspot", &[]);
    let batch = [
        record(
            "a@example.com",
            r#"{"firstname": "Ann", "score": 12345678901234567890123, "ratio": 1.50, "vip": true, "phone": null}"#,
        ),
        record("b@example.com", "{}"),
    ];
    let request = hs
        .build_request(&batch, "sluice-test-key")
        .unwrap()
        .unwrap();
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", "/crm/v3/objects/contacts/batch/upsert")
    );
    assert!(
        request
            .headers
            .contains(&("content-type".into(), "application/json".into()))
    );
    // Property values are strings, numbers spelled as the source spelled them.
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        r#"{"inputs":[{"idProperty":"email","id":"a@example.com","properties":{"firstname":"Ann","score":"12345678901234567890123","ratio":"1.50","vip":"true","phone":""}},{"idProperty":"email","id":"b@example.com","properties":{}}]}"#
    );

    let mut companies = configured(
        "python-hubspot",
        &[("object", "companies"), ("id_property", "domain")],
    );
    let request = companies
        .build_request(
            &[record("acme.example", r#"{"name": "Acme"}"#)],
            "sluice-test-key",
        )
        .unwrap()
        .unwrap();
    assert_eq!(request.url, "/crm/v3/objects/companies/batch/upsert");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["inputs"][0]["idProperty"], "domain");

    let checked = show_precheck(
        &mut hs,
        &[
            record("a@example.com", "{}"),
            record("not-an-email", "{}"),
            record("c@example.com", r#"{"address": {"city": "Oslo"}}"#),
            record("d@example.com", "[1]"),
            record("e@example.com", "{"),
        ],
    );
    assert_eq!(
        checked,
        [
            "-",
            "rejected(INVALID_EMAIL)",
            "rejected(INVALID_PROPERTY_VALUE)",
            "rejected(INVALID_JSON)",
            "rejected(INVALID_JSON)"
        ]
    );
    // A batch it cannot express is an error that names the record.
    assert_inexpressible(&mut hs, record("x@example.com", "[]"), "x@example.com");
}

#[test]
fn python_hubspot_classifies_recorded_responses() {
    let mut hs = configured("python-hubspot", &[]);
    let keys = strings(EMAIL_KEYS);
    let classify = |hs: &mut ConnectorInstance, status, headers: &[(&str, &str)], body: &str| {
        show(
            &hs.classify(
                &keys,
                sluice::sandbox::Operation::Upsert,
                &response(status, headers, body),
            )
            .unwrap(),
        )
    };
    // Results in another order than the inputs, one with the email in other case.
    let complete = json!({"status": "COMPLETE", "results": [
        {"id": "104", "properties": {"email": "d@example.com"}},
        {"id": "101", "properties": {"email": "A@Example.com"}},
        {"id": "103", "properties": {"email": "c@example.com"}},
        {"id": 102, "properties": {"email": "b@example.com"}},
    ]});
    assert_eq!(
        classify(&mut hs, 200, &[], &complete.to_string()),
        "per-record[delivered(101), delivered(102), delivered(103), delivered(104)]"
    );
    // Errors name records by id in their context, several at once; a record neither
    // written nor refused is retried, never taken as delivered.
    let multi = json!({"status": "COMPLETE", "numErrors": 2,
    "results": [{"id": "101", "properties": {"email": "a@example.com"}}],
    "errors": [
        {"status": "error", "category": "VALIDATION_ERROR", "subCategory": "INVALID_EMAIL_ADDRESS",
         "message": "bad email", "context": {"ids": ["c@example.com"], "propertyName": ["email"]}},
        {"status": "error", "category": "CONFLICT", "message": "busy",
         "context": {"ids": ["b@example.com", "nobody@example.com"]}},
        {"status": "error", "category": "VALIDATION_ERROR", "message": "no context"},
    ]});
    assert_eq!(
        classify(&mut hs, 207, &[], &multi.to_string()),
        "per-record[delivered(101), retry(CONFLICT), rejected(INVALID_EMAIL_ADDRESS), retry(NO_RESULT)]"
    );
    let Ok(sluice::sandbox::Verdict::PerRecord(outcomes)) = hs.classify(
        &keys,
        sluice::sandbox::Operation::Upsert,
        &response(207, &[], &multi.to_string()),
    ) else {
        panic!()
    };
    let sluice::sandbox::RecordOutcome::Rejected(f) = &outcomes[2] else {
        panic!()
    };
    assert_eq!(
        (f.message.as_str(), f.fields.clone()),
        ("bad email", strings(&["email"]))
    );

    #[rustfmt::skip]
    let cases: &[common::ResponseCase] = &[
        (429, &[("retry-after", "7")], r#"{"policyName": "TEN_SECONDLY_ROLLING"}"#, "rate-limited(after 7000 ms)"),
        (429, &[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")], "", "rate-limited(until 1700000005000 ms since the epoch)"),
        (429, &[], r#"{"policyName": "SECONDLY"}"#, "rate-limited(after 1000 ms)"),
        (429, &[], r#"{"policyName": "TEN_SECONDLY_ROLLING"}"#, "rate-limited(after 10000 ms)"),
        (429, &[], "", "rate-limited(no wait given)"),
        (429, &[("retry-after", "5")], r#"{"status": "error", "policyName": "DAILY"}"#, "fatal(DAILY_LIMIT_REACHED)"),
        (400, &[], r#"{"status": "error", "category": "VALIDATION_ERROR", "message": "m", "errors": [{"code": "PROPERTY_DOESNT_EXIST", "context": {"propertyName": ["color"]}}]}"#, "batch-rejected(PROPERTY_DOESNT_EXIST)"),
        (400, &[], r#"{"status": "error", "category": "VALIDATION_ERROR", "message": "too many"}"#, "batch-rejected(VALIDATION_ERROR)"),
        (400, &[], "", "batch-rejected(HTTP_400)"),
        (401, &[], r#"{"status": "error", "category": "EXPIRED_AUTHENTICATION", "message": "expired"}"#, "auth-expired(EXPIRED_AUTHENTICATION)"),
        (403, &[], r#"{"category": "MISSING_SCOPES", "message": "scopes"}"#, "fatal(MISSING_SCOPES)"),
        (404, &[], "", "fatal(HTTP_404)"),
        (500, &[], r#"{"category": "INTERNAL_ERROR", "message": "oops"}"#, "transient(INTERNAL_ERROR)"),
        (502, &[], "<html><body>Bad Gateway</body></html>", "transient(HTTP_502)"),
        (503, &[("retry-after", "2")], "", "rate-limited(after 2000 ms)"),
        (503, &[], "", "transient(HTTP_503)"),
        (200, &[], "", "transient(MALFORMED_RESPONSE)"),
        (200, &[], "not json", "transient(MALFORMED_RESPONSE)"),
        (200, &[], "[]", "transient(MALFORMED_RESPONSE)"),
        (200, &[], r#"{"results": {}}"#, "transient(MALFORMED_RESPONSE)"),
        (200, &[], r#"{"results": [7]}"#, "transient(MALFORMED_RESPONSE)"),
        (200, &[], r#"{"results": []}"#, "per-record[retry(NO_RESULT), retry(NO_RESULT), retry(NO_RESULT), retry(NO_RESULT)]"),
    ];
    common::assert_classified(&mut hs, &keys, cases);
    // A body of 10 MiB is no trap and no answer.
    let huge = format!("{{\"results\": \"{}\"}}", "x".repeat(10 << 20));
    assert_eq!(
        classify(&mut hs, 200, &[], &huge),
        "transient(MALFORMED_RESPONSE)"
    );
    // The instance is still usable after all of that.
    assert_eq!(classify(&mut hs, 401, &[], ""), "auth-expired(HTTP_401)");
}
