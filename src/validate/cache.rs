//! A verified-token cache in front of any [`ValidateToken`]: a token seen again is answered from
//! memory instead of being verified (or introspected) again.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use pin_project_lite::pin_project;
use siphasher::sip128::{Hasher128, SipHasher13};

use super::{TokenExpiry, ValidateToken, Verdict};
use crate::{failure::AuthError, token::BearerToken};

/// Caches the successes of a [`ValidateToken`].
///
/// - **Keyed by a digest, never the token.** Entries are found by a keyed 128-bit digest of the
///   token (SipHash-1-3-128) under a random key chosen when the cache is created; the token itself is never
///   stored, so a memory dump of the cache yields no usable credential, and an attacker who does
///   not know the key cannot aim a token at another's entry (a 128-bit collision is out of reach).
/// - **Bounded.** At most [`max_entries`](CachedValidator::max_entries) entries (default 10 000);
///   when full, expired entries go first, then those closest to expiry.
/// - **Never outlives the token.** An entry lives until the token's `exp` (see [`TokenExpiry`])
///   or for [`max_ttl`](CachedValidator::max_ttl) (default 60 s), whichever comes first; an
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
            .field("entries", &self.store.len())
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
    pub fn max_ttl(self, ttl: Duration) -> Self {
        let max_entries = self.store.max_entries;
        Self {
            inner: self.inner,
            store: Arc::new(Store::new(max_entries, ttl)),
        }
    }

    /// The number of cached entries (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry (e.g. after learning of a mass revocation).
    pub fn clear(&self) {
        for shard in self.store.shards.iter() {
            lock(shard).clear();
        }
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

    fn validate(&self, token: &BearerToken) -> Verdict<Self::Claims, Self::Future> {
        let key = self.store.digest(token.as_str());
        if let Some(claims) = self.store.get(key) {
            crate::metrics::token_cache(true);
            return Verdict::Decided(Ok(claims));
        }
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
    F: Future<Output = Result<C, AuthError>>,
    C: TokenExpiry + Clone,
{
    type Output = Result<C, AuthError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.future.poll(cx));
        if let Ok(claims) = &outcome {
            this.store.insert(*this.key, claims);
        }
        Poll::Ready(outcome)
    }
}

/// The digests are uniformly random already: use their low bits as the table hash.
#[derive(Default)]
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

type Shard<C> = Mutex<HashMap<u128, Entry<C>, BuildHasherDefault<PassThrough>>>;

struct Entry<C> {
    claims: C,
    until: Instant,
}

struct Store<C> {
    shards: Box<[Shard<C>]>,
    per_shard: usize,
    max_entries: usize,
    max_ttl: Duration,
    /// The digest key, from the OS randomness behind std's `RandomState`.
    key: [u8; 16],
}

/// 128 random bits: std seeds each `RandomState` from the operating system's randomness; two
/// of its keyed hashes make the key without another dependency.
fn random_key() -> [u8; 16] {
    let state = std::hash::RandomState::new();
    let mut key = [0; 16];
    key[..8].copy_from_slice(&state.hash_one(0x6b65_7930_u64).to_le_bytes());
    key[8..].copy_from_slice(&state.hash_one(0x6b65_7931_u64).to_le_bytes());
    key
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C> Store<C> {
    fn new(max_entries: usize, max_ttl: Duration) -> Self {
        let max_entries = max_entries.max(1);
        let shards = (max_entries / 256).clamp(1, 16);
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            per_shard: max_entries.div_ceil(shards),
            max_entries,
            max_ttl,
            key: random_key(),
        }
    }

    /// The keyed 128-bit digest of a token.
    fn digest(&self, token: &str) -> u128 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write(token.as_bytes());
        hasher.finish128().as_u128()
    }

    fn shard(&self, key: u128) -> &Shard<C> {
        &self.shards[(key >> 64) as usize % self.shards.len()]
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

impl<C: Clone + TokenExpiry> Store<C> {
    fn get(&self, key: u128) -> Option<C> {
        let mut shard = lock(self.shard(key));
        let entry = shard.get(&key)?;
        if entry.until > Instant::now() {
            return Some(entry.claims.clone());
        }
        shard.remove(&key);
        None
    }

    fn insert(&self, key: u128, claims: &C) {
        let now = Instant::now();
        let mut lifetime = self.max_ttl;
        if let Some(exp) = claims.expires_at() {
            // Sub-second precision: the entry must not outlive `exp` by a rounding error.
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            lifetime = lifetime.min(Duration::from_secs(exp).saturating_sub(unix));
        }
        if lifetime.is_zero() {
            return;
        }
        let mut shard = lock(self.shard(key));
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, entry| entry.until > now);
            if shard.len() >= self.per_shard
                && let Some(soonest) = shard.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k)
            {
                shard.remove(&soonest);
            }
        }
        shard.insert(
            key,
            Entry {
                claims: claims.clone(),
                until: now + lifetime,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::StandardClaims;

    fn claims(exp_in: i64) -> StandardClaims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        StandardClaims {
            exp: Some((now + exp_in) as u64),
            ..Default::default()
        }
    }

    #[test]
    fn digests_are_keyed_and_distinct() {
        let a: Store<StandardClaims> = Store::new(10, Duration::from_secs(60));
        let b: Store<StandardClaims> = Store::new(10, Duration::from_secs(60));
        assert_eq!(a.digest("t1"), a.digest("t1"));
        assert_ne!(a.digest("t1"), a.digest("t2"));
        assert_ne!(a.digest("t1"), b.digest("t1"), "each store has its own key");
    }

    #[test]
    fn bounded_and_never_past_exp() {
        let store: Store<StandardClaims> = Store::new(100, Duration::from_secs(60));
        for i in 0..1000 {
            store.insert(store.digest(&format!("token{i}")), &claims(60));
        }
        assert!(store.len() <= 100, "{}", store.len());
        let expired = store.digest("expired");
        store.insert(expired, &claims(-5));
        assert!(store.get(expired).is_none());
        let fresh = store.digest("fresh");
        store.insert(fresh, &claims(60));
        assert!(store.get(fresh).is_some());
    }

    #[test]
    fn ttl_bounds_lifetime() {
        let store: Store<StandardClaims> = Store::new(10, Duration::from_millis(30));
        let key = store.digest("t");
        store.insert(key, &claims(3600));
        assert!(store.get(key).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(store.get(key).is_none());
    }
}
