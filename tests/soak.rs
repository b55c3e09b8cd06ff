//! A soak of the example proxy (issue 10): the proxy service under a steady load from a few clients on
//! loopback while the third-party provider's token endpoint flaps and the identity provider's
//! JWKS goes down and up (and rotates its signing key while down).
//!
//! `cargo test --release --features axum --test soak -- --ignored --nocapture`
//! (`SOAK_SECS`, default 60, bounds its time; `SOAK_MAX_REQUESTS`, default 2 000 000, its count.)
//!
//! Built from the example's parts (`app::build` with `Settings`), not `app::demo::Demo`: the
//! demo provider's controls (`/demo/expire`, `/demo/revoke`) cannot make its token endpoint
//! fail, its module is private to the example, and the demo identity provider can't be switched
//! off (its discovery document names its own JWKS address, so a toggling proxy in front of it
//! would not be on the path). The doubles here are the same kind of servers, with switches:
//!
//! - an identity provider (discovery + JWKS, `Cache-Control: max-age=1`) whose JWKS answers
//!   `503` while switched off, and which starts signing with a second key, announced in its
//!   JWKS, while its JWKS is down;
//! - a provider whose access tokens live 3 s and whose refresh tokens rotate (a replayed one
//!   revokes the grant, RFC 9700 §4.14), and whose token endpoint answers `503` while switched
//!   off.
//!
//! Asserted: no 5xx but the contract's 503s — row I8 (no `Proxy-Status`, a `Retry-After`) and
//! row U7 (`Proxy-Status: <proxy>; error=destination_unavailable;
//! details="upstream_refresh_unavailable"` and a `Retry-After`) — and no other status but 200;
//! no link lost (no refresh token replayed, the grant alive, and the user's link answering 200
//! at the end without re-linking); memory flat (RSS growth from after warm-up to the end under
//! [`RSS_GROWTH_BOUND`]).

// The example needs the `axum` feature (a `[[test]] required-features` entry in Cargo.toml
// would say so to cargo; until then the file is empty without it).
#![cfg(feature = "axum")]

#[allow(dead_code)] // main.rs uses all of the example; this test uses a part.
#[path = "../examples/proxy/app.rs"]
mod app;
mod support;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Header, jwk::Jwk};
use serde::Deserialize;
use serde_json::json;
use support::{
    http::{Req, TestClient, client},
    keys::Key,
};
use tokio::net::TcpListener;
use tower_bearer::{
    emit::Disclosure,
    upstream::{
        classify::JsonErrorCode,
        store::{Link, LinkKey, MemoryStore, TokenSecret},
    },
};

use app::config::{AuthSettings, ClientAuth, Limits, ProviderSettings, Settings};

const PROXY_NAME: &str = "soak-proxy";
const PROVIDER: &str = "acme";
const USER: &str = "alice";
const CLIENTS: usize = 4;
/// Allowed RSS growth between the sample after warm-up and the one at the end.
const RSS_GROWTH_BOUND: u64 = 24 * 1024 * 1024;
/// The provider's access tokens' lifetime.
const ACCESS_LIFETIME: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// The identity provider, with a JWKS switch.

struct Idp {
    issuer: String,
    jwks_up: AtomicBool,
    /// Whether the second key is published and signs new tokens.
    rotated: AtomicBool,
    jwks_fetches: AtomicU64,
    jwks_refused: AtomicU64,
}

impl Idp {
    fn key(&self) -> Key {
        if self.rotated.load(Ordering::SeqCst) {
            Key::Rs
        } else {
            Key::Ed
        }
    }

    /// A fresh token for the user (a new `jti` each time, so the verified-token cache doesn't
    /// answer every request).
    fn token(&self, audience: &str, n: u64) -> String {
        let key = self.key();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({
            "iss": self.issuer, "sub": USER, "aud": audience, "scope": "openid api",
            "iat": now, "exp": now + 600, "jti": format!("jti-{n}"),
        });
        let mut header = Header::new(key.algorithm());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(key.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, &key.encoding_key()).unwrap()
    }

    fn jwks(&self) -> serde_json::Value {
        let public = |key: Key| {
            let mut jwk = Jwk::from_encoding_key(&key.encoding_key(), key.algorithm()).unwrap();
            jwk.common.key_id = Some(key.kid().to_owned());
            let mut value = serde_json::to_value(jwk).unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                value.as_object_mut().unwrap().remove(private);
            }
            value
        };
        let mut keys = vec![public(Key::Ed)];
        if self.rotated.load(Ordering::SeqCst) {
            keys.push(public(Key::Rs));
        }
        json!({ "keys": keys })
    }
}

async fn start_idp() -> Arc<Idp> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let idp = Arc::new(Idp {
        issuer: issuer.clone(),
        jwks_up: AtomicBool::new(true),
        rotated: AtomicBool::new(false),
        jwks_fetches: AtomicU64::new(0),
        jwks_refused: AtomicU64::new(0),
    });
    let discovery = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA", "RS256"],
    });
    let router = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route(
            "/jwks",
            get(|State(idp): State<Arc<Idp>>| async move {
                idp.jwks_fetches.fetch_add(1, Ordering::Relaxed);
                if !idp.jwks_up.load(Ordering::SeqCst) {
                    idp.jwks_refused.fetch_add(1, Ordering::Relaxed);
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                ([(header::CACHE_CONTROL, "max-age=1")], Json(idp.jwks())).into_response()
            }),
        )
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    idp
}

// ---------------------------------------------------------------------------------------------
// The third-party provider: rotating refresh tokens, short-lived access tokens, a token
// endpoint switch.

#[derive(Default)]
struct Grant {
    access: HashMap<String, Instant>,
    refresh: String,
    spent: Vec<String>,
    revoked: bool,
    issued: u64,
}

struct Provider {
    base: String,
    token_endpoint_up: AtomicBool,
    grant: Mutex<Grant>,
    refreshes: AtomicU64,
    refused_while_down: AtomicU64,
    replays: AtomicU64,
}

impl Provider {
    fn issue(grant: &mut Grant) -> (String, String) {
        grant.issued += 1;
        let access = format!("at-{}", grant.issued);
        let refresh = format!("rt-{}", grant.issued);
        grant
            .access
            .insert(access.clone(), Instant::now() + ACCESS_LIFETIME);
        // Expired access tokens are forgotten after a while: the provider's memory stays flat.
        let now = Instant::now();
        grant
            .access
            .retain(|_, expires| *expires + Duration::from_secs(30) > now);
        let old = std::mem::replace(&mut grant.refresh, refresh.clone());
        if !old.is_empty() {
            grant.spent.push(old);
            if grant.spent.len() > 1000 {
                grant.spent.drain(..500);
            }
        }
        (access, refresh)
    }

    fn link(&self) -> Link {
        let (access, refresh) = Self::issue(&mut self.grant.lock().unwrap());
        Link::new(access)
            .with_refresh_token(refresh)
            .with_expires_in(ACCESS_LIFETIME)
            .with_scopes(["profile"])
    }

    fn settings(&self) -> ProviderSettings {
        ProviderSettings {
            base_url: format!("{}/v1", self.base),
            authorize_url: format!("{}/authorize", self.base).parse().unwrap(),
            token_url: format!("{}/token", self.base).parse().unwrap(),
            revocation_url: None,
            issuer: None,
            iss_parameter_supported: false,
            client_id: "soak-proxy".to_owned(),
            client_secret: Some(TokenSecret::new("soak-secret")),
            client_auth: ClientAuth::ClientSecretBasic,
            scopes: vec!["profile".to_owned()],
            resource: None,
            authorize_params: BTreeMap::new(),
            refresh_skew: Duration::from_secs(1),
            rules: vec![JsonErrorCode::power_bi()],
        }
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    refresh_token: Option<String>,
}

async fn token_endpoint(
    State(provider): State<Arc<Provider>>,
    Form(form): Form<TokenForm>,
) -> Response {
    if !provider.token_endpoint_up.load(Ordering::SeqCst) {
        provider.refused_while_down.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "down",
        )
            .into_response();
    }
    let oauth_error =
        |code: &str| (StatusCode::BAD_REQUEST, Json(json!({ "error": code }))).into_response();
    if form.grant_type != "refresh_token" {
        return oauth_error("unsupported_grant_type");
    }
    let presented = form.refresh_token.unwrap_or_default();
    let mut grant = provider.grant.lock().unwrap();
    if grant.revoked {
        return oauth_error("invalid_grant");
    }
    if presented != grant.refresh {
        if grant.spent.contains(&presented) {
            // A replayed refresh token: the whole grant is revoked (RFC 9700 §4.14).
            provider.replays.fetch_add(1, Ordering::Relaxed);
            grant.revoked = true;
        }
        return oauth_error("invalid_grant");
    }
    provider.refreshes.fetch_add(1, Ordering::Relaxed);
    let (access, refresh) = Provider::issue(&mut grant);
    Json(json!({
        "access_token": access, "token_type": "Bearer",
        "expires_in": ACCESS_LIFETIME.as_secs(), "refresh_token": refresh,
    }))
    .into_response()
}

async fn me(State(provider): State<Arc<Provider>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let grant = provider.grant.lock().unwrap();
    match grant.access.get(token) {
        Some(expires) if !grant.revoked && *expires > Instant::now() => {
            Json(json!({ "account": USER })).into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        )
            .into_response(),
    }
}

async fn start_provider() -> Arc<Provider> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provider = Arc::new(Provider {
        base: format!("http://{}", listener.local_addr().unwrap()),
        token_endpoint_up: AtomicBool::new(true),
        grant: Mutex::default(),
        refreshes: AtomicU64::new(0),
        refused_while_down: AtomicU64::new(0),
        replays: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/token", post(token_endpoint))
        .route("/v1/me", get(me))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    provider
}

// ---------------------------------------------------------------------------------------------
// Measurements.

/// Resident set size from `/proc/self/statm`, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Latencies in a fixed number of logarithmic buckets (2 % wide), so that recording them does
/// not grow the memory this test measures.
struct Histogram {
    buckets: Vec<u64>,
    max: Duration,
}

impl Histogram {
    const GROWTH: f64 = 1.02;
    const BUCKETS: usize = 1024;

    fn new() -> Self {
        Self {
            buckets: vec![0; Self::BUCKETS],
            max: Duration::ZERO,
        }
    }

    fn record(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        let index = if micros <= 1.0 {
            0
        } else {
            ((micros.ln() / Self::GROWTH.ln()) as usize + 1).min(Self::BUCKETS - 1)
        };
        self.buckets[index] += 1;
        self.max = self.max.max(latency);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.max = self.max.max(other.max);
    }

    /// The upper bound of the bucket holding the `p` quantile.
    fn quantile(&self, p: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        let rank = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank.max(1) {
                return Duration::from_secs_f64(Self::GROWTH.powi(index as i32) / 1e6);
            }
        }
        self.max
    }
}

struct Tally {
    statuses: BTreeMap<String, u64>,
    latencies: Histogram,
    problems: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            statuses: BTreeMap::new(),
            latencies: Histogram::new(),
            problems: Vec::new(),
        }
    }
}

/// Classifies one answer; anything outside the contract is a problem.
fn classify(status: StatusCode, headers: &HeaderMap) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    match status {
        StatusCode::OK => Ok("200".to_owned()),
        StatusCode::SERVICE_UNAVAILABLE => {
            let retry_after = header("retry-after");
            if retry_after
                .as_deref()
                .is_none_or(|v| v.parse::<u64>().is_err())
            {
                return Err(format!("503 without a Retry-After in seconds: {headers:?}"));
            }
            match header("proxy-status").as_deref() {
                // Row I8: the caller's keys unavailable; nothing about a provider.
                None if header("www-authenticate").is_none() => Ok("503 I8".to_owned()),
                Some(
                    r#"soak-proxy; error=destination_unavailable; details="upstream_refresh_unavailable""#,
                ) => Ok("503 U7".to_owned()),
                _ => Err(format!("a 503 outside the contract: {headers:?}")),
            }
        }
        other => Err(format!("{other} {headers:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute long: cargo test --release --features axum --test soak -- --ignored --nocapture"]
async fn the_proxy_under_load_while_the_token_endpoint_and_the_jwks_flap() {
    let duration = Duration::from_secs(
        std::env::var("SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let max_requests: u64 = std::env::var("SOAK_MAX_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let warmup = (duration / 10).max(Duration::from_secs(2));

    let idp = start_idp().await;
    let provider = start_provider().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = listener.local_addr().unwrap();
    let public_url = format!("http://{listen}");
    let settings = Settings {
        listen,
        public_url: public_url.clone(),
        realm: "soak".to_owned(),
        proxy_name: PROXY_NAME.to_owned(),
        disclosure: Disclosure::Minimal,
        auth: AuthSettings {
            issuer: idp.issuer.clone(),
            audience: public_url.clone(),
            scopes: vec!["api".to_owned()],
            token_type: Some("at+jwt".to_owned()),
        },
        limits: Limits {
            request_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        providers: [(PROVIDER.to_owned(), provider.settings())].into(),
        store: app::config::StoreSettings::Memory,
        cors_origins: Vec::new(),
    };
    let store = MemoryStore::new();
    let key = LinkKey::new(USER, PROVIDER);
    store.insert(key.clone(), provider.link());
    let proxy = app::build(settings, store.clone()).await.unwrap();
    tokio::spawn(async move {
        axum::serve(listener, tower::make::Shared::new(proxy))
            .await
            .unwrap()
    });

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));

    // The switches: the token endpoint is down 1.5 s out of every 4 s, the JWKS 2 s out of
    // every 6 s (offset), and the identity provider rotates its key during the first JWKS
    // outage after 40 % of the run.
    let flapper = {
        let (idp, provider, stop) = (idp.clone(), provider.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut rotated = false;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let t = start.elapsed().as_millis() as u64;
                provider
                    .token_endpoint_up
                    .store(t % 4000 >= 1500, Ordering::SeqCst);
                let jwks_down = (t + 3000) % 6000 < 2000;
                idp.jwks_up.store(!jwks_down, Ordering::SeqCst);
                if !rotated && jwks_down && start.elapsed() > duration * 2 / 5 {
                    idp.rotated.store(true, Ordering::SeqCst);
                    rotated = true;
                }
            }
            provider.token_endpoint_up.store(true, Ordering::SeqCst);
            idp.jwks_up.store(true, Ordering::SeqCst);
        })
    };

    let tally = Arc::new(Mutex::new(Tally::new()));
    let rss_start = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (idp, stop, sent, tally, public_url) = (
                idp.clone(),
                stop.clone(),
                sent.clone(),
                tally.clone(),
                public_url.clone(),
            );
            tokio::spawn(async move {
                let http: TestClient = client();
                let mut token = idp.token(&public_url, c as u64);
                let mut local = Tally::new();
                let mut n = 0u64;
                loop {
                    let elapsed = start.elapsed();
                    if elapsed >= duration || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let count = sent.fetch_add(1, Ordering::Relaxed);
                    if count >= max_requests {
                        break;
                    }
                    // A new token every 200 requests (and with the new key once rotated).
                    n += 1;
                    if n.is_multiple_of(200) {
                        token = idp.token(&public_url, count * CLIENTS as u64 + c as u64);
                    }
                    let began = Instant::now();
                    let reply = Req::get(format!("/api/{PROVIDER}/me"))
                        .bearer(&token)
                        .send(&http, &public_url)
                        .await;
                    let latency = began.elapsed();
                    if elapsed >= warmup {
                        local.latencies.record(latency);
                    }
                    match classify(reply.status, &reply.headers) {
                        Ok(label) => *local.statuses.entry(label).or_default() += 1,
                        Err(problem) => {
                            *local.statuses.entry(reply.status.to_string()).or_default() += 1;
                            if local.problems.len() < 10 {
                                local.problems.push(problem);
                            }
                        }
                    }
                }
                let mut tally = tally.lock().unwrap();
                for (status, count) in local.statuses {
                    *tally.statuses.entry(status).or_default() += count;
                }
                tally.latencies.merge(&local.latencies);
                tally.problems.extend(local.problems);
            })
        })
        .collect();

    tokio::time::sleep(warmup).await;
    rss_start.store(rss(), Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let rss_end = rss();
    stop.store(true, Ordering::SeqCst);
    flapper.await.unwrap();

    // The user's link still works, without re-linking: the switches are on again, and once the
    // keys are fetched again (row I8 meanwhile) the call goes through.
    let http: TestClient = client();
    let token = idp.token(&public_url, u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(15);
    let final_status = loop {
        let reply = Req::get(format!("/api/{PROVIDER}/me"))
            .bearer(&token)
            .send(&http, &public_url)
            .await;
        if reply.status == StatusCode::OK || Instant::now() > deadline {
            break reply.status;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    let requests: u64 = tally.statuses.values().sum();
    let rss_start = rss_start.load(Ordering::SeqCst);
    let link = store.get(&key).expect("the link is still stored");
    let grant = provider.grant.lock().unwrap();
    println!(
        "soak: {:.1} s, {CLIENTS} clients",
        start.elapsed().as_secs_f64()
    );
    println!(
        "requests: {requests} ({:.0}/s)",
        requests as f64 / duration.as_secs_f64()
    );
    println!("statuses: {:?}", tally.statuses);
    println!(
        "latency after warm-up: p50 {:?}, p99 {:?}, max {:?}",
        tally.latencies.quantile(0.50),
        tally.latencies.quantile(0.99),
        tally.latencies.max
    );
    println!(
        "refreshes: {} (token endpoint refused {} while down; replays {}); JWKS fetches {} ({} refused while down)",
        provider.refreshes.load(Ordering::Relaxed),
        provider.refused_while_down.load(Ordering::Relaxed),
        provider.replays.load(Ordering::Relaxed),
        idp.jwks_fetches.load(Ordering::Relaxed),
        idp.jwks_refused.load(Ordering::Relaxed),
    );
    println!(
        "RSS after warm-up {:.1} MiB, at the end {:.1} MiB (growth {:+.1} MiB, bound {} MiB)",
        rss_start as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        (rss_end as f64 - rss_start as f64) / 1048576.0,
        RSS_GROWTH_BOUND / 1048576
    );

    assert!(
        tally.problems.is_empty(),
        "outside the contract: {:#?}",
        tally.problems
    );
    assert!(requests > 0);
    assert_eq!(final_status, StatusCode::OK, "the link no longer works");
    assert_eq!(
        provider.replays.load(Ordering::Relaxed),
        0,
        "a refresh token was replayed"
    );
    assert!(!grant.revoked, "the grant was revoked");
    assert!(
        !link.needs_reauthorization(),
        "the link was marked for re-authorization"
    );
    assert_eq!(
        link.refresh_token().map(|t| t.expose_secret()),
        Some(grant.refresh.as_str()),
        "the store does not hold the provider's current refresh token"
    );
    assert!(
        rss_end.saturating_sub(rss_start) < RSS_GROWTH_BOUND,
        "memory grew by {} bytes",
        rss_end - rss_start
    );
}
