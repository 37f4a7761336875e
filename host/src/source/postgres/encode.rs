//! A row's binary columns written as one JSON object, in Rust rather than by the server:
//! PostgreSQL's `row_to_json` costs about 3 µs a row on the server, decoding the binary
//! columns here a fraction of that.
//!
//! Each column has a [`Kind`], chosen from its type when the query is prepared. The kind
//! decides how the column is selected (most as they are; `numeric` as its exact text; a
//! type this module does not decode through the server's own `to_json`) and how its bytes
//! become JSON. The mapping is the one README's table states.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use tokio_postgres::types::Type;

/// How a column is selected and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    /// text, varchar, char(n), name, "char": UTF-8 text.
    Text,
    Bytea,
    Uuid,
    /// `json`, as it was written.
    Json,
    Jsonb,
    Date,
    Timestamp,
    Timestamptz,
    /// `numeric`, selected as its exact text.
    Numeric,
    /// Any other type (arrays, intervals, enums, ranges, composite and extension types),
    /// selected through the server's `to_json` and written as the JSON it makes.
    ToJson,
}

impl Kind {
    /// The kind for a column of type `ty`.
    pub fn of(ty: &Type) -> Kind {
        match *ty {
            Type::BOOL => Kind::Bool,
            Type::INT2 => Kind::Int2,
            Type::INT4 => Kind::Int4,
            Type::INT8 => Kind::Int8,
            Type::OID => Kind::Oid,
            Type::FLOAT4 => Kind::Float4,
            Type::FLOAT8 => Kind::Float8,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR => Kind::Text,
            Type::BYTEA => Kind::Bytea,
            Type::UUID => Kind::Uuid,
            Type::JSON => Kind::Json,
            Type::JSONB => Kind::Jsonb,
            Type::DATE => Kind::Date,
            Type::TIMESTAMP => Kind::Timestamp,
            Type::TIMESTAMPTZ => Kind::Timestamptz,
            Type::NUMERIC => Kind::Numeric,
            _ => Kind::ToJson,
        }
    }

    /// How the wrapping query selects `column` (an already quoted reference).
    pub fn select(self, column: &str) -> String {
        match self {
            Kind::Numeric => format!("{column}::text"),
            Kind::ToJson => format!("to_json({column})"),
            _ => column.to_string(),
        }
    }
}

/// Why a column's value could not be written: the server sent bytes its type does not
/// allow, or a date beyond what this reader writes (years -262143 to 262143).
#[derive(Debug, thiserror::Error)]
#[error("a {kind:?} column's value of {len} bytes is not valid or out of range")]
pub struct Malformed {
    kind: Kind,
    len: usize,
}

/// Writes the value of a column of `kind` (its binary bytes, or `None` for NULL) as JSON.
pub fn value(out: &mut Vec<u8>, kind: Kind, raw: Option<&[u8]>) -> Result<(), Malformed> {
    let Some(raw) = raw else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    let bad = || Malformed {
        kind,
        len: raw.len(),
    };
    match kind {
        Kind::Bool => {
            let [byte] = raw else { return Err(bad()) };
            out.extend_from_slice(if *byte != 0 { b"true" } else { b"false" });
        }
        Kind::Int2 => integer(out, i16::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Kind::Int4 => integer(out, i32::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Kind::Int8 => integer(out, i64::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Kind::Oid => integer(out, u32::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Kind::Float4 => {
            let value = f32::from_be_bytes(fixed(raw).ok_or_else(bad)?);
            if !not_finite(out, value.into()) {
                out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
            }
        }
        Kind::Float8 => {
            let value = f64::from_be_bytes(fixed(raw).ok_or_else(bad)?);
            if !not_finite(out, value) {
                out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
            }
        }
        Kind::Text => string(out, std::str::from_utf8(raw).map_err(|_| bad())?),
        Kind::Bytea => {
            out.push(b'"');
            let start = out.len();
            out.resize(start + raw.len().div_ceil(3) * 4, 0);
            let written = BASE64
                .encode_slice(raw, &mut out[start..])
                .map_err(|_| bad())?;
            out.truncate(start + written);
            out.push(b'"');
        }
        Kind::Uuid => {
            let bytes: [u8; 16] = fixed(raw).ok_or_else(bad)?;
            out.push(b'"');
            for (i, byte) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push(b'-');
                }
                write!(out, "{byte:02x}").expect("writing to a Vec");
            }
            out.push(b'"');
        }
        Kind::Json | Kind::ToJson => json_text(out, raw),
        Kind::Jsonb => match raw.split_first() {
            Some((1, text)) => json_text(out, text),
            _ => return Err(bad()),
        },
        Kind::Date => {
            let days = i32::from_be_bytes(fixed(raw).ok_or_else(bad)?);
            match infinity(days == i32::MAX, days == i32::MIN) {
                Some(word) => string(out, word),
                None => {
                    let date = NaiveDate::from_num_days_from_ce_opt(POSTGRES_EPOCH_DAYS + days)
                        .ok_or_else(bad)?;
                    out.push(b'"');
                    calendar_date(out, date);
                    out.push(b'"');
                }
            }
        }
        Kind::Timestamp | Kind::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(raw).ok_or_else(bad)?);
            if let Some(word) = infinity(micros == i64::MAX, micros == i64::MIN) {
                string(out, word);
                return Ok(());
            }
            let at = micros
                .checked_add(POSTGRES_EPOCH_MICROS)
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(bad)?;
            out.push(b'"');
            calendar_date(out, at.date_naive());
            let time = at.time();
            out.push(b'T');
            two_digits(out, time.hour());
            out.push(b':');
            two_digits(out, time.minute());
            out.push(b':');
            two_digits(out, time.second());
            let micros = at.timestamp_subsec_micros();
            let mut fraction = [b'0'; 6];
            let mut rest = micros;
            for digit in fraction.iter_mut().rev() {
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            if kind == Kind::Timestamp {
                // Always six digits and `Z`: no zone was stored, UTC is assumed.
                out.push(b'.');
                out.extend_from_slice(&fraction);
                out.extend_from_slice(b"Z\"");
            } else {
                // As PostgreSQL writes it in JSON: the fraction without trailing zeros.
                if micros > 0 {
                    let kept = 6 - fraction.iter().rev().take_while(|d| **d == b'0').count();
                    out.push(b'.');
                    out.extend_from_slice(&fraction[..kept]);
                }
                out.extend_from_slice(b"+00:00\"");
            }
        }
        Kind::Numeric => numeric(out, std::str::from_utf8(raw).map_err(|_| bad())?),
    }
    Ok(())
}

/// Days from 0001-01-01 (chrono's day 1) to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_DAYS: i32 = 730_120;
/// Microseconds from the Unix epoch to 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn fixed<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.try_into().ok()
}

/// `2024-01-31`; chrono's `format` parses its pattern on every call, a cost per value.
fn calendar_date(out: &mut Vec<u8>, date: NaiveDate) {
    let year = date.year();
    if (0..=9999).contains(&year) {
        let year = year as u32;
        two_digits(out, year / 100);
        two_digits(out, year % 100);
    } else {
        // Beyond RFC 3339: ISO 8601's expanded years, as chrono writes them.
        write!(out, "{year:+05}").expect("writing to a Vec");
    }
    out.push(b'-');
    two_digits(out, date.month());
    out.push(b'-');
    two_digits(out, date.day());
}

fn two_digits(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

fn infinity(positive: bool, negative: bool) -> Option<&'static str> {
    match (positive, negative) {
        (true, _) => Some("infinity"),
        (_, true) => Some("-infinity"),
        _ => None,
    }
}

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Writes NaN and the infinities as strings, as PostgreSQL's own JSON does (JSON has no
/// number for them); false for a finite value, which the caller writes.
fn not_finite(out: &mut Vec<u8>, value: f64) -> bool {
    let word = if value.is_nan() {
        "NaN"
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }
    } else {
        return false;
    };
    string(out, word);
    true
}

fn string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec");
}

/// JSON text from the server, on one line: a line break outside a string is whitespace,
/// and inside a string JSON only allows it escaped, so every raw one can become a space.
fn json_text(out: &mut Vec<u8>, text: &[u8]) {
    let start = out.len();
    out.extend_from_slice(text);
    for byte in &mut out[start..] {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
}

/// Doubles hold any decimal of this many significant digits exactly (C's `DBL_DIG`).
const DOUBLE_DIGITS: usize = 15;

/// A `numeric`'s text: a number when a double holds it exactly (at most 15 significant
/// digits, within a double's range), else a string, so that no digit is lost downstream.
/// NaN and the infinities are strings.
fn numeric(out: &mut Vec<u8>, text: &str) {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        string(out, text);
        return;
    }
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let whole = whole.trim_start_matches('0');
    // Positions in the digits `whole` then `fraction`: of the first non-zero digit, and
    // after the last one.
    let first = if whole.is_empty() {
        fraction.len() - fraction.trim_start_matches('0').len()
    } else {
        0
    };
    let end = match fraction.trim_end_matches('0') {
        "" => whole.trim_end_matches('0').len(),
        kept => whole.len() + kept.len(),
    };
    let significant = end.saturating_sub(first);
    let exact = significant <= DOUBLE_DIGITS && whole.len() <= 308 && first < 307;
    if exact {
        out.extend_from_slice(text.as_bytes());
    } else {
        string(out, text);
    }
}

#[cfg(test)]
mod tests;
