//! [`MemoryStore`]: links in this process's memory.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    fmt,
    future::{Future, Ready, ready},
    sync::atomic::{AtomicU64, Ordering},
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use super::{FlowStore, Link, LinkKey, PendingFlow, Saved, TokenStore};

/// The default [`TokenStore`]: links in this process's memory, locks per key. Nothing survives
/// a restart: for that, see `SqliteStore` (feature `sqlite`).
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
///
/// The inherent `insert` and `remove` are synchronous (and `remove` returns the link); the
/// [`TokenStore`] methods of the same names do the same.
#[derive(Clone, Default)]
pub struct MemoryStore {
    links: Arc<Mutex<HashMap<LinkKey, Slot>>>,
    versions: Arc<AtomicU64>,
    flows: Arc<Mutex<Flows>>,
}

/// Pending connect flows, by state, and each user's states, oldest first.
#[derive(Default)]
struct Flows {
    by_state: HashMap<String, PendingFlow>,
    by_user: HashMap<(Option<String>, String), VecDeque<String>>,
}

impl Flows {
    fn user_of(flow: &PendingFlow) -> (Option<String>, String) {
        let key = flow.key();
        (key.issuer().map(str::to_owned), key.user().to_owned())
    }

    fn put(&mut self, state: &str, flow: PendingFlow, per_user: usize) {
        let now = SystemTime::now();
        let user = Self::user_of(&flow);
        let mut evicted = Vec::new();
        let states = self.by_user.entry(user).or_default();
        states.push_back(state.to_owned());
        while states.len() > per_user {
            evicted.extend(states.pop_front());
        }
        for state in evicted {
            self.by_state.remove(&state);
        }
        self.by_state.insert(state.to_owned(), flow);
        // Expired flows go when the table has doubled since the last sweep: amortized O(1).
        if self.by_state.len() >= 1024 && self.by_state.len().is_power_of_two() {
            self.by_state.retain(|_, flow| flow.is_live(now));
            let by_state = &self.by_state;
            self.by_user.retain(|_, states| {
                states.retain(|state| by_state.contains_key(state));
                !states.is_empty()
            });
        }
    }

    fn take(&mut self, state: &str) -> bool {
        let Some(flow) = self.by_state.remove(state) else {
            return false;
        };
        let user = Self::user_of(&flow);
        if let Some(states) = self.by_user.get_mut(&user) {
            states.retain(|other| other != state);
            if states.is_empty() {
                self.by_user.remove(&user);
            }
        }
        flow.is_live(SystemTime::now())
    }
}

#[derive(Default)]
struct Slot {
    token: Option<Link>,
    /// Changes when the link is inserted, replaced or removed (not when a refresh writes it
    /// back); never reused.
    version: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a link (for example at the end of the connect flow), replacing any previous one
    /// under a new version; returns the version.
    pub fn insert(&self, key: LinkKey, token: Link) -> u64 {
        let version = self.next_version();
        self.with_links(|links| {
            let slot = links.entry(key).or_default();
            slot.token = Some(token.with_version(version));
            slot.version = version;
        });
        version
    }

    /// The stored state of a link, with its version.
    pub fn get(&self, key: &LinkKey) -> Option<Link> {
        self.with_links(|links| links.get(key).and_then(|slot| slot.token.clone()))
    }

    /// Removes a link (for example when the user disconnects it). A refresh of it in flight
    /// does not bring it back.
    pub fn remove(&self, key: &LinkKey) -> Option<Link> {
        let version = self.next_version();
        self.with_links(|links| {
            let slot = links.get_mut(key)?;
            let token = slot.token.take();
            slot.version = version;
            // Keep the lock while anyone holds or waits for it, so that a link connected again
            // meanwhile is refreshed under the same lock.
            if Arc::strong_count(&slot.lock) == 1 {
                links.remove(key);
            }
            token
        })
    }

    fn links_of(&self, issuer: Option<&str>, user: &str) -> Vec<(LinkKey, Link)> {
        self.with_links(|links| {
            links
                .iter()
                .filter(|(key, _)| key.is_of(issuer, user))
                .filter_map(|(key, slot)| Some((key.clone(), slot.token.clone()?)))
                .collect()
        })
    }

    /// Writes `token` over the stored link if it is still the version `token` was loaded with.
    fn save_over(&self, key: &LinkKey, token: Link) -> Saved {
        self.with_links(|links| match links.get_mut(key) {
            Some(slot) if slot.token.is_some() && token.version() == Some(slot.version) => {
                slot.token = Some(token);
                Saved::Written
            }
            _ => {
                tracing::debug!(
                    provider = key.provider(),
                    "the link was removed or replaced meanwhile; not saving"
                );
                Saved::Superseded
            }
        })
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
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
    ) -> impl Future<Output = Result<Saved, Infallible>> + Send {
        ready(Ok(self.save_over(key, token)))
    }

    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, Infallible>> + Send {
        ready(Ok(MemoryStore::insert(self, key.clone(), link)))
    }

    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(Ok(MemoryStore::remove(self, key).is_some()))
    }

    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, Infallible>> + Send {
        ready(Ok(self.links_of(issuer, user)))
    }
}

impl MemoryStore {
    fn with_flows<T>(&self, f: impl FnOnce(&mut Flows) -> T) -> T {
        f(&mut self.flows.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl FlowStore for MemoryStore {
    type Error = Infallible;

    fn put_flow(
        &self,
        state: &str,
        flow: PendingFlow,
        per_user: usize,
    ) -> impl Future<Output = Result<(), Infallible>> + Send {
        self.with_flows(|flows| flows.put(state, flow, per_user));
        ready(Ok(()))
    }

    fn peek_flow(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<PendingFlow>, Infallible>> + Send {
        let flow = self.with_flows(|flows| flows.by_state.get(state).cloned());
        ready(Ok(flow.filter(|flow| flow.is_live(SystemTime::now()))))
    }

    fn take_flow(&self, state: &str) -> impl Future<Output = Result<bool, Infallible>> + Send {
        ready(Ok(self.with_flows(|flows| flows.take(state))))
    }
}
