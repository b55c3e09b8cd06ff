//! Instruction counts per request under valgrind's callgrind, with gungraun: deterministic
//! whatever the machine's load, so a regression of a few instructions shows.
//!
//! ```text
//! cargo install gungraun-runner --version 0.20.0 --locked   # once: the same version as the
//!                                                           # gungraun dev-dependency
//! cargo bench --bench instructions                          # needs valgrind
//! ```
//!
//! Gungraun runs each benchmark once, in its own process under callgrind, and counts only inside
//! the benchmark function (callgrind's `--toggle-collect` on it, its callees included): **one**
//! request or validation per count, except `thousand_misses`. Not counted (setup): building the
//! service, the validator, the cache (a million entries take a while under valgrind) and the
//! request, and one call with the same token before the measured one, so that lazy
//! initialisation is done, a cache holds the token, and the allocator reuses that request's
//! freed blocks as a server's would. Not counted either: dropping what the measured call returns
//! (the response, which holds the request and its claims; the service), and `teardown`'s check
//! that the answer was a success. Counted with the request: the call through a boxed closure
//! that owns the service (the inner service's type cannot be named), a few instructions, and
//! the moves of the request and the response.
//!
//! - group `cache` (the cases of `cache.rs`; an RS256 token, its key from an in-memory JWKS):
//!   `inner bare` is the inner service alone (`common::handler()`); `layer` is a whole request
//!   through `ValidateBearerLayer` (extraction, the validator, claims into the extensions, the
//!   inner service, the response) around a validator that answers constant claims
//!   (`layer_floor`), a `CachedValidator` holding the token (`hit_1`) or the token and a million
//!   others (`hit_1m`), or the `JwksValidator` alone (`verify`); `thousand_misses` is 1000 new
//!   tokens into a full cache of 10k or 1M entries, the validator alone (digest, lookup, insert,
//!   eviction; the loop included): **divide its count by 1000** for one miss. A single miss's
//!   count would depend on where the token's digest falls, under a key drawn anew in each run.
//! - group `validate` (the pairs of `validate.rs`: same token, key, policy and claims type):
//!   `raw_decode` is `jsonwebtoken::decode` into `StandardClaims` (the decoded header dropped
//!   inside the count, as a caller would), and `through_layer` a whole request with that token
//!   through the layer around a `JwtValidator` holding that key; HS256, RS256, ES256, EdDSA.
//!
//! The tokens are fixed (`IAT`, `EXP`, `ES256_TOKEN`), so a count repeats from run to run,
//! except `layer verify` (about ±0.05%: malloc's state after the JWKS setup varies) and the
//! misses (about ±2%: the cache's digest key).
//!
//! Gungraun compares each count with the previous run's (kept under `target/gungraun/`, with
//! the callgrind profiles for `callgrind_annotate`); `-- --save-baseline=NAME` and
//! `-- --baseline=NAME` compare with a named run.

// The criterion helpers (`through`, `through_layer`, `BATCH`) are not used here.
#[allow(dead_code)]
mod common;

use std::{
    convert::Infallible,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use gungraun::{
    Callgrind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use http::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use tower::{Layer, Service};
use tower_bearer::{
    body::MaybeBuffered,
    emit::Emitter,
    token::BearerToken,
    validate::{
        CachedValidator, ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer,
        ValidateToken, VerificationKey,
    },
};

use common::fixtures::{
    AUDIENCE, Constant, ISSUER, MILLION, admit, claims_between, constant, filled, full_cache,
    jwks_validator, keys, misses, pem, signed_with,
};

/// A service's answer to one request, through the closure that owns the service.
pub type Call<B> = Box<dyn FnMut(Request<()>) -> Response<B>>;

/// What the layer answers: the inner service's response, its body wrapped.
pub type Layered = MaybeBuffered<Request<()>>;

/// A service that has answered one request with the token already, and the next request.
pub struct Ready<B> {
    call: Call<B>,
    request: Request<()>,
}

fn ready<S, B>(mut service: S, token: &str) -> Ready<B>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + 'static,
{
    let request = common::requests(token);
    let first = common::complete(service.call(request())).unwrap();
    assert!(first.status().is_success());
    Ready {
        call: Box::new(move |request| complete(service.call(request)).unwrap()),
        request: request(),
    }
}

/// `common::complete`, always inlined: left to the compiler, whether it was inlined (and so how
/// many times the future was copied) changed with unrelated edits to this file, and the count of
/// every request row with it, by about 100 instructions.
#[inline(always)]
fn complete<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked future did not complete on first poll"),
    }
}

fn through<V>(validator: V, token: &str) -> Ready<Layered>
where
    V: ValidateToken<Claims = StandardClaims> + Clone + 'static,
{
    let layer = ValidateBearerLayer::new(validator, Emitter::new("bench"));
    ready(layer.layer(common::handler()), token)
}

/// Every token's `iat` and `exp`: fixed, so that a token, and what its validation counts, is the
/// same in every run (the year 2100 is far enough).
const IAT: u64 = 1_700_000_000;
const EXP: u64 = 4_102_444_800;

/// The RS256 token of the `cache` group, signed with the key its JWKS holds.
fn rs256() -> (String, EncodingKey) {
    let (rsa, _) = keys();
    let token = signed_with("rsa", &rsa, Algorithm::RS256, &claims_between(IAT, EXP));
    (token, rsa)
}

#[inline(never)]
fn bare() -> Ready<Request<()>> {
    ready(common::handler(), &rs256().0)
}

#[inline(never)]
fn layer_floor() -> Ready<Layered> {
    through(constant(), &rs256().0)
}

#[inline(never)]
fn hit_1() -> Ready<Layered> {
    let (token, rsa) = rs256();
    through(
        CachedValidator::new(jwks_validator(&[("rsa", &rsa, Algorithm::RS256)])),
        &token,
    )
}

#[inline(never)]
fn hit_1m() -> Ready<Layered> {
    let (token, rsa) = rs256();
    let validator = jwks_validator(&[("rsa", &rsa, Algorithm::RS256)]);
    through(full_cache(filled(validator), MILLION), &token)
}

#[inline(never)]
fn verify() -> Ready<Layered> {
    let (token, rsa) = rs256();
    through(jwks_validator(&[("rsa", &rsa, Algorithm::RS256)]), &token)
}

/// New tokens per count in `thousand_misses`.
const MISSES: usize = 1_000;

/// A full cache of `capacity` entries that has just taken one new token, and [`MISSES`] more.
pub struct Crowded {
    cache: CachedValidator<Constant>,
    tokens: Vec<BearerToken>,
}

#[inline(never)]
fn crowded(capacity: usize) -> Crowded {
    let (cache, mut new_token) = misses(capacity);
    admit(&cache, &new_token());
    Crowded {
        cache,
        tokens: (0..MISSES).map(|_| new_token()).collect(),
    }
}

// The measured call of the request rows: one request; its response is returned, uncounted.
#[library_benchmark(teardown = succeeded)]
#[bench::bare(setup = bare)]
fn inner(ready: Ready<Request<()>>) -> (Call<Request<()>>, Response<Request<()>>) {
    let Ready { mut call, request } = ready;
    let response = call(request);
    (call, response)
}

#[library_benchmark(teardown = succeeded)]
#[bench::layer_floor(setup = layer_floor)]
#[bench::hit_1(setup = hit_1)]
#[bench::hit_1m(setup = hit_1m)]
#[bench::verify(setup = verify)]
fn layer(ready: Ready<Layered>) -> (Call<Layered>, Response<Layered>) {
    let Ready { mut call, request } = ready;
    let response = call(request);
    (call, response)
}

#[library_benchmark]
#[bench::miss_10k(args = (10_000), setup = crowded)]
#[bench::miss_1m(args = (MILLION), setup = crowded)]
fn thousand_misses(crowded: Crowded) -> Crowded {
    for token in &crowded.tokens {
        admit(&crowded.cache, token);
    }
    crowded
}

fn succeeded<B>((_call, response): (Call<B>, Response<B>)) {
    assert!(response.status().is_success());
}

library_benchmark_group!(name = cache, benchmarks = [inner, layer, thousand_misses]);

// The `validate` group: the pairs of `validate.rs`, with its token, key, policy and claims.

const HMAC_SECRET: &[u8] = b"a benchmark secret of at least thirty-two bytes";

/// ES256 signatures are randomised: this token, signed with `tests/keys/ec_private.pem` over
/// the header and claims `case` makes (checked there), keeps the ES256 counts the same from run to
/// run and the same token on both sides. To renew it (another key, other claims), print the
/// token `case` encodes for ES256 and paste it here.
const ES256_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJiZW5jaC1hcGkiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIuZXhhbXBsZSIsInNjb3BlIjoicmVwb3J0czpyZWFkIHByb2ZpbGUiLCJzdWIiOiJ1c2VyLTEyMzQifQ.8d2qSyTVOgsYjFXzkVxqobXzZrFQC0HR1M0l8j6uOpXUlanrUolFbMCVQ5EdXOKMTh_TyPv9Bu7K58U12VhVlw";

/// `validate.rs`'s token for `algorithm` (its header and claims, `iat` and `exp` fixed), the key
/// to verify it and the policy's `Validation`.
fn case(algorithm: Algorithm) -> (String, DecodingKey, Validation) {
    let (encoding, decoding) = match algorithm {
        Algorithm::HS256 => (
            EncodingKey::from_secret(HMAC_SECRET),
            DecodingKey::from_secret(HMAC_SECRET),
        ),
        Algorithm::RS256 => (
            EncodingKey::from_rsa_pem(&pem("rsa_private.pem")).unwrap(),
            DecodingKey::from_rsa_pem(&pem("rsa_public.pem")).unwrap(),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap(),
            DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap(),
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(&pem("ed_private.pem")).unwrap(),
            DecodingKey::from_ed_pem(&pem("ed_public.pem")).unwrap(),
        ),
        other => panic!("no benchmark key for {other:?}"),
    };
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1234", "scope": "reports:read profile",
        "iat": IAT, "exp": EXP,
    });
    let mut token = encode(&Header::new(algorithm), &claims, &encoding).unwrap();
    if algorithm == Algorithm::ES256 {
        let signed_part = |token: &str| token.rsplit_once('.').unwrap().0.to_owned();
        assert_eq!(
            signed_part(ES256_TOKEN),
            signed_part(&token),
            "ES256_TOKEN is stale"
        );
        token = ES256_TOKEN.to_owned();
    }
    (token, decoding, policy().validation(&[algorithm]))
}

fn policy() -> ClaimsPolicy {
    ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE)
}

/// A token to decode, with its key and validation, decoded once already.
pub struct Raw {
    token: String,
    key: DecodingKey,
    validation: Validation,
}

#[inline(never)]
fn raw(algorithm: Algorithm) -> Raw {
    let (token, key, validation) = case(algorithm);
    decode::<StandardClaims>(&token, &key, &validation).unwrap();
    Raw {
        token,
        key,
        validation,
    }
}

#[inline(never)]
fn jwt_layer(algorithm: Algorithm) -> Ready<Layered> {
    let (token, key, _) = case(algorithm);
    let validator = JwtValidator::<StandardClaims>::builder()
        .key(VerificationKey::new(key, &[algorithm]).unwrap())
        .policy(policy())
        .build()
        .unwrap();
    through(validator, &token)
}

#[library_benchmark]
#[bench::hs256(args = (Algorithm::HS256), setup = raw)]
#[bench::rs256(args = (Algorithm::RS256), setup = raw)]
#[bench::es256(args = (Algorithm::ES256), setup = raw)]
#[bench::eddsa(args = (Algorithm::EdDSA), setup = raw)]
fn raw_decode(raw: Raw) -> (Raw, StandardClaims) {
    let claims = decode::<StandardClaims>(black_box(&raw.token), &raw.key, &raw.validation)
        .unwrap()
        .claims;
    (raw, claims)
}

#[library_benchmark(teardown = succeeded)]
#[bench::hs256(args = (Algorithm::HS256), setup = jwt_layer)]
#[bench::rs256(args = (Algorithm::RS256), setup = jwt_layer)]
#[bench::es256(args = (Algorithm::ES256), setup = jwt_layer)]
#[bench::eddsa(args = (Algorithm::EdDSA), setup = jwt_layer)]
fn through_layer(ready: Ready<Layered>) -> (Call<Layered>, Response<Layered>) {
    let Ready { mut call, request } = ready;
    let response = call(request);
    (call, response)
}

library_benchmark_group!(name = validate, benchmarks = [raw_decode, through_layer]);

main!(
    config = LibraryBenchmarkConfig::default().tool(Callgrind::with_args(["--cache-sim=no"]));
    library_benchmark_groups = cache, validate
);
