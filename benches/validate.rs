//! The validation layer against raw `jsonwebtoken::decode` of the same token with the same key,
//! for HS256, RS256, ES256 and EdDSA, in one run.
//!
//! `cargo bench --bench validate`
//!
//! Both sides decode into the same claims type under the same policy (issuer, audience, `exp`).
//! The layer side adds everything a request pays for: header extraction (RFC 6750), key
//! selection, claims into the request extensions, the inner service call and the response.

mod common;

use std::{hint::black_box, time::Duration};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, decode, encode, get_current_timestamp,
};
use tower_bearer::validate::{ClaimsPolicy, JwtValidator, StandardClaims, VerificationKey};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "bench-api";
const HMAC_SECRET: &[u8] = b"a benchmark secret of at least thirty-two bytes";

struct Case {
    name: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

fn cases() -> Vec<Case> {
    let pem = |name: &str| {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR")))
            .expect("test key")
    };
    vec![
        Case {
            name: "HS256",
            algorithm: Algorithm::HS256,
            encoding: EncodingKey::from_secret(HMAC_SECRET),
            decoding: DecodingKey::from_secret(HMAC_SECRET),
        },
        Case {
            name: "RS256",
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&pem("rsa_private.pem")).unwrap(),
            decoding: DecodingKey::from_rsa_pem(&pem("rsa_public.pem")).unwrap(),
        },
        Case {
            name: "ES256",
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap(),
            decoding: DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap(),
        },
        Case {
            name: "EdDSA",
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(&pem("ed_private.pem")).unwrap(),
            decoding: DecodingKey::from_ed_pem(&pem("ed_public.pem")).unwrap(),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let policy = ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE);
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1234", "scope": "reports:read profile",
        "iat": get_current_timestamp(), "exp": get_current_timestamp() + 24 * 3600,
    });
    let mut group = c.benchmark_group("validate");
    let mut interleaved = Vec::new();
    for case in cases() {
        let token = encode(&Header::new(case.algorithm), &claims, &case.encoding).unwrap();
        let validation = policy.validation(&[case.algorithm]);

        // Both sides keep the claims and drop the decoded header, as a caller of `decode`
        // would; the claims are returned so criterion drops them outside the measurement.
        group.bench_function(format!("{}/raw_decode", case.name), |b| {
            b.iter_batched(
                || (),
                |()| {
                    decode::<StandardClaims>(black_box(&token), &case.decoding, &validation)
                        .unwrap()
                        .claims
                },
                BatchSize::NumIterations(common::BATCH),
            )
        });

        let validator = JwtValidator::<StandardClaims>::builder()
            .key(VerificationKey::new(case.decoding.clone(), &[case.algorithm]).unwrap())
            .policy(policy.clone())
            .build()
            .unwrap();
        common::through_layer(
            &mut group,
            format!("{}/layer", case.name),
            validator.clone(),
            &token,
        );
        let layer = common::timed(common::layered(validator), &token);
        let raw = common::batched(
            || (),
            move |()| {
                decode::<StandardClaims>(black_box(&token), &case.decoding, &validation)
                    .unwrap()
                    .claims
            },
        );
        interleaved.push((case.name, raw, layer));
    }
    group.finish();

    // The same pairs as ratios from one run: every variant in turn, round after round.
    const ROUNDS: usize = 15;
    let mut variants: Vec<&mut dyn FnMut(usize) -> Duration> = Vec::new();
    for (_, raw, layer) in &mut interleaved {
        variants.push(raw);
        variants.push(layer);
    }
    let medians = common::interleaved(&mut variants, ROUNDS, 40);
    println!("\ninterleaved, {ROUNDS} rounds, median per token: raw decode / through the layer");
    for ((name, ..), pair) in interleaved.iter().zip(medians.chunks(2)) {
        println!(
            "  {name:<6} {:>10.2?} {:>10.2?}  {:.3}x",
            pair[0],
            pair[1],
            pair[1].as_secs_f64() / pair[0].as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
