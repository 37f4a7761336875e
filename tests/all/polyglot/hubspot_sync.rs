//! The Python HubSpot connector end to end against the simulated HubSpot: results matched
//! by id, bisection, input limits, Retry-After, the daily limit and token renewal.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_delivers_matching_results_by_id_and_errors_by_context() {
    let dest = hubspot_sim(|c| c.faults = Faults::locking(11, 0.2)).await;
    let mut records = contacts(300);
    records[10]["firstname"] = json!("A name far longer than twenty characters");
    records[20].as_object_mut().unwrap().remove("lastname");
    records[30]["email"] = json!("not-an-email");
    let ran = hubspot_sync(&records, &dest, 2).run().await;
    let s = ran.summary();
    ran.expect(
        Expect::completed()
            .read(300)
            .delivered(297)
            .rejected(3)
            .pending(0),
    );
    assert_eq!(
        ran.fates.codes(),
        BTreeMap::from([
            (
                "c0010@example.com".to_string(),
                "STRING_TOO_LONG".to_string()
            ),
            ("c0020@example.com".into(), "REQUIRED_FIELD_MISSING".into()),
            ("not-an-email".into(), "INVALID_EMAIL".into()),
        ])
    );
    // The record refused by precheck never left the host.
    assert!(
        dest.requests()
            .iter()
            .all(|r| !r.keys.contains(&"not-an-email".to_string()))
    );
    // Locked records were retried in the run until written.
    common::locks_each_retried_once(&dest, s);
    // Delivered records carry the id HubSpot gave them, found by email in shuffled results.
    let stored = dest.stored();
    assert_eq!(stored.len(), 297);
    for key in ran.fates.keys(is_delivered) {
        assert_eq!(
            ran.fates.all()[&key].0,
            Fate::Delivered(Some(hubspot::record_id("contacts", &key)))
        );
        assert_eq!(stored[&key]["email"], json!(key));
        assert_eq!(stored[&key]["lastname"], "Smith");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_an_unknown_property_refuses_the_batch_and_bisection_finds_it() {
    let known = ["email", "firstname", "lastname"].map(String::from).into();
    let dest = hubspot_sim(|c| c.known_properties = Some(known)).await;
    let mut records = contacts(100);
    records[37]["favorite_color"] = json!("teal");
    let ran = hubspot_sync(&records, &dest, 1).run().await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(99).rejected(1));
    let (fate, _) = &ran.fates.all()["c0037@example.com"];
    let Fate::Rejected(f) = fate else {
        panic!("{fate:?}")
    };
    assert_eq!(
        (f.code.as_str(), f.fields.clone()),
        ("PROPERTY_DOESNT_EXIST", strings(&["favorite_color"]))
    );
    assert!(s.bisections > 0);
    assert_eq!(dest.stored().len(), 99);
    // 2k*ceil(log2(n/k)) + 1 requests at most for k = 1 bad record in n = 100.
    assert!(s.requests <= 15, "{} requests", s.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_a_batch_over_the_input_limit_is_split_until_it_fits() {
    let dest = hubspot_sim(|c| c.max_inputs = 30).await;
    let ran = hubspot_sync(&contacts(100), &dest, 1).run().await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(100).rejected(0));
    // The batch of 100 and both halves of 50 were refused; every request taken held at
    // most 30 inputs. (After a first half is taken, the engine splits its sibling without
    // sending it, assuming it holds a bad record; for a refusal by size that costs a few
    // smaller requests, never a record.)
    assert_eq!(dest.stats().batch_rejections, 3);
    assert_eq!(s.requests, dest.stats().requests);
    assert!(s.requests <= 20, "{} requests", s.requests);
    for r in dest.requests() {
        assert!(
            r.status != 200 || r.keys.len() <= 30,
            "{} inputs taken",
            r.keys.len()
        );
    }
    assert_eq!(dest.stored().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_honours_retry_after() {
    let dest =
        hubspot_sim(|c| c.faults = Faults::rate_limited(2, 1000, TooManyRequests, Seconds)).await;
    let setup = hubspot_sync(&contacts(500), &dest, 2).setup();
    let started = SystemTime::now();
    let ran = common::Ran::of(setup).await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(500).pending(0));
    let limited = dest.stats().rate_limited;
    assert!(limited > 0);
    assert_eq!(s.rate_limit_waits, limited);
    assert_eq!(s.retries, 0, "rate-limit waits use no attempts");
    common::assert_waits_honoured(&dest, 2);
    // Five batches at two per second need two more windows.
    assert!(started.elapsed().unwrap() >= Duration::from_secs(2));
    assert_eq!(dest.stored().len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_the_daily_limit_stops_the_run_with_records_pending() {
    let dest = hubspot_sim(|c| c.daily_limit = Some(2)).await;
    let ran = hubspot_sync(&contacts(500), &dest, 1).run().await;
    let s = ran.summary();
    ran.expect(Expect::failed());
    assert_eq!((s.delivered, s.rejected), (200, 0));
    assert_eq!(s.pending, s.read - 200);
    let error = s.error.as_deref().unwrap();
    assert!(error.contains("DAILY_LIMIT_REACHED"), "{error}");
    assert_eq!(dest.stored().len(), 200);
    assert_eq!(
        dest.stats().rate_limited,
        1,
        "no request after the daily limit"
    );
    // The batch the daily limit refused is reported pending with its failure (batches
    // still queued when the run stopped are counted pending, but not reported one by one).
    let codes = ran.fates.codes();
    assert!(
        codes.len() >= 100 && codes.values().all(|c| c == "DAILY_LIMIT_REACHED"),
        "{codes:?}"
    );
    assert!(ran.fates.keys(is_pending).len() as u64 <= s.pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hubspot_an_expired_token_is_renewed() {
    let auth = common::sessions_renewed_by_oauth2(2);
    let dest = hubspot_sim(|c| c.auth = Some(auth)).await;
    let ran = hubspot_sync(&contacts(600), &dest, 2)
        .sync(&common::oauth2_renewal("HS_RENEW", &dest.base_url()))
        .run()
        .await;
    let s = ran.summary();
    ran.expect(Expect::completed().delivered(600));
    assert!(s.auth_renewals >= 2, "six batches, two requests a session");
    assert_eq!(
        dest.stats().token_refreshes,
        s.auth_renewals + 1,
        "one token at the start, one per renewal"
    );
    assert_eq!(dest.stored().len(), 600);
}
