//! An arbitrary form body, content-type and content-length through `FormTokenLayer` +
//! `ValidateBearerLayer`.
//!
//! Input: a flags byte (bit 0 allow_query, bits 1–4 the emitter, bit 5 a small form limit),
//! then `\n`-separated lines: the method, the URI, `name: value` header lines, an empty line,
//! and the body (the rest). `@valid`, `@expired`, `@canary` are replaced as in
//! `bearer_extraction`.
//!
//! Invariants: no panic; the inbound contract of `check_inbound`; a handler that runs sees the
//! claims and the body exactly as sent; when the body cannot be a form token (a GET, no form
//! content-type, no `=` in it) the answer is the one the extractor + validator give for the
//! headers and URI alone; no token appears in the response or `Debug` output.
#![no_main]

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{
    body::MaybeBuffered,
    failure::AuthError,
    token::{BearerExtractor, form::FormTokenLayer},
    validate::{StandardClaims, ValidateBearerLayer},
};
use tower_bearer_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let data = expand(data);
    let mut input = Input::new(&data);
    let flags = input.byte();
    let extractor = BearerExtractor::new().allow_query(flags & 0x01 != 0);
    let limit = if flags & 0x20 != 0 { 16 } else { 64 * 1024 };
    let method = input
        .line()
        .and_then(|l| Method::from_bytes(l).ok())
        .unwrap_or(Method::POST);
    let uri = input
        .line()
        .and_then(|l| Uri::try_from(l).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    while let Some(line) = input.line() {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = header_line(line) {
            request.headers_mut().append(name, value);
        }
    }
    let body = Bytes::copy_from_slice(input.rest());
    *request.body_mut() = Full::new(body.clone());

    let validator = hs_validator();
    let formish = request
        .headers()
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .any(|ct| contains(&ct.as_bytes().to_ascii_lowercase(), b"form"));
    // A body longer than the layer's limit is refused as unreadable (400) whatever it holds:
    // the layer stops reading there, not at the `Content-Length` the request claims.
    let overruns = body.len() > limit as usize;
    let body_irrelevant =
        method == Method::GET || !formish || (!body.contains(&b'=') && !overruns);
    let extracted = extractor.extract(&request);
    let mut debug = format!("{extracted:?}");
    let expected: Result<StandardClaims, AuthError> = extracted.and_then(|token| {
        let verified = validator.verify(token.as_str());
        debug.push_str(&format!("{verified:?}"));
        verified.map_err(AuthError::InvalidToken)
    });

    let sent = body.clone();
    let service = ServiceBuilder::new()
        .layer(FormTokenLayer::new().body_limit(limit))
        .layer(ValidateBearerLayer::new(validator, emitter(flags)).extractor(extractor))
        .service(service_fn(
            move |request: Request<MaybeBuffered<Full<Bytes>>>| {
                let sent = sent.clone();
                async move {
                    assert!(
                        request.extensions().get::<Arc<StandardClaims>>().is_some(),
                        "the handler ran without claims"
                    );
                    let received = request
                        .into_body()
                        .collect()
                        .await
                        .expect("the body handed on is readable")
                        .to_bytes();
                    assert_eq!(received, sent, "the body was not handed on intact");
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            },
        ));
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
    check_inbound(&response, body_irrelevant.then_some(&expected), &debug);
});
