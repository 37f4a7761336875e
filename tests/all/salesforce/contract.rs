//! The Salesforce connector on its own: the settings it accepts, the records its precheck
//! holds, the sObject Collection upserts it builds, and its verdict on every response.

use super::*;

#[test]
fn settings_are_checked() {
    let connector = common::runtime()
        .load("sf", &common::guest("salesforce"), Default::default())
        .unwrap();
    let mut instance = connector.instantiate("").unwrap();
    let failure = instance
        .configure(&[("object".into(), "Account".into())])
        .unwrap()
        .unwrap_err();
    assert!(
        failure.message.contains("external_id_field"),
        "{}",
        failure.message
    );
    let mut instance = connector.instantiate("").unwrap();
    let settings = [
        ("object".to_string(), "Account".to_string()),
        ("external_id_field".into(), "Ext__c".into()),
        ("colour".into(), "red".into()),
    ];
    let failure = instance.configure(&settings).unwrap().unwrap_err();
    assert_eq!(failure.code, "INVALID_SETTING");
    assert!(failure.message.contains("colour"), "{}", failure.message);
    let limits = configured("salesforce", SETTINGS)
        .configure(
            &SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(limits.limits.max_batch_records, 200);
}

#[test]
fn precheck_holds_records_without_a_parent_crm_id() {
    let mut sf = configured("salesforce", SETTINGS);
    let batch: Vec<SourceRecord> = [
        r#"{"Name": "ok", "ParentCrmId": "001P"}"#,
        r#"{"Name": "no parent", "ParentCrmId": ""}"#,
        r#"{"Name": "null parent", "ParentCrmId": null}"#,
        r#"{"Name": "absent parent"}"#,
        r#"[1, 2]"#,
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| SourceRecord::new(format!("k{i}"), p.to_string()))
    .collect();
    let outcomes = sf.precheck(&batch).unwrap();
    let shown: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            None => "send".to_string(),
            Some(sluice::sandbox::PrecheckOutcome::Rejected(f)) => format!("rejected({})", f.code),
            Some(sluice::sandbox::PrecheckOutcome::Permanent(f)) => {
                format!("permanent({})", f.code)
            }
        })
        .collect();
    assert_eq!(
        shown,
        [
            "send",
            "permanent(DACO-02)",
            "permanent(DACO-02)",
            "permanent(DACO-02)",
            "rejected(INVALID_JSON)"
        ]
    );
}

#[test]
fn requests_are_sobject_collection_upserts() {
    let mut sf = configured("salesforce", SETTINGS);
    let batch = vec![
        SourceRecord::new("A1".into(), r#"{"Name": "One", "ParentCrmId": "P"}"#.into()),
        SourceRecord::new(
            "A2".into(),
            r#"{"Name": "Two", "External_Id__c": "A2", "ParentCrmId": "P"}"#.into(),
        ),
    ];
    let request = sf
        .build_request(&batch, "sluice-test-key")
        .unwrap()
        .unwrap();
    assert_eq!(request.method, "PATCH");
    assert_eq!(
        request.url,
        "/services/data/v60.0/composite/sobjects/Account/External_Id__c"
    );
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("application/json"))
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["allOrNone"], json!(false));
    assert_eq!(body["records"][0]["attributes"], json!({"type": "Account"}));
    assert_eq!(body["records"][0]["External_Id__c"], json!("A1"));
    assert_eq!(body["records"][0]["Name"], json!("One"));
    assert_eq!(body["records"][1]["External_Id__c"], json!("A2"));
    assert!(
        request
            .headers
            .iter()
            .all(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
    );
}

#[test]
fn every_response_is_classified() {
    let mut sf = configured("salesforce", SETTINGS);
    let results = json!([
        {"id": "001A", "success": true, "errors": [], "created": true},
        {"id": null, "success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]},
        {"id": null, "success": false, "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "bad", "fields": ["Email"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "INVALID_CROSS_REFERENCE_KEY", "message": "no parent", "fields": ["ParentCrmId"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "m", "fields": ["Name"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "STRING_TOO_LONG", "message": "m", "fields": ["Name"]}]},
        {"id": null, "success": false, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "m", "fields": []}]},
        {"id": null, "success": false, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "m", "fields": []}]},
        {"id": null, "success": false, "errors": [{"statusCode": "SOMETHING_NEW", "message": "m", "fields": []}]},
        {"id": "001B", "success": true, "errors": [], "created": false},
    ]);
    let v = sf
        .classify(
            &keys(10),
            sluice::sandbox::Operation::Upsert,
            &response(200, &[], &results.to_string()),
        )
        .unwrap();
    assert_eq!(
        show(&v),
        "per-record[delivered(001A), retry(UNABLE_TO_LOCK_ROW), rejected(INVALID_EMAIL_ADDRESS), \
         permanent(INVALID_CROSS_REFERENCE_KEY), rejected(REQUIRED_FIELD_MISSING), rejected(STRING_TOO_LONG), \
         rejected(FIELD_CUSTOM_VALIDATION_EXCEPTION), rejected(DUPLICATE_VALUE), rejected(SOMETHING_NEW), delivered(001B)]"
    );
    if let sluice::sandbox::Verdict::PerRecord(o) = &v
        && let sluice::sandbox::RecordOutcome::Rejected(f) = &o[2]
    {
        assert_eq!(
            (f.message.as_str(), f.fields.clone()),
            ("bad", vec!["Email".to_string()])
        );
    } else {
        panic!("{}", show(&v));
    }

    #[rustfmt::skip]
    let cases: &[common::ResponseCase] = &[
        (401, &[], r#"[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]"#, "auth-expired(INVALID_SESSION_ID)"),
        (403, &[("retry-after", "7")], r#"[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]"#, "rate-limited(after 7000 ms)"),
        (403, &[], r#"[{"message": "no access", "errorCode": "INSUFFICIENT_ACCESS"}]"#, "fatal(INSUFFICIENT_ACCESS)"),
        (429, &[("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT")], "", "rate-limited(until 1700000010000 ms since the epoch)"),
        (429, &[], "", "rate-limited(no wait given)"),
        (500, &[], r#"[{"message": "oops", "errorCode": "UNKNOWN_EXCEPTION"}]"#, "transient(UNKNOWN_EXCEPTION)"),
        (503, &[], "<html>down</html>", "transient(HTTP_503)"),
        (400, &[], r#"[{"message": "bad json", "errorCode": "JSON_PARSER_ERROR"}]"#, "batch-rejected(JSON_PARSER_ERROR)"),
        (404, &[], r#"[{"message": "no such object", "errorCode": "NOT_FOUND"}]"#, "fatal(NOT_FOUND)"),
        (200, &[], "not json", "transient(MALFORMED_RESPONSE)"),
        (200, &[], "", "transient(MALFORMED_RESPONSE)"),
        (200, &[], r#"[{"id": "1", "success": true, "errors": []}]"#, "transient(MALFORMED_RESPONSE)"),
    ];
    common::assert_classified(&mut sf, &keys(2), cases);
}
