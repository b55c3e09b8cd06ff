//! Single-flight refreshes: one refresh per key at a time in this process, serialized across
//! processes by the store's lock, and finished even if the request that started it goes away.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;

use super::Shared;
use crate::upstream::{
    grant::{GrantError, Refresher},
    store::{LinkKey, TokenSecret, TokenStore, UpstreamToken},
};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a refresh gave no token. Cloned to every request waiting on the flight.
#[derive(Clone, Debug)]
pub(crate) enum RefreshFailure {
    NotConnected,
    Marked,
    NoRefreshToken,
    Grant(GrantError),
    Store(Arc<dyn std::error::Error + Send + Sync>),
    /// The refreshing task ended without an answer (it panicked, or the runtime shut down).
    Aborted,
}

pub(crate) type Outcome = Result<UpstreamToken, RefreshFailure>;

/// The refreshes in flight, by key; and the keys whose refresh ahead of expiry failed recently.
#[derive(Default)]
pub(crate) struct Flights {
    flying: Mutex<HashMap<LinkKey, watch::Receiver<Option<Outcome>>>>,
    cooling: Mutex<HashMap<LinkKey, Instant>>,
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

    /// Records that a refresh ahead of expiry of `key` failed: don't try again before `until`.
    pub(crate) fn cool_down(&self, key: &LinkKey, until: Instant) {
        let mut cooling = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
        cooling.insert(key.clone(), until);
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

async fn locked<St, R>(shared: &Shared<St, R>, key: &LinkKey, observed: &TokenSecret) -> Outcome
where
    St: TokenStore,
    R: Refresher,
{
    let guard = shared.store.lock(key).await.map_err(store_failure)?;
    let outcome = under_lock(shared, key, observed).await;
    shared.store.unlock(guard).await;
    outcome
}

/// Lock held: reload, reuse a token someone else obtained, or refresh and store before anyone
/// uses the new token.
async fn under_lock<St, R>(shared: &Shared<St, R>, key: &LinkKey, observed: &TokenSecret) -> Outcome
where
    St: TokenStore,
    R: Refresher,
{
    let store = &shared.store;
    let current = store
        .load(key)
        .await
        .map_err(store_failure)?
        .ok_or(RefreshFailure::NotConnected)?;
    if current.needs_reauthorization() {
        return Err(RefreshFailure::Marked);
    }
    if current.access_token() != observed && !current.expires_within(shared.skew, SystemTime::now())
    {
        tracing::debug!(
            provider = key.provider(),
            "reusing a token refreshed meanwhile"
        );
        return Ok(current);
    }
    let Some(refresh_token) = current.refresh_token().cloned() else {
        mark(store, key, current).await;
        return Err(RefreshFailure::NoRefreshToken);
    };
    match shared.refresher.refresh(&refresh_token).await {
        Ok(answer) => {
            let next = answer.apply_to(&current, SystemTime::now());
            save_persistently(store, key, next.clone()).await?;
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
                mark(store, key, current).await;
            }
            Err(RefreshFailure::Grant(error))
        }
    }
}

/// Saves a freshly refreshed link. A provider that rotates has already revoked the old refresh
/// token, so losing this write would lose the link: try a few times before giving up.
async fn save_persistently<St: TokenStore>(
    store: &St,
    key: &LinkKey,
    token: UpstreamToken,
) -> Result<(), RefreshFailure> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match store.save(key, token.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt >= 3 => {
                tracing::error!(provider = key.provider(), %error, "could not store a refreshed token");
                return Err(store_failure(error));
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// Marks the link as needing re-authorization, keeping everything else (the refresh token
/// included) as it is.
async fn mark<St: TokenStore>(store: &St, key: &LinkKey, current: UpstreamToken) {
    if let Err(error) = store
        .save(key, current.with_needs_reauthorization(true))
        .await
    {
        tracing::warn!(provider = key.provider(), %error, "could not mark the link");
    }
}

/// Marks the link as needing re-authorization if its access token is still `rejected` (a fresh
/// token the provider refused).
pub(crate) fn mark_rejected<St: TokenStore>(
    store: St,
    key: LinkKey,
    rejected: TokenSecret,
) -> BoxFuture<()> {
    Box::pin(async move {
        let Ok(guard) = store.lock(&key).await else {
            return;
        };
        if let Ok(Some(current)) = store.load(&key).await
            && current.access_token() == &rejected
            && !current.needs_reauthorization()
        {
            mark(&store, &key, current).await;
        }
        store.unlock(guard).await;
    })
}

fn store_failure<E: std::error::Error + Send + Sync + 'static>(error: E) -> RefreshFailure {
    RefreshFailure::Store(Arc::new(error))
}
