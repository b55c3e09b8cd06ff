//! Reading a JWT's header and `iss` before verification, only to choose a key or a key source.
//!
//! Nothing read here is trusted: the chosen key then verifies the signature, and the verified
//! claims are checked against the policy (RFC 8725 §3.10: `kid` only selects, `iss` is checked
//! after verification).

use base64::Engine;
use serde::Deserialize;

use crate::failure::TokenRejection;

/// The header members that select a key.
#[derive(Debug)]
pub(crate) struct Peeked {
    pub(crate) alg: String,
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Issuer {
    #[serde(default)]
    iss: Option<String>,
}

fn segment(token: &str, index: usize) -> Result<Vec<u8>, TokenRejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    let encoded = if index == 0 { header } else { payload };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenRejection::Malformed)
}

/// The header's `alg` and `kid`; `Malformed` unless the token is three base64url segments with a JSON
/// object header.
pub(crate) fn header(token: &str) -> Result<Peeked, TokenRejection> {
    let json = segment(token, 0)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)?;
    Ok(Peeked {
        alg: header.alg,
        kid: header.kid,
    })
}

/// The payload's `iss`, unverified.
pub(crate) fn issuer(token: &str) -> Result<Option<String>, TokenRejection> {
    let json = segment(token, 1)?;
    let claims: Issuer = serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed)?;
    Ok(claims.iss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn reads_kid_and_iss() {
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(r#"{"iss":"https://i","sub":"x"}"#)
        );
        assert_eq!(header(&token).unwrap().kid.as_deref(), Some("k1"));
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
}
