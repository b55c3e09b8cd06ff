//! The verified-token cache: a repeated RS256 / ES256 token through the validation layer, keys
//! from a JWKS, with `CachedValidator` in front and without, in one run; and the cache at scale.
//!
//! `cargo bench --bench cache`; the same cases' instruction counts are in `instructions.rs`.
//!
//! Both sides pay for everything a request pays for: header extraction, the validator, claims
//! into the request extensions, the inner service call and the response. Without the cache each
//! request verifies the signature (and decodes and checks the claims); with it, a repeat costs a
//! keyed 128-bit digest of the token, a lookup and a reference count on the shared claims.
//! `*/layer_floor` is the layer around a validator that answers constant claims and recalls
//! nothing, so the layer checks the token's syntax (which a hit skips): what any validator
//! without a cache costs at least. `*/bare` is the inner service alone, which the layer's own
//! cost is counted from. `*/cached_1M` is the same hit with a million other entries cached;
//! `miss/{10k,1M}` is a new token into a full cache of that size (the validator alone: digest,
//! lookup, insert, eviction).

mod common;

use std::time::Duration;

use criterion::{BatchSize, Criterion};
use jsonwebtoken::Algorithm;
use tower_bearer::validate::CachedValidator;

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
        // looking at the token (extraction, the syntax check, claims into the extensions,
        // inner call).
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

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
