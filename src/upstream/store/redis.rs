//! [`RedisStore`]: links in Redis, shared by every replica, tokens encrypted at rest (feature
//! `redis`).
//!
//! - **Shared.** Every replica connected to one Redis sees the same links. Each link is a hash
//!   (`v`: its version, `r`: the [versioned record](super::record) whose tokens a [`Keyring`]
//!   sealed); each user's providers are a set, for [`list`](TokenStore::list). Versions come
//!   from a per-user counter (`INCR`), so a version is never used twice for a key.
//! - **One refresh at a time, across replicas.** The per-link lock is a Redis key set with
//!   `SET NX PX` to a random owner token, released by a compare-and-delete script. The lease is
//!   short ([`lock_lease`](RedisStoreBuilder::lock_lease), 15 s by default) and renewed by its
//!   holder every third of it: a holder that dies (`kill -9`) blocks the link for at most one
//!   lease, while a live one keeps its lock however long the token endpoint takes.
//! - **Fenced writes.** A save made under the lock runs as a script that checks the owner token
//!   *and* the version together: a holder whose lease lapsed (a stall, a partition from Redis)
//!   and was taken over never writes (a lapsed lock nobody took is taken back); it gets
//!   [`RedisStoreError::LockLost`] and
//!   [`RefreshAndRetry`](crate::upstream::refresh::RefreshAndRetry) keeps the refreshed link in
//!   memory and writes it back later (see the [store contract](super)).
//! - **Waiters learn promptly.** Every release and every write is published on one channel;
//!   a replica waiting for a lock tries again as soon as it hears it (and every
//!   [`POLL_INTERVAL`] in any case), then reloads and uses the token the other replica obtained.
//!   Within a process, contenders queue on an in-process lock first, so one process sends one
//!   lock request per link at a time — and the refresh layer's single flight is in front of that.
//! - **A short read cache.** Every request loads its link; recently read links are answered
//!   from memory for up to [`read_cache`](RedisStoreBuilder::read_cache)'s lifetime (1 s by
//!   default). Other replicas' writes evict them at once through the channel; while the channel
//!   is down the cache is not used at all. Taking the lock evicts the link, so a refresh always
//!   works from what Redis holds.
//! - **Failures.** Every command is bounded ([`timeouts`](RedisStoreBuilder::timeouts));
//!   the connection is re-established in the background after Redis comes back.
//!
//! Redis must persist what it holds (for example `appendonly yes` with `appendfsync always`, or
//! `everysec` if losing the last second of refreshes on a power cut is acceptable): a rotated
//! refresh token Redis forgets is a lost link.
//!
//! The keys are `<prefix>:{<issuer>|<user>}:…` — one hash tag per user, so that a script only
//! touches the keys of one slot.
//!
//! ```no_run
//! use tower_bearer::upstream::store::{crypto::Keyring, redis::RedisStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let keyring = Keyring::from_env("k1", "LINK_STORE_KEY")?;
//! let store = RedisStore::builder("redis://127.0.0.1:6379/", keyring)
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt as _;
use redis::{
    AsyncCommands as _, Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::Notify;

use super::{
    CachedLoad, FlowStore, Link, LinkKey, PendingFlow, Saved, TokenStore,
    crypto::Keyring,
    local::{KeyLockGuard, KeyLocks, ReadCache, lock},
    record::{self, RecordError},
};

/// How long a lock lasts unless its holder renews it, unless configured.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(15);

/// How long a link read from Redis is answered from memory, unless configured.
pub const DEFAULT_READ_CACHE_TTL: Duration = Duration::from_secs(1);

/// How many links the read cache holds at most, unless configured.
pub const DEFAULT_READ_CACHE_CAPACITY: usize = 10_000;

/// How often a replica waiting for a lock tries again without hearing of its release.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The default bound on one command's answer.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The default bound on connecting.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes the link over the version it was loaded with — and, under a lock, only while that
/// lock is still this holder's: a lock that lapsed and that nobody took since is taken back
/// (for another lease) before writing; one that another holder has refuses the write.
const SAVE: &str = r"
if ARGV[3] ~= '' then
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[3] then return -1 end
  if not holder then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[6]) end
end
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// A new link under a new version.
const INSERT: &str = r"
local version = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'v', version, 'r', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return version
";

const REMOVE: &str = r"
local removed = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return removed
";

/// Compare-and-delete: only the holder releases its lock.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
";

/// Keeps a pending flow (a hash: its record and its user's set) for its lifetime, and trims
/// the user's flows to the newest `per_user`.
const PUT_FLOW: &str = r"
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'u', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now[1] * 1000000 + now[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do redis.call('DEL', ARGV[5] .. oldest[i]) end
end
return 1
";

/// Takes a pending flow: 1 for exactly one caller.
const TAKE_FLOW: &str = r"
local user_flows = redis.call('HGET', KEYS[1], 'u')
if not user_flows then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', user_flows, ARGV[1])
return 1
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Why the Redis store failed. Never contains a token (nor the URL, which may hold a password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// Redis failed: unreachable, too slow, or it refused a command.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The URL given is not a Redis URL.
    #[error("not a Redis URL (redis://, rediss:// or redis+unix://)")]
    Url,
    /// A record could not be sealed or opened (a key missing from the keyring, an altered
    /// record, a record of a newer release).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The system's random source failed (a lock's owner token is random).
    #[error("no randomness for a lock's owner token")]
    Random,
    /// The link's lock lapsed or was taken over before the write: nothing was written.
    #[error("the link's lock lapsed before the write; nothing was written")]
    LockLost,
}

/// Configures and connects a [`RedisStore`].
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    keyring: Keyring,
    prefix: String,
    lease: Duration,
    cache_ttl: Duration,
    cache_capacity: usize,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("keyring", &self.keyring)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Prefixes every key and the channel (`tower-bearer` by default): several applications
    /// can share a Redis, each with its own prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a lock lasts if its holder stops renewing it (it dies): how long a link stays
    /// blocked after its refreshing replica is killed. The holder renews it every third of it.
    /// At least 300 ms.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// Answers repeated loads of a link from memory for up to `ttl` after it was read, holding
    /// at most `capacity` links. `Duration::ZERO` asks Redis every time.
    pub fn read_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.cache_ttl = ttl;
        self.cache_capacity = capacity;
        self
    }

    /// Bounds each command's answer and each connection attempt.
    pub fn timeouts(mut self, response: Duration, connect: Duration) -> Self {
        self.response_timeout = response;
        self.connect_timeout = connect;
        self
    }

    /// Connects (failing if Redis cannot be reached now) and starts listening for other
    /// replicas' changes. Call it within a tokio runtime.
    pub async fn connect(self) -> Result<RedisStore, RedisStoreError> {
        let client = Client::open(self.url.as_str()).map_err(|_| RedisStoreError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3);
        let connection = client.get_connection_manager_with_config(config).await?;
        if self.keyring.is_plaintext() {
            tracing::warn!(
                prefix = %self.prefix,
                "the link store keeps tokens UNENCRYPTED (Keyring::insecure_plaintext)"
            );
        }
        let channel = format!("{}:events", self.prefix);
        let inner = Arc::new(Inner {
            connection,
            keyring: self.keyring,
            prefix: self.prefix,
            channel,
            lease: self.lease,
            locks: KeyLocks::default(),
            held: Mutex::default(),
            waiters: Mutex::default(),
            cache: ReadCache::new(self.cache_ttl, self.cache_capacity),
            listening: AtomicBool::new(false),
            scripts: Scripts {
                save: Script::new(SAVE),
                insert: Script::new(INSERT),
                remove: Script::new(REMOVE),
                unlock: Script::new(UNLOCK),
                renew: Script::new(RENEW),
                put_flow: Script::new(PUT_FLOW),
                take_flow: Script::new(TAKE_FLOW),
            },
        });
        tokio::spawn(listen(client, Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }
}

/// Links in Redis, shared by every replica, tokens encrypted at rest; see the
/// [module docs](self).
///
/// Cheap to clone; clones share the connection, the locks and the read cache.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Scripts {
    save: Script,
    insert: Script,
    remove: Script,
    unlock: Script,
    renew: Script,
    put_flow: Script,
    take_flow: Script,
}

struct Inner {
    connection: ConnectionManager,
    keyring: Keyring,
    prefix: String,
    channel: String,
    lease: Duration,
    /// In-process contenders queue here before asking Redis.
    locks: KeyLocks,
    /// The owner token of each lock this process holds: fences its saves.
    held: Mutex<HashMap<LinkKey, Arc<str>>>,
    /// Woken when a link's lock is released (or the link changes) in any replica.
    waiters: Mutex<HashMap<LinkKey, Arc<Notify>>>,
    cache: ReadCache,
    /// Whether the channel is subscribed: only then may the read cache answer.
    listening: AtomicBool,
    scripts: Scripts,
}

/// The Redis keys of one link.
struct Keys {
    link: String,
    lock: String,
    user_links: String,
    versions: String,
    /// The event naming this link on the channel.
    event: String,
}

/// Keeps a key component out of the hash tag's and the separators' way.
fn escape(component: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const RESERVED: &AsciiSet = &CONTROLS.add(b'%').add(b'{').add(b'}').add(b'|').add(b':');
    utf8_percent_encode(component, RESERVED).to_string()
}

impl Inner {
    fn user_tag(&self, issuer: Option<&str>, user: &str) -> String {
        format!(
            "{}:{{{}|{}}}",
            self.prefix,
            escape(issuer.unwrap_or("")),
            escape(user)
        )
    }

    fn keys(&self, key: &LinkKey) -> Keys {
        let tag = self.user_tag(key.issuer(), key.user());
        let provider = escape(key.provider());
        Keys {
            link: format!("{tag}:link:{provider}"),
            lock: format!("{tag}:lock:{provider}"),
            user_links: format!("{tag}:links"),
            versions: format!("{tag}:version"),
            event: serde_json::json!([key.issuer().unwrap_or(""), key.user(), key.provider()])
                .to_string(),
        }
    }

    /// The prefix of every pending flow's key; the flow's is this and its escaped state.
    fn flow_prefix(&self) -> String {
        format!("{}:flow:", self.prefix)
    }

    fn decode(&self, key: &LinkKey, version: u64, text: &str) -> Result<Link, RedisStoreError> {
        let (link, _kid) = record::decode(key, text.as_bytes(), &self.keyring)?;
        Ok(link.with_version(version))
    }

    async fn read(&self, key: &LinkKey) -> Result<Option<Link>, RedisStoreError> {
        let keys = self.keys(key);
        let (version, text): (Option<u64>, Option<String>) = self
            .connection
            .clone()
            .hmget(&keys.link, &["v", "r"])
            .await?;
        match (version, text) {
            (Some(version), Some(text)) => Ok(Some(self.decode(key, version, &text)?)),
            _ => Ok(None),
        }
    }

    /// Heard on the channel: `key`'s lock was released or the link changed.
    fn changed(&self, key: &LinkKey) {
        self.cache.invalidate(key);
        if let Some(waiter) = lock(&self.waiters).get(key) {
            waiter.notify_waiters();
        }
    }

    fn waiter(&self, key: &LinkKey) -> Arc<Notify> {
        lock(&self.waiters).entry(key.clone()).or_default().clone()
    }

    fn forget_waiter(&self, key: &LinkKey, waiter: Arc<Notify>) {
        let mut waiters = lock(&self.waiters);
        drop(waiter);
        if waiters
            .get(key)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            waiters.remove(key);
        }
    }

    async fn release(&self, lock_key: &str, owner: &str, event: &str) {
        let released: Result<i64, _> = self
            .scripts
            .unlock
            .key(lock_key)
            .arg(owner)
            .arg(&self.channel)
            .arg(event)
            .invoke_async(&mut self.connection.clone())
            .await;
        if let Err(error) = released {
            // It lapses at the end of its lease.
            tracing::warn!(%error, "could not release a link's lock");
        }
    }
}

/// Subscribes to the channel and keeps subscribing, for as long as the store lives.
async fn listen(client: Client, store: Weak<Inner>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(channel) = store.upgrade().map(|inner| inner.channel.clone()) else {
            return;
        };
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                delay = Duration::from_millis(100);
                if let Some(inner) = store.upgrade() {
                    // Whatever was cached may have changed while nobody listened.
                    inner.cache.clear();
                    inner.listening.store(true, Ordering::Release);
                }
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(inner) = store.upgrade() else { return };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Ok([issuer, user, provider]) =
                        serde_json::from_str::<[String; 3]>(&payload)
                    {
                        inner.changed(&LinkKey::for_subject(issuer, user, provider));
                    }
                }
                tracing::warn!("lost the link store's change channel; resubscribing");
            }
            Err(error) => tracing::warn!(%error, "could not subscribe to the link store's changes"),
        }
        let Some(inner) = store.upgrade() else { return };
        inner.listening.store(false, Ordering::Release);
        inner.cache.clear();
        // Wake every waiter: they poll on their own until the channel is back.
        for waiter in lock(&inner.waiters).values() {
            waiter.notify_waiters();
        }
        drop(inner);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

impl RedisStore {
    /// Starts configuring a store on the Redis at `url` (`redis://[:password@]host:port/db`,
    /// `rediss://` for TLS), sealing tokens with `keyring`.
    pub fn builder(url: impl Into<String>, keyring: Keyring) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            keyring,
            prefix: "tower-bearer".into(),
            lease: DEFAULT_LOCK_LEASE,
            cache_ttl: DEFAULT_READ_CACHE_TTL,
            cache_capacity: DEFAULT_READ_CACHE_CAPACITY,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("keyring", &self.inner.keyring)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

/// The lock guard of [`RedisStore`]: the link's lock in Redis (renewed while held) and in this
/// process. Release it with [`TokenStore::unlock`]; dropped, it is released in the background.
pub struct RedisGuard {
    held: Option<Held>,
}

struct Held {
    store: Arc<Inner>,
    key: LinkKey,
    lock_key: String,
    event: String,
    owner: Arc<str>,
    renewal: tokio::task::JoinHandle<()>,
    _local: KeyLockGuard,
}

impl Held {
    async fn release(self) {
        self.renewal.abort();
        {
            let mut held = lock(&self.store.held);
            if held.get(&self.key) == Some(&self.owner) {
                held.remove(&self.key);
            }
        }
        self.store
            .release(&self.lock_key, &self.owner, &self.event)
            .await;
    }
}

impl Drop for RedisGuard {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(held.release())),
                // No runtime: the lock lapses at the end of its lease.
                Err(_) => held.renewal.abort(),
            }
        }
    }
}

impl fmt::Debug for RedisGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisGuard")
    }
}

/// Releases a lock that may have been granted to a `lock` call that was given up on.
struct Abandoned {
    store: Arc<Inner>,
    lock_key: String,
    owner: Arc<str>,
    event: String,
    armed: bool,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, lock_key, owner, event) = (
                self.store.clone(),
                std::mem::take(&mut self.lock_key),
                self.owner.clone(),
                std::mem::take(&mut self.event),
            );
            drop(runtime.spawn(async move { store.release(&lock_key, &owner, &event).await }));
        }
    }
}

fn owner_token() -> Result<Arc<str>, RedisStoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| RedisStoreError::Random)?;
    Ok(Arc::from(
        bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>(),
    ))
}

/// Renews the lock every third of its lease while it is held.
async fn renew(store: Arc<Inner>, lock_key: String, owner: Arc<str>) {
    let lease_ms = u64::try_from(store.lease.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(store.lease / 3).await;
        let renewed: Result<i64, _> = store
            .scripts
            .renew
            .key(&lock_key)
            .arg(&*owner)
            .arg(lease_ms)
            .invoke_async(&mut store.connection.clone())
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!("a link's lock lapsed while held; its writes will be refused");
                return;
            }
            // Tried again at the next turn; the fence refuses writes if it lapses meanwhile.
            Err(error) => tracing::warn!(%error, "could not renew a link's lock"),
        }
    }
}

/// The future of [`RedisStore`]'s `load`.
pub type RedisLoad = CachedLoad<RedisStoreError>;

impl TokenStore for RedisStore {
    type Error = RedisStoreError;
    type Load = RedisLoad;
    type Guard = RedisGuard;

    fn load(&self, key: &LinkKey) -> Self::Load {
        if self.inner.listening.load(Ordering::Acquire)
            && let Some(link) = self.inner.cache.get(key)
        {
            return CachedLoad::cached(link);
        }
        let epoch = self.inner.cache.epoch();
        let (inner, key) = (self.inner.clone(), key.clone());
        CachedLoad::reading(async move {
            let link = inner.read(&key).await?;
            if let Some(link) = &link
                && inner.listening.load(Ordering::Acquire)
            {
                inner.cache.put_read(epoch, &key, link);
            }
            Ok(link)
        })
    }

    fn lock(
        &self,
        key: &LinkKey,
    ) -> impl Future<Output = Result<RedisGuard, RedisStoreError>> + Send {
        let (inner, key) = (self.inner.clone(), key.clone());
        async move {
            let local = inner.locks.lock(&key).await;
            let keys = inner.keys(&key);
            let owner = owner_token()?;
            let lease_ms = u64::try_from(inner.lease.as_millis()).unwrap_or(u64::MAX);
            let waiter = inner.waiter(&key);
            let mut abandoned = Abandoned {
                store: inner.clone(),
                lock_key: keys.lock.clone(),
                owner: owner.clone(),
                event: keys.event.clone(),
                armed: true,
            };
            loop {
                let released = waiter.notified();
                let mut released = std::pin::pin!(released);
                released.as_mut().enable();
                let granted: Option<String> = redis::cmd("SET")
                    .arg(&keys.lock)
                    .arg(&*owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms)
                    .query_async(&mut inner.connection.clone())
                    .await?;
                if granted.is_some() {
                    break;
                }
                let _ = tokio::time::timeout(POLL_INTERVAL, released).await;
            }
            abandoned.armed = false;
            inner.forget_waiter(&key, waiter);
            lock(&inner.held).insert(key.clone(), owner.clone());
            // From here on the link is read from Redis, not from the cache.
            inner.cache.invalidate(&key);
            let renewal = tokio::spawn(renew(inner.clone(), keys.lock.clone(), owner.clone()));
            Ok(RedisGuard {
                held: Some(Held {
                    store: inner,
                    key,
                    lock_key: keys.lock,
                    event: keys.event,
                    owner,
                    renewal,
                    _local: local,
                }),
            })
        }
    }

    fn save(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<Saved, RedisStoreError>> + Send {
        let (inner, key) = (self.inner.clone(), key.clone());
        async move {
            let Some(version) = link.version() else {
                return Ok(Saved::Superseded);
            };
            let keys = inner.keys(&key);
            let text = record::encode(&key, &link, &inner.keyring)?;
            let owner = lock(&inner.held).get(&key).cloned();
            let written: i64 = inner
                .scripts
                .save
                .key(&keys.link)
                .key(&keys.lock)
                .arg(version)
                .arg(text)
                .arg(owner.as_deref().unwrap_or(""))
                .arg(&inner.channel)
                .arg(&keys.event)
                .arg(u64::try_from(inner.lease.as_millis()).unwrap_or(u64::MAX))
                .invoke_async(&mut inner.connection.clone())
                .await?;
            match written {
                1 => {
                    inner.cache.written(&key, Some(&link));
                    Ok(Saved::Written)
                }
                0 => {
                    tracing::debug!(
                        provider = key.provider(),
                        "the link was removed or replaced meanwhile; not saving"
                    );
                    Ok(Saved::Superseded)
                }
                _ => Err(RedisStoreError::LockLost),
            }
        }
    }

    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, RedisStoreError>> + Send {
        let (inner, key) = (self.inner.clone(), key.clone());
        async move {
            let keys = inner.keys(&key);
            let text = record::encode(&key, &link, &inner.keyring)?;
            let version: u64 = inner
                .scripts
                .insert
                .key(&keys.versions)
                .key(&keys.link)
                .key(&keys.user_links)
                .arg(text)
                .arg(key.provider())
                .arg(&inner.channel)
                .arg(&keys.event)
                .invoke_async(&mut inner.connection.clone())
                .await?;
            inner.cache.written(&key, Some(&link.with_version(version)));
            Ok(version)
        }
    }

    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, RedisStoreError>> + Send {
        let (inner, key) = (self.inner.clone(), key.clone());
        async move {
            let keys = inner.keys(&key);
            let removed: i64 = inner
                .scripts
                .remove
                .key(&keys.link)
                .key(&keys.user_links)
                .arg(key.provider())
                .arg(&inner.channel)
                .arg(&keys.event)
                .invoke_async(&mut inner.connection.clone())
                .await?;
            inner.cache.written(&key, None);
            Ok(removed > 0)
        }
    }

    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, RedisStoreError>> + Send {
        let inner = self.inner.clone();
        let (issuer, user) = (issuer.unwrap_or("").to_owned(), user.to_owned());
        async move {
            let tag = inner.user_tag(Some(&issuer), &user);
            let mut connection = inner.connection.clone();
            let providers: Vec<String> = connection.smembers(format!("{tag}:links")).await?;
            let mut links = Vec::with_capacity(providers.len());
            for provider in providers {
                let key = LinkKey::for_subject(issuer.as_str(), user.as_str(), provider);
                // Removed since the set was read: not listed.
                if let Some(link) = inner.read(&key).await? {
                    links.push((key, link));
                }
            }
            Ok(links)
        }
    }

    fn unlock(&self, mut guard: RedisGuard) -> impl Future<Output = ()> + Send {
        let held = guard.held.take();
        async move {
            if let Some(held) = held {
                held.release().await;
            }
        }
    }
}

impl FlowStore for RedisStore {
    type Error = RedisStoreError;

    fn put_flow(
        &self,
        state: &str,
        flow: PendingFlow,
        per_user: usize,
    ) -> impl Future<Output = Result<(), RedisStoreError>> + Send {
        let (inner, state) = (self.inner.clone(), state.to_owned());
        async move {
            let lifetime = flow.remaining(std::time::SystemTime::now());
            let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
            if lifetime_ms == 0 {
                // Expired already: nothing to keep (and Redis refuses an expiry of 0).
                return Ok(());
            }
            let record = record::encode_flow(&state, &flow, &inner.keyring)?;
            let member = escape(&state);
            let flow_key = format!("{}{member}", inner.flow_prefix());
            let key = flow.key();
            let user_flows = format!("{}:flows", inner.user_tag(key.issuer(), key.user()));
            let _: i64 = inner
                .scripts
                .put_flow
                .key(&flow_key)
                .key(&user_flows)
                .arg(record)
                .arg(lifetime_ms)
                .arg(per_user)
                .arg(&member)
                .arg(inner.flow_prefix())
                .invoke_async(&mut inner.connection.clone())
                .await?;
            Ok(())
        }
    }

    fn peek_flow(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<PendingFlow>, RedisStoreError>> + Send {
        let (inner, state) = (self.inner.clone(), state.to_owned());
        async move {
            let flow_key = format!("{}{}", inner.flow_prefix(), escape(&state));
            let record: Option<String> = inner.connection.clone().hget(&flow_key, "r").await?;
            let Some(record) = record else {
                return Ok(None);
            };
            let flow = record::decode_flow(&state, record.as_bytes(), &inner.keyring)?;
            Ok(flow.is_live(std::time::SystemTime::now()).then_some(flow))
        }
    }

    fn take_flow(&self, state: &str) -> impl Future<Output = Result<bool, RedisStoreError>> + Send {
        let (inner, state) = (self.inner.clone(), state.to_owned());
        async move {
            let member = escape(&state);
            let flow_key = format!("{}{member}", inner.flow_prefix());
            let taken: i64 = inner
                .scripts
                .take_flow
                .key(&flow_key)
                .arg(&member)
                .invoke_async(&mut inner.connection.clone())
                .await?;
            Ok(taken == 1)
        }
    }
}
