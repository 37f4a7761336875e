use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn written(kind: Kind, raw: Option<&[u8]>) -> String {
    let mut out = Vec::new();
    value(&mut out, kind, raw).unwrap();
    String::from_utf8(out).unwrap()
}

fn parsed(kind: Kind, raw: &[u8]) -> Value {
    serde_json::from_str(&written(kind, Some(raw))).unwrap()
}

#[test]
fn each_kind_is_written_as_the_readme_table_says() {
    let cases: Vec<(Kind, Vec<u8>, Value)> = vec![
        (Kind::Bool, vec![1], json!(true)),
        (Kind::Bool, vec![0], json!(false)),
        (Kind::Int2, (-7i16).to_be_bytes().to_vec(), json!(-7)),
        (
            Kind::Int4,
            123_456i32.to_be_bytes().to_vec(),
            json!(123_456),
        ),
        (Kind::Int8, i64::MIN.to_be_bytes().to_vec(), json!(i64::MIN)),
        (Kind::Oid, u32::MAX.to_be_bytes().to_vec(), json!(u32::MAX)),
        (Kind::Float4, 1.1f32.to_be_bytes().to_vec(), json!(1.1)),
        (
            Kind::Float8,
            (-0.25f64).to_be_bytes().to_vec(),
            json!(-0.25),
        ),
        (Kind::Float8, f64::NAN.to_be_bytes().to_vec(), json!("NaN")),
        (
            Kind::Float4,
            f32::INFINITY.to_be_bytes().to_vec(),
            json!("Infinity"),
        ),
        (
            Kind::Float8,
            f64::NEG_INFINITY.to_be_bytes().to_vec(),
            json!("-Infinity"),
        ),
        (
            Kind::Text,
            "Ann \"Q\" ☃\n".as_bytes().to_vec(),
            json!("Ann \"Q\" ☃\n"),
        ),
        (Kind::Bytea, vec![0x00, 0xff, 0x10], json!("AP8Q")),
        (Kind::Bytea, vec![], json!("")),
        (
            Kind::Uuid,
            vec![
                0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
                0x0a, 0x11,
            ],
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        (Kind::Json, b"{\"a\":\n [1]}".to_vec(), json!({"a": [1]})),
        (Kind::ToJson, b"[1.5, \"x\"]".to_vec(), json!([1.5, "x"])),
        (
            Kind::Jsonb,
            b"\x01{\"a\": null}".to_vec(),
            json!({"a": null}),
        ),
        // 2024-01-31 is 8796 days after 2000-01-01.
        (
            Kind::Date,
            8796i32.to_be_bytes().to_vec(),
            json!("2024-01-31"),
        ),
        (
            Kind::Date,
            (-1i32).to_be_bytes().to_vec(),
            json!("1999-12-31"),
        ),
        (
            Kind::Date,
            i32::MAX.to_be_bytes().to_vec(),
            json!("infinity"),
        ),
        // Years RFC 3339 has no room for: ISO 8601's expanded form.
        (
            Kind::Date,
            2_921_940i32.to_be_bytes().to_vec(),
            json!("+10000-01-01"),
        ),
        (
            Kind::Date,
            (-746_482i32).to_be_bytes().to_vec(),
            json!("-0044-03-15"),
        ),
        (
            Kind::Timestamp,
            i64::MIN.to_be_bytes().to_vec(),
            json!("-infinity"),
        ),
        (
            Kind::Timestamp,
            (8767 * 86_400_000_000i64 + 11_045_000_000)
                .to_be_bytes()
                .to_vec(),
            json!("2024-01-02T03:04:05.000000Z"),
        ),
        (
            Kind::Timestamptz,
            (8767 * 86_400_000_000i64 + 3_845_500_000)
                .to_be_bytes()
                .to_vec(),
            json!("2024-01-02T01:04:05.5+00:00"),
        ),
        (
            Kind::Timestamptz,
            (8767 * 86_400_000_000i64).to_be_bytes().to_vec(),
            json!("2024-01-02T00:00:00+00:00"),
        ),
        (Kind::Numeric, b"19.99".to_vec(), json!(19.99)),
        (Kind::Numeric, b"NaN".to_vec(), json!("NaN")),
        (Kind::Numeric, b"-Infinity".to_vec(), json!("-Infinity")),
    ];
    for (kind, raw, expected) in cases {
        assert_eq!(parsed(kind, &raw), expected, "{kind:?} {raw:?}");
    }
    assert_eq!(written(Kind::Text, None), "null");
}

#[test]
fn a_numeric_is_a_number_only_when_a_double_holds_it_exactly() {
    let cases = [
        ("0", "0"),
        ("0.000", "0.000"),
        ("-12.50", "-12.50"),
        ("123456789012345", "123456789012345"),
        ("1234567890123456", "\"1234567890123456\""),
        (
            "0.000000000000000000000000000001",
            "0.000000000000000000000000000001",
        ),
        ("1000000000000000000000", "1000000000000000000000"),
        (
            "12345678901234567890.123456789",
            "\"12345678901234567890.123456789\"",
        ),
        ("0.1234567890123456", "\"0.1234567890123456\""),
    ];
    for (text, expected) in cases {
        assert_eq!(
            written(Kind::Numeric, Some(text.as_bytes())),
            expected,
            "{text}"
        );
    }
    let huge = format!("1{}", "0".repeat(400));
    assert_eq!(
        written(Kind::Numeric, Some(huge.as_bytes())),
        format!("\"{huge}\"")
    );
}

#[test]
fn bytes_a_type_does_not_allow_are_an_error_not_a_guess() {
    for (kind, raw) in [
        (Kind::Int4, &[0u8, 1][..]),
        (Kind::Bool, &[][..]),
        (Kind::Uuid, &[1, 2, 3][..]),
        (Kind::Jsonb, &[2, b'1'][..]),
        (Kind::Text, &[0xff, 0xfe][..]),
    ] {
        assert!(value(&mut Vec::new(), kind, Some(raw)).is_err(), "{kind:?}");
    }
}

/// A decimal's sign, significant digits and the exponent of its last digit, for comparing
/// values written differently (`1.50` and `1.5`, `1e21` and `1000000000000000000000`).
fn decimal(text: &str) -> (bool, String, i64) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap()),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    let exponent = exponent - fraction.len() as i64 + (trimmed.len() - significant.len()) as i64;
    (negative, significant.to_string(), exponent)
}

proptest! {
    /// A numeric written as a number keeps its exact value through a double; written as a
    /// string, it keeps its exact text.
    #[test]
    fn a_numeric_survives_whichever_way_it_is_written(
        negative in any::<bool>(),
        whole in "[0-9]{1,25}",
        fraction in proptest::option::of("[0-9]{1,25}"),
    ) {
        let whole = match whole.trim_start_matches('0') { "" => "0", w => w };
        let text = format!(
            "{}{whole}{}",
            if negative { "-" } else { "" },
            fraction.map(|f| format!(".{f}")).unwrap_or_default()
        );
        let out = written(Kind::Numeric, Some(text.as_bytes()));
        match serde_json::from_str::<Value>(&out).unwrap() {
            Value::String(kept) => prop_assert_eq!(kept, text),
            Value::Number(_) => {
                prop_assert_eq!(&out, &text);
                let double: f64 = text.parse().unwrap();
                let back = ryu::Buffer::new().format_finite(double).to_string();
                let (_, want_digits, want_exp) = decimal(&text);
                let (_, got_digits, got_exp) = decimal(&back);
                prop_assert_eq!((got_digits, got_exp), (want_digits, want_exp), "{} became {}", text, back);
            }
            other => prop_assert!(false, "{other}"),
        }
    }

    #[test]
    fn any_text_is_one_json_string_line(text in any::<String>()) {
        let out = written(Kind::Text, Some(text.as_bytes()));
        prop_assert!(!out.contains('\n'));
        prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
    }

    #[test]
    fn json_on_many_lines_becomes_one_line_with_the_same_value(
        keys in proptest::collection::vec("[a-z\n]{0,5}", 0..5),
        numbers in proptest::collection::vec(any::<i32>(), 0..5),
    ) {
        let doc = json!({ "keys": keys, "numbers": numbers, "nested": { "k": keys } });
        let pretty = serde_json::to_string_pretty(&doc).unwrap();
        let out = written(Kind::Json, Some(pretty.as_bytes()));
        prop_assert!(!out.contains('\n'));
        prop_assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), doc);
    }

    #[test]
    fn any_float_is_json_of_the_same_value(value in any::<f64>()) {
        let out = written(Kind::Float8, Some(&value.to_be_bytes()));
        if value.is_finite() {
            // Parsed by Rust's exact reader: serde_json's default one may differ in the
            // last bit, the text itself does not.
            prop_assert_eq!(out.parse::<f64>().unwrap(), value);
        } else {
            prop_assert!(serde_json::from_str::<String>(&out).is_ok(), "{}", out);
        }
    }

    #[test]
    /// Years 1 to 9999 (all RFC 3339 has) come back as the same instant.
    fn any_timestamp_is_rfc3339_of_the_same_instant(
        micros in -63_082_281_600_000_000i64..252_455_615_999_999_999,
    ) {
        for kind in [Kind::Timestamp, Kind::Timestamptz] {
            let out = written(kind, Some(&micros.to_be_bytes()));
            let text: String = serde_json::from_str(&out).unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(&text);
            prop_assert!(at.is_ok(), "{}", text);
            prop_assert_eq!(at.unwrap().timestamp_micros(), micros + POSTGRES_EPOCH_MICROS);
        }
    }
}
