//! Where the user × provider links live: the [`TokenStore`] trait and the in-memory
//! [`MemoryStore`].
//!
//! A link is one user's grant at one third-party provider: an access token, its expiry, usually a
//! refresh token, the granted scopes, and a mark set when the grant is gone and the user has to
//! connect again. It is keyed by [`LinkKey`].
//!
//! # Several replicas
//!
//! Providers that rotate refresh tokens revoke the whole grant when an old refresh token is
//! replayed (RFC 9700 §4.14), so two replicas refreshing the same link at once can log the user
//! out. A store shared between replicas therefore offers a per-key [lock](TokenStore::lock):
//! [`RefreshAndRetry`](super::refresh::RefreshAndRetry) takes it, *reloads* the link, and only
//! refreshes when the access token is still the one that was rejected — otherwise another replica
//! already refreshed and its token is used instead. Within one process, refreshes of a key are
//! additionally coalesced into a single flight, so the store sees one lock per burst.
//!
//! A store must never lose a refresh token: [`save`](TokenStore::save) is only called with a
//! record that carries the newest refresh token (the rotated one, or the previous one when the
//! provider did not rotate), and no failure path removes it. When a save fails after a
//! rotation, [`RefreshAndRetry`](super::refresh::RefreshAndRetry) uses the refreshed link
//! anyway, keeps it in memory (in place of the stale stored record, so the revoked refresh token
//! is never sent again from this process) and writes it back later.

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    future::{Future, Ready, ready},
    sync::atomic::{AtomicU64, Ordering},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

/// A token (access or refresh) whose [`Debug`](fmt::Debug) output is redacted.
///
/// It has no `Display`: reading the secret takes an explicit [`expose_secret`](Self::expose_secret).
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(Arc<str>);

impl TokenSecret {
    /// Wraps a token.
    pub fn new(secret: impl Into<Arc<str>>) -> Self {
        Self(secret.into())
    }

    /// The token itself. Keep it out of logs.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl From<String> for TokenSecret {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl From<&str> for TokenSecret {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

/// Identifies one user's link to one provider. The handler puts it into the upstream request's
/// extensions; [`RefreshAndRetry`](super::refresh::RefreshAndRetry) reads it from there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    user: Arc<str>,
    provider: Arc<str>,
}

impl LinkKey {
    /// The link of `user` (a stable user identifier, such as the `sub` claim) at `provider`.
    pub fn new(user: impl Into<Arc<str>>, provider: impl Into<Arc<str>>) -> Self {
        Self {
            user: user.into(),
            provider: provider.into(),
        }
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The provider.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

/// The stored state of one link.
///
/// Its `Debug` output shows expiry, scopes and the re-authorization mark, never a token.
#[derive(Clone, Debug)]
pub struct Link {
    access_token: TokenSecret,
    expires_at: Option<SystemTime>,
    /// When the access token was issued, when known: caps the refresh skew at half the
    /// token's lifetime.
    issued_at: Option<SystemTime>,
    refresh_token: Option<TokenSecret>,
    scopes: Arc<[String]>,
    needs_reauthorization: bool,
    /// The [`MemoryStore`] generation of the link this record was loaded from (0: not from
    /// one). A save of a record whose link was removed or replaced since it was loaded is
    /// dropped.
    pub(crate) generation: u64,
}

impl Link {
    /// A link holding `access_token`, with no known expiry, no refresh token and no scopes.
    pub fn new(access_token: impl Into<TokenSecret>) -> Self {
        Self {
            access_token: access_token.into(),
            expires_at: None,
            issued_at: None,
            refresh_token: None,
            scopes: Arc::from(Vec::new()),
            needs_reauthorization: false,
            generation: 0,
        }
    }

    /// Sets the absolute expiry of the access token.
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Sets the expiry of the access token to `lifetime` from now. A lifetime too long to
    /// represent leaves the expiry unknown (the token is then refreshed only when rejected).
    pub fn with_expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_at = SystemTime::now().checked_add(lifetime);
        self
    }

    /// Sets when the access token was issued. With an expiry, it bounds how early the token is
    /// refreshed: never before half its lifetime (see [`refresh_due`](Self::refresh_due)).
    /// Stores that persist links should persist it too.
    pub fn with_issued_at(mut self, issued_at: SystemTime) -> Self {
        self.issued_at = Some(issued_at);
        self
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<TokenSecret>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets the granted scopes.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets or clears the mark that the link needs re-authorization.
    pub fn with_needs_reauthorization(mut self, needs: bool) -> Self {
        self.needs_reauthorization = needs;
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &TokenSecret {
        &self.access_token
    }

    /// When the access token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// When the access token was issued, if known.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
    }

    /// The refresh token, if the provider issued one.
    pub fn refresh_token(&self) -> Option<&TokenSecret> {
        self.refresh_token.as_ref()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether the link was marked as needing re-authorization (the grant is gone: the user must
    /// go through the connect flow again). A marked link is not used until it is replaced.
    pub fn needs_reauthorization(&self) -> bool {
        self.needs_reauthorization
    }

    /// Whether the access token expires within `skew` of `now` (or already has).
    pub fn expires_within(&self, skew: Duration, now: SystemTime) -> bool {
        self.expires_at
            .is_some_and(|at| at.duration_since(now).map_or(true, |left| left <= skew))
    }

    /// Whether the access token should be refreshed ahead of its expiry at `now`: it expires
    /// within `skew`, capped at half its lifetime when [`issued_at`](Self::issued_at) is known
    /// — so that a token living no longer than the skew is not refreshed on every use.
    pub fn refresh_due(&self, skew: Duration, now: SystemTime) -> bool {
        self.expires_within(self.effective_skew(skew), now)
    }

    /// `skew`, capped at half the token's lifetime when that is known.
    pub fn effective_skew(&self, skew: Duration) -> Duration {
        match (self.issued_at, self.expires_at) {
            (Some(issued), Some(expires)) => expires
                .duration_since(issued)
                .map_or(Duration::ZERO, |lifetime| skew.min(lifetime / 2)),
            _ => skew,
        }
    }

    /// Whether the access token has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Storage for user × provider links, shared by every request (and possibly every replica).
///
/// [`load`](Self::load) is on every request's path, so its future is a named type (no boxing
/// for stores that don't need it); the other methods are only used while refreshing.
///
/// # Locking
///
/// [`lock`](Self::lock) serializes refreshes of one key. A store shared between processes must
/// make it exclusive across them (with an expiry, in case a holder dies); the guard is released
/// by [`unlock`](Self::unlock) — or by dropping it, for stores where that suffices. Holders
/// reload the link after locking and write it back with [`save`](Self::save) before unlocking.
pub trait TokenStore: Clone + Send + Sync + 'static {
    /// The store's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The future of [`load`](Self::load).
    type Load: Future<Output = Result<Option<Link>, Self::Error>> + Send + 'static;

    /// Proof of holding the per-key lock.
    type Guard: Send + 'static;

    /// The current state of a link, or `None` when the user never connected it.
    fn load(&self, key: &LinkKey) -> Self::Load;

    /// Takes the per-key refresh lock, waiting for it if needed.
    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<Self::Guard, Self::Error>> + Send;

    /// Stores the state of a link, replacing the previous one.
    fn save(
        &self,
        key: &LinkKey,
        token: Link,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Releases the per-key lock. The default drops the guard.
    fn unlock(&self, guard: Self::Guard) -> impl Future<Output = ()> + Send {
        drop(guard);
        ready(())
    }
}

/// The default [`TokenStore`]: links in this process's memory, locks per key.
///
/// Cheap to clone; clones share the links.
///
/// ```
/// use tower_bearer::upstream::store::{LinkKey, MemoryStore, Link};
/// use std::time::Duration;
///
/// let store = MemoryStore::new();
/// let key = LinkKey::new("user-1", "github");
/// store.insert(
///     key.clone(),
///     Link::new("at-secret")
///         .with_refresh_token("rt-secret")
///         .with_expires_in(Duration::from_secs(3600)),
/// );
/// assert!(store.get(&key).is_some());
/// assert!(!format!("{:?}", store.get(&key)).contains("secret"));
/// ```
///
/// [`remove`](Self::remove) and [`insert`](Self::insert) win over a refresh in flight: the
/// refresh's write of a link that was removed or replaced since it was loaded is dropped, and
/// the per-link lock survives a removal while anyone holds or waits for it.
#[derive(Clone, Default)]
pub struct MemoryStore {
    links: Arc<Mutex<HashMap<LinkKey, Slot>>>,
    generations: Arc<AtomicU64>,
}

#[derive(Default)]
struct Slot {
    token: Option<Link>,
    /// Changes when the link is inserted, replaced or removed (not when a refresh writes it
    /// back); never reused.
    generation: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a link (for example at the end of the connect flow).
    pub fn insert(&self, key: LinkKey, token: Link) {
        let generation = self.next_generation();
        self.with_links(|links| {
            let slot = links.entry(key).or_default();
            slot.token = Some(token);
            slot.generation = generation;
        });
    }

    /// The stored state of a link.
    pub fn get(&self, key: &LinkKey) -> Option<Link> {
        self.with_links(|links| {
            links.get(key).and_then(|slot| {
                let mut token = slot.token.clone()?;
                token.generation = slot.generation;
                Some(token)
            })
        })
    }

    /// Removes a link (for example when the user disconnects it). A refresh of it in flight
    /// does not bring it back.
    pub fn remove(&self, key: &LinkKey) -> Option<Link> {
        let generation = self.next_generation();
        self.with_links(|links| {
            let slot = links.get_mut(key)?;
            let token = slot.token.take();
            slot.generation = generation;
            // Keep the lock while anyone holds or waits for it, so that a link connected again
            // meanwhile is refreshed under the same lock.
            if Arc::strong_count(&slot.lock) == 1 {
                links.remove(key);
            }
            token
        })
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn with_links<T>(&self, f: impl FnOnce(&mut HashMap<LinkKey, Slot>) -> T) -> T {
        // A panic while holding the lock cannot leave a half-written map entry behind.
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut links)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.with_links(|links| links.len());
        f.debug_struct("MemoryStore").field("links", &len).finish()
    }
}

/// The lock guard of [`MemoryStore`].
pub struct MemoryGuard(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

impl fmt::Debug for MemoryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryGuard")
    }
}

impl TokenStore for MemoryStore {
    type Error = Infallible;
    type Load = Ready<Result<Option<Link>, Infallible>>;
    type Guard = MemoryGuard;

    fn load(&self, key: &LinkKey) -> Self::Load {
        ready(Ok(self.get(key)))
    }

    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<MemoryGuard, Infallible>> + Send {
        let lock = self.with_links(|links| links.entry(key.clone()).or_default().lock.clone());
        async move { Ok(MemoryGuard(lock.lock_owned().await)) }
    }

    /// Writes `token` back unless the link was removed or replaced since `token` was loaded
    /// (then the write is dropped: the removal or the new link wins).
    fn save(
        &self,
        key: &LinkKey,
        token: Link,
    ) -> impl Future<Output = Result<(), Infallible>> + Send {
        self.with_links(|links| match links.get_mut(key) {
            Some(slot) if slot.token.is_some() && slot.generation == token.generation => {
                slot.token = Some(token);
            }
            // Not loaded from this store: an ordinary write, like `insert`.
            _ if token.generation == 0 => {
                let slot = links.entry(key.clone()).or_default();
                slot.token = Some(token);
                slot.generation = self.next_generation();
            }
            _ => tracing::debug!(
                provider = key.provider(),
                "the link was removed or replaced meanwhile; not saving"
            ),
        });
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let token = Link::new("at-secret").with_refresh_token("rt-secret");
        let debug = format!("{token:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn expiry_window() {
        let now = SystemTime::now();
        let token = Link::new("a").with_expires_at(now + Duration::from_secs(30));
        assert!(token.expires_within(Duration::from_secs(60), now));
        assert!(!token.expires_within(Duration::from_secs(10), now));
        assert!(!token.is_expired(now));
        assert!(token.is_expired(now + Duration::from_secs(31)));
        assert!(!Link::new("a").expires_within(Duration::MAX, now));
    }

    #[test]
    fn skew_is_capped_at_half_the_lifetime() {
        let now = SystemTime::now();
        let skew = Duration::from_secs(60);
        // Issued now, lives 30 s: with a 60 s skew it would always be "expiring".
        let short = Link::new("a")
            .with_issued_at(now)
            .with_expires_at(now + Duration::from_secs(30));
        assert_eq!(short.effective_skew(skew), Duration::from_secs(15));
        assert!(!short.refresh_due(skew, now));
        assert!(!short.refresh_due(skew, now + Duration::from_secs(14)));
        assert!(short.refresh_due(skew, now + Duration::from_secs(16)));
        // A long-lived token keeps the configured skew.
        let long = Link::new("a")
            .with_issued_at(now)
            .with_expires_at(now + Duration::from_secs(3600));
        assert_eq!(long.effective_skew(skew), skew);
        // Issue time unknown: the configured skew.
        let unknown = Link::new("a").with_expires_at(now + Duration::from_secs(30));
        assert!(unknown.refresh_due(skew, now));
    }

    #[tokio::test]
    async fn a_removed_link_is_not_resurrected_by_a_refresh_in_flight() {
        let store = MemoryStore::new();
        let key = LinkKey::new("u", "p");
        store.insert(key.clone(), Link::new("a").with_refresh_token("r"));
        let guard = store.lock(&key).await.unwrap();
        let loaded = store.load(&key).await.unwrap().unwrap();
        // The user disconnects while the refresh holds the lock…
        assert!(store.remove(&key).is_some());
        // …and connects again: the new link is refreshed under the same lock.
        store.insert(key.clone(), Link::new("b"));
        let second = tokio::time::timeout(Duration::from_millis(20), store.lock(&key)).await;
        assert!(second.is_err(), "a second lock for the same link");
        // The refresh's write of the old link is dropped.
        store
            .save(&key, loaded.clone().with_needs_reauthorization(true))
            .await
            .unwrap();
        let now = store.get(&key).unwrap();
        assert_eq!(now.access_token().expose_secret(), "b");
        assert!(!now.needs_reauthorization());
        // Removed for good: still not resurrected.
        store.remove(&key);
        store.save(&key, loaded).await.unwrap();
        assert!(store.get(&key).is_none());
        store.unlock(guard).await;
        // A write of a link loaded from this store goes through, and twice in a row.
        store.insert(key.clone(), Link::new("c"));
        let loaded = store.load(&key).await.unwrap().unwrap();
        store
            .save(&key, loaded.clone().with_refresh_token("r2"))
            .await
            .unwrap();
        store
            .save(&key, loaded.with_refresh_token("r3"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&key)
                .unwrap()
                .refresh_token()
                .unwrap()
                .expose_secret(),
            "r3"
        );
    }

    #[tokio::test]
    async fn lock_is_per_key() {
        let store = MemoryStore::new();
        let a = LinkKey::new("u", "a");
        let b = LinkKey::new("u", "b");
        let guard = store.lock(&a).await.unwrap();
        // Another key is not blocked.
        let other = store.lock(&b).await.unwrap();
        drop(other);
        // The same key is.
        let again = tokio::time::timeout(Duration::from_millis(20), store.lock(&a)).await;
        assert!(again.is_err());
        store.unlock(guard).await;
        assert!(store.lock(&a).await.is_ok());
    }
}
