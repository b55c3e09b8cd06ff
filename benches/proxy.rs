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

mod example_proxy;

use std::time::Duration;

use criterion::{Criterion, Throughput};
use example_proxy::{LoadClient, Target, UPSTREAM_TOKEN, load, load_client};
use tokio::{net::TcpListener, runtime::Runtime};

/// How long the provider takes to answer.
const PROVIDER_LATENCY: Duration = Duration::from_millis(5);
/// Requests in flight.
const CONCURRENCY: usize = 16;

struct Bench {
    runtime: Runtime,
    client: LoadClient,
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
        let provider = serve(example_proxy::provider(PROVIDER_LATENCY)).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let (proxy, authorization) = example_proxy::example_proxy(&public_url, &provider).await;
        tokio::spawn(async move { axum::serve(listener, tower::make::Shared::new(proxy)).await });
        (
            Target {
                url: format!("{provider}/v1/me").into(),
                authorization: format!("Bearer {UPSTREAM_TOKEN}").into(),
            },
            Target {
                url: format!("{public_url}/api/{}/me", example_proxy::PROVIDER).into(),
                authorization: authorization.into(),
            },
        )
    });
    Bench {
        runtime,
        client: load_client(CONCURRENCY * 2),
        direct,
        proxied,
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
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
                    .block_on(load(&setup.client, target, CONCURRENCY, requests))
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
            direct += load(&setup.client, &setup.direct, CONCURRENCY, ROUND).await;
            proxied += load(&setup.client, &setup.proxied, CONCURRENCY, ROUND).await;
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
