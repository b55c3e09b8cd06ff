//! Counters and histograms through the `metrics` facade (feature `metrics`), named in the
//! README's table. Without the feature every function here is empty and inlined away; with it,
//! each is one counter increment (or one histogram record) on the application's recorder.

#[cfg(feature = "metrics")]
use crate::upstream::{classify::UpstreamClass, refresh::flight::Outcome};

/// A token judged by `ValidateBearer`: `valid`, or the refusal's [`AuthError::reason`].
///
/// [`AuthError::reason`]: crate::failure::AuthError::reason
#[inline(always)]
pub(crate) fn validation(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("tower_bearer_validations_total", "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A JWKS fetch (with discovery, when it was needed) that ended.
#[inline(always)]
pub(crate) fn key_fetch(ok: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("tower_bearer_key_fetches_total", "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = ok;
}

/// A `CachedValidator` lookup.
#[inline(always)]
pub(crate) fn token_cache(hit: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!("tower_bearer_token_cache_total", "result" => if hit { "hit" } else { "miss" })
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}

/// What the classifier made of a provider's answer.
#[cfg(feature = "metrics")]
pub(crate) fn upstream_class(class: &UpstreamClass) {
    let class = match class {
        UpstreamClass::NotAuthRelated => "not_auth_related",
        UpstreamClass::TokenRejected => "token_rejected",
        UpstreamClass::InsufficientScope { .. } => "insufficient_scope",
        UpstreamClass::Forbidden => "forbidden",
    };
    ::metrics::counter!("tower_bearer_upstream_classifications_total", "class" => class)
        .increment(1);
}

/// Without the feature: nothing.
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn upstream_class<T>(_class: &T) {}

/// When a request started waiting for a refresh; zero-sized without the feature, so that no
/// clock is read.
pub(crate) struct Stopwatch {
    #[cfg(feature = "metrics")]
    started: tokio::time::Instant,
}

impl Stopwatch {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: tokio::time::Instant::now(),
        }
    }
}

/// A refresh that ended (counted once per refresh, by the request that led it).
#[cfg(feature = "metrics")]
pub(crate) fn refresh(outcome: &Outcome) {
    ::metrics::counter!("tower_bearer_refreshes_total", "outcome" => refresh_outcome(outcome))
        .increment(1);
}

/// A request that waited for a refresh (led or joined), and how long.
#[cfg(feature = "metrics")]
pub(crate) fn refresh_wait(outcome: &Outcome, waiting: Stopwatch) {
    ::metrics::histogram!("tower_bearer_refresh_wait_seconds", "outcome" => refresh_outcome(outcome))
        .record(waiting.started.elapsed().as_secs_f64());
}

#[cfg(feature = "metrics")]
fn refresh_outcome(outcome: &Outcome) -> &'static str {
    use crate::upstream::refresh::flight::RefreshFailure;
    match outcome {
        Ok(_) => "refreshed",
        Err(RefreshFailure::Grant(error)) if error.needs_reauthorization() => "reauth_required",
        Err(RefreshFailure::Grant(error)) if error.is_misconfiguration() => "misconfigured",
        Err(RefreshFailure::Grant(_)) => "unavailable",
        Err(RefreshFailure::NotConnected) => "not_connected",
        Err(RefreshFailure::Marked) => "reauth_required",
        Err(RefreshFailure::NoRefreshToken) => "no_refresh_token",
        Err(RefreshFailure::Store(_)) => "store_unavailable",
        Err(RefreshFailure::TimedOut) => "timeout",
        Err(RefreshFailure::Aborted) => "aborted",
    }
}

/// Without the feature: nothing.
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn refresh<T>(_outcome: &T) {}

/// Without the feature: nothing.
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn refresh_wait<T>(_outcome: &T, _waiting: Stopwatch) {}
