//! Field rules shared by both simulators, with Salesforce's error codes.
//!
//! These are the data problems a real destination refuses records for (the Census seed
//! lists an invalid email domain, a missing parent record and a value too long). Both
//! simulators use the same codes so that one set of tests covers both connectors.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

/// A required field is absent, null or empty.
pub const REQUIRED_FIELD_MISSING: &str = "REQUIRED_FIELD_MISSING";
/// An email field does not look like an address.
pub const INVALID_EMAIL_ADDRESS: &str = "INVALID_EMAIL_ADDRESS";
/// A string is longer than its field allows.
pub const STRING_TOO_LONG: &str = "STRING_TOO_LONG";
/// A [`CustomRule`] matched.
pub const FIELD_CUSTOM_VALIDATION_EXCEPTION: &str = "FIELD_CUSTOM_VALIDATION_EXCEPTION";
/// Another stored record already has this value in a unique field.
pub const DUPLICATE_VALUE: &str = "DUPLICATE_VALUE";
/// The record points at a parent the destination does not know.
pub const INVALID_CROSS_REFERENCE_KEY: &str = "INVALID_CROSS_REFERENCE_KEY";
/// The record's row was locked by another transaction (a fault, not a rule).
pub const UNABLE_TO_LOCK_ROW: &str = "UNABLE_TO_LOCK_ROW";
/// The same key appears twice in one request.
pub const DUPLICATE_EXTERNAL_ID: &str = "DUPLICATE_EXTERNAL_ID";
/// A valid record of an all-or-none request that failed because another record did.
pub const ALL_OR_NONE_OPERATION_ROLLED_BACK: &str = "ALL_OR_NONE_OPERATION_ROLLED_BACK";

/// The rules records are checked against. The default checks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Fields that must be present, non-null and not an empty string.
    pub required: Vec<String>,
    /// Fields that, when present and non-empty, must hold an email address: exactly one
    /// `@`, a non-empty local part, a `.` inside the domain, and no `,` or whitespace.
    pub emails: Vec<String>,
    /// Fields whose string value may have at most this many characters.
    pub max_len: Vec<(String, usize)>,
    /// Values refused by a destination-side validation rule.
    pub custom: Vec<CustomRule>,
    /// Fields whose value no two stored records may share (checked by the simulators
    /// against what they store, since [`check`] sees one record alone).
    pub unique: Vec<String>,
    /// A field that refers to a parent record...
    pub parent_field: Option<String>,
    /// ...which, when non-empty, must be one of these. Both must be set for the check.
    pub known_parents: Option<BTreeSet<String>>,
}

/// A destination-side validation rule: `field` must not equal `forbidden_value` (an absent
/// field counts as `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomRule {
    pub field: String,
    pub forbidden_value: Value,
    /// The message the destination answers with.
    pub message: String,
}

/// Why one record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn new(code: &str, message: impl Into<String>, fields: Vec<String>) -> Self {
        RecordError {
            code: code.to_owned(),
            message: message.into(),
            fields,
        }
    }
}

/// Checks one record against every rule that needs no other record (all but `unique`),
/// and returns the first failure, in this order: required, email, length, custom,
/// cross-reference. Required fields are reported together, as Salesforce does.
pub fn check(rules: &Rules, record: &Map<String, Value>) -> Option<RecordError> {
    let missing: Vec<String> = rules
        .required
        .iter()
        .filter(|f| is_blank(record.get(*f)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let message = format!("Required fields are missing: [{}]", missing.join(", "));
        return Some(RecordError::new(REQUIRED_FIELD_MISSING, message, missing));
    }
    for field in &rules.emails {
        let value = record.get(field);
        if is_blank(value) {
            continue;
        }
        let valid = value.and_then(Value::as_str).is_some_and(is_valid_email);
        if !valid {
            let shown = value.map(display).unwrap_or_default();
            let message = format!("{field}: invalid email address: {shown}");
            return Some(RecordError::new(
                INVALID_EMAIL_ADDRESS,
                message,
                vec![field.clone()],
            ));
        }
    }
    for (field, max) in &rules.max_len {
        if let Some(s) = record.get(field).and_then(Value::as_str)
            && s.chars().count() > *max
        {
            let message = format!("{field}: data value too large: {s} (max length={max})");
            return Some(RecordError::new(
                STRING_TOO_LONG,
                message,
                vec![field.clone()],
            ));
        }
    }
    for rule in &rules.custom {
        if record.get(&rule.field).unwrap_or(&Value::Null) == &rule.forbidden_value {
            let fields = vec![rule.field.clone()];
            return Some(RecordError::new(
                FIELD_CUSTOM_VALIDATION_EXCEPTION,
                &rule.message,
                fields,
            ));
        }
    }
    if let (Some(field), Some(known)) = (&rules.parent_field, &rules.known_parents)
        && let Some(parent) = record.get(field).and_then(key_of)
        && !known.contains(&parent)
    {
        let message = format!("invalid cross reference id: {field} = {parent}");
        let fields = vec![field.clone()];
        return Some(RecordError::new(
            INVALID_CROSS_REFERENCE_KEY,
            message,
            fields,
        ));
    }
    None
}

/// Whether `s` passes the destination's email check (see [`Rules::emails`]).
pub fn is_valid_email(s: &str) -> bool {
    if s.contains(',') || s.chars().any(char::is_whitespace) {
        return false;
    }
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// The error for a second record with the same value in a unique field.
pub(crate) fn duplicate_value(field: &str, value: &str, owner: &str) -> RecordError {
    let message = format!(
        "duplicate value found: {field} duplicates value on record with id: {owner} ({value})"
    );
    RecordError::new(DUPLICATE_VALUE, message, vec![field.to_owned()])
}

/// A record key or reference as the destination compares it: a non-empty string as is, a
/// number in its JSON spelling; anything else (null, "", booleans, containers) is no key.
pub fn key_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value a unique field is compared by; blank values are never duplicates.
pub(crate) fn unique_value(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn is_blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::object as record;
    use serde_json::json;

    fn code(rules: &Rules, v: Value) -> Option<String> {
        check(rules, &record(v)).map(|e| e.code)
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@mail.example.org"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "nopain,nogain.com",
            "a@@b.com",
            "a@b",
            "@b.com",
            "a b@c.com",
            "a@.com",
            "a@b.",
            "a@b,c.com",
            "",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn every_stateless_code() {
        let rules = Rules {
            required: vec!["Name".into()],
            emails: vec!["Email".into()],
            max_len: vec![("Name".into(), 5)],
            custom: vec![CustomRule {
                field: "Stage".into(),
                forbidden_value: json!("Banned"),
                message: "Stage may not be Banned".into(),
            }],
            unique: vec![],
            parent_field: Some("ParentId".into()),
            known_parents: Some(["P1".to_owned()].into()),
        };
        assert_eq!(code(&rules, json!({"Name": "Ann"})), None);
        assert_eq!(
            code(
                &rules,
                json!({"Name": "Ann", "Email": null, "ParentId": ""})
            ),
            None
        );
        assert_eq!(
            code(&rules, json!({"Name": " "})).as_deref(),
            Some(REQUIRED_FIELD_MISSING)
        );
        assert_eq!(
            code(&rules, json!({})).as_deref(),
            Some(REQUIRED_FIELD_MISSING)
        );
        let bad_email = json!({"Name": "Ann", "Email": "nopain,nogain.com"});
        assert_eq!(
            code(&rules, bad_email).as_deref(),
            Some(INVALID_EMAIL_ADDRESS)
        );
        let numeric_email = json!({"Name": "Ann", "Email": 12});
        assert_eq!(
            code(&rules, numeric_email).as_deref(),
            Some(INVALID_EMAIL_ADDRESS)
        );
        let long = json!({"Name": "Annabel"});
        let err = check(&rules, &record(long)).map(|e| (e.code, e.fields));
        assert_eq!(
            err,
            Some((STRING_TOO_LONG.to_owned(), vec!["Name".to_owned()]))
        );
        let banned = json!({"Name": "Ann", "Stage": "Banned"});
        let err = check(&rules, &record(banned));
        assert_eq!(
            err.as_ref().map(|e| e.code.as_str()),
            Some(FIELD_CUSTOM_VALIDATION_EXCEPTION)
        );
        assert_eq!(
            err.map(|e| e.message).as_deref(),
            Some("Stage may not be Banned")
        );
        let orphan = json!({"Name": "Ann", "ParentId": "P9"});
        assert_eq!(
            code(&rules, orphan).as_deref(),
            Some(INVALID_CROSS_REFERENCE_KEY)
        );
        assert_eq!(code(&rules, json!({"Name": "Ann", "ParentId": "P1"})), None);
    }

    #[test]
    fn missing_required_fields_are_listed_together() {
        let rules = Rules {
            required: vec!["A".into(), "B".into()],
            ..Rules::default()
        };
        let err = check(&rules, &record(json!({"A": null})));
        assert_eq!(
            err.map(|e| e.fields),
            Some(vec!["A".to_owned(), "B".to_owned()])
        );
    }

    #[test]
    fn keys() {
        assert_eq!(key_of(&json!("k1")), Some("k1".into()));
        assert_eq!(key_of(&json!(42)), Some("42".into()));
        assert_eq!(key_of(&json!("")), None);
        assert_eq!(key_of(&json!(null)), None);
        assert_eq!(key_of(&json!(true)), None);
    }
}
