//! What the persistent stores keep in this process: a short-lived read cache of links and the
//! per-link in-process locks.

use std::{
    collections::HashMap,
    future::{Future, Ready, ready},
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::{Link, LinkKey};

/// The future of a persistent store's `load`: a link from its read cache at once and unboxed —
/// the usual case, on every request's path —, else the read from the store, boxed (it waits
/// for I/O anyway).
pub struct CachedLoad<E>(Load<E>);

enum Load<E> {
    Cached(Ready<Result<Option<Link>, E>>),
    Reading(Pin<Box<dyn Future<Output = Result<Option<Link>, E>> + Send>>),
}

impl<E> CachedLoad<E> {
    /// `link`, from the read cache.
    pub(crate) fn cached(link: Link) -> Self {
        Self(Load::Cached(ready(Ok(Some(link)))))
    }

    /// A read from the store.
    pub(crate) fn reading(
        read: impl Future<Output = Result<Option<Link>, E>> + Send + 'static,
    ) -> Self {
        Self(Load::Reading(Box::pin(read)))
    }
}

impl<E> Future for CachedLoad<E> {
    type Output = Result<Option<Link>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Load::Cached(link) => Pin::new(link).poll(cx),
            Load::Reading(read) => read.as_mut().poll(cx),
        }
    }
}

impl<E> std::fmt::Debug for CachedLoad<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0 {
            Load::Cached(_) => "Cached",
            Load::Reading(_) => "Reading",
        };
        f.debug_tuple("CachedLoad").field(&state).finish()
    }
}

/// A panic while a map was locked cannot leave a half-written entry behind: recover the guard.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bounded cache of recently read links, each answered for `ttl` after it was read.
///
/// A read that raced with a write (or an invalidation) is not cached: [`epoch`](Self::epoch)
/// before reading, [`put_read`](Self::put_read) with it after.
pub(crate) struct ReadCache {
    state: Mutex<State>,
}

struct State {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<LinkKey, (Link, Instant)>,
    /// Changes at every write and invalidation.
    epoch: u64,
}

impl ReadCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                ttl,
                capacity,
                entries: HashMap::new(),
                epoch: 0,
            }),
        }
    }

    /// Changes the lifetime and the capacity; empties the cache.
    #[cfg(feature = "sqlite")]
    pub(crate) fn configure(&self, ttl: Duration, capacity: usize) {
        let mut state = lock(&self.state);
        state.ttl = ttl;
        state.capacity = capacity;
        state.entries.clear();
        state.epoch += 1;
    }

    /// The cached link of `key`, if it was read less than the lifetime ago.
    pub(crate) fn get(&self, key: &LinkKey) -> Option<Link> {
        let state = lock(&self.state);
        let (link, at) = state.entries.get(key)?;
        (at.elapsed() < state.ttl).then(|| link.clone())
    }

    /// The current epoch, to pass to [`put_read`](Self::put_read) after reading the store.
    pub(crate) fn epoch(&self) -> u64 {
        lock(&self.state).epoch
    }

    /// Caches a link read from the store, unless anything was written or invalidated since
    /// `epoch`: the read may be older than that.
    pub(crate) fn put_read(&self, epoch: u64, key: &LinkKey, link: &Link) {
        let mut state = lock(&self.state);
        if state.epoch == epoch {
            state.put(key, link);
        }
    }

    /// Records a write through this process: `link` is now stored at `key` (or nothing).
    pub(crate) fn written(&self, key: &LinkKey, link: Option<&Link>) {
        let mut state = lock(&self.state);
        state.epoch += 1;
        match link {
            Some(link) => state.put(key, link),
            None => {
                state.entries.remove(key);
            }
        }
    }

    /// Forgets `key`: it may have changed elsewhere.
    #[cfg(feature = "redis")]
    pub(crate) fn invalidate(&self, key: &LinkKey) {
        self.written(key, None);
    }

    /// Forgets everything.
    #[cfg(feature = "redis")]
    pub(crate) fn clear(&self) {
        let mut state = lock(&self.state);
        state.epoch += 1;
        state.entries.clear();
    }
}

impl State {
    fn put(&mut self, key: &LinkKey, link: &Link) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            let ttl = self.ttl;
            self.entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries
            .insert(key.clone(), (link.clone(), Instant::now()));
    }
}

/// One async mutex per link, forgotten once nobody holds or waits for it.
#[derive(Clone, Default)]
pub(crate) struct KeyLocks {
    locks: Arc<Mutex<HashMap<LinkKey, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Holds one link's in-process lock.
pub(crate) struct KeyLockGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    key: LinkKey,
    locks: KeyLocks,
}

impl KeyLocks {
    /// Waits for `key`'s lock.
    pub(crate) async fn lock(&self, key: &LinkKey) -> KeyLockGuard {
        let mutex = lock(&self.locks).entry(key.clone()).or_default().clone();
        KeyLockGuard {
            guard: Some(mutex.lock_owned().await),
            key: key.clone(),
            locks: self.clone(),
        }
    }
}

impl Drop for KeyLockGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.locks.locks);
        if locks
            .get(&self.key)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_with_a_write_is_not_cached() {
        let cache = ReadCache::new(Duration::from_secs(60), 10);
        let key = LinkKey::new("u", "p");
        let epoch = cache.epoch();
        cache.written(&key, Some(&Link::new("new")));
        cache.put_read(epoch, &key, &Link::new("old"));
        assert_eq!(
            cache.get(&key).unwrap().access_token().expose_secret(),
            "new"
        );
        let epoch = cache.epoch();
        cache.written(&key, None);
        cache.put_read(epoch, &key, &Link::new("old"));
        assert!(cache.get(&key).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let cache = ReadCache::new(Duration::from_secs(60), 2);
        for user in ["a", "b", "c"] {
            cache.written(&LinkKey::new(user, "p"), Some(&Link::new(user)));
        }
        assert!(cache.get(&LinkKey::new("c", "p")).is_some());
        assert!(lock(&cache.state).entries.len() <= 2);
        let off = ReadCache::new(Duration::ZERO, 2);
        off.written(&LinkKey::new("a", "p"), Some(&Link::new("a")));
        assert!(off.get(&LinkKey::new("a", "p")).is_none());
    }

    #[tokio::test]
    async fn locks_are_per_key_and_forgotten_when_free() {
        let locks = KeyLocks::default();
        let a = locks.lock(&LinkKey::new("u", "a")).await;
        let _b = locks.lock(&LinkKey::new("u", "b")).await;
        let second = tokio::time::timeout(
            Duration::from_millis(20),
            locks.lock(&LinkKey::new("u", "a")),
        )
        .await;
        assert!(second.is_err());
        drop(a);
        assert_eq!(lock(&locks.locks).len(), 1);
    }
}
