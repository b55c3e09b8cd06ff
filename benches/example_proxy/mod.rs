//! What the proxy benchmarks share: the example proxy (`examples/proxy/app.rs`) set up with one
//! linked user, the provider it calls, and a load generator.

#[allow(dead_code)] // main.rs uses all of the example; the benchmarks a part.
#[path = "../../examples/proxy/app.rs"]
pub mod app;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use app::{
    config::{AuthSettings, ClientAuth, Limits, ProviderSettings, Settings, StoreSettings},
    demo::idp::Idp,
};
use axum::{Json, Router, routing::get};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower_bearer::{
    emit::Disclosure,
    upstream::store::{Link, LinkKey, MemoryStore},
};

/// The user's upstream access token, which the provider expects.
pub const UPSTREAM_TOKEN: &str = "upstream-access-token";

/// The provider's name at the proxy: callers send `GET /api/bench/me`.
pub const PROVIDER: &str = "bench";

/// The caller, linked at the provider.
pub const USER: &str = "bench-user";

/// The example proxy at `public_url` (where its listener is bound) in front of the provider at
/// `provider`, with the user `bench-user` linked there; and the `Authorization` value of that
/// user's requests to the proxy. The proxy's identity provider (the demo's) runs in this
/// process until it ends.
pub async fn example_proxy(public_url: &str, provider: &str) -> (app::Proxy, String) {
    let idp = Idp::start().await.unwrap();
    let store = MemoryStore::new();
    store.insert(
        LinkKey::new(USER, PROVIDER),
        Link::new(UPSTREAM_TOKEN)
            .with_refresh_token("unused")
            .with_expires_in(Duration::from_secs(24 * 3600)),
    );
    let proxy = app::build(settings(public_url, idp.issuer(), provider), store)
        .await
        .unwrap();
    let caller = idp.token(USER, "api", public_url);
    (proxy, format!("Bearer {caller}"))
}

/// The provider: checks the bearer token, takes `latency`, answers a small JSON document.
pub fn provider(latency: Duration) -> Router {
    Router::new().route(
        "/v1/me",
        get(move |headers: HeaderMap| async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let expected = format!("Bearer {UPSTREAM_TOKEN}");
            if headers
                .get(AUTHORIZATION)
                .is_none_or(|v| v != expected.as_str())
            {
                return Err(StatusCode::UNAUTHORIZED);
            }
            Ok(Json(
                serde_json::json!({ "account": "bench", "scopes": ["profile"] }),
            ))
        }),
    )
}

fn settings(public_url: &str, issuer: &str, provider: &str) -> Settings {
    let loopback = |path: &str| format!("{provider}{path}").parse().unwrap();
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: public_url.to_owned(),
        realm: "bench".to_owned(),
        proxy_name: "tower-bearer-proxy".to_owned(),
        disclosure: Disclosure::Minimal,
        auth: AuthSettings {
            issuer: issuer.to_owned(),
            audience: public_url.to_owned(),
            scopes: vec!["api".to_owned()],
            token_type: Some("at+jwt".to_owned()),
        },
        limits: Limits::default(),
        providers: [(
            PROVIDER.to_owned(),
            ProviderSettings {
                base_url: format!("{provider}/v1"),
                authorize_url: loopback("/authorize"),
                token_url: loopback("/token"),
                revocation_url: None,
                issuer: None,
                iss_parameter_supported: false,
                client_id: "bench".to_owned(),
                client_secret: None,
                client_auth: ClientAuth::None,
                scopes: Vec::new(),
                resource: None,
                authorize_params: Default::default(),
                refresh_skew: Duration::from_secs(60),
                rules: Vec::new(),
            },
        )]
        .into(),
        store: StoreSettings::Memory,
        cors_origins: Vec::new(),
    }
}

/// The load generator's client: hyper-util's, over plain HTTP, keeping its connections.
pub type LoadClient = Client<HttpConnector, Full<Bytes>>;

/// A client keeping up to `connections` idle connections.
pub fn load_client(connections: usize) -> LoadClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .build_http()
}

/// One target: a URL and the `Authorization` value to send it.
#[derive(Clone)]
pub struct Target {
    pub url: Arc<str>,
    pub authorization: Arc<str>,
}

/// Sends `requests` requests to `target`, `concurrency` at a time, each answered `200`;
/// returns the elapsed time.
pub async fn load(
    client: &LoadClient,
    target: &Target,
    concurrency: usize,
    requests: u64,
) -> Duration {
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency as u64)
        .map(|worker| {
            let (client, target) = (client.clone(), target.clone());
            // Spread `requests` over the workers as evenly as possible.
            let share =
                requests / concurrency as u64 + u64::from(worker < requests % concurrency as u64);
            tokio::spawn(async move {
                for _ in 0..share {
                    let request = Request::get(&*target.url)
                        .header(AUTHORIZATION, &*target.authorization)
                        .body(Full::default())
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    response.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed()
}
