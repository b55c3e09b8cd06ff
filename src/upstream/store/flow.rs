//! Connect flows waiting for their callback, kept where the links are: [`PendingFlow`] and
//! the [`FlowStore`] trait, so that any replica can finish a flow another one started.

use std::{
    fmt,
    future::Future,
    time::{Duration, SystemTime},
};

use super::{LinkKey, TokenSecret};

/// A connect flow (RFC 6749 §4.1) waiting for its callback: what the callback needs to finish
/// it — the link it creates, the PKCE verifier (RFC 7636), the secret binding it to the browser
/// that started it, where to send the user afterwards — and when it expires.
///
/// Its `Debug` output never shows the verifier or the binding.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingFlow {
    key: LinkKey,
    verifier: TokenSecret,
    binding: TokenSecret,
    return_to: Option<String>,
    expires_at: SystemTime,
}

impl PendingFlow {
    /// A flow that creates the link at `key`, alive for `lifetime` from now.
    pub fn new(
        key: LinkKey,
        verifier: impl Into<TokenSecret>,
        binding: impl Into<TokenSecret>,
        lifetime: Duration,
    ) -> Self {
        let now = SystemTime::now();
        Self {
            key,
            verifier: verifier.into(),
            binding: binding.into(),
            return_to: None,
            expires_at: now.checked_add(lifetime).unwrap_or(now),
        }
    }

    /// Sets where to send the user once connected (a path on this server, checked by the
    /// caller).
    pub fn with_return_to(mut self, return_to: impl Into<String>) -> Self {
        self.return_to = Some(return_to.into());
        self
    }

    /// Sets the expiry (for stores reading a flow back).
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// The link the flow creates: its user (and issuer) and provider.
    pub fn key(&self) -> &LinkKey {
        &self.key
    }

    /// The PKCE code verifier.
    pub fn verifier(&self) -> &TokenSecret {
        &self.verifier
    }

    /// The secret the browser that started the flow holds (in a cookie).
    pub fn binding(&self) -> &TokenSecret {
        &self.binding
    }

    /// Where to send the user once connected.
    pub fn return_to(&self) -> Option<&str> {
        self.return_to.as_deref()
    }

    /// When the flow expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Whether the flow is still alive at `now`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }

    /// How long the flow has left at `now`.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }
}

impl fmt::Debug for PendingFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingFlow")
            .field("key", &self.key)
            .field("return_to", &self.return_to)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where pending connect flows are kept, by their `state`: single use, short-lived, bounded per
/// user, and shared by every replica that shares the store.
///
/// A callback [peeks](Self::peek_flow) at the flow, checks it (the binding cookie, the
/// provider of the callback's path), and only then [takes](Self::take_flow) it: a stray or
/// forged callback must not burn the flow the real browser still needs, and of two callbacks
/// racing for one flow exactly one takes it.
pub trait FlowStore: Clone + Send + Sync + 'static {
    /// The store's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Keeps `flow` under `state` (a fresh unguessable value) until it expires. A user keeps at
    /// most `per_user` flows (per issuer, across providers): beyond that the oldest goes, so
    /// one user starting flows in a loop cannot crowd out anyone else's.
    fn put_flow(
        &self,
        state: &str,
        flow: PendingFlow,
        per_user: usize,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The live flow under `state`, left in place.
    fn peek_flow(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<PendingFlow>, Self::Error>> + Send;

    /// Takes the live flow under `state`: `true` for exactly one caller, across replicas.
    fn take_flow(&self, state: &str) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}
