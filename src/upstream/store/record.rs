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
    Link, LinkKey, PendingFlow, TokenSecret,
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
    let seal =
        |token: &TokenSecret, field: &str| seal_text(keyring, token, &associated_data(key, field));
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
    let open =
        |text: &str, field: &str| open_text(keyring, kid, text, &associated_data(key, field));
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

/// A [`PendingFlow`] as a record: the same format rules as a link's (`v`, `kid`, unknown
/// fields ignored), its verifier and binding sealed, bound to the flow's `state`.
///
/// ```json
/// {"v":1,"kid":"k1","iss":"https://login.example","sub":"alice","provider":"acme",
///  "verifier":"<sealed>","binding":"<sealed>","return_to":"/settings","exp":1767225600000}
/// ```
#[derive(Serialize, Deserialize)]
struct FlowV1 {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    iss: String,
    sub: String,
    provider: String,
    verifier: String,
    binding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    return_to: Option<String>,
    exp: u64,
}

/// The associated data of one secret field of the flow under `state`.
fn flow_associated_data(state: &str, field: &str) -> Vec<u8> {
    let mut aad = b"tower-bearer/flow/1".to_vec();
    for part in [state, field] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Seals `secret` for `aad`: base64url when sealed, as it is on a plaintext keyring.
fn seal_text(keyring: &Keyring, secret: &TokenSecret, aad: &[u8]) -> Result<String, RecordError> {
    let (kid, sealed) = keyring.seal(secret.expose_secret().as_bytes(), aad)?;
    match kid {
        Some(_) => Ok(URL_SAFE_NO_PAD.encode(sealed)),
        None => String::from_utf8(sealed).map_err(|_| RecordError::Malformed),
    }
}

/// Opens what [`seal_text`] sealed under the key `kid`.
fn open_text(
    keyring: &Keyring,
    kid: Option<&str>,
    text: &str,
    aad: &[u8],
) -> Result<TokenSecret, RecordError> {
    let sealed = match kid {
        Some(_) => URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| RecordError::Malformed)?,
        None => text.as_bytes().to_vec(),
    };
    let plain = keyring.open(kid, &sealed, aad)?;
    let secret = String::from_utf8(plain).map_err(|_| RecordError::Malformed)?;
    Ok(TokenSecret::new(secret))
}

/// The pending `flow` under `state` as a record, its secrets sealed under `keyring`'s current
/// key.
pub fn encode_flow(
    state: &str,
    flow: &PendingFlow,
    keyring: &Keyring,
) -> Result<String, RecordError> {
    let key = flow.key();
    let record = FlowV1 {
        v: FORMAT_VERSION,
        kid: keyring.current_key_id().map(str::to_owned),
        iss: key.issuer().unwrap_or_default().to_owned(),
        sub: key.user().to_owned(),
        provider: key.provider().to_owned(),
        verifier: seal_text(
            keyring,
            flow.verifier(),
            &flow_associated_data(state, "verifier"),
        )?,
        binding: seal_text(
            keyring,
            flow.binding(),
            &flow_associated_data(state, "binding"),
        )?,
        return_to: flow.return_to().map(str::to_owned),
        exp: millis(Some(flow.expires_at())).unwrap_or_default(),
    };
    serde_json::to_string(&record).map_err(|_| RecordError::Malformed)
}

/// The pending flow under `state` from its record.
pub fn decode_flow(
    state: &str,
    record: &[u8],
    keyring: &Keyring,
) -> Result<PendingFlow, RecordError> {
    let peek: Peek = serde_json::from_slice(record).map_err(|_| RecordError::Malformed)?;
    if peek.v != u64::from(FORMAT_VERSION) {
        return Err(RecordError::UnsupportedVersion(peek.v));
    }
    let record: FlowV1 = serde_json::from_slice(record).map_err(|_| RecordError::Malformed)?;
    let kid = record.kid.as_deref();
    let verifier = open_text(
        keyring,
        kid,
        &record.verifier,
        &flow_associated_data(state, "verifier"),
    )?;
    let binding = open_text(
        keyring,
        kid,
        &record.binding,
        &flow_associated_data(state, "binding"),
    )?;
    let key = LinkKey::for_subject(record.iss, record.sub, record.provider);
    let mut flow = PendingFlow::new(key, verifier, binding, Duration::ZERO)
        .with_expires_at(time(Some(record.exp)).unwrap_or(UNIX_EPOCH));
    if let Some(return_to) = record.return_to {
        flow = flow.with_return_to(return_to);
    }
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_round_trips_sealed_and_opens_only_under_its_state() {
        let keyring = Keyring::new("k1", [3; 32]);
        let flow = PendingFlow::new(
            key(),
            "verifier-secret",
            "binding-secret",
            Duration::from_secs(600),
        )
        .with_return_to("/settings");
        let record = encode_flow("state-1", &flow, &keyring).unwrap();
        assert!(!record.contains("secret"), "{record}");
        let back = decode_flow("state-1", record.as_bytes(), &keyring).unwrap();
        assert_eq!(back.key(), flow.key());
        assert_eq!(back.verifier().expose_secret(), "verifier-secret");
        assert_eq!(back.binding().expose_secret(), "binding-secret");
        assert_eq!(back.return_to(), Some("/settings"));
        let to_ms = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(to_ms(back.expires_at()), to_ms(flow.expires_at()));
        assert!(matches!(
            decode_flow("state-2", record.as_bytes(), &keyring),
            Err(RecordError::Crypto(_))
        ));
    }

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
