//! Verification keys: one key with its algorithm allow-list ([`VerificationKey`]), and the keys
//! of an issuer selected by `kid` ([`KeySet`]).

use std::{fmt, str::FromStr};

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey,
    errors::ErrorKind,
    jwk::{Jwk, PublicKeyUse},
};
use serde::de::DeserializeOwned;

use super::{ClaimsPolicy, peek, registered::Checks};
use crate::failure::TokenRejection;

/// Why a key could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The algorithm allow-list is empty.
    #[error("the algorithm allow-list is empty")]
    NoAlgorithms,
    /// An allowed algorithm belongs to another family than the key (algorithm confusion).
    #[error("algorithm {algorithm:?} does not belong to the key's {family:?} family")]
    FamilyMismatch {
        /// The offending algorithm.
        algorithm: Algorithm,
        /// The key's family.
        family: AlgorithmFamily,
    },
    /// An HMAC secret shorter than the hash output (RFC 7518 §3.2).
    #[error("an HMAC secret for {algorithm:?} must be at least {min} bytes")]
    WeakSecret {
        /// The algorithm.
        algorithm: Algorithm,
        /// Its minimum secret length.
        min: usize,
    },
    /// The key material could not be read.
    #[error("the key could not be read: {0}")]
    Unreadable(String),
    /// A JWK meant for encryption (`use: enc`), or whose `alg` is outside the allow-list.
    #[error("the JWK is not usable for verifying signatures with the allowed algorithms")]
    NotForSignatures,
    /// No keys were configured.
    #[error("no verification keys were configured")]
    NoKeys,
    /// A private key was passed where the public key belongs.
    #[error(
        "this PEM holds a private key (-----BEGIN {label}-----): pass the public key instead \
         (`openssl pkey -in key.pem -pubout`); verifying never needs the private one"
    )]
    PrivateKey {
        /// The PEM label, e.g. `RSA PRIVATE KEY`.
        label: String,
    },
    /// The claims policy holds a value no token can satisfy.
    #[error(transparent)]
    Policy(#[from] super::PolicyError),
}

/// A public key (or HMAC secret) with the algorithms it may verify and, optionally, its `kid`.
///
/// The allow-list is explicit and must lie within the key's family, so neither `none` nor
/// algorithm confusion (an HS256 token verified with an RSA public key as secret) can occur.
#[derive(Clone)]
pub struct VerificationKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    kid: Option<String>,
}

impl VerificationKey {
    /// A key with its allow-list.
    pub fn new(key: DecodingKey, algorithms: &[Algorithm]) -> Result<Self, KeyError> {
        if algorithms.is_empty() {
            return Err(KeyError::NoAlgorithms);
        }
        let family = key.family();
        if let Some(&algorithm) = algorithms.iter().find(|a| a.family() != family) {
            return Err(KeyError::FamilyMismatch { algorithm, family });
        }
        let mut algorithms = algorithms.to_vec();
        algorithms.dedup();
        Ok(Self {
            key,
            algorithms,
            kid: None,
        })
    }

    /// An HMAC secret, at least as long as the longest allowed hash output.
    pub fn hmac(secret: &[u8], algorithms: &[Algorithm]) -> Result<Self, KeyError> {
        for &algorithm in algorithms {
            let min = match algorithm {
                Algorithm::HS384 => 48,
                Algorithm::HS512 => 64,
                _ => 32,
            };
            if secret.len() < min {
                return Err(KeyError::WeakSecret { algorithm, min });
            }
        }
        Self::new(DecodingKey::from_secret(secret), algorithms)
    }

    /// An RSA public key in PEM.
    pub fn rsa_pem(pem: &[u8], algorithms: &[Algorithm]) -> Result<Self, KeyError> {
        Self::new(
            DecodingKey::from_rsa_pem(refuse_private(pem)?).map_err(unreadable)?,
            algorithms,
        )
    }

    /// An EC public key (P-256 or P-384) in PEM.
    pub fn ec_pem(pem: &[u8], algorithms: &[Algorithm]) -> Result<Self, KeyError> {
        Self::new(
            DecodingKey::from_ec_pem(refuse_private(pem)?).map_err(unreadable)?,
            algorithms,
        )
    }

    /// An Ed25519 public key in PEM.
    pub fn ed_pem(pem: &[u8], algorithms: &[Algorithm]) -> Result<Self, KeyError> {
        Self::new(
            DecodingKey::from_ed_pem(refuse_private(pem)?).map_err(unreadable)?,
            algorithms,
        )
    }

    /// A JWK (RFC 7517), keeping its `kid`. A JWK with `use: enc` is refused; one with an `alg`
    /// may verify only that algorithm, which must be in `allowed`; one without may verify the
    /// algorithms of `allowed` that belong to its own family.
    pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Self, KeyError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(KeyError::NotForSignatures);
        }
        let key = DecodingKey::from_jwk(jwk).map_err(unreadable)?;
        let family = key.family();
        let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
            Some(named) => {
                let named = Algorithm::from_str(&named.to_string())
                    .map_err(|_| KeyError::NotForSignatures)?;
                allowed.iter().copied().filter(|a| *a == named).collect()
            }
            None => allowed
                .iter()
                .copied()
                .filter(|a| a.family() == family)
                .collect(),
        };
        if algorithms.is_empty() {
            return Err(KeyError::NotForSignatures);
        }
        let mut key = Self::new(key, &algorithms)?;
        key.kid = jwk.common.key_id.clone();
        Ok(key)
    }

    /// Names the key: tokens whose header carries a `kid` are verified only by the key of that `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }
}

impl fmt::Debug for VerificationKey {
    // Never the key material: an HMAC key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("family", &self.key.family())
            .field("algorithms", &self.algorithms)
            .field("kid", &self.kid)
            .finish()
    }
}

/// `pem` unless it holds a private key: jsonwebtoken would read some of them and then refuse
/// every token, one request at a time.
fn refuse_private(pem: &[u8]) -> Result<&[u8], KeyError> {
    let text = String::from_utf8_lossy(pem);
    let private = text.lines().find_map(|line| {
        let label = line
            .trim()
            .strip_prefix("-----BEGIN ")?
            .strip_suffix("-----")?;
        label.ends_with("PRIVATE KEY").then(|| label.to_owned())
    });
    match private {
        Some(label) => Err(KeyError::PrivateKey { label }),
        None => Ok(pem),
    }
}

fn unreadable(error: jsonwebtoken::errors::Error) -> KeyError {
    KeyError::Unreadable(error.to_string())
}

/// Keys ready to verify tokens under one [`ClaimsPolicy`], with the policy's checks prepared.
///
/// Key sources that change over time (JWKS) rebuild a `KeySet` and swap it in.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    checks: Checks,
    policy: ClaimsPolicy,
}

impl KeySet {
    /// Prepares `keys` under `policy`.
    pub fn new(keys: Vec<VerificationKey>, policy: ClaimsPolicy) -> Self {
        crate::crypto::ensure_provider();
        Self {
            keys,
            checks: policy.checks(),
            policy,
        }
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a token naming this `kid` has a key to try: one with that `kid`, or one without
    /// any (some issuers publish keys without `kid` yet put one in their tokens).
    pub fn can_verify_kid(&self, kid: &str) -> bool {
        self.keys
            .iter()
            .any(|key| key.kid.as_deref().is_none_or(|own| own == kid))
    }

    /// The policy.
    pub fn policy(&self) -> &ClaimsPolicy {
        &self.policy
    }

    /// Verifies `token` and deserializes its claims.
    ///
    /// The header is read once (`peek`): a `crit` naming any extension is refused (RFC 7515
    /// §4.1.11; none is understood), `alg` must be in the allow-list, and with several keys
    /// the key is selected by `kid` — or, when no key has that `kid` or the token names none,
    /// a key published without a `kid` that allows the token's algorithm. Exactly one key is
    /// tried. The signature is checked by jsonwebtoken's crypto, then the registered claims
    /// as jsonwebtoken would check them, but with fractional NumericDates read exactly (see
    /// `registered`), then `kid` and `typ`.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenRejection> {
        if self.keys.is_empty() {
            return Err(TokenRejection::UnknownKey);
        }
        self.verify_jws(&peek::parse(token)?)
    }

    /// [`verify`](Self::verify) for a token whose header was already read.
    pub(crate) fn verify_jws<C: DeserializeOwned>(
        &self,
        jws: &peek::Jws<'_>,
    ) -> Result<C, TokenRejection> {
        let header = &jws.header;
        // jsonwebtoken can't name an algorithm it doesn't know (`none`): it is not allowed.
        let algorithm =
            Algorithm::from_str(&header.alg).map_err(|_| TokenRejection::AlgorithmNotAllowed)?;
        let key = match self.keys.as_slice() {
            [] => return Err(TokenRejection::UnknownKey),
            [only] => only,
            keys => {
                let by_algorithm = |key: &&VerificationKey| {
                    key.kid.is_none() && key.algorithms.contains(&algorithm)
                };
                let selected = match header.kid.as_deref() {
                    // The key of that `kid`; failing that, a key that has no `kid` at all.
                    Some(kid) => keys
                        .iter()
                        .find(|key| key.kid.as_deref() == Some(kid))
                        .or_else(|| keys.iter().find(by_algorithm)),
                    // No `kid`: a key without one, failing that any key for the algorithm.
                    None => keys
                        .iter()
                        .find(by_algorithm)
                        .or_else(|| keys.iter().find(|key| key.algorithms.contains(&algorithm))),
                };
                selected.ok_or(match header.kid {
                    Some(_) => TokenRejection::UnknownKey,
                    None => TokenRejection::AlgorithmNotAllowed,
                })?
            }
        };
        if !key.algorithms.contains(&algorithm) {
            return Err(TokenRejection::AlgorithmNotAllowed);
        }
        match jsonwebtoken::crypto::verify(
            jws.signature,
            jws.signing_input.as_bytes(),
            &key.key,
            algorithm,
        ) {
            Ok(true) => {}
            Ok(false) => return Err(TokenRejection::BadSignature),
            Err(error) => return Err(rejection(error.kind())),
        }
        let payload = peek::decode_part(jws.payload)?;
        let claims = serde_json::from_slice(&payload).map_err(|_| TokenRejection::Malformed)?;
        self.checks
            .check(&payload, jsonwebtoken::get_current_timestamp())?;
        if let (Some(expected), Some(kid)) = (key.kid.as_deref(), header.kid.as_deref())
            && expected != kid
        {
            return Err(TokenRejection::UnknownKey);
        }
        self.policy.check_type(header.typ.as_deref())?;
        Ok(claims)
    }
}

/// Maps jsonwebtoken's error onto the contract's rejection reasons.
pub(crate) fn rejection(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => TokenRejection::MissingClaim,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenRejection::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_) => TokenRejection::Malformed,
        _ => TokenRejection::BadSignature,
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};

    use super::*;
    use crate::validate::StandardClaims;

    const NAMED: &[u8] = b"the secret of the key named `a`, 32+ bytes";
    const UNNAMED: &[u8] = b"the secret of the key without a kid, 32+ bytes";

    fn token(secret: &[u8], kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let claims = serde_json::json!({ "sub": "x", "exp": get_current_timestamp() + 60 });
        encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn a_kid_selects_its_key_or_else_one_without_a_kid() {
        let keys = KeySet::new(
            vec![
                VerificationKey::hmac(NAMED, &[Algorithm::HS256])
                    .unwrap()
                    .with_kid("a"),
                VerificationKey::hmac(UNNAMED, &[Algorithm::HS256]).unwrap(),
            ],
            ClaimsPolicy::new(),
        );
        assert!(keys.can_verify_kid("unpublished"));
        let verify = |t: &str| keys.verify::<StandardClaims>(t).map(|c| c.sub);
        assert_eq!(verify(&token(NAMED, Some("a"))), Ok(Some("x".into())));
        assert_eq!(
            verify(&token(UNNAMED, Some("unpublished"))),
            Ok(Some("x".into()))
        );
        assert_eq!(verify(&token(UNNAMED, None)), Ok(Some("x".into())));
        // The named key is never bypassed: its `kid` with another key's signature fails.
        assert_eq!(
            verify(&token(UNNAMED, Some("a"))),
            Err(TokenRejection::BadSignature)
        );
    }

    #[test]
    fn without_unnamed_keys_an_unknown_kid_is_refused() {
        let keys = KeySet::new(
            vec![
                VerificationKey::hmac(NAMED, &[Algorithm::HS256])
                    .unwrap()
                    .with_kid("a"),
                VerificationKey::hmac(UNNAMED, &[Algorithm::HS256])
                    .unwrap()
                    .with_kid("b"),
            ],
            ClaimsPolicy::new(),
        );
        assert!(!keys.can_verify_kid("c"));
        assert_eq!(
            keys.verify::<StandardClaims>(&token(NAMED, Some("c"))),
            Err(TokenRejection::UnknownKey)
        );
    }
}
