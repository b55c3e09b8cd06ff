//! [`RefreshAndRetryLayer`]: the configuration of one provider's refresh-and-retry (skew,
//! replay limit, refresh timeout, `Retry-After`, connect URL), and the single-flight table its
//! services share.
//!
//! The layer is built once per provider; every [`RefreshAndRetry`] it makes shares one
//! [`Shared`] (store, refresher, configuration, flights), so that concurrent requests for the
//! same link join one refresh.

use std::{fmt, sync::Arc, time::Duration};

use tower_layer::Layer;

use super::{
    Config, DEFAULT_REFRESH_TIMEOUT, DEFAULT_REPLAY_LIMIT, DEFAULT_RETRY_AFTER, DEFAULT_SKEW,
    RefreshAndRetry, Shared, flight::Flights,
};

/// [`Layer`] that applies [`RefreshAndRetry`] for one provider; see the
/// [module docs](super).
///
/// Every service it makes shares one single-flight table, so build the layer once per provider.
#[derive(Clone)]
pub struct RefreshAndRetryLayer<St, R> {
    store: St,
    refresher: R,
    config: Config,
    flights: Arc<Flights>,
}

impl<St, R> RefreshAndRetryLayer<St, R> {
    /// Attaches tokens of `provider` from `store`, refreshing them with `refresher` (usually a
    /// [`RefreshGrant`](crate::upstream::grant::RefreshGrant)). Responses passed on from the
    /// provider are marked [`PassedOn`](crate::emit::passed_on::PassedOn); the enclosing
    /// [`Emitter`](crate::emit::Emitter) labels them, with the one proxy name it is configured
    /// with.
    pub fn new(provider: impl Into<Arc<str>>, store: St, refresher: R) -> Self {
        Self {
            store,
            refresher,
            config: Config {
                provider: provider.into(),
                connect_url: None,
                skew: DEFAULT_SKEW,
                replay_limit: DEFAULT_REPLAY_LIMIT,
                retry_after: DEFAULT_RETRY_AFTER,
                refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            },
            flights: Arc::default(),
        }
    }

    /// Where users connect this provider again: sent as a `Link` on a re-authorization
    /// failure (row U4), and as the `303` target for browser navigations. May be relative.
    pub fn connect_url(mut self, url: impl Into<Arc<str>>) -> Self {
        self.config.connect_url = Some(url.into());
        self
    }

    /// Refreshes tokens that expire within `skew` before using them (row U3). For a token whose
    /// issue time is known, the skew is capped at half its lifetime, so that short-lived tokens
    /// are not refreshed on every use.
    pub fn refresh_skew(mut self, skew: Duration) -> Self {
        self.config.skew = skew;
        self
    }

    /// Keeps up to `bytes` of each request body to send it again after a refresh. Longer bodies
    /// are streamed, and a request with one is not retried
    /// ([`BodyNotReplayable`](crate::upstream::UpstreamError::BodyNotReplayable)).
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.config.replay_limit = bytes;
        self
    }

    /// The `Retry-After` of a failed refresh when the token endpoint gave none.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.retry_after = after;
        self
    }

    /// How long a request waits for a refresh ([`DEFAULT_REFRESH_TIMEOUT`] unless set):
    /// waiting for the store's lock, loading the link and the token endpoint's answer
    /// together. Past it the request fails with
    /// [`RefreshUnavailable`](crate::upstream::UpstreamError::RefreshUnavailable) (row U7).
    ///
    /// A token endpoint that has not answered by then is still awaited, up to six times this
    /// timeout, holding the store's lock, and its answer is stored: a provider that rotates
    /// refresh tokens has retired the old one already. Keep the refresher's own timeout
    /// ([`RefreshGrant::timeout`](crate::upstream::grant::RefreshGrant::timeout)) at least that
    /// long, and a shared store's lock lease longer: more than ten times this timeout (see
    /// [the lock's lease](crate::upstream::store#the-locks-lease)).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.config.refresh_timeout = timeout;
        self
    }
}

impl<S, St, R> Layer<S> for RefreshAndRetryLayer<St, R>
where
    St: Clone,
    R: Clone,
{
    type Service = RefreshAndRetry<S, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RefreshAndRetry::from_shared(
            inner,
            Arc::new(Shared {
                store: self.store.clone(),
                refresher: self.refresher.clone(),
                config: self.config.clone(),
                flights: self.flights.clone(),
            }),
        )
    }
}

impl<St: fmt::Debug, R> fmt::Debug for RefreshAndRetryLayer<St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshAndRetryLayer")
            .field("provider", &self.config.provider)
            .field("store", &self.store)
            .field("connect_url", &self.config.connect_url)
            .field("skew", &self.config.skew)
            .field("replay_limit", &self.config.replay_limit)
            .field("refresh_timeout", &self.config.refresh_timeout)
            .finish_non_exhaustive()
    }
}
