//! Tower middleware for services that authenticate their callers with bearer tokens and call
//! third-party APIs on their behalf with the callers' upstream OAuth2 tokens.
//!
//! Such a service has two auth boundaries — its own (the caller's token) and the provider's (the
//! user's upstream token) — and every failure must tell the client which side failed and what
//! to do next, even when only headers can be sent. The layers, each usable alone:
//!
//! - [`validate`]: authenticates the caller's token (RFC 6750 extraction via [`token`] and
//!   [`token::form`]; JWTs against static keys, JWKS or OIDC discovery; RFC 7662 introspection) and
//!   hands the claims to the handler.
//! - [`authorize`]: per-route scope, step-up (RFC 9470) and hiding rules.
//! - [`upstream`]: classifies a provider's answers, refreshes the user's upstream token
//!   (single-flight, rotation-safe) and retries once.
//! - [`emit`]: renders every failure — [`failure::AuthError`] for the caller's side,
//!   [`upstream::UpstreamError`] for the provider's — with the right status, `WWW-Authenticate`
//!   ([`challenge`]), `Proxy-Status` and problem details ([`problem`]), for HTTP and gRPC alike,
//!   from one [`emit::Emitter`].
//! - [`metadata`]: the RFC 9728 protected resource metadata document.
//!
//! # Crypto backend
//!
//! jsonwebtoken needs one crypto backend: the feature `aws-lc-rs` (default) or `rust-crypto`. A
//! build with neither fails at compile time; with both, aws-lc-rs is used.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{
//!     authorize::{AuthorizeLayer, Requirements},
//!     emit::Emitter,
//!     jsonwebtoken::Algorithm,
//!     validate::{ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let validator = JwtValidator::<StandardClaims>::builder()
//!     .key(VerificationKey::hmac(&[42; 32], &[Algorithm::HS256]).unwrap())
//!     .policy(ClaimsPolicy::new().issuer("https://login.example").audience("reports"))
//!     .build()
//!     .unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(ValidateBearerLayer::new(validator, Emitter::new("reports")))
//!     .layer(AuthorizeLayer::new(Requirements::new().scope("reports:read")))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//!     }));
//!
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="reports""#);
//! # }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-bearer needs a crypto backend for jsonwebtoken: enable one of the features \
     `aws-lc-rs` (the default) or `rust-crypto` (with both, aws-lc-rs is used)"
);

mod macros;

pub mod authorize;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod body;
pub mod challenge;
mod crypto;
pub mod emit;
pub mod failure;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
pub mod http_client;
pub mod metadata;
mod metrics;
pub mod problem;
pub mod syntax;
pub mod token;
pub mod upstream;
pub mod validate;

/// The jsonwebtoken this crate validates with, for the algorithms, keys and headers its API
/// takes: `tower_bearer::jsonwebtoken::Algorithm` is always the version this crate was built
/// against, so the two can't drift apart in an application's dependency tree.
pub use jsonwebtoken;

/// The error type of the services and bodies this crate wraps, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
