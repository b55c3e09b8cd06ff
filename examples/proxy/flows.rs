//! Connect flows in progress: what the callback needs to finish one, found by its `state`.
//!
//! Each entry is taken at most once (a replayed callback finds nothing), lives ten minutes, and
//! the table is bounded, so unauthenticated callbacks cannot grow it and authenticated callers
//! starting flows in a loop cannot exhaust memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How long a user has to finish a connect flow.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);

/// The most flows kept at once.
const MAX_FLOWS: usize = 10_000;

/// A connect flow waiting for its callback.
pub struct Pending {
    /// The proxy's user (the `sub` of their token) the link will belong to.
    pub user: String,
    /// The provider being connected.
    pub provider: String,
    /// The PKCE verifier (RFC 7636).
    pub verifier: String,
    /// The secret also set as a cookie in the browser that started the flow; the callback must
    /// come from that browser, so nobody can make a victim finish a flow started for another user.
    pub binding: String,
    /// Where to send the user afterwards (a checked relative path).
    pub return_to: Option<String>,
    started: Instant,
}

impl Pending {
    /// A flow starting now.
    pub fn new(
        user: String,
        provider: String,
        verifier: String,
        binding: String,
        return_to: Option<String>,
    ) -> Self {
        Self {
            user,
            provider,
            verifier,
            binding,
            return_to,
            started: Instant::now(),
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        now.duration_since(self.started) < FLOW_LIFETIME
    }
}

/// The table of flows. Cheap to clone.
#[derive(Clone, Default)]
pub struct Flows {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

/// The table is full of live flows.
#[derive(Debug)]
pub struct Full;

impl Flows {
    /// Keeps `flow` under `state`.
    pub fn insert(&self, state: String, flow: Pending) -> Result<(), Full> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= MAX_FLOWS {
            let now = Instant::now();
            pending.retain(|_, flow| flow.is_live(now));
            if pending.len() >= MAX_FLOWS {
                return Err(Full);
            }
        }
        pending.insert(state, flow);
        Ok(())
    }

    /// Takes the live flow of `state`, if any.
    pub fn take(&self, state: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .remove(state)
            .filter(|flow| flow.is_live(Instant::now()))
    }
}
