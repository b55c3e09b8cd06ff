//! The link lifecycle over real HTTP: the example proxy (which mounts `connect::routes`) and the
//! demo provider (rotating refresh tokens, RFC 9207 `iss` in its redirects, an RFC 7009
//! revocation endpoint that records what it revoked). Each step of the flow: the JSON start
//! for scripts, single use, the binding, RFC 9207's mix-up check, a stray callback that does not
//! burn the flow, a denial, listing, re-linking and unlinking with revocation, CORS for another
//! origin — and the code exchange with `expires_in` as a number and as a string.

#[allow(dead_code)] // main.rs uses all of the example; these tests use a part.
#[path = "../examples/proxy/app.rs"]
mod app;
mod support;

use std::time::{Duration, SystemTime};

use app::{
    config::{AuthSettings, Limits, Settings, StoreSettings},
    demo::{
        idp::Idp,
        provider::{ACCOUNT, Provider},
    },
};
use http::{Method, StatusCode, header};
use serde_json::Value;
use support::http::{self as h, Browser, Reply, TestClient};
use tokio::net::TcpListener;
use tower_bearer::upstream::store::{LinkKey, MemoryStore};

const PROVIDER: &str = "demo";
const APP_ORIGIN: &str = "http://app.test:5173";

struct World {
    proxy: String,
    idp: Idp,
    provider: Provider,
    store: MemoryStore,
    client: TestClient,
}

async fn world() -> World {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let idp = Idp::start().await.unwrap();
    let provider = Provider::start(format!("{proxy}/connect/{PROVIDER}/callback"))
        .await
        .unwrap();
    let settings = Settings {
        listen: listener.local_addr().unwrap(),
        public_url: proxy.clone(),
        realm: "test".into(),
        proxy_name: "proxy".into(),
        disclosure: tower_bearer::emit::Disclosure::Minimal,
        auth: AuthSettings {
            issuer: idp.issuer().to_owned(),
            audience: proxy.clone(),
            scopes: vec!["api".into()],
            token_type: Some("at+jwt".into()),
        },
        limits: Limits::default(),
        providers: [(PROVIDER.to_owned(), provider.settings())].into(),
        store: StoreSettings::Memory,
        cors_origins: vec![APP_ORIGIN.to_owned()],
    };
    let store = MemoryStore::new();
    let service = app::build(settings, store.clone()).await.unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, tower::make::Shared::new(service)).await;
    });
    World {
        proxy,
        idp,
        provider,
        store,
        client: h::client(),
    }
}

impl World {
    fn token(&self) -> String {
        self.idp.token("alice", "openid api", &self.proxy)
    }

    fn key(&self) -> LinkKey {
        LinkKey::new("alice", PROVIDER)
    }

    /// `POST /connect/demo` as a script: the authorization URL, and the browser with the
    /// binding cookie.
    async fn start(&self) -> (Browser, String) {
        let mut browser = Browser::default();
        let url = format!("{}/connect/{PROVIDER}", self.proxy);
        let started = browser
            .go(&self.client, Method::POST, &url, None, Some(&self.token()))
            .await;
        assert_eq!(started.status, StatusCode::OK, "{started:?}");
        assert_eq!(started.header(header::CACHE_CONTROL), Some("no-store"));
        let json = started.json();
        assert_eq!(json["expires_in"], 600);
        let authorization = json["authorization_url"].as_str().unwrap().to_owned();
        let cookie = started.header(header::SET_COOKIE).unwrap();
        assert!(
            cookie.starts_with("tb-connect=")
                && cookie.ends_with("; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        (browser, authorization)
    }

    /// The provider's consent: where it sends the browser back (the callback URL).
    async fn consent(&self, authorization: &str) -> String {
        let answer = h::get(&self.client, authorization, &[]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        answer.location().unwrap().to_owned()
    }

    async fn links(&self) -> Value {
        let answer = h::get_bearer(
            &self.client,
            &format!("{}/links", self.proxy),
            &self.token(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.header(header::CACHE_CONTROL), Some("no-store"));
        answer.json()
    }

    async fn unlink(&self) -> Reply {
        let mut browser = Browser::default();
        let url = format!("{}/links/{PROVIDER}", self.proxy);
        browser
            .go(
                &self.client,
                Method::DELETE,
                &url,
                None,
                Some(&self.token()),
            )
            .await
    }
}

/// `url` with its `name` query parameter set to `value` (or removed, for `None`).
fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.starts_with(&format!("{name}=")))
        .map(str::to_owned)
        .collect();
    if let Some(value) = value {
        pairs.push(format!("{name}={}", h::form_encode(value)));
    }
    format!("{base}?{}", pairs.join("&"))
}

const CONNECTED_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Connected</title>\
    <p>Your demo account is connected. You can close this page.</p>";

#[tokio::test]
async fn a_flow_is_checked_before_it_is_taken_and_taken_once() {
    let world = world().await;
    let (mut browser, authorization) = world.start().await;
    for param in [
        "response_type=code",
        "code_challenge_method=S256",
        "state=",
        "code_challenge=",
        "scope=profile",
    ] {
        assert!(authorization.contains(param), "{param} in {authorization}");
    }
    let callback = world.consent(&authorization).await;
    let iss = callback
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("iss="))
        .map(|iss| percent_encoding::percent_decode_str(iss).decode_utf8_lossy());
    assert_eq!(iss.as_deref(), Some(world.provider.base_url()), "RFC 9207");

    // None of these burns the flow: each is refused before it is taken.
    let wrong_iss = with_param(&callback, "iss", Some("https://evil.example"));
    let no_iss = with_param(&callback, "iss", None);
    let other_provider = callback.replace("/connect/demo/", "/connect/other/");
    for (stray, why) in [
        (
            &wrong_iss,
            "an authorization response from another issuer (RFC 9207)",
        ),
        (&no_iss, "no iss although the provider advertises it"),
        (&other_provider, "another provider's callback path"),
    ] {
        let answer = browser
            .go(&world.client, Method::GET, stray, None, None)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{why}: {answer:?}");
    }
    let without_binding = h::get(&world.client, &callback, &[]).await;
    assert_eq!(without_binding.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        without_binding.json()["title"],
        "the connect flow was started in another browser"
    );

    // The real browser's callback finishes it (the PKCE verifier checked by the provider), once.
    let finished = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(finished.status, StatusCode::OK, "{finished:?}");
    assert_eq!(String::from_utf8_lossy(&finished.body), CONNECTED_PAGE);
    assert_eq!(finished.header(header::CACHE_CONTROL), Some("no-store"));
    assert_eq!(
        finished.header(header::SET_COOKIE),
        Some("tb-connect=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
    );
    assert!(world.store.get(&world.key()).is_some());
    let replayed = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert_eq!(replayed.json()["title"], "unknown or expired connect flow");

    // The link works.
    let me = format!("{}/api/{PROVIDER}/me", world.proxy);
    let call = h::get_bearer(&world.client, &me, &world.token()).await;
    assert_eq!(call.status, StatusCode::OK, "{call:?}");
}

#[tokio::test]
async fn a_denied_consent_ends_the_flow() {
    let world = world().await;
    let (mut browser, authorization) = world.start().await;
    let callback = world.consent(&authorization).await;
    let denied = with_param(
        &with_param(&callback, "code", None),
        "error",
        Some("access_denied"),
    );
    let answer = browser
        .go(&world.client, Method::GET, &denied, None, None)
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert_eq!(
        answer.json()["title"],
        "access was not granted at the provider (access_denied)"
    );
    let after = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(after.status, StatusCode::BAD_REQUEST, "the flow is over");
    assert!(world.store.get(&world.key()).is_none());
}

#[tokio::test]
async fn links_are_listed_relinked_and_unlinked_with_revocation() {
    let world = world().await;
    assert_eq!(world.links().await, serde_json::json!({ "links": [] }));
    world
        .store
        .insert(world.key(), world.provider.grant(ACCOUNT));

    let links = world.links().await;
    let link = &links["links"][0];
    assert_eq!(link["provider"], PROVIDER);
    assert_eq!(link["state"], "connected");
    assert_eq!(link["scopes"], serde_json::json!(["profile"]));
    assert_eq!(link["connect"], "/connect/demo");
    let expires_at = link["expires_at"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 290..=now + 300).contains(&expires_at),
        "{expires_at}"
    );
    let body = serde_json::to_string(&links).unwrap();
    let stored = world.store.get(&world.key()).unwrap();
    assert!(!body.contains(stored.access_token().expose_secret()));
    assert!(!body.contains(stored.refresh_token().unwrap().expose_secret()));

    // Re-linking revokes the grant it replaces.
    let before = world.provider.refresh_stats();
    let (mut browser, authorization) = world.start().await;
    let callback = world.consent(&authorization).await;
    let finished = browser
        .go(&world.client, Method::GET, &callback, None, None)
        .await;
    assert_eq!(finished.status, StatusCode::OK, "{finished:?}");
    assert_eq!(world.provider.refresh_stats().revoked, before.revoked + 1);
    let relinked = world.store.get(&world.key()).unwrap();
    assert_ne!(relinked.refresh_token(), stored.refresh_token());

    // Unlinking revokes it and removes it; a second unlink finds nothing.
    let unlinked = world.unlink().await;
    assert_eq!(unlinked.status, StatusCode::OK, "{unlinked:?}");
    assert_eq!(
        unlinked.json(),
        serde_json::json!({ "provider": "demo", "revoked": true })
    );
    assert_eq!(world.provider.refresh_stats().revoked, before.revoked + 2);
    assert!(world.store.get(&world.key()).is_none());
    assert_eq!(world.links().await, serde_json::json!({ "links": [] }));
    assert_eq!(world.unlink().await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_origins_script_reads_which_side_failed() {
    let world = world().await;
    let me = format!("{}/api/{PROVIDER}/me", world.proxy);
    let preflight = h::send(
        &world.client,
        http::Request::builder()
            .method(Method::OPTIONS)
            .uri(&me)
            .header(header::ORIGIN, APP_ORIGIN)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK, "{preflight:?}");
    assert_eq!(
        preflight.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(APP_ORIGIN)
    );
    // Not linked: U4, and a script on the app's origin can read its signals.
    let answer = h::get(
        &world.client,
        &me,
        &[
            ("origin", APP_ORIGIN),
            ("authorization", &format!("Bearer {}", world.token())),
            ("accept", "text/html"),
            ("sec-fetch-mode", "cors"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(APP_ORIGIN)
    );
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_EXPOSE_HEADERS),
        Some("www-authenticate,proxy-status,link,retry-after,x-request-id")
    );
    assert!(answer.header("proxy-status").is_some());
    assert!(answer.header(header::LINK).is_some());
    // Another origin gets no CORS answer.
    let stranger = h::get(&world.client, &me, &[("origin", "http://evil.test")]).await;
    assert_eq!(stranger.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
}

/// The code exchange against a token endpoint that answers `expires_in` as `answer` says.
async fn exchanged_lifetime(expires_in: &'static str) -> Duration {
    use axum::{Router, routing::post};
    use tower_bearer::{
        http_client::HttpClient,
        upstream::{
            connect::{Callback, Connector},
            grant::OAuthClient,
        },
    };

    let token_endpoint = h::serve(Router::new().route(
        "/token",
        post(move || async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                format!(
                    r#"{{"access_token":"at","token_type":"bearer","refresh_token":"rt","expires_in":{expires_in}}}"#
                ),
            )
        }),
    ))
    .await;
    let http = HttpClient::new(h::client::<http_body_util::Full<bytes::Bytes>>());
    let connector = Connector::new(
        "p",
        "https://p.example/authorize".parse().unwrap(),
        format!("{token_endpoint}/token").parse().unwrap(),
        OAuthClient::new(http, "id"),
        "https://gw.example/connect/p/callback",
    );
    let store = MemoryStore::new();
    let started = connector
        .start(&store, LinkKey::new("alice", "p"), None, None)
        .await
        .unwrap();
    let state = started
        .authorization_url()
        .split('&')
        .find_map(|pair| pair.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let callback = Callback {
        state: Some(state),
        code: Some("c".into()),
        ..Callback::default()
    };
    let connected = connector
        .finish(&store, &callback, Some(started.binding().expose_secret()))
        .await
        .unwrap();
    let link = store.get(&connected.key).unwrap();
    assert_eq!(link.refresh_token().unwrap().expose_secret(), "rt");
    link.expires_at()
        .unwrap()
        .duration_since(link.issued_at().unwrap())
        .unwrap()
}

#[tokio::test]
async fn expires_in_is_read_as_a_number_and_as_a_string() {
    assert_eq!(exchanged_lifetime("3600").await, Duration::from_secs(3600));
    assert_eq!(
        exchanged_lifetime("\"3600\"").await,
        Duration::from_secs(3600)
    );
}
