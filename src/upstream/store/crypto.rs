//! Tokens encrypted at rest: the [`Keyring`] persistent stores seal access and refresh tokens
//! with (feature `encryption`).
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): an AEAD with a 192-bit
//! nonce, so a fresh random nonce per write is safe however many writes a key sees. Each
//! sealed token carries its nonce; each record names the key that sealed it (its key id), so
//! keys can rotate: a keyring has one current key, which seals, and older ones kept for reading.
//! A record sealed under an older key is rewritten under the current one on its next save.
//!
//! The associated data binds each ciphertext to its place — the link's key (issuer, user,
//! provider) and which token it is — so a sealed token copied into another user's record, or an
//! access token swapped with a refresh token, fails to open.
//!
//! ```
//! use tower_bearer::upstream::store::crypto::Keyring;
//!
//! // Current key "2025-06", and the key it replaced, still readable.
//! let keyring = Keyring::new("2025-06", [1; 32]).with_old_key("2024-11", [2; 32]);
//! assert_eq!(keyring.current_key_id(), Some("2025-06"));
//! // From configuration: a base64 32-byte key (`openssl rand -base64 32`).
//! let keyring = Keyring::from_base64("k1", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
//! assert!(!format!("{keyring:?}").contains("AQEB"));
//! ```

use std::{fmt, sync::Arc};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD},
};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};

/// The length of a key, in bytes.
pub const KEY_LEN: usize = 32;

/// The length of the random nonce in front of each sealed token, in bytes.
const NONCE_LEN: usize = 24;

/// The keys that seal and open tokens at rest: one current key and older ones kept for
/// reading; or, only when explicitly asked for, none ([`insecure_plaintext`](Self::insecure_plaintext)).
///
/// Cheap to clone. Its `Debug` output shows key ids, never key material; keys are wiped from
/// memory when the last clone is dropped.
#[derive(Clone)]
pub struct Keyring(Arc<Inner>);

enum Inner {
    Plaintext,
    Keys {
        current: NamedKey,
        older: Vec<NamedKey>,
    },
}

#[derive(Clone)]
struct NamedKey {
    id: Arc<str>,
    cipher: XChaCha20Poly1305,
}

/// Why a key or a keyring could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is not base64, or not 32 bytes once decoded.
    #[error("the key must be 32 bytes, base64-encoded (for example `openssl rand -base64 32`)")]
    BadKey,
    /// The environment variable is not set (or empty).
    #[error("the environment variable {0} is not set")]
    MissingEnv(String),
    /// The key id is empty, too long, or not printable ASCII.
    #[error("a key id must be 1 to 64 printable ASCII characters")]
    BadKeyId,
}

/// Why a token could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The record names a key this keyring does not hold.
    #[error("the record was sealed with key `{0}`, which the keyring does not hold")]
    UnknownKey(String),
    /// The ciphertext did not open: altered, truncated, or moved from another link.
    #[error("a sealed token failed to open (altered, or moved from another link)")]
    Unsealing,
    /// A plaintext record, but the keyring has keys: refused.
    #[error("a plaintext record, but the store is configured with keys")]
    PlaintextRecord,
    /// A sealed record, but the keyring is plaintext.
    #[error("a sealed record, but the store is configured without keys")]
    NoKeys,
    /// The system's random number generator failed.
    #[error("no randomness for a nonce")]
    Random,
}

fn check_id(id: String) -> Result<Arc<str>, KeyError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::BadKeyId);
    }
    Ok(Arc::from(id))
}

/// Decodes a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn decode_key(encoded: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let encoded = encoded.trim();
    let bytes = [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
        .or_else(|| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded)
                .ok()
        })
        .ok_or(KeyError::BadKey)?;
    bytes.try_into().map_err(|_| KeyError::BadKey)
}

impl NamedKey {
    fn new(id: Arc<str>, key: [u8; KEY_LEN]) -> Self {
        Self {
            id,
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }
}

impl Keyring {
    /// A keyring whose current key is `key`, named `id` (stored in every record it seals, so
    /// that the key can later be rotated).
    ///
    /// # Panics
    ///
    /// When `id` is not 1 to 64 printable ASCII characters; see [`try_new`](Self::try_new).
    pub fn new(id: impl Into<String>, key: [u8; KEY_LEN]) -> Self {
        Self::try_new(id, key).expect("a key id of 1 to 64 printable ASCII characters")
    }

    /// A keyring whose current key is `key`, named `id`.
    pub fn try_new(id: impl Into<String>, key: [u8; KEY_LEN]) -> Result<Self, KeyError> {
        Ok(Self(Arc::new(Inner::Keys {
            current: NamedKey::new(check_id(id.into())?, key),
            older: Vec::new(),
        })))
    }

    /// A keyring whose current key, named `id`, is given in base64 (32 bytes).
    pub fn from_base64(id: impl Into<String>, encoded: &str) -> Result<Self, KeyError> {
        Self::try_new(id, decode_key(encoded)?)
    }

    /// A keyring whose current key, named `id`, is in the environment variable `variable`
    /// (base64, 32 bytes).
    pub fn from_env(id: impl Into<String>, variable: &str) -> Result<Self, KeyError> {
        let encoded = std::env::var(variable)
            .ok()
            .filter(|value| !value.is_empty())
            .ok_or_else(|| KeyError::MissingEnv(variable.to_owned()))?;
        Self::from_base64(id, &encoded)
    }

    /// Keeps an older key, named `id`, to read records it sealed (they are sealed with the
    /// current key at their next save). On a plaintext keyring this does nothing.
    ///
    /// # Panics
    ///
    /// When `id` is not 1 to 64 printable ASCII characters.
    pub fn with_old_key(self, id: impl Into<String>, key: [u8; KEY_LEN]) -> Self {
        let id = check_id(id.into()).expect("a key id of 1 to 64 printable ASCII characters");
        let inner = Arc::try_unwrap(self.0).unwrap_or_else(|shared| shared.rebuild());
        Self(Arc::new(match inner {
            Inner::Plaintext => Inner::Plaintext,
            Inner::Keys { current, mut older } => {
                older.push(NamedKey::new(id, key));
                Inner::Keys { current, older }
            }
        }))
    }

    /// **No encryption**: tokens are stored as they are, readable by anyone who can read the
    /// store's files or memory. For tests and throwaway demos only; a store opened with it says
    /// so in its logs.
    pub fn insecure_plaintext() -> Self {
        Self(Arc::new(Inner::Plaintext))
    }

    /// Whether this keyring stores tokens unencrypted.
    pub fn is_plaintext(&self) -> bool {
        matches!(*self.0, Inner::Plaintext)
    }

    /// The id of the key that seals, if any.
    pub fn current_key_id(&self) -> Option<&str> {
        match &*self.0 {
            Inner::Plaintext => None,
            Inner::Keys { current, .. } => Some(&current.id),
        }
    }

    /// Seals `plaintext` under the current key, bound to `aad`: the key id and
    /// `nonce ‖ ciphertext ‖ tag`. On a plaintext keyring: no key id and the plaintext.
    pub fn seal(
        &self,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<(Option<Arc<str>>, Vec<u8>), CryptoError> {
        let current = match &*self.0 {
            Inner::Plaintext => return Ok((None, plaintext.to_vec())),
            Inner::Keys { current, .. } => current,
        };
        let mut nonce = [0; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let sealed = current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Unsealing)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok((Some(current.id.clone()), out))
    }

    /// Opens what [`seal`](Self::seal) sealed under the key `key_id` (`None`: a plaintext
    /// record) with the same `aad`.
    pub fn open(
        &self,
        key_id: Option<&str>,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let (current, older) = match (&*self.0, key_id) {
            (Inner::Plaintext, None) => return Ok(sealed.to_vec()),
            (Inner::Plaintext, Some(_)) => return Err(CryptoError::NoKeys),
            (Inner::Keys { .. }, None) => return Err(CryptoError::PlaintextRecord),
            (Inner::Keys { current, older }, Some(_)) => (current, older),
        };
        let key_id = key_id.unwrap_or_default();
        let key = std::iter::once(current)
            .chain(older)
            .find(|key| &*key.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Unsealing);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Unsealing)?;
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Unsealing)
    }
}

impl Inner {
    /// A copy of a keyring shared with other clones.
    fn rebuild(&self) -> Inner {
        match self {
            Inner::Plaintext => Inner::Plaintext,
            Inner::Keys { current, older } => Inner::Keys {
                current: current.clone(),
                older: older.clone(),
            },
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Inner::Plaintext => f.write_str("Keyring(INSECURE plaintext)"),
            Inner::Keys { current, older } => f
                .debug_struct("Keyring")
                .field("current", &&*current.id)
                .field(
                    "older",
                    &older.iter().map(|key| &*key.id).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_with_a_fresh_nonce_and_opens_only_with_the_same_key_and_aad() {
        let keyring = Keyring::new("k1", [1; KEY_LEN]);
        let (kid, a) = keyring.seal(b"token", b"aad").unwrap();
        let (_, b) = keyring.seal(b"token", b"aad").unwrap();
        assert_eq!(kid.as_deref(), Some("k1"));
        assert_ne!(a, b, "a fresh nonce per write");
        assert!(!a.windows(5).any(|w| w == b"token"));
        assert_eq!(keyring.open(Some("k1"), &a, b"aad").unwrap(), b"token");
        assert!(matches!(
            keyring.open(Some("k1"), &a, b"other"),
            Err(CryptoError::Unsealing)
        ));
        let mut altered = a.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(keyring.open(Some("k1"), &altered, b"aad").is_err());
        assert!(matches!(
            keyring.open(Some("k0"), &a, b"aad"),
            Err(CryptoError::UnknownKey(_))
        ));
        let other = Keyring::new("k1", [2; KEY_LEN]);
        assert!(other.open(Some("k1"), &a, b"aad").is_err());
    }

    #[test]
    fn rotation_keeps_old_keys_for_reading() {
        let old = Keyring::new("k1", [1; KEY_LEN]);
        let (kid, sealed) = old.seal(b"token", b"aad").unwrap();
        let rotated = Keyring::new("k2", [2; KEY_LEN]).with_old_key("k1", [1; KEY_LEN]);
        assert_eq!(
            rotated.open(kid.as_deref(), &sealed, b"aad").unwrap(),
            b"token"
        );
        assert_eq!(rotated.seal(b"t", b"").unwrap().0.as_deref(), Some("k2"));
        assert_eq!(
            format!("{rotated:?}"),
            r#"Keyring { current: "k2", older: ["k1"] }"#
        );
    }

    #[test]
    fn plaintext_is_explicit_and_never_mixed() {
        let plain = Keyring::insecure_plaintext();
        assert!(plain.is_plaintext());
        let (kid, stored) = plain.seal(b"token", b"aad").unwrap();
        assert_eq!((kid, stored.as_slice()), (None, &b"token"[..]));
        let keys = Keyring::new("k1", [1; KEY_LEN]);
        assert!(matches!(
            keys.open(None, b"token", b"aad"),
            Err(CryptoError::PlaintextRecord)
        ));
        let (kid, sealed) = keys.seal(b"token", b"aad").unwrap();
        assert!(matches!(
            plain.open(kid.as_deref(), &sealed, b"aad"),
            Err(CryptoError::NoKeys)
        ));
    }

    #[test]
    fn keys_from_base64_and_ids_are_checked() {
        let encoded = STANDARD.encode([9; KEY_LEN]);
        assert!(Keyring::from_base64("k", &encoded).is_ok());
        assert!(Keyring::from_base64("k", &URL_SAFE_NO_PAD.encode([9; KEY_LEN])).is_ok());
        assert!(matches!(
            Keyring::from_base64("k", &STANDARD.encode([9; 16])),
            Err(KeyError::BadKey)
        ));
        assert!(matches!(
            Keyring::from_base64("k", "not base64!"),
            Err(KeyError::BadKey)
        ));
        assert!(matches!(
            Keyring::try_new("", [0; KEY_LEN]),
            Err(KeyError::BadKeyId)
        ));
        assert!(matches!(
            Keyring::try_new("a b", [0; KEY_LEN]),
            Err(KeyError::BadKeyId)
        ));
        assert!(matches!(
            Keyring::from_env("k", "TOWER_BEARER_TEST_UNSET_KEY_VARIABLE"),
            Err(KeyError::MissingEnv(_))
        ));
    }
}
