//! The example proxy end to end, over real HTTP: a real OpenID provider (`oidc-provider`) issues
//! the callers' tokens, a second one is the third-party provider's authorization server, and a
//! small resource server of this test's own — the provider's API — validates that server's JWTs
//! against its JWKS.
//!
//! A user links their account through the connect flow (login and consent scripted against
//! oidc-provider's dev interactions), calls through the proxy, has their upstream token expire
//! and refreshed without noticing (ahead of expiry, and after the API refused it), has the grant
//! revoked and sees row U4, links again and succeeds. Then the edges: U9, limits, the connect
//! flow's refusals, and configuration errors that name their field.
//!
//! Needs node and `npm ci --prefix tests/oidc`.

#[allow(dead_code)] // main.rs uses all of the example; these tests use a part.
#[path = "../examples/proxy/app.rs"]
mod app;
mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::Request,
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{
    http::{
        self as h, Browser, Reply, TestClient, basic_auth, client_without_reuse, post_form, send,
    },
    oidc::{Alg, OidcConfig, OidcProvider, RESOURCE_RS256, Resource, sign_in},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tower_bearer::{
    authorize::{AuthorizeLayer, Requirements},
    axum::Authenticated,
    emit::{CONNECT_RELATION, Emitter},
    http_client::HttpClient,
    upstream::store::{Link, LinkKey, MemoryStore},
    validate::{ClaimsPolicy, JwksValidator, StandardClaims, ValidateBearerLayer},
};

use app::config::Settings;

/// The provider's API, as a resource indicator (RFC 8707) at its authorization server.
const ACME_API: &str = "urn:acme:api";
/// How long the provider's access tokens live.
const ACME_TOKEN_TTL: u64 = 4;
const ACME_CLIENT: &str = "acme-proxy";
const ACME_SECRET: &str = "acme-proxy-secret";

/// The provider's API: the crate's own validation layer over the authorization server's JWKS,
/// without leeway, so an expired token is refused the second it expires. It records the status
/// of every request it answers.
async fn acme_api(authorization_server: &OidcProvider) -> (String, Arc<Mutex<Vec<u16>>>) {
    let validator = JwksValidator::<StandardClaims>::builder(authorization_server.jwks_uri())
        .client(HttpClient::new(client_without_reuse()))
        .policy(
            ClaimsPolicy::new()
                .issuer(authorization_server.issuer())
                .audience(ACME_API)
                .token_type("at+jwt")
                .leeway(0),
        )
        .build_lazy()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let router = Router::new()
        .route(
            "/v1/me",
            get(
                |Authenticated(claims): Authenticated<StandardClaims>| async move {
                    Json(json!({ "sub": claims.sub, "jti": claims.jti }))
                },
            )
            .post(|| async { "posted" }),
        )
        // What the proxy sent on: its `Via`, the query.
        .route(
            "/v1/echo",
            get(|request: Request| async move {
                let via = request
                    .headers()
                    .get(header::VIA)
                    .map(|v| v.to_str().unwrap().to_owned());
                Json(json!({ "via": via, "query": request.uri().query() }))
            }),
        )
        .route(
            "/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route_layer(AuthorizeLayer::new(Requirements::new().scope("read")))
        .layer(ValidateBearerLayer::new(validator, Emitter::new("acme")))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let record = record.clone();
            async move {
                let response: Response = next.run(request).await;
                record.lock().unwrap().push(response.status().as_u16());
                response
            }
        }));
    (h::serve(router).await, seen)
}

struct World {
    proxy: String,
    authorization_server: OidcProvider,
    api_calls: Arc<Mutex<Vec<u16>>>,
    store: MemoryStore,
    client: TestClient,
    /// Alice's token at the proxy, from the proxy's identity provider.
    caller: String,
    _idp: OidcProvider,
}

async fn world() -> World {
    // The proxy's listener first: the provider's client registration names its callback.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let idp = OidcProvider::start(OidcConfig::new()).await;
    let authorization_server = OidcProvider::start(
        OidcConfig::new()
            .resource(
                ACME_API,
                Resource::jwt(Alg::ES256)
                    .ttl(ACME_TOKEN_TTL)
                    .scope("read write"),
            )
            .client(json!({
                "client_id": ACME_CLIENT,
                "client_secret": ACME_SECRET,
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [format!("{proxy}/connect/acme/callback")],
                "scope": "openid offline_access read write",
            })),
    )
    .await;
    let (api, api_calls) = acme_api(&authorization_server).await;
    let closed = h::closed_port().await.port();
    let config = format!(
        r#"
        public_url = "{proxy}"
        realm = "e2e"

        [auth]
        issuer = "{issuer}"
        audience = "{RESOURCE_RS256}"
        scopes = ["read"]
        token_type = "at+jwt"

        [limits]
        request_timeout_secs = 10
        upstream_timeout_secs = 2
        max_request_body_bytes = 1024

        [providers.acme]
        base_url = "{api}/v1"
        authorize_url = "{authorization}/auth"
        token_url = "{authorization}/token"
        client_id = "{ACME_CLIENT}"
        client_secret = "{ACME_SECRET}"
        scopes = ["openid", "offline_access", "read"]
        resource = "{ACME_API}"
        refresh_skew_secs = 0
        authorize_params = {{ prompt = "consent" }}

        [providers.down]
        base_url = "http://127.0.0.1:{closed}/v1"
        authorize_url = "http://127.0.0.1:{closed}/authorize"
        token_url = "http://127.0.0.1:{closed}/token"
        client_id = "nobody"
        client_auth = "none"
        "#,
        issuer = idp.issuer(),
        authorization = authorization_server.issuer(),
    );
    let settings = Settings::from_toml(&config).expect("the configuration is valid");
    let store = MemoryStore::new();
    let service = app::build(settings, store.clone()).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, tower::make::Shared::new(service)).await });
    let caller = idp
        .authorization_code("alice", "openid read", Some(RESOURCE_RS256))
        .await
        .access_token;
    World {
        proxy,
        authorization_server,
        api_calls,
        store,
        client: client_without_reuse(),
        caller,
        _idp: idp,
    }
}

impl World {
    async fn call(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.proxy);
        h::get_bearer(&self.client, &url, &self.caller).await
    }

    fn link(&self) -> Link {
        self.store
            .get(&LinkKey::new("alice", "acme"))
            .expect("alice's link")
    }

    fn api_calls_since(&self, before: usize) -> Vec<u16> {
        self.api_calls.lock().unwrap()[before..].to_vec()
    }

    fn api_call_count(&self) -> usize {
        self.api_calls.lock().unwrap().len()
    }

    /// The connect flow as a browser runs it, up to the callback: start at the proxy with
    /// alice's token, sign in and consent at the authorization server as `login`. Returns the
    /// browser (with the binding cookie the proxy set) and the callback URL it is sent to.
    async fn begin_connect(&self, login: &str, return_to: &str) -> (Browser, String) {
        let mut browser = Browser::default();
        let start = format!(
            "{}/connect/acme?return_to={}",
            self.proxy,
            h::form_encode(return_to)
        );
        let response = browser
            .go(&self.client, Method::GET, &start, None, Some(&self.caller))
            .await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{response:?}");
        let authorize = response.location().unwrap().to_owned();
        assert!(authorize.starts_with(self.authorization_server.issuer()));
        for param in ["code_challenge_method=S256", "state=", "code_challenge="] {
            assert!(authorize.contains(param), "{param} in {authorize}");
        }
        let callback = sign_in(
            &mut browser,
            &self.client,
            self.authorization_server.issuer(),
            authorize,
            login,
        )
        .await;
        assert!(callback.starts_with(&format!("{}/connect/acme/callback?", self.proxy)));
        (browser, callback)
    }

    /// The whole connect flow; returns the callback's response. With `keep_binding` false, the
    /// callback comes without the cookie the proxy set when the flow started, as if from
    /// another browser.
    async fn connect(&self, login: &str, return_to: &str, keep_binding: bool) -> Reply {
        let (mut browser, callback) = self.begin_connect(login, return_to).await;
        if !keep_binding {
            browser.cookies.remove("tb-connect");
        }
        browser
            .go(&self.client, Method::GET, &callback, None, None)
            .await
    }
}

fn reauth_status(received: Option<u16>) -> String {
    let cause = match received {
        Some(status) => format!("received-status={status}"),
        None => "error=http_request_denied".to_owned(),
    };
    format!("tower-bearer-proxy; {cause}; next-hop=\"acme\"; details=\"upstream_reauth_required\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_call_refresh_revoke_relink() {
    let world = world().await;
    let connect_link = format!("<{}/connect/acme>; rel=\"{CONNECT_RELATION}\"", world.proxy);

    // The forwarding route is `/api/{provider}/{rest}`, both parts non-empty; other paths under
    // `/api/` are no route at all (the router's plain 404), not a call to validate.
    for path in ["/api/acme", "/api/acme/", "/api//me"] {
        let response = h::get(&world.client, &format!("{}{path}", world.proxy), &[]).await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "{path}: {response:?}"
        );
        assert!(
            response.header(header::WWW_AUTHENTICATE).is_none(),
            "{path}"
        );
    }
    let anonymous = h::get(&world.client, &format!("{}/api/acme/me", world.proxy), &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");

    // Not linked yet: U4, pointing at the connect flow.
    let response = world.call("/api/acme/me").await;
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{response:?}");
    assert_eq!(
        response.header("proxy-status"),
        Some(reauth_status(None).as_str())
    );
    assert_eq!(response.header(header::LINK), Some(connect_link.as_str()));
    assert!(response.header(header::WWW_AUTHENTICATE).is_none());
    // A script's `fetch()` asking for HTML is no navigation: the 403 it can act on.
    let fetched = h::get(
        &world.client,
        &format!("{}/api/acme/me", world.proxy),
        &[
            ("authorization", format!("Bearer {}", world.caller).as_str()),
            ("accept", "text/html"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
        ],
    )
    .await;
    assert_eq!(fetched.status, StatusCode::FORBIDDEN, "{fetched:?}");
    assert_eq!(fetched.header(header::LINK), Some(connect_link.as_str()));
    assert!(fetched.header(header::SET_COOKIE).is_none());

    // A browser navigation is sent straight to the authorization server, the flow started
    // there; signing in links the user and brings the browser back to the page it navigated to.
    let mut browser = Browser::default();
    let page = format!("{}/api/acme/me?view=full", world.proxy);
    let navigation = browser
        .navigate(&world.client, &page, Some(&world.caller))
        .await;
    assert_eq!(navigation.status, StatusCode::SEE_OTHER, "{navigation:?}");
    assert_eq!(
        navigation.header("proxy-status"),
        Some(reauth_status(None).as_str())
    );
    let authorize = navigation.location().unwrap().to_owned();
    assert!(
        authorize.starts_with(&format!("{}/auth?", world.authorization_server.issuer())),
        "{authorize}"
    );
    for param in ["code_challenge_method=S256", "state=", "code_challenge="] {
        assert!(authorize.contains(param), "{param} in {authorize}");
    }
    let cookie = navigation.header(header::SET_COOKIE).unwrap();
    assert!(
        cookie.starts_with("tb-connect=")
            && cookie.ends_with("; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"),
        "loopback: no __Host- prefix, no Secure: {cookie}"
    );
    let callback = sign_in(
        &mut browser,
        &world.client,
        world.authorization_server.issuer(),
        authorize,
        "alice-at-acme",
    )
    .await;
    let callback = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{callback:?}");
    assert_eq!(callback.location(), Some("/api/acme/me?view=full"));
    let link = world.link();
    assert!(
        link.refresh_token().is_some(),
        "offline_access yields a refresh token"
    );
    assert!(!format!("{link:?}").contains(link.access_token().expose_secret()));

    // Calls go through with alice's upstream token.
    let first = world.call("/api/acme/me").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first.json()["sub"], "alice-at-acme");
    assert!(first.header("x-request-id").is_some());
    let again = world.call("/api/acme/me").await;
    assert_eq!(
        again.json()["jti"],
        first.json()["jti"],
        "the same token while it is valid"
    );

    // The token expires; the proxy knows when and refreshes before calling (row U3).
    let refresh_token = link.refresh_token().unwrap().expose_secret().to_owned();
    tokio::time::sleep(Duration::from_secs(ACME_TOKEN_TTL + 1)).await;
    let before = world.api_call_count();
    let refreshed = world.call("/api/acme/me").await;
    assert_eq!(refreshed.status, StatusCode::OK, "{refreshed:?}");
    assert_ne!(
        refreshed.json()["jti"],
        first.json()["jti"],
        "a new access token"
    );
    assert_eq!(world.api_calls_since(before), [200], "no failed attempt");
    let rotated = world.link();
    assert_ne!(
        rotated.refresh_token().unwrap().expose_secret(),
        refresh_token,
        "the rotated refresh token was stored"
    );

    // The provider refuses a token the proxy believes valid (say, its clock runs ahead): the
    // proxy refreshes and retries once (row U2); the caller sees only the retried answer.
    world.store.insert(
        LinkKey::new("alice", "acme"),
        rotated.with_expires_in(Duration::from_secs(3600)),
    );
    tokio::time::sleep(Duration::from_secs(ACME_TOKEN_TTL + 1)).await;
    let before = world.api_call_count();
    let retried = world.call("/api/acme/me").await;
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    assert_eq!(
        world.api_calls_since(before),
        [401, 200],
        "refused, refreshed, retried"
    );

    // The grant is revoked at the authorization server (RFC 7009). Once the access token
    // expires, the refresh is refused (invalid_grant): U4, the link marked, its refresh token kept.
    let refresh_token = world
        .link()
        .refresh_token()
        .unwrap()
        .expose_secret()
        .to_owned();
    let revocation = post_form(
        &world.client,
        &format!("{}/token/revocation", world.authorization_server.issuer()),
        &[(header::AUTHORIZATION, basic_auth(ACME_CLIENT, ACME_SECRET))],
        &[
            ("token", &refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(revocation.status, StatusCode::OK, "{revocation:?}");
    tokio::time::sleep(Duration::from_secs(ACME_TOKEN_TTL + 1)).await;
    let revoked = world.call("/api/acme/me").await;
    assert_eq!(revoked.status, StatusCode::FORBIDDEN, "{revoked:?}");
    assert_eq!(
        revoked.header("proxy-status"),
        Some(reauth_status(None).as_str())
    );
    assert_eq!(revoked.header(header::LINK), Some(connect_link.as_str()));
    assert!(
        revoked.header(header::WWW_AUTHENTICATE).is_none(),
        "alice's own token is fine"
    );
    assert_eq!(
        revoked.header(header::CONTENT_TYPE),
        Some("application/problem+json")
    );
    assert!(
        revoked.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("upstream-reauth-required")
    );
    assert!(world.link().needs_reauthorization());
    let marked = world.call("/api/acme/me").await;
    assert_eq!(
        marked.status,
        StatusCode::FORBIDDEN,
        "a marked link is not used"
    );

    // Link again: the new grant replaces the marked link, and calls succeed.
    let callback = world.connect("alice-at-acme", "/api/acme/me", true).await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{callback:?}");
    assert!(!world.link().needs_reauthorization());
    let relinked = world.call("/api/acme/me").await;
    assert_eq!(relinked.status, StatusCode::OK, "{relinked:?}");
    assert_eq!(relinked.json()["sub"], "alice-at-acme");

    // Row U9: a slow provider is a 504, an unreachable one a 502.
    let slow = world.call("/api/acme/slow").await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT, "{slow:?}");
    assert_eq!(
        slow.header("proxy-status"),
        Some("tower-bearer-proxy; error=http_response_timeout")
    );
    world
        .store
        .insert(LinkKey::new("alice", "down"), Link::new("unused"));
    let down = world.call("/api/down/anything").await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{down:?}");
    assert_eq!(
        down.header("proxy-status"),
        Some("tower-bearer-proxy; error=connection_refused")
    );

    // Bodies are forwarded within the limit, refused beyond it; dot segments are refused.
    let post = |size: usize| {
        http::Request::post(format!("{}/api/acme/me", world.proxy))
            .header(header::AUTHORIZATION, format!("Bearer {}", world.caller))
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap()
    };
    let small = send(&world.client, post(100)).await;
    assert_eq!(
        (small.status, &small.body[..]),
        (StatusCode::OK, &b"posted"[..])
    );
    let large = send(&world.client, post(4096)).await;
    assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let before = world.api_call_count();
    let climbing = world.call("/api/acme/%2e%2e/admin").await;
    assert_eq!(climbing.status, StatusCode::BAD_REQUEST);
    // Separators hidden in a segment, which the provider may normalise into real ones.
    for hidden in [
        "/api/acme/x%2F..%2F..%2Fadmin",
        "/api/acme/x%5C..%5Cadmin",
        "/api/acme/a%2fb",
        // A dot segment with path parameters, which servlet containers read as `..`.
        "/api/acme/x/..;/admin",
        "/api/acme/x/%2e%2e%3bjsessionid=1/admin",
        // Overlong UTF-8 forms of `.` and `/`, which old decoders read as the real ones.
        "/api/acme/%C0%AE%C0%AE/admin",
        "/api/acme/x%C0%AFadmin",
    ] {
        let climbing = world.call(hidden).await;
        assert_eq!(climbing.status, StatusCode::BAD_REQUEST, "{hidden}");
    }
    assert_eq!(world.api_call_count(), before, "refused by the proxy");
    // Names that merely start with dots, and path parameters, still go through.
    for allowed in ["/api/acme/..x", "/api/acme/.well-known/x;v=1"] {
        world.call(allowed).await;
    }
    assert_eq!(world.api_call_count(), before + 2, "forwarded");
    // TRACE would have the provider echo the request it got, the user's upstream token in it;
    // CONNECT asks for a tunnel. Both are refused before anything is sent on.
    let before = world.api_call_count();
    let trace = http::Request::builder()
        .method(Method::TRACE)
        .uri(format!("{}/api/acme/echo", world.proxy))
        .header(header::AUTHORIZATION, format!("Bearer {}", world.caller))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let trace = send(&world.client, trace).await;
    assert_eq!(trace.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        trace.header(header::ALLOW),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    // A client sends CONNECT with an authority, never a path: this one is written by hand.
    let address = world.proxy.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "CONNECT /api/acme/echo HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        world.caller
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut connect = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut connect))
        .await
        .expect("the proxy answers CONNECT and closes")
        .unwrap();
    let connect = String::from_utf8_lossy(&connect).to_ascii_lowercase();
    assert!(
        connect.starts_with("http/1.1 405 method not allowed\r\n"),
        "{connect}"
    );
    assert!(
        connect.contains("\r\nallow: get, head, post, put, patch, delete, options\r\n"),
        "{connect}"
    );
    assert_eq!(
        world.api_call_count(),
        before,
        "nothing reached the provider"
    );
    // The request goes on with this proxy's `Via` (RFC 9110 §7.6.3) and the caller's query.
    let echoed = world.call("/api/acme/echo?x=1&y=2").await;
    assert_eq!(echoed.status, StatusCode::OK, "{echoed:?}");
    assert_eq!(
        echoed.json(),
        json!({ "via": "1.1 tower-bearer-proxy", "query": "x=1&y=2" })
    );
    // A second token in the query, however its name is spelled, is an ambiguous request (I2):
    // refused before anything is sent on.
    let before = world.api_calls.lock().unwrap().len();
    let smuggled = world.call("/api/acme/echo?access%5Ftoken=x").await;
    assert_eq!(smuggled.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        smuggled.header(header::WWW_AUTHENTICATE),
        Some(
            format!(
                r#"Bearer realm="e2e", error="invalid_request", resource_metadata="{}/.well-known/oauth-protected-resource""#,
                world.proxy
            )
            .as_str()
        )
    );
    assert_eq!(world.api_calls_since(before), Vec::<u16>::new());

    // The connect flow refuses open redirects, unknown states and callbacks from another browser.
    for target in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let url = format!(
            "{}/connect/acme?return_to={}",
            world.proxy,
            h::form_encode(target)
        );
        let response = h::get_bearer(&world.client, &url, &world.caller).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "return_to={target}"
        );
    }
    let forged = h::get(
        &world.client,
        &format!("{}/connect/acme/callback?code=x&state=forged", world.proxy),
        &[],
    )
    .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    let linked = world.link().access_token().clone();
    let unbound = world.connect("mallory", "/", false).await;
    assert_eq!(unbound.status, StatusCode::BAD_REQUEST, "{unbound:?}");
    assert_eq!(world.link().access_token(), &linked);
    // A stray callback (without the binding, or on another provider's path) does not burn
    // the flow: the real browser's callback still finishes it — once.
    let (mut browser, callback) = world.begin_connect("alice-at-acme", "/done").await;
    let stray = h::get(&world.client, &callback, &[]).await;
    assert_eq!(stray.status, StatusCode::BAD_REQUEST, "{stray:?}");
    let elsewhere = callback.replace("/connect/acme/", "/connect/other/");
    let elsewhere = browser
        .go(&world.client, Method::GET, &elsewhere, None, None)
        .await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST, "{elsewhere:?}");
    let finished = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(finished.status, StatusCode::SEE_OTHER, "{finished:?}");
    assert_eq!(finished.location(), Some("/done"));
    let replayed = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST, "single use");
    assert_eq!(
        world.call("/api/acme/me").await.json()["sub"],
        "alice-at-acme",
        "alice's link is untouched"
    );

    // The metadata and the health check.
    let metadata = h::get(
        &world.client,
        &format!("{}/.well-known/oauth-protected-resource", world.proxy),
        &[],
    )
    .await;
    let metadata: Value = metadata.json();
    assert_eq!(metadata["resource"], world.proxy.as_str());
    assert_eq!(metadata["scopes_supported"], json!(["read"]));
    let health = h::get(&world.client, &format!("{}/healthz", world.proxy), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
}

const VALID: &str = r#"
public_url = "https://gateway.example.com"
realm = "gateway"

[auth]
issuer = "https://login.example.com"
audience = "https://gateway.example.com"

[providers.powerbi]
base_url = "https://api.powerbi.com/v1.0/myorg"
authorize_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
client_id = "id"
client_secret = "secret"
vendor_rules = ["power-bi"]
"#;

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    assert!(Settings::from_toml(VALID).is_ok());
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/proxy/proxy.sample.toml"
    ))
    .unwrap();
    // The sample takes secrets from the environment; the rest must be valid as it stands.
    let sample = sample.replace("client_secret_env = ", "client_secret = ");
    Settings::from_toml(&sample).expect("the sample configuration is valid");

    let cases = [
        (VALID.replace("realm = \"gateway\"\n", ""), "realm"),
        (
            VALID.replace(
                "client_id = \"id\"",
                "client_id = \"id\"\ncliend_secret = \"x\"",
            ),
            "cliend_secret",
        ),
        (
            VALID.replace("https://api.powerbi.com", "http://api.powerbi.com"),
            "providers.powerbi.base_url",
        ),
        (
            VALID.replace(
                "https://gateway.example.com\"\nrealm",
                "https://gateway.example.com/x\"\nrealm",
            ),
            "public_url",
        ),
        (
            VALID.replace("[providers.powerbi]", "[providers.\"Power BI\"]"),
            "providers.Power BI",
        ),
        (
            VALID.replace(
                "client_secret = \"secret\"",
                "client_secret = \"secret\"\nclient_secret_env = \"X\"",
            ),
            "providers.powerbi.client_secret_env",
        ),
        (
            VALID.replace("client_secret = \"secret\"", ""),
            "providers.powerbi.client_secret",
        ),
        (VALID.replace("\"power-bi\"", "\"powerbi\""), "vendor_rules"),
        (
            VALID.replace(
                "realm = \"gateway\"",
                "realm = \"gateway\"\n[limits]\nrequest_timeout_secs = 0",
            ),
            "limits.request_timeout_secs",
        ),
        (
            VALID.replace("[providers.powerbi]", "[auth.x]\n[providers.powerbi]"),
            "x",
        ),
    ];
    for (config, field) in cases {
        let error = Settings::from_toml(&config).expect_err(field).to_string();
        assert!(error.contains(field), "`{field}` not named in: {error}");
        assert!(!error.contains("secret\""), "no secret in: {error}");
    }
}

/// The proxy's server bounds what a client can hold: a request head must arrive within the
/// header-read timeout (a client sending its headers a byte at a time — slowloris — is cut
/// off), and connections beyond the cap wait for a free one.
#[tokio::test]
async fn slow_request_heads_are_cut_off_and_connections_capped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "hello" }));
    let limits = app::serve::ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 1,
    };
    tokio::spawn(app::serve::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));

    // Half a request head, then nothing: the server closes the connection (with or without a
    // 408) once the timeout has passed; the bound below only keeps a broken server from
    // hanging the test.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();

    // Meanwhile, the one connection allowed is taken: a second client waits…
    let second = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    });

    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the slow connection is still open");
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "unexpected answer to a slow head: {rest}"
    );

    // …and is served once the slow one is gone.
    let answer = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second client was never served")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}
