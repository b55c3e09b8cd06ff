//! What the validation benchmarks share: a whole request through `ValidateBearerLayer`.

// `validate.rs` uses none of the cache's fixtures.
#[allow(dead_code)]
pub mod fixtures;

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkGroup, measurement::WallTime};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use tower::{Layer, Service, service_fn};
use tower_bearer::{
    emit::Emitter,
    validate::{StandardClaims, ValidateBearerLayer, ValidateToken},
};

/// Requests are built ahead in batches this small, so they are still in cache when the layer
/// reads them, as a request just parsed by hyper would be; timing a batch as a whole keeps the
/// clock's own cost out of the figures.
pub const BATCH: u64 = 64;

/// The futures benchmarked here complete on first poll; anything else is a benchmark bug.
pub fn complete<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked future did not complete on first poll"),
    }
}

/// The inner service of every benchmark. It hands the request back in the response, so the
/// request (and the claims in its extensions) is dropped outside the measurement.
pub fn handler()
-> impl Service<Request<()>, Response = Response<Request<()>>, Error = Infallible> + Clone {
    service_fn(|request: Request<()>| async move {
        black_box(request.extensions().get::<Arc<StandardClaims>>());
        Ok::<_, Infallible>(Response::new(request))
    })
}

/// Requests carrying `token` in an `Authorization` header. Header values share one buffer, as
/// they do when hyper parses a request.
pub fn requests(token: &str) -> impl Fn() -> Request<()> + use<> {
    let authorization = Bytes::from(format!("Bearer {token}"));
    move || {
        let value = HeaderValue::from_maybe_shared(authorization.clone()).unwrap();
        Request::builder()
            .header(AUTHORIZATION, value)
            .body(())
            .unwrap()
    }
}

/// `token` in an `Authorization` header through the layer around `validator`: extraction, the
/// validator, claims into the request extensions, the inner service call and the response.
pub fn through_layer<V>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: String,
    validator: V,
    token: &str,
) where
    V: ValidateToken<Claims = StandardClaims> + Clone,
{
    through(group, name, layered(validator), token);
}

/// The layer around `validator`, around [`handler`].
pub fn layered<V>(
    validator: V,
) -> impl Service<Request<()>, Response = Response<impl Sized>, Error = Infallible>
where
    V: ValidateToken<Claims = StandardClaims> + Clone,
{
    ValidateBearerLayer::new(validator, Emitter::new("bench")).layer(handler())
}

/// The same requests through `service` (the layer around [`handler`], or the handler alone: the
/// cost the layer's own is measured against).
pub fn through<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: String,
    mut service: S,
    token: &str,
) where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let request = requests(token);
    group.bench_function(name, |b| {
        b.iter_batched(
            &request,
            |request| {
                let response = complete(service.call(request)).unwrap();
                assert!(response.status().is_success());
                response
            },
            BatchSize::NumIterations(BATCH),
        )
    });
}

/// A variant of an interleaved comparison: `token` through `service`, timed as [`batched`].
pub fn timed<S, B>(mut service: S, token: &str) -> impl FnMut(usize) -> Duration + use<S, B>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    batched(requests(token), move |request| {
        complete(service.call(request)).unwrap()
    })
}

/// A variant of an interleaved comparison: `run` on inputs made by `input`, timed by the batch
/// of [`BATCH`] inputs made ahead (as criterion's batches are), the outputs dropped outside the
/// measurement; it answers the mean time per run over a number of batches.
pub fn batched<I, O>(
    mut input: impl FnMut() -> I,
    mut run: impl FnMut(I) -> O,
) -> impl FnMut(usize) -> Duration {
    let mut outputs = Vec::with_capacity(BATCH as usize);
    move |batches| {
        let mut total = Duration::ZERO;
        for _ in 0..batches {
            let batch: Vec<_> = (0..BATCH).map(|_| input()).collect();
            let start = Instant::now();
            for input in batch {
                outputs.push(run(input));
            }
            total += start.elapsed();
            outputs.clear();
        }
        total / (batches as u32 * BATCH as u32)
    }
}

/// Rounds of each variant in turn, so that drift of the machine hits all alike; the median
/// time per request of each, in the order given.
pub fn interleaved(
    variants: &mut [&mut dyn FnMut(usize) -> Duration],
    rounds: usize,
    batches: usize,
) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    for _ in 0..rounds {
        for (variant, times) in variants.iter_mut().zip(&mut times) {
            times.push(variant(batches));
        }
    }
    times
        .into_iter()
        .map(|mut times| {
            times.sort();
            times[times.len() / 2]
        })
        .collect()
}
