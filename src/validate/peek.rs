//! Reading a JWT's header and `iss` before verification: to choose a key or a key source, and to
//! refuse what this crate cannot process before any cryptography runs.
//!
//! Nothing read here is trusted: the chosen key then verifies the signature, and the verified
//! claims are checked against the policy (RFC 8725 §3.10: `kid` only selects, `iss` is checked
//! after verification). The header is read here once per verification, and the critical
//! extensions (`crit`, RFC 7515 §4.1.11) are judged in the same pass.

use std::fmt;

use base64::Engine;
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use crate::failure::TokenRejection;

/// The header members that select a key and that the policy checks.
#[derive(Debug)]
pub(crate) struct Peeked {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// A compact JWS split into its parts, its header read.
#[derive(Debug)]
pub(crate) struct Jws<'t> {
    pub(crate) header: Peeked,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'t str,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
}

/// The header extensions (RFC 7515 §4.1.11) this crate understands, and so accepts in `crit`.
/// None today: RFC 7797's `b64` (an unencoded payload) is not supported.
const UNDERSTOOD_EXTENSIONS: &[&str] = &[];

/// The header parameters registered by RFC 7515 and RFC 7518 for use with JWS, which `crit`
/// must not name (RFC 7515 §4.1.11: producers "MUST NOT include" them).
const REGISTERED_PARAMETERS: &[&str] = &[
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
];

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Present only when the header has a `crit` member; `Some(false)` when the member is
    /// present but not acceptable (empty, not an array of strings, naming a registered
    /// parameter or an extension not understood).
    #[serde(default, deserialize_with = "critical")]
    crit: Option<bool>,
}

fn critical<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    struct Critical;

    impl<'de> Visitor<'de> for Critical {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut acceptable = true;
            let mut names = 0usize;
            while let Some(name) = seq.next_element::<NameOrOther<'de>>()? {
                names += 1;
                acceptable &= match name {
                    NameOrOther::Name(name) => {
                        !REGISTERED_PARAMETERS.contains(&&*name)
                            && UNDERSTOOD_EXTENSIONS.contains(&&*name)
                    }
                    NameOrOther::Other => false,
                };
            }
            Ok(acceptable && names > 0)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(false)
        }

        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }

        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
    }

    deserializer.deserialize_any(Critical).map(Some)
}

/// An element of `crit`: a name, or anything else (which makes the list unacceptable).
enum NameOrOther<'de> {
    Name(std::borrow::Cow<'de, str>),
    Other,
}

impl<'de> Deserialize<'de> for NameOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Element;

        impl<'de> Visitor<'de> for Element {
            type Value = NameOrOther<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(NameOrOther::Name(name.into()))
            }

            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(NameOrOther::Name(name.to_owned().into()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(NameOrOther::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(NameOrOther::Other)
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(NameOrOther::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(NameOrOther::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(NameOrOther::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(NameOrOther::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(NameOrOther::Other)
            }
        }

        deserializer.deserialize_any(Element)
    }
}

#[derive(Deserialize)]
struct Issuer {
    #[serde(default)]
    iss: Option<String>,
}

/// The token's three dot-separated parts; `Malformed` unless there are exactly three.
fn split(token: &str) -> Result<(&str, &str, &str), TokenRejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    Ok((header, payload, signature))
}

/// A base64url (unpadded) part, decoded.
pub(crate) fn decode_part(encoded: &str) -> Result<Vec<u8>, TokenRejection> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenRejection::Malformed)
}

/// Splits a compact JWS and reads its header. `Malformed` unless the token is three
/// base64url segments with a JSON object header naming its `alg`, and unless that header's
/// `crit` (when present) is a non-empty list of extensions this crate understands.
pub(crate) fn parse(token: &str) -> Result<Jws<'_>, TokenRejection> {
    let (header, payload, signature) = split(token)?;
    let json = decode_part(header)?;
    let parsed: Header = serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)?;
    if parsed.crit == Some(false) {
        // RFC 7515 §4.1.11: a critical extension not understood makes the JWS invalid; so do
        // an empty list, a list of other than names, and registered parameters in it.
        return Err(TokenRejection::Malformed);
    }
    Ok(Jws {
        header: Peeked {
            alg: parsed.alg,
            kid: parsed.kid,
            typ: parsed.typ,
        },
        signing_input: &token[..header.len() + 1 + payload.len()],
        payload,
        signature,
    })
}

/// The header's `alg`, `kid` and `typ`; see [`parse`].
#[cfg(test)]
pub(crate) fn header(token: &str) -> Result<Peeked, TokenRejection> {
    parse(token).map(|jws| jws.header)
}

/// The payload's `iss`, unverified.
pub(crate) fn issuer(token: &str) -> Result<Option<String>, TokenRejection> {
    let (_, payload, _) = split(token)?;
    let json = decode_part(payload)?;
    let claims: Issuer = serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)?;
    Ok(claims.iss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn with_header(header: &str) -> String {
        format!("{}.{}.sig", b64(header), b64("{}"))
    }

    #[test]
    fn reads_kid_and_iss() {
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#),
            b64(r#"{"iss":"https://i","sub":"x"}"#)
        );
        let jws = parse(&token).unwrap();
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jws.signature, "sig");
        assert_eq!(format!("{}.sig", jws.signing_input), token);
        assert_eq!(issuer(&token).unwrap().as_deref(), Some("https://i"));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(header("abc").unwrap_err(), TokenRejection::Malformed);
        assert_eq!(header("a.b.c.d").unwrap_err(), TokenRejection::Malformed);
        assert_eq!(header("!!.e30.x").unwrap_err(), TokenRejection::Malformed);
        let token = format!("{}.{}.s", b64("[]"), b64("{}"));
        assert_eq!(header(&token).unwrap_err(), TokenRejection::Malformed);
        let token = format!("{}.{}.s", b64("{}"), b64(r#"{"iss":3}"#));
        assert_eq!(issuer(&token).unwrap_err(), TokenRejection::Malformed);
    }

    #[test]
    fn any_crit_is_refused_since_no_extension_is_understood() {
        for crit in [
            r#"["exp"]"#,
            r#"["b64"]"#,
            r#"[]"#,
            r#""exp""#,
            r#"null"#,
            r#"{}"#,
            r#"[1]"#,
            r#"["alg"]"#,
            r#"["kid", "exp"]"#,
            r#"[["b64"]]"#,
        ] {
            let token = with_header(&format!(r#"{{"alg":"HS256","crit":{crit},"b64":false}}"#));
            assert_eq!(
                header(&token).unwrap_err(),
                TokenRejection::Malformed,
                "crit: {crit}"
            );
        }
        // Without `crit`, unknown header parameters are ignored (RFC 7515 §4).
        assert!(header(&with_header(r#"{"alg":"HS256","b64":false,"x":[1]}"#)).is_ok());
        // A repeated `crit` member is refused like any repeated member.
        let token = with_header(r#"{"alg":"HS256","crit":["x"],"crit":["y"]}"#);
        assert_eq!(header(&token).unwrap_err(), TokenRejection::Malformed);
    }
}
