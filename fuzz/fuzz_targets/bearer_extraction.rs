//! A request with arbitrary headers and URI through `ValidateBearerLayer` (static HMAC key,
//! `BearerExtractor::new().allow_query(..)`) over `tower::service_fn`.
//!
//! Input: a flags byte (bit 0 allow_query; bits 1–4 the emitter: verbose, headers-only,
//! resource metadata, gRPC), then `\n`-separated lines: the URI, then `name: value` header lines.
//! `@valid`, `@expired` and `@canary` are replaced with a valid token, an expired one, and a
//! canary that must never be echoed.
//!
//! Invariants: no panic; the status is one of 200/400/401/403/404/503 (or a gRPC trailers-only
//! answer with a contract code); 400/401 carry `WWW-Authenticate: Bearer realm="api"…`; the
//! layer agrees with `BearerExtractor::extract_from` + `JwtValidator::verify` called directly
//! (I1 bare challenge, I2 `invalid_request`, I3/I4 `invalid_token`, 200 for a valid token); the
//! handler sees the claims; no token appears in the response or in `Debug` output.
#![no_main]

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::{
    failure::AuthError,
    token::BearerExtractor,
    validate::{StandardClaims, ValidateBearerLayer},
};
use tower_bearer_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let data = expand(data);
    let mut input = Input::new(&data);
    let flags = input.byte();
    let extractor = BearerExtractor::new().allow_query(flags & 0x01 != 0);
    let uri = input
        .line()
        .and_then(|l| Uri::try_from(l).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = uri;
    while let Some(line) = input.line() {
        if let Some((name, value)) = header_line(line) {
            request.headers_mut().append(name, value);
        }
    }

    // The oracle: extractor and validator called directly.
    let validator = hs_validator();
    let extracted = extractor.extract(&request);
    let mut debug = format!("{extracted:?}");
    let expected: Result<StandardClaims, AuthError> = extracted.and_then(|token| {
        let verified = validator.verify(token.as_str());
        debug.push_str(&format!("{verified:?}"));
        verified.map_err(AuthError::InvalidToken)
    });

    let service = ValidateBearerLayer::new(validator, emitter(flags))
        .extractor(extractor)
        .layer(service_fn(|request: Request<Full<Bytes>>| async move {
            let claims = request.extensions().get::<Arc<StandardClaims>>();
            assert!(claims.is_some(), "the handler ran without claims");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }));
    let response = block_on(async move {
        let response = service.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Response::from_parts(parts, body)
    });
    debug.push_str(&format!("{response:?}"));
    check_inbound(&response, Some(&expected), &debug);
});
