//! A verified-token cache in front of any [`ValidateToken`]: a token seen again is answered from
//! memory instead of being verified (or introspected) again.

use std::{
    fmt,
    future::Future,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use highway::{HighwayHash as _, HighwayHasher, Key};
use pin_project_lite::pin_project;

use super::{TokenExpiry, ValidateToken, Verdict};
use crate::{failure::AuthError, token::BearerToken};

/// Caches the successes of a [`ValidateToken`].
///
/// - **Keyed by a digest, never the token.** Entries are found by a keyed 128-bit digest of the
///   token (HighwayHash, a keyed pseudorandom function built for SIMD) under a random key chosen
///   when the cache is created; the token itself is never stored, so a memory dump of the cache
///   yields no usable credential, and an attacker who does not know the key cannot aim a token
///   at another's entry (a 128-bit collision is out of reach).
/// - **Bounded, in constant time.** At most about [`max_entries`](CachedValidator::max_entries)
///   entries (default 10 000), in a [`quick_cache`] S3-FIFO cache: when full, an insert evicts in
///   O(1) whatever the size — entries seen once go before those seen again, and an expired entry,
///   never hit again, is among the first to go. A hit shares the claims (an [`Arc`]).
/// - **One pass over the token.** [`ValidateBearer`](super::ValidateBearer) asks the cache to
///   [recall](ValidateToken::recall) a token before it checks its syntax: the digest is the only
///   work a hit does on the token.
/// - **Never outlives the token.** An entry lives until the token's `exp` (see [`TokenExpiry`])
///   or for [`max_ttl`](CachedValidator::max_ttl) (default 60 s), whichever comes first, less
///   two ticks of the clock it is timed by (8 ms at Linux's usual 250 Hz: see below); an
///   already expired token is not cached. Only successes are cached: a refused token is checked
///   again every time, so key rotation and outages behave exactly as without the cache.
///
/// # The revocation trade-off
///
/// For self-contained JWTs nothing changes: a JWT is valid until its `exp` whatever the cache
/// does, because a signature cannot be revoked. For *introspected* tokens the cache is a window:
/// a token revoked at the authorization server keeps being accepted for up to `max_ttl` after it
/// was last introspected. Keep `max_ttl` as short as your revocation requirements demand (a few
/// seconds still absorbs bursts), or do not cache introspection at all.
///
/// ```
/// use std::time::Duration;
/// use jsonwebtoken::Algorithm;
/// use tower_bearer::validate::{CachedValidator, ClaimsPolicy, JwtValidator, StandardClaims, VerificationKey};
///
/// let jwt = JwtValidator::<StandardClaims>::builder()
///     .key(VerificationKey::hmac(b"an hmac secret of at least 32 bytes!", &[Algorithm::HS256]).unwrap())
///     .policy(ClaimsPolicy::new().issuer("https://issuer.example"))
///     .build()
///     .unwrap();
/// // Use `validator` wherever a `ValidateToken` goes, e.g. `ValidateBearerLayer::new(validator, emitter)`.
/// let validator = CachedValidator::new(jwt).max_entries(50_000).max_ttl(Duration::from_secs(300));
/// # let _ = validator;
/// ```
pub struct CachedValidator<V: ValidateToken> {
    inner: V,
    store: Arc<Store<V::Claims>>,
}

impl<V: ValidateToken + Clone> Clone for CachedValidator<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: self.store.clone(),
        }
    }
}

impl<V: ValidateToken + fmt::Debug> fmt::Debug for CachedValidator<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedValidator")
            .field("inner", &self.inner)
            .field("entries", &self.store.entries.len())
            .field("max_entries", &self.store.max_entries)
            .field("max_ttl", &self.store.max_ttl)
            .finish()
    }
}

impl<V: ValidateToken> CachedValidator<V> {
    /// Caches `inner`'s successes: at most 10 000 entries, each for at most 60 s.
    pub fn new(inner: V) -> Self {
        Self {
            inner,
            store: Arc::new(Store::new(10_000, Duration::from_secs(60))),
        }
    }

    /// Bounds the number of entries (at least 1). Resets the cache.
    pub fn max_entries(self, entries: usize) -> Self {
        let max_ttl = self.store.max_ttl;
        Self {
            inner: self.inner,
            store: Arc::new(Store::new(entries, max_ttl)),
        }
    }

    /// Bounds how long an entry lives, whatever the token's `exp`. Resets the cache.
    ///
    /// Every lifetime gives up two ticks of the cache's coarse clock (on Linux: 8 ms at 250 Hz,
    /// 20 ms at 100 Hz), so a `ttl` that short caches nothing.
    pub fn max_ttl(self, ttl: Duration) -> Self {
        let max_entries = self.store.max_entries;
        Self {
            inner: self.inner,
            store: Arc::new(Store::new(max_entries, ttl)),
        }
    }

    /// The number of cached entries (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.store.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry (e.g. after learning of a mass revocation).
    pub fn clear(&self) {
        self.store.entries.clear();
    }

    /// The wrapped validator.
    pub fn get_ref(&self) -> &V {
        &self.inner
    }
}

impl<V> ValidateToken for CachedValidator<V>
where
    V: ValidateToken,
    V::Claims: TokenExpiry,
{
    type Claims = V::Claims;
    type Future = CacheFuture<V::Future, V::Claims>;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<Self::Claims>, Self::Future> {
        let key = match self.store.hit(token.as_bytes()) {
            Ok(claims) => return Verdict::Decided(Ok(claims)),
            Err(key) => key,
        };
        crate::metrics::token_cache(false);
        match self.inner.validate(token) {
            Verdict::Decided(outcome) => {
                if let Ok(claims) = &outcome {
                    self.store.insert(key, claims);
                }
                Verdict::Decided(outcome)
            }
            Verdict::Pending(future) => Verdict::Pending(CacheFuture {
                future,
                store: self.store.clone(),
                key,
            }),
        }
    }

    /// A hit, from the digest alone; a miss is counted by [`validate`](Self::validate), which
    /// follows.
    fn recall(&self, token: &[u8]) -> Option<Arc<Self::Claims>> {
        self.store.hit(token).ok()
    }
}

pin_project! {
    /// A cache miss waiting on the inner validator; its success is remembered.
    pub struct CacheFuture<F, C> {
        #[pin]
        future: F,
        store: Arc<Store<C>>,
        key: u128,
    }
}

impl<F, C> fmt::Debug for CacheFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheFuture").finish_non_exhaustive()
    }
}

impl<F, C> Future for CacheFuture<F, C>
where
    F: Future<Output = Result<Arc<C>, AuthError>>,
    C: TokenExpiry,
{
    type Output = Result<Arc<C>, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.future.poll(cx));
        if let Ok(claims) = &outcome {
            this.store.insert(*this.key, claims);
        }
        Poll::Ready(outcome)
    }
}

/// The digests are uniformly random already: their low bits are the table hash, and the map
/// hashes nothing again.
#[derive(Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// A cached success: the shared claims and when they stop being answered, in nanoseconds of
/// the store's [`Clock`].
struct Entry<C> {
    claims: Arc<C>,
    until: u64,
}

/// A reference count, whatever `C` is (a derive would ask `C: Clone`).
impl<C> Clone for Entry<C> {
    fn clone(&self) -> Self {
        Self {
            claims: self.claims.clone(),
            until: self.until,
        }
    }
}

type Entries<C> = quick_cache::sync::Cache<
    u128,
    Entry<C>,
    quick_cache::UnitWeighter,
    BuildHasherDefault<PassThrough>,
>;

struct Store<C> {
    entries: Entries<C>,
    max_entries: usize,
    max_ttl: Duration,
    /// The digest key, from the OS randomness behind std's `RandomState`.
    key: Key,
    clock: Clock,
}

/// The monotonic clock entries expire by, in nanoseconds (plain integers: cheaper to compare and
/// add than `Duration`s).
///
/// Every hit reads it, so where the OS keeps a coarse clock it reads that one: Linux's
/// `CLOCK_MONOTONIC_COARSE` is the time of the kernel's last timekeeping tick, read from the
/// vDSO without touching the hardware counter (about 10 ns against `Instant::now`'s 25 on the
/// machine the benchmarks ran on, and no system call where the kernel has a vDSO). Its readings
/// lag the precise clock by about a tick, a little more when the tick is late; what a hit
/// compares is two such readings, whose lags differ by less than a tick plus that lateness.
/// Every lifetime gives up twice the clock's resolution for it ([`lag`](Clock::lag)), so no entry
/// outlives its token unless the kernel's timekeeping stalls for longer than a tick — and even
/// then by a few milliseconds, which a JWT's whole-second `exp` and the validator's leeway dwarf.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct Clock {
    lag: u64,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Clock {
    fn new() -> Self {
        use rustix::time::{ClockId, clock_getres};
        let resolution = Self::nanos(clock_getres(ClockId::MonotonicCoarse));
        Self {
            lag: resolution.saturating_mul(2),
        }
    }

    fn now(&self) -> u64 {
        use rustix::time::{ClockId, clock_gettime};
        Self::nanos(clock_gettime(ClockId::MonotonicCoarse))
    }

    fn nanos(time: rustix::time::Timespec) -> u64 {
        match (u64::try_from(time.tv_sec), u32::try_from(time.tv_nsec)) {
            (Ok(seconds), Ok(fraction)) => nanos(Duration::new(seconds, fraction)),
            // Never for a monotonic clock. Were it so, the latest time there is: every entry
            // has expired (fail closed), and nothing is cached.
            _ => u64::MAX,
        }
    }
}

/// Elsewhere, std's monotonic clock, from the store's creation.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
struct Clock {
    start: std::time::Instant,
    lag: u64,
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Clock {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            lag: 0,
        }
    }

    fn now(&self) -> u64 {
        nanos(self.start.elapsed())
    }
}

/// A duration in nanoseconds, saturated (`u64` nanoseconds span 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A random digest key: std seeds each `RandomState` with 128 bits of the operating system's
/// randomness, and its keyed hashes of four distinct words spread them over HighwayHash's 256-bit
/// key, infallibly and without another dependency.
fn random_key() -> Key {
    let state = std::hash::RandomState::new();
    Key([0, 1, 2, 3].map(|word: u64| state.hash_one(0x6b65_7930 + word)))
}

impl<C> Store<C> {
    fn new(max_entries: usize, max_ttl: Duration) -> Self {
        let max_entries = max_entries.max(1);
        Self {
            entries: Entries::with(
                max_entries,
                max_entries as u64,
                quick_cache::UnitWeighter,
                BuildHasherDefault::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            max_entries,
            max_ttl,
            key: random_key(),
            clock: Clock::new(),
        }
    }

    /// The keyed 128-bit digest of a token: a hit's only pass over it. HighwayHash, dispatched
    /// to AVX2, SSE4.1 or NEON at run time, takes a third of SipHash-1-3's instructions on a
    /// JWT-sized token.
    fn digest(&self, token: &[u8]) -> u128 {
        let [low, high] = HighwayHasher::new(self.key).hash128(token);
        u128::from(low) | u128::from(high) << 64
    }
}

impl<C: TokenExpiry> Store<C> {
    /// The claims cached for `token` (a hit, counted), or the key to cache them under.
    fn hit(&self, token: &[u8]) -> Result<Arc<C>, u128> {
        let key = self.digest(token);
        let claims = self.get(key).ok_or(key)?;
        crate::metrics::token_cache(true);
        Ok(claims)
    }

    fn get(&self, key: u128) -> Option<Arc<C>> {
        let entry = self.entries.get(&key)?;
        if entry.until > self.clock.now() {
            return Some(entry.claims);
        }
        self.entries.remove(&key);
        None
    }

    fn insert(&self, key: u128, claims: &Arc<C>) {
        let now = self.clock.now();
        let mut lifetime = self.max_ttl;
        if let Some(exp) = claims.expires_at() {
            // Sub-second precision: the entry must not outlive `exp` by a rounding error.
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            lifetime = lifetime.min(Duration::from_secs(exp).saturating_sub(unix));
        }
        // A hit may read the clock up to its lag late.
        let lifetime = nanos(lifetime).saturating_sub(self.clock.lag);
        if lifetime == 0 {
            return;
        }
        self.entries.insert(
            key,
            Entry {
                claims: claims.clone(),
                // `max_ttl` may be `Duration::MAX`.
                until: now.saturating_add(lifetime),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::validate::StandardClaims;

    fn claims(exp_in: i64) -> Arc<StandardClaims> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Arc::new(StandardClaims {
            exp: Some((now + exp_in) as u64),
            ..Default::default()
        })
    }

    /// Accepts every token with claims expiring in `exp_in` seconds, counting its calls: each
    /// one is a cache miss.
    #[derive(Clone)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        exp_in: i64,
    }

    impl Counting {
        fn new(exp_in: i64) -> Self {
            Self {
                calls: Arc::default(),
                exp_in,
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::Relaxed)
        }
    }

    impl ValidateToken for Counting {
        type Claims = StandardClaims;
        type Future = std::future::Pending<Result<Arc<StandardClaims>, AuthError>>;

        fn validate(&self, _token: &BearerToken) -> Verdict<Arc<StandardClaims>, Self::Future> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Verdict::Decided(Ok(claims(self.exp_in)))
        }
    }

    fn accepted<V: ValidateToken>(validator: &V, token: &BearerToken) -> Arc<V::Claims> {
        match validator.validate(token) {
            Verdict::Decided(Ok(claims)) => claims,
            _ => panic!("the token was not accepted at once"),
        }
    }

    #[test]
    fn digests_are_keyed_and_distinct() {
        let a: Store<StandardClaims> = Store::new(10, Duration::from_secs(60));
        let b: Store<StandardClaims> = Store::new(10, Duration::from_secs(60));
        assert_eq!(a.digest(b"t1"), a.digest(b"t1"));
        assert_ne!(a.digest(b"t1"), a.digest(b"t2"));
        assert_ne!(
            a.digest(b"t1"),
            b.digest(b"t1"),
            "each store has its own key"
        );
    }

    #[test]
    fn a_hit_shares_the_claims_and_skips_the_inner_validator() {
        let inner = Counting::new(3600);
        let cache = CachedValidator::new(inner.clone());
        let token = BearerToken::new("abc.def.ghi").unwrap();
        let first = accepted(&cache, &token);
        let second = accepted(&cache, &token);
        assert_eq!(inner.calls(), 1);
        assert!(Arc::ptr_eq(&first, &second), "a hit is a reference count");
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.is_empty());
        accepted(&cache, &token);
        assert_eq!(inner.calls(), 2, "cleared: verified again");
    }

    /// Through the layer a repeat is recalled before its syntax is checked, in one pass; bytes
    /// the cache never accepted are still checked (row I3) and never reach the validator.
    #[tokio::test]
    async fn the_layer_recalls_repeats_and_still_refuses_malformed_tokens() {
        use tower::{Layer as _, ServiceExt as _, service_fn};

        use crate::{emit::Emitter, validate::ValidateBearerLayer};

        let inner = Counting::new(3600);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler_seen = seen.clone();
        let layer =
            ValidateBearerLayer::new(CachedValidator::new(inner.clone()), Emitter::new("api"));
        let service = layer.layer(service_fn(move |request: http::Request<()>| {
            let claims = request.extensions().get::<Arc<StandardClaims>>().cloned();
            handler_seen.lock().unwrap().extend(claims);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
        }));
        let call = |token: &str| {
            let request = http::Request::builder()
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .unwrap();
            service.clone().oneshot(request)
        };
        for _ in 0..2 {
            assert_eq!(
                call("abc.def.ghi").await.unwrap().status(),
                http::StatusCode::OK
            );
        }
        assert_eq!(inner.calls(), 1, "the repeat was recalled");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(
            Arc::ptr_eq(&seen[0], &seen[1]),
            "the handler got the same claims"
        );
        for malformed in ["abc.def.ghi!", "abc def", "==abc"] {
            let response = call(malformed).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
            assert_eq!(
                response.headers()["www-authenticate"],
                r#"Bearer realm="api", error="invalid_token""#
            );
        }
        assert_eq!(
            inner.calls(),
            1,
            "a malformed token never reaches the validator"
        );
    }

    /// A working set of 0.9 × capacity visited in a cycle: after the first round every token is
    /// answered from the cache, however the digests spread over the cache's shards.
    #[test]
    fn capacity_is_honoured_for_a_cyclic_working_set() {
        const CAPACITY: usize = 10_000;
        let inner = Counting::new(3600);
        let cache = CachedValidator::new(inner.clone()).max_entries(CAPACITY);
        let tokens: Vec<_> = (0..CAPACITY * 9 / 10)
            .map(|i| BearerToken::new(&format!("token-{i}")).unwrap())
            .collect();
        for token in &tokens {
            accepted(&cache, token);
        }
        assert_eq!(inner.calls(), tokens.len(), "the first round misses");
        for _ in 0..3 {
            for token in &tokens {
                accepted(&cache, token);
            }
        }
        let misses = inner.calls() - tokens.len();
        assert_eq!(misses, 0, "misses after warm-up, of {}", 3 * tokens.len());
        assert_eq!(cache.len(), tokens.len());
    }

    #[test]
    fn bounded_when_the_working_set_is_larger() {
        let cache = CachedValidator::new(Counting::new(3600)).max_entries(1_000);
        for i in 0..10_000 {
            accepted(&cache, &BearerToken::new(&format!("token-{i}")).unwrap());
        }
        assert!(cache.len() <= 1_000, "{} entries", cache.len());
    }

    #[test]
    fn never_past_exp() {
        let store: Store<StandardClaims> = Store::new(100, Duration::from_secs(60));
        let expired = store.digest(b"expired");
        store.insert(expired, &claims(-5));
        assert!(
            store.get(expired).is_none(),
            "an expired token is not cached"
        );
        assert_eq!(store.entries.len(), 0);
        let fresh = store.digest(b"fresh");
        store.insert(fresh, &claims(60));
        assert!(store.get(fresh).is_some());
    }

    #[test]
    fn an_entry_expires_with_its_token() {
        // `exp` two seconds away (whole seconds: the entry lives 1–2 s): the entry goes at
        // `exp`, and the token is verified again.
        let inner = Counting::new(2);
        let cache = CachedValidator::new(inner.clone());
        let token = BearerToken::new("abc.def.ghi").unwrap();
        accepted(&cache, &token);
        accepted(&cache, &token);
        assert_eq!(inner.calls(), 1);
        std::thread::sleep(Duration::from_millis(2100));
        accepted(&cache, &token);
        assert_eq!(inner.calls(), 2, "expired: verified again");
    }

    #[test]
    fn ttl_bounds_lifetime() {
        let store: Store<StandardClaims> = Store::new(10, Duration::from_millis(30));
        let key = store.digest(b"t");
        store.insert(key, &claims(3600));
        assert!(store.get(key).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(store.get(key).is_none());
        assert_eq!(store.entries.len(), 0, "an expired entry found is removed");
    }

    #[test]
    fn an_entry_gives_up_the_clocks_lag_and_any_ttl_is_accepted() {
        const MINUTE: u64 = 60_000_000_000;
        let store: Store<StandardClaims> = Store::new(10, Duration::from_secs(60));
        let key = store.digest(b"t");
        let before = store.clock.now();
        store.insert(key, &Arc::new(StandardClaims::default()));
        let after = store.clock.now();
        let until = store.entries.get(&key).expect("cached").until;
        let lag = store.clock.lag;
        assert!(before + MINUTE - lag <= until && until <= after + MINUTE - lag);
        assert!(lag < MINUTE / 600, "a lag of {lag} ns");

        let unbounded: Store<StandardClaims> = Store::new(10, Duration::MAX);
        unbounded.insert(key, &Arc::new(StandardClaims::default()));
        assert!(
            unbounded.get(key).is_some(),
            "no `exp`, no bound: cached for good"
        );
    }
}
