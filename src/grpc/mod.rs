//! Middleware that puts tonic services behind the inbound layers and tonic clients behind the
//! outbound ones, with every failure answered the way a gRPC client understands it.
//!
//! # Inbound: a tonic server
//!
//! [`ValidateBearerLayer`](crate::validate::ValidateBearerLayer) and
//! [`AuthorizeLayer`](crate::authorize::AuthorizeLayer) go on a `tonic::transport::Server` with
//! `.layer(...)` like any tower layer, or around one service (they implement tonic's
//! [`NamedService`](tonic::server::NamedService) when the service they wrap does, so `add_service` takes them). For a request
//! whose `content-type` starts with `application/grpc`, the [`Emitter`](crate::emit::Emitter) answers every failure
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
//! [`LinkKey`](crate::upstream::store::LinkKey) extension (tonic carries a `tonic::Request`'s
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
//! trailers-only answers the [`Emitter`](crate::emit::Emitter) renders, so the handler that forwards the client's
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
//!     upstream::{classify::UpstreamClass, classify::UpstreamClassifier},
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
//!     upstream::{store::MemoryStore, refresh::RefreshAndRetryLayer, grant::{TokenResponse, refresher_fn}},
//!     validate::{JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
//! };
//!
//! # async fn wire(routes: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::new("my-api").with_proxy_name("my-gateway").with_grpc(true);
//!
//! // Outbound: a tonic client to the provider, with the user's upstream tokens.
//! let refresher = refresher_fn(|_refresh_token| async { Ok(TokenResponse::new("…")) });
//! let refresh = RefreshAndRetryLayer::new("provider", MemoryStore::new(), refresher);
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
//!     .layer(AuthorizeLayer::new(Requirements::new().scope("profile")))
//!     .add_routes(routes)
//!     .serve("[::1]:50052".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

mod body;
mod inbound;
mod upstream;

#[doc(no_inline)]
pub use crate::upstream::refresh::NoReplay;
// Its home is with the other classifiers; this path stays the one users know.
pub use crate::upstream::classify::grpc::GrpcClassifier;

pub use self::{
    inbound::{claims, status},
    upstream::{GrpcUpstream, GrpcUpstreamLayer, ResponseFuture, classify_grpc, grpc_code},
};
