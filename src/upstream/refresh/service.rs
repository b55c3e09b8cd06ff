//! [`RefreshAndRetry`], the service: it hands each request to a [`ResponseFuture`], which does
//! the work (its states are described in `future.rs`).
//!
//! `call` gives that future the inner service `poll_ready` drove to readiness, for the first
//! attempt; a retry goes through a clone of it.

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{RefreshAndRetryLayer, ResponseFuture, Shared, future::transport_error};
use crate::{
    BoxError,
    upstream::{body::RetryBody, error::UpstreamError, grant::Refresher, store::TokenStore},
};

/// Middleware that attaches the user's upstream token, refreshes it and retries once; see the
/// [module docs](super).
pub struct RefreshAndRetry<S, St, R> {
    inner: S,
    shared: Arc<Shared<St, R>>,
}

impl<S, St, R> RefreshAndRetry<S, St, R> {
    /// Wraps `inner` with the configuration of `layer`.
    pub fn new(inner: S, layer: &RefreshAndRetryLayer<St, R>) -> Self
    where
        St: Clone,
        R: Clone,
    {
        tower_layer::Layer::layer(layer, inner)
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<St, R>>) -> Self {
        Self { inner, shared }
    }

    crate::macros::inner_service_accessors!();
}

impl<S: Clone, St, R> Clone for RefreshAndRetry<S, St, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, St, R> fmt::Debug for RefreshAndRetry<S, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshAndRetry")
            .field("inner", &self.inner)
            .field("provider", &self.shared.provider)
            .finish_non_exhaustive()
    }
}

impl<S, St, R, ReqBody, ResBody> Service<Request<ReqBody>> for RefreshAndRetry<S, St, R>
where
    S: Service<Request<RetryBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    St: TokenStore,
    R: Refresher,
    ReqBody: Body + Unpin,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = UpstreamError;
    type Future = ResponseFuture<S, St, R, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| transport_error(&self.shared.provider, e.into()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Keep the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        ResponseFuture::new(service, self.shared.clone(), request)
    }
}
