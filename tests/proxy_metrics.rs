//! The example proxy's `/metrics` (feature `metrics`): the crate's counters, in Prometheus's
//! text format, move with the requests the proxy answers.

#[allow(dead_code)] // main.rs uses all of the example; this test uses a part.
#[path = "../examples/proxy/app.rs"]
mod app;
mod support;

use http::StatusCode;
use support::http::{TestClient, client_without_reuse, get, get_bearer};

/// The `/metrics` lines that start with `tower_bearer_` and are not histogram parts, sorted.
async fn counters(client: &TestClient, base: &str) -> Vec<String> {
    let reply = get(client, &format!("{base}/metrics"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut lines: Vec<String> = reply
        .text()
        .lines()
        .filter(|line| line.starts_with("tower_bearer_") && !line.contains("_seconds"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_move_on_metrics() {
    let demo = app::demo::Demo::start().await.expect("the demo starts");
    let base = format!("http://{}", demo.listener.local_addr().unwrap());
    let token = demo
        .walkthrough
        .lines()
        .find_map(|line| line.strip_prefix("TOKEN='")?.strip_suffix('\''))
        .expect("the walkthrough names alice's token")
        .to_owned();
    tokio::spawn(
        async move { axum::serve(demo.listener, tower::make::Shared::new(demo.proxy)).await },
    );
    let client = client_without_reuse();
    let api = format!("{base}/api/demo/me");

    // The warm-up fetch of the identity provider's keys, and nothing else yet.
    assert_eq!(
        counters(&client, &base).await,
        ["tower_bearer_key_fetches_total{outcome=\"ok\"} 1"]
    );

    assert_eq!(
        get(&client, &api, &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_bearer(&client, &api, "not-a-jwt").await.status,
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..2 {
        assert_eq!(
            get_bearer(&client, &api, &token).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        counters(&client, &base).await,
        [
            "tower_bearer_key_fetches_total{outcome=\"ok\"} 1",
            "tower_bearer_token_cache_total{result=\"hit\"} 1",
            "tower_bearer_token_cache_total{result=\"miss\"} 2",
            "tower_bearer_upstream_classifications_total{class=\"not_auth_related\"} 2",
            "tower_bearer_validations_total{outcome=\"malformed\"} 1",
            "tower_bearer_validations_total{outcome=\"missing\"} 1",
            "tower_bearer_validations_total{outcome=\"valid\"} 2",
        ]
    );
}
