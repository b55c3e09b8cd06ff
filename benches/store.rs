//! A request that needs no refresh through the outbound layers, its link in `MemoryStore` vs
//! `SqliteStore` (with its read cache, and without: every load a trip to the file on the
//! blocking pool), in one run.
//!
//! `cargo bench --bench store --features sqlite`
//!
//! - `store/http/*`: through hyper-util's client to a local axum server over real HTTP.
//! - `store/in_process/*`: to an in-process service, which isolates the layers' and the store's
//!   own cost.
//!
//! Criterion measures each on its own; then the stores are measured interleaved (rounds of
//! each in turn, so that drift of the machine hits all alike) and printed as ratios to
//! `MemoryStore`.

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use axum::{Router, body::Body};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::upstream::{
    classify::ClassifyUpstreamLayer,
    grant::refresher_fn,
    refresh::{RefreshAndRetryLayer, RetryBody},
    store::{Link, LinkKey, MemoryStore, TokenStore, crypto::Keyring, sqlite::SqliteStore},
};

const PAYLOAD: &[u8] = br#"{"query":"select 1"}"#;

fn key() -> LinkKey {
    LinkKey::new("user-1", "acme")
}

fn valid_link() -> Link {
    Link::new("good")
        .with_refresh_token("rt")
        .with_expires_in(Duration::from_secs(24 * 3600))
}

fn request(uri: &str) -> Request<Full<Bytes>> {
    let mut request = Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(PAYLOAD)))
        .unwrap();
    request.extensions_mut().insert(key());
    request
}

async fn drain<B: http_body::Body>(response: Response<B>) -> usize
where
    B::Error: std::fmt::Debug,
{
    assert_eq!(response.status(), StatusCode::OK);
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

/// The outbound layers over `store` and `inner`.
fn layered<St, S, B>(
    store: St,
    inner: S,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<tower_bearer::upstream::body::UpstreamBody<B>>,
    Error = tower_bearer::upstream::UpstreamError,
> + Clone
where
    St: TokenStore,
    S: Service<Request<RetryBody<Full<Bytes>>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
{
    ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new(
            "acme",
            store,
            refresher_fn(|_| async { panic!("no refresh expected") }),
        ))
        .layer(ClassifyUpstreamLayer::new())
        .service(inner)
}

/// `n` requests through `client`; how long they took.
async fn run<C, B>(client: &C, uri: &str, n: u64) -> Duration
where
    C: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    C::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..n {
        black_box(drain(client.clone().oneshot(request(uri)).await.unwrap()).await);
    }
    start.elapsed()
}

fn stores(dir: &std::path::Path) -> (MemoryStore, SqliteStore, SqliteStore) {
    let memory = MemoryStore::new();
    memory.insert(key(), valid_link());
    let open = |name: &str| SqliteStore::open(dir.join(name), Keyring::new("k1", [7; 32])).unwrap();
    let cached = open("cached.db");
    let uncached = open("uncached.db").read_cache(Duration::ZERO, 0);
    (memory, cached, uncached)
}

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tower-bearer-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (memory, cached, uncached) = stores(&dir);
    runtime.block_on(async {
        cached.insert(&key(), valid_link()).await.unwrap();
        uncached.insert(&key(), valid_link()).await.unwrap();
    });
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().fallback(|request: Request<Body>| async move {
            let ok = request
                .headers()
                .get(AUTHORIZATION)
                .is_some_and(|v| v == "Bearer good");
            let body = request.into_body().collect().await.unwrap().to_bytes();
            Response::builder()
                .status(if ok { 200 } else { 401 })
                .body(Body::from(body))
                .unwrap()
        });
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    });
    let uri = format!("http://{addr}/query");
    let http = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let provider = service_fn(|request: Request<RetryBody<Full<Bytes>>>| async move {
        let ok = request.headers()[AUTHORIZATION] == "Bearer good";
        let status = if ok { 200 } else { 401 };
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"ok")))
                .unwrap(),
        )
    });

    let http_memory = layered(memory.clone(), http.clone());
    let http_cached = layered(cached.clone(), http.clone());
    let http_uncached = layered(uncached.clone(), http.clone());
    let local_memory = layered(memory.clone(), provider);
    let local_cached = layered(cached.clone(), provider);
    let local_uncached = layered(uncached.clone(), provider);

    let mut group = c.benchmark_group("store");
    macro_rules! bench {
        ($name:literal, $client:expr) => {
            group.bench_function($name, |b| {
                b.iter_custom(|iters| runtime.block_on(run(&$client, &uri, iters)))
            });
        };
    }
    bench!("http/memory", http_memory);
    bench!("http/sqlite", http_cached);
    bench!("http/sqlite_uncached", http_uncached);
    bench!("in_process/memory", local_memory);
    bench!("in_process/sqlite", local_cached);
    bench!("in_process/sqlite_uncached", local_uncached);
    group.finish();

    // Interleaved: rounds of each in turn; the median of each, as a ratio to memory.
    const ROUNDS: usize = 15;
    const PER_ROUND: u64 = 400;
    let mut times: [Vec<Duration>; 6] = Default::default();
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            times[0].push(run(&http_memory, &uri, PER_ROUND).await);
            times[1].push(run(&http_cached, &uri, PER_ROUND).await);
            times[2].push(run(&http_uncached, &uri, PER_ROUND).await);
            times[3].push(run(&local_memory, &uri, PER_ROUND * 10).await / 10);
            times[4].push(run(&local_cached, &uri, PER_ROUND * 10).await / 10);
            times[5].push(run(&local_uncached, &uri, PER_ROUND * 10).await / 10);
        }
    });
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2] / PER_ROUND as u32
    };
    let medians: Vec<Duration> = times.iter_mut().map(median).collect();
    println!("\ninterleaved, {ROUNDS} rounds, median per request (ratio to MemoryStore):");
    for (i, name) in ["http", "in_process"].iter().enumerate() {
        let base = medians[i * 3];
        for (j, store) in ["memory", "sqlite (read cache)", "sqlite (no cache)"]
            .iter()
            .enumerate()
        {
            let each = medians[i * 3 + j];
            println!(
                "  {name:>10} {store:<20} {each:>10.2?}  {:.2}x",
                each.as_secs_f64() / base.as_secs_f64()
            );
        }
    }
    drop((cached, uncached));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = store
}
criterion_main!(benches);
