//! Where the user × provider links live: the [`TokenStore`] trait, the in-memory
//! [`MemoryStore`], the persistent `sqlite::SqliteStore` (feature `sqlite`, one process per
//! file) and `redis::RedisStore` (feature `redis`, shared by replicas), their tokens encrypted
//! at rest with a `crypto::Keyring` (feature `encryption`). Connect flows in progress are kept
//! beside the links ([`FlowStore`], [`PendingFlow`]), so that any replica can finish a flow.
//!
//! A link is one user's grant at one third-party provider: an access token, its expiry, usually a
//! refresh token, the granted scopes, and a mark set when the grant is gone and the user has to
//! connect again. It is keyed by [`LinkKey`]: the user (scoped by the issuer of its identity when
//! several issuers are accepted, see [`LinkKey::for_subject`]) and the provider.
//!
//! # The contract every store keeps
//!
//! - **Versions.** Every stored link carries a [version](Link::version), set by the store when
//!   it [`load`](TokenStore::load)s it. [`insert`](TokenStore::insert) (a new link, for example
//!   at the end of the connect flow) gives the link a version never used before for that key,
//!   and [`remove`](TokenStore::remove) ends it. [`save`](TokenStore::save) writes *only over
//!   the version it was loaded with* and says whether it did ([`Saved`]): so a re-link or an
//!   unlink always wins over a refresh that started before it, in every store. A save does not
//!   change the version: saves of one link are serialized by the lock.
//! - **Locking.** [`lock`](TokenStore::lock) serializes refreshes of one key. Holders reload the
//!   link after locking, write it back with `save` and unlock.
//! - **Never lose a refresh token.** `save` is only called with a record that carries the newest
//!   refresh token (the rotated one, or the previous one when the provider did not rotate), and
//!   no failure path removes it. When a save fails after a rotation,
//!   [`RefreshAndRetry`](super::refresh::RefreshAndRetry) uses the refreshed link anyway, keeps
//!   it in memory (in place of the stale stored record, so the revoked refresh token is never
//!   sent again from this process) and writes it back later — holding the link's lock until it
//!   is written, so that no other replica refreshes from the stale record either.
//! - **Secrets.** Tokens never appear in `Debug` output; persistent stores keep them encrypted
//!   at rest in the versioned record format of the module `record` (unless explicitly told not
//!   to, with `Keyring::insecure_plaintext`).
//! - **Failures.** A store that fails is answered with row S1 (`503`, `Retry-After`,
//!   `Proxy-Status: <proxy>; error=proxy_internal_error; details="link_store_unavailable"`),
//!   never 401 or 500.
//!
//! # Several replicas
//!
//! Providers that rotate refresh tokens revoke the whole grant when an old refresh token is
//! replayed (RFC 9700 §4.14), so two replicas refreshing the same link at once can log the user
//! out. A store shared between replicas therefore makes its per-key lock exclusive across them:
//! [`RefreshAndRetry`](super::refresh::RefreshAndRetry) takes it, *reloads* the link, and only
//! refreshes when the access token is still the one that was rejected — otherwise another replica
//! already refreshed and its token is used instead. Within one process, refreshes of a key are
//! additionally coalesced into a single flight, so the store sees one lock per burst.
//!
//! ## The lock's lease
//!
//! A lock shared between processes expires (its holder may die). Its lease must outlast
//! everything a holder does under it, or two replicas refresh at once. A store whose holders
//! renew their lease while they live (`RedisStore` does, every third of it) keeps a short lease
//! — how long a killed holder blocks the link — and this bound holds by renewal. A store with a
//! fixed lease must make it longer than all of it: counted from the moment the lock is granted,
//! with `T` the layer's
//! [`refresh_timeout`](super::refresh::RefreshAndRetryLayer::refresh_timeout):
//!
//! ```text
//! lease > 6 × T            loading the link and the token endpoint's answer: a late answer is
//!                          still awaited, up to 6 × T from the start of the refresh
//!       + 3 × T + 0.15 s   the save attempts, each bounded by T, with pauses between them
//!       + T                unlocking
//!       = 10 × T + 0.15 s  (T = 20 s by default: a lease of at least 4 minutes)
//! ```
//!
//! The background write-back of a link the store did not take locks again for each attempt,
//! each within the same bound.

#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub mod crypto;
mod flow;
#[cfg(any(feature = "sqlite", feature = "redis"))]
mod local;
mod memory;
#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub mod record;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

use std::{
    fmt,
    future::{Future, ready},
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::BytesMut;
use http::HeaderValue;

#[cfg(any(feature = "sqlite", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "redis"))))]
pub use self::local::CachedLoad;
pub use self::{
    flow::{FlowStore, PendingFlow},
    memory::{MemoryGuard, MemoryStore},
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
///
/// The user is a stable identifier. Where callers' tokens come from one issuer, its `sub` claim
/// will do ([`new`](Self::new)); where several issuers are accepted, a `sub` is only unique
/// within its issuer, so key by both ([`for_subject`](Self::for_subject)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    issuer: Option<Arc<str>>,
    user: Arc<str>,
    provider: Arc<str>,
}

impl LinkKey {
    /// The link of `user` (a stable user identifier, such as the `sub` claim) at `provider`.
    pub fn new(user: impl Into<Arc<str>>, provider: impl Into<Arc<str>>) -> Self {
        Self {
            issuer: None,
            user: user.into(),
            provider: provider.into(),
        }
    }

    /// The link at `provider` of the user whose tokens `issuer` issues with the `sub` claim
    /// `subject`: a `sub` of one issuer never collides with the same `sub` of another. An empty
    /// issuer is no issuer ([`new`](Self::new)).
    pub fn for_subject(
        issuer: impl Into<Arc<str>>,
        subject: impl Into<Arc<str>>,
        provider: impl Into<Arc<str>>,
    ) -> Self {
        let issuer: Arc<str> = issuer.into();
        Self {
            issuer: (!issuer.is_empty()).then_some(issuer),
            user: subject.into(),
            provider: provider.into(),
        }
    }

    /// The issuer that scopes [`user`](Self::user), if the key has one.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The user (within its [`issuer`](Self::issuer), if any).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the key belongs to `user` of `issuer` (as [`TokenStore::list`] selects).
    pub fn is_of(&self, issuer: Option<&str>, user: &str) -> bool {
        self.issuer() == issuer.filter(|issuer| !issuer.is_empty()) && self.user() == user
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
    /// `Bearer <access token>`, made with the link so that each request sending it costs a
    /// reference count (stores hand out clones); `None` when the token cannot be a header
    /// value. Sensitive: its `Debug` output is masked.
    authorization: Option<HeaderValue>,
    expires_at: Option<SystemTime>,
    /// When the access token was issued, when known: caps the refresh skew at half the
    /// token's lifetime.
    issued_at: Option<SystemTime>,
    refresh_token: Option<TokenSecret>,
    scopes: Arc<[String]>,
    needs_reauthorization: bool,
    /// The version of the stored link this record was loaded from (`None`: not loaded).
    version: Option<u64>,
}

impl Link {
    /// A link holding `access_token`, with no known expiry, no refresh token and no scopes.
    pub fn new(access_token: impl Into<TokenSecret>) -> Self {
        let access_token = access_token.into();
        Self {
            authorization: bearer_value(access_token.expose_secret()),
            access_token,
            expires_at: None,
            issued_at: None,
            refresh_token: None,
            scopes: Arc::from(Vec::new()),
            needs_reauthorization: false,
            version: None,
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

    /// Sets the version of the stored link this record is (for [`TokenStore`] implementations:
    /// [`load`](TokenStore::load) sets it, [`save`](TokenStore::save) compares it).
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// The version of the stored link this record was loaded from; `None` for a link not
    /// loaded from a store. [`save`](TokenStore::save) writes only over this version.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The same link, with the version of `other` (the record it replaces).
    pub(crate) fn versioned_as(mut self, other: &Link) -> Self {
        self.version = other.version;
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &TokenSecret {
        &self.access_token
    }

    /// The access token and `Bearer <access token>` as a sensitive header value (`None` if the
    /// token cannot be sent in a header), moved out of a link loaded for one request: no
    /// reference count taken and given back per request.
    pub(crate) fn into_credentials(self) -> (TokenSecret, Option<HeaderValue>) {
        (self.access_token, self.authorization)
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

/// `Bearer <token>`, marked sensitive; `None` if `token` cannot be a header value.
fn bearer_value(token: &str) -> Option<HeaderValue> {
    const BEARER: &[u8] = b"Bearer ";
    // Exactly sized: `freeze` then keeps the one allocation.
    let mut value = BytesMut::with_capacity(BEARER.len() + token.len());
    value.extend_from_slice(BEARER);
    value.extend_from_slice(token.as_bytes());
    let mut value = HeaderValue::from_maybe_shared(value.freeze()).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// What [`TokenStore::save`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Saved {
    /// The link was written.
    Written,
    /// Not written: the stored link is no longer the version the record was loaded with (it
    /// was removed, or replaced by [`insert`](TokenStore::insert)), or there never was one.
    Superseded,
}

/// Storage for user × provider links, shared by every request (and possibly every replica).
/// See the [module docs](self) for the contract every store keeps.
///
/// [`load`](Self::load) is on every request's path, so its future is a named type (no boxing
/// for stores that don't need it); the other methods are used while refreshing, connecting and
/// listing.
///
/// # Locking
///
/// [`lock`](Self::lock) serializes refreshes of one key. A store shared between processes must
/// make it exclusive across them, with a lease (see the [module docs](self#the-locks-lease));
/// the guard is released by [`unlock`](Self::unlock) — or by dropping it, for stores where that
/// suffices. Holders reload the link after locking and write it back with [`save`](Self::save)
/// before unlocking.
pub trait TokenStore: Clone + Send + Sync + 'static {
    /// The store's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The future of [`load`](Self::load).
    type Load: Future<Output = Result<Option<Link>, Self::Error>> + Send + 'static;

    /// Proof of holding the per-key lock.
    type Guard: Send + 'static;

    /// The current state of a link, with its [version](Link::version), or `None` when the user
    /// never connected it (or removed it).
    fn load(&self, key: &LinkKey) -> Self::Load;

    /// Takes the per-key refresh lock, waiting for it if needed.
    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<Self::Guard, Self::Error>> + Send;

    /// Writes `link` over the stored link if that is still the [version](Link::version) `link`
    /// was loaded with; otherwise (removed, replaced, or `link` not loaded from this store)
    /// writes nothing and answers [`Saved::Superseded`].
    fn save(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<Saved, Self::Error>> + Send;

    /// Stores a new link (for example at the end of the connect flow), replacing any previous
    /// one whole, under a version never used before for `key`: a refresh of the previous link
    /// still in flight does not write over it. Returns the new version.
    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Removes a link (for example when the user disconnects it); whether there was one. A
    /// refresh of it in flight does not bring it back.
    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Every link of `user` (of `issuer`, when the keys carry one: see
    /// [`LinkKey::for_subject`]), in no particular order.
    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, Self::Error>> + Send;

    /// Releases the per-key lock. The default drops the guard.
    fn unlock(&self, guard: Self::Guard) -> impl Future<Output = ()> + Send {
        drop(guard);
        ready(())
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

    #[test]
    fn keys_of_different_issuers_do_not_collide() {
        let a = LinkKey::for_subject("https://a.example", "123", "github");
        let b = LinkKey::for_subject("https://b.example", "123", "github");
        assert_ne!(a, b);
        assert_ne!(a, LinkKey::new("123", "github"));
        assert_eq!(
            LinkKey::for_subject("", "123", "github"),
            LinkKey::new("123", "github")
        );
        assert!(a.is_of(Some("https://a.example"), "123"));
        assert!(!a.is_of(None, "123"));
        assert!(LinkKey::new("123", "x").is_of(Some(""), "123"));
    }
}
