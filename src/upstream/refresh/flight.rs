//! Single-flight refreshes: one refresh per key at a time in this process, serialized across
//! processes by the store's lock, and finished even if the request that started it goes away.
//!
//! # Bounded
//!
//! Waiting for the store's lock, loading the link and the token endpoint's answer share one
//! deadline (the layer's refresh timeout): past it, the refresh fails as unavailable (row U7)
//! and the stored tokens are left as they were. Once the token endpoint has answered, the
//! answer is never thrown away: writing it back is not cut short by the deadline (each write
//! attempt is bounded on its own).
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
//! - written back in the background, a bounded number of times, and again under the lock by
//!   the next refresh of the key.
//!
//! The kept record is dropped once it is written, or as soon as the store holds anything else
//! than the record it was refreshed from (the link was connected again, or removed).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;

use super::Shared;
use crate::upstream::{
    grant::{GrantError, Refresher},
    store::{LinkKey, TokenSecret, TokenStore, UpstreamToken},
};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How often a refreshed link the store did not take is written back in the background.
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

pub(crate) type Outcome = Result<UpstreamToken, RefreshFailure>;

/// The refreshes in flight, by key; the keys whose refresh ahead of expiry failed recently;
/// and the refreshed links the store did not take.
#[derive(Default)]
pub(crate) struct Flights {
    flying: Mutex<HashMap<LinkKey, watch::Receiver<Option<Outcome>>>>,
    cooling: Mutex<HashMap<LinkKey, Instant>>,
    unsaved: Mutex<HashMap<LinkKey, Unsaved>>,
    /// `unsaved.len()`, read without locking on every request.
    unsaved_len: AtomicUsize,
}

/// A refreshed link the store did not take, and the stored record it replaces.
struct Unsaved {
    base_access: TokenSecret,
    base_refresh: Option<TokenSecret>,
    token: UpstreamToken,
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
    pub(crate) fn newer_than(
        &self,
        key: &LinkKey,
        stored: &UpstreamToken,
    ) -> Option<UpstreamToken> {
        if self.unsaved_len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.with_unsaved(|unsaved| {
            let kept = unsaved.get(key)?;
            if kept.base_access == *stored.access_token()
                && kept.base_refresh.as_ref() == stored.refresh_token()
            {
                let mut token = kept.token.clone();
                // Written back over `stored`.
                token.generation = stored.generation;
                Some(token)
            } else {
                unsaved.remove(key);
                None
            }
        })
    }

    /// Keeps `token`, refreshed from `base`, which the store did not take.
    fn keep_unsaved(&self, key: &LinkKey, base: &UpstreamToken, token: UpstreamToken) {
        self.with_unsaved(|unsaved| {
            unsaved.insert(
                key.clone(),
                Unsaved {
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
        match receiver.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(RefreshFailure::Aborted)),
            Err(_) => Err(RefreshFailure::Aborted),
        }
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
        locked(&shared, &key, &observed).await
    };
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

async fn locked<St, R>(
    shared: &Arc<Shared<St, R>>,
    key: &LinkKey,
    observed: &TokenSecret,
) -> Outcome
where
    St: TokenStore,
    R: Refresher,
{
    let deadline = deadline(shared.refresh_timeout);
    let guard = match bounded(deadline, shared.store.lock(key)).await {
        Ok(guard) => guard.map_err(store_failure)?,
        Err(timed_out) => {
            tracing::warn!(
                provider = key.provider(),
                "the token store's lock was not granted in time"
            );
            return Err(timed_out);
        }
    };
    let outcome = under_lock(shared, key, observed, deadline).await;
    if tokio::time::timeout(shared.refresh_timeout, shared.store.unlock(guard))
        .await
        .is_err()
    {
        tracing::warn!(
            provider = key.provider(),
            "the token store did not unlock in time"
        );
    }
    outcome
}

fn deadline(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after)
        // Far enough, and representable.
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Lock held: reload, reuse a token someone else obtained, or refresh and store before anyone
/// uses the new token.
async fn under_lock<St, R>(
    shared: &Arc<Shared<St, R>>,
    key: &LinkKey,
    observed: &TokenSecret,
    deadline: tokio::time::Instant,
) -> Outcome
where
    St: TokenStore,
    R: Refresher,
{
    let store = &shared.store;
    let stored = bounded(deadline, store.load(key))
        .await?
        .map_err(store_failure)?
        .ok_or(RefreshFailure::NotConnected)?;
    // A refresh the store did not take is newer than the record it was refreshed from: use it
    // (never the revoked refresh token), and try writing it back now that the lock is held.
    let current = match shared.flights.newer_than(key, &stored) {
        Some(kept) => {
            if matches!(
                tokio::time::timeout(shared.refresh_timeout, store.save(key, kept.clone())).await,
                Ok(Ok(()))
            ) {
                shared.flights.saved(key, kept.access_token());
            }
            kept
        }
        None => stored.clone(),
    };
    if current.needs_reauthorization() {
        return Err(RefreshFailure::Marked);
    }
    if current.access_token() != observed && !current.refresh_due(shared.skew, SystemTime::now()) {
        tracing::debug!(
            provider = key.provider(),
            "reusing a token refreshed meanwhile"
        );
        return Ok(current);
    }
    let Some(refresh_token) = current.refresh_token().cloned() else {
        mark(shared, key, current).await;
        return Err(RefreshFailure::NoRefreshToken);
    };
    let answer = match bounded(deadline, shared.refresher.refresh(&refresh_token)).await {
        Ok(answer) => answer,
        Err(timed_out) => {
            tracing::warn!(
                provider = key.provider(),
                "the token endpoint did not answer within the refresh timeout"
            );
            return Err(timed_out);
        }
    };
    match answer {
        Ok(answer) => {
            // From here on the answer must not be lost: no deadline.
            let next = answer.apply_to(&current, SystemTime::now());
            if let Err(error) = save_persistently(shared, key, next.clone()).await {
                // The provider may have revoked `refresh_token` already: keep the new one in
                // memory, use it, and keep writing it back.
                tracing::error!(
                    provider = key.provider(),
                    error = %error,
                    "could not store a refreshed token; keeping it in memory and retrying"
                );
                // Over the record actually stored (`current` may be a kept one already).
                shared.flights.keep_unsaved(key, &stored, next.clone());
                write_back_later(shared.clone(), key.clone());
            } else {
                shared.flights.saved(key, current.access_token());
            }
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
            Ok(next)
        }
        Err(error) => {
            tracing::warn!(provider = key.provider(), %error, "refresh failed");
            if error.needs_reauthorization() {
                mark(shared, key, current).await;
            }
            Err(RefreshFailure::Grant(error))
        }
    }
}

/// Saves a freshly refreshed link. A provider that rotates has already revoked the old refresh
/// token, so losing this write would lose the link: try a few times before giving up.
async fn save_persistently<St: TokenStore, R>(
    shared: &Shared<St, R>,
    key: &LinkKey,
    token: UpstreamToken,
) -> Result<(), Arc<dyn std::error::Error + Send + Sync>> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let error: Arc<dyn std::error::Error + Send + Sync> = match tokio::time::timeout(
            shared.refresh_timeout,
            shared.store.save(key, token.clone()),
        )
        .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => Arc::new(error),
            Err(elapsed) => Arc::new(elapsed),
        };
        if attempt >= 3 {
            return Err(error);
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

/// Writes the kept refreshed link of `key` back in the background, a bounded number of times,
/// each under the lock and only over the record it was refreshed from.
fn write_back_later<St, R>(shared: Arc<Shared<St, R>>, key: LinkKey)
where
    St: TokenStore,
    R: Refresher,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Kept in memory; the next refresh of the key writes it back.
        return;
    };
    drop(runtime.spawn(async move {
        let mut delay = WRITE_BACK_DELAY;
        for _ in 0..WRITE_BACK_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(WRITE_BACK_MAX_DELAY);
            if !shared.flights.is_kept(&key) {
                return;
            }
            let limit = shared.refresh_timeout;
            let Ok(Ok(guard)) = tokio::time::timeout(limit, shared.store.lock(&key)).await else {
                continue;
            };
            let written = match tokio::time::timeout(limit, shared.store.load(&key)).await {
                Ok(Ok(Some(stored))) => match shared.flights.newer_than(&key, &stored) {
                    Some(kept) => {
                        let saved = matches!(
                            tokio::time::timeout(limit, shared.store.save(&key, kept.clone()))
                                .await,
                            Ok(Ok(()))
                        );
                        if saved {
                            shared.flights.saved(&key, kept.access_token());
                        }
                        saved
                    }
                    // Written by someone else, or the store moved on.
                    None => true,
                },
                // Removed meanwhile: nothing to write back to.
                Ok(Ok(None)) => {
                    shared.flights.with_unsaved(|unsaved| unsaved.remove(&key));
                    true
                }
                _ => false,
            };
            let _ = tokio::time::timeout(limit, shared.store.unlock(guard)).await;
            if written {
                tracing::info!(provider = key.provider(), "refreshed token written back");
                return;
            }
        }
        tracing::error!(
            provider = key.provider(),
            "could not write a refreshed token back; it is kept in memory until the next refresh"
        );
    }));
}

/// Marks the link as needing re-authorization, keeping everything else (the refresh token
/// included) as it is.
async fn mark<St: TokenStore, R>(shared: &Shared<St, R>, key: &LinkKey, current: UpstreamToken) {
    let access = current.access_token().clone();
    let marked = current.with_needs_reauthorization(true);
    match tokio::time::timeout(shared.refresh_timeout, shared.store.save(key, marked)).await {
        Ok(Ok(())) => shared.flights.saved(key, &access),
        Ok(Err(error)) => {
            tracing::warn!(provider = key.provider(), %error, "could not mark the link");
        }
        Err(_) => {
            tracing::warn!(provider = key.provider(), "could not mark the link in time");
        }
    }
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
        let limit = shared.refresh_timeout;
        let Ok(Ok(guard)) = tokio::time::timeout(limit, shared.store.lock(&key)).await else {
            return;
        };
        if let Ok(Ok(Some(stored))) = tokio::time::timeout(limit, shared.store.load(&key)).await {
            let current = shared.flights.newer_than(&key, &stored).unwrap_or(stored);
            if current.access_token() == &rejected && !current.needs_reauthorization() {
                mark(&shared, &key, current).await;
            }
        }
        let _ = tokio::time::timeout(limit, shared.store.unlock(guard)).await;
    })
}

fn store_failure<E: std::error::Error + Send + Sync + 'static>(error: E) -> RefreshFailure {
    RefreshFailure::Store(Arc::new(error))
}
