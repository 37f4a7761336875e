//! The console's pages for people: server-rendered HTML from templates compiled into the
//! binary (`templates/`, escaped for HTML by default: a key or a message is always
//! text), signed in with a token once, then a session cookie; every form that acts carries
//! the session's CSRF token.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::Environment;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use super::api::{ApiError, blocking};
use super::auth::{COOKIE, Role, Viewer};
use super::views::{self, FailureQuery};

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(syncs))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/syncs/{sync}/failures", get(failures))
        .route("/syncs/{sync}/runs", get(runs))
        .route("/syncs/{sync}/records/{key}", get(record))
        .route("/syncs/{sync}/retry", post(retry))
        .route("/syncs/{sync}/run", post(run_now))
        .route("/syncs/{sync}/records/{key}/resolve", post(resolve))
}

fn templates() -> &'static Environment<'static> {
    static TEMPLATES: OnceLock<Environment<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("syncs.html", include_str!("templates/syncs.html")),
            ("failures.html", include_str!("templates/failures.html")),
            ("record.html", include_str!("templates/record.html")),
            ("error.html", include_str!("templates/error.html")),
            ("runs.html", include_str!("templates/runs.html")),
        ] {
            env.add_template(name, text)
                .expect("the console's templates parse");
        }
        // Links and forms put a sync's name or a key in a path through this, not through
        // `urlencode` (which leaves `/` as it is: a key with one would name another path).
        env.add_filter("segment", |text: &str| path_part(text));
        env.set_formatter(visible_controls);
        env
    })
}

/// Prints a value as the default formatter does (escaped for HTML), with each control
/// character but a tab or a line break shown as its escape (`\u{0}`): a NUL or an escape
/// in a note, a key or a message would otherwise be written raw into the page, unseen or
/// read differently by each browser. What is kept is untouched; only the page shows it so.
fn visible_controls(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let hidden = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    match value.as_str() {
        Some(text) if !value.is_safe() && text.contains(hidden) => {
            let mut shown = String::with_capacity(text.len() + 8);
            for c in text.chars() {
                if hidden(c) {
                    shown.extend(c.escape_unicode());
                } else {
                    shown.push(c);
                }
            }
            minijinja::escape_formatter(out, state, &minijinja::Value::from(shown))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// A JSON `null` shown as nothing (templates would print `None`); it stays false in an
/// `{% if %}`.
fn blank_nulls(value: &mut Value) {
    match value {
        Value::Null => *value = Value::String(String::new()),
        Value::Array(items) => items.iter_mut().for_each(blank_nulls),
        Value::Object(fields) => fields.values_mut().for_each(blank_nulls),
        _ => {}
    }
}

/// Renders `name` with `context`, plus who is signed in.
fn render(name: &str, viewer: Option<&Viewer>, mut context: Value) -> Response {
    blank_nulls(&mut context);
    if let Some(viewer) = viewer {
        let role = match viewer.session.role {
            Role::Operator => "operator",
            Role::ReadOnly => "read-only",
        };
        context["role"] = json!(format!("{} ({role})", viewer.session.name));
        context["csrf"] = json!(viewer.session.csrf);
        context["may_act"] = json!(viewer.session.role == Role::Operator);
    }
    let rendered = templates()
        .get_template(name)
        .and_then(|template| template.render(&context));
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!("rendering the console's {name}: {err:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// An error as a page: its status, and the message (escaped like everything else).
fn error_page(viewer: &Viewer, err: ApiError) -> Response {
    let mut page = render(
        "error.html",
        Some(viewer),
        json!({ "message": err.message() }),
    );
    *page.status_mut() = err.status();
    page
}

async fn login_form(Query(query): Query<Value>) -> Response {
    render(
        "login.html",
        None,
        json!({ "failed": query.get("failed").is_some() }),
    )
}

#[derive(Deserialize)]
struct Login {
    token: String,
    /// Who is signing in: kept with every action they take.
    #[serde(default)]
    name: String,
}

/// Checks the token and opens a session: an HttpOnly, SameSite=Strict cookie, never
/// readable by a page's scripts nor sent by another site's forms.
async fn login(State(console): State<Arc<Console>>, Form(form): Form<Login>) -> Response {
    let Some(role) = console.tokens.role_of(form.token.trim()) else {
        return Redirect::to("/login?failed=1").into_response();
    };
    let name = match form.name.trim() {
        "" => match role {
            Role::Operator => "an operator".to_string(),
            Role::ReadOnly => "a reader".to_string(),
        },
        name => name.to_string(),
    };
    let id = console.sessions.open(role, name);
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, "/".to_string()), (SET_COOKIE, cookie)],
    )
        .into_response()
}

async fn logout(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    body: axum::body::Bytes,
) -> Response {
    // A reader may sign out too: the token is checked, not the role.
    let fields = form_fields(&body);
    if let Err(refused) = viewer.sent_by_this_session(field(&fields, "csrf")) {
        return refused.into_response();
    }
    console.sessions.close(&viewer.id);
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, "/login".to_string()), (SET_COOKIE, cookie)],
    )
        .into_response()
}

async fn syncs(viewer: Viewer, State(console): State<Arc<Console>>) -> Response {
    match blocking(move || views::syncs(&console)).await {
        Ok(value) => render("syncs.html", Some(&viewer), value),
        Err(err) => error_page(&viewer, err),
    }
}

/// The failures page's query: the filters (as the API's), and what the last action did.
/// Spelled out rather than flattened: a flattened query reads every value as text.
#[derive(Deserialize)]
struct FailurePage {
    status: Option<String>,
    code: Option<String>,
    q: Option<String>,
    page: Option<usize>,
    message: Option<String>,
}

async fn failures(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    Query(page): Query<FailurePage>,
) -> Response {
    let query = FailureQuery {
        status: page.status.clone(),
        code: page.code.clone(),
        q: page.q.clone(),
        page: page.page,
        per_page: None,
    };
    let shown = blocking(move || views::failures(&console, &sync, &query)).await;
    match shown {
        Ok(mut value) => {
            value["status"] = json!(page.status.unwrap_or_default());
            value["code"] = json!(page.code.unwrap_or_default());
            value["q"] = json!(page.q.unwrap_or_default());
            value["message"] = json!(page.message);
            render("failures.html", Some(&viewer), value)
        }
        Err(err) => error_page(&viewer, err),
    }
}

async fn runs(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
) -> Response {
    match blocking(move || views::runs(&console, &sync, 50)).await {
        Ok(value) => render("runs.html", Some(&viewer), value),
        Err(err) => error_page(&viewer, err),
    }
}

async fn record(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    Path((sync, key)): Path<(String, String)>,
    Query(query): Query<Value>,
) -> Response {
    let name = sync.clone();
    match blocking(move || views::record(&console, &sync, &key)).await {
        Ok(record) => render(
            "record.html",
            Some(&viewer),
            json!({"sync": name, "r": record, "message": query.get("message")}),
        ),
        Err(err) => error_page(&viewer, err),
    }
}

/// The fields of a form, a field that repeats (a selection of keys) included.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The fields of a form that acts, once it is known to come from this session's page and
/// from someone who may act; the refusal (403) otherwise.
fn acting_form(viewer: &Viewer, body: &[u8]) -> Result<Vec<(String, String)>, Box<Response>> {
    let fields = form_fields(body);
    match viewer.may_act(field(&fields, "csrf")) {
        Ok(()) => Ok(fields),
        Err(refused) => Err(Box::new(refused.into_response())),
    }
}

/// Where to go after an action: back to the page it came from, saying what it did.
fn back_to(path: &str, message: &str) -> Response {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("message", message)
        .finish();
    Redirect::to(&format!("{path}?{query}")).into_response()
}

/// `text` as one segment of a path: everything but letters and digits percent-encoded,
/// `/`, `?`, `#` and `%` included, so the router decodes it back to `text`.
fn path_part(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Retries the selected records, or every record of a code, then shows what happened.
async fn retry(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let fields = match acting_form(&viewer, &body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let keys: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "keys")
        .map(|(_, v)| v.clone())
        .collect();
    let code = field(&fields, "code").map(str::to_string);
    let back = match (field(&fields, "back"), keys.first()) {
        (Some("record"), Some(key)) => {
            format!("/syncs/{}/records/{}", path_part(&sync), path_part(key))
        }
        _ => format!("/syncs/{}/failures", path_part(&sync)),
    };
    let by = viewer.session.name.clone();
    match views::retry(&console, &sync, keys, code, &by).await {
        Ok(done) => back_to(&back, done["result"].as_str().unwrap_or_default()),
        Err(err) => error_page(&viewer, ApiError::Failed(err)),
    }
}

/// Starts a run of the sync now; its live counts show on the syncs page.
async fn run_now(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    Path(sync): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = acting_form(&viewer, &body) {
        return *refused;
    }
    match views::run_now(&console, &sync, &viewer.session.name) {
        Ok(_) => Redirect::to("/").into_response(),
        Err(err) => error_page(&viewer, ApiError::Failed(err)),
    }
}

/// Resolves a record with who and why.
async fn resolve(
    viewer: Viewer,
    State(console): State<Arc<Console>>,
    Path((sync, key)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let fields = match acting_form(&viewer, &body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let by = field(&fields, "by").unwrap_or_default().to_string();
    let note = field(&fields, "note").unwrap_or_default().to_string();
    let back = format!("/syncs/{}/records/{}", path_part(&sync), path_part(&key));
    let done = blocking(move || views::resolve(&console, &sync, &key, &by, &note)).await;
    match done {
        Ok(_) => back_to(&back, "resolved"),
        Err(err) => error_page(&viewer, err),
    }
}
