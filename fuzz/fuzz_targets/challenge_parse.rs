//! `Challenge::parse_list` and `Challenge::from_headers` on arbitrary bytes.
//!
//! Invariants: no panic; every parsed challenge re-rendered (`Display`) re-parses to itself,
//! and `to_header_value` is exactly the `Display` form; a parsed list re-rendered as one field
//! value re-parses to the same list; `param(name)` finds every listed param; `from_headers`
//! agrees with `parse_list` on lines that parse strictly; a built challenge (any realm, any
//! param value) round-trips too.
#![no_main]

use http::{HeaderMap, HeaderValue, header::WWW_AUTHENTICATE};
use libfuzzer_sys::fuzz_target;
use tower_bearer::challenge::Challenge;

fn check_roundtrip(c: &Challenge) {
    let rendered = c.to_string();
    assert_eq!(
        c.to_header_value().as_bytes(),
        rendered.as_bytes(),
        "to_header_value differs from Display"
    );
    let again = Challenge::parse_list(&rendered)
        .unwrap_or_else(|e| panic!("rendered challenge {rendered:?} does not parse: {e}"));
    assert_eq!(
        again,
        vec![c.clone()],
        "re-parsed challenge differs: {rendered:?}"
    );
    assert!(c.is_scheme(c.scheme()));
    assert!(c.is_scheme(&c.scheme().to_ascii_uppercase()));
    for (name, value) in c.params() {
        assert_eq!(
            c.param(name),
            Some(value),
            "param {name:?} not found by name"
        );
        assert_eq!(c.param(&name.to_ascii_lowercase()), Some(value));
    }
    if c.token68().is_some() {
        assert_eq!(c.params().count(), 0, "token68 and params together");
    }
}

fn check_list(list: &[Challenge]) {
    for c in list {
        check_roundtrip(c);
    }
    let joined = list
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let again = Challenge::parse_list(&joined)
        .unwrap_or_else(|e| panic!("rendered list {joined:?} does not parse: {e}"));
    assert_eq!(again, list, "re-parsed list differs: {joined:?}");
}

fuzz_target!(|data: &[u8]| {
    // The strict parser, on the whole input when it is text.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(list) = Challenge::parse_list(text) {
            check_list(&list);
        }
        // The builder: the first line is the realm, then `name=value` lines.
        let mut lines = text.split('\n');
        let mut built = Challenge::bearer(lines.next().unwrap_or_default());
        for line in lines {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            if let Ok(next) = built.clone().with_param(name, value) {
                built = next;
            }
        }
        check_roundtrip(&built);
    }

    // The lenient reader: every `\n`-separated line is one `WWW-Authenticate` field line.
    let mut headers = HeaderMap::new();
    let mut strict = Vec::new();
    let mut all_strict = true;
    for line in data.split(|&b| b == b'\n') {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        match std::str::from_utf8(line).ok().map(Challenge::parse_list) {
            Some(Ok(list)) => strict.extend(list),
            _ => all_strict = false,
        }
        headers.append(WWW_AUTHENTICATE, value);
    }
    let lenient = Challenge::from_headers(&headers);
    if all_strict {
        assert_eq!(lenient, strict, "from_headers differs from parse_list");
    }
    for c in &lenient {
        check_roundtrip(c);
    }
});
