//! Failure bodies in the application's own format (`Emitter::with_body_format`): the body is
//! the application's, status and headers stay the wire contract's.

mod support;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Request, Response, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_TYPE},
};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tower::{Layer as _, ServiceExt as _, service_fn};
use tower_bearer::{
    emit::{EmitLayer, Emitter, FailureView, format_body_fn, pending_response},
    upstream::{ReauthReason, UpstreamError},
};

use support::{keys::Key, routes::app, tokens::*};

/// An application's own error JSON: `{"error": {"code", "message", "status", "provider"}}`.
fn acme(realm: &str) -> Emitter {
    Emitter::new(realm).with_body_format(format_body_fn(|failure: &FailureView<'_>| {
        let body = json!({
            "error": {
                "code": failure.kind(),
                "message": failure.title(),
                "status": failure.status().as_u16(),
                "provider": failure.member("provider"),
            }
        });
        (
            HeaderValue::from_static("application/vnd.acme.error+json"),
            Bytes::from(body.to_string()),
        )
    }))
}

/// The headers and the body of a response.
async fn collect<B>(response: Response<B>) -> (StatusCode, HeaderMap, Bytes)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// The headers but those describing the body (`Content-Type`, `Content-Length`): what must not
/// change with the body's format.
fn without_body_fields(mut headers: HeaderMap) -> HeaderMap {
    headers.remove(CONTENT_TYPE);
    headers.remove(CONTENT_LENGTH);
    headers
}

#[tokio::test]
async fn an_inbound_failure_gets_the_applications_body_and_the_contracts_headers() {
    let expired = token(Key::Rs, &claims_with(json!({ "exp": now() - 3600 })));
    let request = || {
        Request::get("/read")
            .header("authorization", format!("Bearer {expired}"))
            .body(Body::empty())
            .unwrap()
    };

    let custom = app(acme("api")).oneshot(request()).await.unwrap();
    let (status, headers, body) = collect(custom).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="api", error="invalid_token""#
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers[CONTENT_TYPE], "application/vnd.acme.error+json");
    assert_eq!(headers[CONTENT_LENGTH], body.len().to_string().as_str());
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({ "error": {
            "code": "invalid-token",
            "message": "Invalid access token",
            "status": 401,
            "provider": null,
        } })
    );

    // The same request with problem details: only the body and its type differ.
    let standard = app(Emitter::new("api")).oneshot(request()).await.unwrap();
    let (standard_status, standard_headers, _) = collect(standard).await;
    assert_eq!(standard_headers[CONTENT_TYPE], "application/problem+json");
    assert_eq!(standard_status, status);
    assert_eq!(
        without_body_fields(standard_headers),
        without_body_fields(headers)
    );
}

#[tokio::test]
async fn an_upstream_failure_gets_the_applications_body_and_the_contracts_headers() {
    let handler = service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(pending_response::<Full<Bytes>>(
            UpstreamError::ReauthRequired {
                provider: Arc::from("github"),
                reason: ReauthReason::InvalidGrant,
                received_status: Some(StatusCode::UNAUTHORIZED),
                connect_url: Some(Arc::from("https://gw.example/connect/github")),
            },
        ))
    });

    let custom = EmitLayer::new(acme("api")).layer(handler);
    let (status, headers, body) = collect(custom.oneshot(Request::new(())).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key("www-authenticate"));
    assert_eq!(
        headers["proxy-status"],
        r#"tower-bearer; received-status=401; next-hop="github"; details="upstream_reauth_required""#
    );
    assert_eq!(
        headers["link"],
        r#"<https://gw.example/connect/github>; rel="https://docs.rs/tower-bearer/latest/tower_bearer/upstream/#connect""#
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers[CONTENT_TYPE], "application/vnd.acme.error+json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({ "error": {
            "code": "upstream-reauth-required",
            "message": "Upstream re-authorization required",
            "status": 403,
            "provider": "github",
        } })
    );

    let standard = EmitLayer::new(Emitter::new("api")).layer(handler);
    let (standard_status, standard_headers, _) =
        collect(standard.oneshot(Request::new(())).await.unwrap()).await;
    assert_eq!(standard_headers[CONTENT_TYPE], "application/problem+json");
    assert_eq!(standard_status, status);
    assert_eq!(
        without_body_fields(standard_headers),
        without_body_fields(headers)
    );
}

#[tokio::test]
async fn no_body_where_problem_details_would_send_none() {
    let app = app(acme("api"));
    let send = |path: &str, scope: &str, accept: Option<&str>| {
        let token = token(Key::Rs, &claims_with(json!({ "scope": scope })));
        let mut request = Request::get(path).header("authorization", format!("Bearer {token}"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };

    // A hidden resource's 404 looks like the application's own.
    let (status, headers, body) = collect(send("/admin", "read", None).await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!headers.contains_key(CONTENT_TYPE));
    assert_eq!(body, "");

    // A caller that takes no JSON gets the headers only.
    let response = send("/read", "profile", Some("text/html")).await.unwrap();
    let (status, headers, body) = collect(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="api", error="insufficient_scope", scope="read""#
    );
    assert!(!headers.contains_key(CONTENT_TYPE));
    assert_eq!(body, "");
}
