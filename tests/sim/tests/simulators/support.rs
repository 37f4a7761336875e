//! A plain HTTP client for talking to the simulators the way the host does.

use reqwest::header::HeaderMap;
use serde_json::Value;
use sluice_sim::SimHandle;

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The `results` array of an answer, which must be there.
pub fn results(body: &Value) -> &[Value] {
    body["results"].as_array().expect("a results array")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// Sends `body` (JSON text) with `method` to `url`, with a bearer token when given.
pub async fn send(method: &str, url: &str, body: &str, token: Option<&str>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = client()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    reply(request.send().await.expect("the simulator answers")).await
}

/// Sends `body` with `method` to `path` on `sim`, with extra `headers`.
pub async fn call_with(
    sim: &SimHandle,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let url = format!("{}{path}", sim.base_url());
    let mut request = client()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send().await.expect("the simulator answers")).await
}

/// Sends `body` (any text) with `method` to `path` on `sim`, without credentials.
pub async fn call(sim: &SimHandle, method: &str, path: &str, body: &str) -> Reply {
    send(method, &format!("{}{path}", sim.base_url()), body, None).await
}

/// Posts an `application/x-www-form-urlencoded` body.
pub async fn post_form(url: &str, pairs: &[(&str, &str)]) -> Reply {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let request = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"));
    reply(request.send().await.expect("the simulator answers")).await
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}
