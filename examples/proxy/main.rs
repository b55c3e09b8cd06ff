//! An auth-aware API gateway built from tower-bearer's layers: callers authenticate with their
//! own bearer tokens; the proxy calls third-party APIs on their behalf with their upstream OAuth
//! tokens, refreshing them, and tells callers unambiguously which side failed.
//!
//! ```sh
//! cargo run --example proxy --features axum,sqlite                # demo mode: prints a walkthrough
//! cargo run --example proxy --features axum,sqlite -- proxy.toml  # real mode (see proxy.sample.toml)
//! ```
//!
//! Logs go to stderr (`PROXY_LOG=debug` for more); they carry request ids, never tokens.

// `app.rs` is shared with the tests, which include it by path; it owns this directory.
#[path = "app.rs"]
mod app;

use std::{path::Path, process::ExitCode};

use tokio::net::TcpListener;
use tower_bearer::BoxError;

use app::{Proxy, config::Settings, serve::ServeLimits};

#[tokio::main]
async fn main() -> ExitCode {
    let level = match std::env::var("PROXY_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let outcome = match std::env::args_os().nth(1) {
        None => demo().await,
        Some(path) => real(Path::new(&path)).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxy: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), BoxError> {
    let demo = app::demo::Demo::start().await?;
    // Its store file goes when the demo stops.
    let _files = demo.files;
    println!("{}", demo.walkthrough);
    serve(demo.listener, demo.proxy).await
}

async fn real(path: &Path) -> Result<(), BoxError> {
    let settings = Settings::load(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let listener = TcpListener::bind(settings.listen).await?;
    tracing::info!(
        address = %settings.listen,
        providers = ?settings.providers.keys().collect::<Vec<_>>(),
        "listening"
    );
    let store = app::store::open(&settings.store).await?;
    let proxy = app::build(settings, store).await?;
    serve(listener, proxy).await
}

/// Serves until Ctrl-C or SIGTERM, then lets the requests in flight finish.
async fn serve(listener: TcpListener, proxy: Proxy) -> Result<(), BoxError> {
    app::serve::serve(listener, proxy, ServeLimits::default(), shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
