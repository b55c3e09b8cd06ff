//! Why a token was refused, for the operator: one `debug` event per refusal, with the reason,
//! the method and the path — never the token, never the query string.

mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt as _;
use tower_bearer::emit::Emitter;
use tracing_subscriber::layer::SubscriberExt as _;

use support::{
    keys::Key,
    logs::{Capture, Events, Recorded},
    routes::app,
    tokens::*,
};

/// A value in every request's query string: it must not be logged either.
const QUERY_SECRET: &str = "QuerySecretThatMustNotBeLogged";

/// The refusal event for `reason` on a `GET` of `path`, exactly.
fn refusal(reason: &str, path: &str) -> Recorded {
    Recorded {
        level: tracing::Level::DEBUG,
        target: "tower_bearer::failure".to_owned(),
        fields: BTreeMap::from(
            [
                ("message", "bearer credentials refused"),
                ("reason", reason),
                ("method", "GET"),
                ("path", path),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        ),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_refusal_is_logged_once_with_its_reason_and_never_the_token() {
    // Everything at every level, on this thread (the router runs in-process, on it).
    let events = Events::default();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(events.clone()).with(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(capture.clone()),
    );
    let _default = tracing::subscriber::set_default(subscriber);

    let with = |changes| token(Key::Rs, &claims_with(changes));
    let bad_signature = {
        let good = with(json!({}));
        let parts: Vec<&str> = good.split('.').collect();
        let forged = serde_json::to_vec(&claims_with(json!({ "sub": "mallory" }))).unwrap();
        format!("{}.{}.{}", parts[0], b64(&forged), parts[2])
    };
    let wrong_typ = {
        let mut header = Key::Es.header();
        header.typ = Some("JWT".into());
        token_with_header(&header, &valid_claims(), &Key::Es.encoding_key())
    };
    // (path, token, status, reason)
    let cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        (
            "/read",
            Some(with(json!({ "exp": now() - 3600 }))),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        (
            "/read",
            Some(bad_signature),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            "/read",
            Some(with(json!({ "aud": "https://other.example" }))),
            StatusCode::UNAUTHORIZED,
            "audience",
        ),
        (
            "/read",
            Some(with(json!({ "iss": "https://evil.example" }))),
            StatusCode::UNAUTHORIZED,
            "issuer",
        ),
        ("/read", Some(wrong_typ), StatusCode::UNAUTHORIZED, "typ"),
        (
            "/read",
            Some(token(Key::Foreign, &valid_claims())),
            StatusCode::UNAUTHORIZED,
            "unknown_kid",
        ),
        (
            "/read",
            Some("NotAJwtButASecretOpaqueValue0123456789".to_owned()),
            StatusCode::UNAUTHORIZED,
            "malformed",
        ),
        (
            "/read",
            Some(with(json!({ "scope": "profile" }))),
            StatusCode::FORBIDDEN,
            "scope",
        ),
        (
            "/admin",
            Some(with(json!({}))),
            StatusCode::NOT_FOUND,
            "hidden",
        ),
        ("/me", None, StatusCode::UNAUTHORIZED, "missing"),
    ];

    let app = app(Emitter::new("api"));
    let mut tokens = Vec::new();
    for (path, token, status, reason) in &cases {
        let mut request = Request::get(format!("{path}?note={QUERY_SECRET}"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
            tokens.push(token.clone());
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), *status, "{reason}");
        let refusals: Vec<Recorded> = events
            .take()
            .into_iter()
            .filter(|event| event.target == "tower_bearer::failure")
            .collect();
        assert_eq!(refusals, [refusal(reason, path)], "{reason}");
    }

    // A valid token is no refusal.
    let valid = with(json!({}));
    let request = Request::get("/read")
        .header("authorization", format!("Bearer {valid}"))
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        events
            .take()
            .iter()
            .all(|event| event.target != "tower_bearer::failure")
    );

    let logs = capture.text();
    assert_eq!(
        logs.matches("bearer credentials refused").count(),
        cases.len()
    );
    assert!(
        logs.contains(r#"reason="expired" method=GET path="/read""#),
        "{logs}"
    );
    assert!(!logs.contains(QUERY_SECRET), "{logs}");
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(token.as_str()),
            "a token in the logs: {logs}"
        );
        assert!(!logs.contains(signature), "a signature in the logs: {logs}");
    }
}
