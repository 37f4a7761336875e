use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::faults::LimitStyle::{RequestLimitExceeded, ServiceUnavailable, TooManyRequests};
use sluice_sim::faults::RetryAfterStyle::{Absent, HttpDate, Seconds};
use sluice_sim::rest::{self, RestConfig};
use sluice_sim::salesforce::{self, SalesforceConfig};

use crate::support::{Reply, call};

const SF_PATH: &str = "/services/data/v60.0/composite/sobjects/Account/Ext__c";

/// The REST simulator, accepting everything, with `faults`.
async fn rest_with(faults: Faults) -> SimHandle {
    let config = RestConfig {
        faults,
        ..Default::default()
    };
    rest::start(config).await.unwrap()
}

/// The Salesforce simulator with `faults`.
async fn salesforce_with(faults: Faults) -> SimHandle {
    let config = SalesforceConfig {
        faults,
        ..Default::default()
    };
    salesforce::start(config).await.unwrap()
}

async fn rest_post(sim: &SimHandle, key: &str) -> Reply {
    let body = json!([{"id": key}]).to_string();
    call(sim, "POST", "/v1/records", &body).await
}

async fn sf_upsert(sim: &SimHandle, key: &str) -> Reply {
    let body = json!({"records": [{"attributes": {"type": "Account"}, "Ext__c": key}]}).to_string();
    call(sim, "PATCH", SF_PATH, &body).await
}

async fn sleep_until(t: SystemTime) {
    if let Ok(wait) = t.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rate_limit_announces_seconds_and_stays_closed_until_then() {
    let faults = Faults::rate_limited(2, 200, TooManyRequests, Seconds);
    let sim = rest_with(faults).await;
    // The window may turn over between the requests; three inside one window are refused
    // at least once, and the first refusal is what matters.
    let mut refused = None;
    for i in 0..4 {
        let reply = rest_post(&sim, &format!("k{i}")).await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("the third request in a window is refused");
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.header("retry-after"),
        Some("1"),
        "200 ms left, rounded up to a whole second"
    );
    assert_eq!(reply.body["error"]["code"], "RATE_LIMITED");
    let first = sim.rate_limit_announcements()[0];
    assert_eq!(
        first.not_before.duration_since(first.sent_at).ok(),
        Some(Duration::from_secs(1))
    );

    // A new window has begun, but the simulator promised nothing before `not_before`: a
    // client that ignores Retry-After is refused again, and pushed further out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = rest_post(&sim, "early").await;
    assert_eq!(early.status, 429);
    let announcements = sim.rate_limit_announcements();
    let last = announcements.last().copied().unwrap();
    assert!(last.not_before > first.not_before);

    sleep_until(last.not_before).await;
    assert_eq!(rest_post(&sim, "patient").await.status, 200);
    let stored = sim.stored();
    assert!(stored.contains_key("patient") && !stored.contains_key("early"));
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, announcements.len() as u64);
    let limited: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.outcome == "rate_limited")
        .collect();
    assert_eq!(limited.len(), announcements.len());
    assert!(limited.iter().all(|r| r.status == 429));
}

#[tokio::test]
async fn salesforce_request_limit_with_an_http_date() {
    let faults = Faults::rate_limited(1, 300, RequestLimitExceeded, HttpDate);
    let sim = salesforce_with(faults).await;
    let mut reply = sf_upsert(&sim, "a").await;
    assert_eq!(reply.status, 200);
    while reply.status == 200 {
        reply = sf_upsert(&sim, "b").await;
    }
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    let date = httpdate::parse_http_date(reply.header("retry-after").unwrap()).unwrap();
    let announcement = sim.rate_limit_announcements()[0];
    assert_eq!(date, announcement.not_before);
    let since_epoch = announcement.not_before.duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(
        since_epoch.subsec_nanos(),
        0,
        "HTTP-dates have whole seconds"
    );
    let wait = announcement
        .not_before
        .duration_since(announcement.sent_at)
        .unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(1_300),
        "{wait:?}"
    );
    assert_eq!(
        sim.requests().last().unwrap().keys,
        ["b"],
        "refused requests still log their keys"
    );
    assert_eq!(sim.stats().by_status.get(&403), Some(&1));
}

#[tokio::test]
async fn service_unavailable_without_retry_after_reopens_with_the_window() {
    let faults = Faults::rate_limited(1, 100, ServiceUnavailable, Absent);
    let sim = rest_with(faults).await;
    let mut reply = rest_post(&sim, "a").await;
    while reply.status == 200 {
        reply = rest_post(&sim, "b").await;
    }
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), None);
    let announcement = sim.rate_limit_announcements()[0];
    assert_eq!(
        announcement.not_before, announcement.sent_at,
        "nothing was promised"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(rest_post(&sim, "b").await.status, 200);
}

#[tokio::test]
async fn error_bursts_follow_the_request_ordinal() {
    let faults = Faults::error_burst(2, 1, 500);
    let sim = rest_with(faults).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(rest_post(&sim, &format!("k{i}")).await.status);
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500]);
    let stored: Vec<String> = sim.stored().into_keys().collect();
    assert_eq!(
        stored,
        ["k0", "k1", "k3", "k4"],
        "a failed request stores nothing"
    );
    assert_eq!(sim.stats().server_errors, 2);
    assert_eq!(sim.requests()[2].outcome, "server_error");

    let faults = Faults::error_burst(0, 1, 502);
    let sim = salesforce_with(faults).await;
    let reply = sf_upsert(&sim, "a").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), Some("text/html"));
    assert!(
        reply
            .body
            .as_str()
            .is_some_and(|page| page.contains("502 Bad Gateway"))
    );
}

#[tokio::test]
async fn latency_delays_every_nth_request() {
    let delay = Duration::from_millis(150);
    let sim = rest_with(Faults::slow(2, 150)).await;
    assert_eq!(rest_post(&sim, "fast").await.status, 200);
    let started = Instant::now();
    assert_eq!(rest_post(&sim, "slow").await.status, 200);
    assert!(started.elapsed() >= delay);
}
