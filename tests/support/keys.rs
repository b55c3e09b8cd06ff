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

    /// The key that verifies its signatures, without a `kid` (the validator does not know
    /// [`Key::Foreign`]: panics for it).
    pub fn verification_key(self) -> VerificationKey {
        let algorithms = [self.algorithm()];
        match self {
            Key::Hs => VerificationKey::hmac(HMAC_SECRET, &algorithms),
            Key::Rs => VerificationKey::rsa_pem(RSA_PUBLIC, &algorithms),
            Key::Es => VerificationKey::ec_pem(EC_PUBLIC, &algorithms),
            Key::Ed => VerificationKey::ed_pem(ED_PUBLIC, &algorithms),
            Key::Foreign => panic!("the tests have no public key for the foreign key"),
        }
        .unwrap()
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
    [Key::Hs, Key::Rs, Key::Es, Key::Ed]
        .into_iter()
        .fold(JwtValidator::<StandardClaims>::builder(), |builder, key| {
            builder.key(key.verification_key().with_kid(key.kid()))
        })
        .policy(policy())
        .build()
        .unwrap()
}

/// A validator with the RSA public key only (the classic algorithm-confusion target).
pub fn rsa_only_validator() -> JwtValidator<StandardClaims> {
    JwtValidator::<StandardClaims>::builder()
        .key(Key::Rs.verification_key())
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
