use super::super::SourceFormat;
use super::super::tests::{Owned, rows, try_rows};
use super::*;
use proptest::prelude::*;

fn record(key: &str, payload: &str) -> Owned {
    Owned::Record(key.into(), payload.into())
}

fn csv(input: &str) -> Vec<(u64, Owned)> {
    rows(SourceFormat::Csv, input.as_bytes())
}

fn keys(rows: &[(u64, Owned)]) -> Vec<(u64, Option<&str>)> {
    rows.iter().map(|(line, row)| (*line, row.key())).collect()
}

#[test]
fn rows_become_objects_of_strings() {
    assert_eq!(
        csv("id,name\r\na1,\"Acme, \"\"Inc\"\"\"\r\n\r\n a2 ,\n"),
        [
            (2, record("a1", r#"{"id":"a1","name":"Acme, \"Inc\""}"#)),
            (4, record("a2", r#"{"id":" a2 ","name":""}"#)),
        ]
    );
}

/// The reported bug: an unclosed quote took every row after it into one field.
#[test]
fn an_unclosed_quote_is_reported_and_the_rows_after_it_are_read() {
    let rows = csv("id,name\nr1,a\nr2,b\nr3,\"broken\nr4,d\nr5,e\nr6,f\n");
    assert_eq!(
        keys(&rows),
        [
            (2, Some("r1")),
            (3, Some("r2")),
            (4, None),
            (5, Some("r4")),
            (6, Some("r5")),
            (7, Some("r6"))
        ]
    );
    assert!(rows[2].1.reason().unwrap().starts_with("unclosed quote"));
    assert_eq!(rows[5].1, record("r6", r#"{"id":"r6","name":"f"}"#));
    // On the last line, without a line end.
    assert_eq!(
        keys(&csv("id,name\nr1,a\nr2,\"b")),
        [(2, Some("r1")), (3, None)]
    );
    // A second one among the lines read again: it stays open in both readings.
    let rows = csv("id,n\n\"a\nb,1\n\"x\"y,\"z\nd,2\n");
    assert_eq!(
        keys(&rows),
        [(2, None), (3, Some("b")), (4, None), (5, Some("d"))]
    );
    assert!(rows[2].1.reason().unwrap().starts_with("unclosed quote"));
    // A later quote closes an earlier one, as RFC 4180 reads it: one row from line 2
    // to line 4, with the wrong number of fields, and the rows after it.
    let rows = csv("id,n\n\"a\nb,1\nc,\"x\nd,2\n\"e\n");
    assert_eq!(keys(&rows), [(2, None), (5, Some("d")), (6, None)]);
    assert!(
        rows[0]
            .1
            .reason()
            .unwrap()
            .contains("runs from line 2 to line 4")
    );
}

/// The reported bug: a quote left open on one line and "closed" by the opening quote of a
/// later row turned the rows between into one field of one record, with no word of it.
#[test]
fn text_after_a_closing_quote_is_reported_not_read() {
    let rows = csv("id,name,city\n1,\"Bob,Oslo\n2,Carol,Rome\n3,\"Dan\",Paris\n4,Eve,Nice\n");
    assert_eq!(keys(&rows), [(2, None), (5, Some("4"))]);
    let reason = rows[0].1.reason().unwrap();
    assert!(
        reason.starts_with("text follows the closing quote of column `name`")
            && reason.ends_with("(a quoted field runs from line 2 to line 4)"),
        "{reason}"
    );
    // On one line, in the last column, and past the header's columns.
    let rows = csv("id,a,b\n10,\"x\"y,z\n11,p,\"q\" \n12,p,q,\"r\"s\n13,p,q\n");
    assert_eq!(
        keys(&rows),
        [(2, None), (3, None), (4, None), (5, Some("13"))]
    );
    assert!(rows[0].1.reason().unwrap().contains("column `a`"));
    assert!(rows[1].1.reason().unwrap().contains("column `b`"));
    assert!(
        rows[2]
            .1
            .reason()
            .unwrap()
            .contains("field 4 (past the header's columns)")
    );
    // A quote inside a field that does not start with one, and doubled quotes, are fine.
    assert_eq!(
        csv("id,h\na1,5'11\"\na2,\"say \"\"hi\"\"\"\n"),
        [
            (2, record("a1", r#"{"h":"5'11\"","id":"a1"}"#)),
            (3, record("a2", r#"{"h":"say \"hi\"","id":"a2"}"#)),
        ]
    );
    // In the header, the source is refused.
    let err = try_rows(SourceFormat::Csv, "id", b"id,\"na\"me\n1,x\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("line 1): text follows the closing quote of column 2"),
        "{err:#}"
    );
}

#[test]
fn a_quoted_field_may_span_lines() {
    let rows = csv("id,note\nn1,\"two\r\nlines, \"\"quoted\"\"\"\nn2,x\nn3,\"a\n\nb\"");
    assert_eq!(
        rows,
        [
            (
                2,
                record("n1", r#"{"id":"n1","note":"two\r\nlines, \"quoted\""}"#)
            ),
            (4, record("n2", r#"{"id":"n2","note":"x"}"#)),
            (5, record("n3", r#"{"id":"n3","note":"a\n\nb"}"#)),
        ]
    );
    // The wrong number of fields, over several lines, says where the field runs.
    let rows = csv("id,note\nn1,\"a\nb\",extra\nn2,x\n");
    assert!(
        rows[0]
            .1
            .reason()
            .unwrap()
            .contains("from line 2 to line 3"),
        "{rows:?}"
    );
    assert_eq!(rows[1], (4, record("n2", r#"{"id":"n2","note":"x"}"#)));
}

/// Past what an open row keeps in memory, its lines go to a file: both a field that
/// closes and one that never does come back right from there.
#[test]
fn long_open_rows_go_through_a_file() {
    let many: String = (0..REPLAY_IN_MEMORY / 8)
        .map(|i| format!("r{i},x\n"))
        .collect();
    let closed = format!("id,n\nbig,\"{many}\"\nlast,y\n");
    let found = csv(&closed);
    assert_eq!(
        found,
        [
            (
                2,
                record("big", &format!("{{\"id\":\"big\",\"n\":{:?}}}", many))
            ),
            (
                REPLAY_IN_MEMORY as u64 / 8 + 3,
                record("last", r#"{"id":"last","n":"y"}"#)
            ),
        ]
    );
    let unclosed = format!("id,n\nbig,\"open\n{many}");
    let found = csv(&unclosed);
    assert_eq!(found.len(), REPLAY_IN_MEMORY / 8 + 1);
    assert_eq!(
        found[0].1.reason().map(|r| &r[..14]),
        Some("unclosed quote")
    );
    assert_eq!(
        found.last().unwrap(),
        &(
            REPLAY_IN_MEMORY as u64 / 8 + 2,
            record(
                &format!("r{}", REPLAY_IN_MEMORY / 8 - 1),
                &format!("{{\"id\":\"r{}\",\"n\":\"x\"}}", REPLAY_IN_MEMORY / 8 - 1)
            )
        )
    );
}

#[test]
fn bad_bytes_a_bom_and_bad_rows() {
    let found = rows(
        SourceFormat::Csv,
        b"\xEF\xBB\xBFid,name\nr1,\xff\nr2,\xc3\xa9\n,x\nr3\nr4,\xef\xbb\xbfz\rr5,y",
    );
    assert_eq!(
        found,
        [
            (
                2,
                Owned::Invalid("not UTF-8: column `name` has an invalid byte at byte 0".into())
            ),
            (3, record("r2", r#"{"id":"r2","name":"é"}"#)),
            (4, Owned::Invalid("the key column `id` is empty".into())),
            (
                5,
                Owned::Invalid("the row has 1 fields, the header has 2".into())
            ),
            (6, record("r4", "{\"id\":\"r4\",\"name\":\"\u{feff}z\"}")),
            (7, record("r5", r#"{"id":"r5","name":"y"}"#)),
        ]
    );
    // A character split by a comma is two bad fields, not one good one.
    let found = try_rows(SourceFormat::Csv, "a", b"a,b\n\xc3,\xa9\n").unwrap();
    assert_eq!(
        found[0].1.reason(),
        Some("not UTF-8: column `a` has an invalid byte at byte 0")
    );
}

#[test]
fn a_header_that_cannot_name_columns_stops_the_source() {
    for (input, expected) in [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("name,other\nx,y\n", "no column `id`"),
        ("id,x,x\n", "column `x` appears twice (columns 2 and 3)"),
        ("id,\"x\n1,2\n", "(line 1) has an unclosed quote"),
    ] {
        let err = try_rows(SourceFormat::Csv, "id", input.as_bytes()).err();
        let err = format!("{:#}", err.expect(input));
        assert!(err.contains(expected), "{input:?}: {err}");
    }
    let err = try_rows(SourceFormat::Csv, "id", b"id,\xff\n")
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("column 2 has an invalid byte"));
}

#[test]
fn a_header_open_past_its_limit_is_refused_not_read_to_the_end() {
    // A quote opened in the header and never closed: past MAX_HEADER bytes the source is
    // refused rather than held in memory line after line.
    let mut input = String::from("id,\"name\n");
    let line = format!("{}\n", "x".repeat(1023));
    while input.len() <= MAX_HEADER + line.len() {
        input.push_str(&line);
    }
    let err = try_rows(SourceFormat::Csv, "id", input.as_bytes()).err();
    let err = format!("{:#}", err.expect("a header over the limit is refused"));
    assert!(
        err.contains(&format!("(line 1) is longer than {MAX_HEADER} bytes")),
        "{err}"
    );
}

/// Payloads are the bytes the csv crate and a `serde_json::Map` made before: a payload
/// that changed would be sent again by every sync in mode "changed".
fn old_payload(names: &[String], values: &[String]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(values)
        .map(|(h, v)| (h.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(object).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn payloads_are_what_serde_json_wrote(
        names in proptest::collection::hash_set("\\PC{0,6}", 1..5),
        values in proptest::collection::vec(any::<String>(), 5),
    ) {
        let names: Vec<String> = std::iter::once("id".to_string())
            .chain(names.into_iter().filter(|n| n != "id"))
            .collect();
        let values: Vec<String> = std::iter::once("k".to_string())
            .chain(values)
            .take(names.len())
            .collect();
        let columns = Columns::new(names.clone(), "id").unwrap();
        let mut parser = Parser::new();
        let fields = &mut parser.fields;
        let mut joined = Vec::new();
        for value in &values {
            joined.extend_from_slice(value.as_bytes());
            fields.ends.push(joined.len());
        }
        fields.len = joined.len();
        fields.count = values.len();
        fields.bytes = joined;
        let mut payload = String::new();
        let row = super::record(&parser, &columns, &mut payload, 1, 1);
        let Row::Record { payload, .. } = row else { panic!("{row:?}") };
        prop_assert_eq!(payload, old_payload(&names, &values));
    }
}
