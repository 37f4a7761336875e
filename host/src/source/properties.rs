//! Property tests of the readers over arbitrary bytes: no input makes them panic, every
//! row is accounted for on its own line, and bad rows never cost a good one.

use proptest::prelude::*;

use super::SourceFormat;
use super::csv::{Keep, Parser};
use super::lines::Lines;
use super::tests::{Owned, try_rows};

/// Bytes rich in what the readers treat specially.
fn hostile_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => any::<u8>(),
        2 => Just(b'\n'),
        1 => Just(b'\r'),
        2 => Just(b'"'),
        2 => Just(b','),
        1 => Just(b'{'),
        1 => Just(b'}'),
        1 => Just(b':'),
        1 => Just(b' '),
        1 => Just(0xEF),
        1 => Just(0xBB),
        1 => Just(0xBF),
        2 => proptest::sample::select(b"id1a".to_vec()),
    ];
    proptest::collection::vec(byte, 0..max)
}

/// The lines of `input` as the JSONL reader splits them: `\n` ends a line, a `\r` before
/// it is part of the line end, a leading byte-order mark is dropped.
fn jsonl_lines(input: &[u8]) -> Vec<Vec<u8>> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut lines: Vec<Vec<u8>> = input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if input.ends_with(b"\n") || input.is_empty() {
        lines.pop();
    }
    for line in &mut lines {
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    lines
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(|b| b" \t\r\n".contains(b))
}

/// What the CSV reader must find, the slow way: from each line that starts a row, parse
/// until the row ends; a row that never ends is unclosed and parsing resumes on the line
/// after its first. Quadratic, and obviously the rule. Returns each row's first line and
/// whether it was unclosed.
fn csv_reference(input: &[u8]) -> Option<Vec<(u64, bool)>> {
    let mut lines = Lines::new(Box::new(std::io::Cursor::new(input.to_vec())), true);
    let mut all = Vec::new();
    while let Some(line) = lines.next().unwrap() {
        all.push((line.content.to_vec(), line.terminator.to_vec()));
    }
    // The header: the first row, which must end.
    let mut at = all.iter().position(|(content, _)| !content.is_empty())?;
    let mut parser = Parser::new();
    loop {
        let (content, terminator) = all.get(at)?;
        at += 1;
        if parser.feed_line(content, terminator, Keep::Nothing) {
            break;
        }
    }
    let mut rows = Vec::new();
    while at < all.len() {
        if all[at].0.is_empty() {
            at += 1;
            continue;
        }
        let mut parser = Parser::new();
        let end = (at..all.len()).find(|&i| parser.feed_line(&all[i].0, &all[i].1, Keep::Nothing));
        rows.push((at as u64 + 1, end.is_none()));
        at = end.map_or(at + 1, |end| end + 1);
    }
    Some(rows)
}

/// A CSV field as a well-formed writer writes it: quoted when it must be.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn payload(names: &[&str], values: &[String]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(values)
        .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// A line that is never a good row of the header `id,a,b`, and has no quote: it cannot
/// change how the lines around it are read.
fn garbage_row() -> impl Strategy<Value = Vec<u8>> {
    let field = proptest::collection::vec(
        any::<u8>().prop_filter("plain", |b| !b"\",\r\n".contains(b)),
        0..6,
    );
    prop_oneof![
        // Too many or too few fields.
        proptest::collection::vec(field.clone(), 4..6).prop_map(|f| f.join(&b","[..])),
        proptest::collection::vec(field.clone(), 1..3).prop_map(|f| f.join(&b","[..])),
        // The right number, one of them not UTF-8.
        (field.clone(), field.clone()).prop_map(|(a, b)| [&b"k,"[..], &a, b"\xff,", &b].concat()),
        // No key.
        (" {0,3}", field).prop_map(|(key, a)| [key.as_bytes(), b",", &a, b",x"].concat()),
    ]
}

/// A good row's values: a key and two fields of any text.
fn good_row(quotes: bool) -> impl Strategy<Value = (String, String, String)> {
    let text = if quotes {
        "\\PC{0,6}|[,\"\r\n x]{0,4}"
    } else {
        "[^,\"\r\n]{0,6}"
    };
    ("[a-z0-9]{1,4}", text, text)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every line that is not blank is exactly one row, record or reported, on its line.
    #[test]
    fn jsonl_accounts_for_every_line(input in hostile_bytes(200)) {
        let rows = try_rows(SourceFormat::Jsonl, "id", &input).unwrap();
        let expected: Vec<u64> = jsonl_lines(&input)
            .iter()
            .enumerate()
            .filter(|(_, line)| !blank(line))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let lines: Vec<u64> = rows.iter().map(|(line, _)| *line).collect();
        prop_assert_eq!(lines, expected);
    }

    /// Good rows among garbage lines come out exactly, keys kept as written.
    #[test]
    fn jsonl_garbage_costs_no_good_row(
        good in proptest::collection::vec(("\\PC{1,6}|-?[1-9][0-9]{0,24}", "\\PC{0,8}", any::<bool>()), 0..12),
        garbage in proptest::collection::vec(
            hostile_bytes(40).prop_map(|mut g| { g.retain(|&b| b != b'\n'); g })
                .prop_filter("not an object", |g| {
                    let g = g.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(g);
                    !matches!(serde_json::from_slice(g), Ok(serde_json::Value::Object(_)))
                }),
            0..12),
        bom in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let mut input = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        let mut expected = Vec::new();
        let mut garbage = garbage.into_iter();
        for (key, value, as_text) in &good {
            if let Some(g) = garbage.next() {
                input.extend_from_slice(&g);
                input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let numeric = serde_json::from_str::<serde_json::Value>(key).is_ok_and(|v| v.is_number());
            let (key_json, key) = if numeric && !as_text {
                // A number's key is its exact text, without the JSON whitespace around it
                // (`" 0"` parses as the number `0`, written `0`).
                let digits = key.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
                (key.clone(), digits.to_string())
            } else if key.trim().is_empty() {
                continue;
            } else {
                (serde_json::to_string(key).unwrap(), key.clone())
            };
            let line = format!("{{\"id\":{key_json},\"v\":{}}}", serde_json::to_string(value).unwrap());
            input.extend_from_slice(line.as_bytes());
            input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            expected.push(Owned::Record(key, line));
        }
        let records: Vec<Owned> = try_rows(SourceFormat::Jsonl, "id", &input)
            .unwrap()
            .into_iter()
            .map(|(_, row)| row)
            .filter(|row| row.key().is_some())
            .collect();
        prop_assert_eq!(records, expected);
    }

    /// Whatever the bytes, the CSV reader ends (or refuses the header) without a panic, and
    /// its rows are those of the slow, obvious re-parse: one per row start, in order, an
    /// unclosed quote reported on the line it opened.
    #[test]
    fn csv_rows_are_those_of_the_obvious_reparse(
        header in prop_oneof![Just(""), Just("id\n"), Just("id,a\n"), Just("a,id,b\r\n")],
        bytes in hostile_bytes(160),
    ) {
        let input = [header.as_bytes(), &bytes].concat();
        let rows = try_rows(SourceFormat::Csv, "id", &input);
        let Some(reference) = csv_reference(&input) else {
            prop_assert!(rows.is_err());
            return Ok(());
        };
        let rows = match rows {
            Ok(rows) => rows,
            // No `id` column, one named twice, a name that is not UTF-8: refused.
            Err(err) => {
                prop_assert!(format!("{err:#}").contains("the header row"), "{:#}", err);
                return Ok(());
            }
        };
        let found: Vec<(u64, bool)> = rows
            .iter()
            .map(|(line, row)| (*line, row.reason().is_some_and(|r| r.starts_with("unclosed quote"))))
            .collect();
        prop_assert_eq!(found, reference);
    }

    /// N good rows (any text, quoted as a writer quotes it, fields over several lines
    /// included) among garbage rows and an unclosed quote come out as exactly N records.
    #[test]
    fn csv_garbage_costs_no_good_row(
        before in proptest::collection::vec((good_row(true), proptest::option::of(garbage_row())), 0..8),
        unclosed in proptest::option::of("[^\"\r\n]{0,6}"),
        after in proptest::collection::vec((good_row(false), proptest::option::of(garbage_row())), 0..8),
        bom in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut input = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        input.extend_from_slice(b"id,a,b");
        input.extend_from_slice(end);
        let mut expected = Vec::new();
        let mut bad = 0;
        let mut add = |input: &mut Vec<u8>, ((id, a, b), garbage): ((String, String, String), Option<Vec<u8>>)| {
            let row = [csv_field(&id), csv_field(&a), csv_field(&b)].join(",");
            input.extend_from_slice(row.as_bytes());
            input.extend_from_slice(end);
            expected.push(Owned::Record(id.clone(), payload(&["id", "a", "b"], &[id, a, b])));
            if let Some(garbage) = garbage {
                input.extend_from_slice(&garbage);
                input.extend_from_slice(end);
                bad += usize::from(!garbage.is_empty());
            }
        };
        for row in before {
            add(&mut input, row);
        }
        if let Some(text) = &unclosed {
            input.extend_from_slice(format!("k,\"{text}").as_bytes());
            input.extend_from_slice(end);
        }
        for row in after {
            add(&mut input, row);
        }
        let rows = try_rows(SourceFormat::Csv, "id", &input).unwrap();
        let (records, invalid): (Vec<Owned>, Vec<Owned>) = rows
            .into_iter()
            .map(|(_, row)| row)
            .partition(|row| row.key().is_some());
        prop_assert_eq!(records, expected);
        prop_assert_eq!(invalid.len(), bad + usize::from(unclosed.is_some()));
    }
}
