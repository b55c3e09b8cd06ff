//! The claims the tests' tokens carry and how they are minted: well-formed, or broken on purpose.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::keys::Key;

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "https://api.example";
/// Clock-skew allowance of the test policy, in seconds.
pub const LEEWAY: u64 = 30;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims every route accepts: right issuer and audience, `scope: read`, a fresh `mfa` login.
pub fn valid_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "scope": "read",
        "acr": "mfa",
        "auth_time": now,
    })
}

/// [`valid_claims`] with some members replaced (`null` removes a member).
pub fn claims_with(changes: Value) -> Value {
    let mut claims = valid_claims();
    let map = claims.as_object_mut().unwrap();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A token signed by `key` with its standard header.
pub fn token(key: Key, claims: &Value) -> String {
    jsonwebtoken::encode(&key.header(), claims, &key.encoding_key()).unwrap()
}

/// A token with a custom header, signed with `encoding_key`.
pub fn token_with_header(header: &Header, claims: &Value, encoding_key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, encoding_key).unwrap()
}

/// base64url without padding, as in a JWT.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `b64(header).b64(payload).signature`, the signature computed by `key` over whatever bytes
/// were given (so a broken header or payload still carries a valid signature).
pub fn raw_token(header: &[u8], payload: &[u8], key: Key) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding_key(), key.algorithm())
            .unwrap();
    format!("{message}.{signature}")
}

/// The last dot-separated part of a token.
pub fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// The decoded JSON of a token's header (`part` 0) or payload (`part` 1).
pub fn decoded_part(token: &str, part: usize) -> Value {
    let b64 = token.split('.').nth(part).expect("a JWT part");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}
