//! Tokens never appear in logs (at any level, including span fields), in `Debug` or `Display`
//! output, nor in responses (DESIGN.md §2: "Tokens never appear in logs, errors, `Debug` output or
//! responses").
//!
//! A TRACE-level fmt subscriber writing into a shared buffer is installed as the global default,
//! so it sees events from every thread, the server's tasks included. A negative control first
//! proves the capture works: a handler that does `tracing::trace!(token = …)` is caught.

mod support;

use axum::{Router, routing::get};
use http::{HeaderMap, Method, Request};
use serde_json::json;
use tower::Layer as _;
use tower_bearer::{
    emit::{Disclosure, Emitter, PendingFailure, RequestContext, pending_response},
    failure::AuthError,
    token::{BearerExtractor, BearerToken},
    validate::{ValidateBearerLayer, ValidateToken},
};
use tracing_subscriber::fmt::format::FmtSpan;

use support::{http::*, keys::*, logs::Capture, routes::*, tokens::*};

/// The strings that must never show up for `token`: the token itself, and each of its
/// dot-separated parts long enough not to match by chance (signature, payload).
fn secrets_of(token: &str) -> Vec<String> {
    let mut secrets = vec![token.to_owned()];
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() > 1 {
        // The header part is shared by many tokens and carries nothing secret; the payload
        // and signature are the token's own.
        secrets.extend(
            parts[1..]
                .iter()
                .filter(|p| p.len() >= 16)
                .map(|p| (*p).to_owned()),
        );
    }
    secrets
}

/// Panics if any secret of any token occurs in `haystack`.
fn assert_clean(what: &str, haystack: &str, tokens: &[String]) {
    for token in tokens {
        for secret in secrets_of(token) {
            if let Some(line) = haystack.lines().find(|line| line.contains(&secret)) {
                let shown: String = line.chars().take(400).collect();
                panic!(
                    "{what} contains (part of) a token ({:?}…) in:\n{shown}",
                    &secret[..secret.len().min(40)]
                );
            }
        }
    }
}

/// Whether any secret of `token` occurs in `haystack`.
fn leaks(haystack: &str, token: &str) -> bool {
    secrets_of(token)
        .iter()
        .any(|secret| haystack.contains(secret.as_str()))
}

/// A handler that leaks the token at TRACE level: the negative control.
async fn leaky(headers: HeaderMap) -> &'static str {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::trace!(authorization = %value, "leaking on purpose");
    "leaked"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_logs_debug_or_responses() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_writer(capture.clone())
        .init();

    let client = client();

    // ── Negative control: the capture sees TRACE events from the server's tasks, and the check
    //    recognizes a leaked token, or only its signature. ─────────────────────────────────────
    let control = serve(Router::new().route("/leak", get(leaky))).await;
    let canary = token(Key::Rs, &valid_claims());
    let r = Req::get("/leak")
        .bearer(&canary)
        .send(&client, &control)
        .await;
    assert_eq!(r.text(), "leaked");
    let logs = capture.take();
    assert!(
        logs.contains("leaking on purpose"),
        "the capture missed a TRACE event: {logs:?}"
    );
    assert!(
        leaks(&logs, &canary),
        "the check missed a leaked token: {logs:?}"
    );
    tracing::debug!(sig = %signature_of(&canary), "leaking only the signature");
    assert!(
        leaks(&capture.take(), &canary),
        "the check missed a leaked signature"
    );
    {
        let _span = tracing::info_span!("request", token = %canary).entered();
    }
    assert!(
        leaks(&capture.take(), &canary),
        "the check missed a token in a span field"
    );

    // ── The real thing: every outcome through the layer, verbose disclosure. ─────────────────
    let now = now();
    let with = |changes| token(Key::Rs, &claims_with(changes));
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    let stripped = format!("{}.", with(json!({})).rsplit_once('.').unwrap().0);
    let tampered = {
        let good = with(json!({}));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = serde_json::to_vec(&claims_with(json!({ "scope": "read admin" }))).unwrap();
        format!("{}.{}.{}", parts[0], b64(&forged), parts[2])
    };
    let confused = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rs".into());
        header.typ = Some("at+jwt".into());
        token_with_header(
            &header,
            &valid_claims(),
            &jsonwebtoken::EncodingKey::from_secret(RSA_PUBLIC),
        )
    };
    let wrong_typ = {
        let mut header = Key::Es.header();
        header.typ = Some("JWT".into());
        token_with_header(&header, &valid_claims(), &Key::Es.encoding_key())
    };

    // (name, path, token, expected status)
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("valid HS256", "/me", token(Key::Hs, &valid_claims()), 200),
        ("valid RS256", "/read", token(Key::Rs, &valid_claims()), 200),
        (
            "valid ES256",
            "/step-up",
            token(Key::Es, &valid_claims()),
            200,
        ),
        ("valid EdDSA", "/me", token(Key::Ed, &valid_claims()), 200),
        (
            "not a JWT",
            "/read",
            "NotAJwtButASecretOpaqueValue0123456789abcdef".into(),
            401,
        ),
        (
            "bad characters",
            "/read",
            "BadCharactersSecretValue0123456789$abcdef".into(),
            401,
        ),
        (
            "bad JSON",
            "/read",
            raw_token(b"{not json", &payload, Key::Hs),
            401,
        ),
        (
            "too long",
            "/read",
            format!("TooLongSecret{}", "q".repeat(9000)),
            401,
        ),
        (
            "alg none",
            "/read",
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(&payload)),
            401,
        ),
        ("algorithm confusion", "/read", confused, 401),
        ("tampered", "/read", tampered, 401),
        ("stripped signature", "/read", stripped, 401),
        (
            "foreign kid",
            "/read",
            token(Key::Foreign, &valid_claims()),
            401,
        ),
        ("expired", "/read", with(json!({ "exp": now - 3600 })), 401),
        (
            "not yet valid",
            "/read",
            with(json!({ "nbf": now + 3600 })),
            401,
        ),
        (
            "wrong iss",
            "/read",
            with(json!({ "iss": "https://evil.example" })),
            401,
        ),
        (
            "wrong aud",
            "/read",
            with(json!({ "aud": "https://other.example" })),
            401,
        ),
        ("wrong typ", "/read", wrong_typ, 401),
        ("missing exp", "/read", with(json!({ "exp": null })), 401),
        (
            "insufficient scope",
            "/read",
            with(json!({ "scope": "profile" })),
            403,
        ),
        (
            "step-up",
            "/step-up",
            with(json!({ "acr": "pwd", "auth_time": now - 3600 })),
            401,
        ),
        ("hidden", "/admin", with(json!({})), 404),
    ];
    let all_tokens: Vec<String> = cases.iter().map(|(_, _, token, _)| token.clone()).collect();

    // The test service answers gRPC callers too (the `grpc` variant).
    let verbose = Emitter::new("api")
        .with_grpc(true)
        .with_disclosure(Disclosure::Verbose);
    let base = serve(app(verbose.clone())).await;
    let query_base = serve(app_with_extractor(
        verbose.clone(),
        BearerExtractor::new().allow_query(true),
    ))
    .await;

    let mut responses = String::new();
    let mut record = |r: &Reply| {
        responses += &format!(
            "{:?}\n{:?}\n{}\n",
            r.status,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
    };
    for (name, path, token, status) in &cases {
        for variant in ["http", "grpc"] {
            let mut req = Req::get(*path).bearer(token);
            if variant == "grpc" {
                req = req
                    .method(Method::POST)
                    .header("content-type", "application/grpc");
            }
            let r = req.send(&client, &base).await;
            let got = if variant == "grpc" && *status != 200 {
                r.header("grpc-status").map(str::to_owned)
            } else {
                Some(r.status.as_str().to_owned())
            };
            let want = match (variant, *status) {
                ("grpc", 401) => "16".to_owned(),
                ("grpc", 403) => "7".to_owned(),
                ("grpc", 404) => "5".to_owned(),
                (_, s) => s.to_string(),
            };
            assert_eq!(
                got.as_deref(),
                Some(want.as_str()),
                "{name} ({variant}): {r:?}"
            );
            record(&r);
        }
    }
    // I2 failures carry tokens too.
    let a = &all_tokens[0];
    let b = &all_tokens[1];
    for (req, on) in [
        (Req::get("/read").bearer(a).bearer(b), &base),
        (Req::get(format!("/read?access_token={b}")).bearer(a), &base),
        (
            Req::get(format!("/me?access_token={a}&access_token={b}")),
            &query_base,
        ),
        (Req::get(format!("/me?access_token={b}")), &query_base),
        (
            Req::get(format!("/me?access_token={}", all_tokens[13])),
            &query_base,
        ),
    ] {
        let r = req.send(&client, on).await;
        assert!(matches!(r.status.as_u16(), 200 | 400 | 401), "{r:?}");
        record(&r);
    }

    // ── Debug and Display of the values a user might log. ─────────────────────────────────────
    let validator = validator();
    let layer = ValidateBearerLayer::new(validator.clone(), verbose.clone());
    let service = layer.layer(tower::service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));
    let mut debug = format!(
        "{validator:?}\n{validator:#?}\n{layer:?}\n{layer:#?}\n{service:?}\n{verbose:?}\n{:?}\n",
        rsa_only_validator()
    );
    let extractor = BearerExtractor::new().allow_query(true);
    for token in &all_tokens {
        let request = Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        match extractor.extract(&request) {
            Ok(bearer) => {
                debug += &format!("{bearer:?} {bearer:#?}\n");
                match validator.validate(&bearer).outcome().await {
                    Ok(claims) => debug += &format!("{claims:?}\n"),
                    Err(error) => debug += &describe(&error),
                }
            }
            Err(error) => debug += &describe(&error),
        }
        if let Ok(bearer) = BearerToken::new(token) {
            debug += &format!("{bearer:?}\n");
        }
        match validator.verify(token) {
            Ok(claims) => debug += &format!("{claims:?}\n"),
            Err(rejection) => debug += &format!("{rejection} {rejection:?} {rejection:#?}\n"),
        }
    }
    for request in [
        Request::builder()
            .header("authorization", format!("Bearer {a}"))
            .header("authorization", format!("Bearer {b}")),
        Request::builder()
            .uri(format!("/?access_token={a}"))
            .header("authorization", format!("Bearer {b}")),
        Request::builder().uri(format!("/?access_token={a}&access_token={b}")),
    ] {
        let request = request.body(()).unwrap();
        if let Err(error) = extractor.extract(&request) {
            debug += &describe(&error);
        }
    }

    // Let the server's tasks finish writing.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let logs = capture.take();
    assert_clean("the log output", &logs, &all_tokens);
    assert_clean("Debug/Display output", &debug, &all_tokens);
    assert_clean("the responses", &responses, &all_tokens);
    // The HMAC secret is no token, but it must not show up either.
    let secret = std::str::from_utf8(HMAC_SECRET).unwrap();
    for (what, text) in [
        ("logs", &logs),
        ("Debug output", &debug),
        ("responses", &responses),
    ] {
        assert!(
            !text.contains(secret),
            "the HMAC secret appears in the {what}"
        );
    }
}

/// `Display` and `Debug` of an error, and of the pending failure carrying it.
fn describe(error: &AuthError) -> String {
    let pending = pending_response::<String>(error.clone());
    let pending = pending.extensions().get::<PendingFailure>().unwrap();
    let rendered = Emitter::new("api")
        .with_disclosure(Disclosure::Verbose)
        .render(error, &RequestContext::of(&Request::new(())));
    format!(
        "{error} {error:?} {error:#?} {pending:?} {} {:?} {}\n",
        pending.failure(),
        rendered.headers(),
        String::from_utf8_lossy(rendered.body())
    )
}
