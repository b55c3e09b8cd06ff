//! Request ids and the access log: every request gets an `x-request-id` (the caller's, when it
//! is a sane one, else a fresh one), forwarded upstream and echoed in the response, and a tracing
//! span that every log line of the request carries.
//!
//! Only the method and the path are logged — never the query, which may carry an authorization
//! code or a token, and never a header.
//!
//! A tower layer rather than an `axum::middleware::from_fn`, which boxes a future and clones the
//! route on every request.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::response::Response;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Instrument as _, instrument::Instrumented};

use super::random;

/// The header carrying the request id.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Applies [`RequestId`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// Gives each request its id and span, and logs its answer.
#[derive(Clone, Debug)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(&X_REQUEST_ID)
            .filter(|id| is_sane(id.as_bytes()))
            .cloned()
            .unwrap_or_else(fresh_id);
        request.headers_mut().insert(X_REQUEST_ID, id.clone());
        let span = tracing::info_span!(
            "request",
            id = %String::from_utf8_lossy(id.as_bytes()),
            method = %request.method(),
            path = %request.uri().path(),
        );
        // The inner layers do their first work (validating the caller's token) in `call`.
        let future = span.in_scope(|| self.inner.call(request));
        ResponseFuture {
            future: future.instrument(span),
            id: Some(id),
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// Response future of [`RequestId`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: Instrumented<F>,
        id: Option<HeaderValue>,
        started: Instant,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut response = ready!(this.future.as_mut().poll(cx))?;
        let started = *this.started;
        this.future.span().in_scope(|| {
            tracing::info!(
                status = response.status().as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "answered"
            );
        });
        let id = this.id.take().expect("polled after completion");
        response.headers_mut().insert(X_REQUEST_ID, id);
        Poll::Ready(Ok(response))
    }
}

/// A caller-chosen id is kept only if it cannot forge log lines or grow without bound.
fn is_sane(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A new id: unique, not secret — a random prefix drawn once per process, then a counter
/// (base64url, 16 characters). One allocation, which the response's copy shares.
fn fresh_id() -> HeaderValue {
    static PREFIX: OnceLock<[u8; 6]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut raw = [0; 12];
    raw[..6].copy_from_slice(PREFIX.get_or_init(random::bytes));
    raw[6..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes()[2..]);
    let mut id = [0; 16];
    URL_SAFE_NO_PAD
        .encode_slice(raw, &mut id)
        .expect("12 bytes are 16 in base64");
    HeaderValue::from_maybe_shared(Bytes::from_owner(id))
        .expect("base64url is a valid header value")
}
