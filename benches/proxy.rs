//! The example proxy's whole stack against calling the provider directly, in one run, with the
//! same client: `cargo bench --bench proxy --features axum`.
//!
//! - `proxy/direct`: `GET /v1/me` straight to the provider, with the user's upstream token.
//! - `proxy/through_proxy`: `GET /api/bench/me` to the proxy with the caller's JWT: request id
//!   and access log, JWT validation (verified-token cache on, as configured), scope rule, link
//!   lookup, upstream request rebuilt and sent through `RefreshAndRetry` + `ClassifyUpstream` +
//!   timeout, response handed back.
//!
//! The provider answers after [`PROVIDER_LATENCY`] — a fast API; third-party APIs are usually
//! slower — with [`CONCURRENCY`] requests in flight over a keep-alive pool, everything on
//! loopback in this process. Criterion reports the time per request (the inverse of
//! throughput); at the end an interleaved A/B run prints the throughput ratio (target ≥ 0.90)
//! and the proxy's added latency per request.

#[allow(dead_code)] // main.rs uses all of the example; the benchmark a part.
#[path = "../examples/proxy/app.rs"]
mod app;

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
use criterion::{Criterion, Throughput};
use http::{HeaderMap, Request, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{net::TcpListener, runtime::Runtime};
use tower_bearer::{
    emit::Disclosure,
    upstream::store::{Link, LinkKey, MemoryStore},
};

/// How long the provider takes to answer.
const PROVIDER_LATENCY: Duration = Duration::from_millis(5);
/// Requests in flight.
const CONCURRENCY: usize = 16;
const UPSTREAM_TOKEN: &str = "upstream-access-token";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One target: a URL and the bearer token to send it.
#[derive(Clone)]
struct Target {
    url: Arc<str>,
    authorization: Arc<str>,
}

struct Bench {
    runtime: Runtime,
    client: HttpClient,
    direct: Target,
    proxied: Target,
}

fn setup() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (direct, proxied) = runtime.block_on(async {
        let provider = serve(provider()).await;
        let idp = Idp::start().await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let store = MemoryStore::new();
        store.insert(
            LinkKey::new("bench-user", "bench"),
            Link::new(UPSTREAM_TOKEN)
                .with_refresh_token("unused")
                .with_expires_in(Duration::from_secs(24 * 3600)),
        );
        let router = app::build(settings(&public_url, idp.issuer(), &provider), store)
            .await
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let caller = idp.token("bench-user", "api", &public_url);
        (
            Target {
                url: format!("{provider}/v1/me").into(),
                authorization: format!("Bearer {UPSTREAM_TOKEN}").into(),
            },
            Target {
                url: format!("{public_url}/api/bench/me").into(),
                authorization: format!("Bearer {caller}").into(),
            },
        )
    });
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build_http();
    Bench {
        runtime,
        client,
        direct,
        proxied,
    }
}

/// The provider: checks the bearer token, takes its time, answers a small JSON document.
fn provider() -> Router {
    Router::new().route(
        "/v1/me",
        get(|headers: HeaderMap| async move {
            tokio::time::sleep(PROVIDER_LATENCY).await;
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
            "bench".to_owned(),
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

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// Sends `requests` requests to `target`, `CONCURRENCY` at a time; returns the elapsed time.
async fn load(client: &HttpClient, target: &Target, requests: u64) -> Duration {
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY as u64)
        .map(|worker| {
            let (client, target) = (client.clone(), target.clone());
            // Spread `requests` over the workers as evenly as possible.
            let share =
                requests / CONCURRENCY as u64 + u64::from(worker < requests % CONCURRENCY as u64);
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

fn bench(c: &mut Criterion, setup: &Bench) {
    let mut group = c.benchmark_group("proxy");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    for (name, target) in [("direct", &setup.direct), ("through_proxy", &setup.proxied)] {
        group.bench_function(name, |b| {
            b.iter_custom(|requests| {
                setup
                    .runtime
                    .block_on(load(&setup.client, target, requests))
            });
        });
    }
    group.finish();
}

/// Alternates one-second rounds of each, so that load from elsewhere on the machine weighs on
/// both alike; prints the throughput ratio and the latency the proxy adds.
fn ratio(setup: &Bench) {
    const ROUND: u64 = 2_000;
    let (mut direct, mut proxied) = (Duration::ZERO, Duration::ZERO);
    let rounds = 6;
    setup.runtime.block_on(async {
        for _ in 0..rounds {
            direct += load(&setup.client, &setup.direct, ROUND).await;
            proxied += load(&setup.client, &setup.proxied, ROUND).await;
        }
    });
    let requests = (ROUND * rounds) as f64;
    let (direct_rps, proxied_rps) = (
        requests / direct.as_secs_f64(),
        requests / proxied.as_secs_f64(),
    );
    // With CONCURRENCY in flight, latency = CONCURRENCY / throughput.
    let added = CONCURRENCY as f64 * (1.0 / proxied_rps - 1.0 / direct_rps) * 1e6;
    println!(
        "\nproxy throughput ratio (interleaved, {CONCURRENCY} in flight, provider latency {PROVIDER_LATENCY:?}): \
         direct {direct_rps:.0} req/s, through the proxy {proxied_rps:.0} req/s, ratio {:.3} \
         (target ≥ 0.90); the proxy adds {added:.0} µs per request",
        proxied_rps / direct_rps
    );
}

fn main() {
    let setup = setup();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &setup);
    criterion.final_summary();
    // `cargo test --benches` runs each benchmark once to check it; the ratio needs a real run.
    if !std::env::args().any(|arg| arg == "--test") {
        ratio(&setup);
    }
}
