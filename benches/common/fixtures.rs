//! The verified-token cache's fixtures, shared by `cache.rs` (criterion) and `instructions.rs`
//! (gungraun): keys from `tests/keys/`, tokens signed with them, a JWKS validator, constant
//! claims, and caches filled to a given size.

use std::{convert::Infallible, hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
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

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "bench-api";
pub const MILLION: usize = 1_000_000;

/// A key file of `tests/keys/`.
pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).expect("test key")
}

/// A JWKS validator whose keys (RS256 `rsa`, ES256 `ec`) come from an in-memory JWKS, fetched
/// once before measuring.
pub fn jwks_validator(keys: &[(&str, &EncodingKey, Algorithm)]) -> JwksValidator<StandardClaims> {
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
pub struct Constant(Arc<StandardClaims>);

impl ValidateToken for Constant {
    type Claims = StandardClaims;
    type Future = std::future::Ready<Result<Arc<StandardClaims>, AuthError>>;

    fn validate(&self, _token: &BearerToken) -> Verdict<Arc<StandardClaims>, Self::Future> {
        Verdict::Decided(Ok(self.0.clone()))
    }
}

/// Accepts the filler tokens of [`full_cache`] with constant claims, and hands any other to `V`.
#[derive(Clone)]
pub struct Filled<V>(V, Arc<StandardClaims>);

impl<V: ValidateToken<Claims = StandardClaims>> ValidateToken for Filled<V> {
    type Claims = StandardClaims;
    type Future = V::Future;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<StandardClaims>, Self::Future> {
        if token.as_str().starts_with("fill.") {
            Verdict::Decided(Ok(self.1.clone()))
        } else {
            self.0.validate(token)
        }
    }
}

pub fn filled<V>(inner: V) -> Filled<V> {
    Filled(inner, constant().0)
}

/// A cache of `capacity` entries, full: `capacity` distinct tokens (none of them `token`) seen once.
pub fn full_cache<V>(inner: V, capacity: usize) -> CachedValidator<V>
where
    V: ValidateToken<Claims = StandardClaims>,
{
    let cache = CachedValidator::new(inner)
        .max_entries(capacity)
        .max_ttl(Duration::from_secs(3600));
    for i in 0..capacity {
        admit(&cache, &fresh_token(i));
    }
    cache
}

/// A distinct, syntactically valid token per `i`.
pub fn fresh_token(i: usize) -> BearerToken {
    BearerToken::new(&format!("fill.{i:016x}.token")).unwrap()
}

/// `token` through `validator`, which must accept it at once (the claims are dropped).
pub fn admit<V: ValidateToken>(validator: &V, token: &BearerToken) {
    match validator.validate(token) {
        Verdict::Decided(Ok(claims)) => drop(black_box(claims)),
        _ => panic!("the token was not accepted at once"),
    }
}

/// A new token into a full cache: `capacity` tokens are cached, the measured ones never were.
pub fn misses(capacity: usize) -> (CachedValidator<Constant>, impl FnMut() -> BearerToken) {
    let cache = full_cache(constant(), capacity);
    let mut next = capacity;
    let new_token = move || {
        next += 1;
        fresh_token(next)
    };
    (cache, new_token)
}

pub fn constant() -> Constant {
    Constant(Arc::new(serde_json::from_value(claims()).unwrap()))
}

/// Claims issued now, valid for a day.
pub fn claims() -> serde_json::Value {
    claims_between(get_current_timestamp(), get_current_timestamp() + 24 * 3600)
}

/// The same claims, issued at `iat` and expiring at `exp`.
pub fn claims_between(iat: u64, exp: u64) -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1234", "scope": "reports:read profile",
        "client_id": "bench-client", "jti": "0123456789abcdef", "iat": iat, "exp": exp,
    })
}

/// An access token (`typ` `at+jwt`, key id `kid`) with [`claims`].
pub fn signed(kid: &str, key: &EncodingKey, algorithm: Algorithm) -> String {
    signed_with(kid, key, algorithm, &claims())
}

pub fn signed_with(
    kid: &str,
    key: &EncodingKey,
    algorithm: Algorithm,
    claims: &serde_json::Value,
) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".to_owned());
    encode(&header, claims, key).unwrap()
}

/// The RS256 and ES256 signing keys.
pub fn keys() -> (EncodingKey, EncodingKey) {
    (
        EncodingKey::from_rsa_pem(&pem("rsa_private.pem")).unwrap(),
        EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap(),
    )
}
