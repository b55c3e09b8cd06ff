//! A request that needs no refresh through the outbound layers, its link in `MemoryStore` vs
//! `SqliteStore` (with its read cache, and without: every load a trip to the file on the
//! blocking pool) vs `RedisStore` (with its read cache, and without: every load a round trip to
//! a `redis-server` on loopback, which the bench starts), in one run.
//!
//! `cargo bench --bench store --features sqlite,redis`
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
    store::{
        Link, LinkKey, MemoryStore, TokenStore,
        crypto::Keyring,
        redis::{DEFAULT_READ_CACHE_TTL, RedisStore},
        sqlite::SqliteStore,
    },
};

// The tests' Redis: a `redis-server` on a free loopback port, stopped when dropped.
#[allow(dead_code)] // raw_bytes and the restarts are for the tests
#[path = "../tests/support/redis.rs"]
mod redis_server;

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

/// The stores compared, in the order of the tables.
const STORES: [&str; 5] = [
    "memory",
    "sqlite (read cache)",
    "sqlite (no cache)",
    "redis (read cache)",
    "redis (no cache)",
];

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tower-bearer-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let redis_server = redis_server::RedisServer::start();
    let keyring = || Keyring::new("k1", [7; 32]);
    let memory = MemoryStore::new();
    memory.insert(key(), valid_link());
    let open = |name: &str| SqliteStore::open(dir.join(name), keyring()).unwrap();
    let sqlite = open("cached.db");
    let sqlite_uncached = open("uncached.db").read_cache(Duration::ZERO, 0);
    let (redis, redis_uncached) = runtime.block_on(async {
        let connect = |prefix: &str, ttl: Duration| {
            RedisStore::builder(redis_server.url(), keyring())
                .prefix(prefix)
                .read_cache(ttl, 10_000)
                .connect()
        };
        let cached = connect("cached", DEFAULT_READ_CACHE_TTL).await.unwrap();
        let uncached = connect("uncached", Duration::ZERO).await.unwrap();
        (cached, uncached)
    });
    runtime.block_on(async {
        sqlite.insert(&key(), valid_link()).await.unwrap();
        sqlite_uncached.insert(&key(), valid_link()).await.unwrap();
        redis.insert(&key(), valid_link()).await.unwrap();
        redis_uncached.insert(&key(), valid_link()).await.unwrap();
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

    // The same five stores over each transport: `$transport` is the inner service.
    macro_rules! clients {
        ($transport:expr) => {
            (
                layered(memory.clone(), $transport),
                layered(sqlite.clone(), $transport),
                layered(sqlite_uncached.clone(), $transport),
                layered(redis.clone(), $transport),
                layered(redis_uncached.clone(), $transport),
            )
        };
    }
    let over_http = clients!(http.clone());
    let in_process = clients!(provider);

    let mut group = c.benchmark_group("store");
    macro_rules! bench {
        ($transport:literal, $clients:expr) => {
            let names = STORES.map(|store| format!("{}/{}", $transport, store.replace(' ', "_")));
            group.bench_function(&names[0], |b| {
                b.iter_custom(|iters| runtime.block_on(run(&$clients.0, &uri, iters)))
            });
            group.bench_function(&names[1], |b| {
                b.iter_custom(|iters| runtime.block_on(run(&$clients.1, &uri, iters)))
            });
            group.bench_function(&names[2], |b| {
                b.iter_custom(|iters| runtime.block_on(run(&$clients.2, &uri, iters)))
            });
            group.bench_function(&names[3], |b| {
                b.iter_custom(|iters| runtime.block_on(run(&$clients.3, &uri, iters)))
            });
            group.bench_function(&names[4], |b| {
                b.iter_custom(|iters| runtime.block_on(run(&$clients.4, &uri, iters)))
            });
        };
    }
    bench!("http", over_http);
    bench!("in_process", in_process);
    group.finish();

    // Interleaved: rounds of each in turn; the median of each, as a ratio to memory.
    const ROUNDS: usize = 15;
    const PER_ROUND: u64 = 400;
    let mut times: [Vec<Duration>; 10] = Default::default();
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            let (a, b, c, d, e) = &over_http;
            times[0].push(run(a, &uri, PER_ROUND).await);
            times[1].push(run(b, &uri, PER_ROUND).await);
            times[2].push(run(c, &uri, PER_ROUND).await);
            times[3].push(run(d, &uri, PER_ROUND).await);
            times[4].push(run(e, &uri, PER_ROUND).await);
            let (a, b, c, d, e) = &in_process;
            times[5].push(run(a, &uri, PER_ROUND * 10).await / 10);
            times[6].push(run(b, &uri, PER_ROUND * 10).await / 10);
            times[7].push(run(c, &uri, PER_ROUND * 10).await / 10);
            times[8].push(run(d, &uri, PER_ROUND * 10).await / 10);
            times[9].push(run(e, &uri, PER_ROUND * 10).await / 10);
        }
    });
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2] / PER_ROUND as u32
    };
    let medians: Vec<Duration> = times.iter_mut().map(median).collect();
    println!("\ninterleaved, {ROUNDS} rounds, median per request (ratio to MemoryStore):");
    for (i, name) in ["http", "in_process"].iter().enumerate() {
        let base = medians[i * STORES.len()];
        for (j, store) in STORES.iter().enumerate() {
            let each = medians[i * STORES.len() + j];
            println!(
                "  {name:>10} {store:<20} {each:>10.2?}  {:.2}x",
                each.as_secs_f64() / base.as_secs_f64()
            );
        }
    }
    drop((sqlite, sqlite_uncached));
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
