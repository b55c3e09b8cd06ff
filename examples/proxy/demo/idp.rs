//! The demo's identity provider for the proxy's own users: an issuer with an OpenID discovery
//! document and a JWKS, signing RFC 9068 access tokens (`typ: at+jwt`, EdDSA) with a key made
//! fresh at every start. The proxy validates them exactly as it would a real issuer's.

use axum::{Json, Router, routing::get};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;
use tokio::net::TcpListener;

use super::{super::random, serve_in_background};

/// How long the demo's access tokens live.
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// A running demo identity provider.
pub struct Idp {
    issuer: String,
    key: EncodingKey,
    kid: String,
}

impl Idp {
    /// Starts it on a loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let seed = random::bytes::<32>();
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let kid = random::url_safe::<6>();
        let jwks = json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public),
            "kid": kid, "alg": "EdDSA", "use": "sig",
        }]});
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|| async move { Json(discovery) }),
            )
            .route("/jwks", get(|| async move { Json(jwks) }));
        serve_in_background(listener, router);
        Ok(Self {
            issuer,
            key: EncodingKey::from_ed_der(&pkcs8(&seed)),
            kid,
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An access token for user `sub` with `scope`, for the resource `audience`.
    pub fn token(&self, sub: &str, scope: &str, audience: &str) -> String {
        let now = get_current_timestamp();
        let claims = json!({
            "iss": self.issuer, "sub": sub, "aud": audience, "scope": scope,
            "client_id": "demo-cli", "iat": now, "exp": now + TOKEN_LIFETIME_SECS,
            "jti": random::url_safe::<12>(),
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        encode(&header, &claims, &self.key).expect("an Ed25519 key signs any claims")
    }
}

/// The PKCS #8 (v1) document of an Ed25519 private key (RFC 8410 §7): a fixed prefix, then the
/// 32-byte seed.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    [&PREFIX[..], seed].concat()
}
