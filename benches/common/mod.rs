//! What the validation benchmarks share: a whole request through `ValidateBearerLayer`.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
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
pub fn requests(token: &str) -> impl Fn() -> Request<()> {
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
    let layer = ValidateBearerLayer::new(validator, Emitter::new("bench"));
    through(group, name, layer.layer(handler()), token);
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
