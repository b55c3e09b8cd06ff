//! Middleware that attaches the user's upstream access token, refreshes it ahead of expiry or
//! when the provider rejects it, and retries the request once.
//!
//! # Overview
//!
//! The handler tags the upstream request with a [`LinkKey`] extension (which user, which
//! provider) and sends it through [`RefreshAndRetry`], which
//!
//! 1. loads the link from the [`TokenStore`](crate::upstream::store::TokenStore) and sets `Authorization: Bearer <token>` (replacing
//!    any `Authorization` the request had, so the caller's own token never leaks upstream);
//! 2. refreshes first when the token expires within the skew (row U3, 60 s by default, but
//!    never more than half the token's lifetime when its issue time is known) — and if that
//!    refresh fails for a passing reason while the token is still valid, uses it;
//! 3. sends the request, with the body buffered up to a limit (64 KiB by default) so that it
//!    can be sent again;
//! 4. when the provider rejects the token (row U2, as classified by
//!    [`ClassifyUpstream`](super::classify::ClassifyUpstream)), refreshes once — one refresh per
//!    key at a time, joined by every request that needs it, finished even if they are all
//!    cancelled, and reusing a token another request (or replica) obtained meanwhile — stores the
//!    rotated refresh token, and sends the request again with the buffered body. A request is
//!    refreshed at most once: a rejection after its refresh (ahead of expiry or after a first
//!    rejection) is final, and the link is marked as needing re-authorization. Nothing is
//!    retried twice.
//!
//! A request waits for a refresh a bounded time ([`DEFAULT_REFRESH_TIMEOUT`]): a store lock or
//! a token endpoint that does not answer in time ends in row U7. A token endpoint's late answer
//! is still awaited in the background (up to six refresh timeouts) and stored, since the
//! provider may have retired the old refresh token on receipt; until then the stored tokens are
//! untouched. A refreshed link (or a re-authorization mark) the store fails to take is not
//! lost: it is used anyway, kept in memory and written back later.
//!
//! Failures are [`UpstreamError`](crate::upstream::UpstreamError)s, to be rendered by the [`Emitter`](crate::emit::Emitter)
//! (rows U4–U9). A plain `403` from the provider (row U6) is passed on with
//! `Proxy-Status: <proxy>; received-status=403` and without the provider's `WWW-Authenticate`
//! (it names credentials the caller does not hold); other responses (row U1) are passed on
//! without hop-by-hop headers and without `WWW-Authenticate` either. Requests without a [`LinkKey`] pass through untouched.
//!
//! The inner service receives a [`RetryBody`]; with hyper-util that is
//! `Client<HttpConnector, RetryBody<YourBody>>`. The request body must be `Unpin` (box-pin one
//! that is not).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use http_body_util::Full;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::emit::Emitter;
//! use tower_bearer::upstream::{
//!     classify::ClassifyUpstreamLayer,
//!     grant::{TokenResponse, refresher_fn},
//!     refresh::RefreshAndRetryLayer,
//!     store::{LinkKey, MemoryStore, Link},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = MemoryStore::new();
//! let key = LinkKey::new("user-1", "example");
//! store.insert(key.clone(), Link::new("old").with_refresh_token("rt"));
//!
//! // The provider accepts only the token "new"…
//! let provider = service_fn(|req: Request<_>| async move {
//!     let ok = req.headers()[AUTHORIZATION] == "Bearer new";
//!     let mut response = Response::new(Full::<Bytes>::default());
//!     if !ok {
//!         *response.status_mut() = StatusCode::UNAUTHORIZED;
//!     }
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! // …which its token endpoint hands out.
//! let refresher = refresher_fn(|_refresh_token| async {
//!     Ok(TokenResponse::new("new").with_expires_in(Duration::from_secs(3600)))
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(RefreshAndRetryLayer::new("example", store.clone(), refresher))
//!     .layer(ClassifyUpstreamLayer::new())
//!     .service(provider);
//!
//! let mut request = Request::new(Full::<Bytes>::from("payload"));
//! request.extensions_mut().insert(key.clone());
//! let response = client.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(store.get(&key).unwrap().access_token().expose_secret(), "new");
//! # }
//! ```

pub(crate) mod flight;
mod future;
mod layer;
mod service;

use std::{sync::Arc, time::Duration};

pub use self::{future::ResponseFuture, layer::RefreshAndRetryLayer, service::RefreshAndRetry};
#[doc(inline)]
pub use super::body::RetryBody;
use super::store::LinkKey;

/// How long before its expiry a token is refreshed, unless configured.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);

/// How many request-body bytes are kept to send the request again, unless configured.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// The `Retry-After` of a failed refresh when the token endpoint gave none, unless configured.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a request waits for a refresh — for the store's lock, loading the link and the
/// token endpoint's answer together — unless configured. Past it the request fails as row U7.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(20);

/// How many refresh timeouts a token endpoint's answer is awaited in all: the requests waiting
/// for it give up after one, but the refresh runs on, holding the store's lock, and stores
/// what comes.
pub(crate) const ANSWER_GRACE: u32 = 6;

/// A request extension that makes [`RefreshAndRetry`] send the request body as it streams
/// instead of buffering it first: for bodies that never end on their own (a bidirectional gRPC
/// stream waits for the answers before it sends more) or that must not wait. Such a request is
/// not sent again: when the provider rejects its token, the token is refreshed and the request
/// fails with [`BodyNotReplayable`](super::UpstreamError::BodyNotReplayable), so that the next
/// attempt uses the new token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoReplay;

/// Everything the services of one layer share.
pub(crate) struct Shared<St, R> {
    pub(crate) store: St,
    pub(crate) refresher: R,
    pub(crate) config: Config,
    pub(crate) flights: Arc<flight::Flights>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) provider: Arc<str>,
    pub(crate) connect_url: Option<Arc<str>>,
    pub(crate) skew: Duration,
    pub(crate) replay_limit: usize,
    pub(crate) retry_after: Duration,
    pub(crate) refresh_timeout: Duration,
}

impl<St, R> std::ops::Deref for Shared<St, R> {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl<St, R> Shared<St, R> {
    pub(crate) fn owns(&self, key: &LinkKey) -> bool {
        key.provider() == &*self.config.provider
    }
}
