use super::*;
use proptest::prelude::*;

const TOKEN: &str = "tok-5ecret/xyz+Q";

fn scrubbed(s: &Secrets, text: &str) -> String {
    s.scrubber().scrub_str(text).into_owned()
}

#[test]
fn every_form_of_a_secret_is_replaced() {
    let s = Secrets::new();
    s.add_header_value(&format!("Bearer {TOKEN}"), "T");
    let b64 = STANDARD.encode(TOKEN);
    let b64url = URL_SAFE_NO_PAD.encode(TOKEN);
    let pct = percent_encode(TOKEN.as_bytes(), STRICT).to_string();
    let lower_pct = pct.to_lowercase();
    let json = serde_json::to_string(&serde_json::json!({"echo": format!("Bearer {TOKEN}")}))
        .unwrap()
        .replace('/', "\\/");
    let embedded = STANDARD.encode(format!("{{\"auth\":\"Bearer {TOKEN}\"}}"));
    for text in [
        format!("code {TOKEN} end"),
        format!("Authorization: Bearer {TOKEN}"),
        format!("b64 {b64}."),
        format!("b64url {b64url}"),
        format!("pct {pct} and {lower_pct}"),
        format!("header-name x-{}", TOKEN.to_lowercase()),
        json,
        embedded,
    ] {
        let out = scrubbed(&s, &text);
        assert!(out.contains(REDACTED), "{text} -> {out}");
        assert!(!out.contains("]="), "padding left behind: {out}");
        for leak in ["5ecret", "NWVjcmV0", "tok-5"] {
            assert!(!out.contains(leak), "{text} -> {out}");
        }
    }
}

#[test]
fn a_basic_credential_is_scrubbed_as_pair_password_and_base64() {
    let s = Secrets::new();
    let pair = "sync-user:pa55word-long";
    s.add_header_value(&format!("Basic {}", STANDARD.encode(pair)), "B");
    let out = scrubbed(
        &s,
        &format!(
            "{} / {pair} / pa55word-long / {}",
            STANDARD.encode(pair),
            pair.replace(':', "%3A")
        ),
    );
    assert!(!out.contains("pa55word"), "{out}");
    assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
}

#[test]
fn text_without_secrets_is_not_copied_and_short_secrets_are_ignored() {
    let s = Secrets::new();
    let body = br#"{"results":[{"id":"1"}]}"#;
    assert!(matches!(s.scrubber().scrub(body), Cow::Borrowed(_)));
    s.add("short", "SHORT");
    assert!(s.scrubber().is_empty());
    assert_eq!(scrubbed(&s, "a short answer"), "a short answer");
    s.add(TOKEN, "T");
    assert!(matches!(s.scrubber().scrub(body), Cow::Borrowed(_)));
    assert!(matches!(
        s.scrubber().scrub_str("nothing here"),
        Cow::Borrowed(_)
    ));
}

#[test]
fn secrets_are_kept_after_a_renewal_and_overlaps_go_whole() {
    let s = Secrets::new();
    s.add("first-token-aaaa", "A");
    s.add("aaaa-second-token", "A");
    assert_eq!(
        scrubbed(&s, "x first-token-aaaa-second-token y"),
        format!("x {REDACTED} y")
    );
}

#[test]
fn a_cut_body_does_not_end_in_half_a_secret() {
    let s = Secrets::new();
    s.add(TOKEN, "T");
    let body = format!("error: {}", &TOKEN[..9]).into_bytes();
    let out = s.scrubber().scrub_body(body.clone(), true);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("error: {REDACTED}")
    );
    // Not cut: the body is what the destination sent.
    assert_eq!(s.scrubber().scrub_body(body.clone(), false), body);
}

#[test]
fn credentials_in_urls_are_found_by_name_and_never_shown() {
    let found = |u: &str| url_credentials(&Url::parse(u).unwrap());
    assert_eq!(
        found("https://h.example/api?tenant=acme"),
        Vec::<String>::new()
    );
    assert_eq!(found("https://u:p@h.example/").len(), 1);
    assert_eq!(
        found("https://h.example/?API-Key=1&access_token=2&sig=3&tenant=4"),
        [
            "the query parameter `API-Key`",
            "the query parameter `access_token`",
            "the query parameter `sig`"
        ]
    );
    let url = Url::parse("https://u:pw@h.example:8443/api?key=zz#frag").unwrap();
    assert_eq!(display_url(&url), "https://h.example:8443/api?…");
    assert_eq!(
        display_url_text("https://u:pw@h ex/api?key=zz"),
        "https://[redacted]@h ex/api…"
    );
}

/// A destination's serializer may escape any character of an echoed token, or only some
/// (`+` as `\u002B`, `/` as `\/`), in JSON or in percent-encoding.
#[test]
fn a_secret_escaped_in_part_or_whole_is_replaced() {
    let token = "Plain/Token+Value0123456789abc";
    let s = Secrets::new();
    s.add_header_value(&format!("Bearer {token}"), "T");
    let every_char: String = token
        .chars()
        .map(|c| format!("\\u{:04X}", c as u32))
        .collect();
    let lower: String = token
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let some = token.replace('+', "\\u002B").replace('/', "\\/");
    let mixed_pct = token.replace('+', "%2B").replace('V', "%56");
    for echoed in [every_char, lower, some, mixed_pct] {
        let text = format!("{{\"error\":\"token {echoed} is not allowed\"}}");
        let out = scrubbed(&s, &text);
        assert_eq!(
            out,
            format!("{{\"error\":\"token {REDACTED} is not allowed\"}}"),
            "{text}"
        );
    }
    // Escapes that are not a secret are left as they were.
    let plain = r#"{"name":"caf\u00e9 \/ 50%25 \q \ud800"}"#;
    assert_eq!(scrubbed(&s, plain), plain);
}

/// Everything escaped in `text` decoded, JSON first, then percent.
fn decoded(text: &str) -> String {
    let json = Decoded::json(text.as_bytes()).map_or(text.as_bytes().to_vec(), |d| d.bytes);
    let both = Decoded::percent(&json).map_or(json, |d| d.bytes);
    String::from_utf8_lossy(&both).to_ascii_lowercase()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A secret whose characters are each escaped or not, at random, in JSON or percent
    /// form, cannot be read back from what is left.
    #[test]
    fn a_secret_escaped_character_by_character_is_replaced(
        secret in "[!-~]{8,40}",
        escape in proptest::collection::vec(0u8..4, 40),
        before in "[a-z ]{0,20}",
        after in "[a-z ]{0,20}",
    ) {
        let s = Secrets::new();
        s.add(&secret, "P");
        let percent = escape[0] % 2 == 0;
        let echoed: String = secret
            .chars()
            .zip(escape.iter().cycle())
            .map(|(c, e)| match (e, percent) {
                // An encoder always escapes its escape character.
                (0, false) if c == '\\' => "\\\\".to_string(),
                (0, true) if c == '%' => "%25".to_string(),
                (0, _) => c.to_string(),
                (1, false) => format!("\\u{:04x}", c as u32),
                (_, false) => format!("\\u{:04X}", c as u32),
                (_, true) => format!("%{:02X}", c as u32),
            })
            .collect();
        let text = format!("{before}{echoed}{after}");
        let out = s.scrubber().scrub_str(&text).into_owned();
        prop_assert!(out.contains(REDACTED), "{} -> {}", text, out);
        prop_assert!(!decoded(&out).contains(&secret.to_ascii_lowercase()), "{} -> {}", text, out);
    }

    /// Whatever surrounds it, no form of a secret survives, and text without one is
    /// returned as it was.
    #[test]
    fn no_form_of_a_secret_survives(
        secret in "[!-~]{8,40}",
        before in ".{0,40}",
        after in ".{0,40}",
        which in 0usize..64,
    ) {
        let s = Secrets::new();
        s.add(&secret, "P");
        let scrubber = s.scrubber();
        let all = forms(secret.as_bytes());
        let form = String::from_utf8(all[which % all.len()].clone()).unwrap();
        let text = format!("{before}{form}{after}");
        let out = scrubber.scrub_str(&text);
        prop_assert!(!out.contains(&form), "{} -> {}", text, out);
        prop_assert!(!out.contains(&secret));
        let clean = format!("{before}{after}");
        if !clean.to_ascii_lowercase().contains(&secret.to_ascii_lowercase()) {
            let kept = scrubber.scrub_str(&clean);
            let no_form = all.iter().all(|f| {
                !clean.to_ascii_lowercase().contains(&String::from_utf8_lossy(f).to_ascii_lowercase())
            });
            if no_form {
                prop_assert_eq!(kept.as_ref(), clean.as_str());
            }
        }
    }
}

/// The log's writer scrubs with every set of secrets while it is alive, and forgets a set
/// its holders dropped.
#[test]
fn log_lines_are_scrubbed_of_every_live_secret() {
    let (first, second) = ("live-5ecret-one-0123", "live-5ecret-two-4567");
    let a = Secrets::new();
    a.add(first, "A");
    let b = Secrets::new();
    b.add(second, "B");
    let line = format!(
        "ERROR stopping the run: {first} and {}",
        unicode_escaped(second)
    );
    assert_eq!(
        live::scrub_all(line.as_bytes()).as_ref(),
        b"ERROR stopping the run: [redacted] and [redacted]"
    );
    drop(b);
    let out = live::scrub_all(line.as_bytes()).into_owned();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with(&unicode_escaped(second))
    );
}

fn unicode_escaped(text: &str) -> String {
    text.chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect()
}
