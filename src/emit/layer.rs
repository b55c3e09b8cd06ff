//! Middleware that renders pending failures, and seals responses passed on from a provider, on
//! their way out.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Emitter, RequestContext};
use crate::body::MaybeBuffered;

/// Renders failures that inner layers or handlers answered with as pending
/// ([`pending_response`](super::pending_response)). Not needed under
/// [`ValidateBearerLayer`](crate::validate::ValidateBearerLayer), which does the same.
#[derive(Debug, Clone)]
pub struct EmitLayer {
    emitter: Emitter,
}

impl EmitLayer {
    /// Renders with `emitter`.
    pub fn new(emitter: Emitter) -> Self {
        Self { emitter }
    }
}

impl<S> Layer<S> for EmitLayer {
    type Service = Emit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Emit {
            inner,
            emitter: self.emitter.clone(),
        }
    }
}

/// The service of [`EmitLayer`].
#[derive(Debug, Clone)]
pub struct Emit<S> {
    inner: S,
    emitter: Emitter,
}

impl<S> Emit<S> {
    /// Renders with `emitter` the failures `inner` answers with.
    pub fn new(inner: S, emitter: Emitter) -> Self {
        Self { inner, emitter }
    }

    crate::macros::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Emit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<MaybeBuffered<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let context = RequestContext::of(&request);
        ResponseFuture {
            inner: self.inner.call(request),
            emitter: self.emitter.clone(),
            context,
        }
    }
}

pin_project! {
    /// Response future of [`Emit`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        emitter: Emitter,
        context: RequestContext,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<MaybeBuffered<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(this.emitter.finish(response, this.context)))
    }
}
