//! JWS / JWT conformance of the validators (issue 10): critical header extensions (RFC 7515
//! §4.1.11) and NumericDates with fractions or exponents (RFC 7519 §2), through every path a
//! token takes — `JwtValidator` with one key and with several, `JwksValidator`, the layer, the
//! verified-token cache.

mod support;

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, jwk::Jwk};
use serde_json::{Value, json};
use support::{
    keys::{Key, policy, validator},
    tokens::{AUDIENCE, ISSUER, LEEWAY, claims_with, now, raw_token, valid_claims},
};
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::{
    emit::Emitter,
    failure::{AuthError, TokenRejection},
    http_client::HttpClient,
    token::BearerToken,
    validate::{
        CachedValidator, JwksValidator, JwtValidator, StandardClaims, TokenExpiry,
        ValidateBearerLayer, ValidateToken,
    },
};

/// A validator with one key: tokens go straight to verification, no key selection.
fn one_key_validator(key: Key) -> JwtValidator<StandardClaims> {
    JwtValidator::builder()
        .key(key.verification_key())
        .policy(policy())
        .build()
        .unwrap()
}

/// A JWKS validator over an in-process "issuer" publishing the RSA and EC test keys.
fn jwks_validator() -> JwksValidator<StandardClaims> {
    let jwk = |key: Key| {
        let mut jwk = Jwk::from_encoding_key(&key.encoding_key(), key.algorithm()).unwrap();
        jwk.common.key_id = Some(key.kid().to_owned());
        // The public half only.
        let mut value = serde_json::to_value(jwk).unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            value.as_object_mut().unwrap().remove(private);
        }
        value
    };
    let document = json!({ "keys": [jwk(Key::Rs), jwk(Key::Es)] }).to_string();
    let issuer = service_fn(move |_request: Request<Full<Bytes>>| {
        let document = document.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(document)))
                    .unwrap(),
            )
        }
    });
    JwksValidator::builder("http://issuer.invalid/jwks")
        .client(HttpClient::new(issuer))
        .algorithms(&[Algorithm::RS256, Algorithm::ES256])
        .policy(policy())
        .build_lazy()
        .unwrap()
}

async fn outcome<V: ValidateToken>(
    validator: &V,
    token: &str,
) -> Result<Arc<V::Claims>, AuthError> {
    validator
        .validate(&BearerToken::new(token).unwrap())
        .outcome()
        .await
}

/// The status and `WWW-Authenticate` of a request with `token` through the layer.
async fn through_layer<V>(validator: V, token: &str) -> (StatusCode, Option<String>)
where
    V: ValidateToken + Clone,
{
    let service = ValidateBearerLayer::new(validator, Emitter::new("conformance")).layer(
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }),
    );
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

/// `key`'s standard header with `extra` members added, as JSON bytes.
fn header_with(key: Key, extra: Value) -> Vec<u8> {
    let mut header = serde_json::to_value(key.header()).unwrap();
    for (name, value) in extra.as_object().unwrap() {
        header[name] = value.clone();
    }
    serde_json::to_vec(&header).unwrap()
}

/// A validly signed token whose header carries `extra`, with claims every policy accepts.
fn signed_with_header(key: Key, extra: Value) -> String {
    raw_token(
        &header_with(key, extra),
        &serde_json::to_vec(&valid_claims()).unwrap(),
        key,
    )
}

/// A validly signed token with the standard header and `claims`, serialized as given (so
/// numbers keep their spelling: `1.7957907E9` stays an exponent).
fn signed_raw_claims(key: Key, claims: &str) -> String {
    raw_token(
        &serde_json::to_vec(&key.header()).unwrap(),
        claims.as_bytes(),
        key,
    )
}

/// Every `crit` a validator must refuse: the crate understands no extension.
fn refused_crits() -> Vec<Value> {
    vec![
        // An extension not understood.
        json!({ "crit": ["exp"], "exp": 1 }),
        json!({ "crit": ["http://example.invalid/ext"], "http://example.invalid/ext": true }),
        // RFC 7797's unencoded payload, not supported (the payload here is still base64url,
        // so only `crit` can refuse it).
        json!({ "crit": ["b64"], "b64": false }),
        json!({ "crit": ["b64"], "b64": true }),
        // Empty, not an array, not names, registered parameters.
        json!({ "crit": [] }),
        json!({ "crit": "b64", "b64": false }),
        json!({ "crit": null }),
        json!({ "crit": {} }),
        json!({ "crit": [7] }),
        json!({ "crit": ["alg"] }),
        json!({ "crit": ["kid"] }),
        json!({ "crit": ["typ", "b64"], "b64": false }),
    ]
}

#[tokio::test]
async fn a_critical_extension_is_refused_by_every_validator() {
    let jwks = jwks_validator();
    for key in [Key::Rs, Key::Es] {
        // The same token without `crit` is fine everywhere: only `crit` refuses it.
        let plain = signed_with_header(key, json!({ "b64": true, "x-unknown": [1] }));
        assert!(outcome(&validator(), &plain).await.is_ok());
        assert!(outcome(&one_key_validator(key), &plain).await.is_ok());
        assert!(outcome(&jwks, &plain).await.is_ok());

        for extra in refused_crits() {
            let token = signed_with_header(key, extra.clone());
            for (name, result) in [
                ("several keys", outcome(&validator(), &token).await),
                ("one key", outcome(&one_key_validator(key), &token).await),
                ("jwks", outcome(&jwks, &token).await),
            ] {
                assert!(
                    matches!(result, Err(AuthError::InvalidToken(_))),
                    "{key:?} {name} {extra}: {result:?}"
                );
            }
            assert_eq!(
                outcome(&one_key_validator(key), &token).await.unwrap_err(),
                AuthError::InvalidToken(TokenRejection::Malformed)
            );
        }
    }
}

#[tokio::test]
async fn a_critical_extension_is_401_invalid_token_through_the_layer() {
    let token = signed_with_header(Key::Hs, json!({ "crit": ["b64"], "b64": false }));
    let expected = (
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer realm="conformance", error="invalid_token""#.to_owned()),
    );
    assert_eq!(
        through_layer(one_key_validator(Key::Hs), &token).await,
        expected
    );
    assert_eq!(through_layer(validator(), &token).await, expected);
    assert_eq!(
        through_layer(CachedValidator::new(validator()), &token).await,
        expected
    );
    let token = signed_with_header(Key::Rs, json!({ "crit": ["exp"] }));
    assert_eq!(through_layer(jwks_validator(), &token).await, expected);
}

fn claims_json(changes: Value) -> String {
    claims_with(changes).to_string()
}

#[tokio::test]
async fn numeric_dates_may_be_fractional_or_exponents() {
    let now = now();
    let jwks = jwks_validator();
    let cases = [
        // RFC 7519 §2: "seconds ... can contain fractions" — and any JSON number will do.
        format!(r#"{{"exp": {}.5}}"#, now + 600),
        format!(r#"{{"exp": {}E0}}"#, now + 600),
        format!(r#"{{"exp": {:.7}E9}}"#, (now + 600) as f64 / 1e9),
        format!(
            r#"{{"exp": {}.25, "nbf": {}.75, "iat": {}.5, "auth_time": {}.125}}"#,
            now + 600,
            now - 10,
            now - 10,
            now - 10,
        ),
    ];
    for dates in cases {
        let dates: Value = serde_json::from_str(&dates).unwrap();
        let text = claims_json(dates.clone());
        // serde_json keeps a float a float: the token carries the fraction (or exponent form).
        assert!(text.contains('.') || text.contains('e') || text.contains('E'));
        for key in [Key::Hs, Key::Rs, Key::Es, Key::Ed] {
            let token = signed_raw_claims(key, &text);
            let claims = outcome(&one_key_validator(key), &token)
                .await
                .unwrap_or_else(|e| panic!("{key:?} {dates}: {e:?}"));
            let exp = dates["exp"].as_f64().unwrap();
            assert_eq!(claims.exp, Some(exp.floor() as u64), "exp is floored");
            if let Some(nbf) = dates.get("nbf").and_then(Value::as_f64) {
                assert_eq!(claims.nbf, Some(nbf.ceil() as u64), "nbf is ceiled");
                assert_eq!(claims.iat, Some(dates["iat"].as_f64().unwrap() as u64));
                assert_eq!(
                    claims.auth_time,
                    Some(dates["auth_time"].as_f64().unwrap() as u64)
                );
            }
            assert!(outcome(&validator(), &token).await.is_ok());
            if matches!(key, Key::Rs | Key::Es) {
                assert!(outcome(&jwks, &token).await.is_ok(), "{key:?} {dates}");
            }
            // Claims of the application's own type see the exact numbers.
            let raw: JwtValidator<Value> = JwtValidator::builder()
                .key(key.verification_key())
                .policy(policy())
                .build()
                .unwrap();
            let value = outcome(&raw, &token).await.unwrap();
            assert_eq!(value["exp"].as_f64(), Some(exp));
            assert_eq!(value.expires_at(), Some(exp.floor() as u64));
        }
        assert_eq!(
            through_layer(validator(), &signed_raw_claims(Key::Hs, &text)).await,
            (StatusCode::OK, None)
        );
    }
}

#[tokio::test]
async fn fractional_dates_keep_exp_nbf_and_leeway_semantics() {
    let now = now() as f64;
    let leeway = LEEWAY as f64;
    let verdict = |exp: f64, nbf: Option<f64>| {
        let mut dates = json!({ "exp": exp });
        if let Some(nbf) = nbf {
            dates["nbf"] = json!(nbf);
        }
        let token = signed_raw_claims(Key::Hs, &claims_json(dates));
        async move { outcome(&validator(), &token).await.map(|_| ()) }
    };
    let expired = Err(AuthError::InvalidToken(TokenRejection::Expired));
    let immature = Err(AuthError::InvalidToken(TokenRejection::NotYetValid));
    // Well inside or outside the leeway, a second away from any boundary so that the clock
    // ticking during the test can't matter.
    assert_eq!(verdict(now - leeway + 1.5, None).await, Ok(()));
    assert_eq!(verdict(now - leeway - 2.5, None).await, expired);
    assert_eq!(verdict(now - 0.5, None).await, Ok(()), "within the leeway");
    assert_eq!(verdict(now + 600.0, Some(now + leeway - 2.5)).await, Ok(()));
    assert_eq!(
        verdict(now + 600.0, Some(now + leeway + 2.5)).await,
        immature
    );
    assert_eq!(
        verdict(now + 600.0, Some(now + 5.5)).await,
        Ok(()),
        "within the leeway"
    );
    // Not NumericDates at all: still refused as before.
    for exp in [json!("tomorrow"), json!(-1.5), json!(1e300), json!([1])] {
        let token = signed_raw_claims(Key::Hs, &claims_json(json!({ "exp": exp })));
        assert!(
            matches!(
                outcome(&validator(), &token).await,
                Err(AuthError::InvalidToken(_))
            ),
            "{exp}"
        );
    }
}

#[tokio::test]
async fn the_cache_never_outlives_a_fractional_exp() {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Expires 1.3 s from now (a fractional exp), with no leeway: the cache may serve it until
    // then, never after.
    let exp = unix + 1.3;
    let claims = claims_json(json!({ "exp": exp, "iss": ISSUER, "aud": AUDIENCE }));
    let token = signed_raw_claims(Key::Hs, &claims);
    let strict: JwtValidator<Value> = JwtValidator::builder()
        .key(Key::Hs.verification_key())
        .policy(policy().leeway(0))
        .build()
        .unwrap();
    let cached = CachedValidator::new(strict).max_ttl(Duration::from_secs(60));
    let first = outcome(&cached, &token).await;
    assert!(first.is_ok(), "{first:?}");
    // Past the exact exp, and past the whole second it lies in: the validator refuses, and the
    // cache must not answer for it.
    let wait = exp.floor() + 1.05 - unix;
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    assert_eq!(
        outcome(&cached, &token).await.unwrap_err(),
        AuthError::InvalidToken(TokenRejection::Expired)
    );
}
