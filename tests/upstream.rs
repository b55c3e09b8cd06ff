//! The outbound contract (rows U1–U9) over real HTTP: a test provider API and token endpoint, a
//! gateway that calls them through `RefreshAndRetry` + `ClassifyUpstream`, and a caller.

mod support;

use std::{
    fmt,
    future::{Future, Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{http::Reply, upstream::*};
use tokio::sync::Barrier;
use tower::ServiceExt;
use tower_bearer::{
    emit::{BodyMode, CONNECT_RELATION},
    upstream::{
        ReauthReason, UpstreamError,
        classify::UpstreamClass,
        classify::{Standard, UpstreamFailureClass},
        store::Link,
        store::LinkKey,
        store::MemoryGuard,
        store::MemoryStore,
        store::Saved,
        store::TokenStore,
    },
};
use tower_http::classify::{ClassifiedResponse, ClassifyResponse};

const PROBLEM_BASE: &str = "https://docs.rs/tower-bearer/latest/tower_bearer/problem/#";

fn link_header() -> String {
    format!(r#"<{CONNECT}>; rel="{CONNECT_RELATION}""#)
}

/// `proxy-status` when the link needs re-authorization and the provider was not asked (marked,
/// missing, or its refresh refused).
const REAUTH_DENIED: &str =
    r#"gw; error=http_request_denied; next-hop="acme"; details="upstream_reauth_required""#;
/// `proxy-status` when the provider's 401 means the link needs re-authorization.
const REAUTH_AFTER_401: &str =
    r#"gw; received-status=401; next-hop="acme"; details="upstream_reauth_required""#;
/// `proxy-status` when the token endpoint could not refresh the link.
const REFRESH_UNAVAILABLE: &str =
    r#"gw; error=destination_unavailable; details="upstream_refresh_unavailable""#;

fn assert_problem(answer: &Reply, slug: &str) {
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let json = answer.json();
    assert_eq!(json["type"], format!("{PROBLEM_BASE}{slug}"), "{json}");
    assert_eq!(json["status"], answer.status.as_u16());
    assert_eq!(json["provider"], PROVIDER);
}

/// A failure's body: a problem document of type `slug`, or nothing in `HeadersOnly` mode.
fn assert_body(answer: &Reply, body_mode: BodyMode, slug: &str) {
    if body_mode == BodyMode::HeadersOnly {
        assert!(answer.body.is_empty());
    } else {
        assert_problem(answer, slug);
    }
}

/// Row U4 for a caller whose own token is fine: 403 without a challenge, `proxy-status` naming
/// re-authorization, a `Link` to the connect flow.
fn assert_reauth_required(answer: &Reply, proxy_status: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.header("www-authenticate"),
        None,
        "the caller's own token is fine"
    );
    assert_eq!(answer.header("proxy-status"), Some(proxy_status));
    assert_eq!(answer.header("link"), Some(link_header().as_str()));
}

/// The provider's own answer, passed on without its challenge: its plain-text `body`, no refresh.
fn assert_providers_own_answer(world: &World, answer: &Reply, body: &str) {
    assert_eq!(answer.header("www-authenticate"), None);
    assert_eq!(answer.header("content-type"), Some("text/plain"));
    assert_eq!(answer.body, body, "the provider's own body");
    assert_eq!(world.token_endpoint.calls(), 0);
}

/// The link holds these access and refresh tokens.
fn assert_tokens(link: &Link, access: &str, refresh: &str) {
    assert_eq!(link.access_token().expose_secret(), access);
    assert_eq!(link.refresh_token().unwrap().expose_secret(), refresh);
}

/// The stored link still holds `at-0` / `rt-0`, unmarked.
fn assert_link_intact(world: &World) {
    let link = world.link();
    assert_tokens(&link, "at-0", "rt-0");
    assert!(!link.needs_reauthorization());
}

// ---------------------------------------------------------------------------------------------
// U1

#[tokio::test]
async fn u1_not_auth_related_passes_through_without_hop_by_hop_headers() {
    let world = world(Options::default()).await;
    world.link_accepted(Link::new("good"));

    let answer = world.get("/hop").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "hop");
    assert_eq!(answer.header("x-upstream"), Some("yes"));
    // Named in the provider's `Connection`: hop-by-hop, removed.
    assert_eq!(answer.header("x-private"), None);
    assert_eq!(answer.header("proxy-status"), None);

    // The caller's own credentials never reach the provider: the link's token replaces them.
    let answer = world
        .call(
            Method::POST,
            "/echo",
            &[("authorization", "Bearer callers-own-token")],
            b"payload",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "payload");
    assert_eq!(world.api.tokens_seen(), ["good", "good"]);
    assert_eq!(world.token_endpoint.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// U2, U3

#[tokio::test]
async fn u2_rejected_token_is_refreshed_once_and_the_request_retried_with_its_body() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());

    let answer = world
        .call(
            Method::POST,
            "/echo",
            &[("content-type", "application/json")],
            br#"{"n":1}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, r#"{"n":1}"#, "the retry replays the body");
    assert_eq!(world.api.tokens_seen(), ["at-0", "at-1"]);
    assert_eq!(world.token_endpoint.calls(), 1);

    let link = world.link();
    assert_tokens(&link, "at-1", "rt-1");
    assert_eq!(link.scopes(), ["files.read"]);

    // The grant: client_secret_basic, scope and resource (RFC 8707).
    let (form, auth) = world.token_endpoint.requests.lock().unwrap()[0].clone();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("grant_type"), Some("refresh_token"));
    assert_eq!(field("refresh_token"), Some("rt-0"));
    assert_eq!(field("scope"), Some("files.read"));
    assert_eq!(field("resource"), Some("https://api.acme.example/"));
    assert_eq!(field("client_secret"), None);
    assert_eq!(auth.as_deref(), Some("Basic Z3ctY2xpZW50Omd3LXNlY3JldA=="));
}

#[tokio::test]
async fn u2_403_with_bearer_invalid_token_and_client_secret_post() {
    let world = world(Options {
        secret_post: true,
        ..Options::default()
    })
    .await;
    world.link_with(stale_link());

    let answer = world.get("/invalid-403").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(world.api.tokens_seen(), ["at-0", "at-1"]);
    let (form, auth) = world.token_endpoint.requests.lock().unwrap()[0].clone();
    assert_eq!(auth, None);
    assert!(form.contains(&("client_id".into(), "gw-client".into())));
    assert!(form.contains(&("client_secret".into(), "gw-secret".into())));
}

#[tokio::test]
async fn u2_power_bi_token_expired_in_the_body_is_refreshed_and_retried_transparently() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());

    let answer = world.get("/powerbi").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("proxy-status"), None);
    assert_eq!(world.api.tokens_seen(), ["at-0", "at-1"]);
    assert_eq!(world.token_endpoint.calls(), 1);
}

#[tokio::test]
async fn u2_power_bi_body_is_handed_on_intact_when_not_refreshable() {
    // Without a refresh token the 403 cannot be fixed; the classifier still read the body, and a
    // direct client call sees the class.
    let world = world(Options::default()).await;
    world.link_with(stale_link());
    world.api.reject_all.store(true, Ordering::SeqCst);
    let error = world.call_api("/powerbi").await.unwrap_err();
    assert!(matches!(
        error,
        UpstreamError::ReauthRequired {
            reason: ReauthReason::RejectedAfterRefresh,
            received_status: Some(StatusCode::FORBIDDEN),
            ..
        }
    ));
}

#[tokio::test]
async fn u3_token_expiring_within_the_skew_is_refreshed_before_the_call() {
    let world = world(Options::default()).await;
    world.link_accepted(expiring_link());

    let answer = world.get("/data").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        world.api.tokens_seen(),
        ["at-1"],
        "refreshed before calling"
    );
    assert_eq!(world.token_endpoint.calls(), 1);

    // Outside the skew now: no further refresh.
    world.get("/data").await;
    assert_eq!(world.token_endpoint.calls(), 1);
}

#[tokio::test]
async fn u3_failed_refresh_ahead_of_expiry_uses_the_still_valid_token() {
    let world = world(Options::default()).await;
    world.link_accepted(expiring_link());
    world.token_endpoint.set_mode(Mode::Unavailable);

    let answer = world.get("/data").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(world.api.tokens_seen(), ["at-0"]);
    // Not asked again on every request while it is down.
    world.get("/data").await;
    assert_eq!(world.token_endpoint.calls(), 1);
    let link = world.link();
    assert_eq!(link.refresh_token().unwrap().expose_secret(), "rt-0");
}

// ---------------------------------------------------------------------------------------------
// Single flight and rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_1000_concurrent_rejected_requests_cause_exactly_one_refresh() {
    const N: usize = 1000;
    let world = world(Options {
        upstream_timeout: Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    world.link_with(stale_link());
    // Hold every rejection until all N requests were rejected: they all carried `at-0`.
    *world.api.hold.lock().unwrap() = Some(Arc::new(Barrier::new(N)));
    *world.token_endpoint.delay.lock().unwrap() = Duration::from_millis(50);

    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let client = world.client.clone();
            let mut request = world.api_request(&format!("/item/{i}"));
            *request.method_mut() = Method::PUT;
            *request.body_mut() = Full::new(Bytes::from(format!("body-{i}")));
            tokio::spawn(async move {
                let response = client.oneshot(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                Ok::<_, String>((status, body, i))
            })
        })
        .collect();
    for task in tasks {
        let (status, body, i) = task.await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("body-{i}"));
    }
    assert_eq!(world.api.rejections.load(Ordering::SeqCst), N);
    assert_eq!(world.token_endpoint.calls(), 1, "exactly one refresh");
    let tokens = world.api.tokens_seen();
    assert_eq!(tokens.iter().filter(|t| *t == "at-0").count(), N);
    assert_eq!(tokens.iter().filter(|t| *t == "at-1").count(), N);
}

#[tokio::test]
async fn rotation_the_second_refresh_uses_the_first_refreshs_refresh_token() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());

    assert_eq!(world.get("/data").await.status, StatusCode::OK);
    // The provider revokes `at-1`: the next request refreshes again, with `rt-1`.
    world.api.valid.lock().unwrap().remove("at-1");
    assert_eq!(world.get("/data").await.status, StatusCode::OK);

    assert_eq!(
        world.token_endpoint.refresh_tokens_presented(),
        ["rt-0", "rt-1"]
    );
    assert!(!world.token_endpoint.revoked.load(Ordering::SeqCst));
    let link = world.link();
    assert_tokens(&link, "at-2", "rt-2");
    assert_eq!(world.api.tokens_seen(), ["at-0", "at-1", "at-1", "at-2"]);
}

#[tokio::test]
async fn without_rotation_the_old_refresh_token_is_kept() {
    let world = world(Options {
        rotate: false,
        ..Options::default()
    })
    .await;
    world.link_with(stale_link());
    assert_eq!(world.get("/data").await.status, StatusCode::OK);
    assert_tokens(&world.link(), "at-1", "rt-0");
}

// ---------------------------------------------------------------------------------------------
// U4

#[tokio::test]
async fn u4_rejected_without_refresh_token() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_with(Link::new("at-0"));

        let answer = world.get("/data").await;
        assert_reauth_required(&answer, REAUTH_AFTER_401);
        assert_body(&answer, body_mode, "upstream-reauth-required");
        if body_mode == BodyMode::HeadersOnly {
            assert_eq!(answer.header("content-type"), None);
        }
        assert!(world.link().needs_reauthorization());
        assert_eq!(world.token_endpoint.calls(), 0);

        // Marked: the next request fails without calling anyone.
        let again = world.get("/data").await;
        assert_eq!(again.status, StatusCode::FORBIDDEN);
        assert_eq!(again.header("proxy-status"), Some(REAUTH_DENIED));
        assert_eq!(world.api.tokens_seen().len(), 1);
    }
}

#[tokio::test]
async fn u4_invalid_grant_marks_the_link_and_keeps_the_refresh_token() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_with(stale_link());
        world.token_endpoint.set_mode(Mode::InvalidGrant);

        let answer = world.get("/data").await;
        assert_reauth_required(&answer, REAUTH_AFTER_401);
        assert_body(&answer, body_mode, "upstream-reauth-required");
        if body_mode != BodyMode::HeadersOnly {
            assert_eq!(answer.json()["connect"], CONNECT);
        }
        let link = world.link();
        assert!(link.needs_reauthorization());
        assert_eq!(link.refresh_token().unwrap().expose_secret(), "rt-0");
    }
}

#[tokio::test]
async fn u4_fresh_token_rejected_too_is_never_retried_twice() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());
    world.api.reject_all.store(true, Ordering::SeqCst);

    let answer = world.get("/data").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.header("proxy-status"), Some(REAUTH_AFTER_401));
    assert_eq!(
        world.api.tokens_seen(),
        ["at-0", "at-1"],
        "one retry, no loop"
    );
    assert_eq!(world.token_endpoint.calls(), 1);
    let link = world.link();
    assert!(link.needs_reauthorization());
    assert_eq!(
        link.refresh_token().unwrap().expose_secret(),
        "rt-1",
        "the rotated token is kept"
    );
}

#[tokio::test]
async fn u4_not_connected_and_browser_navigation() {
    let world = world(Options::default()).await;

    let answer = world.get("/data").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.header("proxy-status"), Some(REAUTH_DENIED));

    // A browser navigating carries no bearer token, so it is never sent to the connect route
    // (which needs one): the layers alone answer it 403 with the `Link`; sending it to the
    // provider with a flow started is `connect::routes`' job (tests/proxy_e2e.rs).
    let answer = world
        .call(
            Method::GET,
            "/data",
            &[
                ("accept", "text/html,application/xhtml+xml"),
                ("sec-fetch-mode", "navigate"),
            ],
            b"",
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.header("location"), None);
    assert_eq!(
        answer.header("link"),
        Some(format!("<{CONNECT}>; rel=\"{CONNECT_RELATION}\"").as_str())
    );
    assert_eq!(answer.header("www-authenticate"), None);
    assert!(world.api.tokens_seen().is_empty());
}

#[tokio::test]
async fn u4_over_grpc_is_permission_denied_with_proxy_status_metadata() {
    let world = world(Options::default()).await;
    let answer = world
        .call(
            Method::POST,
            "/pkg.Svc/Method",
            &[("content-type", "application/grpc")],
            b"",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("grpc-status"), Some("7"));
    assert_eq!(answer.header("proxy-status"), Some(REAUTH_DENIED));
}

// ---------------------------------------------------------------------------------------------
// U5, U6

#[tokio::test]
async fn u5_insufficient_scope_is_not_refreshed() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_accepted(Link::new("good").with_refresh_token("rt-0"));

        let answer = world.get("/scope").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(answer.header("www-authenticate"), None);
        assert_eq!(
            answer.header("proxy-status"),
            Some(r#"gw; received-status=403; details="upstream_insufficient_scope""#)
        );
        assert_body(&answer, body_mode, "upstream-insufficient-scope");
        if body_mode != BodyMode::HeadersOnly {
            assert_eq!(answer.json()["scope"], "files.read files.write");
        }
        assert_eq!(world.token_endpoint.calls(), 0);
        assert!(!world.link().needs_reauthorization());
    }
}

#[tokio::test]
async fn u6_plain_403_passes_through_with_proxy_status_and_without_the_providers_challenge() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_accepted(Link::new("good").with_refresh_token("rt-0"));

        let answer = world.get("/forbidden").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(
            answer.header("proxy-status"),
            Some("gw; received-status=403")
        );
        assert_providers_own_answer(&world, &answer, "nope");
    }
}

// ---------------------------------------------------------------------------------------------
// U7, U8

#[tokio::test]
async fn u7_token_endpoint_outage_keeps_the_tokens_and_recovers() {
    for body_mode in BODY_MODES {
        let world = world(Options {
            body_mode,
            grant_timeout: Duration::from_millis(300),
            ..Options::default()
        })
        .await;
        world.link_with(stale_link());

        for (mode, retry_after) in [
            (Mode::Unavailable, "7"),
            (Mode::Slow, "5"),
            (Mode::Garbage, "5"),
        ] {
            world.token_endpoint.set_mode(mode);
            let answer = world.get("/data").await;
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
            assert_eq!(answer.header("www-authenticate"), None);
            assert_eq!(answer.header("proxy-status"), Some(REFRESH_UNAVAILABLE));
            assert_eq!(answer.header("retry-after"), Some(retry_after), "{mode:?}");
            assert_body(&answer, body_mode, "upstream-refresh-unavailable");
            assert_link_intact(&world);
        }

        // Recovery: the next request refreshes with the untouched refresh token.
        world.token_endpoint.set_mode(Mode::Normal);
        let answer = world.get("/data").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(world.token_endpoint.refresh_tokens_presented(), ["rt-0"; 4]);
        assert_tokens(&world.link(), "at-1", "rt-1");
    }
}

#[tokio::test]
async fn u8_invalid_client_is_our_configuration() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_with(stale_link());
        world.token_endpoint.set_mode(Mode::InvalidClient);

        let answer = world.get("/data").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.header("www-authenticate"), None);
        assert_eq!(
            answer.header("proxy-status"),
            Some("gw; error=proxy_configuration_error")
        );
        assert_body(&answer, body_mode, "upstream-misconfigured");
        assert_link_intact(&world);
    }
}

// ---------------------------------------------------------------------------------------------
// U9

#[tokio::test]
async fn u9_unreachable_and_too_slow() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_accepted(Link::new("good"));

        let answer = world.get("/unreachable/data").await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            answer.header("proxy-status"),
            Some("gw; error=connection_refused")
        );
        assert_eq!(answer.header("www-authenticate"), None);

        let answer = world.get("/slow").await;
        assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            answer.header("proxy-status"),
            Some("gw; error=http_response_timeout")
        );
        assert_body(&answer, body_mode, "upstream-timeout");
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies that cannot be replayed; tokens out of errors

#[tokio::test]
async fn a_body_too_large_to_replay_is_not_retried_and_says_so() {
    let world = world(Options {
        replay_limit: 16,
        ..Options::default()
    })
    .await;
    world.link_with(stale_link());

    let body: &'static [u8] = &[b'x'; 1024];
    let answer = world
        .call(Method::POST, "/echo", &[("accept", "*/*")], body)
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.header("proxy-status"),
        Some(r#"gw; received-status=401; details="upstream_retry_not_possible""#)
    );
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(world.api.tokens_seen(), ["at-0"], "not retried");
    // But the token was refreshed: sending it again works.
    let answer = world.call(Method::POST, "/echo", &[], body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), 1024);
    assert_eq!(world.token_endpoint.calls(), 1);
}

#[tokio::test]
async fn errors_and_debug_output_never_contain_tokens() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());
    world.api.reject_all.store(true, Ordering::SeqCst);
    let error = world.call_api("/data").await.unwrap_err();
    let text = format!(
        "{error} {error:?} {:?} {:?}",
        world.store.get(&key()),
        world.store
    );
    for secret in ["at-0", "at-1", "rt-0", "rt-1", "gw-secret"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test]
async fn requests_without_a_link_key_pass_through_untouched() {
    let world = world(Options::default()).await;
    let request = world.untagged_api_request("/data");
    let response = world.client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(world.api.tokens_seen(), [""]);

    // A key naming another provider is a configuration error (row U8), not a silent pass.
    let mut request = world.api_request("/data");
    request.extensions_mut().insert(LinkKey::new(USER, "other"));
    let error = world.client.clone().oneshot(request).await.unwrap_err();
    assert!(matches!(error, UpstreamError::Misconfigured { .. }));
}

#[tokio::test]
async fn the_classification_drives_tower_http_classifiers() {
    let world = world(Options::default()).await;
    world.link_accepted(Link::new("good"));
    let request = world.api_request("/scope");
    // Through the classify layer alone (RefreshAndRetry would turn this into an error).
    let classify = world.client.get_ref().clone();
    let mut request =
        request.map(|body| tower_bearer::upstream::refresh::RetryBody::chained(Bytes::new(), body));
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, "Bearer good".parse().unwrap());
    let response = classify.oneshot(request).await.unwrap();
    let expected = UpstreamClass::InsufficientScope {
        scopes: vec!["files.read".into(), "files.write".into()],
    };
    assert_eq!(
        response.extensions().get::<UpstreamClass>(),
        Some(&expected)
    );
    match Standard::new().classify_response(&response) {
        ClassifiedResponse::Ready(Err(UpstreamFailureClass::Auth(class))) => {
            assert_eq!(class, expected)
        }
        _ => panic!("not classified as an auth failure"),
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: token-endpoint input, store outages, once-per-request refresh, short-lived
// tokens, hanging refreshes

#[tokio::test]
async fn a_huge_expires_in_neither_panics_nor_loses_the_rotated_refresh_token() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());
    // 1e19 seconds: `now + expires_in` does not fit a `SystemTime`.
    *world.token_endpoint.expires_in.lock().unwrap() = "1e19".into();

    let answer = world.get("/data").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(world.api.tokens_seen(), ["at-0", "at-1"]);
    let link = world.link();
    assert_tokens(&link, "at-1", "rt-1");
    assert_eq!(link.expires_at(), None, "unrepresentable: no known expiry");
    assert!(!link.needs_reauthorization());

    // The link keeps working.
    assert_eq!(world.get("/data").await.status, StatusCode::OK);
    assert_eq!(world.token_endpoint.calls(), 1);
}

/// A store whose writes fail while `down` is set, and which fails altogether (loads and locks
/// too) while `unavailable` is set.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
    unavailable: Arc<AtomicBool>,
    failed_saves: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct StoreDown;

impl fmt::Display for StoreDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the store is down")
    }
}

impl std::error::Error for StoreDown {}

impl TokenStore for FlakyStore {
    type Error = StoreDown;
    type Load = Ready<Result<Option<Link>, StoreDown>>;
    type Guard = MemoryGuard;

    fn load(&self, key: &LinkKey) -> Self::Load {
        if self.unavailable.load(Ordering::SeqCst) {
            return ready(Err(StoreDown));
        }
        ready(Ok(self.inner.get(key)))
    }

    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<MemoryGuard, StoreDown>> + Send {
        let unavailable = self.unavailable.load(Ordering::SeqCst);
        let lock = self.inner.lock(key);
        async move {
            if unavailable {
                return Err(StoreDown);
            }
            let Ok(guard) = lock.await;
            Ok(guard)
        }
    }

    fn save(
        &self,
        key: &LinkKey,
        token: Link,
    ) -> impl Future<Output = Result<Saved, StoreDown>> + Send {
        let down = self.down.load(Ordering::SeqCst) || self.unavailable.load(Ordering::SeqCst);
        if down {
            self.failed_saves.fetch_add(1, Ordering::SeqCst);
        }
        let write = (!down).then(|| TokenStore::save(&self.inner, key, token));
        async move {
            match write {
                Some(write) => {
                    let Ok(saved) = write.await;
                    Ok(saved)
                }
                None => Err(StoreDown),
            }
        }
    }

    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, StoreDown>> + Send {
        ready(Ok(self.inner.insert(key.clone(), link)))
    }

    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, StoreDown>> + Send {
        ready(Ok(self.inner.remove(key).is_some()))
    }

    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, StoreDown>> + Send {
        let list = TokenStore::list(&self.inner, issuer, user);
        async move {
            let Ok(links) = list.await;
            Ok(links)
        }
    }
}

#[tokio::test]
async fn a_rotation_the_store_cannot_take_is_used_kept_and_written_back_never_replayed() {
    let world = world(Options::default()).await;
    let store = FlakyStore::default();
    store.inner.insert(key(), stale_link());
    let client = world.client_over(store.clone());
    let call = || client.clone().oneshot(world.api_request("/data"));
    store.down.store(true, Ordering::SeqCst);

    // Rejected, refreshed (rotated to rt-1), but the store is down: the fresh token is used
    // anyway.
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(store.failed_saves.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        store
            .inner
            .get(&key())
            .unwrap()
            .refresh_token()
            .unwrap()
            .expose_secret(),
        "rt-0",
        "the store did not take it"
    );

    // The next request uses the kept token, without refreshing.
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.token_endpoint.calls(), 1);
    assert_eq!(world.api.tokens_seen(), ["at-0", "at-1", "at-1"]);

    // The provider revokes at-1: the next refresh uses rt-1, never the revoked rt-0.
    world.api.valid.lock().unwrap().remove("at-1");
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        world.token_endpoint.refresh_tokens_presented(),
        ["rt-0", "rt-1"]
    );
    assert!(!world.token_endpoint.revoked.load(Ordering::SeqCst));

    // The store is back: the kept link is written back in the background.
    store.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let link = store.inner.get(&key()).unwrap();
        if link.refresh_token().unwrap().expose_secret() == "rt-2" {
            assert_eq!(link.access_token().expose_secret(), "at-2");
            assert!(!link.needs_reauthorization());
            break;
        }
        assert!(Instant::now() < deadline, "never written back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.token_endpoint.calls(), 2);
}

const STORE_UNAVAILABLE: &str =
    r#"gw; error=proxy_internal_error; details="link_store_unavailable""#;

#[tokio::test]
async fn s1_a_store_that_is_down_is_503_with_retry_after_never_401_or_500() {
    let world = world(Options::default()).await;
    let store = FlakyStore::default();
    store.inner.insert(key(), stale_link());
    let gateway = world.gateway_over(store.clone()).await;
    let get = |accept: &'static str| {
        let request = support::http::Req::get("/data").header("accept", accept);
        let (caller, gateway) = (&world.caller, &gateway);
        async move { request.send(caller, gateway).await }
    };
    store.unavailable.store(true, Ordering::SeqCst);

    for accept in ["application/json", "text/plain"] {
        let answer = get(accept).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{accept}");
        assert_eq!(answer.header("proxy-status"), Some(STORE_UNAVAILABLE));
        assert!(
            answer
                .header("retry-after")
                .is_some_and(|after| after.parse::<u64>().is_ok()),
            "{:?}",
            answer.header("retry-after")
        );
        assert_eq!(
            answer.header("www-authenticate"),
            None,
            "the caller's token is fine"
        );
    }
    assert_problem(&get("application/json").await, "link-store-unavailable");
    // Nothing reached the provider or its token endpoint.
    assert!(world.api.tokens_seen().is_empty());
    assert_eq!(world.token_endpoint.calls(), 0);

    // The store is back: the link works, refreshed once.
    store.unavailable.store(false, Ordering::SeqCst);
    assert_eq!(get("application/json").await.status, StatusCode::OK);
    assert_eq!(world.token_endpoint.calls(), 1);
}

#[tokio::test]
async fn a_token_refreshed_ahead_of_expiry_and_then_rejected_is_not_refreshed_again() {
    let world = world(Options::default()).await;
    world.link_with(expiring_link());
    world.api.reject_all.store(true, Ordering::SeqCst);

    let answer = world.get("/data").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.header("proxy-status"), Some(REAUTH_AFTER_401));
    assert_eq!(answer.header("www-authenticate"), None);
    assert_eq!(
        world.token_endpoint.calls(),
        1,
        "refreshed once per request"
    );
    assert_eq!(world.api.tokens_seen(), ["at-1"], "the fresh token, once");
    let link = world.link();
    assert!(link.needs_reauthorization());
    assert_eq!(link.refresh_token().unwrap().expose_secret(), "rt-1");
}

#[tokio::test]
async fn passed_through_responses_never_carry_the_providers_challenge() {
    let world = world(Options::default()).await;
    world.link_accepted(Link::new("good"));

    let answer = world.get("/bad-request").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_providers_own_answer(&world, &answer, "bad request");
}

#[tokio::test]
async fn tokens_living_no_longer_than_the_skew_are_not_refreshed_on_every_request() {
    // Tokens live an hour; the skew is two.
    let world = world(Options {
        skew: Duration::from_secs(7200),
        ..Options::default()
    })
    .await;
    world.link_with(expiring_link());

    for _ in 0..3 {
        assert_eq!(world.get("/data").await.status, StatusCode::OK);
    }
    assert_eq!(world.token_endpoint.calls(), 1);
    assert_eq!(world.api.tokens_seen(), ["at-1", "at-1", "at-1"]);
    assert_eq!(
        world.token_endpoint.refresh_tokens_presented(),
        ["rt-0"],
        "no rotation per request"
    );
}

fn assert_refresh_unavailable(answer: &Reply) {
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("www-authenticate"), None);
    assert_eq!(answer.header("proxy-status"), Some(REFRESH_UNAVAILABLE));
    assert!(answer.header("retry-after").is_some());
}

/// `GET /data` ends within 3 s (the layer's refresh timeout is 300 ms) as
/// [`assert_refresh_unavailable`].
async fn assert_refresh_unavailable_within_3s(world: &World) {
    let started = Instant::now();
    let answer = world.get("/data").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_refresh_unavailable(&answer);
}

#[tokio::test]
async fn a_refresh_that_never_ends_times_out_as_unavailable_and_keeps_the_tokens() {
    // The token endpoint takes 5 s, the grant would wait 30 s: the layer's limit ends it.
    let world = world(Options {
        grant_timeout: Duration::from_secs(30),
        refresh_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    world.link_with(stale_link());
    world.token_endpoint.set_mode(Mode::Slow);

    assert_refresh_unavailable_within_3s(&world).await;
    assert_link_intact(&world);
}

#[tokio::test]
async fn a_store_lock_that_is_never_granted_times_out_as_unavailable() {
    let world = world(Options {
        refresh_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    world.link_with(stale_link());
    // Someone holds the link's lock and never lets go.
    let guard = world.store.lock(&key()).await.unwrap();

    assert_refresh_unavailable_within_3s(&world).await;
    assert_eq!(world.token_endpoint.calls(), 0);
    assert_link_intact(&world);

    // Released: the link recovers.
    world.store.unlock(guard).await;
    assert_eq!(world.get("/data").await.status, StatusCode::OK);
    assert_eq!(world.token_endpoint.calls(), 1);
}

#[tokio::test]
async fn a_link_removed_during_its_refresh_stays_removed() {
    let world = world(Options::default()).await;
    world.link_with(stale_link());
    // The refresh waits at the token endpoint while the user disconnects.
    *world.token_endpoint.delay.lock().unwrap() = Duration::from_millis(300);
    let call = tokio::spawn({
        let client = world.client.clone();
        let request = world.api_request("/data");
        async move { client.oneshot(request).await }
    });
    while world.token_endpoint.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(world.store.remove(&key()).is_some());
    let _ = call.await.unwrap();
    assert!(
        world.store.get(&key()).is_none(),
        "resurrected by the refresh"
    );
}

/// A provider cannot speak for the gateway: `Proxy-Status` members naming the gateway and
/// `Link`s to its connect flow are removed from the answers passed on (the provider's other
/// members and links stay); a plain 403 gets the gateway's own label, once.
#[tokio::test]
async fn the_providers_answers_cannot_forge_the_gateways_signals() {
    let world = world(Options::default()).await;
    world.link_accepted(Link::new("good"));

    let answer = world.get("/forged").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("proxy-status"),
        Some("cdn; error=http_request_error")
    );
    assert_eq!(
        answer.header("link"),
        Some(r#"<https://acme.example/page/2>; rel="next""#)
    );

    let answer = world.get("/forged-403").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let proxy_status: Vec<_> = answer
        .headers
        .get_all("proxy-status")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        proxy_status,
        ["cdn; error=http_request_error", "gw; received-status=403"]
    );
}

/// U9: a provider that closes the connection without answering is `connection_terminated`, not
/// `connection_refused` (RFC 9209).
#[tokio::test]
async fn u9_a_connection_closed_without_an_answer_is_terminated() {
    for body_mode in BODY_MODES {
        let world = world(Options::rendering(body_mode)).await;
        world.link_accepted(Link::new("good"));

        let answer = world.get("/hang-up/data").await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            answer.header("proxy-status"),
            Some("gw; error=connection_terminated")
        );
        assert_eq!(answer.header("www-authenticate"), None);
        assert_body(&answer, body_mode, "upstream-connection-terminated");
    }
}
