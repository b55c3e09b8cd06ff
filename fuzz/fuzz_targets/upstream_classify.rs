//! `Standard::new().rule(JsonErrorCode::power_bi())` classifying an arbitrary status, headers
//! and body, through `ClassifyUpstreamLayer` over a `service_fn` answering the fuzzed response.
//!
//! Input: `STATUS\nname: value\n…\n\nbody`.
//!
//! Invariants: no panic; every response carries an `UpstreamClass`; 401 is `TokenRejected`;
//! statuses other than 401/403 are `NotAuthRelated`; a 403 is Power BI's expired token exactly
//! when its (small, JSON-typed) body says `{"error":{"code":"TokenExpired"}}`, and otherwise
//! what `classify_challenges` says for its headers; the body is handed on intact, byte for byte.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::{
    Request, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_TYPE},
};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::upstream::classify::{
    ClassifyUpstreamLayer, DEFAULT_PEEK_LIMIT, JsonErrorCode, Standard, UpstreamClass,
    classify_challenges,
};
use tower_bearer_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let answer = Answer::parse(data);
    let reply = answer.clone();
    let client =
        ClassifyUpstreamLayer::with_classifier(Standard::new().rule(JsonErrorCode::power_bi()))
            .layer(service_fn(move |_request: Request<Full<Bytes>>| {
                let reply = reply.clone();
                async move { Ok::<_, Infallible>(reply.response()) }
            }));
    let (class, body) = block_on(async move {
        let response = client
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
            .expect("infallible");
        let class = response.extensions().get::<UpstreamClass>().cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (class, body)
    });
    let class = class.expect("every response is classified");
    assert_eq!(body, answer.body, "the body was not handed on intact");

    let status = answer.status;
    let standard = classify_challenges(status, &answer.headers);
    match status {
        StatusCode::UNAUTHORIZED => assert_eq!(class, UpstreamClass::TokenRejected),
        StatusCode::FORBIDDEN => {
            let json_typed = answer.headers.get(CONTENT_TYPE).is_none_or(|ct| {
                ct.to_str()
                    .is_ok_and(|ct| ct.to_ascii_lowercase().contains("json"))
            });
            let length_ok = answer
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_none_or(|len| len <= DEFAULT_PEEK_LIMIT as u64);
            let power_bi = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/code")
                        .and_then(|c| c.as_str())
                        .map(|c| c == "TokenExpired")
                })
                .unwrap_or(false);
            if power_bi && json_typed && length_ok && answer.body.len() <= DEFAULT_PEEK_LIMIT {
                assert_eq!(
                    class,
                    UpstreamClass::TokenRejected,
                    "Power BI's expired token missed"
                );
            } else if !power_bi {
                assert_eq!(
                    class, standard,
                    "a 403 classified against the standard table"
                );
            }
        }
        _ => {
            assert_eq!(class, UpstreamClass::NotAuthRelated);
            assert_eq!(standard, UpstreamClass::NotAuthRelated);
        }
    }
});
