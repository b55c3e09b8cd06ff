//! Request ids and the access log: every request gets an `x-request-id` (the caller's, when it
//! is a sane one, else a fresh one), forwarded upstream and echoed in the response, and a tracing
//! span that every log line of the request carries.
//!
//! Only the method and the path are logged — never the query, which may carry an authorization
//! code or a token, and never a header.

use std::time::Instant;

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderName, HeaderValue};
use tracing::Instrument as _;

use super::random;

/// The header carrying the request id.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware (for `axum::middleware::from_fn`).
pub async fn track(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|id| is_sane(id.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&random::url_safe::<12>())
                .expect("base64url is a valid header value")
        });
    request.headers_mut().insert(X_REQUEST_ID, id.clone());
    let span = tracing::info_span!(
        "request",
        id = %String::from_utf8_lossy(id.as_bytes()),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

/// A caller-chosen id is kept only if it cannot forge log lines or grow without bound.
fn is_sane(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
