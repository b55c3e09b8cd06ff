//! Where the proxy keeps its users' links: in memory, in an SQLite file (feature `sqlite`) or in
//! Redis (feature `redis`), the tokens encrypted at rest — `[store]` in the configuration.
//!
//! [`LinkStore`] is either one behind the one `TokenStore` the outbound stacks and the connect
//! flow share.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

#[cfg(feature = "encryption")]
use tower_bearer::upstream::store::crypto::Keyring;
#[cfg(feature = "redis")]
use tower_bearer::upstream::store::redis::{RedisGuard, RedisStore, RedisStoreError};
#[cfg(feature = "sqlite")]
use tower_bearer::upstream::store::sqlite::{SqliteError, SqliteGuard, SqliteStore};
use tower_bearer::{
    BoxError,
    upstream::store::{
        FlowStore, Link, LinkKey, MemoryGuard, MemoryStore, PendingFlow, Saved, TokenStore,
    },
};

use super::config::{RedisUrl, StoreKey, StoreSettings};

/// The proxy's token store.
#[derive(Clone, Debug)]
pub enum LinkStore {
    /// In this process's memory: links are gone at a restart.
    Memory(MemoryStore),
    /// In an SQLite file, tokens encrypted: links survive restarts.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// In Redis, tokens encrypted: links survive restarts and are shared by replicas.
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

impl From<MemoryStore> for LinkStore {
    fn from(store: MemoryStore) -> Self {
        Self::Memory(store)
    }
}

#[cfg(feature = "sqlite")]
impl From<SqliteStore> for LinkStore {
    fn from(store: SqliteStore) -> Self {
        Self::Sqlite(store)
    }
}

#[cfg(feature = "redis")]
impl From<RedisStore> for LinkStore {
    fn from(store: RedisStore) -> Self {
        Self::Redis(store)
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite file failed.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    /// Redis failed.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] RedisStoreError),
    /// Never: the in-memory store does not fail.
    #[error("unreachable")]
    Never(#[from] std::convert::Infallible),
}

/// Opens the store `settings` describe. Errors name the configuration field at fault.
pub async fn open(settings: &StoreSettings) -> Result<LinkStore, BoxError> {
    match settings {
        StoreSettings::Memory => Ok(LinkStore::Memory(MemoryStore::new())),
        StoreSettings::Sqlite { path, key } => open_sqlite(path, key),
        StoreSettings::Redis {
            url,
            prefix,
            lock_lease,
            key,
        } => open_redis(url, prefix.as_deref(), *lock_lease, key).await,
    }
}

#[cfg(feature = "encryption")]
fn keyring(key: &StoreKey) -> Result<Keyring, BoxError> {
    Ok(match key {
        StoreKey::Plaintext => Keyring::insecure_plaintext(),
        StoreKey::Env { id, variable, old } => {
            let mut keyring = Keyring::from_env(id.clone(), variable)
                .map_err(|error| format!("`store.key_env`: {error}"))?;
            for (id, variable) in old {
                let encoded = std::env::var(variable).map_err(|_| {
                    format!("`store.old_keys`: the environment variable {variable} is not set")
                })?;
                let key = tower_bearer::upstream::store::crypto::decode_key(&encoded)
                    .map_err(|error| format!("`store.old_keys` ({variable}): {error}"))?;
                keyring = keyring.with_old_key(id.clone(), key);
            }
            keyring
        }
        StoreKey::Random => Keyring::new(
            "demo",
            super::random::bytes::<{ tower_bearer::upstream::store::crypto::KEY_LEN }>(),
        ),
    })
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &std::path::Path, key: &StoreKey) -> Result<LinkStore, BoxError> {
    let store = SqliteStore::open(path, keyring(key)?)
        .map_err(|error| format!("`store.path` ({}): {error}", path.display()))?;
    tracing::info!(path = %path.display(), "links kept in SQLite");
    Ok(LinkStore::Sqlite(store))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_: &std::path::Path, _: &StoreKey) -> Result<LinkStore, BoxError> {
    Err("`store.kind`: this build has no SQLite store: build with `--features sqlite`".into())
}

#[cfg(feature = "redis")]
async fn open_redis(
    url: &RedisUrl,
    prefix: Option<&str>,
    lock_lease: Option<std::time::Duration>,
    key: &StoreKey,
) -> Result<LinkStore, BoxError> {
    let (url, field) = match url {
        RedisUrl::Literal(url) => (url.clone(), "store.url"),
        RedisUrl::Env(variable) => (
            std::env::var(variable).map_err(|_| {
                format!("`store.url_env`: the environment variable {variable} is not set")
            })?,
            "store.url_env",
        ),
    };
    let mut builder = RedisStore::builder(url, keyring(key)?);
    if let Some(prefix) = prefix {
        builder = builder.prefix(prefix);
    }
    if let Some(lease) = lock_lease {
        builder = builder.lock_lease(lease);
    }
    let store = builder
        .connect()
        .await
        .map_err(|error| format!("`{field}`: {error}"))?;
    tracing::info!("links kept in Redis");
    Ok(LinkStore::Redis(store))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(
    _: &RedisUrl,
    _: Option<&str>,
    _: Option<std::time::Duration>,
    _: &StoreKey,
) -> Result<LinkStore, BoxError> {
    Err("`store.kind`: this build has no Redis store: build with `--features redis`".into())
}

/// The lock guard of either store.
#[derive(Debug)]
pub enum LinkGuard {
    /// [`MemoryStore`]'s.
    Memory(MemoryGuard),
    /// `SqliteStore`'s.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteGuard),
    /// `RedisStore`'s.
    #[cfg(feature = "redis")]
    Redis(RedisGuard),
}

/// Calls the same method on whichever store this is, converting its error.
macro_rules! each_store {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            LinkStore::Memory($s) => $call.await.map_err(StoreError::from),
            #[cfg(feature = "sqlite")]
            LinkStore::Sqlite($s) => $call.await.map_err(StoreError::from),
            #[cfg(feature = "redis")]
            LinkStore::Redis($s) => $call.await.map_err(StoreError::from),
        }
    };
}

/// [`LinkStore`]'s `load`: the store's own future, unboxed (it is on every request's path).
pub enum LinkLoad {
    /// [`MemoryStore`]'s.
    Memory(<MemoryStore as TokenStore>::Load),
    /// [`SqliteStore`]'s.
    #[cfg(feature = "sqlite")]
    Sqlite(<SqliteStore as TokenStore>::Load),
    /// [`RedisStore`]'s.
    #[cfg(feature = "redis")]
    Redis(<RedisStore as TokenStore>::Load),
}

impl Future for LinkLoad {
    type Output = Result<Option<Link>, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every store's load future is `Unpin`.
        match self.get_mut() {
            Self::Memory(load) => Pin::new(load).poll(cx).map_err(StoreError::from),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(load) => Pin::new(load).poll(cx).map_err(StoreError::from),
            #[cfg(feature = "redis")]
            Self::Redis(load) => Pin::new(load).poll(cx).map_err(StoreError::from),
        }
    }
}

impl TokenStore for LinkStore {
    type Error = StoreError;
    type Load = LinkLoad;
    type Guard = LinkGuard;

    fn load(&self, key: &LinkKey) -> LinkLoad {
        match self {
            Self::Memory(s) => LinkLoad::Memory(s.load(key)),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => LinkLoad::Sqlite(s.load(key)),
            #[cfg(feature = "redis")]
            Self::Redis(s) => LinkLoad::Redis(s.load(key)),
        }
    }

    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<LinkGuard, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move {
            match &store {
                Self::Memory(s) => s
                    .lock(&key)
                    .await
                    .map(LinkGuard::Memory)
                    .map_err(StoreError::from),
                #[cfg(feature = "sqlite")]
                Self::Sqlite(s) => s
                    .lock(&key)
                    .await
                    .map(LinkGuard::Sqlite)
                    .map_err(StoreError::from),
                #[cfg(feature = "redis")]
                Self::Redis(s) => s
                    .lock(&key)
                    .await
                    .map(LinkGuard::Redis)
                    .map_err(StoreError::from),
            }
        }
    }

    fn save(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move { each_store!(&store, s => TokenStore::save(s, &key, link)) }
    }

    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move { each_store!(&store, s => TokenStore::insert(s, &key, link)) }
    }

    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move { each_store!(&store, s => TokenStore::remove(s, &key)) }
    }

    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, StoreError>> + Send {
        let (store, issuer, user) = (self.clone(), issuer.map(str::to_owned), user.to_owned());
        async move { each_store!(&store, s => TokenStore::list(s, issuer.as_deref(), &user)) }
    }

    fn unlock(&self, guard: LinkGuard) -> impl Future<Output = ()> + Send {
        let store = self.clone();
        async move {
            match (store, guard) {
                (Self::Memory(store), LinkGuard::Memory(guard)) => store.unlock(guard).await,
                #[cfg(feature = "sqlite")]
                (Self::Sqlite(store), LinkGuard::Sqlite(guard)) => store.unlock(guard).await,
                #[cfg(feature = "redis")]
                (Self::Redis(store), LinkGuard::Redis(guard)) => store.unlock(guard).await,
                #[allow(unreachable_patterns)]
                (_, guard) => drop(guard),
            }
        }
    }
}

impl FlowStore for LinkStore {
    type Error = StoreError;

    fn put_flow(
        &self,
        state: &str,
        flow: PendingFlow,
        per_user: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let (store, state) = (self.clone(), state.to_owned());
        async move { each_store!(&store, s => s.put_flow(&state, flow, per_user)) }
    }

    fn peek_flow(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<PendingFlow>, StoreError>> + Send {
        let (store, state) = (self.clone(), state.to_owned());
        async move { each_store!(&store, s => s.peek_flow(&state)) }
    }

    fn take_flow(&self, state: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let (store, state) = (self.clone(), state.to_owned());
        async move { each_store!(&store, s => s.take_flow(&state)) }
    }
}
