//! The verified-token cache: a repeated RS256 / ES256 token through the validation layer, keys
//! from a JWKS, with `CachedValidator` in front and without, in one run; and the cache at scale.
//!
//! `cargo bench --bench cache` (criterion), or `scripts/callgrind` (instruction counts: this
//! binary run under callgrind with `--instructions VARIANT`, see `VARIANTS`).
//!
//! Both sides pay for everything a request pays for: header extraction, the validator, claims
//! into the request extensions, the inner service call and the response. Without the cache each
//! request verifies the signature (and decodes and checks the claims); with it, a repeat costs a
//! keyed 128-bit digest of the token, a lookup and a reference count on the shared claims.
//! `*/layer_floor` is the layer around a validator that answers constant claims: what any
//! validator costs at least. `*/cached_1M` is the same hit with a million other entries cached;
//! `miss/{10k,1M}` is a new token into a full cache of that size (the validator alone: digest,
//! lookup, insert, eviction).

mod common;

use std::{convert::Infallible, time::Duration};

use criterion::{BatchSize, Criterion};
use http::{Request, Response};
use jsonwebtoken::Algorithm;
use tower::Service;
use tower_bearer::validate::{CachedValidator, StandardClaims, ValidateToken};

use common::fixtures::{
    MILLION, admit, constant, filled, full_cache, jwks_validator, keys, misses, signed,
};

fn bench(c: &mut Criterion) {
    let (rsa, ec) = keys();
    let validator = jwks_validator(&[
        ("rsa", &rsa, Algorithm::RS256),
        ("ec", &ec, Algorithm::ES256),
    ]);

    let mut group = c.benchmark_group("cache");
    for (name, kid, key, algorithm) in [
        ("RS256", "rsa", &rsa, Algorithm::RS256),
        ("ES256", "ec", &ec, Algorithm::ES256),
    ] {
        let token = signed(kid, key, algorithm);
        common::through_layer(
            &mut group,
            format!("{name}/verify"),
            validator.clone(),
            &token,
        );
        let cached = CachedValidator::new(validator.clone()).max_ttl(Duration::from_secs(3600));
        common::through_layer(&mut group, format!("{name}/cached"), cached, &token);
        if algorithm == Algorithm::RS256 {
            let crowded = full_cache(filled(validator.clone()), MILLION);
            common::through_layer(&mut group, format!("{name}/cached_1M"), crowded, &token);
        }
        // The floor: the layer around a validator that hands out the same claims without
        // looking at the token (extraction, claims into the extensions, inner call).
        common::through_layer(
            &mut group,
            format!("{name}/layer_floor"),
            constant(),
            &token,
        );
        // The inner service alone: what the layer's own cost is the difference from.
        common::through(
            &mut group,
            format!("{name}/bare"),
            common::handler(),
            &token,
        );
    }
    for (name, capacity) in [("miss/10k", 10_000), ("miss/1M", MILLION)] {
        let (cache, mut new_token) = misses(capacity);
        group.bench_function(name, |b| {
            b.iter_batched(
                &mut new_token,
                |token| admit(&cache, &token),
                BatchSize::NumIterations(common::BATCH),
            )
        });
    }
    group.finish();

    // The cache's goals as ratios from one run: the layer's own cost on a hit (the hit minus the
    // inner service alone), and a hit among a million entries against a hit among one.
    let token = signed("rsa", &rsa, Algorithm::RS256);
    let mut bare = common::timed(common::handler(), &token);
    let mut floor = common::timed(common::layered(constant()), &token);
    let cached = CachedValidator::new(validator.clone()).max_ttl(Duration::from_secs(3600));
    let mut hit = common::timed(common::layered(cached), &token);
    let crowded = full_cache(filled(validator), MILLION);
    let mut hit_1m = common::timed(common::layered(crowded), &token);
    const ROUNDS: usize = 21;
    let medians = common::interleaved(
        &mut [&mut bare, &mut floor, &mut hit, &mut hit_1m],
        ROUNDS,
        200,
    );
    let [bare, floor, hit, hit_1m] = medians[..] else {
        unreachable!()
    };
    println!("\ninterleaved, {ROUNDS} rounds, median per RS256 request:");
    println!("  inner service alone  {bare:>9.2?}");
    println!(
        "  layer floor          {floor:>9.2?}  (layer's own {:.2?})",
        floor - bare
    );
    println!(
        "  cached, 1 entry      {hit:>9.2?}  (layer's own {:.2?})",
        hit - bare
    );
    println!(
        "  cached, 1M entries   {hit_1m:>9.2?}  (layer's own {:.2?}; {:.2}x the 1-entry hit)",
        hit_1m - bare,
        hit_1m.as_secs_f64() / hit.as_secs_f64()
    );
}

/// What `scripts/callgrind` counts: each variant's setup, then `ITERATIONS` runs inside
/// [`measured`], the only function callgrind collects in.
const VARIANTS: [&str; 7] = [
    "bare", "floor", "hit_1", "hit_1M", "verify", "miss_10k", "miss_1M",
];
const ITERATIONS: usize = 1_000;

#[inline(never)]
fn measured(mut run: impl FnMut()) {
    for _ in 0..ITERATIONS {
        run();
    }
}

fn instructions(variant: &str) {
    let (rsa, _) = keys();
    let token = signed("rsa", &rsa, Algorithm::RS256);
    let jwks = || jwks_validator(&[("rsa", &rsa, Algorithm::RS256)]);
    match variant {
        "bare" => service_requests(common::handler(), &token),
        "floor" => layer_requests(constant(), &token),
        "hit_1" => layer_requests(CachedValidator::new(jwks()), &token),
        "hit_1M" => layer_requests(full_cache(filled(jwks()), MILLION), &token),
        "verify" => layer_requests(jwks(), &token),
        "miss_10k" | "miss_1M" => {
            let (cache, mut new_token) = misses(if variant == "miss_1M" {
                MILLION
            } else {
                10_000
            });
            let tokens: Vec<_> = (0..ITERATIONS).map(|_| new_token()).collect();
            let mut tokens = tokens.iter();
            measured(|| admit(&cache, tokens.next().unwrap()));
        }
        other => panic!("unknown variant {other}; one of {VARIANTS:?}"),
    }
}

/// `ITERATIONS` requests with `token` through the layer around `validator`.
fn layer_requests<V>(validator: V, token: &str)
where
    V: ValidateToken<Claims = StandardClaims> + Clone,
{
    service_requests(common::layered(validator), token);
}

/// `ITERATIONS` requests with `token` through `service`, each built before the measurement (as
/// in `common::through`); the first, which may fill a cache, is not counted.
fn service_requests<S, B>(mut service: S, token: &str)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let request = common::requests(token);
    let _first = common::complete(service.call(request()));
    let mut requests: Vec<_> = (0..ITERATIONS).map(|_| request()).collect();
    let mut responses = Vec::with_capacity(ITERATIONS);
    measured(|| {
        let response = common::complete(service.call(requests.pop().unwrap())).unwrap();
        responses.push(response);
    });
    assert!(responses.iter().all(|r| r.status().is_success()));
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--instructions") {
        let variant = args.next().expect("--instructions VARIANT");
        instructions(&variant);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
