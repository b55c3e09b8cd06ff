//! The outbound layers (`RefreshAndRetry` + `ClassifyUpstream`) against the bare client, in one
//! run, and the refresh storm.
//!
//! `cargo bench --bench upstream`
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
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::upstream::{
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
    let provider = service_fn(|request: Request<RetryBody<Full<Bytes>>>| async move {
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
    });
    let layered_local = ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new(
            "acme",
            store.clone(),
            no_refresher(),
        ))
        .layer(ClassifyUpstreamLayer::new())
        .service(provider);

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
        let (mut provider, uri) = (provider, uri.clone());
        async move {
            let start = Instant::now();
            for _ in 0..n {
                let mut request = request(&uri).map(|body| RetryBody::chained(Bytes::new(), body));
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, "Bearer good".parse().unwrap());
                let response = provider.ready().await.unwrap().call(request).await.unwrap();
                black_box(drain(response).await);
            }
            start.elapsed()
        }
    };
    let layers_local = |n: u64| {
        let (mut layered, uri) = (layered_local.clone(), uri.clone());
        async move {
            let start = Instant::now();
            for _ in 0..n {
                let mut request = request(&uri);
                request.extensions_mut().insert(key());
                let response = layered.ready().await.unwrap().call(request).await.unwrap();
                black_box(drain(response).await);
            }
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

fn refresh_storm(c: &mut Criterion) {
    const N: usize = 100;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The provider accepts only the newest token; the token endpoint issues a new one per call.
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
        let generation = generation.clone();
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
    let mut storms = 0usize;
    c.bench_function("refresh_storm/100", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    store.insert(key(), Link::new("stale").with_refresh_token("rt"));
                    storms += 1;
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..N {
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
                    total += start.elapsed();
                }
                total
            })
        })
    });
    println!(
        "refresh_storm: {} refreshes in {storms} storms of {N} requests",
        refreshes.load(Ordering::SeqCst)
    );
}

criterion_group!(benches, no_refresh, refresh_storm);
criterion_main!(benches);
