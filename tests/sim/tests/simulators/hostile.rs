//! The hostile destination does each misbehaviour it promises, seen by a plain client.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_sim::hostile::{
    self, ECHO_HEADER, HostileConfig, HostileHandle, Misbehaviour, PATH, answer, credential_forms,
};

use crate::support::results;

async fn start(misbehaviour: Misbehaviour, times: Option<u64>) -> HostileHandle {
    hostile::start(HostileConfig::doing(misbehaviour, times))
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A request of `method` to `path` on `dest`, for the test to finish and send.
fn to(dest: &HostileHandle, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client().request(method, format!("{}{path}", dest.base_url()))
}

fn batch() -> String {
    json!([{"id": "a", "n": 1}, {"id": 7}, {"n": 3}]).to_string()
}

async fn post(dest: &HostileHandle, token: &str) -> reqwest::Result<reqwest::Response> {
    to(dest, Method::POST, PATH)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(batch())
        .send()
        .await
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn it_behaves_until_told_otherwise_and_records_everything() {
    let dest = start(Misbehaviour::None, None).await;
    let response = post(&dest, "t0").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_of(response).await,
        json!({"results": [
            {"id": "h-a", "error": null},
            {"id": "h-7", "error": null},
            {"id": null, "error": {"code": "MISSING_KEY", "message": "the record has no usable \"id\"", "fields": ["id"]}},
        ]})
    );
    let stored: Vec<String> = dest.stored().into_keys().collect();
    assert_eq!(stored, ["7", "a"]);
    assert_eq!(dest.stored()["a"], json!({"id": "a", "n": 1}));
    let requests = dest.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", PATH));
    assert_eq!(r.keys, ["a", "7", ""]);
    assert_eq!(r.answer, answer::OK);
    assert_eq!(r.header("Authorization"), Some("Bearer t0"));
    assert_eq!(r.body, batch().as_bytes());
    assert!(
        !format!("{r:?}").contains("t0"),
        "Debug shows no header value"
    );

    // Elsewhere: logged, 404, nothing stored.
    let response = to(&dest, Method::PUT, "/v2/other?x=1")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let requests = dest.requests();
    assert_eq!(
        (requests[1].path.as_str(), requests[1].query.as_deref()),
        ("/v2/other", Some("x=1"))
    );
    assert_eq!(requests[1].answer, answer::NOT_FOUND);

    // Not a JSON array: 400, nothing stored.
    let response = to(&dest, Method::POST, PATH)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(dest.requests()[2].answer, answer::BAD_REQUEST);
    assert_eq!(dest.stored().len(), 2);
}

#[tokio::test]
async fn rate_limits_say_what_they_were_told_then_stop_after_times() {
    let dest = start(
        Misbehaviour::RateLimit {
            retry_after: Some("0".into()),
        },
        Some(2),
    )
    .await;
    for _ in 0..2 {
        let response = post(&dest, "t").await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "0");
    }
    assert!(dest.stored().is_empty());
    assert_eq!(post(&dest, "t").await.unwrap().status(), 200);
    assert_eq!(dest.stored().len(), 2);

    dest.set(Misbehaviour::RateLimit { retry_after: None }, None);
    let response = post(&dest, "t").await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    let answers: Vec<&str> = dest.requests().iter().map(|r| r.answer).collect();
    assert_eq!(
        answers,
        [
            answer::RATE_LIMITED,
            answer::RATE_LIMITED,
            answer::OK,
            answer::RATE_LIMITED
        ]
    );
}

#[tokio::test]
async fn an_echo_repeats_the_credential_everywhere() {
    let secret = "Zq8+Wm3=Xv5/Tk7";
    let [raw, base64, percent] = credential_forms(secret);
    assert_eq!(
        (base64.as_str(), percent.as_str()),
        ("WnE4K1dtMz1YdjUvVGs3", "Zq8%2BWm3%3DXv5%2FTk7")
    );
    assert_eq!(raw, secret);
    let dest = start(Misbehaviour::EchoCredential { status: 200 }, None).await;
    let response = post(&dest, secret).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[ECHO_HEADER],
        format!("Bearer {secret}").as_str()
    );
    let body = json_of(response).await;
    let results = results(&body);
    assert_eq!(results.len(), 3);
    let error = &results[0]["error"];
    assert_eq!(error["code"], format!("DENIED Bearer {secret}"));
    assert_eq!(error["fields"][0], format!("Bearer {secret}"));
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(secret) && message.contains(&base64) && message.contains(&percent));
    assert!(dest.stored().is_empty());

    // A whole-batch error, and an API key (no scheme) in its own header.
    let echo = HostileConfig::doing(Misbehaviour::EchoCredential { status: 422 }, None);
    let dest = hostile::start(echo.with_credential_header("X-Api-Key"))
        .await
        .unwrap();
    let response = to(&dest, Method::POST, PATH)
        .header("x-api-key", secret)
        .body(batch())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(response.headers()[ECHO_HEADER], secret);
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], format!("DENIED {secret}"));
    assert_eq!(body["echo"]["base64"], base64.as_str());
    assert!(body["echo"].get("decoded").is_none());

    // A Basic credential: its decoded pair too.
    let dest = start(Misbehaviour::EchoCredential { status: 200 }, None).await;
    let response = to(&dest, Method::POST, PATH)
        .basic_auth("ops", Some(secret))
        .body(batch())
        .send()
        .await
        .unwrap();
    let body = json_of(response).await;
    let pair = format!("ops:{secret}");
    let encoded = &credential_forms(&pair)[1];
    assert_eq!(body["echo"]["decoded"], pair.as_str());
    assert_eq!(body["echo"]["header"], format!("Basic {encoded}"));
    let message = body["results"][0]["error"]["message"].as_str().unwrap();
    assert!(message.ends_with(&format!(" for {pair}")), "{message}");
}

#[tokio::test]
async fn a_huge_body_is_huge_and_still_holds_the_results() {
    let dest = start(Misbehaviour::HugeBody { padding: 1 << 20 }, None).await;
    let bytes = post(&dest, "t").await.unwrap().bytes().await.unwrap();
    assert!(bytes.len() > 1 << 20);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["results"][1], json!({"id": "h-7", "error": null}));
    assert_eq!(dest.stored().len(), 2);
}

#[tokio::test]
async fn a_truncated_body_promises_more_than_it_sends() {
    let dest = start(Misbehaviour::TruncatedBody, None).await;
    let mut response = post(&dest, "t").await.unwrap();
    assert_eq!(response.status(), 200);
    let promised = response.content_length().unwrap() as usize;
    let mut got = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly after {} bytes", got.len()),
            Err(error) => break error,
        }
    };
    assert!(!error.is_timeout() && !error.is_connect(), "{error}");
    assert!(
        !got.is_empty() && got.len() < promised,
        "{} of {promised}",
        got.len()
    );
    assert_eq!(dest.stored().len(), 2, "the records were stored");
}

#[tokio::test]
async fn a_slow_body_sends_headers_at_once_and_outlasts_a_timeout() {
    let dest = start(
        Misbehaviour::SlowBody {
            interval: Duration::from_millis(100),
            pieces: 20,
        },
        None,
    )
    .await;
    let error = to(&dest, Method::POST, PATH)
        .timeout(Duration::from_millis(300))
        .body(batch())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");

    // Without a timeout the whole body arrives, correct, after the pieces.
    dest.set(
        Misbehaviour::SlowBody {
            interval: Duration::from_millis(5),
            pieces: 10,
        },
        None,
    );
    let response = post(&dest, "t").await.unwrap();
    assert_eq!(json_of(response).await["results"][0]["id"], "h-a");
}

#[tokio::test]
async fn a_reset_reads_the_request_and_answers_nothing() {
    let dest = start(Misbehaviour::Reset, Some(1)).await;
    let error = post(&dest, "t").await.unwrap_err();
    assert!(!error.is_timeout() && !error.is_connect(), "{error}");
    assert_eq!(dest.requests()[0].answer, answer::RESET);
    assert_eq!(dest.requests()[0].keys, ["a", "7", ""]);
    assert!(dest.stored().is_empty());
    // The next connection is served.
    assert_eq!(post(&dest, "t").await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_redirect_points_elsewhere() {
    let location = "http://127.0.0.1:9/v1/records".to_string();
    let dest = start(
        Misbehaviour::Redirect {
            status: 307,
            location: location.clone(),
        },
        None,
    )
    .await;
    let response = post(&dest, "t").await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], location.as_str());
    assert!(dest.stored().is_empty());
    assert!(
        hostile::start(HostileConfig {
            misbehaviour: Misbehaviour::Redirect {
                status: 200,
                location
            },
            ..HostileConfig::default()
        })
        .await
        .is_err()
    );
}

#[tokio::test]
async fn wrong_length_results_miss_or_add_entries() {
    let dest = start(Misbehaviour::WrongLength { delta: -1 }, None).await;
    let body = json_of(post(&dest, "t").await.unwrap()).await;
    assert_eq!(results(&body).len(), 2);
    dest.set(Misbehaviour::WrongLength { delta: 2 }, None);
    let body = json_of(post(&dest, "t").await.unwrap()).await;
    assert_eq!(results(&body).len(), 5);
    assert_eq!(dest.stored().len(), 2);
}
