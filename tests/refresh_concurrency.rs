//! A deterministic exploration of the refresh core's interleavings (issue 10): the public
//! `RefreshAndRetryLayer` over `MemoryStore`, a scripted provider and a scripted token
//! endpoint, on a current-thread runtime with paused time, so that every schedule runs the
//! same way every time and in virtual time.
//!
//! Each schedule sends 2–3 requests at chosen virtual times, alternately through two
//! replicas of the layer over one store (so that the store's lock, not only the layer's
//! single-flight table, has to keep refreshes apart), with a token endpoint that answers
//! before, at or after the layer's refresh timeout, and injects a re-link or a removal at a
//! chosen time. The authorization server behind the token endpoint rotates refresh tokens on
//! receipt (RFC 9700 §4.14: a replayed one would revoke the grant). For every schedule:
//!
//! - never two refreshes of the link at once;
//! - no refresh token presented twice;
//! - the store ends with the newest tokens of the link's newest grant (the re-link's, or those
//!   refreshed from it), or with no link after a removal;
//! - callers see only 200s, the contract's 503 (U7) when the token endpoint was too slow, and
//!   a 403 only once the link was removed.

use std::{
    collections::HashSet,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::Full;
use tokio::time::{Instant, sleep, sleep_until};
use tower::{Layer, ServiceExt, service_fn};
use tower_bearer::{
    emit::{EmitLayer, Emitter, pending_response},
    upstream::{
        body::RetryBody,
        classify::ClassifyUpstreamLayer,
        grant::{GrantError, TokenResponse, refresher_fn},
        refresh::RefreshAndRetryLayer,
        store::{Link, LinkKey, MemoryStore},
    },
};

/// The layer's refresh timeout in every schedule.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long the provider takes to answer a request.
const PROVIDER_LATENCY: Duration = Duration::from_millis(10);

/// The authorization server: grants, each a chain of (access token, refresh token), the newest
/// last; and what the token endpoint saw.
#[derive(Default)]
struct AuthServer {
    grants: Vec<Vec<(String, String)>>,
    presented: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
    replays: usize,
}

impl AuthServer {
    /// A new grant (the initial connection, or a re-link); its first tokens.
    fn grant(&mut self) -> (String, String) {
        let g = self.grants.len();
        let tokens = (format!("g{g}-at0"), format!("g{g}-rt0"));
        self.grants.push(vec![tokens.clone()]);
        tokens
    }

    /// Whether `access` is the newest access token of some grant: the provider accepts only
    /// those.
    fn accepts(&self, access: &str) -> bool {
        self.grants
            .iter()
            .any(|chain| chain.last().is_some_and(|(at, _)| at == access))
    }

    /// Rotates the grant whose newest refresh token is `refresh`; `None` for any other token.
    fn rotate(&mut self, refresh: &str) -> Option<(String, String)> {
        let (g, chain) = self
            .grants
            .iter_mut()
            .enumerate()
            .find(|(_, chain)| chain.last().is_some_and(|(_, rt)| rt == refresh))?;
        let n = chain.len();
        let tokens = (format!("g{g}-at{n}"), format!("g{g}-rt{n}"));
        chain.push(tokens.clone());
        Some(tokens)
    }
}

/// Something injected into the store at a virtual time.
#[derive(Debug, Clone, Copy)]
enum Injection {
    /// The user connects again: a new grant; `stale` gives the new link an access token that
    /// is already expired (refreshed ahead, row U3) rather than a fresh one.
    Relink { at: Duration, stale: bool },
    /// The user disconnects.
    Remove { at: Duration },
}

#[derive(Debug, Clone)]
struct Schedule {
    arrivals: Vec<Duration>,
    endpoint_delay: Duration,
    injection: Option<Injection>,
}

/// A small deterministic generator (xorshift64*), so that schedules are reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Arrival times around the interesting points: at once, during the first refresh, around
/// its timeout, after a late answer.
fn arrival_times() -> Vec<Duration> {
    vec![
        ms(0),
        ms(1),
        ms(15),
        TIMEOUT / 2,
        TIMEOUT - ms(1),
        TIMEOUT,
        TIMEOUT + ms(1),
        TIMEOUT * 3 / 2,
        TIMEOUT * 2 + ms(5),
    ]
}

/// Token endpoint delays: well before (two refreshes in a row still fit in the timeout), just
/// before, at, just after, and long after the refresh timeout (but within the time a late
/// answer is still awaited).
fn endpoint_delays() -> Vec<Duration> {
    vec![
        TIMEOUT * 3 / 10,
        TIMEOUT - ms(1),
        TIMEOUT,
        TIMEOUT + ms(1),
        TIMEOUT * 2,
    ]
}

fn schedules() -> Vec<Schedule> {
    let injection_times = [
        ms(0),
        ms(5),
        ms(12),
        TIMEOUT / 2,
        TIMEOUT,
        TIMEOUT + ms(5),
        TIMEOUT * 2,
    ];
    let mut injections = vec![None];
    for at in injection_times {
        injections.push(Some(Injection::Relink { at, stale: false }));
        injections.push(Some(Injection::Relink { at, stale: true }));
        injections.push(Some(Injection::Remove { at }));
    }
    let mut schedules = Vec::new();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for endpoint_delay in endpoint_delays() {
        for injection in &injections {
            for _ in 0..3 {
                let count = 2 + (rng.next() % 2) as usize;
                let arrivals = (0..count).map(|_| rng.pick(&arrival_times())).collect();
                schedules.push(Schedule {
                    arrivals,
                    endpoint_delay,
                    injection: *injection,
                });
            }
        }
    }
    schedules
}

/// What a schedule produced.
struct Outcome {
    statuses: Vec<(StatusCode, Option<String>, Option<String>)>,
}

async fn run(schedule: &Schedule) -> (Outcome, Arc<Mutex<AuthServer>>, MemoryStore, LinkKey) {
    let server = Arc::new(Mutex::new(AuthServer::default()));
    let store = MemoryStore::new();
    let key = LinkKey::new("alice", "provider");
    // The initial link: its access token is no longer accepted (the provider answers 401,
    // row U2), its refresh token is good.
    let (_, rt0) = server.lock().unwrap().grant();
    store.insert(key.clone(), Link::new("g0-stale").with_refresh_token(rt0));

    let refresher = {
        let server = server.clone();
        let delay = schedule.endpoint_delay;
        refresher_fn(move |refresh_token| {
            let server = server.clone();
            async move {
                // The server rotates on receipt; the answer takes `delay` to come back.
                let rotated = {
                    let mut s = server.lock().unwrap();
                    s.presented.push(refresh_token.expose_secret().to_owned());
                    s.in_flight += 1;
                    s.max_in_flight = s.max_in_flight.max(s.in_flight);
                    let rotated = s.rotate(refresh_token.expose_secret());
                    if rotated.is_none() {
                        s.replays += 1;
                    }
                    rotated
                };
                sleep(delay).await;
                server.lock().unwrap().in_flight -= 1;
                match rotated {
                    Some((access, refresh)) => Ok(TokenResponse::new(access)
                        .with_refresh_token(refresh)
                        .with_expires_in(Duration::from_secs(3600))),
                    None => Err(GrantError::InvalidGrant {
                        status: StatusCode::BAD_REQUEST,
                    }),
                }
            }
        })
    };
    let provider = {
        let server = server.clone();
        service_fn(move |request: Request<RetryBody<Full<Bytes>>>| {
            let server = server.clone();
            async move {
                let token = request
                    .headers()
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_owned();
                sleep(PROVIDER_LATENCY).await;
                let accepted = server.lock().unwrap().accepts(&token);
                let response = if accepted {
                    Response::new(Full::new(Bytes::from_static(b"ok")))
                } else {
                    Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header("www-authenticate", r#"Bearer error="invalid_token""#)
                        .body(Full::default())
                        .unwrap()
                };
                Ok::<_, Infallible>(response)
            }
        })
    };
    // Two replicas over the one store: each layer has its own single-flight table, so only the
    // store's lock keeps their refreshes apart. Requests alternate between them.
    let replica = || {
        RefreshAndRetryLayer::new("provider", store.clone(), refresher.clone())
            .refresh_timeout(TIMEOUT)
            .layer(ClassifyUpstreamLayer::new().layer(provider.clone()))
    };
    let replicas = [replica(), replica()];
    let turn = Arc::new(AtomicUsize::new(0));
    // A gateway handler's way with the outbound stack: its failures become pending responses,
    // rendered by the emitter on the way out.
    let client = EmitLayer::new(Emitter::new("api").with_proxy_name("gw")).layer(service_fn(
        move |request: Request<Full<Bytes>>| {
            let outbound = replicas[turn.fetch_add(1, Ordering::Relaxed) % 2].clone();
            async move {
                Ok::<_, Infallible>(match outbound.oneshot(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(failure) => pending_response(failure),
                })
            }
        },
    ));

    let start = Instant::now();
    if let Some(injection) = schedule.injection {
        let (store, server, key) = (store.clone(), server.clone(), key.clone());
        tokio::spawn(async move {
            match injection {
                Injection::Relink { at, stale } => {
                    sleep_until(start + at).await;
                    let (access, refresh) = server.lock().unwrap().grant();
                    let link = Link::new(access).with_refresh_token(refresh);
                    let link = if stale {
                        link.with_expires_at(SystemTime::now() - Duration::from_secs(1))
                    } else {
                        link.with_expires_in(Duration::from_secs(3600))
                    };
                    store.insert(key, link);
                }
                Injection::Remove { at } => {
                    sleep_until(start + at).await;
                    store.remove(&key);
                }
            }
        });
    }
    let requests: Vec<_> = schedule
        .arrivals
        .iter()
        .map(|&at| {
            let client = client.clone();
            let key = key.clone();
            tokio::spawn(async move {
                sleep_until(start + at).await;
                let mut request = Request::new(Full::new(Bytes::from_static(b"payload")));
                request.extensions_mut().insert(key);
                let response = client.oneshot(request).await.unwrap();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                (
                    response.status(),
                    header("proxy-status"),
                    header("retry-after"),
                )
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    // Late answers are still awaited (up to six refresh timeouts) and stored: let them land.
    sleep(TIMEOUT * 8).await;
    (Outcome { statuses }, server, store, key)
}

#[tokio::test(start_paused = true)]
async fn every_schedule_keeps_the_link_and_never_replays_a_refresh_token() {
    let schedules = schedules();
    let mut refreshes = 0;
    let (mut ok, mut late, mut removed) = (0, 0, 0);
    for (n, schedule) in schedules.iter().enumerate() {
        let (outcome, server, store, key) = run(schedule).await;
        let server = server.lock().unwrap();
        let context = format!(
            "schedule {n}: {schedule:?}, statuses {:?}",
            outcome.statuses
        );
        refreshes += server.presented.len();

        assert!(
            server.max_in_flight <= 1,
            "two refreshes at once; {context}"
        );
        assert_eq!(server.in_flight, 0, "a refresh never finished; {context}");
        let unique: HashSet<_> = server.presented.iter().collect();
        assert_eq!(
            unique.len(),
            server.presented.len(),
            "a refresh token presented twice: {:?}; {context}",
            server.presented
        );
        assert_eq!(
            server.replays, 0,
            "a retired refresh token presented; {context}"
        );

        // The store's final state.
        let stored = store.get(&key);
        match schedule.injection {
            Some(Injection::Remove { .. }) => {
                assert!(stored.is_none(), "a removed link came back; {context}")
            }
            _ => {
                let newest = server.grants.last().unwrap().last().unwrap();
                let stored = stored.unwrap_or_else(|| panic!("the link was lost; {context}"));
                assert_eq!(
                    stored.refresh_token().map(|t| t.expose_secret()),
                    Some(newest.1.as_str()),
                    "the store lost the newest refresh token; {context}"
                );
                if stored.access_token().expose_secret() != "g0-stale" {
                    assert_eq!(stored.access_token().expose_secret(), newest.0, "{context}");
                }
                assert!(!stored.needs_reauthorization(), "{context}");
            }
        }

        // What callers saw.
        for (status, proxy_status, retry_after) in &outcome.statuses {
            match *status {
                StatusCode::OK => ok += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    late += 1;
                    assert!(
                        schedule.endpoint_delay > TIMEOUT / 2,
                        "a 503 though two refreshes fit in the timeout; {context}"
                    );
                    assert_eq!(
                        proxy_status.as_deref(),
                        Some(
                            r#"gw; error=destination_unavailable; details="upstream_refresh_unavailable""#
                        ),
                        "{context}"
                    );
                    assert!(retry_after.is_some(), "{context}");
                }
                StatusCode::FORBIDDEN => {
                    removed += 1;
                    assert!(
                        matches!(schedule.injection, Some(Injection::Remove { .. })),
                        "a 403 with the link in place; {context}"
                    )
                }
                other => panic!("unexpected {other}; {context}"),
            }
        }
    }
    println!(
        "{} schedules, {refreshes} refreshes; answers: {ok} 200, {late} 503 (token endpoint \
         too slow), {removed} 403 (link removed)",
        schedules.len()
    );
    assert!(
        ok > 0 && late > 0 && removed > 0,
        "every kind of schedule ran"
    );
}
