use serde_json::json;
use sluice_sim::rest::{self, RestConfig};
use sluice_sim::salesforce::{self, SalesforceConfig};
use sluice_sim::{AuthConfig, OAuthClient};

use crate::support::{call, post_form, send};

const PATH: &str = "/services/data/v60.0/composite/sobjects/Account/Ext__c";

fn auth() -> AuthConfig {
    AuthConfig {
        tokens: vec!["initial-token".into()],
        session_requests: Some(2),
        oauth: Some(OAuthClient::new("sluice", "s3cret", "r3fresh")),
    }
}

fn grant<'a>(secret: &'a str, refresh: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("grant_type", "refresh_token"),
        ("client_id", "sluice"),
        ("client_secret", secret),
        ("refresh_token", refresh),
    ]
}

/// The status of each request of `body` to `url`, sent with each of `tokens` in turn.
async fn statuses(url: &str, body: &str, tokens: &[Option<&str>]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for token in tokens {
        statuses.push(send("PATCH", url, body, *token).await.status);
    }
    statuses
}

#[tokio::test]
async fn sessions_expire_after_their_budget_and_oauth_renews_them() {
    let config = SalesforceConfig {
        auth: Some(auth()),
        ..Default::default()
    };
    let sim = salesforce::start(config).await.unwrap();
    let url = format!("{}{PATH}", sim.base_url());
    let body = json!({"records": [{"attributes": {"type": "Account"}, "Ext__c": "a"}]}).to_string();

    let reply = send("PATCH", &url, &body, None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let initial = Some("initial-token");
    assert_eq!(
        statuses(&url, &body, &[Some("made-up"), initial, initial, initial]).await,
        [401, 200, 200, 401],
        "a made-up token is refused; the budget of 2 is spent"
    );

    let token_url = format!("{}/oauth2/token", sim.base_url());
    let reply = post_form(&token_url, &grant("wrong", "r3fresh")).await;
    assert_eq!(
        (reply.status, reply.body.clone()),
        (400, json!({"error": "invalid_client"}))
    );
    let reply = post_form(&token_url, &grant("s3cret", "stale")).await;
    assert_eq!(
        (reply.status, reply.body.clone()),
        (400, json!({"error": "invalid_grant"}))
    );
    let reply = post_form(&token_url, &grant("s3cret", "r3fresh")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        (
            reply.body["token_type"].as_str(),
            reply.body["expires_in"].as_u64()
        ),
        (Some("Bearer"), Some(3600))
    );
    let token = reply.body["access_token"].as_str().unwrap().to_owned();
    let again = post_form(&token_url, &grant("s3cret", "r3fresh")).await;
    assert_ne!(
        again.body["access_token"].as_str(),
        Some(token.as_str()),
        "every token is new"
    );

    let renewed = Some(token.as_str());
    assert_eq!(statuses(&url, &body, &[renewed; 3]).await, [200, 200, 401]);

    let stats = sim.stats();
    assert_eq!((stats.session_expired, stats.token_refreshes), (4, 2));
    let requests = sim.requests();
    assert_eq!(requests[0].authorization, None);
    assert_eq!(
        requests[2].authorization.as_deref(),
        Some("Bearer initial-token")
    );
    assert_eq!(requests[4].outcome, "session_expired");
    assert_eq!(requests[5].path, "/oauth2/token");
    assert_eq!(requests[7].outcome, "token_issued");
    assert!(sim.stored().contains_key("a"));
}

#[tokio::test]
async fn rest_auth_dialect_and_bad_token_requests() {
    let config = RestConfig {
        auth: Some(AuthConfig {
            oauth: None,
            ..auth()
        }),
        ..Default::default()
    };
    let sim = rest::start(config).await.unwrap();
    let url = format!("{}/v1/records", sim.base_url());
    let reply = send("POST", &url, "[{\"id\": 1}]", Some("nope")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["code"], "UNAUTHORIZED");
    assert_eq!(
        send("POST", &url, "[{\"id\": 1}]", Some("initial-token"))
            .await
            .status,
        200
    );

    let token_url = format!("{}/oauth2/token", sim.base_url());
    assert_eq!(
        post_form(&token_url, &grant("s3cret", "r3fresh"))
            .await
            .status,
        404,
        "no OAuth client"
    );

    let sim = rest::start(RestConfig {
        auth: Some(auth()),
        ..Default::default()
    })
    .await
    .unwrap();
    let token_url = format!("{}/oauth2/token", sim.base_url());
    let json_grant = "{\"grant_type\": \"refresh_token\"}";
    let reply = call(&sim, "POST", "/oauth2/token", json_grant).await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let reply = post_form(&token_url, &[("grant_type", "password")]).await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    sim.shutdown().await;
}
