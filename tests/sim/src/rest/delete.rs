//! The REST simulator's delete endpoint: an array of identities, each a stored record's
//! key or the id the simulator gave it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Answer, Rest, RestMode, claim, error_response, refusal_response};
use crate::common::{self, json_response};
use crate::delete::{self, Removal};
use crate::outcome;
use crate::store::Store;
use crate::validation::RecordError;

/// The identities of a delete body: an array of strings, bare or under `records_field`.
fn parse_identities(body: &[u8], records_field: Option<&str>) -> Result<Vec<String>, String> {
    let expected = "expected a JSON array of identities (strings)";
    match records_field {
        None => serde_json::from_slice(body).map_err(|e| format!("{expected}: {e}")),
        Some(field) => {
            let mut envelope: HashMap<String, &RawValue> =
                serde_json::from_slice(body).map_err(|e| format!("expected a JSON object: {e}"))?;
            let list = envelope
                .remove(field)
                .ok_or_else(|| format!("missing field {field:?}"))?;
            serde_json::from_str(list.get()).map_err(|e| format!("{field:?}: {expected}: {e}"))
        }
    }
}

/// The stored record an identity names: the one with that key, else the one given that id.
fn by_key_or_id(store: &Store, identity: &str) -> Option<String> {
    if store.contains(identity) {
        Some(identity.to_owned())
    } else {
        store.key_for_id(identity).map(str::to_owned)
    }
}

fn not_found(identity: &str) -> RecordError {
    let message = format!("no record has the key or id {identity:?}");
    RecordError::new("NOT_FOUND", message, Vec::new())
}

pub(super) async fn deletes(State(rest): State<Arc<Rest>>, request: Request) -> Response {
    let shared = &rest.shared;
    let received = match common::receive(shared, request, &[rest.delete_method.as_str()]).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let seq = received.arrival.seq;
    shared.lock().count_operation("delete");
    let parsed = parse_identities(&received.body, rest.records_field.as_deref());
    let (log_keys, count) = match &parsed {
        Ok(ids) if shared.keeps_keys() => (delete::keys(shared, ids, by_key_or_id), ids.len()),
        Ok(ids) => (Vec::new(), ids.len()),
        Err(_) => (Vec::new(), 0),
    };
    if let Err(response) =
        common::admit(shared, &received, &log_keys, count, refusal_response).await
    {
        return response;
    }
    let claim = match claim(&rest, &received, &log_keys, count) {
        Ok(claim) => claim,
        Err(response) => return *response,
    };
    let (status, label, response) = match parsed {
        Err(message) => (
            400,
            outcome::BAD_REQUEST,
            error_response(400, "BAD_JSON", &message),
        ),
        Ok(ids) if rest.mode == RestMode::PerRecord => per_record(&rest, &ids),
        Ok(ids) => remove_found(&rest, &ids),
    };
    shared.finish(seq, status, label, log_keys, count);
    rest.replays.settle(claim, label, response).await
}

/// One result per identity, by position; row locks apply.
fn per_record(rest: &Rest, ids: &[String]) -> Answer {
    let removals = delete::remove(&rest.shared, ids, by_key_or_id, not_found, false);
    let all_removed = removals
        .iter()
        .all(|r| matches!(r, Removal::Removed { .. }));
    let results: Vec<Value> = removals
        .into_iter()
        .zip(ids)
        .map(|(removal, id)| match removal {
            Removal::Removed { .. } => json!({"id": id, "error": null}),
            Removal::Failed(e) => json!({"id": id, "error": e}),
        })
        .collect();
    let label = common::stored_label(all_removed);
    (200, label, json_response(200, &json!({"results": results})))
}

/// Removes what the identities name, passing over the rest, as an idempotent bulk delete.
fn remove_found(rest: &Rest, ids: &[String]) -> Answer {
    let mut inner = rest.shared.lock();
    for id in ids {
        if let Some(key) = by_key_or_id(&inner.store, id) {
            inner.store.remove(&key);
            inner.count_deleted();
        }
    }
    drop(inner);
    let body = json!({"accepted": ids.len()});
    (200, outcome::OK, json_response(200, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_bare_or_in_the_envelope() {
        assert_eq!(parse_identities(br#"["a","b"]"#, None).unwrap(), ["a", "b"]);
        assert_eq!(
            parse_identities(br#"{"ids":["a"]}"#, Some("ids")).unwrap(),
            ["a"]
        );
        for (body, field) in [
            (&br#"[1]"#[..], None),
            (br#"{"ids":["a"]}"#, None),
            (br#"["a"]"#, Some("ids")),
            (br#"{"other":["a"]}"#, Some("ids")),
        ] {
            assert!(parse_identities(body, field).is_err());
        }
    }
}
