//! Property tests: what `Challenge` writes, `Challenge::parse_list` reads back unchanged, and
//! no input makes the parser panic.

use std::collections::HashSet;

use proptest::prelude::*;
use tower_bearer::challenge::Challenge;

/// An HTTP token (RFC 9110 §5.6.2).
const TOKEN: &str = "[-!#$%&'*+.^_`|~0-9A-Za-z]{1,12}";
/// Token68 (RFC 9110 §11.2), with and without padding.
const TOKEN68: &str = "[-._~+/0-9A-Za-z]{1,16}={0,2}";

/// Values a quoted-string can hold as is: the characters that need escaping and the list and
/// param separators are over-represented, since those are what a sloppy serializer breaks.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        r#"[ ",=\\;a]{0,12}"#,
        "[ -~]{0,24}",
        "[\t -~\u{80}-\u{10ffff}]{0,24}",
    ]
}

/// A scheme with params whose names are distinct ASCII case-insensitively.
fn params_spec() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
    (TOKEN, prop::collection::vec((TOKEN, value()), 0..5)).prop_map(|(scheme, params)| {
        let mut seen = HashSet::new();
        let params = params
            .into_iter()
            .filter(|(name, _)| seen.insert(name.to_ascii_lowercase()))
            .collect();
        (scheme, params)
    })
}

fn build(scheme: &str, params: &[(String, String)]) -> Challenge {
    params
        .iter()
        .fold(Challenge::new(scheme).unwrap(), |c, (n, v)| {
            c.with_param(n, v).unwrap()
        })
}

fn challenge() -> impl Strategy<Value = Challenge> {
    prop_oneof![
        3 => params_spec().prop_map(|(scheme, params)| build(&scheme, &params)),
        1 => (TOKEN, TOKEN68).prop_map(|(scheme, token68)| {
            Challenge::new(&scheme).unwrap().with_token68(&token68).unwrap()
        }),
    ]
}

fn join(challenges: &[Challenge]) -> String {
    challenges
        .iter()
        .map(Challenge::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

proptest! {
    #[test]
    fn params_read_back_exactly((scheme, params) in params_spec()) {
        let built = build(&scheme, &params);
        let parsed = Challenge::parse_list(&built.to_string()).unwrap();
        prop_assert_eq!(parsed.len(), 1);
        prop_assert_eq!(parsed[0].scheme(), scheme.as_str());
        let expected: Vec<(&str, &str)> =
            params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        prop_assert_eq!(parsed[0].params().collect::<Vec<_>>(), expected);
        prop_assert_eq!(&parsed[0], &built);
    }

    #[test]
    fn token68_reads_back_exactly(scheme in TOKEN, token68 in TOKEN68) {
        let built = Challenge::new(&scheme).unwrap().with_token68(&token68).unwrap();
        prop_assert_eq!(built.to_string(), format!("{scheme} {token68}"));
        let parsed = Challenge::parse_list(&built.to_string()).unwrap();
        prop_assert_eq!(parsed[0].token68(), Some(token68.as_str()));
        prop_assert_eq!(parsed, vec![built]);
    }

    #[test]
    fn lists_read_back_exactly(challenges in prop::collection::vec(challenge(), 1..=4)) {
        prop_assert_eq!(Challenge::parse_list(&join(&challenges)).unwrap(), challenges);
    }

    #[test]
    fn header_value_is_the_display_form(challenge in challenge()) {
        // `HeaderValue == String` compares the bytes.
        prop_assert_eq!(challenge.to_header_value(), challenge.to_string());
    }

    /// Any value is accepted: control characters become spaces, and the result is still a
    /// valid header that reads back to what the builder stored.
    #[test]
    fn any_value_gives_a_valid_header(value in any::<String>()) {
        let built = Challenge::bearer(&value).with_param("error_description", &value).unwrap();
        let sanitized: String = value
            .chars()
            .map(|c| if c.is_ascii_control() && c != '\t' { ' ' } else { c })
            .collect();
        prop_assert_eq!(built.param("realm"), Some(sanitized.as_str()));
        prop_assert_eq!(built.to_header_value(), built.to_string());
        prop_assert_eq!(Challenge::parse_list(&built.to_string()).unwrap(), vec![built]);
    }

    /// Never panics; whatever parses re-serializes to something that parses the same.
    #[test]
    fn parse_never_panics(input in prop_oneof![
        any::<String>(),
        r#"[ \t,=";\\aB1~/ä]{0,40}"#,
        // Mostly well-formed lists, so the re-serialization check runs often.
        r#"(Bearer|x|y w==|Basic t="[ ,=a\\]{0,4}"|u = v|t="[ ,=a\\]{0,4}")(( ?, ?)+(Bearer|x|y w==|Basic t="[ ,=a\\]{0,4}"|u = v|t="[ ,=a\\]{0,4}")){0,6}"#,
    ]) {
        if let Ok(challenges) = Challenge::parse_list(&input) {
            prop_assert_eq!(Challenge::parse_list(&join(&challenges)).unwrap(), challenges);
        }
    }
}
