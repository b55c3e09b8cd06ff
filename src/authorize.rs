//! Middleware that enforces authorization rules on the claims [`ValidateBearer`] inserted:
//! required scopes (row I5), step-up authentication (row I6, RFC 9470) and hiding (row I7).
//!
//! Rules are small [`Rule`] values: [`Requirements`] is the standard one, [`rule_fn`] adapts a
//! closure, and [`RuleExt::and`] / [`RuleExt::hidden`] combine them. A refused request is answered
//! with a pending failure that the enclosing [`ValidateBearer`] renders, so per-route rules need
//! no configuration of their own.
//!
//! [`ValidateBearer`]: crate::validate::ValidateBearer
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{authorize::{AuthorizeLayer, Requirements}, emit::{EmitLayer, Emitter}, validate::StandardClaims};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(EmitLayer::new(Emitter::new("api")))
//!     .layer(AuthorizeLayer::new(Requirements::new().scope("reports:read")))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
//!     }));
//!
//! let mut request = Request::new(());
//! // As `ValidateBearer` puts them: shared, behind an `Arc`.
//! let claims = StandardClaims { scope: Some("profile".into()), ..Default::default() };
//! request.extensions_mut().insert(std::sync::Arc::new(claims));
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="insufficient_scope", scope="reports:read""#,
//! );
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    emit::pending_response,
    failure::AuthError,
    validate::{AuthClaims, StandardClaims},
};

/// A decision about validated claims of type `C`.
pub trait Rule<C> {
    /// `Ok` lets the request through; an error is rendered for the caller.
    fn check(&self, claims: &C) -> Result<(), AuthError>;
}

/// Combinators for rules; implemented for every type, so they read as methods of any rule.
pub trait RuleExt: Sized {
    /// Both rules must pass; the first failure is reported.
    fn and<R>(self, other: R) -> And<Self, R> {
        And(self, other)
    }

    /// Any failure is answered `404 Not Found` (row I7), so the caller can't learn that the
    /// resource exists.
    fn hidden(self) -> Hidden<Self> {
        Hidden(self)
    }
}

impl<T> RuleExt for T {}

/// The standard rule: required scopes, acceptable `acr` values and a maximum authentication age.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    scopes: Vec<String>,
    acr_values: Vec<String>,
    max_age: Option<u64>,
    // Pre-joined for the challenge, so a refusal allocates no more than it must.
    scope_param: Arc<str>,
    acr_param: Option<Arc<str>>,
}

impl Requirements {
    /// No requirement yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `scope` (all required scopes must be granted).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self.scope_param = self.scopes.join(" ").into();
        self
    }

    /// Accepts an authentication context class; once any is set, the token's `acr` must be one
    /// of them.
    pub fn acr_value(mut self, acr: impl Into<String>) -> Self {
        self.acr_values.push(acr.into());
        self.acr_param = Some(self.acr_values.join(" ").into());
        self
    }

    /// Requires the user to have authenticated within `max_age` (from `auth_time`).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age.as_secs());
        self
    }
}

impl<C: AuthClaims> Rule<C> for Requirements {
    fn check(&self, claims: &C) -> Result<(), AuthError> {
        // Step-up first: a weak login is fixed by logging in again, which may also grant scopes.
        let acr_ok = self.acr_values.is_empty()
            || claims
                .acr()
                .is_some_and(|acr| self.acr_values.iter().any(|a| a == acr));
        let age_ok = self.max_age.is_none_or(|max| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            claims
                .auth_time()
                .is_some_and(|at| now.saturating_sub(at) <= max)
        });
        if !acr_ok || !age_ok {
            return Err(AuthError::StepUpRequired {
                acr_values: self.acr_param.clone().filter(|_| !acr_ok),
                max_age: self.max_age.filter(|_| !age_ok),
            });
        }
        if self.scopes.iter().all(|scope| claims.has_scope(scope)) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                required: self.scope_param.clone(),
            })
        }
    }
}

/// See [`RuleExt::and`].
#[derive(Debug, Clone, Copy)]
pub struct And<A, B>(A, B);

impl<C, A: Rule<C>, B: Rule<C>> Rule<C> for And<A, B> {
    fn check(&self, claims: &C) -> Result<(), AuthError> {
        self.0.check(claims)?;
        self.1.check(claims)
    }
}

/// See [`RuleExt::hidden`].
#[derive(Debug, Clone, Copy)]
pub struct Hidden<R>(R);

impl<C, R: Rule<C>> Rule<C> for Hidden<R> {
    fn check(&self, claims: &C) -> Result<(), AuthError> {
        self.0.check(claims).map_err(|_| AuthError::Hidden)
    }
}

/// A rule from a closure; see [`rule_fn`].
#[derive(Clone, Copy)]
pub struct RuleFn<F>(F);

impl<F> fmt::Debug for RuleFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RuleFn")
    }
}

/// Adapts a closure into a [`Rule`].
pub fn rule_fn<C, F>(f: F) -> RuleFn<F>
where
    F: Fn(&C) -> Result<(), AuthError>,
{
    RuleFn(f)
}

impl<C, F> Rule<C> for RuleFn<F>
where
    F: Fn(&C) -> Result<(), AuthError>,
{
    fn check(&self, claims: &C) -> Result<(), AuthError> {
        (self.0)(claims)
    }
}

/// Applies a [`Rule`] to the claims of type `C` in each request's extensions.
pub struct AuthorizeLayer<C, R> {
    rule: Arc<R>,
    claims: PhantomData<fn(C)>,
}

impl<R> AuthorizeLayer<StandardClaims, R> {
    /// Enforces `rule` on [`StandardClaims`] (see [`for_claims`](Self::for_claims) for a claims
    /// type of your own).
    pub fn new(rule: R) -> Self {
        Self::for_claims(rule)
    }
}

impl<C, R> AuthorizeLayer<C, R> {
    /// Enforces `rule` on claims of type `C`:
    /// `AuthorizeLayer::<MyClaims, _>::for_claims(Requirements::new().scope("read"))`.
    pub fn for_claims(rule: R) -> Self {
        Self {
            rule: Arc::new(rule),
            claims: PhantomData,
        }
    }
}

impl<C, R> Clone for AuthorizeLayer<C, R> {
    fn clone(&self) -> Self {
        Self {
            rule: self.rule.clone(),
            claims: PhantomData,
        }
    }
}

impl<C, R: fmt::Debug> fmt::Debug for AuthorizeLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("rule", &self.rule)
            .finish()
    }
}

impl<S, C, R> Layer<S> for AuthorizeLayer<C, R> {
    type Service = Authorize<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            rule: self.rule.clone(),
            claims: PhantomData,
        }
    }
}

/// The service of [`AuthorizeLayer`].
pub struct Authorize<S, C, R> {
    inner: S,
    rule: Arc<R>,
    claims: PhantomData<fn(C)>,
}

impl<S, C, R> Authorize<S, C, R> {
    crate::macros::inner_service_accessors!();
}

impl<S: Clone, C, R> Clone for Authorize<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rule: self.rule.clone(),
            claims: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C, R: fmt::Debug> fmt::Debug for Authorize<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .field("rule", &self.rule)
            .finish()
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: Send + Sync + 'static,
    R: Rule<C>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let verdict = match request.extensions().get::<Arc<C>>() {
            // No claims: this layer sits outside `ValidateBearer`, or without it.
            None => Err(AuthError::MissingCredentials),
            Some(claims) => self.rule.check(claims),
        };
        match verdict {
            Ok(()) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            },
            Err(failure) => {
                failure.trace_refusal(&request);
                ResponseFuture {
                    kind: Kind::Refused {
                        response: Some(pending_response(failure)),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`Authorize`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("authorize future polled after completion"))),
        }
    }
}
