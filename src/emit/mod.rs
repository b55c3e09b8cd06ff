//! Middleware that renders every failure — the caller's own or the upstream's — as the response
//! the wire contract prescribes, from one configuration.
//!
//! An [`Emitter`] holds the realm, the disclosure level, the `resource_metadata` URL, the body
//! mode and the proxy name. It turns a failure into a status, `WWW-Authenticate`, `Proxy-Status`,
//! `Retry-After` and an `application/problem+json` body (RFC 9457) — or, for a gRPC request, a
//! trailers-only gRPC response with the same headers kept as metadata.
//!
//! Layers further in (authorization rules, handlers returning upstream failures) don't render
//! anything themselves: they answer with a *pending* failure ([`pending_response`]) that the
//! nearest enclosing emitting layer — [`ValidateBearer`](crate::validate::ValidateBearer) or
//! [`EmitLayer`] — renders with the caller's request in view.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::{emit::{EmitLayer, Emitter, pending_response}, failure::AuthError};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(EmitLayer::new(Emitter::new("api")))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(pending_response::<http_body_util::Empty<Bytes>>(
//!             AuthError::MissingCredentials,
//!         ))
//!     }));
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # }
//! ```

mod format;
mod grpc;
mod inbound;
mod layer;
pub mod passed_on;
mod plan;
pub mod proxy_status;
mod upstream;

use std::{borrow::Cow, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response,
    header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LINK, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE},
};

use self::plan::Rendering;
pub use self::{
    format::{FailureView, FormatBody, FormatBodyFn, format_body_fn},
    layer::{Emit, EmitLayer, ResponseFuture},
    upstream::{CONNECT_RELATION, ReauthorizeInBrowser},
};
use crate::{body::MaybeBuffered, challenge::Challenge};

/// How much a failure response explains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disclosure {
    /// Only what the client needs to act: the error code, never a description (the default: an
    /// attacker reads errors too).
    #[default]
    Minimal,
    /// Adds `error_description` to challenges and `detail` to problem bodies; for development.
    Verbose,
}

/// Whether failure responses carry a body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyMode {
    /// `application/problem+json` (RFC 9457) when the client accepts it and the method is not
    /// HEAD — or the application's own format, set with [`Emitter::with_body_format`].
    #[default]
    ProblemJson,
    /// Status and headers only: every failure is still unambiguous from its headers.
    HeadersOnly,
}

/// The one rendering policy for every failure, inbound or upstream.
///
/// Cheap to clone: the configuration is shared.
#[derive(Clone)]
pub struct Emitter {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    realm: String,
    disclosure: Disclosure,
    resource_metadata: Option<String>,
    body_mode: BodyMode,
    proxy_name: String,
    problem_base: String,
    grpc: bool,
    body_format: Option<Arc<dyn FormatBody>>,
}

/// Where problem `type` URIs point unless configured: this crate's documentation of each kind.
pub const DEFAULT_PROBLEM_BASE: &str = "https://docs.rs/tower-bearer/latest/tower_bearer/problem/#";

impl Emitter {
    /// An emitter for the given realm, with minimal disclosure, problem+json bodies and the proxy
    /// name `tower-bearer`.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            config: Arc::new(Config {
                realm: realm.into(),
                disclosure: Disclosure::default(),
                resource_metadata: None,
                body_mode: BodyMode::default(),
                proxy_name: "tower-bearer".to_owned(),
                problem_base: DEFAULT_PROBLEM_BASE.to_owned(),
                grpc: false,
                body_format: None,
            }),
        }
    }

    /// Sets the disclosure level ([`Disclosure::Minimal`] unless set).
    pub fn with_disclosure(mut self, disclosure: Disclosure) -> Self {
        Arc::make_mut(&mut self.config).disclosure = disclosure;
        self
    }

    /// Adds `resource_metadata="<url>"` (RFC 9728 §5.1) to every challenge.
    pub fn with_resource_metadata(mut self, url: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).resource_metadata = Some(url.into());
        self
    }

    /// Sets the body mode ([`BodyMode::ProblemJson`] unless set).
    pub fn with_body_mode(mut self, mode: BodyMode) -> Self {
        Arc::make_mut(&mut self.config).body_mode = mode;
        self
    }

    /// Names this service in `Proxy-Status` (RFC 9209); `tower-bearer` unless set.
    pub fn with_proxy_name(mut self, name: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).proxy_name = name.into();
        self
    }

    /// Sets the prefix of problem `type` URIs; the kind's slug (e.g. `invalid-token`) is
    /// appended ([`DEFAULT_PROBLEM_BASE`] unless set).
    pub fn with_problem_base(mut self, base: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).problem_base = base.into();
        self
    }

    /// Sends bodies in the application's own format instead of problem details; status and
    /// headers stay as the wire contract says (see [`FormatBody`]).
    pub fn with_body_format(mut self, format: impl FormatBody) -> Self {
        Arc::make_mut(&mut self.config).body_format = Some(Arc::new(format));
        self
    }

    /// Answers gRPC callers (a request whose `content-type` starts with `application/grpc`) with
    /// trailers-only gRPC responses. Off unless set: only a gRPC service should answer so — a
    /// REST service answers every caller with HTTP statuses.
    pub fn with_grpc(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).grpc = on;
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// The disclosure level.
    pub fn disclosure(&self) -> Disclosure {
        self.config.disclosure
    }

    /// The `resource_metadata` URL, if set.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.config.resource_metadata.as_deref()
    }

    /// The body mode.
    pub fn body_mode(&self) -> BodyMode {
        self.config.body_mode
    }

    /// The name this service goes by in `Proxy-Status`.
    pub fn proxy_name(&self) -> &str {
        &self.config.proxy_name
    }

    /// The prefix of problem `type` URIs.
    pub fn problem_base(&self) -> &str {
        &self.config.problem_base
    }

    /// Whether gRPC callers get gRPC answers.
    pub fn grpc(&self) -> bool {
        self.config.grpc
    }

    /// The bare challenge: `Bearer realm="R"`, plus `resource_metadata` when configured.
    pub fn bare_challenge(&self) -> Challenge {
        self.challenge(None, &[], None)
    }

    /// Renders a failure for the request described by `request`.
    pub fn render<F: Failure + ?Sized>(
        &self,
        failure: &F,
        request: &RequestContext,
    ) -> Response<Bytes> {
        if request.grpc && self.config.grpc {
            return self.render_grpc(failure, request);
        }
        let rendering = failure.rendering(self, request);
        let mut headers = HeaderMap::new();
        self.write_headers(&rendering, &mut headers);
        // A HEAD request gets the GET's headers, `Content-Length` included (RFC 9110 §9.3.2,
        // §8.6); the server sends no content for it.
        let body = if self.config.body_mode == BodyMode::ProblemJson
            && request.accepts_problem()
            && !rendering.disguised
        {
            let (content_type, body) = match &self.config.body_format {
                Some(format) => format.format(&FailureView::new(&rendering, self.verbose())),
                None => (
                    HeaderValue::from_static("application/problem+json"),
                    self.problem_json(&rendering),
                ),
            };
            headers.insert(CONTENT_TYPE, content_type);
            body
        } else {
            Bytes::new()
        };
        let mut response = Response::new(body);
        *response.status_mut() = rendering.status;
        *response.headers_mut() = headers;
        response
    }

    /// Renders a failure as a trailers-only gRPC response, whatever the request.
    pub(crate) fn render_grpc<F: Failure + ?Sized>(
        &self,
        failure: &F,
        request: &RequestContext,
    ) -> Response<Bytes> {
        grpc::render(self, failure.rendering(self, request))
    }

    /// Replaces a pending failure with its rendering, seals a response passed on from a
    /// provider ([`passed_on`]), and passes any other response through.
    pub(crate) fn finish<B>(
        &self,
        mut response: Response<B>,
        request: &RequestContext,
    ) -> Response<MaybeBuffered<B>> {
        let extensions = response.extensions();
        if let Some(PendingFailure(failure)) = extensions.get::<PendingFailure>() {
            return self
                .render(&**failure, request)
                .map(MaybeBuffered::buffered);
        }
        self.seal_passed_on(&mut response);
        response.map(MaybeBuffered::passthrough)
    }

    pub(crate) fn verbose(&self) -> bool {
        self.config.disclosure == Disclosure::Verbose
    }

    fn challenge(
        &self,
        error: Option<&str>,
        params: &[(&'static str, Cow<'static, str>)],
        description: Option<&str>,
    ) -> Challenge {
        let mut challenge = Challenge::bearer(&self.config.realm);
        let mut push = |name: &str, value: &str| {
            // Names are this crate's own tokens, so this cannot fail; keep the challenge if it did.
            challenge = match challenge.clone().with_param(name, value) {
                Ok(with) => with,
                Err(_) => challenge.clone(),
            };
        };
        if let Some(error) = error {
            push("error", error);
            if let Some(description) = description.filter(|_| self.verbose()) {
                push("error_description", description);
            }
        }
        for (name, value) in params {
            push(name, value);
        }
        if let Some(url) = &self.config.resource_metadata {
            push("resource_metadata", url);
        }
        challenge
    }

    fn write_headers(&self, rendering: &Rendering, headers: &mut HeaderMap) {
        // A failure is about this request's credentials: no cache may answer another with it.
        // (Not a disguised one: it must look like the application's own.)
        if !rendering.disguised {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        match &rendering.bearer {
            plan::Bearer::None => {}
            plan::Bearer::Bare => {
                headers.insert(WWW_AUTHENTICATE, self.bare_challenge().to_header_value());
            }
            plan::Bearer::Error { code, params } => {
                let challenge = self.challenge(Some(code), params, Some(&rendering.detail));
                headers.insert(WWW_AUTHENTICATE, challenge.to_header_value());
            }
        }
        if let Some(proxy_status) = &rendering.proxy_status {
            headers.insert(crate::emit::PROXY_STATUS, proxy_status.clone());
        }
        if let Some(retry_after) = rendering.retry_after {
            headers.insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(retry_after)),
            );
        }
        if let Some(link) = &rendering.link {
            headers.insert(LINK, link.clone());
        }
        if let Some(location) = &rendering.location {
            headers.insert(LOCATION, location.clone());
        }
        if let Some(cookie) = &rendering.set_cookie {
            headers.insert(http::header::SET_COOKIE, cookie.clone());
        }
    }

    fn problem_json(&self, rendering: &Rendering) -> Bytes {
        let mut problem = serde_json::Map::new();
        let problem_type = match rendering.problem_slug {
            Some(slug) => format!("{}{slug}", self.config.problem_base),
            None => "about:blank".to_owned(),
        };
        problem.insert("type".into(), problem_type.into());
        problem.insert("title".into(), rendering.title.into());
        problem.insert("status".into(), rendering.status.as_u16().into());
        if self.verbose() && !rendering.detail.is_empty() {
            problem.insert(
                "detail".into(),
                rendering.detail.clone().into_owned().into(),
            );
        }
        for (name, value) in &rendering.members {
            problem.insert((*name).into(), value.clone());
        }
        serde_json::to_vec(&problem)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("realm", &self.config.realm)
            .field("disclosure", &self.config.disclosure)
            .field("resource_metadata", &self.config.resource_metadata)
            .field("body_mode", &self.config.body_mode)
            .field("proxy_name", &self.config.proxy_name)
            .field("grpc", &self.config.grpc)
            .field("custom_body_format", &self.config.body_format.is_some())
            .finish()
    }
}

/// Whole seconds, rounded up, at least one: `Retry-After: 0` would invite a hot loop.
fn retry_after_seconds(after: Duration) -> u64 {
    (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
}

const SEC_FETCH_MODE: http::HeaderName = http::HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_DEST: http::HeaderName = http::HeaderName::from_static("sec-fetch-dest");

/// The `Proxy-Status` header name (RFC 9209).
pub const PROXY_STATUS: http::HeaderName = http::HeaderName::from_static("proxy-status");

/// What rendering needs to know about the caller's request, captured before the request is
/// handed on so that a failure found later can still be rendered for it.
///
/// Every request pays for the capture, and few are refused: it is one pass over the header
/// names (no hashing) that keeps the `Accept` header as it is (a reference count); `Accept` is
/// parsed only when a failure is rendered.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    grpc: bool,
    get: bool,
    /// What Fetch Metadata says about a navigation, when the browser sent any.
    fetch_navigation: Option<bool>,
    accept: Accept,
}

/// The request's `Accept` header, unparsed until a rendering asks.
#[derive(Debug, Clone, Default)]
enum Accept {
    #[default]
    Absent,
    One(HeaderValue),
    /// Sent more than once (rare): read when captured.
    Several {
        html: bool,
        problem: bool,
    },
}

impl RequestContext {
    /// Captures the context of a request.
    pub fn of<B>(request: &Request<B>) -> Self {
        Self::from_parts(request.method(), request.headers())
    }

    /// Captures the context from a request's method and headers.
    pub fn from_parts(method: &Method, headers: &HeaderMap) -> Self {
        Self::capture(method, headers, |_, _| {})
    }

    /// [`from_parts`](Self::from_parts), showing every header field to `visit` on the way: one
    /// pass over the headers for the context and whatever else the caller looks for.
    pub(crate) fn capture<'h>(
        method: &Method,
        headers: &'h HeaderMap,
        mut visit: impl FnMut(&HeaderName, &'h HeaderValue),
    ) -> Self {
        let mut grpc = None;
        let (mut mode, mut dest) = (None, None);
        let mut accept = Accept::Absent;
        let mut accepts = 0;
        // The first value of each header decides, as `HeaderMap::get` would have it.
        for (name, value) in headers {
            visit(name, value);
            if name == CONTENT_TYPE {
                grpc.get_or_insert_with(|| value.as_bytes().starts_with(b"application/grpc"));
            } else if name == ACCEPT {
                accepts += 1;
                if accepts == 1 {
                    accept = Accept::One(value.clone());
                }
            } else if name == SEC_FETCH_MODE {
                mode.get_or_insert_with(|| value.as_bytes() == b"navigate");
            } else if name == SEC_FETCH_DEST {
                dest.get_or_insert_with(|| value.as_bytes() == b"document");
            }
        }
        if accepts > 1 {
            let lines = || {
                headers
                    .get_all(ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
            };
            accept = Accept::Several {
                html: lines().next().is_some_and(|a| a.contains("text/html")),
                problem: problem_json_quality(lines()) > 0.0,
            };
        }
        // Fetch Metadata decides when the browser sends it: only a document navigation is one
        // (a script's `fetch()` is `cors`, `same-origin` or `no-cors`, whatever it accepts).
        let fetch_navigation = match (mode, dest) {
            (None, None) => None,
            (mode, dest) => Some(mode == Some(true) || dest == Some(true)),
        };
        Self {
            grpc: grpc.unwrap_or(false),
            get: method == Method::GET,
            fetch_navigation,
            accept,
        }
    }

    /// Whether the caller speaks gRPC.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// Whether the request is a browser navigation (which may be redirected instead of refused).
    pub fn is_browser_navigation(&self) -> bool {
        // Without Fetch Metadata, an `Accept` asking for HTML is taken for one.
        self.get
            && self.fetch_navigation.unwrap_or_else(|| match &self.accept {
                Accept::Absent => false,
                Accept::One(value) => value.to_str().is_ok_and(|a| a.contains("text/html")),
                Accept::Several { html, .. } => *html,
            })
    }

    /// Whether the caller takes a problem details body (no `Accept` at all takes anything).
    fn accepts_problem(&self) -> bool {
        match &self.accept {
            Accept::Absent => true,
            Accept::One(value) => problem_json_quality(value.to_str().ok().into_iter()) > 0.0,
            Accept::Several { problem, .. } => *problem,
        }
    }
}

/// The quality `Accept` gives `application/problem+json` (RFC 9110 §12.5.1): that of the most
/// specific range that matches it (`q=0`: not acceptable), 0 when none does. A client that
/// takes `application/json` reads problem+json too, so that range counts, between the exact
/// type and `application/*`.
fn problem_json_quality<'a>(lines: impl Iterator<Item = &'a str>) -> f32 {
    const RANGES: [&str; 4] = [
        "*/*",
        "application/*",
        "application/json",
        "application/problem+json",
    ];
    let mut best: Option<(usize, f32)> = None;
    for range in lines.flat_map(|line| line.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let Some(specificity) = RANGES.iter().position(|m| media.eq_ignore_ascii_case(m)) else {
            continue;
        };
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, q)| {
                q.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
            });
        // A range with an unreadable weight says nothing.
        let Some(quality) = quality else { continue };
        best = match best {
            Some((s, q)) if s > specificity || (s == specificity && q >= quality) => Some((s, q)),
            _ => Some((specificity, quality)),
        };
    }
    best.map_or(0.0, |(_, quality)| quality)
}

/// A failure this crate can render: the caller's [`AuthError`](crate::failure::AuthError) or an upstream failure.
///
/// Sealed: the wire contract is this crate's to keep.
pub trait Failure: plan::Sealed + std::error::Error + Send + Sync + 'static {}

impl<T: plan::Sealed + std::error::Error + Send + Sync + 'static> Failure for T {}

/// A failure waiting in a response's extensions for the enclosing emitting layer to render it.
#[derive(Clone)]
pub struct PendingFailure(Arc<dyn Failure>);

impl PendingFailure {
    /// The failure.
    pub fn failure(&self) -> &dyn Failure {
        &*self.0
    }
}

impl std::fmt::Debug for PendingFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PendingFailure")
            .field(&format_args!("{}", self.0))
            .finish()
    }
}

/// A response standing for `failure`, rendered by the enclosing [`EmitLayer`] or
/// [`ValidateBearer`](crate::validate::ValidateBearer).
///
/// Its status is already the right one, so a response that escapes every emitting layer is
/// still correct, if terse.
pub fn pending_response<B: Default>(failure: impl Failure) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = failure.status();
    response
        .extensions_mut()
        .insert(PendingFailure(Arc::new(failure)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts_problem_json(accept: &str) -> bool {
        problem_json_quality(std::iter::once(accept)) > 0.0
    }

    #[test]
    fn fetch_metadata_decides_what_a_navigation_is() {
        let navigation = |method: Method, headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, HeaderValue::from_static(value));
            }
            RequestContext::from_parts(&method, &map).is_browser_navigation()
        };
        assert!(navigation(Method::GET, &[("sec-fetch-mode", "navigate")]));
        assert!(navigation(Method::GET, &[("sec-fetch-dest", "document")]));
        // A script's `fetch()` asking for HTML is no navigation.
        for mode in ["cors", "same-origin", "no-cors"] {
            assert!(!navigation(
                Method::GET,
                &[("sec-fetch-mode", mode), ("accept", "text/html")]
            ));
        }
        // Without Fetch Metadata, an `Accept` asking for HTML is taken for one.
        assert!(navigation(
            Method::GET,
            &[("accept", "text/html,*/*;q=0.8")]
        ));
        assert!(!navigation(Method::GET, &[("accept", "application/json")]));
        assert!(!navigation(Method::POST, &[("sec-fetch-mode", "navigate")]));
    }

    #[test]
    fn the_context_reads_every_accept_and_the_first_of_the_others() {
        let context = |headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, HeaderValue::from_static(value));
            }
            RequestContext::from_parts(&Method::GET, &map)
        };
        assert!(context(&[]).accepts_problem(), "no Accept takes anything");
        assert!(!context(&[("accept", "text/html")]).accepts_problem());
        let several = context(&[("accept", "text/html"), ("accept", "application/json")]);
        assert!(several.accepts_problem());
        assert!(
            several.is_browser_navigation(),
            "the first Accept asks for HTML"
        );
        let refused = context(&[
            ("accept", "*/*"),
            ("accept", "application/problem+json;q=0"),
        ]);
        assert!(!refused.accepts_problem());
        assert!(context(&[("content-type", "application/grpc+proto")]).is_grpc());
        assert!(
            !context(&[
                ("content-type", "text/plain"),
                ("content-type", "application/grpc")
            ])
            .is_grpc()
        );
        let fetched = context(&[("sec-fetch-mode", "cors"), ("sec-fetch-mode", "navigate")]);
        assert!(
            !fetched.is_browser_navigation(),
            "the first Sec-Fetch-Mode decides"
        );
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts_problem_json("*/*"));
        assert!(accepts_problem_json("text/html, application/json;q=0.9"));
        assert!(accepts_problem_json("application/problem+json"));
        assert!(!accepts_problem_json("text/html"));
        assert!(!accepts_problem_json("application/json;q=0"));
        // The most specific range wins, whatever the order.
        assert!(!accepts_problem_json("*/*, application/problem+json;q=0"));
        assert!(!accepts_problem_json("application/problem+json;q=0, */*"));
        assert!(accepts_problem_json("*/*;q=0, application/problem+json"));
        assert!(!accepts_problem_json("application/*, application/json;Q=0"));
        // Parameter names are case-insensitive; weights outside [0, 1] are unreadable.
        assert!(!accepts_problem_json("application/problem+json; Q=0"));
        assert!(!accepts_problem_json("application/problem+json;q=2"));
        // Several fields are one list.
        assert!(
            problem_json_quality(["text/html", "application/problem+json;q=0.5"].into_iter()) > 0.0
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(30)), 30);
    }
}
