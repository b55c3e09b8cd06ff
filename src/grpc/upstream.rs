//! Outbound: a tonic client's transport behind the refresh-and-retry and classification layers,
//! and what a provider's `grpc-status` means for the token.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    mem,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    GrpcClassifier,
    body::{GRPC_STATUS, HoldStatus, Probed, probe},
};
use crate::{
    BoxError,
    emit::{Emitter, RequestContext},
    upstream::{
        UpstreamError,
        classify::UpstreamClass,
        classify::{ClassifyUpstream, UpstreamClassifier, classify_challenges},
        grant::Refresher,
        refresh::{DEFAULT_REPLAY_LIMIT, RefreshAndRetry, RefreshAndRetryLayer},
        store::TokenStore,
    },
};

/// The gRPC status code in `headers` (a trailers-only answer, or trailers), if any.
pub fn grpc_code(headers: &HeaderMap) -> Option<tonic::Code> {
    headers
        .get(GRPC_STATUS)
        .map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

/// What a gRPC answer means for the upstream token (see the [module docs](crate::grpc)): by its
/// `grpc-status` and `www-authenticate` metadata when it has a status in `headers`, else by its
/// HTTP status and challenges (a `401` from a gateway in front of the gRPC service).
pub fn classify_grpc(status: StatusCode, headers: &HeaderMap) -> UpstreamClass {
    match grpc_code(headers) {
        Some(tonic::Code::Unauthenticated) => UpstreamClass::TokenRejected,
        // The same challenges as on an HTTP 403: invalid_token, insufficient_scope, or neither.
        Some(tonic::Code::PermissionDenied) => classify_challenges(StatusCode::FORBIDDEN, headers),
        Some(_) => UpstreamClass::NotAuthRelated,
        None => classify_challenges(status, headers),
    }
}

/// [`Layer`] that puts a tonic client's transport behind the outbound layers; see the
/// [module docs](crate::grpc).
///
/// It assembles, around the transport `S` (a `tonic::transport::Channel`, or anything that is a
/// `Service<http::Request<tonic::body::Body>>`):
///
/// ```text
/// tonic client ─► GrpcUpstream ─► RefreshAndRetry ─► ClassifyUpstream(GrpcClassifier) ─► S
///                  │ buffers complete requests, marks open streams NoReplay
///                  │ renders UpstreamErrors as trailers-only answers
/// ```
#[derive(Clone)]
pub struct GrpcUpstreamLayer<St, R, C = GrpcClassifier> {
    refresh: RefreshAndRetryLayer<St, R>,
    classifier: C,
    emitter: Emitter,
    replay_limit: usize,
}

impl<St, R> GrpcUpstreamLayer<St, R> {
    /// Refreshes and retries with `refresh` (built with the same `emitter`), and renders
    /// upstream failures with `emitter`.
    pub fn new(refresh: RefreshAndRetryLayer<St, R>, emitter: Emitter) -> Self {
        Self {
            refresh,
            classifier: GrpcClassifier::new(),
            emitter,
            replay_limit: DEFAULT_REPLAY_LIMIT,
        }
    }
}

impl<St, R, C> GrpcUpstreamLayer<St, R, C> {
    /// Classifies the provider's answers with `classifier` instead of a plain
    /// [`GrpcClassifier`].
    pub fn classifier<C2>(self, classifier: C2) -> GrpcUpstreamLayer<St, R, C2> {
        GrpcUpstreamLayer {
            refresh: self.refresh,
            classifier,
            emitter: self.emitter,
            replay_limit: self.replay_limit,
        }
    }

    /// Keeps requests of up to `bytes` (encoded messages) to send them again after a refresh
    /// ([`DEFAULT_REPLAY_LIMIT`] unless set). Set it here rather than on the refresh layer: this
    /// sets both.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.refresh = self.refresh.replay_limit(bytes);
        self.replay_limit = bytes;
        self
    }
}

impl<St: fmt::Debug, R, C: fmt::Debug> fmt::Debug for GrpcUpstreamLayer<St, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcUpstreamLayer")
            .field("refresh", &self.refresh)
            .field("classifier", &self.classifier)
            .field("emitter", &self.emitter)
            .field("replay_limit", &self.replay_limit)
            .finish()
    }
}

impl<S, St, R, C> Layer<S> for GrpcUpstreamLayer<St, R, C>
where
    St: Clone,
    R: Clone,
    C: Clone,
{
    type Service = GrpcUpstream<S, St, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let classified =
            ClassifyUpstream::with_classifier(HoldStatus { inner }, self.classifier.clone());
        GrpcUpstream {
            inner: self.refresh.layer(classified),
            emitter: self.emitter.clone(),
            replay_limit: self.replay_limit,
            not_ready: None,
        }
    }
}

/// The service of [`GrpcUpstreamLayer`]: a `tonic::client::GrpcService` for generated clients.
///
/// Its error type is [`Infallible`]: every failure, even the transport's, is answered as a
/// trailers-only gRPC response rendered by the [`Emitter`].
pub struct GrpcUpstream<S, St, R, C = GrpcClassifier> {
    inner: RefreshAndRetry<ClassifyUpstream<HoldStatus<S>, C>, St, R>,
    emitter: Emitter,
    replay_limit: usize,
    // A readiness failure, answered to the next call.
    not_ready: Option<UpstreamError>,
}

impl<S: Clone, St, R, C: Clone> Clone for GrpcUpstream<S, St, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            emitter: self.emitter.clone(),
            replay_limit: self.replay_limit,
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug, St, R, C: fmt::Debug> fmt::Debug for GrpcUpstream<S, St, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcUpstream")
            .field("inner", &self.inner)
            .field("emitter", &self.emitter)
            .field("replay_limit", &self.replay_limit)
            .finish_non_exhaustive()
    }
}

/// Response future of [`GrpcUpstream`].
///
/// Boxed, unlike the HTTP layers' futures, deliberately: a gRPC call already allocates on this
/// path — the probed request prefix, tonic's own boxed `tonic::body::Body` on either side, the
/// HTTP/2 frames — so one more allocation per call is noise, while a hand-written future would
/// have to name the probe's and the refresh stack's futures in a public type that changes with
/// every inner layer.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>> + Send>>;

impl<S, St, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcUpstream<S, St, R, C>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    St: TokenStore,
    St::Load: Send,
    R: Refresher,
    C: UpstreamClassifier + Send + Sync + 'static,
    ReqBody: Body<Data = Bytes> + Send + Unpin + 'static,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_none()
            && let Err(error) = ready!(Service::<Request<Probed<ReqBody>>>::poll_ready(
                &mut self.inner,
                cx
            ))
        {
            self.not_ready = Some(error);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let context = RequestContext::of(&request);
        let emitter = self.emitter.clone();
        if let Some(error) = self.not_ready.take() {
            return Box::pin(std::future::ready(Ok(render(&emitter, &error, &context))));
        }
        // The service driven to readiness goes with this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let limit = self.replay_limit;
        Box::pin(async move {
            let request = probe(request, limit).await;
            Ok(match inner.call(request).await {
                Ok(mut response) => {
                    // No enclosing emitter sees this answer: the tonic client reads it.
                    emitter.seal_passed_on(&mut response);
                    response.map(tonic::body::Body::new)
                }
                Err(error) => render(&emitter, &error, &context),
            })
        })
    }
}

/// The answer to the gRPC caller for an upstream failure.
fn render(
    emitter: &Emitter,
    error: &UpstreamError,
    context: &RequestContext,
) -> Response<tonic::body::Body> {
    tracing::debug!(provider = error.provider(), %error, "upstream gRPC call failed");
    emitter
        .render_grpc(error, context)
        .map(|body| tonic::body::Body::new(Full::new(body)))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn grpc_table() {
        let c = |pairs: &[(&'static str, &'static str)]| {
            GrpcClassifier::new().classify(StatusCode::OK, &headers(pairs), None)
        };
        assert_eq!(c(&[("grpc-status", "16")]), UpstreamClass::TokenRejected);
        assert_eq!(
            c(&[
                ("grpc-status", "16"),
                ("www-authenticate", r#"Bearer error="invalid_token""#)
            ]),
            UpstreamClass::TokenRejected
        );
        assert_eq!(
            c(&[
                ("grpc-status", "7"),
                ("www-authenticate", r#"Bearer error="invalid_token""#)
            ]),
            UpstreamClass::TokenRejected
        );
        assert_eq!(
            c(&[
                ("grpc-status", "7"),
                (
                    "www-authenticate",
                    r#"Bearer realm="p", error="insufficient_scope", scope="a b""#
                )
            ]),
            UpstreamClass::InsufficientScope {
                scopes: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(c(&[("grpc-status", "7")]), UpstreamClass::Forbidden);
        assert_eq!(c(&[("grpc-status", "0")]), UpstreamClass::NotAuthRelated);
        assert_eq!(c(&[("grpc-status", "14")]), UpstreamClass::NotAuthRelated);
        // Status in the trailers: nothing to say from the headers.
        assert_eq!(c(&[]), UpstreamClass::NotAuthRelated);
        // A gateway's HTTP 401 in front of the gRPC service.
        assert_eq!(
            GrpcClassifier::new().classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), None),
            UpstreamClass::TokenRejected
        );
    }
}
