//! `IntrospectionValidator` over a `service_fn` answering arbitrary JSON.
//!
//! Input: a flags byte (bit 0: discovery; bit 1: client credentials; bit 2: require the
//! issuer; bit 3: require the audience), then the answer(s) as in `jwks_discovery` (discovery
//! document first when discovering).
//!
//! Invariants: no panic; the outcome is `Ok`, `InvalidToken` or `ValidationUnavailable`; an
//! answer that is not 2xx yields 503, never 401 or 200; `Ok` only for a 2xx JSON answer with
//! `active: true`, whose `iss`/`aud` match what is required and whose `exp`/`nbf` hold (30 s
//! leeway); the request carries the token in a form body, never in the URL, and the client
//! credentials as HTTP Basic; neither the token nor the client secret shows up in `Debug`.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::service_fn;
use tower_bearer::{
    failure::AuthError,
    http_client::HttpClient,
    token::BearerToken,
    validate::{IntrospectionValidator, StandardClaims, ValidateToken},
};
use tower_bearer_fuzz::*;

const TOKEN: &str = "opaque-tbCanary7f3a-token";
const SECRET: &str = "introspection-secret-77aa";
const LEEWAY: u64 = 30;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let discover = flags & 0x01 != 0;
    let (first, second) = split_answers(input.rest());
    let (discovery, answer) = if discover {
        (Some(Answer::parse(first)), Answer::parse(second))
    } else {
        (None, Answer::parse(first))
    };

    let (discovery_reply, reply) = (discovery.clone(), answer.clone());
    // A discovery document may name an endpoint URL that happens to contain the token's text.
    let url_from_document = discovery
        .as_ref()
        .is_some_and(|d| contains(&d.body, TOKEN.as_bytes()));
    let credentials = flags & 0x02 != 0;
    let client = HttpClient::new(service_fn(move |request: Request<Full<Bytes>>| {
        let (discovery_reply, reply) = (discovery_reply.clone(), reply.clone());
        async move {
            if request.uri().path() == "/.well-known/openid-configuration" {
                let answer = discovery_reply.unwrap_or_else(|| Answer::parse(b"404\n\n"));
                return Ok::<_, Infallible>(answer.response());
            }
            assert!(
                url_from_document || !request.uri().to_string().contains(TOKEN),
                "the token is in the URL"
            );
            assert_eq!(request.method(), Method::POST);
            let authorization = request.headers().get(header::AUTHORIZATION).cloned();
            assert_eq!(authorization.is_some(), credentials);
            if let Some(authorization) = authorization {
                assert!(authorization.as_bytes().starts_with(b"Basic "));
                assert!(authorization.is_sensitive());
            }
            let body = request.into_body().collect().await.unwrap().to_bytes();
            assert!(
                contains(&body, format!("token={TOKEN}").as_bytes()),
                "no token in the form"
            );
            assert!(
                !contains(&body, SECRET.as_bytes()),
                "the client secret is in the form"
            );
            Ok(reply.response())
        }
    }));
    let mut builder = if discover {
        IntrospectionValidator::<StandardClaims>::discover(ISSUER)
    } else {
        IntrospectionValidator::<StandardClaims>::builder("https://issuer.example/introspect")
    }
    .client(client);
    if credentials {
        builder = builder.client_credentials("api", SECRET);
    }
    if flags & 0x04 != 0 {
        builder = builder.issuer(ISSUER);
    }
    if flags & 0x08 != 0 {
        builder = builder.audience(AUDIENCE);
    }
    let builder = builder.leeway(LEEWAY);
    assert_absent(
        "the builder's Debug",
        format!("{builder:?}").as_bytes(),
        SECRET,
    );
    let validator = builder.build().expect("a valid configuration builds");
    assert_absent(
        "the validator's Debug",
        format!("{validator:?}").as_bytes(),
        SECRET,
    );

    let token = BearerToken::new(TOKEN).expect("a b64token");
    let outcome = block_on(validator.validate(&token).outcome());
    // A refusal never names the token. (Accepted claims are the endpoint's answer, which may
    // echo anything, the canary included.)
    if let Err(error) = &outcome {
        let debug = format!("{error:?}");
        assert_absent("the refusal's Debug", debug.as_bytes(), CANARY);
        assert_absent("the refusal's Debug", debug.as_bytes(), SECRET);
    }

    let discovered = discovery.as_ref().is_none_or(|d| d.status.is_success());
    if !discovered {
        assert!(
            matches!(outcome, Err(AuthError::ValidationUnavailable { .. })),
            "a failed discovery gave {outcome:?}"
        );
        return;
    }
    match &outcome {
        Ok(_) => {
            assert!(
                answer.status.is_success(),
                "accepted on a {} answer",
                answer.status
            );
            let json: Value =
                serde_json::from_slice(&answer.body).expect("accepted a non-JSON answer");
            assert_eq!(
                json.get("active"),
                Some(&Value::Bool(true)),
                "accepted without active: true"
            );
            let now = now();
            if let Some(exp) = json.get("exp").and_then(Value::as_u64) {
                assert!(
                    exp.saturating_add(LEEWAY) >= now,
                    "accepted an expired answer"
                );
            }
            if let Some(nbf) = json.get("nbf").and_then(Value::as_u64) {
                assert!(
                    nbf <= now.saturating_add(LEEWAY),
                    "accepted a not-yet-valid answer"
                );
            }
            if let Some(iss) = json.get("iss") {
                if flags & 0x05 != 0 {
                    assert_eq!(iss.as_str(), Some(ISSUER), "accepted another issuer");
                }
            }
            if flags & 0x08 != 0 {
                let aud = json.get("aud");
                let has = aud.and_then(Value::as_str) == Some(AUDIENCE)
                    || aud
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(AUDIENCE)));
                assert!(has, "accepted without the audience");
            }
        }
        Err(AuthError::InvalidToken(_)) => {
            assert!(
                answer.status.is_success(),
                "a {} answer refused as 401",
                answer.status
            );
        }
        Err(AuthError::ValidationUnavailable { .. }) => {}
        Err(other) => panic!("unexpected outcome {other:?}"),
    }
});
