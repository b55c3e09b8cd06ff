//! Middleware that authenticates the caller's bearer token and hands the validated claims to the
//! inner service.
//!
//! [`ValidateBearerLayer`] extracts the token (RFC 6750 §2, see [`BearerExtractor`]), validates it
//! with a [`ValidateToken`] implementation, inserts the claims into the request's extensions (as
//! an `Arc<C>`: shared, never copied per request) and calls the inner service. The validators:
//!
//! - [`JwtValidator`]: JWTs against static keys (HMAC, RSA, EC, Ed25519; PEM or JWK; by `kid`).
//! - [`JwksValidator`]: JWTs against an issuer's JWKS, found directly or by OIDC discovery; keys
//!   cached per `Cache-Control`, refetched at most once per interval (single-flight) for an
//!   unknown `kid`, and kept serving when the issuer is down.
//! - [`Issuers`]: several issuers at once, each token routed by its `iss`.
//! - [`IntrospectionValidator`]: opaque tokens, RFC 7662.
//! - [`CachedValidator`]: a bounded verified-token cache in front of any of them.
//!
//! Only key or introspection outages make a validation wait; they surface as
//! [`AuthError::ValidationUnavailable`] (503, row I8), never as 401. Every failure, its own or a pending
//! one coming back from inside (authorization rules, upstream failures), is rendered by its
//! [`Emitter`]. Authentication always runs before anything looks at the request itself (row I9).
//!
//! ```
//! use std::sync::Arc;
//!
//! use http::{Request, Response, StatusCode};
//! use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{
//!     emit::Emitter,
//!     validate::{ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let validator = JwtValidator::<StandardClaims>::builder()
//!     .key(VerificationKey::hmac(b"an hmac secret of at least 32 bytes!", &[Algorithm::HS256]).unwrap())
//!     .policy(ClaimsPolicy::new().issuer("https://issuer.example").audience("my-api"))
//!     .build()
//!     .unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(ValidateBearerLayer::new(validator, Emitter::new("my-api")))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let claims = req.extensions().get::<Arc<StandardClaims>>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(claims.sub.clone().unwrap_or_default()))
//!     }));
//!
//! // No token: a bare challenge (row I1).
//! let response = service.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="my-api""#);
//!
//! // A valid token reaches the handler.
//! let claims = serde_json::json!({
//!     "iss": "https://issuer.example", "aud": "my-api", "sub": "alice",
//!     "exp": jsonwebtoken::get_current_timestamp() + 60,
//! });
//! let token = encode(
//!     &Header::new(Algorithm::HS256),
//!     &claims,
//!     &EncodingKey::from_secret(b"an hmac secret of at least 32 bytes!"),
//! ).unwrap();
//! let request = Request::builder().header("authorization", format!("Bearer {token}")).body(()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # }
//! ```

mod cache;
mod claims;
mod discovery;
mod introspect;
mod issuers;
mod jwks;
mod jwt;
mod keys;
mod peek;
mod policy;
mod registered;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

pub use cache::{CacheFuture, CachedValidator};
pub use claims::{AuthClaims, OneOrMany, StandardClaims, TokenExpiry};
pub use discovery::{ProviderMetadata, discover, discovery_url};
pub use introspect::{IntrospectionValidator, IntrospectionValidatorBuilder};
pub use issuers::Issuers;
pub use jwks::{
    ASYMMETRIC_ALGORITHMS, BuildError, JwksValidator, JwksValidatorBuilder, SourceError,
};
pub use jwt::{JwtValidator, JwtValidatorBuilder};
pub use keys::{KeyError, KeySet, VerificationKey};
pub use policy::{ClaimsPolicy, PolicyError};

use crate::{
    body::MaybeBuffered,
    emit::{Emitter, RequestContext},
    failure::AuthError,
    token::{AuthorizationField, BearerExtractor, BearerToken},
};

/// A source of truth about tokens: static keys, a JWKS, an introspection endpoint, a cache.
///
/// Validators are cheap to clone (they share their state behind an `Arc`). A validation that
/// needs no I/O — static keys, cached keys, a cache hit — is decided at once
/// ([`Verdict::Decided`]), and the layer then calls the inner service without a state machine
/// in between; only fetches and introspection calls return a future.
///
/// Claims are handed out behind an [`Arc`]: a cache hit is a reference count, and the request's
/// extensions, the authorization rules and the handler share one copy.
pub trait ValidateToken {
    /// What a valid token yields; inserted into the request's extensions as `Arc<Claims>`.
    type Claims: Send + Sync + 'static;
    /// A validation waiting on I/O. Owns what it needs.
    type Future: Future<Output = Result<Arc<Self::Claims>, AuthError>> + Send + 'static;

    /// Starts validating `token`.
    fn validate(&self, token: &BearerToken) -> Verdict<Arc<Self::Claims>, Self::Future>;

    /// The claims of a token this validator accepted before, recognised by its exact bytes, or
    /// `None` (the default: nothing is remembered) to have it [validated](Self::validate).
    ///
    /// [`ValidateBearer`] asks before it checks the token's syntax: bytes that were accepted
    /// once passed that check then, so the [verified-token cache](CachedValidator) answers a
    /// repeat in one pass over the token. An implementation must therefore answer only for
    /// bytes it accepted, and only while they are still valid.
    fn recall(&self, token: &[u8]) -> Option<Arc<Self::Claims>> {
        let _ = token;
        None
    }
}

/// How a validation started: already decided, or waiting on I/O.
#[derive(Debug)]
pub enum Verdict<C, F> {
    /// Decided without waiting.
    Decided(Result<C, AuthError>),
    /// Waiting on a key fetch, an introspection call, …
    Pending(F),
}

impl<C, F: Future<Output = Result<C, AuthError>>> Verdict<C, F> {
    /// The outcome, awaited if need be.
    pub async fn outcome(self) -> Result<C, AuthError> {
        match self {
            Self::Decided(outcome) => outcome,
            Self::Pending(future) => future.await,
        }
    }
}

/// Authenticates requests with a [`ValidateToken`] and renders failures with an [`Emitter`].
#[derive(Debug, Clone)]
pub struct ValidateBearerLayer<V> {
    validator: V,
    emitter: Emitter,
    extractor: BearerExtractor,
    optional: bool,
}

impl<V> ValidateBearerLayer<V> {
    /// Validates with `validator`, renders failures with `emitter`, reads tokens from the
    /// `Authorization` header only.
    pub fn new(validator: V, emitter: Emitter) -> Self {
        Self {
            validator,
            emitter,
            extractor: BearerExtractor::new(),
            optional: false,
        }
    }

    /// Replaces the token extractor (to allow the query method or change the length limit).
    pub fn extractor(mut self, extractor: BearerExtractor) -> Self {
        self.extractor = extractor;
        self
    }

    /// Lets requests that carry no bearer credentials at all through, without claims (row I1
    /// becomes the handler's decision: with the `axum` feature, take an
    /// `Option<Authenticated<C>>`). Tokens that are sent are still validated, and a bad one is
    /// still refused (rows I2–I4): a client never gets less than it asked for by mistake.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

impl<S, V: Clone> Layer<S> for ValidateBearerLayer<V> {
    type Service = ValidateBearer<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        ValidateBearer {
            inner,
            validator: self.validator.clone(),
            emitter: self.emitter.clone(),
            extractor: self.extractor,
            optional: self.optional,
        }
    }
}

/// The service of [`ValidateBearerLayer`].
#[derive(Debug, Clone)]
pub struct ValidateBearer<S, V> {
    inner: S,
    validator: V,
    emitter: Emitter,
    extractor: BearerExtractor,
    optional: bool,
}

impl<S, V> ValidateBearer<S, V> {
    crate::macros::inner_service_accessors!();
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for ValidateBearer<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: ValidateToken,
{
    type Response = Response<MaybeBuffered<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<V::Future, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // One pass over the headers finds the failure context and the credentials.
        let mut authorization = AuthorizationField::default();
        let context =
            RequestContext::capture(request.method(), request.headers(), |name, value| {
                authorization.see(name, value)
            });
        let verdict = self
            .extractor
            .find_seen(&request, authorization)
            .and_then(
                |presented| match self.validator.recall(presented.as_bytes()) {
                    Some(claims) => Ok(Verdict::Decided(Ok(claims))),
                    None => presented
                        .check()
                        .map(|token| self.validator.validate(&token)),
                },
            );
        let state = match verdict {
            Err(AuthError::MissingCredentials) if self.optional => State::Calling {
                future: self.inner.call(request),
            },
            Err(failure) | Ok(Verdict::Decided(Err(failure))) => State::rejected(failure, &request),
            Ok(Verdict::Decided(Ok(claims))) => {
                crate::metrics::validation("valid");
                request.extensions_mut().insert(claims);
                State::Calling {
                    future: self.inner.call(request),
                }
            }
            Ok(Verdict::Pending(validation)) => {
                // The ready service goes with this request; a fresh clone waits for the next.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                // Boxed: waiting on I/O anyway, and it keeps the common future small.
                State::Validating {
                    validation: Box::pin(validation),
                    waiting: Box::new((request, inner)),
                }
            }
        };
        ResponseFuture {
            state,
            emitter: self.emitter.clone(),
            context,
        }
    }
}

pin_project! {
    /// Response future of [`ValidateBearer`].
    pub struct ResponseFuture<VF, S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<VF, S, ReqBody>,
        emitter: Emitter,
        context: RequestContext,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<VF, S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Rejected { failure: AuthError },
        Validating { validation: Pin<Box<VF>>, waiting: Box<(Request<ReqBody>, S)> },
        Calling { #[pin] future: S::Future },
        Done,
    }
}

impl<VF, S, ReqBody> State<VF, S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Every refusal of this layer starts here, where the request is still in view for the
    /// operator's log.
    fn rejected(failure: AuthError, request: &Request<ReqBody>) -> Self {
        failure.trace_refusal(request);
        crate::metrics::validation(failure.reason());
        Self::Rejected { failure }
    }
}

impl<VF, S, ReqBody, ResBody, C> Future for ResponseFuture<VF, S, ReqBody>
where
    VF: Future<Output = Result<C, AuthError>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: Clone + Send + Sync + 'static,
{
    type Output = Result<Response<MaybeBuffered<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Rejected { failure } => {
                    let response = this.emitter.render(failure, this.context);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response.map(MaybeBuffered::buffered)));
                }
                StateProj::Validating { validation, .. } => {
                    let outcome = ready!(validation.as_mut().poll(cx));
                    let StateReplace::Validating { waiting, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was just matched as Validating")
                    };
                    let (mut request, mut inner) = *waiting;
                    match outcome {
                        Ok(claims) => {
                            crate::metrics::validation("valid");
                            request.extensions_mut().insert(claims);
                            let future = inner.call(request);
                            this.state.set(State::Calling { future });
                        }
                        Err(failure) => this.state.set(State::rejected(failure, &request)),
                    }
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(this.emitter.finish(response, this.context)));
                }
                StateProj::Done => panic!("validation future polled after completion"),
            }
        }
    }
}
