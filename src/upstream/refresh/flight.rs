//! Single-flight refreshes: one refresh per key at a time in this process, serialized across
//! processes by the store's lock, and finished even if the request that started it goes away.
//!
//! # Bounded
//!
//! Each request waits for a refresh at most the layer's refresh timeout; past it, it fails as
//! unavailable (row U7). The refresh itself shares one deadline (the same timeout) for waiting
//! for the store's lock and loading the link — with the stored tokens left as they were when it
//! passes. The token endpoint, though, is awaited longer (up to [`ANSWER_GRACE`] refresh
//! timeouts), the lock held: a provider that rotates refresh tokens has retired the old one
//! once it got the request, so its answer must be stored even when it comes late. Once the
//! token endpoint has answered, the answer is never thrown away: writing it back is not cut
//! short (each write attempt is bounded on its own).
//!
//! # A rotated refresh token is never dropped
//!
//! A provider that rotates refresh tokens has revoked the old one by the time it answers
//! (RFC 9700 §4.14), so a refreshed link the store does not take (it is briefly down) must not
//! be lost. After a few quick attempts, the refreshed link is
//!
//! - handed to the requests waiting for it anyway (its access token is good);
//! - kept in this process's memory for that key, and used instead of the stale stored record
//!   (the one it was refreshed from) — by every request, and by the next refresh, which thus
//!   never replays the revoked refresh token;
//! - written back in the background, a bounded number of times, *still holding the link's lock*
//!   — so that no other replica sharing the store reloads the stale record and presents the
//!   spent refresh token — and again under the lock by the next refresh of the key. Meanwhile
//!   this process answers from the kept link without waiting for the lock; other replicas wait
//!   (and answer U7 past their refresh timeout) rather than replay.
//!
//! The kept record is dropped once it is written, or as soon as the store holds anything else
//! than the record it was refreshed from (the link was connected again, or removed).
//!
//! A new refresh token in an answer that cannot be used otherwise (no access token, not a
//! bearer token) is stored the same way, with the old access token and no mark. So is a
//! re-authorization mark: forgotten, it would let every later request present the dead refresh
//! token again.

use std::{
    any::Any,
    collections::{HashMap, HashSet},
    future::{Future, ready},
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;

use super::{ANSWER_GRACE, Shared};
use crate::upstream::{
    grant::{GrantError, Refresher},
    store::{Link, LinkKey, Saved, TokenSecret, TokenStore},
};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How often a link is saved before it is kept in memory instead.
const SAVE_ATTEMPTS: u32 = 3;
/// How often a link the store did not take is written back in the background.
const WRITE_BACK_ATTEMPTS: u32 = 8;
/// The first pause between those attempts; it doubles each time, up to [`WRITE_BACK_MAX_DELAY`].
const WRITE_BACK_DELAY: Duration = Duration::from_millis(200);
const WRITE_BACK_MAX_DELAY: Duration = Duration::from_secs(30);

/// Why a refresh gave no token. Cloned to every request waiting on the flight.
#[derive(Clone, Debug)]
pub(crate) enum RefreshFailure {
    NotConnected,
    Marked,
    NoRefreshToken,
    Grant(GrantError),
    Store(Arc<dyn std::error::Error + Send + Sync>),
    /// The store's lock, the store or the token endpoint did not answer within the refresh
    /// timeout.
    TimedOut,
    /// The refreshing task ended without an answer (it panicked, or the runtime shut down).
    Aborted,
}

impl RefreshFailure {
    /// Whether the failure says nothing against the token (an outage, a timeout, our own
    /// configuration): a still-valid token may be used meanwhile.
    pub(crate) fn is_passing(&self) -> bool {
        match self {
            Self::Grant(error) => !error.needs_reauthorization(),
            Self::Store(_) | Self::TimedOut | Self::Aborted => true,
            Self::NotConnected | Self::Marked | Self::NoRefreshToken => false,
        }
    }
}

pub(crate) type Outcome = Result<Link, RefreshFailure>;

/// The refreshes in flight, by key; the keys whose refresh ahead of expiry failed recently;
/// the refreshed links the store did not take, and the locks held until they are written back.
#[derive(Default)]
pub(crate) struct Flights {
    flying: Mutex<HashMap<LinkKey, watch::Receiver<Option<Outcome>>>>,
    cooling: Mutex<HashMap<LinkKey, Instant>>,
    unsaved: Mutex<HashMap<LinkKey, Unsaved>>,
    /// `unsaved.len()`, read without locking on every request.
    unsaved_len: AtomicUsize,
    /// The store's lock of each key with a link kept unsaved (a `TokenStore::Guard`), held
    /// between write-back attempts: taken by whoever works on the key next.
    parked: Mutex<HashMap<LinkKey, Box<dyn Any + Send>>>,
    /// The keys whose kept link a background task is writing back.
    writing_back: Mutex<HashSet<LinkKey>>,
}

/// A refreshed link the store did not take, and the stored record it replaces.
struct Unsaved {
    base_version: Option<u64>,
    base_access: TokenSecret,
    base_refresh: Option<TokenSecret>,
    token: Link,
}

impl Flights {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<LinkKey, watch::Receiver<Option<Outcome>>>) -> T,
    ) -> T {
        f(&mut self.flying.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether a refresh ahead of expiry of `key` failed recently (so the still-valid token
    /// is used without asking the token endpoint on every request).
    pub(crate) fn cooling(&self, key: &LinkKey) -> bool {
        let mut cooling = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
        if cooling.is_empty() {
            return false;
        }
        let now = Instant::now();
        cooling.retain(|_, until| *until > now);
        cooling.contains_key(key)
    }

    /// Records that a refresh ahead of expiry of `key` failed: don't try again for `after`.
    pub(crate) fn cool_down(&self, key: &LinkKey, after: Duration) {
        let Some(until) = Instant::now().checked_add(after) else {
            return;
        };
        let mut cooling = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
        cooling.insert(key.clone(), until);
    }

    fn with_unsaved<T>(&self, f: impl FnOnce(&mut HashMap<LinkKey, Unsaved>) -> T) -> T {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut unsaved);
        self.unsaved_len.store(unsaved.len(), Ordering::Release);
        result
    }

    /// The refreshed link kept in memory for `key` when `stored` is still the record it was
    /// refreshed from (the store did not take the refresh); `None` otherwise, forgetting a kept
    /// link the store has moved on from.
    pub(crate) fn newer_than(&self, key: &LinkKey, stored: &Link) -> Option<Link> {
        if self.unsaved_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.with_unsaved(|unsaved| {
            let kept = unsaved.get(key)?;
            if kept.base_version == stored.version()
                && kept.base_access == *stored.access_token()
                && kept.base_refresh.as_ref() == stored.refresh_token()
            {
                // Written back over `stored`.
                Some(kept.token.clone().versioned_as(stored))
            } else {
                unsaved.remove(key);
                None
            }
        })
    }

    /// Keeps `token`, refreshed from `base`, which the store did not take.
    fn keep_unsaved(&self, key: &LinkKey, base: &Link, token: Link) {
        self.with_unsaved(|unsaved| {
            unsaved.insert(
                key.clone(),
                Unsaved {
                    base_version: base.version(),
                    base_access: base.access_token().clone(),
                    base_refresh: base.refresh_token().cloned(),
                    token,
                },
            )
        });
    }

    /// Forgets the kept link of `key` whose access token is `access` (it was written back).
    fn saved(&self, key: &LinkKey, access: &TokenSecret) {
        if self.unsaved_len.load(Ordering::Acquire) == 0 {
            return;
        }
        self.with_unsaved(|unsaved| {
            if unsaved
                .get(key)
                .is_some_and(|kept| kept.token.access_token() == access)
            {
                unsaved.remove(key);
            }
        });
    }

    /// Forgets the kept link of `key` (the link was removed).
    fn forget(&self, key: &LinkKey) {
        self.with_unsaved(|unsaved| unsaved.remove(key));
    }

    /// The refreshed link kept in memory for `key`, whatever the store holds.
    fn kept(&self, key: &LinkKey) -> Option<Link> {
        if self.unsaved_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.with_unsaved(|unsaved| unsaved.get(key).map(|kept| kept.token.clone()))
    }

    /// Keeps the store's lock of `key` held, for whoever works on the key next.
    fn park<G: Send + 'static>(&self, key: &LinkKey, guard: G) {
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), Box::new(guard));
    }

    /// Takes the held lock of `key`, if one is parked.
    fn unpark<G: 'static>(&self, key: &LinkKey) -> Option<G> {
        let parked = self
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)?;
        // One layer, one store: the guard is always of its type.
        parked.downcast::<G>().ok().map(|guard| *guard)
    }

    /// Claims the write-back of `key`'s kept link; `false` if a task already has it.
    fn start_write_back(&self, key: &LinkKey) -> bool {
        self.writing_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone())
    }

    fn end_write_back(&self, key: &LinkKey) {
        self.writing_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn is_kept(&self, key: &LinkKey) -> bool {
        self.unsaved_len.load(Ordering::Acquire) != 0
            && self.with_unsaved(|unsaved| unsaved.contains_key(key))
    }
}

/// Removes a flight from the map when its leader finishes, panics or is dropped.
struct Landing<'a> {
    flights: &'a Flights,
    key: &'a LinkKey,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.flights.with(|map| map.remove(self.key));
    }
}

/// A token newer than `observed` (the access token that was rejected or is about to expire):
/// joins the refresh of `key` in flight, or starts one.
pub(crate) fn refresh<St, R>(
    shared: Arc<Shared<St, R>>,
    key: LinkKey,
    observed: TokenSecret,
) -> BoxFuture<Outcome>
where
    St: TokenStore,
    R: Refresher,
{
    Box::pin(async move {
        // This request waits until then; the refresh itself may run on (see `refresh_link`).
        let deadline = deadline(shared.refresh_timeout);
        let waiting = crate::metrics::Stopwatch::start();
        let (mut receiver, leader) = shared.flights.with(|map| match map.get(&key) {
            Some(receiver) => (receiver.clone(), None),
            None => {
                let (sender, receiver) = watch::channel(None);
                map.insert(key.clone(), receiver.clone());
                (receiver, Some(sender))
            }
        });
        if let Some(sender) = leader {
            let lead = lead(shared.clone(), key, observed, sender);
            // In a task of its own, so that a rotated refresh token is stored even if every
            // request waiting for it is cancelled.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(lead)),
                Err(_) => lead.await,
            }
        }
        let outcome =
            match tokio::time::timeout_at(deadline, receiver.wait_for(Option::is_some)).await {
                Ok(Ok(outcome)) => outcome.clone().expect("waited for an outcome"),
                Ok(Err(_)) => Err(RefreshFailure::Aborted),
                Err(_) => Err(RefreshFailure::TimedOut),
            };
        crate::metrics::refresh_wait(&outcome, waiting);
        outcome
    })
}

async fn lead<St, R>(
    shared: Arc<Shared<St, R>>,
    key: LinkKey,
    observed: TokenSecret,
    sender: watch::Sender<Option<Outcome>>,
) where
    St: TokenStore,
    R: Refresher,
{
    let outcome = {
        let _landing = Landing {
            flights: &shared.flights,
            key: &key,
        };
        refresh_link(&shared, &key, &observed).await
    };
    crate::metrics::refresh(&outcome);
    // Landed first: whoever asks from now on starts a new flight, which finds the new token in
    // the store (the token it saw differs) and uses it.
    sender.send_replace(Some(outcome));
}

/// `future`, unless `deadline` passes first.
async fn bounded<T>(
    deadline: tokio::time::Instant,
    future: impl Future<Output = T>,
) -> Result<T, RefreshFailure> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| RefreshFailure::TimedOut)
}

fn deadline(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after)
        // Far enough, and representable.
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Every change of a link goes this way: lock → reload → `decide` → save → unlock, so that one
/// writer at a time works from what the store holds now.
///
/// `decide` gets the current link — a link kept in memory over the stored record it replaces,
/// or the stored record — and says what to write, if anything. When it writes nothing, a kept
/// link is written back now that the lock is held.
///
/// Locking and loading end at `deadline`; the later store calls are each bounded on their own
/// (by the refresh timeout), so that a decided write is never cut short by the deadline.
///
/// Returns `decide`'s value, and whether the store did not take a link, which is then kept in
/// memory — with the lock *still held* (parked for the write-back, or for the next refresh of
/// this process, which works under it): until the link is written back, another replica sharing
/// the store must not reload the record it replaced and present its spent refresh token.
async fn under_lock<St, R, T, Fut>(
    shared: &Shared<St, R>,
    key: &LinkKey,
    deadline: tokio::time::Instant,
    decide: impl FnOnce(Link) -> Fut,
) -> Result<(T, bool), RefreshFailure>
where
    St: TokenStore,
    Fut: Future<Output = (Option<Link>, T)>,
{
    let guard = match shared.flights.unpark::<St::Guard>(key) {
        Some(guard) => guard,
        None => match bounded(deadline, shared.store.lock(key)).await {
            Ok(guard) => guard.map_err(store_failure)?,
            Err(timed_out) => {
                tracing::warn!(
                    provider = key.provider(),
                    "the token store's lock was not granted in time"
                );
                return Err(timed_out);
            }
        },
    };
    match reload_and_save(shared, key, deadline, decide).await {
        Ok((value, true)) => {
            shared.flights.park(key, guard);
            Ok((value, true))
        }
        result => {
            unlock(shared, key, guard).await;
            result
        }
    }
}

/// The part of [`under_lock`] done with the lock held: reload → `decide` → save. Whether a link
/// was kept in memory because the store did not take it.
async fn reload_and_save<St, R, T, Fut>(
    shared: &Shared<St, R>,
    key: &LinkKey,
    deadline: tokio::time::Instant,
    decide: impl FnOnce(Link) -> Fut,
) -> Result<(T, bool), RefreshFailure>
where
    St: TokenStore,
    Fut: Future<Output = (Option<Link>, T)>,
{
    let stored = bounded(deadline, shared.store.load(key))
        .await?
        .map_err(store_failure)?
        .ok_or(RefreshFailure::NotConnected)?;
    let kept = shared.flights.newer_than(key, &stored);
    let current = kept.clone().unwrap_or_else(|| stored.clone());
    let (write, value) = decide(current.clone()).await;
    let kept_unsaved = match write.or(kept) {
        Some(write) => save(shared, key, &stored, &current, write).await,
        None => false,
    };
    Ok((value, kept_unsaved))
}

async fn unlock<St: TokenStore, R>(shared: &Shared<St, R>, key: &LinkKey, guard: St::Guard) {
    if tokio::time::timeout(shared.refresh_timeout, shared.store.unlock(guard))
        .await
        .is_err()
    {
        tracing::warn!(
            provider = key.provider(),
            "the token store did not unlock in time"
        );
    }
}

/// Writes `next` over `stored` (of which `current` is the current state), trying a few times:
/// a provider that rotates has revoked the old refresh token already, and a re-authorization
/// mark keeps a dead refresh token from being presented again. When the store does not take
/// it, `next` is kept in memory in place of `stored`; returns whether it was.
async fn save<St: TokenStore, R>(
    shared: &Shared<St, R>,
    key: &LinkKey,
    stored: &Link,
    current: &Link,
    next: Link,
) -> bool {
    match save_retrying(shared, key, &next).await {
        Ok(Saved::Written) => {
            shared.flights.saved(key, current.access_token());
            false
        }
        Ok(Saved::Superseded) => {
            // Removed or connected again since it was loaded: the removal or the new link wins.
            tracing::debug!(
                provider = key.provider(),
                "the link was removed or replaced during its refresh; not writing it back"
            );
            shared.flights.forget(key);
            false
        }
        Err(error) => {
            tracing::error!(
                provider = key.provider(),
                %error,
                marked = next.needs_reauthorization(),
                "could not store the link; keeping it in memory and retrying"
            );
            shared.flights.keep_unsaved(key, stored, next);
            true
        }
    }
}

/// Saves `token`, trying up to [`SAVE_ATTEMPTS`] times, each bounded by the refresh timeout.
async fn save_retrying<St: TokenStore, R>(
    shared: &Shared<St, R>,
    key: &LinkKey,
    token: &Link,
) -> Result<Saved, Arc<dyn std::error::Error + Send + Sync>> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let error: Arc<dyn std::error::Error + Send + Sync> = match tokio::time::timeout(
            shared.refresh_timeout,
            shared.store.save(key, token.clone()),
        )
        .await
        {
            Ok(Ok(saved)) => return Ok(saved),
            Ok(Err(error)) => Arc::new(error),
            Err(elapsed) => Arc::new(elapsed),
        };
        if attempt >= SAVE_ATTEMPTS {
            return Err(error);
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

/// Lock held: reuse a token someone else obtained meanwhile, or refresh.
async fn refresh_link<St, R>(
    shared: &Arc<Shared<St, R>>,
    key: &LinkKey,
    observed: &TokenSecret,
) -> Outcome
where
    St: TokenStore,
    R: Refresher,
{
    // A link the store did not take is written back under the lock, held until then: this
    // process decides from it without waiting.
    if let Some(kept) = shared.flights.kept(key) {
        if kept.needs_reauthorization() {
            return Err(RefreshFailure::Marked);
        }
        if kept.access_token() != observed && !kept.refresh_due(shared.skew, SystemTime::now()) {
            return Ok(kept);
        }
    }
    let hard_cap = deadline(shared.refresh_timeout.saturating_mul(ANSWER_GRACE));
    let deadline = deadline(shared.refresh_timeout);
    let (outcome, kept) = under_lock(shared, key, deadline, |current| async move {
        if current.needs_reauthorization() {
            return (None, Err(RefreshFailure::Marked));
        }
        if current.access_token() != observed
            && !current.refresh_due(shared.skew, SystemTime::now())
        {
            tracing::debug!(
                provider = key.provider(),
                "reusing a token refreshed meanwhile"
            );
            return (None, Ok(current));
        }
        let Some(refresh_token) = current.refresh_token().cloned() else {
            return (Some(mark(current)), Err(RefreshFailure::NoRefreshToken));
        };
        // Past the deadline the waiting requests are answered "unavailable", but the answer
        // is still awaited (up to the hard cap) and stored: the provider may have retired
        // `refresh_token` as soon as it received it.
        let mut answer = pin!(shared.refresher.refresh(&refresh_token));
        let answer = match bounded(deadline, answer.as_mut()).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(
                    provider = key.provider(),
                    "the token endpoint did not answer within the refresh timeout; still waiting for its answer"
                );
                match bounded(hard_cap, answer).await {
                    Ok(answer) => answer,
                    Err(timed_out) => {
                        tracing::error!(
                            provider = key.provider(),
                            "the token endpoint never answered; a refresh token it rotated is lost"
                        );
                        return (None, Err(timed_out));
                    }
                }
            }
        };
        match answer {
            Ok(answer) => {
                let next = answer.apply_to(&current, SystemTime::now());
                shared
                    .flights
                    .cooling
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(key);
                tracing::debug!(
                    provider = key.provider(),
                    rotated = answer.refresh_token().is_some(),
                    "refreshed"
                );
                (Some(next.clone()), Ok(next))
            }
            // Unusable, but the provider rotated: keep the new refresh token, mark nothing.
            Err(GrantError::RefreshTokenRotated {
                error,
                refresh_token,
            }) => {
                tracing::warn!(provider = key.provider(), %error, "refresh failed; keeping the rotated refresh token");
                let next = current.with_refresh_token(refresh_token);
                (Some(next), Err(RefreshFailure::Grant(*error)))
            }
            Err(error) => {
                tracing::warn!(provider = key.provider(), %error, "refresh failed");
                let write = error.needs_reauthorization().then(|| mark(current));
                (write, Err(RefreshFailure::Grant(error)))
            }
        }
    })
    .await?;
    if kept {
        write_back_later(shared.clone(), key.clone());
    }
    outcome
}

/// The link marked as needing re-authorization, everything else (the refresh token included)
/// kept as it is.
fn mark(current: Link) -> Link {
    current.with_needs_reauthorization(true)
}

/// Writes the kept link of `key` back in the background, a bounded number of times, under the
/// lock its refresh parked — so no other replica refreshes from the record it replaces
/// meanwhile — and only over that record; then releases the lock. One task per key.
fn write_back_later<St, R>(shared: Arc<Shared<St, R>>, key: LinkKey)
where
    St: TokenStore,
    R: Send + Sync + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Kept in memory; the next refresh of the key writes it back.
        drop(shared.flights.unpark::<St::Guard>(&key));
        return;
    };
    if !shared.flights.start_write_back(&key) {
        return;
    }
    drop(runtime.spawn(async move {
        let mut delay = WRITE_BACK_DELAY;
        let mut done = false;
        for _ in 0..WRITE_BACK_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(WRITE_BACK_MAX_DELAY);
            let Some(guard) = shared.flights.unpark::<St::Guard>(&key) else {
                // A refresh of this process has the lock: it parks it again if the store still
                // does not take the link.
                if shared.flights.is_kept(&key) {
                    continue;
                }
                done = true;
                break;
            };
            // Deciding nothing writes the kept link back (or forgets it, when the store holds
            // anything else than the record it was refreshed from).
            let deadline = deadline(shared.refresh_timeout);
            match reload_and_save(&shared, &key, deadline, |_| ready((None, ()))).await {
                Ok(((), false)) => {
                    tracing::info!(provider = key.provider(), "kept link written back");
                    unlock(&shared, &key, guard).await;
                    done = true;
                    break;
                }
                // Removed meanwhile: nothing to write back to.
                Err(RefreshFailure::NotConnected) => {
                    shared.flights.forget(&key);
                    unlock(&shared, &key, guard).await;
                    done = true;
                    break;
                }
                Ok(((), true)) | Err(_) => shared.flights.park(&key, guard),
            }
        }
        if !done {
            if let Some(guard) = shared.flights.unpark::<St::Guard>(&key) {
                unlock(&shared, &key, guard).await;
            }
            tracing::error!(
                provider = key.provider(),
                "could not write a kept link back; it is kept in memory until the next refresh"
            );
        }
        shared.flights.end_write_back(&key);
    }));
}

/// Marks the link as needing re-authorization if its access token is still `rejected` (a fresh
/// token the provider refused).
pub(crate) fn mark_rejected<St, R>(
    shared: Arc<Shared<St, R>>,
    key: LinkKey,
    rejected: TokenSecret,
) -> BoxFuture<()>
where
    St: TokenStore,
    R: Send + Sync + 'static,
{
    Box::pin(async move {
        let deadline = deadline(shared.refresh_timeout);
        let marked = under_lock(&shared, &key, deadline, |current| {
            let unchanged = current.access_token() == &rejected && !current.needs_reauthorization();
            ready((unchanged.then(|| mark(current)), ()))
        })
        .await;
        if let Ok(((), true)) = marked {
            write_back_later(shared.clone(), key.clone());
        }
    })
}

fn store_failure<E: std::error::Error + Send + Sync + 'static>(error: E) -> RefreshFailure {
    RefreshFailure::Store(Arc::new(error))
}

#[cfg(test)]
mod tests {
    use std::{
        fmt,
        future::{Ready, ready},
        sync::atomic::{AtomicBool, AtomicUsize},
    };

    use super::*;
    use crate::upstream::{
        grant::{RefresherFn, TokenResponse, refresher_fn},
        refresh::Config,
        store::{MemoryGuard, MemoryStore},
    };

    fn key() -> LinkKey {
        LinkKey::new("user-1", "acme")
    }

    #[derive(Debug)]
    struct Down;

    impl fmt::Display for Down {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the store is down")
        }
    }

    impl std::error::Error for Down {}

    /// A [`MemoryStore`] that counts its locks, and whose saves fail while `down` is set.
    #[derive(Clone, Default)]
    struct TestStore {
        inner: MemoryStore,
        locks: Arc<AtomicUsize>,
        down: Arc<AtomicBool>,
    }

    impl TokenStore for TestStore {
        type Error = Down;
        type Load = Ready<Result<Option<Link>, Down>>;
        type Guard = MemoryGuard;

        fn load(&self, key: &LinkKey) -> Self::Load {
            ready(Ok(self.inner.get(key)))
        }

        fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<MemoryGuard, Down>> + Send {
            self.locks.fetch_add(1, Ordering::SeqCst);
            let lock = self.inner.lock(key);
            async move {
                let Ok(guard) = lock.await;
                Ok(guard)
            }
        }

        fn save(
            &self,
            key: &LinkKey,
            token: Link,
        ) -> impl Future<Output = Result<Saved, Down>> + Send {
            let write = (!self.down.load(Ordering::SeqCst)).then(|| self.inner.save(key, token));
            async move {
                let Ok(saved) = write.ok_or(Down)?.await;
                Ok(saved)
            }
        }

        fn insert(
            &self,
            key: &LinkKey,
            link: Link,
        ) -> impl Future<Output = Result<u64, Down>> + Send {
            ready(Ok(self.inner.insert(key.clone(), link)))
        }

        fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, Down>> + Send {
            ready(Ok(self.inner.remove(key).is_some()))
        }

        fn list(
            &self,
            issuer: Option<&str>,
            user: &str,
        ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, Down>> + Send {
            let list = TokenStore::list(&self.inner, issuer, user);
            async move {
                let Ok(links) = list.await;
                Ok(links)
            }
        }
    }

    type Presented = Arc<Mutex<Vec<String>>>;

    type Answer = BoxFuture<Result<TokenResponse, GrantError>>;

    /// A refresher answering with `answer`, recording the refresh tokens presented.
    fn recording<A>(
        presented: Presented,
        answer: A,
    ) -> RefresherFn<impl Fn(TokenSecret) -> Answer + Clone>
    where
        A: Fn() -> Answer + Clone + Send + Sync + 'static,
    {
        refresher_fn(move |refresh_token: TokenSecret| {
            presented
                .lock()
                .unwrap()
                .push(refresh_token.expose_secret().to_owned());
            answer()
        })
    }

    /// The state of a layer over `store`, refreshing with `refresher`.
    fn shared<R: Refresher>(
        store: TestStore,
        refresh_timeout: Duration,
        refresher: R,
    ) -> Arc<Shared<TestStore, R>> {
        Arc::new(Shared {
            store,
            refresher,
            config: Config {
                provider: Arc::from("acme"),
                connect_url: None,
                skew: Duration::from_secs(60),
                replay_limit: 1024,
                retry_after: Duration::from_secs(5),
                refresh_timeout,
            },
            flights: Arc::default(),
        })
    }

    fn rotated() -> Answer {
        Box::pin(ready(Ok(TokenResponse::new("at-1")
            .with_refresh_token("rt-1")
            .with_expires_in(Duration::from_secs(3600)))))
    }

    /// The stored link of [`key`]: access token, refresh token, whether it is marked.
    fn stored(store: &TestStore) -> (String, Option<String>, bool) {
        let link = store.inner.get(&key()).expect("a link");
        (
            link.access_token().expose_secret().to_owned(),
            link.refresh_token().map(|t| t.expose_secret().to_owned()),
            link.needs_reauthorization(),
        )
    }

    fn link(access: &str, refresh: Option<&str>, marked: bool) -> (String, Option<String>, bool) {
        (access.to_owned(), refresh.map(str::to_owned), marked)
    }

    fn stale_store() -> TestStore {
        let store = TestStore::default();
        store
            .inner
            .insert(key(), Link::new("at-0").with_refresh_token("rt-0"));
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_refreshes_takes_the_stores_lock_once() {
        const REFRESHES: usize = 20;
        let store = stale_store();
        let presented = Presented::default();
        let joined = Arc::new(AtomicUsize::new(0));
        // The token endpoint answers once every refresh has asked.
        let refresher = recording(presented.clone(), {
            let joined = joined.clone();
            move || {
                let joined = joined.clone();
                Box::pin(async move {
                    while joined.load(Ordering::SeqCst) < REFRESHES {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    rotated().await
                })
            }
        });
        let shared = shared(store.clone(), Duration::from_secs(5), refresher);

        let mut flights = tokio::task::JoinSet::new();
        for _ in 0..REFRESHES {
            let refresh = refresh(shared.clone(), key(), TokenSecret::new("at-0"));
            let joined = joined.clone();
            // Counted in the same poll that joins (or starts) the flight.
            flights.spawn(async move {
                joined.fetch_add(1, Ordering::SeqCst);
                refresh.await
            });
        }
        while let Some(outcome) = flights.join_next().await {
            let token = outcome.unwrap().unwrap();
            assert_eq!(token.access_token().expose_secret(), "at-1");
        }

        assert_eq!(store.locks.load(Ordering::SeqCst), 1);
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        assert_eq!(stored(&store), link("at-1", Some("rt-1"), false));
    }

    #[tokio::test]
    async fn a_refresh_the_store_does_not_take_is_kept_and_written_back() {
        let store = stale_store();
        let presented = Presented::default();
        let shared = shared(
            store.clone(),
            Duration::from_secs(5),
            recording(presented.clone(), rotated),
        );
        store.down.store(true, Ordering::SeqCst);

        let token = refresh(shared.clone(), key(), TokenSecret::new("at-0"))
            .await
            .unwrap();

        assert_eq!(token.access_token().expose_secret(), "at-1");
        assert_eq!(stored(&store), link("at-0", Some("rt-0"), false));
        // Kept over the stored record it replaces.
        let stale = store.inner.get(&key()).unwrap();
        let kept = shared.flights.newer_than(&key(), &stale).unwrap();
        assert_eq!(kept.refresh_token().unwrap().expose_secret(), "rt-1");
        // The lock stays held until the link is written back: another replica sharing the
        // store would reload the stale record and present the spent refresh token.
        let other =
            tokio::time::timeout(Duration::from_millis(300), store.inner.lock(&key())).await;
        assert!(
            other.is_err(),
            "the lock was released with the link unsaved"
        );
        // This process answers from the kept link meanwhile, without waiting for the lock.
        let again = refresh(shared.clone(), key(), TokenSecret::new("at-0"))
            .await
            .unwrap();
        assert_eq!(again.access_token().expose_secret(), "at-1");

        store.down.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stored(&store) != link("at-1", Some("rt-1"), false) {
            assert!(Instant::now() < deadline, "never written back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!shared.flights.is_kept(&key()));
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        // Written back: the lock is released.
        let released = tokio::time::timeout(Duration::from_secs(5), store.inner.lock(&key())).await;
        assert!(released.is_ok(), "the lock was never released");
    }

    /// Waits until the stored link of [`key`] is `expected`.
    async fn until_stored(store: &TestStore, expected: (String, Option<String>, bool)) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while stored(store) != expected {
            assert!(Instant::now() < deadline, "{:?}", stored(store));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_late_answer_is_stored_after_the_waiting_requests_were_answered() {
        let store = stale_store();
        let presented = Presented::default();
        // The provider rotates on receipt and answers after the refresh timeout.
        let refresher = recording(presented.clone(), || {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                rotated().await
            })
        });
        let shared = shared(store.clone(), Duration::from_millis(100), refresher);

        let started = Instant::now();
        let outcome = refresh(shared.clone(), key(), TokenSecret::new("at-0")).await;
        assert!(
            matches!(outcome, Err(RefreshFailure::TimedOut)),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(stored(&store), link("at-0", Some("rt-0"), false));

        // The refresh runs on, holding the lock, and stores the answer when it comes.
        until_stored(&store, link("at-1", Some("rt-1"), false)).await;
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);
        assert_eq!(store.locks.load(Ordering::SeqCst), 1);
        let token = refresh(shared, key(), TokenSecret::new("at-0"))
            .await
            .unwrap();
        assert_eq!(token.access_token().expose_secret(), "at-1");
        assert_eq!(*presented.lock().unwrap(), ["rt-0"], "never replayed");
    }

    #[test]
    fn the_refresh_grant_waits_for_an_answer_as_long_as_the_layer_does() {
        assert!(
            crate::upstream::grant::DEFAULT_TIMEOUT
                >= super::super::DEFAULT_REFRESH_TIMEOUT * super::super::ANSWER_GRACE
        );
    }

    /// A token endpoint answering `200` with `body`, and the layer state refreshing through it.
    fn grant_answering(
        store: &TestStore,
        body: &'static str,
    ) -> Arc<Shared<TestStore, impl Refresher>> {
        let endpoint = tower::service_fn(
            move |_: http::Request<http_body_util::Full<bytes::Bytes>>| {
                ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                    http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())),
                )))
            },
        );
        let grant = crate::upstream::grant::RefreshGrant::new(
            crate::http_client::HttpClient::new(endpoint),
            http::Uri::from_static("https://acme.example/token"),
            "client",
        );
        shared(store.clone(), Duration::from_secs(5), grant)
    }

    #[tokio::test]
    async fn a_rotated_refresh_token_in_an_unusable_answer_is_kept() {
        for (body, unusable) in [
            (
                r#"{"access_token":"","token_type":"Bearer","refresh_token":"rt-1"}"#,
                "unparseable",
            ),
            (
                r#"{"token_type":"Bearer","refresh_token":"rt-1"}"#,
                "unparseable",
            ),
            (
                r#"{"access_token":"at-1","token_type":"DPoP","refresh_token":"rt-1"}"#,
                "misconfigured",
            ),
        ] {
            let store = stale_store();
            let shared = grant_answering(&store, body);

            let outcome = refresh(shared, key(), TokenSecret::new("at-0")).await;

            let kind = match outcome {
                Err(RefreshFailure::Grant(GrantError::Unparseable { status })) => {
                    assert_eq!(status, http::StatusCode::OK);
                    "unparseable"
                }
                Err(RefreshFailure::Grant(GrantError::Misconfigured { error, .. })) => {
                    assert_eq!(error, "unsupported_token_type");
                    "misconfigured"
                }
                other => panic!("{body}: {other:?}"),
            };
            assert_eq!(kind, unusable, "{body}");
            // The new refresh token is stored; nothing is marked.
            assert_eq!(stored(&store), link("at-0", Some("rt-1"), false), "{body}");
        }
    }

    #[tokio::test]
    async fn a_mark_the_store_does_not_take_is_kept_and_written_back() {
        let store = stale_store();
        let presented = Presented::default();
        let refresher = recording(presented.clone(), || {
            Box::pin(ready(Err(GrantError::InvalidGrant {
                status: http::StatusCode::BAD_REQUEST,
            })))
        });
        let shared = shared(store.clone(), Duration::from_secs(5), refresher);
        store.down.store(true, Ordering::SeqCst);

        let outcome = refresh(shared.clone(), key(), TokenSecret::new("at-0")).await;
        assert!(
            matches!(
                outcome,
                Err(RefreshFailure::Grant(GrantError::InvalidGrant { .. }))
            ),
            "{outcome:?}"
        );
        assert_eq!(stored(&store), link("at-0", Some("rt-0"), false));

        // Requests see the link as marked…
        let stale = store.inner.get(&key()).unwrap();
        let kept = shared.flights.newer_than(&key(), &stale).expect("kept");
        assert!(kept.needs_reauthorization());
        // …and the dead refresh token is not presented again.
        let outcome = refresh(shared.clone(), key(), TokenSecret::new("at-0")).await;
        assert!(
            matches!(outcome, Err(RefreshFailure::Marked)),
            "{outcome:?}"
        );
        assert_eq!(*presented.lock().unwrap(), ["rt-0"]);

        store.down.store(false, Ordering::SeqCst);
        until_stored(&store, link("at-0", Some("rt-0"), true)).await;
    }

    #[tokio::test]
    async fn a_rejected_fresh_token_mark_the_store_does_not_take_is_kept_and_written_back() {
        let store = stale_store();
        let presented = Presented::default();
        let shared = shared(
            store.clone(),
            Duration::from_secs(5),
            recording(presented.clone(), rotated),
        );
        store.down.store(true, Ordering::SeqCst);

        mark_rejected(shared.clone(), key(), TokenSecret::new("at-0")).await;

        let stale = store.inner.get(&key()).unwrap();
        assert!(!stale.needs_reauthorization());
        let kept = shared.flights.newer_than(&key(), &stale).expect("kept");
        assert!(kept.needs_reauthorization());
        store.down.store(false, Ordering::SeqCst);
        until_stored(&store, link("at-0", Some("rt-0"), true)).await;
        assert!(presented.lock().unwrap().is_empty());
    }
}
