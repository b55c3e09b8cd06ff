//! `JwksValidator::builder(..)` and `::discover(..)` over a `service_fn` answering arbitrary
//! JWKS and discovery documents, then validating a token.
//!
//! Input: a flags byte (bit 0: discovery; bits 1–3: the token, see `token_kind`), then the
//! discovery answer and the JWKS answer (`STATUS\nheaders\n\nbody`) separated by a `====` line
//! (in JWKS mode the first answer is the JWKS).
//!
//! Invariants: no panic; the outcome is `Ok`, `InvalidToken` or `ValidationUnavailable` (I4/I8,
//! never anything else); a token is accepted only if an asymmetric test key signed it, it has not
//! expired, and every document on the way was a 2xx; an HS256 token is never accepted, even when
//! the JWKS serves the HMAC secret as an `oct` key, nor a `none` or family-confused token; a key
//! source that did not answer 2xx yields 503 (`ValidationUnavailable`) for a good token, never
//! 401; `cached_kids` and `Debug` work after any answer.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower::service_fn;
use tower_bearer::{
    failure::AuthError,
    http_client::HttpClient,
    token::BearerToken,
    validate::{JwksValidator, StandardClaims, ValidateToken},
};
use tower_bearer_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let discover = flags & 0x01 != 0;
    let kind = flags >> 1;
    let (first, second) = split_answers(input.rest());
    let (discovery, jwks) = if discover {
        (Some(Answer::parse(first)), Answer::parse(second))
    } else {
        (None, Answer::parse(first))
    };

    let (discovery_reply, jwks_reply) = (discovery.clone(), jwks.clone());
    let client = HttpClient::new(service_fn(move |request: Request<Full<Bytes>>| {
        let answer = if request.uri().path() == "/.well-known/openid-configuration" {
            discovery_reply.clone()
        } else {
            Some(jwks_reply.clone())
        };
        async move {
            let answer = answer.unwrap_or_else(|| Answer::parse(b"404\n\n"));
            Ok::<_, Infallible>(answer.response())
        }
    }));
    let builder = if discover {
        JwksValidator::<StandardClaims>::discover(ISSUER)
    } else {
        JwksValidator::<StandardClaims>::builder("https://issuer.example/jwks")
    };
    let validator = builder
        .client(client)
        .policy(policy())
        .build_lazy()
        .expect("a valid configuration builds");

    let token = BearerToken::new(token_kind(kind)).expect("a b64token");
    let outcome = block_on(validator.validate(&token).outcome());
    let _ = validator.cached_kids();
    let debug = format!("{validator:?} {outcome:?}");
    assert_absent("Debug output", debug.as_bytes(), token.as_str());

    let documents_ok =
        jwks.status.is_success() && discovery.as_ref().is_none_or(|d| d.status.is_success());
    match &outcome {
        Ok(claims) => {
            assert!(acceptable_kind(kind), "token kind {} accepted", kind & 7);
            assert!(documents_ok, "accepted with keys from a non-2xx answer");
            assert_eq!(claims.iss.as_deref(), Some(ISSUER));
        }
        Err(AuthError::InvalidToken(_)) => {
            if acceptable_kind(kind) {
                // A good token refused as invalid: only if the keys were fetched and lack it.
                assert!(
                    documents_ok,
                    "a key-source failure answered as 401: {outcome:?}"
                );
            }
        }
        Err(AuthError::ValidationUnavailable { .. }) => {}
        Err(other) => panic!("unexpected outcome {other:?}"),
    }
});
