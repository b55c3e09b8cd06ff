//! Validation against an issuer's published keys: a JWKS URL, or an issuer found by OpenID
//! Connect discovery, fetched through the application's HTTP client and kept fresh.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use http::Uri;
// Tokio's clock, so that the timing rules can be tested with a paused clock.
use jsonwebtoken::{Algorithm, jwk::Jwk};
use serde::{Deserialize, de::DeserializeOwned};
use tokio::time::Instant;

use super::{
    ClaimsPolicy, KeySet, PolicyError, StandardClaims, ValidateToken, Verdict, VerificationKey,
    discovery::{absolute, discover},
    peek,
};
use crate::{
    failure::{AuthError, TokenRejection},
    http_client::{FetchError, HttpClient, max_age},
    token::BearerToken,
};

/// The default algorithm allow-list: every asymmetric algorithm jsonwebtoken verifies. A key
/// only ever verifies the algorithms of its own family.
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a [`JwksValidator`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A URL is not absolute.
    #[error("invalid URL for {0}")]
    InvalidUrl(&'static str),
    /// The claims policy accepts any issuer; a key source must name its issuer (RFC 8725 §3.8).
    #[error("the claims policy must name the accepted issuer")]
    NoIssuer,
    /// The algorithm allow-list is empty or contains an HMAC algorithm (a published key is public).
    #[error("the algorithm allow-list must be non-empty and asymmetric")]
    Algorithms,
    /// The claims policy holds a value no token can satisfy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Built without the feature `client` and without a client of the application's.
    #[error(
        "no HTTP client: pass one with `.client(..)` or enable the feature `client` for the built-in one"
    )]
    NoClient,
}

/// Why [`JwksValidatorBuilder::build`] could not start a validator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] SourceError),
    /// The discovery document or the first key set could not be fetched: the error names the
    /// URL and the cause.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The client a key source uses unless given one: the built-in one, with the feature `client`.
pub(super) fn default_client() -> Option<HttpClient> {
    #[cfg(feature = "client")]
    return Some(HttpClient::builtin());
    #[cfg(not(feature = "client"))]
    return None;
}

/// Validates JWTs with keys from a JWKS URL or an OpenID provider's discovery document.
///
/// # Behaviour
///
/// - **Caching.** The key set is kept for the response's `Cache-Control: max-age` (minus `Age`),
///   clamped to [`cache_ttl_bounds`](JwksValidatorBuilder::cache_ttl_bounds) (default 1 min to
///   24 h); without a `max-age`, [`default_cache_ttl`](JwksValidatorBuilder::default_cache_ttl)
///   (5 min). When it goes stale, the first request to notice fetches it again while concurrent
///   requests keep verifying with the stale keys.
/// - **Rotation.** A token whose `kid` is not in the set triggers one refetch, at most once per
///   [`refetch_interval`](JwksValidatorBuilder::refetch_interval) (default 10 s) counted
///   between such refetches only — a key published right after a scheduled fetch works at once
///   — and single-flight: concurrent requests wait for the one fetch in progress, later ones
///   within the interval are refused without any fetch, so a flood of forged `kid`s costs one
///   fetch per interval. Still unknown after that → `401 invalid_token` (row I4).
/// - **Outages.** A failed fetch never discards keys: cached keys keep validating. While the
///   issuer fails, a fetch is tried again at most once a second, so validation recovers as soon
///   as it is back. A token that
///   needs a key we do not have while the issuer cannot be reached, or any token when nothing was
///   ever fetched, is answered `503` with `Retry-After` (row I8), never 401.
/// - **No lock across a fetch on the validation path.** The key set is an `Arc` swapped under a
///   lock held for a pointer copy; the fetch is serialized by a separate async mutex that only
///   requests needing new keys ever wait on.
/// - **Keys.** Each JWK is judged on its own: `use: enc` keys are skipped, a JWK with `alg` is
///   used for that algorithm only (if it is in the allow-list), one without `alg` for the
///   allowed algorithms of its own `kty` family; unreadable or unsupported JWKs are skipped
///   without spoiling the rest. The algorithm is never taken from the token alone.
///
/// ```no_run
/// use tower_bearer::validate::{ClaimsPolicy, JwksValidator, StandardClaims};
///
/// # async fn run() -> Result<(), tower_bearer::validate::BuildError> {
/// // Issuer → /.well-known/openid-configuration → jwks_uri; `iss` must equal the issuer.
/// // `build` fetches both now: a wrong or unreachable issuer fails here, naming the URL.
/// let validator = JwksValidator::<StandardClaims>::discover("https://login.example.com")
///     .policy(ClaimsPolicy::new().audience("https://api.example.com").token_type("at+jwt"))
///     .build()
///     .await?;
/// # let _ = validator; Ok(()) }
/// ```
///
/// The requests go through [`HttpClient::builtin`] unless
/// [`client`](JwksValidatorBuilder::client) gives another; [`build_lazy`](JwksValidatorBuilder::build_lazy)
/// fetches nothing until the first token (an issuer that is down at start-up then yields
/// 503s, not a start-up failure).
///
/// Cheap to clone: clones share the key cache.
pub struct JwksValidator<C = StandardClaims> {
    shared: Arc<Shared>,
    claims: PhantomData<fn() -> C>,
}

impl<C> Clone for JwksValidator<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            claims: PhantomData,
        }
    }
}

impl<C> fmt::Debug for JwksValidator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.shared.snapshot().map(|s| s.keys.clone());
        f.debug_struct("JwksValidator")
            .field("source", &self.shared.source)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Source {
    Jwks(Uri),
    Discovery(String),
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    refetch_interval: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    default_ttl: Duration,
}

struct Shared {
    source: Source,
    client: HttpClient,
    algorithms: Vec<Algorithm>,
    policy: ClaimsPolicy,
    timing: Timing,
    /// The current key set; the lock is held only to copy or replace the `Arc`.
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Single flight: held by the one fetch in progress (never by a validation that has keys).
    flight: tokio::sync::Mutex<Flight>,
    /// When the last fetch ended and how, readable without waiting for a fetch.
    status: Mutex<Status>,
}

struct Snapshot {
    keys: KeySet,
    kids: Vec<String>,
    fresh_until: Instant,
    generation: u64,
}

impl Snapshot {
    fn knows(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.can_verify_kid(kid))
    }
}

#[derive(Default)]
struct Flight {
    /// The `jwks_uri` found by discovery, kept until a fetch fails.
    discovered: Option<Uri>,
}

#[derive(Default, Clone, Copy)]
struct Status {
    last_completed: Option<Instant>,
    last_failed: bool,
    /// When the last fetch for an unknown `kid` ended: only those are rate-limited, so a key
    /// published right after a scheduled fetch is still fetched at once.
    last_unknown_kid: Option<Instant>,
    generation: u64,
}

/// Why a fetch is wanted, which decides how it is throttled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Asked for through [`JwksValidator::refresh`]: never throttled.
    Requested,
    /// The cached set went stale (or none was fetched yet).
    Scheduled,
    /// A token names a `kid` the cached set lacks.
    UnknownKid,
}

/// The longest pause between attempts while the issuer is failing (shorter refetch intervals
/// apply as they are): the keys are used again as soon as the issuer is back.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);

impl JwksValidator {
    /// Keys from this JWKS URL. The [policy](JwksValidatorBuilder::policy) must name the issuer.
    ///
    /// The claims are [`StandardClaims`] unless [`claims`](JwksValidatorBuilder::claims) names
    /// a type of your own.
    pub fn builder(jwks_uri: &str) -> JwksValidatorBuilder {
        JwksValidatorBuilder::new(
            absolute(jwks_uri, "jwks_uri")
                .map(Source::Jwks)
                .map_err(|_| SourceError::InvalidUrl("jwks_uri")),
        )
    }

    /// Keys of the OpenID provider `issuer`, found through its discovery document. The
    /// document's `issuer` must equal `issuer` exactly, and so must the tokens' `iss` (added to
    /// the policy unless it names issuers itself).
    ///
    /// The claims are [`StandardClaims`] unless [`claims`](JwksValidatorBuilder::claims) names
    /// a type of your own.
    pub fn discover(issuer: &str) -> JwksValidatorBuilder {
        let source = super::discovery::discovery_url(issuer)
            .map(|_| Source::Discovery(issuer.to_owned()))
            .map_err(|_| SourceError::InvalidUrl("issuer"));
        JwksValidatorBuilder::new(source)
    }
}

impl<C> JwksValidator<C> {
    /// Fetches the key set now, waiting for a fetch already in progress instead of starting a
    /// second one; ignores the refetch interval. Useful at start-up to fail fast or warm up.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let seen = self.shared.status().generation;
        self.shared
            .fetch(seen, Reason::Requested)
            .await
            .unwrap_or(Ok(()))
    }

    /// The `kid`s of the cached keys (empty before the first successful fetch).
    pub fn cached_kids(&self) -> Vec<String> {
        self.shared
            .snapshot()
            .map(|s| s.kids.clone())
            .unwrap_or_default()
    }
}

impl Shared {
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure_backoff(&self) -> Duration {
        self.timing.refetch_interval.min(FAILURE_BACKOFF)
    }

    /// How long until a request could make a fetch happen, at least one second.
    fn retry_after(&self) -> Duration {
        let status = self.status();
        let pause = if status.last_failed {
            self.failure_backoff()
        } else {
            self.timing.refetch_interval
        };
        let wait = status
            .last_completed
            .map(|t| pause.saturating_sub(t.elapsed()))
            .unwrap_or_default();
        Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Whether a fetch for `reason` must wait: while the issuer fails, until the failure
    /// backoff has passed; otherwise a stale set is refetched at most once per refetch
    /// interval, and so is an unknown `kid`, counting only fetches made for unknown `kid`s.
    fn throttled(&self, status: &Status, reason: Reason) -> bool {
        let within = |at: Option<Instant>, pause: Duration| at.is_some_and(|t| t.elapsed() < pause);
        match reason {
            Reason::Requested => false,
            _ if status.last_failed => within(status.last_completed, self.failure_backoff()),
            Reason::Scheduled => within(status.last_completed, self.timing.refetch_interval),
            Reason::UnknownKid => within(status.last_unknown_kid, self.timing.refetch_interval),
        }
    }

    /// Fetches the key set unless another fetch replaced it since generation `seen` was
    /// observed, or a fetch for `reason` must wait. Returns `None` when it did not fetch.
    async fn fetch(&self, seen: u64, reason: Reason) -> Option<Result<(), FetchError>> {
        let mut flight = self.flight.lock().await;
        let status = self.status();
        if status.generation != seen || self.throttled(&status, reason) {
            return None;
        }
        let outcome = self.fetch_keys(&mut flight).await;
        crate::metrics::key_fetch(outcome.is_ok());
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        status.last_completed = Some(now);
        status.last_failed = outcome.is_err();
        if reason == Reason::UnknownKid {
            status.last_unknown_kid = Some(now);
        }
        match outcome {
            Ok((keys, kids, ttl)) => {
                status.generation += 1;
                let snapshot = Arc::new(Snapshot {
                    keys,
                    kids,
                    fresh_until: Instant::now() + ttl,
                    generation: status.generation,
                });
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
                Some(Ok(()))
            }
            Err(error) => {
                tracing::warn!(%error, "fetching the JWKS failed; cached keys stay in use");
                flight.discovered = None;
                Some(Err(error))
            }
        }
    }

    /// Like [`fetch`](Self::fetch) for a stale key set, but never waits: if a fetch is in
    /// progress, the stale keys serve this request.
    async fn revalidate(&self, seen: u64) {
        // Acquire-and-release to learn whether a fetch is in flight, without waiting for it.
        let idle = self.flight.try_lock().is_ok();
        if idle {
            let _ = self.fetch(seen, Reason::Scheduled).await;
        }
    }

    async fn fetch_keys(
        &self,
        flight: &mut Flight,
    ) -> Result<(KeySet, Vec<String>, Duration), FetchError> {
        let uri = match (&self.source, &flight.discovered) {
            (Source::Jwks(uri), _) => uri.clone(),
            (Source::Discovery(_), Some(uri)) => uri.clone(),
            (Source::Discovery(issuer), None) => {
                let metadata = discover(&self.client, issuer).await?;
                let uri = absolute(&metadata.jwks_uri, "jwks_uri")?;
                flight.discovered = Some(uri.clone());
                uri
            }
        };
        let (document, headers): (JwkDocument, _) = self.client.get_json(&uri, "JWK set").await?;
        let keys = usable_keys(&document.keys, &self.algorithms);
        tracing::debug!(%uri, keys = keys.len(), offered = document.keys.len(), "fetched JWKS");
        if keys.is_empty() {
            // Replacing cached keys with none would turn every token into a 401; a set without
            // a usable key is a failed fetch (row I8), and the keys we have keep serving.
            return Err(FetchError::Invalid {
                uri,
                what: "JWK set with a usable signing key",
            });
        }
        let ttl = max_age(&headers)
            .unwrap_or(self.timing.default_ttl)
            .clamp(self.timing.min_ttl, self.timing.max_ttl);
        let kids = keys
            .iter()
            .filter_map(|k| k.kid().map(str::to_owned))
            .collect();
        Ok((KeySet::new(keys, self.policy.clone()), kids, ttl))
    }
}

#[derive(Deserialize)]
struct JwkDocument {
    keys: Vec<serde_json::Value>,
}

/// The JWKs of a set that may verify signatures with `allowed` algorithms; each judged alone.
fn usable_keys(keys: &[serde_json::Value], allowed: &[Algorithm]) -> Vec<VerificationKey> {
    keys.iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
            VerificationKey::from_jwk(&jwk, allowed).ok()
        })
        .collect()
}

impl<C> ValidateToken for JwksValidator<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Claims = C;
    type Future = Pin<Box<dyn Future<Output = Result<Arc<C>, AuthError>> + Send>>;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<C>, Self::Future> {
        // The header is read once, here: `crit` is judged and the `kid` found in one pass.
        let jws = match peek::parse(token.as_str()) {
            Ok(jws) => jws,
            Err(rejection) => return Verdict::Decided(Err(AuthError::InvalidToken(rejection))),
        };
        let snapshot = self.shared.snapshot();
        if let Some(s) = &snapshot
            && s.fresh_until > Instant::now()
            && s.knows(jws.header.kid.as_deref())
        {
            return Verdict::Decided(
                s.keys
                    .verify_jws(&jws)
                    .map(Arc::new)
                    .map_err(AuthError::InvalidToken),
            );
        }
        let kid = jws.header.kid;
        let shared = self.shared.clone();
        let token = token.clone();
        Verdict::Pending(Box::pin(async move {
            slow_path(&shared, &token, kid, snapshot)
                .await
                .map(Arc::new)
        }))
    }
}

/// Validation when the key set is missing, stale, or lacks the token's `kid`.
async fn slow_path<C: DeserializeOwned>(
    shared: &Shared,
    token: &BearerToken,
    kid: Option<String>,
    seen: Option<Arc<Snapshot>>,
) -> Result<C, AuthError> {
    let kid = kid.as_deref();
    match &seen {
        // Stale but able to verify this token: refresh if nobody is, else use what we have.
        Some(s) if s.knows(kid) => shared.revalidate(s.generation).await,
        // Nothing cached yet: the first fetch.
        None => {
            let _ = shared.fetch(0, Reason::Scheduled).await;
        }
        // Unknown kid: one (single-flight, rate-limited) fetch.
        Some(s) => {
            let _ = shared.fetch(s.generation, Reason::UnknownKid).await;
        }
    }
    match shared.snapshot() {
        Some(s) if s.knows(kid) => s
            .keys
            .verify(token.as_str())
            .map_err(AuthError::InvalidToken),
        // We have keys, the issuer answered, and it does not know this kid: the token's fault.
        Some(_) if !shared.status().last_failed => {
            Err(AuthError::InvalidToken(TokenRejection::UnknownKey))
        }
        // Nothing usable, and the issuer cannot be asked right now: not the caller's fault.
        _ => Err(AuthError::ValidationUnavailable {
            retry_after: shared.retry_after(),
        }),
    }
}

/// Configures a [`JwksValidator`].
pub struct JwksValidatorBuilder<C = StandardClaims> {
    source: Result<Source, SourceError>,
    client: Option<HttpClient>,
    algorithms: Vec<Algorithm>,
    policy: ClaimsPolicy,
    timing: Timing,
    claims: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for JwksValidatorBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksValidatorBuilder")
            .field("source", &self.source)
            .field("algorithms", &self.algorithms)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl JwksValidatorBuilder {
    fn new(source: Result<Source, SourceError>) -> Self {
        Self {
            source,
            client: default_client(),
            algorithms: ASYMMETRIC_ALGORITHMS.to_vec(),
            policy: ClaimsPolicy::new(),
            timing: Timing {
                refetch_interval: Duration::from_secs(10),
                min_ttl: Duration::from_secs(60),
                max_ttl: Duration::from_secs(24 * 60 * 60),
                default_ttl: Duration::from_secs(5 * 60),
            },
            claims: PhantomData,
        }
    }
}

impl<C> JwksValidatorBuilder<C> {
    /// Deserializes the claims into `D` (any `serde` type) instead of [`StandardClaims`].
    pub fn claims<D>(self) -> JwksValidatorBuilder<D> {
        JwksValidatorBuilder {
            source: self.source,
            client: self.client,
            algorithms: self.algorithms,
            policy: self.policy,
            timing: self.timing,
            claims: PhantomData,
        }
    }

    /// The HTTP client for discovery and the JWKS (default: [`HttpClient::builtin`]).
    pub fn client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// The claims policy (issuer, audience, leeway, `typ`, required claims).
    pub fn policy(mut self, policy: ClaimsPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Accepts tokens for this audience: [`ClaimsPolicy::audience`] on the policy.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.policy = self.policy.audience(audience);
        self
    }

    /// The algorithm allow-list (default [`ASYMMETRIC_ALGORITHMS`]). HMAC algorithms are refused.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The minimum time between two fetches caused by unknown `kid`s or failures (default 10 s).
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.timing.refetch_interval = interval;
        self
    }

    /// Bounds for the `max-age` the JWKS response grants (default 1 min to 24 h).
    pub fn cache_ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.timing.min_ttl = min.min(max);
        self.timing.max_ttl = max.max(min);
        self
    }

    /// How long to keep a key set whose response has no `max-age` (default 5 min; clamped to
    /// the bounds).
    pub fn default_cache_ttl(mut self, ttl: Duration) -> Self {
        self.timing.default_ttl = ttl;
        self
    }

    /// Builds the validator and fetches the discovery document and the first key set now, so
    /// that a wrong or unreachable issuer fails at start-up with an error naming the URL and
    /// the cause, instead of answering every request `503`.
    pub async fn build(self) -> Result<JwksValidator<C>, BuildError> {
        let validator = self.build_lazy()?;
        validator.refresh().await?;
        Ok(validator)
    }

    /// Builds the validator without fetching anything: discovery and the keys are fetched at
    /// the first token, and an issuer that is down until then yields `503`s (row I8), not a
    /// start-up failure.
    pub fn build_lazy(self) -> Result<JwksValidator<C>, SourceError> {
        let source = self.source?;
        let client = self.client.ok_or(SourceError::NoClient)?;
        self.policy.check()?;
        if self.algorithms.is_empty()
            || self
                .algorithms
                .iter()
                .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(SourceError::Algorithms);
        }
        let mut policy = self.policy;
        if policy.issuers().is_empty() {
            match &source {
                Source::Discovery(issuer) => policy = policy.issuer(issuer.clone()),
                Source::Jwks(_) => return Err(SourceError::NoIssuer),
            }
        }
        Ok(JwksValidator {
            shared: Arc::new(Shared {
                source,
                client,
                algorithms: self.algorithms,
                policy,
                timing: self.timing,
                current: RwLock::new(None),
                flight: tokio::sync::Mutex::new(Flight::default()),
                status: Mutex::new(Status::default()),
            }),
            claims: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
    const ISSUER: &str = "https://issuer.test";

    /// A fake JWKS endpoint: serves `jwks` with `cache_control`, or fails, counting requests.
    #[derive(Clone, Default)]
    struct Fake {
        state: Arc<Mutex<(serde_json::Value, Option<&'static str>, bool)>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Fake {
        fn client(&self) -> HttpClient {
            let fake = self.clone();
            HttpClient::new(tower::service_fn(move |_req: Request<Full<Bytes>>| {
                let fake = fake.clone();
                async move {
                    fake.fetches.fetch_add(1, Ordering::SeqCst);
                    let (jwks, cache_control, fail) = fake.state.lock().unwrap().clone();
                    if fail {
                        return Err::<Response<Full<Bytes>>, BoxErr>("connection refused".into());
                    }
                    let mut response = Response::builder();
                    if let Some(cc) = cache_control {
                        response = response.header("cache-control", cc);
                    }
                    Ok(response
                        .body(Full::new(Bytes::from(jwks.to_string())))
                        .unwrap())
                }
            }))
        }
        fn set(&self, jwks: serde_json::Value, cache_control: Option<&'static str>, fail: bool) {
            *self.state.lock().unwrap() = (jwks, cache_control, fail);
        }
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    type BoxErr = Box<dyn std::error::Error + Send + Sync>;

    fn jwk(kid: &str) -> serde_json::Value {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
        jwk["kid"] = kid.into();
        jwk
    }

    fn token(kid: Option<&str>) -> BearerToken {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let claims =
            json!({"iss": ISSUER, "sub": "s", "exp": jsonwebtoken::get_current_timestamp() + 600});
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        )
        .unwrap();
        BearerToken::new(&token).unwrap()
    }

    async fn outcome(
        validator: &JwksValidator<StandardClaims>,
        kid: Option<&str>,
    ) -> Result<Arc<StandardClaims>, AuthError> {
        validator.validate(&token(kid)).outcome().await
    }

    fn validator(fake: &Fake, refetch: Duration) -> JwksValidator<StandardClaims> {
        JwksValidator::builder("https://issuer.test/jwks")
            .client(fake.client())
            .policy(ClaimsPolicy::new().issuer(ISSUER))
            .refetch_interval(refetch)
            .cache_ttl_bounds(Duration::ZERO, Duration::from_secs(3600))
            .build_lazy()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_without_usable_keys_never_replaces_the_cached_keys() {
        let fake = Fake::default();
        fake.set(json!({"keys": [jwk("a")]}), Some("max-age=0"), false);
        // Fetches lazily: first used below, once the set is empty.
        let cold = validator(&fake, Duration::ZERO);
        let validator = validator(&fake, Duration::ZERO);
        assert!(outcome(&validator, Some("a")).await.is_ok());
        // The issuer now publishes nothing usable: the keys it had keep verifying.
        fake.set(json!({"keys": []}), Some("max-age=0"), false);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(outcome(&validator, Some("a")).await.is_ok());
        assert!(fake.fetches() >= 2, "the empty set was fetched");
        assert_eq!(validator.cached_kids(), vec!["a".to_owned()]);

        // With nothing cached, an empty set is an outage (row I8), never a 401.
        let outcome = outcome(&cold, Some("a")).await;
        assert!(
            matches!(outcome, Err(AuthError::ValidationUnavailable { .. })),
            "{outcome:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn honours_max_age_and_serves_stale_keys_when_the_refetch_fails() {
        let fake = Fake::default();
        fake.set(
            json!({"keys": [jwk("a")]}),
            Some("public, max-age=1"),
            false,
        );
        let validator = validator(&fake, Duration::ZERO);
        assert!(outcome(&validator, Some("a")).await.is_ok());
        assert!(outcome(&validator, Some("a")).await.is_ok());
        assert_eq!(fake.fetches(), 1, "fresh for max-age");
        assert_eq!(validator.cached_kids(), vec!["a".to_owned()]);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        fake.set(json!({"keys": [jwk("a")]}), Some("max-age=3600"), true);
        assert!(
            outcome(&validator, Some("a")).await.is_ok(),
            "stale keys serve when the refetch fails"
        );
        assert_eq!(fake.fetches(), 2);

        fake.set(json!({"keys": [jwk("a")]}), Some("max-age=3600"), false);
        assert!(outcome(&validator, Some("a")).await.is_ok());
        assert_eq!(fake.fetches(), 3, "refreshed once the issuer is back");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(outcome(&validator, Some("a")).await.is_ok());
        assert_eq!(fake.fetches(), 3, "max-age=3600 keeps the set fresh");
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_then_outage_then_recovery() {
        let fake = Fake::default();
        fake.set(json!({"keys": [jwk("a")]}), None, true);
        let validator = validator(&fake, Duration::from_millis(200));
        // Nothing cached and the issuer down: 503 (I8), one attempt per interval.
        for _ in 0..3 {
            let err = outcome(&validator, Some("a")).await.unwrap_err();
            assert!(
                matches!(err, AuthError::ValidationUnavailable { .. }),
                "{err:?}"
            );
        }
        assert_eq!(fake.fetches(), 1);
        assert!(validator.refresh().await.is_err());

        fake.set(json!({"keys": [jwk("a")]}), None, false);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(outcome(&validator, Some("a")).await.is_ok());
        // A token without kid is verified by the key of its algorithm.
        assert!(outcome(&validator, None).await.is_ok());

        // Rotation: "b" appears; its first token refetches once.
        fake.set(json!({"keys": [jwk("a"), jwk("b")]}), None, false);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let before = fake.fetches();
        assert!(outcome(&validator, Some("b")).await.is_ok());
        assert_eq!(fake.fetches(), before + 1);
        // Still unknown after a refetch: 401 (I4), and no second fetch within the interval.
        let err = outcome(&validator, Some("c")).await.unwrap_err();
        assert_eq!(err, AuthError::InvalidToken(TokenRejection::UnknownKey));
        assert_eq!(fake.fetches(), before + 1);
    }

    /// A key published right after a scheduled fetch verifies at once: only fetches for
    /// unknown `kid`s count against the refetch interval.
    #[tokio::test(start_paused = true)]
    async fn a_newly_published_key_works_at_once() {
        let fake = Fake::default();
        fake.set(json!({"keys": [jwk("a")]}), Some("max-age=3600"), false);
        let validator = validator(&fake, Duration::from_secs(10));
        assert!(validator.refresh().await.is_ok());
        assert_eq!(fake.fetches(), 1);

        // Rotated a second later: the first token signed with "b" makes one fetch.
        tokio::time::advance(Duration::from_secs(1)).await;
        fake.set(
            json!({"keys": [jwk("a"), jwk("b")]}),
            Some("max-age=3600"),
            false,
        );
        assert!(outcome(&validator, Some("b")).await.is_ok());
        assert_eq!(fake.fetches(), 2);

        // A forged kid right after that is refused without another fetch (row I4)…
        let err = outcome(&validator, Some("x")).await.unwrap_err();
        assert_eq!(err, AuthError::InvalidToken(TokenRejection::UnknownKey));
        assert_eq!(fake.fetches(), 2);
        // …and fetches once the interval since the last unknown-kid fetch has passed.
        tokio::time::advance(Duration::from_secs(10)).await;
        let err = outcome(&validator, Some("x")).await.unwrap_err();
        assert_eq!(err, AuthError::InvalidToken(TokenRejection::UnknownKey));
        assert_eq!(fake.fetches(), 3);
    }

    /// After an outage, the keys are fetched again within the failure backoff (1 s), not the
    /// refetch interval.
    #[tokio::test(start_paused = true)]
    async fn recovers_from_an_outage_within_a_second() {
        let fake = Fake::default();
        fake.set(json!({"keys": [jwk("a")]}), None, true);
        let validator = validator(&fake, Duration::from_secs(10));
        let err = outcome(&validator, Some("a")).await.unwrap_err();
        assert_eq!(
            err,
            AuthError::ValidationUnavailable {
                retry_after: Duration::from_secs(1)
            }
        );
        // Within the backoff: no second attempt.
        assert!(outcome(&validator, Some("a")).await.is_err());
        assert_eq!(fake.fetches(), 1);
        fake.set(json!({"keys": [jwk("a")]}), None, false);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(outcome(&validator, Some("a")).await.is_ok());
        assert_eq!(fake.fetches(), 2);
    }

    #[test]
    fn building_requires_an_issuer_and_asymmetric_algorithms() {
        let fake = Fake::default();
        let builder = || JwksValidator::<StandardClaims>::builder("https://i.test/jwks");
        let no_issuer = builder().client(fake.client()).build_lazy();
        assert_eq!(no_issuer.unwrap_err(), SourceError::NoIssuer);
        let hmac = builder()
            .client(fake.client())
            .policy(ClaimsPolicy::new().issuer(ISSUER))
            .algorithms(&[Algorithm::HS256])
            .build_lazy();
        assert_eq!(hmac.unwrap_err(), SourceError::Algorithms);
        let relative = JwksValidator::<StandardClaims>::builder("/jwks").build_lazy();
        assert_eq!(relative.unwrap_err(), SourceError::InvalidUrl("jwks_uri"));
        let empty_audience = builder()
            .client(fake.client())
            .policy(ClaimsPolicy::new().issuer(ISSUER))
            .audience("")
            .build_lazy();
        assert_eq!(
            empty_audience.unwrap_err(),
            SourceError::Policy(PolicyError::EmptyAudience)
        );
        // Discovery names the issuer itself.
        assert!(
            JwksValidator::<StandardClaims>::discover(ISSUER)
                .client(fake.client())
                .build_lazy()
                .is_ok()
        );
    }

    #[test]
    fn judges_each_jwk_alone() {
        let rsa = json!({"kty": "RSA", "kid": "r", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let ec = json!({"kty": "EC", "kid": "e", "crv": "P-256", "alg": "ES256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let enc = json!({"kty": "RSA", "kid": "x", "use": "enc", "n": rsa["n"], "e": "AQAB"});
        let bogus = json!({"kty": "OKP", "crv": "X448", "kid": "b", "x": "AAAA"});
        let unknown = json!({"kty": "whatever"});
        let keys = usable_keys(
            &[rsa.clone(), ec.clone(), enc, bogus, unknown],
            &[Algorithm::RS256, Algorithm::ES256],
        );
        let kids: Vec<_> = keys
            .iter()
            .map(|k| (k.kid().unwrap().to_owned(), k.algorithms().to_vec()))
            .collect();
        assert_eq!(
            kids,
            vec![
                ("r".to_owned(), vec![Algorithm::RS256]),
                ("e".to_owned(), vec![Algorithm::ES256])
            ]
        );
        // An EC key named for ES256 is not usable when only RS256 is allowed; an RSA key without
        // `alg` maps to the RSA members of the allow-list only.
        let keys = usable_keys(&[rsa, ec], &[Algorithm::RS256, Algorithm::PS256]);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithms(), &[Algorithm::RS256, Algorithm::PS256]);
    }
}
