//! The one scanner for the `access_token` parameter of a URI query (RFC 6750 §2.3) or a form
//! body (§2.2). Both are `application/x-www-form-urlencoded`, so a parameter *name* is matched
//! after decoding: `access%5Ftoken` and `%61ccess_token` are `access_token` too — a client (or an
//! attacker) must not be able to smuggle a second token past the ambiguity check, or the
//! caller's own token past a proxy, by spelling the name differently.

use std::borrow::Cow;

use crate::failure::{AuthError, InvalidRequest, TokenRejection};

const NAME: &[u8] = b"access_token";

/// The `access_token` parameter of a form-urlencoded string, still encoded.
pub(crate) enum Param<'a> {
    Once(&'a [u8]),
    Repeated,
}

/// Finds the `access_token` parameter in `input` (a query string or a form body).
pub(crate) fn find(input: &[u8]) -> Option<Param<'_>> {
    let mut found = None;
    for (name, value) in pairs(input) {
        if is_access_token(name) {
            if found.is_some() {
                return Some(Param::Repeated);
            }
            found = Some(Param::Once(value));
        }
    }
    found
}

/// The token of an `access_token` parameter: refused when repeated or empty (row I2), longer
/// than `max_length` or not `b64token` syntax (row I3).
pub(crate) fn decode_token(param: Param<'_>, max_length: usize) -> Result<String, AuthError> {
    let encoded = match param {
        Param::Repeated => return Err(InvalidRequest::RepeatedParameter.into()),
        Param::Once([]) => return Err(InvalidRequest::EmptyToken.into()),
        Param::Once(encoded) => encoded,
    };
    // Percent-encoding at most triples the length; refuse before decoding anything huge.
    if encoded.len() > max_length.saturating_mul(3) {
        return Err(AuthError::InvalidToken(TokenRejection::TooLong));
    }
    let decoded = String::from_utf8(decode(encoded).into_owned())
        .map_err(|_| AuthError::InvalidToken(TokenRejection::Malformed))?;
    if decoded.len() > max_length {
        return Err(AuthError::InvalidToken(TokenRejection::TooLong));
    }
    Ok(decoded)
}

/// `query` without its `access_token` parameters (however their names are encoded), for a
/// request sent on to a third party: the caller's own token must never reach it. `None` when
/// nothing is left.
pub fn without_access_token(query: &str) -> Option<Cow<'_, str>> {
    if find(query.as_bytes()).is_none() {
        return (!query.is_empty()).then_some(Cow::Borrowed(query));
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !is_access_token(name.as_bytes())
        })
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join("&")))
}

fn pairs(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    input
        .split(|&b| b == b'&')
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        })
}

fn is_access_token(name: &[u8]) -> bool {
    // The common case — a plain name — without decoding anything.
    if !name.contains(&b'%') {
        return name == NAME;
    }
    // An encoded name decodes to at most its own length, and at least a third of it.
    name.len() <= NAME.len() * 3 && decode(name).as_ref() == NAME
}

/// Form-urlencoded decoding: `+` is a space, then percent-decoding (bytes; UTF-8 is checked by
/// whoever needs text).
fn decode(encoded: &[u8]) -> Cow<'_, [u8]> {
    if !encoded.contains(&b'+') {
        return percent_encoding::percent_decode(encoded).into();
    }
    let spaced: Vec<u8> = encoded
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Cow::Owned(percent_encoding::percent_decode(&spaced).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(input: &str) -> Option<Result<String, AuthError>> {
        find(input.as_bytes()).map(|param| decode_token(param, 100))
    }

    #[test]
    fn names_are_matched_after_decoding() {
        for input in [
            "access_token=abc",
            "x=1&access%5Ftoken=abc",
            "%61ccess_token=abc&y",
            "%61%63%63%65%73%73%5f%74%6f%6b%65%6e=abc",
        ] {
            assert_eq!(found(input).unwrap().unwrap(), "abc", "{input}");
        }
        for input in [
            "",
            "access_tokens=abc",
            "access+token=abc",
            "x=access_token",
        ] {
            assert!(found(input).is_none(), "{input}");
        }
    }

    #[test]
    fn repeated_however_spelled() {
        assert!(matches!(
            found("access_token=a&access%5Ftoken=b"),
            Some(Err(AuthError::InvalidRequest(
                InvalidRequest::RepeatedParameter
            )))
        ));
    }

    #[test]
    fn values_are_form_decoded_and_bounded() {
        assert_eq!(found("access_token=ab%2Bc%3D").unwrap().unwrap(), "ab+c=");
        // `+` is a space, which the b64token check later refuses.
        assert_eq!(found("access_token=a+b").unwrap().unwrap(), "a b");
        assert!(matches!(
            found("access_token="),
            Some(Err(AuthError::InvalidRequest(InvalidRequest::EmptyToken)))
        ));
        assert!(matches!(
            found(&format!("access_token={}", "a".repeat(101))),
            Some(Err(AuthError::InvalidToken(TokenRejection::TooLong)))
        ));
        assert!(matches!(
            found("access_token=%FF"),
            Some(Err(AuthError::InvalidToken(TokenRejection::Malformed)))
        ));
    }

    #[test]
    fn stripped_for_the_upstream() {
        assert_eq!(without_access_token("a=1&b=2").as_deref(), Some("a=1&b=2"));
        assert_eq!(
            without_access_token("a=1&access%5Ftoken=s&b=2").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(without_access_token("access_token=s"), None);
        assert_eq!(without_access_token(""), None);
    }
}
