//! Middleware that classifies a third-party API's responses by what they mean for the user's
//! upstream token.
//!
//! # Overview
//!
//! [`ClassifyUpstream`] wraps the HTTP client that calls the provider. Every response gets an
//! [`UpstreamClass`] in its extensions:
//!
//! | the upstream answers | class |
//! |---|---|
//! | `401` | [`TokenRejected`](UpstreamClass::TokenRejected) |
//! | `403` with a Bearer challenge `error="invalid_token"` | [`TokenRejected`](UpstreamClass::TokenRejected) |
//! | `403` with a Bearer challenge `error="insufficient_scope"` | [`InsufficientScope`](UpstreamClass::InsufficientScope), with its `scope` |
//! | any other `403` | [`Forbidden`](UpstreamClass::Forbidden) |
//! | anything else | [`NotAuthRelated`](UpstreamClass::NotAuthRelated) |
//!
//! Every challenge in every `WWW-Authenticate` field is read, in any case spelling.
//!
//! Providers that don't follow RFC 6750 get [`Rule`]s, tried before the standard table: header
//! rules ([`rule_fn`]) and body rules ([`body_rule_fn`], [`JsonErrorCode`]). Power BI, for one,
//! answers an expired token with `403` and `{"error":{"code":"TokenExpired"}}`:
//! [`JsonErrorCode::power_bi`]. Only `401` and `403` bodies are ever read, only when a rule asks
//! for them, and only up to a small limit ([`DEFAULT_PEEK_LIMIT`]); the body is handed on intact
//! as an [`UpstreamBody`]. (Reading waits for the body: keep a timeout on the client.)
//!
//! The [`Standard`] classifier also implements tower-http's
//! [`ClassifyResponse`], so the same classification
//! drives `TraceLayer` (placed outside `ClassifyUpstream`, it sees body rules' verdicts too).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::upstream::classify::{ClassifyUpstreamLayer, JsonErrorCode, Standard, UpstreamClass};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = ServiceBuilder::new()
//!     .layer(ClassifyUpstreamLayer::with_classifier(
//!         Standard::new().rule(JsonErrorCode::power_bi()),
//!     ))
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         let mut response = Response::new(Full::new(Bytes::from_static(
//!             br#"{"error":{"code":"TokenExpired"}}"#,
//!         )));
//!         *response.status_mut() = StatusCode::FORBIDDEN;
//!         Ok::<_, std::convert::Infallible>(response)
//!     }));
//!
//! let response = client.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.extensions().get(), Some(&UpstreamClass::TokenRejected));
//! # }
//! ```

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{
    HeaderMap, Request, Response, StatusCode, header::CONTENT_LENGTH, header::CONTENT_TYPE,
};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_http::classify::{ClassifiedResponse, ClassifyResponse, NeverClassifyEos};
use tower_layer::Layer;
use tower_service::Service;

use super::body::{Peeked, UpstreamBody};
use crate::challenge::Challenge;

/// How many bytes of a `401`/`403` body a body rule may read, unless configured.
pub const DEFAULT_PEEK_LIMIT: usize = 8 * 1024;

/// What an upstream response means for the user's upstream token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamClass {
    /// Not about the token: pass it on.
    NotAuthRelated,
    /// The token was rejected (expired, revoked, …): refreshing may help.
    TokenRejected,
    /// The token lacks scopes; refreshing does not help.
    InsufficientScope {
        /// The scopes the upstream asked for, when it said.
        scopes: Vec<String>,
    },
    /// Forbidden for reasons the token does not change.
    Forbidden,
}

impl UpstreamClass {
    /// Whether the response is about the token at all.
    pub fn is_auth_related(&self) -> bool {
        !matches!(self, Self::NotAuthRelated)
    }
}

/// Classifies upstream responses.
///
/// Only `classify` is required. [`ClassifyUpstream`] reads a body only for `401` and `403`, and
/// only when [`wants_body`](Self::wants_body) says so.
pub trait UpstreamClassifier: Clone {
    /// Whether classifying this `401`/`403` needs its body. The default: no.
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        false
    }

    /// How many body bytes may be read ([`DEFAULT_PEEK_LIMIT`] by default). A longer body is not
    /// shown to `classify`.
    fn body_limit(&self) -> usize {
        DEFAULT_PEEK_LIMIT
    }

    /// Classifies a response; `body` is the whole body when it was read and fit the limit.
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> UpstreamClass;
}

/// The standard table (see the [module docs](self)) for a response's status and challenges.
pub fn classify_challenges(status: StatusCode, headers: &HeaderMap) -> UpstreamClass {
    match status {
        StatusCode::UNAUTHORIZED => UpstreamClass::TokenRejected,
        StatusCode::FORBIDDEN => {
            let challenges = Challenge::from_headers(headers);
            let bearer_errors = || {
                challenges
                    .iter()
                    .filter(|c| c.is_scheme("Bearer"))
                    .filter_map(|c| c.param("error").map(|e| (c, e)))
            };
            if bearer_errors().any(|(_, e)| e == "invalid_token") {
                return UpstreamClass::TokenRejected;
            }
            match bearer_errors().find(|(_, e)| *e == "insufficient_scope") {
                Some((challenge, _)) => UpstreamClass::InsufficientScope {
                    scopes: challenge
                        .param("scope")
                        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                },
                None => UpstreamClass::Forbidden,
            }
        }
        _ => UpstreamClass::NotAuthRelated,
    }
}

/// A vendor rule, tried before the standard table. The first rule with a verdict wins.
pub trait Rule: Send + Sync + 'static {
    /// Whether this rule needs the body of this `401`/`403`. The default: no.
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        false
    }

    /// The class of this response, or `None` to leave it to the next rule. `body` is the whole
    /// body when it was read and fit the limit.
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass>;
}

/// The default classifier: vendor [`Rule`]s in order, then the standard table.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct Standard {
    rules: Arc<[Arc<dyn Rule>]>,
    body_limit: usize,
}

impl Default for Standard {
    fn default() -> Self {
        Self {
            rules: Arc::from(Vec::new()),
            body_limit: DEFAULT_PEEK_LIMIT,
        }
    }
}

impl fmt::Debug for Standard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Standard")
            .field("rules", &self.rules.len())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Standard {
    /// The standard table, without vendor rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vendor rule after those already added.
    pub fn rule(mut self, rule: impl Rule) -> Self {
        let mut rules = self.rules.to_vec();
        rules.push(Arc::new(rule));
        self.rules = rules.into();
        self
    }

    /// Sets how many body bytes rules may see.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

impl UpstreamClassifier for Standard {
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.rules.iter().any(|r| r.wants_body(status, headers))
    }

    fn body_limit(&self) -> usize {
        self.body_limit
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> UpstreamClass {
        self.rules
            .iter()
            .find_map(|r| r.classify(status, headers, body))
            .unwrap_or_else(|| classify_challenges(status, headers))
    }
}

/// A [`Rule`] from a closure over status and headers, see [`rule_fn`].
#[derive(Clone, Copy)]
pub struct RuleFn<F> {
    f: F,
}

/// A header [`Rule`]: `Fn(StatusCode, &HeaderMap) -> Option<UpstreamClass>`.
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::upstream::classify::{Standard, UpstreamClass, rule_fn};
///
/// // A provider that reports expired tokens as `419`.
/// let classifier = Standard::new().rule(rule_fn(|status, _headers| {
///     (status.as_u16() == 419).then_some(UpstreamClass::TokenRejected)
/// }));
/// ```
pub fn rule_fn<F>(f: F) -> RuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    RuleFn { f }
}

impl<F> Rule for RuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        (self.f)(status, headers)
    }
}

impl<F> fmt::Debug for RuleFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A [`Rule`] from a closure over a `401`/`403` and its body, see [`body_rule_fn`].
#[derive(Clone, Copy)]
pub struct BodyRuleFn<F> {
    f: F,
}

/// A body [`Rule`]: `Fn(StatusCode, &HeaderMap, &[u8]) -> Option<UpstreamClass>`, asked only
/// for `401` and `403` responses whose whole body fit the limit.
pub fn body_rule_fn<F>(f: F) -> BodyRuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap, &[u8]) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    BodyRuleFn { f }
}

impl<F> Rule for BodyRuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap, &[u8]) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    fn wants_body(&self, status: StatusCode, _headers: &HeaderMap) -> bool {
        is_auth_status(status)
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        body.filter(|_| is_auth_status(status))
            .and_then(|body| (self.f)(status, headers, body))
    }
}

impl<F> fmt::Debug for BodyRuleFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyRuleFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A body [`Rule`]: a JSON body whose value at a JSON pointer (RFC 6901) is a given string.
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::upstream::classify::{JsonErrorCode, UpstreamClass};
///
/// // What `JsonErrorCode::power_bi()` is:
/// let rule = JsonErrorCode::new(StatusCode::FORBIDDEN, "/error/code", "TokenExpired");
/// // Another vendor, whose expired tokens are `401 {"errors":[{"code":"expired"}]}`, and whose
/// // `403 {"reason":"scope"}` means a missing scope:
/// let other = JsonErrorCode::new(StatusCode::FORBIDDEN, "/reason", "scope")
///     .class(UpstreamClass::InsufficientScope { scopes: vec![] });
/// ```
#[derive(Clone, Debug)]
pub struct JsonErrorCode {
    status: StatusCode,
    pointer: Cow<'static, str>,
    value: Cow<'static, str>,
    class: UpstreamClass,
}

impl JsonErrorCode {
    /// Classifies a `status` response whose JSON body has `value` at `pointer` as
    /// [`TokenRejected`](UpstreamClass::TokenRejected).
    pub fn new(
        status: StatusCode,
        pointer: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            pointer: pointer.into(),
            value: value.into(),
            class: UpstreamClass::TokenRejected,
        }
    }

    /// Power BI's expired token: `403` with `{"error":{"code":"TokenExpired"}}`.
    pub fn power_bi() -> Self {
        Self::new(StatusCode::FORBIDDEN, "/error/code", "TokenExpired")
    }

    /// Sets the class a match yields.
    pub fn class(mut self, class: UpstreamClass) -> Self {
        self.class = class;
        self
    }
}

impl Rule for JsonErrorCode {
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        status == self.status
            && headers.get(CONTENT_TYPE).is_none_or(|ct| {
                ct.to_str()
                    .is_ok_and(|ct| ct.to_ascii_lowercase().contains("json"))
            })
    }

    fn classify(
        &self,
        status: StatusCode,
        _headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        if status != self.status {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(body?).ok()?;
        (json.pointer(&self.pointer)?.as_str()? == self.value).then(|| self.class.clone())
    }
}

/// An [`UpstreamClassifier`] from a closure, see [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

/// An [`UpstreamClassifier`] from a closure `Fn(StatusCode, &HeaderMap, Option<&[u8]>) ->
/// UpstreamClass`; it is shown the body of every `401`/`403` that fits [`DEFAULT_PEEK_LIMIT`].
pub fn classify_fn<F>(f: F) -> ClassifyFn<F>
where
    F: Fn(StatusCode, &HeaderMap, Option<&[u8]>) -> UpstreamClass + Clone,
{
    ClassifyFn { f }
}

impl<F> UpstreamClassifier for ClassifyFn<F>
where
    F: Fn(StatusCode, &HeaderMap, Option<&[u8]>) -> UpstreamClass + Clone,
{
    fn wants_body(&self, _status: StatusCode, _headers: &HeaderMap) -> bool {
        true
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> UpstreamClass {
        (self.f)(status, headers, body)
    }
}

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

fn is_auth_status(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// The failure class of [`Standard`] as a tower-http
/// [`ClassifyResponse`], e.g. for `TraceLayer`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamFailureClass {
    /// An auth-related answer.
    Auth(UpstreamClass),
    /// A `5xx` answer.
    Status(StatusCode),
    /// The call failed before an answer.
    Error(String),
}

impl fmt::Display for UpstreamFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(class) => write!(f, "upstream auth: {class:?}"),
            Self::Status(status) => write!(f, "upstream status {status}"),
            Self::Error(error) => write!(f, "upstream error: {error}"),
        }
    }
}

impl ClassifyResponse for Standard {
    type FailureClass = UpstreamFailureClass;
    type ClassifyEos = NeverClassifyEos<UpstreamFailureClass>;

    /// Uses the [`UpstreamClass`] that [`ClassifyUpstream`] put into the response's extensions
    /// (so body rules count), else the header rules and the standard table.
    fn classify_response<B>(
        self,
        res: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        let class = match res.extensions().get::<UpstreamClass>() {
            Some(class) => class.clone(),
            None => UpstreamClassifier::classify(&self, res.status(), res.headers(), None),
        };
        ClassifiedResponse::Ready(match class {
            UpstreamClass::NotAuthRelated if res.status().is_server_error() => {
                Err(UpstreamFailureClass::Status(res.status()))
            }
            UpstreamClass::NotAuthRelated => Ok(()),
            class => Err(UpstreamFailureClass::Auth(class)),
        })
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: fmt::Display + 'static,
    {
        UpstreamFailureClass::Error(error.to_string())
    }
}

/// [`Layer`] that applies [`ClassifyUpstream`]; see the [module docs](self).
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

/// Middleware that puts an [`UpstreamClass`] into every response's extensions; see the
/// [module docs](self).
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

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(challenges: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for c in challenges {
            headers.append(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_str(c).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn standard_table() {
        let c = |status: u16, challenges: &[&str]| {
            classify_challenges(StatusCode::from_u16(status).unwrap(), &headers(challenges))
        };
        assert_eq!(c(401, &[]), UpstreamClass::TokenRejected);
        assert_eq!(c(200, &[]), UpstreamClass::NotAuthRelated);
        assert_eq!(c(500, &[]), UpstreamClass::NotAuthRelated);
        assert_eq!(c(403, &[]), UpstreamClass::Forbidden);
        assert_eq!(
            c(
                403,
                &[r#"Basic realm="x", bearer realm="y", ERROR="invalid_token""#]
            ),
            UpstreamClass::TokenRejected
        );
        assert_eq!(
            c(
                403,
                &[
                    r#"Basic realm="x""#,
                    r#"Bearer error="insufficient_scope", scope="a  b""#
                ]
            ),
            UpstreamClass::InsufficientScope {
                scopes: vec!["a".into(), "b".into()]
            }
        );
        // Not Bearer: not ours to interpret.
        assert_eq!(
            c(403, &[r#"DPoP error="invalid_token""#]),
            UpstreamClass::Forbidden
        );
    }

    #[test]
    fn power_bi_rule() {
        let classifier = Standard::new().rule(JsonErrorCode::power_bi());
        let mut json = HeaderMap::new();
        json.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(classifier.wants_body(StatusCode::FORBIDDEN, &json));
        assert!(!classifier.wants_body(StatusCode::OK, &json));
        let body = br#"{"error":{"code":"TokenExpired","message":"x"}}"#;
        assert_eq!(
            classifier.classify(StatusCode::FORBIDDEN, &json, Some(body)),
            UpstreamClass::TokenRejected
        );
        assert_eq!(
            classifier.classify(
                StatusCode::FORBIDDEN,
                &json,
                Some(br#"{"error":{"code":"Nope"}}"#)
            ),
            UpstreamClass::Forbidden
        );
        assert_eq!(
            classifier.classify(StatusCode::FORBIDDEN, &json, None),
            UpstreamClass::Forbidden
        );
    }
}
