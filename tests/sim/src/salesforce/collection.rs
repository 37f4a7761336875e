//! `/services/data/{version}/composite/sobjects`: insert (`POST`), update by `Id` (`PATCH`)
//! and delete by ids (`DELETE ?ids=...&allOrNone=false`), with the faults, credentials and
//! rules of the upsert where they apply (a delete checks no rules).
//!
//! An insert of a key already stored fails that record with `DUPLICATE_VALUE`; an update or
//! a delete naming an id the simulator does not hold fails it with `ENTITY_IS_DELETED`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{MAX_RECORDS, UpsertBody, error_response, failed, give_id, refusal_response};
use crate::common::{self, Received};
use crate::delete::{self, Removal};
use crate::outcome;
use crate::state::Shared;
use crate::store::Store;
use crate::upsert::{self, Candidate, Mode, Outcome};
use crate::validation::{self, RecordError, key_of};

/// What the collection handlers need besides the shared state.
pub(crate) struct Collection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) external_id_field: String,
}

pub(crate) async fn records(State(c): State<Arc<Collection>>, request: Request) -> Response {
    let shared = &c.shared;
    let received = match common::receive(shared, request, &["POST", "PATCH", "DELETE"]).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    match received.method.as_str() {
        "POST" => insert(&c, received).await,
        "PATCH" => update(shared, received).await,
        _ => remove(shared, received).await,
    }
}

/// Logs and answers a request refused whole before its records were looked at.
fn refused(
    shared: &Shared,
    seq: u64,
    keys: Vec<String>,
    count: usize,
    code: &str,
    message: &str,
) -> Response {
    let label = if code == "EXCEEDED_ID_LIMIT" {
        outcome::BATCH_REJECTED
    } else {
        outcome::BAD_REQUEST
    };
    shared.finish(seq, 400, label, keys, count);
    error_response(400, code, message)
}

fn too_many() -> String {
    format!("record limit reached. cannot submit more than {MAX_RECORDS} records into this call")
}

/// The records of an insert or an update body, or why there are none.
fn parse(received: &Received) -> Result<UpsertBody, String> {
    serde_json::from_slice(&received.body).map_err(|e| e.to_string())
}

/// The sObject type a record names in its `attributes`; `""` when it names none.
fn object_of(record: &serde_json::Map<String, Value>) -> String {
    record
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn insert(c: &Collection, received: Received) -> Response {
    let shared = &c.shared;
    let seq = received.arrival.seq;
    shared.lock().count_operation("insert");
    let field = &c.external_id_field;
    let parsed = parse(&received);
    let (keys, count) = match &parsed {
        Ok(body) => {
            let keys = body.records.iter().map(|r| r.get(field).and_then(key_of));
            (
                keys.map(Option::unwrap_or_default).collect(),
                body.records.len(),
            )
        }
        Err(_) => (Vec::new(), 0),
    };
    let refuse = |refusal: &_| refusal_response(refusal, seq);
    if let Err(response) = common::admit(shared, &received, &keys, count, refuse).await {
        return response;
    }
    let body = match parsed {
        Ok(body) if body.records.len() > MAX_RECORDS => {
            return refused(shared, seq, keys, count, "EXCEEDED_ID_LIMIT", &too_many());
        }
        Ok(body) => body,
        Err(message) => return refused(shared, seq, keys, count, "JSON_PARSER_ERROR", &message),
    };
    let mut objects = Vec::with_capacity(body.records.len());
    let candidates = body
        .records
        .into_iter()
        .map(|mut fields| {
            objects.push(object_of(&fields));
            fields.remove("attributes");
            Candidate {
                key: fields.get(field).and_then(key_of),
                fields,
                text: None,
            }
        })
        .collect();
    let mode = Mode {
        key_field: field,
        merge: false,
        all_or_none: body.all_or_none,
        create_only: true,
    };
    let outcomes = upsert::upsert(shared, candidates, mode);
    let all_stored = outcomes.iter().all(|o| matches!(o, Outcome::Stored { .. }));
    let results = outcomes
        .into_iter()
        .zip(objects)
        .map(|(o, object)| match o {
            Outcome::Stored { key, .. } => {
                let id = give_id(shared, &object, &key);
                json!({"id": id, "success": true, "errors": []})
            }
            Outcome::Failed(e) => failed(Value::Null, &e),
        })
        .collect();
    common::answered(shared, seq, 200, all_stored, keys, count, results)
}

fn entity_is_deleted(id: &str) -> RecordError {
    let message = format!("entity is deleted: {id}");
    RecordError::new("ENTITY_IS_DELETED", message, Vec::new())
}

/// The stored record's key an id names.
fn by_id(store: &Store, id: &str) -> Option<String> {
    store.key_for_id(id).map(str::to_owned)
}

async fn update(shared: &Shared, received: Received) -> Response {
    let seq = received.arrival.seq;
    shared.lock().count_operation("update");
    let parsed = parse(&received);
    let ids: Vec<Option<String>> = match &parsed {
        Ok(body) => body
            .records
            .iter()
            .map(|r| r.get("Id").and_then(key_of))
            .collect(),
        Err(_) => Vec::new(),
    };
    let named: Vec<String> = ids
        .iter()
        .map(|id| id.clone().unwrap_or_default())
        .collect();
    let keys = delete::keys(shared, &named, by_id);
    let count = ids.len();
    let refuse = |refusal: &_| refusal_response(refusal, seq);
    if let Err(response) = common::admit(shared, &received, &keys, count, refuse).await {
        return response;
    }
    let body = match parsed {
        Ok(body) if body.records.len() > MAX_RECORDS => {
            return refused(shared, seq, keys, count, "EXCEEDED_ID_LIMIT", &too_many());
        }
        Ok(body) => body,
        Err(message) => return refused(shared, seq, keys, count, "JSON_PARSER_ERROR", &message),
    };
    // Records naming no stored record fail before the rest go through the upsert.
    let mut errors: Vec<Option<RecordError>> = Vec::with_capacity(count);
    let mut candidates = Vec::new();
    for (mut fields, id) in body.records.into_iter().zip(&ids) {
        fields.remove("attributes");
        fields.remove("Id");
        let key = id.as_deref().and_then(|id| by_id(&shared.lock().store, id));
        match (id, key) {
            (None, _) => {
                let message = "Id not specified in an update call";
                errors.push(Some(RecordError::new(
                    "MISSING_ARGUMENT",
                    message,
                    vec!["Id".into()],
                )));
            }
            (Some(id), None) => errors.push(Some(entity_is_deleted(id))),
            (Some(_), Some(key)) => {
                errors.push(None);
                candidates.push(Candidate {
                    key: Some(key),
                    fields,
                    text: None,
                });
            }
        }
    }
    let all_or_none = body.all_or_none;
    let mut outcomes = if all_or_none && errors.iter().any(Option::is_some) {
        let message = "Record rolled back because not all records were valid and the request was using AllOrNone header";
        let code = validation::ALL_OR_NONE_OPERATION_ROLLED_BACK;
        let rolled_back = RecordError::new(code, message, Vec::new());
        vec![Outcome::Failed(rolled_back); candidates.len()]
    } else {
        let mode = Mode {
            key_field: "Id",
            merge: true,
            all_or_none,
            create_only: false,
        };
        upsert::upsert(shared, candidates, mode)
    }
    .into_iter();
    let mut all_stored = true;
    let results = errors
        .into_iter()
        .zip(&ids)
        .map(|(error, id)| {
            let id = id.clone().map_or(Value::Null, Value::String);
            let outcome = match error {
                Some(e) => {
                    shared.lock().count_record_error(&e.code);
                    Outcome::Failed(e)
                }
                None => outcomes.next().unwrap_or_else(|| {
                    Outcome::Failed(RecordError::new(
                        "UNKNOWN_EXCEPTION",
                        "record lost",
                        Vec::new(),
                    ))
                }),
            };
            match outcome {
                Outcome::Stored { .. } => json!({"id": id, "success": true, "errors": []}),
                Outcome::Failed(e) => {
                    all_stored = false;
                    failed(id, &e)
                }
            }
        })
        .collect();
    common::answered(shared, seq, 200, all_stored, keys, count, results)
}

/// The ids and the `allOrNone` flag of a delete's query.
fn delete_query(query: Option<&str>) -> Result<(Vec<String>, bool), String> {
    let mut ids = None;
    let mut all_or_none = false;
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match name {
            "ids" => ids = Some(value.split(',').map(str::to_owned).collect::<Vec<_>>()),
            "allOrNone" => all_or_none = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    match ids {
        Some(ids) if !ids.iter().any(String::is_empty) => Ok((ids, all_or_none)),
        _ => Err("the ids parameter must list one or more record ids, separated by commas".into()),
    }
}

async fn remove(shared: &Shared, received: Received) -> Response {
    let seq = received.arrival.seq;
    shared.lock().count_operation("delete");
    let parsed = delete_query(received.query.as_deref());
    let (keys, count) = match &parsed {
        Ok((ids, _)) => (delete::keys(shared, ids, by_id), ids.len()),
        Err(_) => (Vec::new(), 0),
    };
    let refuse = |refusal: &_| refusal_response(refusal, seq);
    if let Err(response) = common::admit(shared, &received, &keys, count, refuse).await {
        return response;
    }
    let (ids, all_or_none) = match parsed {
        Ok((ids, _)) if ids.len() > MAX_RECORDS => {
            return refused(shared, seq, keys, count, "EXCEEDED_ID_LIMIT", &too_many());
        }
        Ok(parsed) => parsed,
        Err(message) => return refused(shared, seq, keys, count, "MISSING_ARGUMENT", &message),
    };
    let removals = delete::remove(shared, &ids, by_id, entity_is_deleted, all_or_none);
    let all_removed = removals
        .iter()
        .all(|r| matches!(r, Removal::Removed { .. }));
    let results = removals
        .into_iter()
        .zip(ids)
        .map(|(removal, id)| match removal {
            Removal::Removed { .. } => json!({"id": id, "success": true, "errors": []}),
            Removal::Failed(e) => failed(Value::String(id), &e),
        })
        .collect();
    common::answered(shared, seq, 200, all_removed, keys, count, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_queries() {
        let (ids, all) = delete_query(Some("ids=001A,001B&allOrNone=false")).unwrap();
        assert_eq!((ids, all), (vec!["001A".to_string(), "001B".into()], false));
        let (ids, all) = delete_query(Some("allOrNone=true&ids=001%41")).unwrap();
        assert_eq!((ids, all), (vec!["001A".to_string()], true));
        for bad in [None, Some(""), Some("ids="), Some("ids=a,,b"), Some("id=a")] {
            assert!(delete_query(bad).is_err(), "{bad:?}");
        }
    }
}
