//! Middleware that finds a bearer token in a form-encoded request body (RFC 6750 §2.2).
//!
//! Off unless this layer is added, as the RFC advises. It goes *outside*
//! [`ValidateBearerLayer`](crate::validate::ValidateBearerLayer): it reads a qualifying body —
//! a non-GET request with `Content-Type: application/x-www-form-urlencoded` and a
//! `Content-Length` within the limit — finds `access_token`, and hands the body on intact,
//! leaving the token in the request's extensions for the validation layer, which then applies
//! the usual rules (a token in the body *and* the header is `invalid_request`). Bodies that don't
//! qualify are passed on untouched and unread.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use jsonwebtoken::Algorithm;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{emit::Emitter, token::form::FormTokenLayer, validate::*};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let validator = JwtValidator::<StandardClaims>::builder()
//!     .key(VerificationKey::hmac(&[7; 32], &[Algorithm::HS256]).unwrap())
//!     .build()
//!     .unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(FormTokenLayer::new())
//!     .layer(ValidateBearerLayer::new(validator, Emitter::new("api")))
//!     .service(service_fn(|_req| async { Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default())) }));
//!
//! let request = Request::post("/")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .header("content-length", "25")
//!     .body(Full::new(Bytes::from_static(b"access_token=not.a.jwt&x")))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! // The token was found in the body (and refused: it is no JWT).
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api", error="invalid_token""#);
//! # }
//! ```

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Method, Request, header::CONTENT_LENGTH, header::CONTENT_TYPE, request::Parts};
use http_body::Body;
use http_body_util::{BodyExt, Collected, Limited, combinators::Collect};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::params::{self, Param};
use crate::{BoxError, body::MaybeBuffered};

/// Default limit on the size of a form body read for a token.
pub const DEFAULT_FORM_LIMIT: u64 = 64 * 1024;

/// The `access_token` parameter found in a form body, left in the request's extensions for the
/// validation layer, which decodes it under the same rules and limits as the other methods.
#[derive(Clone)]
pub struct FormToken(pub(crate) FormParam);

#[derive(Clone)]
pub(crate) enum FormParam {
    /// Still form-encoded; a slice of the buffered body.
    Once(Bytes),
    Repeated,
    /// The body failed while it was read.
    Unreadable,
}

impl FormParam {
    fn found(body: &Bytes) -> Option<Self> {
        Some(match params::find(body)? {
            Param::Once(value) => Self::Once(body.slice_ref(value)),
            Param::Repeated => Self::Repeated,
        })
    }
}

impl std::fmt::Debug for FormToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormToken(<redacted>)")
    }
}

/// Reads form-encoded bodies for an `access_token`; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct FormTokenLayer {
    limit: u64,
}

impl Default for FormTokenLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FormTokenLayer {
    /// Reads bodies of up to [`DEFAULT_FORM_LIMIT`] bytes.
    pub const fn new() -> Self {
        Self {
            limit: DEFAULT_FORM_LIMIT,
        }
    }

    /// Reads bodies of up to `limit` bytes; larger ones pass unread.
    pub const fn body_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }
}

impl<S> Layer<S> for FormTokenLayer {
    type Service = FormTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FormTokenService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`FormTokenLayer`].
#[derive(Debug, Clone)]
pub struct FormTokenService<S> {
    inner: S,
    limit: u64,
}

impl<S, B> Service<Request<B>> for FormTokenService<S>
where
    S: Service<Request<MaybeBuffered<B>>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.qualifies(&request) {
            let future = self.inner.call(request.map(MaybeBuffered::passthrough));
            return ResponseFuture {
                state: State::Calling { future },
            };
        }
        let clone = self.inner.clone();
        let (parts, body) = request.into_parts();
        ResponseFuture {
            state: State::Reading {
                // `Content-Length` is a claim, not a bound: the body source may not enforce it.
                body: Limited::new(body, usize::try_from(self.limit).unwrap_or(usize::MAX))
                    .collect(),
                parts: Some(parts),
                inner: std::mem::replace(&mut self.inner, clone),
            },
        }
    }
}

impl<S> FormTokenService<S> {
    crate::macros::inner_service_accessors!();

    fn qualifies<B>(&self, request: &Request<B>) -> bool {
        let headers = request.headers();
        let form = headers.get(CONTENT_TYPE).is_some_and(|v| {
            let media = v
                .as_bytes()
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default();
            media
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        });
        let length = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        request.method() != Method::GET && form && length.is_some_and(|len| len <= self.limit)
    }
}

pin_project! {
    /// Response future of [`FormTokenService`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<MaybeBuffered<B>>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<MaybeBuffered<B>>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        Reading { #[pin] body: Collect<Limited<B>>, parts: Option<Parts>, inner: S },
        Calling { #[pin] future: S::Future },
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<MaybeBuffered<B>>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading { body, parts, inner } => {
                    let read = ready!(body.poll(cx)).map(Collected::to_bytes);
                    let mut parts = parts
                        .take()
                        .expect("form token future polled after completion");
                    let (bytes, found) = match read {
                        Ok(bytes) => {
                            let found = FormParam::found(&bytes);
                            (bytes, found)
                        }
                        // The validation layer refuses the request (400 `invalid_request`)
                        // rather than let a handler act on a truncated form.
                        Err(_) => (Bytes::new(), Some(FormParam::Unreadable)),
                    };
                    if let Some(token) = found {
                        parts.extensions.insert(FormToken(token));
                    }
                    let future =
                        inner.call(Request::from_parts(parts, MaybeBuffered::buffered(bytes)));
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => return future.poll(cx),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Response, StatusCode};
    use http_body::Frame;
    use jsonwebtoken::Algorithm;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;
    use crate::{
        emit::Emitter,
        validate::{JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
    };

    /// A form body whose client went away mid-request.
    struct Aborted;

    impl Body for Aborted {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(Some(Err(std::io::ErrorKind::ConnectionReset.into())))
        }
    }

    /// Sends a 25-byte form whose body is `body` through `layer` and the validation layer;
    /// asserts the request is refused as `invalid_request` (row I2).
    async fn assert_refused_as_invalid_request<B>(layer: FormTokenLayer, body: B)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let validator = JwtValidator::<StandardClaims>::builder()
            .key(VerificationKey::hmac(&[7; 32], &[Algorithm::HS256]).unwrap())
            .build()
            .unwrap();
        let service = ServiceBuilder::new()
            .layer(layer)
            .layer(ValidateBearerLayer::new(validator, Emitter::new("api")))
            .service(service_fn(|_req: Request<MaybeBuffered<B>>| async {
                Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
            }));
        let request = Request::post("/")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", "25")
            .body(body)
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer realm="api", error="invalid_request""#
        );
    }

    #[tokio::test]
    async fn an_unreadable_form_body_is_an_invalid_request_not_an_empty_form() {
        assert_refused_as_invalid_request(FormTokenLayer::new(), Aborted).await;
    }

    /// A body source that does not enforce its `Content-Length`: reading stops at the layer's
    /// limit, and the request is refused rather than buffered without bound.
    #[tokio::test]
    async fn a_body_longer_than_its_length_claims_is_not_buffered_past_the_limit() {
        struct Endless;

        impl Body for Endless {
            type Data = Bytes;
            type Error = Infallible;

            fn poll_frame(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b'a'; 64])))))
            }
        }

        assert_refused_as_invalid_request(FormTokenLayer::new().body_limit(1024), Endless).await;
    }
}
