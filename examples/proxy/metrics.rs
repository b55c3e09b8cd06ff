//! `GET /metrics`: the crate's counters and histograms (feature `metrics`, names in the README)
//! in Prometheus's text format, from `metrics-exporter-prometheus`.

use axum::Router;

/// The `/metrics` route, with the process's recorder installed on first use.
#[cfg(feature = "metrics")]
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    use std::sync::OnceLock;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    // One recorder per process: a test may build several routers.
    static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
    let handle = RECORDER
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone();
    Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { handle.render() }),
    )
}

/// Without the feature `metrics`: no route.
#[cfg(not(feature = "metrics"))]
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
}
