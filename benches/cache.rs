//! The verified-token cache: a repeated RS256 / ES256 token through the validation layer, keys
//! from a JWKS, with `CachedValidator` in front and without, in one run.
//!
//! `cargo bench --bench cache`
//!
//! Both sides pay for everything a request pays for: header extraction, the validator, claims
//! into the request extensions, the inner service call and the response. Without the cache each
//! request verifies the signature (and decodes and checks the claims); with it, a repeat costs a
//! keyed 128-bit digest of the token, a sharded map lookup and a clone of the claims.
//! `*/layer_floor` is the layer around a validator that answers constant claims: what any
//! validator costs at least.

mod common;

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp, jwk::Jwk};
use tower::service_fn;
use tower_bearer::{
    failure::AuthError,
    http_client::HttpClient,
    token::BearerToken,
    validate::{
        CachedValidator, ClaimsPolicy, JwksValidator, StandardClaims, ValidateToken, Verdict,
    },
};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "bench-api";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).expect("test key")
}

/// A JWKS validator whose keys (RS256 `rsa`, ES256 `ec`) come from an in-memory JWKS, fetched
/// once before measuring.
fn jwks_validator(keys: &[(&str, &EncodingKey, Algorithm)]) -> JwksValidator<StandardClaims> {
    let jwks = serde_json::json!({
        "keys": keys.iter().map(|(kid, key, alg)| {
            let mut jwk = serde_json::to_value(Jwk::from_encoding_key(key, *alg).unwrap()).unwrap();
            jwk["kid"] = (*kid).into();
            jwk
        }).collect::<Vec<_>>()
    })
    .to_string();
    let client = HttpClient::new(service_fn(move |_request: Request<Full<Bytes>>| {
        let body = Bytes::from(jwks.clone());
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("cache-control", "max-age=86400")
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    }));
    let validator = JwksValidator::builder("https://issuer.example/jwks")
        .client(client)
        .policy(ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE))
        .build_lazy()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(validator.refresh())
        .unwrap();
    validator
}

/// A validator that answers the same claims for any token: the cost of the layer itself.
#[derive(Clone)]
struct Constant(StandardClaims);

impl ValidateToken for Constant {
    type Claims = StandardClaims;
    type Future = std::future::Ready<Result<StandardClaims, AuthError>>;

    fn validate(&self, _token: &BearerToken) -> Verdict<StandardClaims, Self::Future> {
        Verdict::Decided(Ok(self.0.clone()))
    }
}

fn bench(c: &mut Criterion) {
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa_private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap();
    let validator = jwks_validator(&[
        ("rsa", &rsa, Algorithm::RS256),
        ("ec", &ec, Algorithm::ES256),
    ]);
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1234", "scope": "reports:read profile",
        "client_id": "bench-client", "jti": "0123456789abcdef",
        "iat": get_current_timestamp(), "exp": get_current_timestamp() + 24 * 3600,
    });

    let mut group = c.benchmark_group("cache");
    for (name, kid, key, algorithm) in [
        ("RS256", "rsa", &rsa, Algorithm::RS256),
        ("ES256", "ec", &ec, Algorithm::ES256),
    ] {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let token = encode(&header, &claims, key).unwrap();

        common::through_layer(
            &mut group,
            format!("{name}/verify"),
            validator.clone(),
            &token,
        );
        let cached = CachedValidator::new(validator.clone()).max_ttl(Duration::from_secs(3600));
        common::through_layer(&mut group, format!("{name}/cached"), cached, &token);
        // The floor: the layer around a validator that hands out the same claims without
        // looking at the token (extraction, claims clone, extensions, inner call).
        let constant = Constant(serde_json::from_value(claims.clone()).unwrap());
        common::through_layer(&mut group, format!("{name}/layer_floor"), constant, &token);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
