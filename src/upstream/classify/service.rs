//! Middleware that puts an [`UpstreamClass`] into every response's extensions: the layer, the
//! service and its response future.
//!
//! [`UpstreamClass`]: super::UpstreamClass

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, Request, Response, header::CONTENT_LENGTH};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Standard, UpstreamClassifier, is_auth_status};
use crate::upstream::body::{Peeked, UpstreamBody};

/// [`Layer`] that applies [`ClassifyUpstream`]; see the [module docs](super).
#[derive(Clone, Debug, Default)]
pub struct ClassifyUpstreamLayer<C = Standard> {
    classifier: C,
}

impl ClassifyUpstreamLayer {
    /// Classifies with the [`Standard`] table and no vendor rules.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C> ClassifyUpstreamLayer<C> {
    /// Classifies with `classifier`.
    pub fn with_classifier(classifier: C) -> Self {
        Self { classifier }
    }
}

impl<S, C: Clone> Layer<S> for ClassifyUpstreamLayer<C> {
    type Service = ClassifyUpstream<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ClassifyUpstream {
            inner,
            classifier: self.classifier.clone(),
        }
    }
}

/// Middleware that puts an [`UpstreamClass`](super::UpstreamClass) into every response's
/// extensions; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct ClassifyUpstream<S, C = Standard> {
    inner: S,
    classifier: C,
}

impl<S> ClassifyUpstream<S> {
    /// Classifies `inner`'s responses with the [`Standard`] table.
    pub fn new(inner: S) -> Self {
        Self::with_classifier(inner, Standard::new())
    }
}

impl<S, C> ClassifyUpstream<S, C> {
    /// Classifies `inner`'s responses with `classifier`.
    pub fn with_classifier(inner: S, classifier: C) -> Self {
        Self { inner, classifier }
    }

    crate::macros::inner_service_accessors!();
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for ClassifyUpstream<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: UpstreamClassifier,
    ResBody: Body,
{
    type Response = Response<UpstreamBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            state: State::Call {
                future: self.inner.call(request),
            },
            classifier: Some(self.classifier.clone()),
        }
    }
}

pin_project! {
    /// Response future of [`ClassifyUpstream`].
    pub struct ResponseFuture<F, C, B>
    where
        B: Body,
    {
        #[pin]
        state: State<F, B>,
        classifier: Option<C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
    {
        Call { #[pin] future: F },
        Peek { parts: Option<http::response::Parts>, peeked: Option<Peeked<B>> },
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: UpstreamClassifier,
    B: Body,
{
    type Output = Result<Response<UpstreamBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Call { future } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(classifier) = this.classifier.as_ref() else {
                        return Poll::Ready(Ok(response.map(UpstreamBody::plain)));
                    };
                    let (status, headers) = (response.status(), response.headers());
                    let limit = classifier.body_limit();
                    let peek = is_auth_status(status)
                        && classifier.wants_body(status, headers)
                        && content_length(headers).is_none_or(|len| len <= limit as u64);
                    if !peek {
                        let class = classifier.classify(status, headers, None);
                        crate::metrics::upstream_class(&class);
                        let mut response = response.map(UpstreamBody::plain);
                        response.extensions_mut().insert(class);
                        return Poll::Ready(Ok(response));
                    }
                    let (parts, body) = response.into_parts();
                    this.state.set(State::Peek {
                        parts: Some(parts),
                        peeked: Some(Peeked::new(body)),
                    });
                }
                StateProj::Peek { parts, peeked } => {
                    const DONE: &str = "classify future polled after completion";
                    let classifier = this.classifier.as_ref().expect(DONE);
                    let peeking = peeked.as_mut().expect(DONE);
                    ready!(peeking.poll_peek(cx, classifier.body_limit()));
                    let (mut parts, peeked) = parts.take().zip(peeked.take()).expect(DONE);
                    let contents = peeked.contents();
                    let class =
                        classifier.classify(parts.status, &parts.headers, contents.as_deref());
                    crate::metrics::upstream_class(&class);
                    parts.extensions.insert(class);
                    return Poll::Ready(Ok(Response::from_parts(
                        parts,
                        UpstreamBody::peeked(peeked),
                    )));
                }
            }
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
