//! Where the proxy keeps its users' links: in memory, or (feature `sqlite`) in an SQLite file
//! with the tokens encrypted at rest — `[store]` in the configuration.
//!
//! [`LinkStore`] is either one behind the one `TokenStore` the outbound stacks and the connect
//! flow share.

use std::{
    future::{Future, ready},
    pin::Pin,
};

#[cfg(feature = "sqlite")]
use tower_bearer::upstream::store::{
    crypto::Keyring,
    sqlite::{SqliteError, SqliteGuard, SqliteStore},
};
use tower_bearer::{
    BoxError,
    upstream::store::{Link, LinkKey, MemoryGuard, MemoryStore, Saved, TokenStore},
};

use super::config::{StoreKey, StoreSettings};

/// The proxy's token store.
#[derive(Clone, Debug)]
pub enum LinkStore {
    /// In this process's memory: links are gone at a restart.
    Memory(MemoryStore),
    /// In an SQLite file, tokens encrypted: links survive restarts.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
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

/// Why the store failed.
#[cfg(feature = "sqlite")]
pub type StoreError = SqliteError;
/// Why the store failed (never, in memory).
#[cfg(not(feature = "sqlite"))]
pub type StoreError = std::convert::Infallible;

/// Opens the store `settings` describe. Errors name the configuration field at fault.
pub fn open(settings: &StoreSettings) -> Result<LinkStore, BoxError> {
    match settings {
        StoreSettings::Memory => Ok(LinkStore::Memory(MemoryStore::new())),
        StoreSettings::Sqlite { path, key } => open_sqlite(path, key),
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &std::path::Path, key: &StoreKey) -> Result<LinkStore, BoxError> {
    let keyring = match key {
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
    };
    let store = SqliteStore::open(path, keyring)
        .map_err(|error| format!("`store.path` ({}): {error}", path.display()))?;
    tracing::info!(path = %path.display(), "links kept in SQLite");
    Ok(LinkStore::Sqlite(store))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_: &std::path::Path, _: &StoreKey) -> Result<LinkStore, BoxError> {
    Err("`store.kind`: this build has no SQLite store: build with `--features sqlite`".into())
}

/// The lock guard of either store.
#[derive(Debug)]
pub enum LinkGuard {
    /// [`MemoryStore`]'s.
    Memory(MemoryGuard),
    /// `SqliteStore`'s.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteGuard),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Runs a `MemoryStore` future, which cannot fail.
async fn infallible<T>(
    future: impl Future<Output = Result<T, std::convert::Infallible>>,
) -> Result<T, StoreError> {
    let Ok(value) = future.await;
    Ok(value)
}

impl TokenStore for LinkStore {
    type Error = StoreError;
    type Load = BoxFuture<Option<Link>>;
    type Guard = LinkGuard;

    fn load(&self, key: &LinkKey) -> Self::Load {
        match self {
            Self::Memory(store) => Box::pin(ready(Ok(store.get(key)))),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => store.load(key),
        }
    }

    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<LinkGuard, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move {
            match store {
                Self::Memory(store) => infallible(store.lock(&key)).await.map(LinkGuard::Memory),
                #[cfg(feature = "sqlite")]
                Self::Sqlite(store) => store.lock(&key).await.map(LinkGuard::Sqlite),
            }
        }
    }

    fn save(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move {
            match store {
                Self::Memory(store) => infallible(TokenStore::save(&store, &key, link)).await,
                #[cfg(feature = "sqlite")]
                Self::Sqlite(store) => store.save(&key, link).await,
            }
        }
    }

    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move {
            match store {
                Self::Memory(store) => infallible(TokenStore::insert(&store, &key, link)).await,
                #[cfg(feature = "sqlite")]
                Self::Sqlite(store) => store.insert(&key, link).await,
            }
        }
    }

    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let (store, key) = (self.clone(), key.clone());
        async move {
            match store {
                Self::Memory(store) => infallible(TokenStore::remove(&store, &key)).await,
                #[cfg(feature = "sqlite")]
                Self::Sqlite(store) => store.remove(&key).await,
            }
        }
    }

    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, StoreError>> + Send {
        let (store, issuer, user) = (self.clone(), issuer.map(str::to_owned), user.to_owned());
        async move {
            match store {
                Self::Memory(store) => {
                    infallible(TokenStore::list(&store, issuer.as_deref(), &user)).await
                }
                #[cfg(feature = "sqlite")]
                Self::Sqlite(store) => store.list(issuer.as_deref(), &user).await,
            }
        }
    }

    fn unlock(&self, guard: LinkGuard) -> impl Future<Output = ()> + Send {
        let store = self.clone();
        async move {
            match (store, guard) {
                (Self::Memory(store), LinkGuard::Memory(guard)) => store.unlock(guard).await,
                #[cfg(feature = "sqlite")]
                (Self::Sqlite(store), LinkGuard::Sqlite(guard)) => store.unlock(guard).await,
                #[cfg(feature = "sqlite")]
                (_, guard) => drop(guard),
            }
        }
    }
}
