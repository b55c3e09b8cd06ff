//! Key sources against a real OpenID provider (`oidc-provider` from npm, see `tests/oidc/`), over
//! real HTTP through `ValidateBearerLayer`: discovery + JWKS (RS256, ES256), expiry, key rotation
//! across a provider restart, outages (cached keys keep working, unknown keys → 503), several
//! issuers, introspection of opaque tokens, the verified-token cache, and a flood of forged
//! `kid`s costing at most one JWKS fetch per refetch interval.
//!
//! Needs node >= 20 and `npm ci --prefix tests/oidc`.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{Extension, Router, routing::get};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::{
    http::{Reply, TestClient, client_without_reuse, get_bearer},
    logs::Capture,
    oidc::{
        Alg, CLIENT_ID, CLIENT_SECRET, OidcConfig, OidcProvider, RESOURCE_ES256, RESOURCE_OPAQUE,
        RESOURCE_RS256, Resource,
    },
    tokens::{b64, decoded_part},
};
use tower_bearer::{
    emit::Emitter,
    failure::AuthError,
    http_client::HttpClient,
    token::BearerToken,
    validate::{
        CachedValidator, ClaimsPolicy, IntrospectionValidator, Issuers, JwksValidator,
        StandardClaims, ValidateBearerLayer, ValidateToken, Verdict,
    },
};
use tower_service::Service;

const REALM: &str = "key-sources";
const INVALID_TOKEN: &str = r#"Bearer realm="key-sources", error="invalid_token""#;

/// An HTTP client that counts what it is asked to fetch, by path.
#[derive(Clone)]
struct Counting {
    inner: TestClient,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    discovery: AtomicUsize,
    jwks: AtomicUsize,
    introspection: AtomicUsize,
}

impl Counts {
    fn jwks(&self) -> usize {
        self.jwks.load(Ordering::SeqCst)
    }
    fn discovery(&self) -> usize {
        self.discovery.load(Ordering::SeqCst)
    }
    fn introspection(&self) -> usize {
        self.introspection.load(Ordering::SeqCst)
    }
}

impl Service<Request<Full<Bytes>>> for Counting {
    type Response = <TestClient as Service<Request<Full<Bytes>>>>::Response;
    type Error = <TestClient as Service<Request<Full<Bytes>>>>::Error;
    type Future = <TestClient as Service<Request<Full<Bytes>>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let counter = match request.uri().path() {
            "/.well-known/openid-configuration" => &self.counts.discovery,
            "/jwks" => &self.counts.jwks,
            "/token/introspection" => &self.counts.introspection,
            _ => &self.counts.discovery,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Service::call(&mut self.inner, request)
    }
}

fn counting_client() -> (HttpClient, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let service = Counting {
        inner: client_without_reuse(),
        counts: counts.clone(),
    };
    (
        HttpClient::new(service).timeout(Duration::from_secs(3)),
        counts,
    )
}

async fn whoami(Extension(claims): Extension<Arc<StandardClaims>>) -> String {
    let who = claims.sub.as_ref().or(claims.client_id.as_ref());
    who.map_or_else(|| "anonymous".into(), String::clone)
}

/// Serves `GET /` behind `ValidateBearerLayer` with `validator`; returns the base URL.
async fn serve<V>(validator: V) -> String
where
    V: ValidateToken<Claims = StandardClaims> + Clone + Send + Sync + 'static,
    V::Future: Send,
{
    let app = Router::new()
        .route("/", get(whoami))
        .layer(ValidateBearerLayer::new(validator, Emitter::new(REALM)));
    support::http::serve(app).await
}

/// A discovery-based JWKS validator for the provider's JWT resources, requiring `at+jwt`.
///
/// Its refetch interval runs on tokio's clock: the tests [`skip`] it instead of waiting.
fn jwks_validator(
    provider: &OidcProvider,
    client: HttpClient,
    refetch: Duration,
) -> JwksValidator<StandardClaims> {
    JwksValidator::discover(provider.issuer())
        .client(client)
        .policy(
            ClaimsPolicy::new()
                .audience(RESOURCE_RS256)
                .audience(RESOURCE_ES256)
                .audience("urn:tower-bearer:short")
                .token_type("at+jwt")
                .leeway(0),
        )
        .refetch_interval(refetch)
        .build_lazy()
        .unwrap()
}

fn assert_invalid_token(res: &Reply) {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:?}");
    assert_eq!(
        res.header("www-authenticate"),
        Some(INVALID_TOKEN),
        "{res:?}"
    );
}

fn assert_unavailable(res: &Reply) {
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:?}");
    assert!(
        res.header("www-authenticate").is_none(),
        "I8 has no challenge: {res:?}"
    );
    let retry: u64 = res
        .header("retry-after")
        .expect("503 carries Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "{retry}");
}

fn kid_of(token: &str) -> String {
    decoded_part(token, 0)["kid"].as_str().unwrap().to_owned()
}

/// Moves tokio's clock `ahead` at once: the clock of the JWKS validator's refetch interval and
/// of how long its fetched keys stay fresh.
///
/// The clock is paused for the jump only: a paused clock also jumps to the next timer whenever
/// the runtime has nothing to do, which, while a request waits on a socket, is that request's
/// timeout. Resumed, it runs on in real time, `ahead` of where it was.
async fn skip(ahead: Duration) {
    tokio::time::pause();
    tokio::time::advance(ahead).await;
    tokio::time::resume();
}

/// Waits until `token` is expired for a validator without leeway: past the whole second of its
/// `exp`, which jsonwebtoken still accepts. A real wait: the provider stamps `iat`/`exp` and the
/// crate checks them (and ends cache entries) by the system clock, which tokio's paused clock
/// does not move.
async fn sleep_past_exp(token: &str) {
    let exp = decoded_part(token, 1)["exp"].as_u64().expect("exp");
    let expired = UNIX_EPOCH + Duration::from_secs(exp + 1) + Duration::from_millis(100);
    if let Ok(wait) = expired.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

/// A token with the payload of `token` but a header naming `kid`, and a bogus signature.
fn forged(token: &str, kid: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    format!(
        "{}.{payload}.{}",
        b64(format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}"}}"#).as_bytes()),
        b64(b"not a signature")
    )
}

#[tokio::test]
async fn discovery_and_jwks_accept_rs256_and_es256_provider_tokens() {
    let provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let base = serve(jwks_validator(&provider, client, Duration::from_secs(10))).await;
    let http = client_without_reuse();

    for resource in [RESOURCE_RS256, RESOURCE_ES256] {
        let token = provider
            .client_credentials_token(Some(resource), "read")
            .await;
        let res = get_bearer(&http, &base, &token).await;
        assert_eq!(res.status, StatusCode::OK, "{resource}: {res:?}");
        assert_eq!(&res.body[..], CLIENT_ID.as_bytes());
    }
    assert_eq!(
        provider.kid(Alg::RS256),
        kid_of(
            &provider
                .client_credentials_token(Some(RESOURCE_RS256), "read")
                .await
        )
    );
    // One discovery, one JWKS fetch for both algorithms.
    assert_eq!((counts.discovery(), counts.jwks()), (1, 1));

    // Same keys, wrong token type: the provider's ID token (typ JWT, aud = client) is refused.
    let tokens = provider
        .authorization_code("alice", "openid read", Some(RESOURCE_RS256))
        .await;
    let res = get_bearer(&http, &base, &tokens.access_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(&res.body[..], b"alice");
    assert_invalid_token(&get_bearer(&http, &base, tokens.id_token.as_deref().unwrap()).await);

    // An opaque token is not a JWT: unreadable (row I3), no fetch.
    let opaque = provider
        .client_credentials_token(Some(RESOURCE_OPAQUE), "read")
        .await;
    assert_invalid_token(&get_bearer(&http, &base, &opaque).await);
    assert_eq!(counts.jwks(), 1);
}

#[tokio::test]
async fn an_expired_provider_token_is_invalid_token() {
    let provider = OidcProvider::start(
        OidcConfig::new().resource("urn:tower-bearer:short", Resource::jwt(Alg::ES256).ttl(2)),
    )
    .await;
    let (client, _) = counting_client();
    let base = serve(jwks_validator(&provider, client, Duration::from_secs(10))).await;
    let http = client_without_reuse();

    let token = provider
        .client_credentials_token(Some("urn:tower-bearer:short"), "read")
        .await;
    assert_eq!(
        get_bearer(&http, &base, &token).await.status,
        StatusCode::OK
    );
    sleep_past_exp(&token).await;
    assert_invalid_token(&get_bearer(&http, &base, &token).await);
}

#[tokio::test]
async fn a_restarted_provider_with_new_keys_costs_one_refetch() {
    let mut provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let refetch = Duration::from_millis(300);
    let base = serve(jwks_validator(&provider, client, refetch)).await;
    let http = client_without_reuse();

    let old = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    assert_eq!(get_bearer(&http, &base, &old).await.status, StatusCode::OK);
    assert_eq!(counts.jwks(), 1);

    let old_kid = provider.kid(Alg::RS256).to_owned();
    provider.restart().await;
    assert_ne!(
        provider.kid(Alg::RS256),
        old_kid,
        "a restart means new keys"
    );
    skip(refetch).await;

    let new = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    for _ in 0..5 {
        let res = get_bearer(&http, &base, &new).await;
        assert_eq!(res.status, StatusCode::OK, "{res:?}");
    }
    assert_eq!(counts.jwks(), 2, "exactly one refetch for the new kid");
    assert_eq!(counts.discovery(), 1, "the jwks_uri is remembered");
}

#[tokio::test]
async fn with_the_provider_down_cached_keys_validate_and_unknown_keys_get_503() {
    let mut provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let refetch = Duration::from_secs(1);
    let validator = JwksValidator::<StandardClaims>::discover(provider.issuer())
        .client(client)
        .policy(
            ClaimsPolicy::new()
                .audience(RESOURCE_RS256)
                .token_type("at+jwt"),
        )
        .refetch_interval(refetch)
        // Keys go stale at once: every later request would like to refresh them.
        .cache_ttl_bounds(Duration::ZERO, Duration::from_millis(100))
        .build_lazy()
        .unwrap();
    let base = serve(validator).await;
    let http = client_without_reuse();

    let known = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    assert_eq!(
        get_bearer(&http, &base, &known).await.status,
        StatusCode::OK
    );

    // The provider comes back with new keys, issues a token, and goes down before we saw them.
    provider.restart().await;
    let unknown = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    provider.stop().await;
    skip(refetch).await;
    let before = counts.jwks() + counts.discovery();

    for _ in 0..3 {
        let res = get_bearer(&http, &base, &known).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "stale cached keys keep validating: {res:?}"
        );
    }
    assert_unavailable(&get_bearer(&http, &base, &unknown).await);
    // Within the refetch interval the outage is not asked again.
    assert_unavailable(&get_bearer(&http, &base, &unknown).await);
    let attempts = counts.jwks() + counts.discovery() - before;
    assert!(
        (1..=2).contains(&attempts),
        "one attempt (plus rediscovery), got {attempts}"
    );
}

#[tokio::test]
async fn an_issuer_down_at_start_gets_503_never_401() {
    let mut provider = OidcProvider::start(OidcConfig::new()).await;
    let token = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    provider.stop().await;

    let (client, counts) = counting_client();
    let base = serve(jwks_validator(&provider, client, Duration::from_secs(10))).await;
    let http = client_without_reuse();
    for _ in 0..5 {
        assert_unavailable(&get_bearer(&http, &base, &token).await);
    }
    assert_eq!(
        counts.discovery(),
        1,
        "one attempt per refetch interval, not one per request"
    );
    // Garbage is still the caller's fault, outage or not.
    assert_invalid_token(&get_bearer(&http, &base, "not-a-jwt").await);
}

#[tokio::test]
async fn a_thousand_forged_kids_cost_at_most_one_fetch_per_interval() {
    let provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let refetch = Duration::from_millis(500);
    let base = serve(jwks_validator(&provider, client, refetch)).await;
    let http = client_without_reuse();

    let token = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    assert_eq!(
        get_bearer(&http, &base, &token).await.status,
        StatusCode::OK
    );
    assert_eq!(counts.jwks(), 1);
    skip(refetch).await;

    // 1,000 requests, 50 at a time, each with its own unknown kid.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for batch in 0..20 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50 {
            let (http, base, forged) = (
                http.clone(),
                base.clone(),
                forged(&token, &format!("forged-{batch}-{i}")),
            );
            tasks.spawn(async move {
                let res = get_bearer(&http, &base, &forged).await;
                (
                    res.status,
                    res.header("www-authenticate").map(str::to_owned),
                )
            });
        }
        while let Some(result) = tasks.join_next().await {
            statuses.push(result.unwrap());
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(statuses.len(), 1000);
    for (status, challenge) in &statuses {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some(INVALID_TOKEN));
    }
    let fetches = counts.jwks() - 1;
    println!(
        "1,000 forged kids in {elapsed:?}: {fetches} JWKS fetch(es), refetch interval {refetch:?}"
    );
    let allowed = (elapsed.as_millis() / refetch.as_millis()) as usize + 1;
    assert!(fetches >= 1, "the first unknown kid triggers a refetch");
    assert!(
        fetches <= allowed,
        "{fetches} JWKS fetches in {elapsed:?} (refetch interval {refetch:?}, at most {allowed})"
    );
    // The real key still works throughout.
    assert_eq!(
        get_bearer(&http, &base, &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let validator = jwks_validator(&provider, client, Duration::from_secs(3600));
    let token = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;

    // Nothing cached yet: 1,000 simultaneous validations with distinct unknown kids.
    let results = futures_join_all((0..1000).map(|i| {
        let bearer = BearerToken::new(&forged(&token, &format!("k{i}"))).unwrap();
        validator.validate(&bearer).outcome()
    }))
    .await;
    assert_eq!((counts.discovery(), counts.jwks()), (1, 1), "single flight");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(AuthError::InvalidToken(_))))
    );
}

/// Awaits all futures concurrently on the current task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(out) => outputs[i] = Some(out),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn several_issuers_each_with_their_own_keys() {
    let a = OidcProvider::start(OidcConfig::new()).await;
    let b = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let issuers = Issuers::new()
        .issuer(
            a.issuer(),
            jwks_validator(&a, client.clone(), Duration::from_secs(10)),
        )
        .issuer(
            b.issuer(),
            jwks_validator(&b, client, Duration::from_secs(10)),
        );
    let base = serve(issuers).await;
    let http = client_without_reuse();

    let from_a = a
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    let from_b = b
        .client_credentials_token(Some(RESOURCE_ES256), "read")
        .await;
    assert_eq!(
        get_bearer(&http, &base, &from_a).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_bearer(&http, &base, &from_b).await.status,
        StatusCode::OK
    );
    assert_eq!((counts.discovery(), counts.jwks()), (2, 2));

    // A token of an issuer nobody configured: refused without any fetch.
    let c = OidcProvider::start(OidcConfig::new()).await;
    let from_c = c
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    assert_invalid_token(&get_bearer(&http, &base, &from_c).await);
    // A's token relabelled as B's: B's keys do not verify A's signature.
    let relabelled = {
        let mut parts: Vec<String> = from_a.split('.').map(str::to_owned).collect();
        let mut claims = decoded_part(&from_a, 1);
        claims["iss"] = b.issuer().into();
        parts[1] = b64(claims.to_string().as_bytes());
        parts.join(".")
    };
    // Its kid is unknown to B: one refetch (a key rotated in right after B's scheduled fetch
    // would be found by it), then none within the interval.
    assert_invalid_token(&get_bearer(&http, &base, &relabelled).await);
    assert_eq!((counts.discovery(), counts.jwks()), (2, 3));
    assert_invalid_token(&get_bearer(&http, &base, &relabelled).await);
    assert_eq!(
        (counts.discovery(), counts.jwks()),
        (2, 3),
        "no second fetch for an unknown kid within the interval"
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    let mut provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, counts) = counting_client();
    let validator = IntrospectionValidator::<StandardClaims>::discover(provider.issuer())
        .client(client)
        .client_credentials(CLIENT_ID, CLIENT_SECRET)
        .audience(RESOURCE_OPAQUE)
        .retry_after(Duration::from_secs(7))
        .build()
        .unwrap();
    let base = serve(validator).await;
    let http = client_without_reuse();

    let token = provider
        .client_credentials_token(Some(RESOURCE_OPAQUE), "read")
        .await;
    let res = get_bearer(&http, &base, &token).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(&res.body[..], CLIENT_ID.as_bytes());
    assert_eq!(counts.introspection(), 1);

    // Inactive: revoked, or never issued.
    assert_eq!(provider.revoke(&token).await, StatusCode::OK);
    assert_invalid_token(&get_bearer(&http, &base, &token).await);
    assert_invalid_token(&get_bearer(&http, &base, "no-such-token").await);
    // Active, but for another audience (the audience-less client_credentials token).
    let other = provider.client_credentials_token(None, "read").await;
    assert_eq!(provider.introspect(&other).await["active"], true);
    assert_invalid_token(&get_bearer(&http, &base, &other).await);

    // The endpoint down: 503 with the configured Retry-After.
    let fresh = provider
        .client_credentials_token(Some(RESOURCE_OPAQUE), "read")
        .await;
    provider.stop().await;
    let res = get_bearer(&http, &base, &fresh).await;
    assert_unavailable(&res);
    assert_eq!(res.header("retry-after"), Some("7"));
}

/// Counts validations that reach the wrapped validator.
#[derive(Clone)]
struct CountCalls<V> {
    inner: V,
    calls: Arc<AtomicUsize>,
}

impl<V: ValidateToken> ValidateToken for CountCalls<V> {
    type Claims = V::Claims;
    type Future = V::Future;
    fn validate(&self, token: &BearerToken) -> Verdict<Arc<V::Claims>, V::Future> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.validate(token)
    }
}

#[tokio::test]
async fn the_cache_answers_repeats_but_never_past_exp() {
    let provider = OidcProvider::start(
        OidcConfig::new().resource("urn:tower-bearer:short", Resource::jwt(Alg::RS256).ttl(2)),
    )
    .await;
    let (client, _) = counting_client();
    let calls = Arc::new(AtomicUsize::new(0));
    let validator = CachedValidator::new(CountCalls {
        inner: jwks_validator(&provider, client, Duration::from_secs(10)),
        calls: calls.clone(),
    })
    .max_ttl(Duration::from_secs(300));
    let base = serve(validator).await;
    let http = client_without_reuse();

    let token = provider
        .client_credentials_token(Some("urn:tower-bearer:short"), "read")
        .await;
    for _ in 0..10 {
        assert_eq!(
            get_bearer(&http, &base, &token).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "verified once, then answered from the cache"
    );

    // Refusals are not cached.
    let bad = forged(&token, "nope");
    assert_invalid_token(&get_bearer(&http, &base, &bad).await);
    assert_invalid_token(&get_bearer(&http, &base, &bad).await);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // The entry dies with the token, though max_ttl is 5 minutes.
    sleep_past_exp(&token).await;
    assert_invalid_token(&get_bearer(&http, &base, &token).await);
}

#[tokio::test]
async fn the_provider_harness_runs_the_code_flow_with_refresh_rotation() {
    // Issue 5 scripts against this: login + consent as form posts, refresh-token rotation.
    let mut provider = OidcProvider::start(OidcConfig::new()).await;
    let tokens = provider
        .authorization_code("bob", "openid offline_access read", Some(RESOURCE_ES256))
        .await;
    assert_eq!(kid_of(&tokens.access_token), provider.kid(Alg::ES256));
    let first = tokens
        .refresh_token
        .expect("offline_access + prompt=consent yields a refresh token");
    let res = provider.refresh(&first).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    let second = res.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "rotated");
    let replay = provider.refresh(&first).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json()["error"], "invalid_grant");
    // Replaying revoked the grant: the rotated token is dead too.
    assert_eq!(
        provider.refresh(&second).await.json()["error"],
        "invalid_grant"
    );

    let port = provider.port();
    provider.restart().await;
    assert_eq!(provider.port(), port);
    provider.stop().await;
    assert!(!provider.is_running());
}

#[tokio::test]
async fn tokens_and_secrets_stay_out_of_logs_debug_and_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    // The process's subscriber, not this thread's: the other tests of this binary hit the same
    // callsites on their threads at the same time, and tracing caches a callsite's interest
    // once for all threads — a thread's own subscriber was seen to miss every event of the
    // JWKS validator when one of them got there first. Their events land here too, and are
    // checked along with this test's.
    tracing::subscriber::set_global_default(subscriber)
        .expect("no other test of this binary installs a subscriber");

    let mut provider = OidcProvider::start(OidcConfig::new()).await;
    let (client, _) = counting_client();
    let jwks = jwks_validator(&provider, client.clone(), Duration::from_millis(100));
    const SECRET: &str = "a-wrong-secret-that-must-not-leak";
    let wrong_secret = IntrospectionValidator::<StandardClaims>::discover(provider.issuer())
        .client(client.clone())
        .client_credentials(CLIENT_ID, SECRET)
        .build()
        .unwrap();
    let jwks_base = serve(CachedValidator::new(jwks.clone())).await;
    let introspect_base = serve(wrong_secret.clone()).await;
    let http = client_without_reuse();

    let jwt = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    let opaque = provider
        .client_credentials_token(Some(RESOURCE_OPAQUE), "read")
        .await;
    assert_eq!(
        get_bearer(&http, &jwks_base, &jwt).await.status,
        StatusCode::OK
    );
    // Our credentials refused by the endpoint: 503, logged as an error.
    assert_unavailable(&get_bearer(&http, &introspect_base, &opaque).await);
    // Rotation and outage paths.
    provider.restart().await;
    let rotated = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    provider.stop().await;
    skip(Duration::from_millis(150)).await;
    assert_unavailable(&get_bearer(&http, &jwks_base, &rotated).await);
    assert_unavailable(&get_bearer(&http, &introspect_base, &opaque).await);

    // The capture holds every test's events: these lines are this test's, by its provider's
    // address (the other tests run providers of their own).
    let mut seen = capture.text();
    let ours = format!("uri=http://127.0.0.1:{}/", provider.port());
    let line_with = |what: &str| {
        seen.lines()
            .any(|line| line.contains(what) && line.contains(&ours))
    };
    assert!(line_with("fetched JWKS"), "the capture works: {seen}");
    assert!(line_with("refused our client credentials"), "{seen}");
    assert!(seen.contains("fetching the JWKS failed"), "{seen}");
    let err = jwks.refresh().await.unwrap_err();
    seen.push_str(&format!(
        "{err} {err:?} {jwks:?} {wrong_secret:?} {client:?}"
    ));
    for secret in [jwt.as_str(), opaque.as_str(), rotated.as_str(), SECRET] {
        assert!(!seen.contains(secret), "a token or secret leaked");
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(!seen.contains(part), "part of a token leaked");
        }
    }
}
