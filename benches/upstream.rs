//! The outbound layers (`RefreshAndRetry` + `ClassifyUpstream`) against the bare client, in one
//! run, and the refresh storm.
//!
//! `cargo bench --bench upstream` (criterion), or `cargo bench --bench upstream --
//! --instructions` (instructions per request of the in-process variants and per refresh storm,
//! counted by valgrind's callgrind: this binary runs itself under it, with `--measure VARIANT`,
//! collecting only inside `measured`, setup excluded; on a current-thread runtime, so that the
//! spawned requests of a storm run inside it too).
//!
//! - `no_refresh/*`: a request whose stored token is valid, through hyper-util's client to a
//!   local axum server over real HTTP (`http/…`) and to an in-process service (`in_process/…`,
//!   which isolates the layers' own cost: store lookup, `Authorization`, body buffering for
//!   replay, classification, hop-by-hop filtering).
//! - `refresh_storm/100`: 100 concurrent requests whose token the provider rejects; each storm
//!   ends with every request answered `200` after a single refresh (the number of refreshes per
//!   storm is printed at the end).

use std::{
    convert::Infallible,
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body};
use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::upstream::{
    UpstreamError,
    body::UpstreamBody,
    classify::ClassifyUpstreamLayer,
    grant::{TokenResponse, refresher_fn},
    refresh::{RefreshAndRetryLayer, RetryBody},
    store::Link,
    store::LinkKey,
    store::MemoryStore,
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
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(PAYLOAD)))
        .unwrap()
}

/// A refresher that must not be called on the no-refresh path.
fn no_refresher() -> impl tower_bearer::upstream::grant::Refresher {
    refresher_fn(|_| async { panic!("no refresh expected") })
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

/// The in-process provider: accepts the token `good`, echoes the body.
fn local_provider() -> impl Service<
    Request<RetryBody<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send {
    service_fn(|request: Request<RetryBody<Full<Bytes>>>| async move {
        let ok = request
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v == "Bearer good");
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let mut response = Response::new(Full::new(body));
        if !ok {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        Ok::<_, Infallible>(response)
    })
}

/// The layers over an in-process provider, as the benchmarks call them.
trait Layered:
    Service<
        Request<Full<Bytes>>,
        Response = Response<UpstreamBody<Full<Bytes>>>,
        Error = UpstreamError,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> Layered for T where
    T: Service<
            Request<Full<Bytes>>,
            Response = Response<UpstreamBody<Full<Bytes>>>,
            Error = UpstreamError,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

/// The layers over [`local_provider`], with the links of `store`.
fn local_layered(store: &MemoryStore) -> impl Layered {
    ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new(
            "acme",
            store.clone(),
            no_refresher(),
        ))
        .layer(ClassifyUpstreamLayer::new())
        .service(local_provider())
}

/// `n` requests with the token set, straight to `provider`.
async fn bare_requests<S>(provider: &mut S, uri: &str, n: u64)
where
    S: Service<Request<RetryBody<Full<Bytes>>>, Response = Response<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let mut request = request(uri).map(|body| RetryBody::chained(Bytes::new(), body));
        request
            .headers_mut()
            .insert(AUTHORIZATION, "Bearer good".parse().unwrap());
        let response = provider.ready().await.unwrap().call(request).await.unwrap();
        black_box(drain(response).await);
    }
}

/// `n` requests of the linked user through `layered`.
async fn layered_requests<S, B>(layered: &mut S, uri: &str, n: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let mut request = request(uri);
        request.extensions_mut().insert(key());
        let response = layered.ready().await.unwrap().call(request).await.unwrap();
        black_box(drain(response).await);
    }
}

fn no_refresh(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
    let store = MemoryStore::new();
    store.insert(key(), valid_link());

    let bare = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = Client::builder(TokioExecutor::new()).build_http::<RetryBody<Full<Bytes>>>();
    let layered_http = ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new(
            "acme",
            store.clone(),
            no_refresher(),
        ))
        .layer(ClassifyUpstreamLayer::new())
        .service(client);
    // In process: the layers' own cost.
    let provider = local_provider();
    let layered_local = local_layered(&store);

    // `n` requests of each variant; how long they took.
    let bare_http = |n: u64| {
        let (bare, uri) = (bare.clone(), uri.clone());
        async move {
            let start = Instant::now();
            for _ in 0..n {
                let mut request = request(&uri);
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, "Bearer good".parse().unwrap());
                black_box(drain(bare.request(request).await.unwrap()).await);
            }
            start.elapsed()
        }
    };
    let layers_http = |n: u64| {
        let (layered, uri) = (layered_http.clone(), uri.clone());
        async move {
            let start = Instant::now();
            for _ in 0..n {
                let mut request = request(&uri);
                request.extensions_mut().insert(key());
                black_box(drain(layered.clone().oneshot(request).await.unwrap()).await);
            }
            start.elapsed()
        }
    };
    let bare_local = |n: u64| {
        let (mut provider, uri) = (provider.clone(), uri.clone());
        async move {
            let start = Instant::now();
            bare_requests(&mut provider, &uri, n).await;
            start.elapsed()
        }
    };
    let layers_local = |n: u64| {
        let (mut layered, uri) = (layered_local.clone(), uri.clone());
        async move {
            let start = Instant::now();
            layered_requests(&mut layered, &uri, n).await;
            start.elapsed()
        }
    };

    let mut group = c.benchmark_group("no_refresh");
    group.bench_function("http/bare_client", |b| {
        b.iter_custom(|iters| runtime.block_on(bare_http(iters)))
    });
    group.bench_function("http/layered", |b| {
        b.iter_custom(|iters| runtime.block_on(layers_http(iters)))
    });
    group.bench_function("in_process/bare_service", |b| {
        b.iter_custom(|iters| runtime.block_on(bare_local(iters)))
    });
    group.bench_function("in_process/layered", |b| {
        b.iter_custom(|iters| runtime.block_on(layers_local(iters)))
    });
    group.finish();

    // Interleaved: rounds of each variant in turn, so that drift of the machine hits all alike;
    // the median of each, and the layers' cost as a ratio and a difference.
    const ROUNDS: usize = 15;
    const PER_ROUND: u64 = 400;
    let mut times: [Vec<Duration>; 4] = Default::default();
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            times[0].push(bare_http(PER_ROUND).await / PER_ROUND as u32);
            times[1].push(layers_http(PER_ROUND).await / PER_ROUND as u32);
            times[2].push(bare_local(PER_ROUND * 10).await / (PER_ROUND * 10) as u32);
            times[3].push(layers_local(PER_ROUND * 10).await / (PER_ROUND * 10) as u32);
        }
    });
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let [http_bare, http_layered, local_bare, local_layered] = times.map(|mut t| median(&mut t));
    println!("\ninterleaved, {ROUNDS} rounds, median per request:");
    for (name, bare, layered) in [
        ("over loopback HTTP", http_bare, http_layered),
        ("in process", local_bare, local_layered),
    ] {
        println!(
            "  {name:<20} bare {bare:>10.2?}  layered {layered:>10.2?}  {:.3}x  (+{:.2?})",
            layered.as_secs_f64() / bare.as_secs_f64(),
            layered.saturating_sub(bare)
        );
    }
}

/// Requests per refresh storm.
const STORM: usize = 100;

/// The layers over a provider that accepts only the newest token, refreshing from a token
/// endpoint that takes 1 ms and issues a new token per call; the store; the refresh count.
fn storm_setup() -> (impl Layered, MemoryStore, Arc<AtomicUsize>) {
    let generation = Arc::new(AtomicUsize::new(0));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let provider = {
        let generation = generation.clone();
        service_fn(move |request: Request<RetryBody<Full<Bytes>>>| {
            let current = format!("Bearer at-{}", generation.load(Ordering::SeqCst));
            async move {
                let ok = request
                    .headers()
                    .get(AUTHORIZATION)
                    .is_some_and(|v| *v == *current);
                let mut response = Response::new(Full::<Bytes>::default());
                if !ok {
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let refresher = {
        let refreshes = refreshes.clone();
        refresher_fn(move |_| {
            let generation = generation.clone();
            let refreshes = refreshes.clone();
            async move {
                refreshes.fetch_add(1, Ordering::SeqCst);
                // A token endpoint round trip.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let n = generation.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(TokenResponse::new(format!("at-{n}"))
                    .with_refresh_token(format!("rt-{n}"))
                    .with_expires_in(Duration::from_secs(3600)))
            }
        })
    };
    let store = MemoryStore::new();
    let client = ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new("acme", store.clone(), refresher))
        .layer(ClassifyUpstreamLayer::new())
        .service(provider);
    (client, store, refreshes)
}

/// One storm: the link made stale, then [`STORM`] concurrent requests, each answered `200`.
async fn storm(client: &impl Layered, store: &MemoryStore) {
    store.insert(key(), Link::new("stale").with_refresh_token("rt"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..STORM {
        let client = client.clone();
        tasks.spawn(async move {
            let mut request = request("http://acme.example/query");
            request.extensions_mut().insert(key());
            client.oneshot(request).await.unwrap().status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
}

fn refresh_storm(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (client, store, refreshes) = storm_setup();
    let mut storms = 0usize;
    c.bench_function("refresh_storm/100", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    storms += 1;
                    let start = Instant::now();
                    storm(&client, &store).await;
                    total += start.elapsed();
                }
                total
            })
        })
    });
    println!(
        "refresh_storm: {} refreshes in {storms} storms of {STORM} requests",
        refreshes.load(Ordering::SeqCst)
    );
}

/// What `--instructions` counts, and how many times each variant repeats it.
const VARIANTS: [(&str, u64); 3] = [
    ("in_process/bare_service", 1_000),
    ("in_process/layered", 1_000),
    ("refresh_storm/100", 20),
];

/// `--measure VARIANT`: sets `VARIANT` up, warms it up, then runs it in [`measured`].
fn measure(variant: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_, iterations) = *VARIANTS
        .iter()
        .find(|(name, _)| *name == variant)
        .unwrap_or_else(|| panic!("no variant {variant}"));
    let uri = "http://acme.example/query";
    match variant {
        "in_process/bare_service" => {
            let mut provider = local_provider();
            runtime.block_on(bare_requests(&mut provider, uri, 10));
            measured(&runtime, bare_requests(&mut provider, uri, iterations));
        }
        "in_process/layered" => {
            let store = MemoryStore::new();
            store.insert(key(), valid_link());
            let mut layered = local_layered(&store);
            runtime.block_on(layered_requests(&mut layered, uri, 10));
            measured(&runtime, layered_requests(&mut layered, uri, iterations));
        }
        _ => {
            let (client, store, refreshes) = storm_setup();
            runtime.block_on(storm(&client, &store));
            measured(&runtime, async {
                for _ in 0..iterations {
                    storm(&client, &store).await;
                }
            });
            assert_eq!(refreshes.load(Ordering::SeqCst) as u64, iterations + 1);
        }
    }
}

/// Runs `work` to completion: the only code callgrind counts.
#[inline(never)]
fn measured(runtime: &tokio::runtime::Runtime, work: impl std::future::Future<Output = ()>) {
    runtime.block_on(work);
}

/// `--instructions`: each variant run under callgrind; instructions per repetition.
fn instructions() {
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("upstream-callgrind");
    std::fs::create_dir_all(&out).unwrap();
    println!("{:<26} {:>14}", "variant", "instructions");
    for (variant, iterations) in VARIANTS {
        let dump = out.join(variant.replace('/', "-"));
        let status = std::process::Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", dump.display()))
            .args([
                "--collect-atstart=no",
                "--toggle-collect=*upstream::measured*",
            ])
            .arg(std::env::current_exe().unwrap())
            .args(["--measure", variant])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("valgrind runs");
        assert!(status.success(), "{variant} failed under callgrind");
        let text = std::fs::read_to_string(&dump).unwrap();
        let total: u64 = text
            .lines()
            .find_map(|line| line.strip_prefix("summary:"))
            .and_then(|total| total.trim().parse().ok())
            .unwrap_or_else(|| panic!("no summary in {}", dump.display()));
        let per = if variant.starts_with("refresh") {
            "storm"
        } else {
            "request"
        };
        println!("{variant:<26} {:>14} per {per}", total / iterations);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--instructions") => return instructions(),
        Some("--measure") => return measure(&args.next().expect("--measure VARIANT")),
        _ => {}
    }
    let mut criterion = Criterion::default().configure_from_args();
    no_refresh(&mut criterion);
    refresh_storm(&mut criterion);
    criterion.final_summary();
}
