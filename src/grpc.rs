//! Middleware that puts tonic services behind the inbound layers and tonic clients behind the
//! outbound ones, with every failure answered the way a gRPC client understands it.
//!
//! # Inbound: a tonic server
//!
//! [`ValidateBearerLayer`](crate::validate::ValidateBearerLayer) and
//! [`AuthorizeLayer`](crate::authorize::AuthorizeLayer) go on a `tonic::transport::Server` with
//! `.layer(...)` like any tower layer, or around one service (they implement tonic's
//! [`NamedService`] when the service they wrap does, so `add_service` takes them). For a request
//! whose `content-type` starts with `application/grpc`, the [`Emitter`] answers every failure
//! trailers-only (HTTP 200, `grpc-status`, percent-encoded `grpc-message`) and keeps
//! `www-authenticate`, `proxy-status`, `retry-after` and `link` as metadata:
//!
//! | failure | `grpc-status` | `www-authenticate` |
//! |---|---|---|
//! | no token (I1), unreadable or refused token (I3, I4), step-up (I6) | 16 `UNAUTHENTICATED` | `Bearer realm="R"…` |
//! | ambiguous request (I2) | 3 `INVALID_ARGUMENT` | `… error="invalid_request"` |
//! | insufficient scope (I5) — never `UNAUTHENTICATED` | 7 `PERMISSION_DENIED` | `… error="insufficient_scope", scope="…"` |
//! | hidden (I7) | 5 `NOT_FOUND` | — |
//! | keys unavailable (I8) | 14 `UNAVAILABLE` (+ `retry-after`) | — |
//!
//! Handlers read the claims with [`claims`]; [`status`] renders any of this crate's failures as
//! a [`tonic::Status`] for a handler to return.
//!
//! # Outbound: a tonic client calling a provider's gRPC API
//!
//! [`GrpcUpstreamLayer`] wraps the client's transport (a `tonic::transport::Channel`) with the
//! outbound layers of [`upstream`](crate::upstream): the request is tagged with a
//! [`LinkKey`](crate::upstream::LinkKey) extension (tonic carries a `tonic::Request`'s
//! extensions into the HTTP request), the user's upstream token is attached, and the answers are
//! classified by [`GrpcClassifier`]:
//!
//! | the provider answers (trailers-only, or in trailers after headers) | class |
//! |---|---|
//! | `grpc-status` 16 `UNAUTHENTICATED`, with or without `www-authenticate` | token rejected: refresh, retry |
//! | 7 `PERMISSION_DENIED` with a Bearer `error="invalid_token"` | token rejected: refresh, retry |
//! | 7 with a Bearer `error="insufficient_scope"` | insufficient scope |
//! | any other 7 | forbidden: passed on with `proxy-status`, without `www-authenticate` |
//! | anything else | passed on |
//!
//! Upstream failures never reach the tonic client as transport errors: they come back as the
//! trailers-only answers the [`Emitter`] renders, so the handler that forwards the client's
//! [`tonic::Status`] with `?` hands its own caller the right code with `proxy-status` metadata —
//! a revoked grant is `PERMISSION_DENIED` with
//! `proxy-status: <proxy>; error=http_request_denied; next-hop="<provider>"; details="upstream_reauth_required"`
//! and no `www-authenticate` (the caller's own token is fine).
//!
//! ## Which calls are retried
//!
//! A call is sent again after a refresh only when its whole request was available when it was
//! made: every unary and server-streaming call, and a client-streaming call over a stream that
//! was already complete. Such a request (up to the replay limit) is buffered, and when the
//! provider answers with headers first and puts the status in the trailers, the answer is held
//! until its first frame, so that a status arriving without a message can still be classified.
//!
//! **Streaming calls are not retried.** A request stream that is still open when the call starts
//! (bidirectional streaming, client streaming over a live stream) is sent as it comes, never
//! buffered ([`NoReplay`]), and its answer is passed on as soon as its headers arrive. When the
//! provider rejects such a call's token at the start (trailers-only), the token is refreshed and
//! the caller gets `UNAVAILABLE` with `retry-after` and
//! `proxy-status: …; details="upstream_retry_not_possible"`, so that calling again uses the new
//! token. A status the provider sends in the trailers after a streaming answer started is passed
//! on as it is.
//!
//! # Example
//!
//! ```
//! use http::{HeaderMap, StatusCode};
//! use tower_bearer::{
//!     emit::Emitter,
//!     failure::AuthError,
//!     grpc::{self, GrpcClassifier},
//!     upstream::{UpstreamClass, classify::UpstreamClassifier},
//! };
//!
//! // The caller's token lacks a scope: PERMISSION_DENIED, the challenge as metadata.
//! let status = grpc::status(
//!     &Emitter::new("api"),
//!     &AuthError::InsufficientScope { required: "reports:read".into() },
//! );
//! assert_eq!(status.code(), tonic::Code::PermissionDenied);
//! assert_eq!(
//!     status.metadata().get("www-authenticate").unwrap(),
//!     r#"Bearer realm="api", error="insufficient_scope", scope="reports:read""#,
//! );
//!
//! // A provider's trailers-only UNAUTHENTICATED: the upstream token was rejected.
//! let mut headers = HeaderMap::new();
//! headers.insert("grpc-status", "16".parse().unwrap());
//! assert_eq!(
//!     GrpcClassifier::new().classify(StatusCode::OK, &headers, None),
//!     UpstreamClass::TokenRejected,
//! );
//! ```
//!
//! Wiring both directions (see `examples/grpc.rs` for a complete program):
//!
//! ```no_run
//! use tonic::transport::{Endpoint, Server};
//! use tower::Layer as _;
//! use tower_bearer::{
//!     authorize::{AuthorizeLayer, Requirements},
//!     emit::Emitter,
//!     grpc::GrpcUpstreamLayer,
//!     upstream::{MemoryStore, RefreshAndRetryLayer, grant::{TokenResponse, refresher_fn}},
//!     validate::{JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
//! };
//!
//! # async fn wire(routes: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::new("my-api").proxy_name("my-gateway").with_grpc(true);
//!
//! // Outbound: a tonic client to the provider, with the user's upstream tokens.
//! let refresher = refresher_fn(|_refresh_token| async { Ok(TokenResponse::new("…")) });
//! let refresh = RefreshAndRetryLayer::new("provider", MemoryStore::new(), refresher, &emitter);
//! let channel = Endpoint::from_static("http://[::1]:50051").connect_lazy();
//! let provider = tonic::client::Grpc::new(GrpcUpstreamLayer::new(refresh, emitter.clone()).layer(channel));
//! # drop(provider);
//!
//! // Inbound: every service behind token validation and a scope.
//! let validator = JwtValidator::<StandardClaims>::builder()
//!     .key(VerificationKey::hmac(&[7; 32], &[jsonwebtoken::Algorithm::HS256])?)
//!     .build()?;
//! Server::builder()
//!     .layer(ValidateBearerLayer::new(validator, emitter))
//!     .layer(AuthorizeLayer::<StandardClaims, _>::new(Requirements::new().scope("profile")))
//!     .add_routes(routes)
//!     .serve("[::1]:50052".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

use std::{
    convert::Infallible,
    fmt,
    future::{Future, poll_fn},
    mem,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    BoxError,
    authorize::Authorize,
    emit::{Emit, Emitter, Failure, RequestContext},
    upstream::{
        UpstreamClass, UpstreamError,
        classify::{ClassifyUpstream, UpstreamClassifier, classify_challenges},
        grant::Refresher,
        refresh::{DEFAULT_REPLAY_LIMIT, RefreshAndRetry, RefreshAndRetryLayer, RetryBody},
        store::TokenStore,
    },
    validate::ValidateBearer,
};

#[doc(no_inline)]
pub use crate::upstream::refresh::NoReplay;
// Its home is with the other classifiers; this path stays the one users know.
pub use crate::upstream::classify::grpc::GrpcClassifier;

const GRPC_STATUS: &str = "grpc-status";

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

/// The claims [`ValidateBearer`] inserted into a tonic request's extensions: `None` when the
/// request did not pass through it (or the type does not match the validator's claims).
///
/// ```
/// use tower_bearer::{grpc, validate::StandardClaims};
///
/// let mut request = tonic::Request::new(());
/// request.extensions_mut().insert(StandardClaims { sub: Some("alice".into()), ..Default::default() });
/// let claims = grpc::claims::<StandardClaims>(&request).unwrap();
/// assert_eq!(claims.sub.as_deref(), Some("alice"));
/// ```
pub fn claims<C>(request: &tonic::Request<impl Sized>) -> Option<&C>
where
    C: Send + Sync + 'static,
{
    request.extensions().get::<C>()
}

/// Renders `failure` — the caller's own ([`AuthError`](crate::failure::AuthError)) or an
/// upstream one ([`UpstreamError`]) — as the [`tonic::Status`] a gRPC caller gets from the
/// `emitter`: the code, the message, and the `www-authenticate`, `proxy-status`, `retry-after`
/// and `link` metadata.
///
/// For a handler whose failure does not come from a layer, e.g. an HTTP upstream called through
/// [`RefreshAndRetry`] from a tonic handler: `return Err(grpc::status(&emitter, &error))`.
pub fn status<F: Failure + ?Sized>(emitter: &Emitter, failure: &F) -> tonic::Status {
    let mut response = emitter.render_grpc(failure, &RequestContext::default());
    response.headers_mut().remove(CONTENT_TYPE);
    tonic::Status::from_header_map(response.headers())
        .unwrap_or_else(|| tonic::Status::unknown("unrenderable failure"))
}

impl<S: NamedService, V> NamedService for ValidateBearer<S, V> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService, C, R> NamedService for Authorize<S, C, R> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> NamedService for Emit<S> {
    const NAME: &'static str = S::NAME;
}

// ---------------------------------------------------------------------------------------------
// Outbound: classification
// ---------------------------------------------------------------------------------------------

/// The gRPC status code in `headers` (a trailers-only answer, or trailers), if any.
pub fn grpc_code(headers: &HeaderMap) -> Option<tonic::Code> {
    headers
        .get(GRPC_STATUS)
        .map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

/// What a gRPC answer means for the upstream token (see the [module docs](self)): by its
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

// ---------------------------------------------------------------------------------------------
// Outbound: the layer
// ---------------------------------------------------------------------------------------------

/// [`Layer`] that puts a tonic client's transport behind the outbound layers; see the
/// [module docs](self).
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
                Ok(response) => response.map(tonic::body::Body::new),
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

/// Reads what the request body has ready: all of it (the call can be replayed), or — when it
/// waits for more or exceeds `limit` — what it had, followed by the rest, marked [`NoReplay`].
async fn probe<B>(request: Request<B>, limit: usize) -> Request<Probed<B>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let (mut parts, mut body) = request.into_parts();
    let mut data = BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    let outcome = poll_fn(|cx| {
        loop {
            if body.is_end_stream() {
                return Poll::Ready(Outcome::Whole);
            }
            match Pin::new(&mut body).poll_frame(cx) {
                // An open stream: the caller sends more as the call goes on.
                Poll::Pending => return Poll::Ready(Outcome::Open),
                Poll::Ready(None) => return Poll::Ready(Outcome::Whole),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Outcome::Failed(error.into())),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => {
                        data.extend_from_slice(&chunk);
                        if data.len() > limit {
                            return Poll::Ready(Outcome::Open);
                        }
                    }
                    Err(frame) => {
                        if let Ok(more) = frame.into_trailers() {
                            trailers.get_or_insert_with(HeaderMap::new).extend(more);
                        }
                    }
                },
            }
        }
    })
    .await;
    let prefix = data.freeze();
    let body = match outcome {
        Outcome::Whole => Probed {
            prefix: Some(prefix),
            trailers,
            error: None,
            rest: None,
        },
        Outcome::Open => {
            parts.extensions.insert(NoReplay);
            Probed {
                prefix: Some(prefix),
                trailers,
                error: None,
                rest: Some(body),
            }
        }
        Outcome::Failed(error) => Probed {
            prefix: Some(prefix),
            trailers: None,
            error: Some(error),
            rest: None,
        },
    };
    Request::from_parts(parts, body)
}

enum Outcome {
    Whole,
    Open,
    Failed(BoxError),
}

/// A request body of which a prefix was read: then its trailers, or its error, or the rest.
struct Probed<B> {
    prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    rest: Option<B>,
}

impl<B> Body for Probed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take().filter(|p| !p.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(rest) = this.rest.as_mut() {
            let frame = ready!(Pin::new(rest).poll_frame(cx));
            if frame.is_none() {
                this.rest = None;
            } else {
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.error.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(prefix));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint
    }
}

/// The innermost stage: hands the transport a `tonic::body::Body`, and for a replayable call
/// whose answer started with headers, holds it until its first frame so that a status sent
/// without a message is seen (and classified) as a trailers-only answer.
#[derive(Clone, Debug)]
struct HoldStatus<S> {
    inner: S,
}

type HoldFuture<E> = Pin<Box<dyn Future<Output = Result<Response<HeldBody>, E>> + Send>>;

impl<S, B, ResBody> Service<Request<RetryBody<B>>> for HoldStatus<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<HeldBody>;
    type Error = S::Error;
    type Future = HoldFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RetryBody<B>>) -> Self::Future {
        let streamed = request.extensions().get::<NoReplay>().is_some();
        let future = self.inner.call(request.map(tonic::body::Body::new));
        Box::pin(async move {
            let response = future.await?.map(tonic::body::Body::new);
            let holds = !streamed
                && response.status() == StatusCode::OK
                && !response.headers().contains_key(GRPC_STATUS)
                && !response.body().is_end_stream();
            if !holds {
                return Ok(response.map(|rest| HeldBody { first: None, rest }));
            }
            let (mut parts, mut rest) = response.into_parts();
            let first = poll_fn(|cx| Pin::new(&mut rest).poll_frame(cx)).await;
            let first = match first {
                Some(Ok(frame)) => match frame.into_trailers() {
                    // Headers, then the status without a message: trailers-only in effect.
                    Ok(trailers) => {
                        for (name, value) in &trailers {
                            parts.headers.append(name, value.clone());
                        }
                        return Ok(Response::from_parts(
                            parts,
                            HeldBody {
                                first: None,
                                rest: tonic::body::Body::empty(),
                            },
                        ));
                    }
                    Err(frame) => Some(Ok(frame)),
                },
                other => other,
            };
            Ok(Response::from_parts(parts, HeldBody { first, rest }))
        })
    }
}

/// The answer's body after [`HoldStatus`]: the frame read ahead, if any, then the rest.
struct HeldBody {
    first: Option<Result<Frame<Bytes>, tonic::Status>>,
    rest: tonic::body::Body,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = match &self.first {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(first));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
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

    #[tokio::test]
    async fn probe_reads_complete_bodies_and_leaves_open_ones() {
        let request = Request::new(Full::new(Bytes::from_static(b"\0\0\0\0\x01x")));
        let probed = probe(request, 1024).await;
        assert!(probed.extensions().get::<NoReplay>().is_none());
        assert!(probed.body().rest.is_none());

        let request = Request::new(Full::new(Bytes::from_static(b"0123456789")));
        let probed = probe(request, 4).await;
        assert!(probed.extensions().get::<NoReplay>().is_some());

        // A body that is not ready: an open stream.
        let probed = probe(Request::new(Waiting), 1024).await;
        assert!(probed.extensions().get::<NoReplay>().is_some());
    }

    /// A request stream whose next message is not there yet.
    struct Waiting;

    impl Body for Waiting {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }
}
