//! Doubles of a third-party provider (its API and its token endpoint) and a gateway that calls
//! it through the outbound layers, all over real HTTP on 127.0.0.1: the [`World`] of
//! `tests/upstream.rs`.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::State, response::Response};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::Barrier;
use tower::{BoxError, ServiceExt};
use tower_bearer::{
    emit::{BodyMode, EmitLayer, Emitter, pending_response},
    upstream::{
        classify::{ClassifyUpstream, JsonErrorCode, Standard},
        grant::RefreshGrant,
        refresh::{DEFAULT_REFRESH_TIMEOUT, RefreshAndRetry, RefreshAndRetryLayer, RetryBody},
        store::Link,
        store::LinkKey,
        store::MemoryStore,
        store::TokenStore,
    },
};

use super::http::{Reply, Req, TestClient, client, closed_port, hang_up_port, parse_form, serve};

pub type UpstreamClient = ClientOver<MemoryStore>;
/// The outbound layers over any token store.
pub type ClientOver<St> = RefreshAndRetry<ClassifyUpstream<Timed, Standard>, St, RefreshGrant>;

pub const PROVIDER: &str = "acme";
pub const CONNECT: &str = "https://gw.example/connect/acme";
pub const USER: &str = "alice";

// ---------------------------------------------------------------------------------------------
// The provider's API

#[derive(Default)]
pub struct Api {
    /// Access tokens the API accepts.
    pub valid: Mutex<HashSet<String>>,
    /// Reject every token, even fresh ones.
    pub reject_all: AtomicBool,
    /// `(path, token)` of every request.
    pub seen: Mutex<Vec<(String, String)>>,
    pub rejections: AtomicUsize,
    /// Holds rejections until this many requests were rejected.
    pub hold: Mutex<Option<Arc<Barrier>>>,
}

impl Api {
    pub fn accept(&self, token: &str) {
        self.valid.lock().unwrap().insert(token.to_owned());
    }

    pub fn tokens_seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// A response with these headers and body.
fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.into())).unwrap()
}

async fn api(State(api): State<Arc<Api>>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    api.seen.lock().unwrap().push((path.clone(), token.clone()));
    let valid =
        !api.reject_all.load(Ordering::SeqCst) && api.valid.lock().unwrap().contains(&token);
    let body = request.into_body().collect().await.unwrap().to_bytes();
    match (path.as_str(), valid) {
        ("/slow", _) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            response(200, &[], Bytes::new())
        }
        ("/powerbi", false) => response(
            403,
            &[("content-type", "application/json; charset=utf-8")],
            Bytes::from_static(br#"{"error":{"code":"TokenExpired","message":"Access token has expired, resubmit with a new access token"}}"#),
        ),
        ("/invalid-403", false) => response(
            403,
            &[("www-authenticate", r#"Bearer realm="acme", error="invalid_token""#)],
            Bytes::new(),
        ),
        (_, false) => {
            let hold = api.hold.lock().unwrap().clone();
            api.rejections.fetch_add(1, Ordering::SeqCst);
            if let Some(barrier) = hold {
                let _ = tokio::time::timeout(Duration::from_secs(20), barrier.wait()).await;
            }
            response(
                401,
                &[("www-authenticate", r#"Bearer realm="acme", error="invalid_token""#)],
                Bytes::from_static(b"{\"error\":\"invalid_token\"}"),
            )
        }
        ("/scope", true) => response(
            403,
            &[(
                "www-authenticate",
                r#"Basic realm="acme", Bearer realm="acme", error="insufficient_scope", scope="files.read files.write""#,
            )],
            Bytes::new(),
        ),
        ("/forbidden", true) => response(
            403,
            &[
                ("www-authenticate", r#"Bearer realm="acme""#),
                ("content-type", "text/plain"),
            ],
            Bytes::from_static(b"nope"),
        ),
        // Not about the token, but with a challenge that could pass for the gateway's own.
        ("/bad-request", true) => response(
            400,
            &[
                (
                    "www-authenticate",
                    r#"Bearer realm="acme", error="invalid_request""#,
                ),
                ("content-type", "text/plain"),
            ],
            Bytes::from_static(b"bad request"),
        ),
        // Signals only the gateway may send: its proxy name in `Proxy-Status`, a `Link` to its
        // connect flow.
        ("/forged", true) | ("/forged-403", true) => {
            let connect = format!(
                r#"<https://evil.example/connect>; rel="{}", <https://acme.example/page/2>; rel="next""#,
                tower_bearer::emit::CONNECT_RELATION
            );
            response(
                if path == "/forged" { 200 } else { 403 },
                &[
                    (
                        "proxy-status",
                        r#"cdn; error=http_request_error, gw; error=http_request_denied; details="upstream_reauth_required""#,
                    ),
                    ("proxy-status", r#""gw"; received-status=401"#),
                    ("link", &connect),
                ],
                Bytes::from_static(b"forged"),
            )
        }
        ("/hop", true) => response(
            200,
            &[
                ("connection", "x-private"),
                ("x-private", "secret-hop"),
                ("x-upstream", "yes"),
            ],
            Bytes::from_static(b"hop"),
        ),
        (_, true) => response(200, &[("x-upstream", "yes")], body),
    }
}

// ---------------------------------------------------------------------------------------------
// The provider's token endpoint

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Unavailable,
    Slow,
    Garbage,
    InvalidGrant,
    InvalidClient,
}

/// A token request's form fields and `Authorization` header.
pub type TokenRequest = (Vec<(String, String)>, Option<String>);

pub struct TokenEndpoint {
    pub mode: Mutex<Mode>,
    pub calls: AtomicUsize,
    /// The only refresh token currently valid; replaying an older one revokes the grant.
    pub current_refresh: Mutex<String>,
    pub revoked: AtomicBool,
    pub generation: AtomicUsize,
    pub rotate: AtomicBool,
    pub delay: Mutex<Duration>,
    /// The `expires_in` of issued tokens, as JSON.
    pub expires_in: Mutex<String>,
    /// Every request's form and `Authorization` header.
    pub requests: Mutex<Vec<TokenRequest>>,
    pub api: Arc<Api>,
}

impl TokenEndpoint {
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn refresh_tokens_presented(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(form, _)| {
                form.iter()
                    .find(|(k, _)| k == "refresh_token")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
}

async fn token(State(endpoint): State<Arc<TokenEndpoint>>, request: Request<Body>) -> Response {
    endpoint.calls.fetch_add(1, Ordering::SeqCst);
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let form = parse_form(&String::from_utf8_lossy(&body));
    endpoint.requests.lock().unwrap().push((form.clone(), auth));
    let delay = *endpoint.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let json = |status: u16, body: String| {
        response(
            status,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            body,
        )
    };
    let mode = *endpoint.mode.lock().unwrap();
    match mode {
        Mode::Unavailable => {
            return response(503, &[("retry-after", "7")], "down for maintenance");
        }
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Mode::Garbage => {
            return response(200, &[("content-type", "text/html")], "<html>oops</html>");
        }
        Mode::InvalidGrant => return json(400, r#"{"error":"invalid_grant"}"#.into()),
        Mode::InvalidClient => return json(401, r#"{"error":"invalid_client"}"#.into()),
        Mode::Normal => {}
    }
    let presented = form
        .iter()
        .find(|(k, _)| k == "refresh_token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut current = endpoint.current_refresh.lock().unwrap();
    if endpoint.revoked.load(Ordering::SeqCst) || presented != *current {
        // RFC 9700 §4.14: a replayed refresh token revokes the grant.
        endpoint.revoked.store(true, Ordering::SeqCst);
        return json(400, r#"{"error":"invalid_grant"}"#.into());
    }
    let n = endpoint.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let access = format!("at-{n}");
    endpoint.api.accept(&access);
    let refresh = if endpoint.rotate.load(Ordering::SeqCst) {
        let refresh = format!("rt-{n}");
        *current = refresh.clone();
        format!(r#","refresh_token":"{refresh}""#)
    } else {
        String::new()
    };
    let expires_in = endpoint.expires_in.lock().unwrap().clone();
    json(
        200,
        format!(
            r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":{expires_in}{refresh}}}"#
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The inner HTTP client, with a timeout

/// hyper-util's client with a per-request timeout (like `tower::timeout`).
#[derive(Clone)]
pub struct Timed {
    client: TestClient<RetryBody<Full<Bytes>>>,
    timeout: Duration,
}

impl tower::Service<Request<RetryBody<Full<Bytes>>>> for Timed {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
        let client = self.client.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, client.request(request)).await {
                Ok(result) => result.map_err(Into::into),
                Err(elapsed) => Err(elapsed.into()),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway: a proxy handler over the outbound layers, rendered by the emitter

#[derive(Clone)]
pub struct Options {
    pub body_mode: BodyMode,
    pub replay_limit: usize,
    pub skew: Duration,
    pub secret_post: bool,
    pub grant_timeout: Duration,
    pub rotate: bool,
    pub upstream_timeout: Duration,
    pub refresh_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            body_mode: BodyMode::ProblemJson,
            replay_limit: 64 * 1024,
            skew: Duration::from_secs(60),
            secret_post: false,
            grant_timeout: Duration::from_secs(2),
            rotate: true,
            upstream_timeout: Duration::from_millis(500),
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
        }
    }
}

impl Options {
    /// The defaults, failures rendered in `body_mode`.
    pub fn rendering(body_mode: BodyMode) -> Self {
        Self {
            body_mode,
            ..Self::default()
        }
    }
}

/// Both ways the gateway can render its failures.
pub const BODY_MODES: [BodyMode; 2] = [BodyMode::ProblemJson, BodyMode::HeadersOnly];

/// What the outbound layers answer for one request.
pub type Outcome = Result<
    <UpstreamClient as tower::Service<Request<Full<Bytes>>>>::Response,
    <UpstreamClient as tower::Service<Request<Full<Bytes>>>>::Error,
>;

pub struct World {
    pub api: Arc<Api>,
    pub token_endpoint: Arc<TokenEndpoint>,
    /// The provider API's base URL.
    pub api_url: String,
    /// The gateway's base URL.
    pub gateway: String,
    pub store: MemoryStore,
    pub client: UpstreamClient,
    pub caller: TestClient,
    grant: RefreshGrant,
    options: Options,
}

struct App<St: TokenStore> {
    client: ClientOver<St>,
    api: String,
    dead: String,
    hang_up: String,
}

impl<St: TokenStore> Clone for App<St> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            api: self.api.clone(),
            dead: self.dead.clone(),
            hang_up: self.hang_up.clone(),
        }
    }
}

async fn proxy<St: TokenStore>(State(app): State<App<St>>, request: Request<Body>) -> Response {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(USER)
        .to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let target = if let Some(rest) = path.strip_prefix("/unreachable") {
        format!("{}{rest}", app.dead)
    } else if let Some(rest) = path.strip_prefix("/hang-up") {
        format!("{}{rest}", app.hang_up)
    } else {
        format!("{}{path}", app.api)
    };
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut upstream = Request::builder()
        .method(parts.method)
        .uri(target)
        .body(Full::new(body))
        .unwrap();
    // Forwarded as-is to check the caller's own credentials never reach the provider.
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        upstream
            .headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    upstream
        .extensions_mut()
        .insert(LinkKey::new(user, PROVIDER));
    match app.client.oneshot(upstream).await {
        Ok(response) => response.map(Body::new),
        Err(error) => pending_response(error),
    }
}

pub async fn world(options: Options) -> World {
    let api = Arc::new(Api::default());
    let api_url = serve(Router::new().fallback(self::api).with_state(api.clone())).await;
    let token_endpoint = Arc::new(TokenEndpoint {
        mode: Mutex::new(Mode::Normal),
        calls: AtomicUsize::new(0),
        current_refresh: Mutex::new("rt-0".into()),
        revoked: AtomicBool::new(false),
        generation: AtomicUsize::new(0),
        rotate: AtomicBool::new(options.rotate),
        delay: Mutex::new(Duration::ZERO),
        expires_in: Mutex::new("3600".into()),
        requests: Mutex::new(Vec::new()),
        api: api.clone(),
    });
    let token_url = serve(
        Router::new()
            .fallback(self::token)
            .with_state(token_endpoint.clone()),
    )
    .await;

    let store = MemoryStore::new();
    let grant = RefreshGrant::new(
        tower_bearer::http_client::HttpClient::new(client()),
        format!("{token_url}/oauth/token").parse().unwrap(),
        "gw-client",
    )
    .scope("files.read")
    .resource("https://api.acme.example/")
    .timeout(options.grant_timeout);
    let grant = if options.secret_post {
        grant.client_secret_post("gw-secret")
    } else {
        grant.client_secret_basic("gw-secret")
    };
    let upstream_client: UpstreamClient = client_over(store.clone(), grant.clone(), &options);
    let app = App {
        client: upstream_client.clone(),
        api: api_url.clone(),
        dead: format!("http://{}", closed_port().await),
        hang_up: format!("http://{}", hang_up_port().await),
    };
    let gateway = serve_gateway(app, options.body_mode).await;
    World {
        api,
        token_endpoint,
        api_url,
        gateway,
        store,
        client: upstream_client,
        caller: client(),
        grant,
        options,
    }
}

/// Serves the gateway (the proxy handler over `app`'s outbound layers, rendered by the
/// emitter); returns its base URL.
async fn serve_gateway<St: TokenStore>(app: App<St>, body_mode: BodyMode) -> String {
    // The gateway answers gRPC callers too (U4 over gRPC).
    let emitter = Emitter::new("gw")
        .with_proxy_name("gw")
        .with_grpc(true)
        .with_body_mode(body_mode);
    serve(
        Router::new()
            .fallback(proxy::<St>)
            .layer(EmitLayer::new(emitter))
            .with_state(app),
    )
    .await
}

fn client_over<St: TokenStore>(
    store: St,
    grant: RefreshGrant,
    options: &Options,
) -> ClientOver<St> {
    tower::ServiceBuilder::new()
        .layer(
            RefreshAndRetryLayer::new(PROVIDER, store, grant)
                .connect_url(CONNECT)
                .refresh_skew(options.skew)
                .replay_limit(options.replay_limit)
                .refresh_timeout(options.refresh_timeout),
        )
        .layer(
            tower_bearer::upstream::classify::ClassifyUpstreamLayer::with_classifier(
                Standard::new().rule(JsonErrorCode::power_bi()),
            ),
        )
        .service(Timed {
            client: client(),
            timeout: options.upstream_timeout,
        })
}

pub fn key() -> LinkKey {
    LinkKey::new(USER, PROVIDER)
}

/// `at-0` / `rt-0`, valid for an hour, but not accepted by the API: the first call is rejected.
pub fn stale_link() -> Link {
    Link::new("at-0")
        .with_refresh_token("rt-0")
        .with_expires_in(Duration::from_secs(3600))
        .with_scopes(["files.read"])
}

/// `at-0` / `rt-0`, expiring in 30 s: within the default refresh skew (60 s).
pub fn expiring_link() -> Link {
    Link::new("at-0")
        .with_refresh_token("rt-0")
        .with_expires_in(Duration::from_secs(30))
}

impl World {
    /// The outbound layers of this world (same provider, token endpoint and options) over
    /// another token store.
    pub fn client_over<St: TokenStore>(&self, store: St) -> ClientOver<St> {
        client_over(store, self.grant.clone(), &self.options)
    }

    /// Another gateway of this world (same provider, token endpoint and options), its links
    /// in `store`; returns its base URL.
    pub async fn gateway_over<St: TokenStore>(&self, store: St) -> String {
        let app = App {
            client: self.client_over(store),
            api: self.api_url.clone(),
            dead: format!("http://{}", closed_port().await),
            hang_up: format!("http://{}", hang_up_port().await),
        };
        serve_gateway(app, self.options.body_mode).await
    }

    /// Stores `token` as the user's link.
    pub fn link_with(&self, token: Link) {
        self.store.insert(key(), token);
    }

    /// Stores `token` as the user's link, its access token one the API accepts.
    pub fn link_accepted(&self, token: Link) {
        self.api.accept(token.access_token().expose_secret());
        self.link_with(token);
    }

    /// The user's stored link (panics when there is none).
    pub fn link(&self) -> Link {
        self.store.get(&key()).expect("the user's link")
    }

    /// A request to the provider's API at `path`, without a link key.
    pub fn untagged_api_request(&self, path: &str) -> Request<Full<Bytes>> {
        Request::builder()
            .uri(format!("{}{path}", self.api_url))
            .body(Full::<Bytes>::default())
            .unwrap()
    }

    /// A request to the provider's API at `path`, tagged with the link key.
    pub fn api_request(&self, path: &str) -> Request<Full<Bytes>> {
        let mut request = self.untagged_api_request(path);
        request.extensions_mut().insert(key());
        request
    }

    /// `GET path` at the provider's API through the outbound layers, as the user.
    pub async fn call_api(&self, path: &str) -> Outcome {
        self.client.clone().oneshot(self.api_request(path)).await
    }

    /// A request to the gateway.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> Reply {
        let mut request = Req::get(path).method(method).body(Bytes::from_static(body));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send(&self.caller, &self.gateway).await
    }

    /// `GET path` at the gateway, accepting JSON.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[("accept", "application/json")], b"")
            .await
    }
}
