//! Proof Key for Code Exchange (RFC 7636) with the `S256` method: the connect flow makes a
//! verifier and sends its challenge; the demo provider checks one against the other.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

use super::random;

/// A fresh verifier: 32 random bytes, 43 characters (RFC 7636 §4.1 asks for 43 to 128).
pub fn verifier() -> String {
    random::url_safe::<32>()
}

/// The `S256` challenge of a verifier: `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
