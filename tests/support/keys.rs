//! The fixed test keys (`tests/keys/`), what they sign with, and the validator that knows them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower_bearer::validate::{ClaimsPolicy, JwtValidator, StandardClaims, VerificationKey};

use super::tokens::{AUDIENCE, ISSUER, LEEWAY};

pub const HMAC_SECRET: &[u8] = b"an-hmac-secret-of-at-least-32-bytes-for-hs256";
pub const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");
pub const RSA_FOREIGN_PRIVATE: &[u8] = include_bytes!("../keys/rsa_foreign_private.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../keys/ec_private.pem");
pub const EC_PUBLIC: &[u8] = include_bytes!("../keys/ec_public.pem");
pub const ED_PRIVATE: &[u8] = include_bytes!("../keys/ed_private.pem");
pub const ED_PUBLIC: &[u8] = include_bytes!("../keys/ed_public.pem");

/// The signing keys the tests mint tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// HS256 with [`HMAC_SECRET`], `kid: hs`.
    Hs,
    /// RS256, `kid: rs`.
    Rs,
    /// ES256 (P-256), `kid: es`.
    Es,
    /// EdDSA (Ed25519), `kid: ed`.
    Ed,
    /// An RSA key the validator does not know, `kid: foreign`.
    Foreign,
}

impl Key {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Key::Hs => Algorithm::HS256,
            Key::Rs | Key::Foreign => Algorithm::RS256,
            Key::Es => Algorithm::ES256,
            Key::Ed => Algorithm::EdDSA,
        }
    }

    pub fn kid(self) -> &'static str {
        match self {
            Key::Hs => "hs",
            Key::Rs => "rs",
            Key::Es => "es",
            Key::Ed => "ed",
            Key::Foreign => "foreign",
        }
    }

    pub fn encoding_key(self) -> EncodingKey {
        match self {
            Key::Hs => EncodingKey::from_secret(HMAC_SECRET),
            Key::Rs => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            Key::Foreign => EncodingKey::from_rsa_pem(RSA_FOREIGN_PRIVATE).unwrap(),
            Key::Es => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            Key::Ed => EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        }
    }

    /// The header the key signs with: its algorithm, its `kid`, `typ: at+jwt`.
    pub fn header(self) -> Header {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.kid().to_owned());
        header.typ = Some("at+jwt".to_owned());
        header
    }
}

/// The validator every test server uses: all four key families, each under its `kid`, and
/// [`policy`].
pub fn validator() -> JwtValidator<StandardClaims> {
    JwtValidator::<StandardClaims>::builder()
        .key(
            VerificationKey::hmac(HMAC_SECRET, &[Algorithm::HS256])
                .unwrap()
                .with_kid("hs"),
        )
        .key(
            VerificationKey::rsa_pem(RSA_PUBLIC, &[Algorithm::RS256])
                .unwrap()
                .with_kid("rs"),
        )
        .key(
            VerificationKey::ec_pem(EC_PUBLIC, &[Algorithm::ES256])
                .unwrap()
                .with_kid("es"),
        )
        .key(
            VerificationKey::ed_pem(ED_PUBLIC, &[Algorithm::EdDSA])
                .unwrap()
                .with_kid("ed"),
        )
        .policy(policy())
        .build()
        .unwrap()
}

/// A validator with the RSA public key only (the classic algorithm-confusion target).
pub fn rsa_only_validator() -> JwtValidator<StandardClaims> {
    JwtValidator::<StandardClaims>::builder()
        .key(VerificationKey::rsa_pem(RSA_PUBLIC, &[Algorithm::RS256]).unwrap())
        .policy(policy())
        .build()
        .unwrap()
}

/// The issuer, the audience and `typ: at+jwt` required, [`LEEWAY`] seconds of clock skew.
pub fn policy() -> ClaimsPolicy {
    ClaimsPolicy::new()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .token_type("at+jwt")
        .leeway(LEEWAY)
}
