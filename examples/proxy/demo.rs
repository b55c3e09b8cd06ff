//! Demo mode: everything on loopback in one process — a demo identity provider for the proxy's
//! users, a demo third-party provider, and the proxy between them — and a walkthrough of `curl`
//! commands to try, each with what it should show.
//!
//! The proxy's user `alice` starts out linked to the demo provider's account `alice` (as if she
//! had gone through the connect flow, which the last step of the walkthrough does for real).

pub mod idp;
pub mod provider;
mod walkthrough;

use std::sync::Arc;

use axum::{
    Json, Router,
    response::Html,
    routing::{get, post},
};
use http::StatusCode;
use tokio::net::TcpListener;
use tower_bearer::{
    BoxError,
    emit::Disclosure,
    upstream::store::{LinkKey, TokenStore},
};

use self::{idp::Idp, provider::Provider};
use super::config::{AuthSettings, Limits, Settings, StoreSettings};

/// The demo provider's name at the proxy: `/api/demo/…`, `/connect/demo`.
const PROVIDER: &str = "demo";

/// The proxy's demo user.
const USER: &str = "alice";

/// The scope the proxy requires of its callers.
const SCOPE: &str = "api";

/// The proxy, ready to serve, and what to tell the user.
pub struct Demo {
    /// The proxy's listener (bound first: the connect flow's redirect URI names its port).
    pub listener: TcpListener,
    /// The proxy.
    pub proxy: super::Proxy,
    /// The walkthrough to print.
    pub walkthrough: String,
    /// The demo's link store file, removed when this is dropped.
    pub files: DemoFiles,
    /// The demo provider (what its token and revocation endpoints saw).
    #[allow(dead_code)] // read by the browser test (tests/browser.rs)
    pub provider: Arc<Provider>,
}

/// The files of the demo's SQLite store (the database, its write-ahead log and its index),
/// removed when dropped: the demo leaves nothing behind.
#[derive(Debug, Default)]
pub struct DemoFiles(Option<std::path::PathBuf>);

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let Some(path) = self.0.take() else { return };
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Demo {
    /// Starts the demo identity provider and provider, and builds the proxy.
    pub async fn start() -> Result<Self, BoxError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let listen = listener.local_addr()?;
        let public_url = format!("http://{listen}");
        let idp = Idp::start().await?;
        let provider = Provider::start(format!("{public_url}/connect/{PROVIDER}/callback")).await?;

        let settings = Settings {
            listen,
            public_url: public_url.clone(),
            realm: "demo".to_owned(),
            proxy_name: "tower-bearer-proxy".to_owned(),
            disclosure: Disclosure::Minimal,
            auth: AuthSettings {
                issuer: idp.issuer().to_owned(),
                audience: public_url.clone(),
                scopes: vec![SCOPE.to_owned()],
                token_type: Some("at+jwt".to_owned()),
            },
            limits: Limits::default(),
            providers: [(PROVIDER.to_owned(), provider.settings())].into(),
            store: demo_store(),
            // The demo's second origin: the same server reached by another host name.
            cors_origins: vec![format!("http://localhost:{}", listen.port())],
        };
        let files = DemoFiles(match &settings.store {
            StoreSettings::Sqlite { path, .. } => Some(path.clone()),
            StoreSettings::Memory | StoreSettings::Redis { .. } => None,
        });
        let store = super::store::open(&settings.store).await?;
        store
            .insert(
                &LinkKey::new(USER, PROVIDER),
                provider.grant(provider::ACCOUNT),
            )
            .await?;
        let walkthrough = walkthrough::render(&walkthrough::Demo {
            proxy: &public_url,
            idp: idp.issuer(),
            provider: provider.base_url(),
            token: &idp.token(USER, &format!("openid {SCOPE}"), &public_url),
            narrow_token: &idp.token(USER, "openid", &public_url),
        });
        let idp = Arc::new(idp);
        let provider = Arc::new(provider);
        let proxy =
            super::build_with(settings, store, page(idp, provider.clone(), public_url)).await?;
        Ok(Self {
            listener,
            proxy,
            walkthrough,
            files,
            provider,
        })
    }
}

/// The demo's pages: `/demo`, where alice calls the provider, and re-links or unlinks when told
/// to; `/demo/other-origin`, the same call from an app on another origin (open it as
/// `http://localhost:<port>/demo/other-origin`); and what they need, demo mode only — a token
/// for alice, and the provider's "revoke" button.
fn page(idp: Arc<Idp>, provider: Arc<Provider>, public_url: String) -> Router {
    let proxy = public_url.clone();
    let token = move || idp.token(USER, &format!("openid {SCOPE}"), &public_url);
    let token_for_other_origin = token.clone();
    Router::new()
        .route(
            "/demo",
            get(|| async { Html(include_str!("demo/page.html")) }),
        )
        .route(
            "/demo/other-origin",
            // The app on the other origin holds its own token (it has its own login).
            get(move || async move {
                let token = token_for_other_origin();
                Html(include_str!("demo/other_origin.html").replacen(
                    "<!doctype html>",
                    &format!(
                        "<!doctype html>\n<html data-proxy=\"{proxy}\" data-token=\"{token}\">"
                    ),
                    1,
                ))
            }),
        )
        .route(
            "/demo/token",
            get(move || async move { Json(serde_json::json!({ "token": token() })) }),
        )
        .route(
            "/demo/revoke",
            post(move || async move {
                provider.revoke_account(provider::ACCOUNT);
                StatusCode::NO_CONTENT
            }),
        )
}
/// SQLite in a file of its own under the temporary directory, sealed with a random key: the
/// real thing, thrown away with the demo. In memory when built without SQLite.
fn demo_store() -> StoreSettings {
    #[cfg(feature = "sqlite")]
    {
        let name = format!(
            "tower-bearer-proxy-demo-{}-{}.db",
            std::process::id(),
            super::random::url_safe::<6>()
        );
        StoreSettings::Sqlite {
            path: std::env::temp_dir().join(name),
            key: super::config::StoreKey::Random,
        }
    }
    #[cfg(not(feature = "sqlite"))]
    StoreSettings::Memory
}

/// Serves a demo server until the process ends.
fn serve_in_background(listener: TcpListener, router: Router) {
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "a demo server stopped");
        }
    });
}
