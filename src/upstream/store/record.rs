//! The record format persistent stores keep a [`Link`] in (feature `encryption`): versioned
//! JSON, tokens sealed by a [`Keyring`], so that a later release (and another store: SQLite
//! today, Redis next) reads what this one wrote.
//!
//! ```json
//! {"v":1,"kid":"k1","at":"<base64url: nonce ‖ ciphertext ‖ tag>","rt":"<same>",
//!  "exp":1767225600000,"iat":1767222000000,"scopes":["files.read"],"reauth":false}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `v` | the format's version: 1. A reader refuses a version it does not know (never guesses) |
//! | `kid` | the id of the key that sealed `at` and `rt`; absent: plaintext ([`Keyring::insecure_plaintext`]) |
//! | `at` | the access token, sealed (base64url, no padding), or as it is when `kid` is absent |
//! | `rt` | the refresh token, the same way; absent when there is none |
//! | `exp`, `iat` | expiry and issue time of the access token, in milliseconds since the Unix epoch; absent when unknown |
//! | `scopes` | the granted scopes |
//! | `reauth` | the link needs re-authorization |
//!
//! Fields a reader does not know are ignored, so a later release may add optional ones without
//! a new `v`. The record holds no version of the link ([`Link::version`]): that belongs to the
//! store, beside the record.
//!
//! Each token's associated data is `tower-bearer/link/1`, then the issuer, user and provider of
//! the [`LinkKey`] and the field name (`at` or `rt`), each length-prefixed: a sealed token opens
//! only in its own place.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::{
    Link, LinkKey, TokenSecret,
    crypto::{CryptoError, Keyring},
};

/// The version of the format [`encode`] writes.
pub const FORMAT_VERSION: u32 = 1;

/// Why a record could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Not a record: not JSON, or fields missing or of the wrong type.
    #[error("not a link record")]
    Malformed,
    /// A record of a format version this release does not know (a newer release wrote it).
    #[error("a link record of format version {0}, which this release does not read")]
    UnsupportedVersion(u64),
    /// Sealing or opening a token failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    reauth: bool,
}

#[derive(Deserialize)]
struct Peek {
    v: u64,
}

/// The associated data of one token field of the link at `key`.
fn associated_data(key: &LinkKey, field: &str) -> Vec<u8> {
    let mut aad = b"tower-bearer/link/1".to_vec();
    for part in [
        key.issuer().unwrap_or(""),
        key.user(),
        key.provider(),
        field,
    ] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn millis(at: Option<SystemTime>) -> Option<u64> {
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

fn time(millis: Option<u64>) -> Option<SystemTime> {
    millis.and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
}

/// `link`, the link at `key`, as a record: its tokens sealed under `keyring`'s current key.
pub fn encode(key: &LinkKey, link: &Link, keyring: &Keyring) -> Result<String, RecordError> {
    let seal = |token: &TokenSecret, field: &str| {
        let (kid, sealed) = keyring.seal(
            token.expose_secret().as_bytes(),
            &associated_data(key, field),
        )?;
        let text = match kid {
            Some(_) => URL_SAFE_NO_PAD.encode(sealed),
            None => String::from_utf8(sealed).map_err(|_| RecordError::Malformed)?,
        };
        Ok::<_, RecordError>(text)
    };
    let record = RecordV1 {
        v: FORMAT_VERSION,
        kid: keyring.current_key_id().map(str::to_owned),
        at: seal(link.access_token(), "at")?,
        rt: link
            .refresh_token()
            .map(|token| seal(token, "rt"))
            .transpose()?,
        exp: millis(link.expires_at()),
        iat: millis(link.issued_at()),
        scopes: link.scopes().to_vec(),
        reauth: link.needs_reauthorization(),
    };
    serde_json::to_string(&record).map_err(|_| RecordError::Malformed)
}

/// The link at `key` from its record (without a [version](Link::version): the store sets it),
/// and the id of the key that sealed it (`None`: plaintext).
pub fn decode(
    key: &LinkKey,
    record: &[u8],
    keyring: &Keyring,
) -> Result<(Link, Option<String>), RecordError> {
    let peek: Peek = serde_json::from_slice(record).map_err(|_| RecordError::Malformed)?;
    if peek.v != u64::from(FORMAT_VERSION) {
        return Err(RecordError::UnsupportedVersion(peek.v));
    }
    let record: RecordV1 = serde_json::from_slice(record).map_err(|_| RecordError::Malformed)?;
    let kid = record.kid.as_deref();
    let open = |text: &str, field: &str| {
        let sealed = match kid {
            Some(_) => URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| RecordError::Malformed)?,
            None => text.as_bytes().to_vec(),
        };
        let plain = keyring.open(kid, &sealed, &associated_data(key, field))?;
        let token = String::from_utf8(plain).map_err(|_| RecordError::Malformed)?;
        Ok::<_, RecordError>(TokenSecret::new(token))
    };
    let mut link = Link::new(open(&record.at, "at")?)
        .with_scopes(record.scopes)
        .with_needs_reauthorization(record.reauth);
    if let Some(rt) = &record.rt {
        link = link.with_refresh_token(open(rt, "rt")?);
    }
    if let Some(expires) = time(record.exp) {
        link = link.with_expires_at(expires);
    }
    if let Some(issued) = time(record.iat) {
        link = link.with_issued_at(issued);
    }
    Ok((link, record.kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::for_subject("https://idp.example", "alice", "acme")
    }

    fn link() -> Link {
        Link::new("at-secret")
            .with_refresh_token("rt-secret")
            .with_expires_at(UNIX_EPOCH + Duration::from_millis(1_767_225_600_000))
            .with_issued_at(UNIX_EPOCH + Duration::from_millis(1_767_222_000_000))
            .with_scopes(["files.read"])
    }

    #[test]
    fn round_trip_without_a_token_in_the_clear() {
        let keyring = Keyring::new("k1", [3; 32]);
        let record = encode(&key(), &link(), &keyring).unwrap();
        assert!(!record.contains("secret"), "{record}");
        assert!(
            record.starts_with(r#"{"v":1,"kid":"k1","at":""#),
            "{record}"
        );
        let (back, kid) = decode(&key(), record.as_bytes(), &keyring).unwrap();
        assert_eq!(kid.as_deref(), Some("k1"));
        assert_eq!(back.access_token().expose_secret(), "at-secret");
        assert_eq!(back.refresh_token().unwrap().expose_secret(), "rt-secret");
        assert_eq!(back.expires_at(), link().expires_at());
        assert_eq!(back.issued_at(), link().issued_at());
        assert_eq!(back.scopes(), ["files.read"]);
        assert!(!back.needs_reauthorization());
        assert_eq!(back.version(), None);
    }

    #[test]
    fn a_record_opens_only_at_its_own_key_and_tokens_cannot_be_swapped() {
        let keyring = Keyring::new("k1", [3; 32]);
        let record = encode(&key(), &link(), &keyring).unwrap();
        for other in [
            LinkKey::new("alice", "acme"),
            LinkKey::for_subject("https://other.example", "alice", "acme"),
            LinkKey::for_subject("https://idp.example", "bob", "acme"),
            LinkKey::for_subject("https://idp.example", "alice", "github"),
        ] {
            assert!(matches!(
                decode(&other, record.as_bytes(), &keyring),
                Err(RecordError::Crypto(CryptoError::Unsealing))
            ));
        }
        let mut json: serde_json::Value = serde_json::from_str(&record).unwrap();
        let (at, rt) = (json["at"].clone(), json["rt"].clone());
        json["at"] = rt;
        json["rt"] = at;
        assert!(decode(&key(), json.to_string().as_bytes(), &keyring).is_err());
    }

    #[test]
    fn versions_and_unknown_fields() {
        let keyring = Keyring::insecure_plaintext();
        let record = encode(&key(), &link(), &keyring).unwrap();
        assert!(record.contains(r#""at":"at-secret""#), "{record}");
        // A later release's optional field is ignored.
        let later = record.replacen('{', r#"{"dpop_jkt":"x","#, 1);
        assert!(decode(&key(), later.as_bytes(), &keyring).is_ok());
        let newer = record.replace(r#""v":1"#, r#""v":2"#);
        assert!(matches!(
            decode(&key(), newer.as_bytes(), &keyring),
            Err(RecordError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            decode(&key(), b"{}", &keyring),
            Err(RecordError::Malformed)
        ));
        // What this release wrote, read as a fixed text: the format does not drift.
        let fixed = r#"{"v":1,"at":"a","rt":"r","exp":1000,"scopes":["s"],"reauth":true}"#;
        let (read, kid) = decode(&LinkKey::new("u", "p"), fixed.as_bytes(), &keyring).unwrap();
        assert_eq!(kid, None);
        assert_eq!(read.access_token().expose_secret(), "a");
        assert_eq!(read.refresh_token().unwrap().expose_secret(), "r");
        assert_eq!(read.expires_at(), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(read.issued_at(), None);
        assert!(read.needs_reauthorization());
    }
}
