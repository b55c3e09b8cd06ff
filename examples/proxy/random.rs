//! Unguessable values from the operating system's random number generator: OAuth `state`s,
//! PKCE verifiers, request ids, and the demo's keys and tokens.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    // Without an RNG nothing here can be made safely; there is no fallback worth having.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// `N` random bytes, base64url-encoded without padding (URL-, header- and cookie-safe).
pub fn url_safe<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<N>())
}
