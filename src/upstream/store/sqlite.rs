//! [`SqliteStore`]: links in an embedded SQLite file, tokens encrypted at rest (feature
//! `sqlite`).
//!
//! - **Persistent.** One file (plus SQLite's `-wal` and `-shm` beside it), created and migrated
//!   when opened: a `schema_version` table says which migrations ran, and a file written by a
//!   newer release is refused rather than misread.
//! - **Durable.** Write-ahead logging with `synchronous = FULL`: a save is on disk when it
//!   returns, so links survive a restart, a `kill -9` *and* a power cut. `NORMAL` would survive
//!   a killed process too, but may lose the last commits on a power cut — and a lost rotated
//!   refresh token is a lost link (RFC 9700 §4.14). Writes are rare (one per refresh, per
//!   token lifetime), so the fsync is cheap where it matters.
//! - **Encrypted.** Each row holds a [versioned record](super::record) whose tokens a [`Keyring`] sealed;
//!   nothing in the file (or its write-ahead log) is a token in the clear, unless the keyring is
//!   [`Keyring::insecure_plaintext`].
//! - **Off the async threads.** SQLite calls block; they run on tokio's blocking pool
//!   (`spawn_blocking`), over one connection.
//! - **Locks in this process.** SQLite is single-host and a `BEGIN IMMEDIATE` cannot be held
//!   across a refresh, so the per-link lock is an in-process mutex: **one process per file**.
//!   Replicas need a shared store (Redis).
//! - **A short read cache.** Every request loads its link; a bounded cache of recently read
//!   links (1 s by default, see [`read_cache`](SqliteStore::read_cache)) answers repeated
//!   loads without a trip to the blocking pool. Every write through the store updates it, so it
//!   is never staler than the file as this process wrote it; the lifetime only bounds how long
//!   a change made to the file from outside takes to be seen.
//!
//! ```no_run
//! use tower_bearer::upstream::store::{crypto::Keyring, sqlite::SqliteStore};
//!
//! let keyring = Keyring::from_env("k1", "LINK_STORE_KEY")?;
//! let store = SqliteStore::open("links.db", keyring)?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::{
    fmt,
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    CachedLoad, FlowStore, Link, LinkKey, PendingFlow, Saved, TokenStore,
    crypto::Keyring,
    local::{KeyLockGuard, KeyLocks, ReadCache, lock},
    record::{self, RecordError},
};

/// The schema this release writes; migrations run in order up to it.
const SCHEMA_VERSION: i64 = 2;

const MIGRATIONS: [&str; 2] = [
    r"
    CREATE TABLE links (
        issuer     TEXT    NOT NULL, -- '' when the key has none
        user       TEXT    NOT NULL,
        provider   TEXT    NOT NULL,
        version    INTEGER NOT NULL, -- the link's version: new at every insert
        record     TEXT    NOT NULL, -- the versioned record, tokens sealed
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (issuer, user, provider)
    ) WITHOUT ROWID;
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('link_version', 0);
",
    // Pending connect flows (`FlowStore`).
    r"
    CREATE TABLE flows (
        state      TEXT    PRIMARY KEY,
        issuer     TEXT    NOT NULL, -- '' when the key has none
        user       TEXT    NOT NULL,
        seq        INTEGER NOT NULL, -- the order flows were started in
        expires_ms INTEGER NOT NULL,
        record     TEXT    NOT NULL  -- the flow's record, its secrets sealed
    ) WITHOUT ROWID;
    CREATE INDEX flows_by_user ON flows (issuer, user, seq);
    CREATE INDEX flows_by_expiry ON flows (expires_ms);
    INSERT INTO counters (name, value) VALUES ('flow_seq', 0);
",
];

/// How long a link read from the file is answered from memory, unless configured.
pub const DEFAULT_READ_CACHE_TTL: Duration = Duration::from_secs(1);

/// How many links the read cache holds at most, unless configured.
pub const DEFAULT_READ_CACHE_CAPACITY: usize = 10_000;

/// How long SQLite waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the SQLite store failed. Never contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite failed (the file is unreadable, unwritable, locked, full, corrupt …).
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A record could not be sealed or opened (a key missing from the keyring, an altered
    /// record, a record of a newer release).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The file's schema is newer than this release knows.
    #[error("the link store's schema is version {0}; this release knows up to {SCHEMA_VERSION}")]
    NewerSchema(i64),
    /// The blocking task did not finish (it panicked, or the runtime is shutting down).
    #[error("the link store's blocking task did not finish")]
    Interrupted,
}

/// Links in an embedded SQLite file, tokens encrypted at rest; see the [module docs](self).
///
/// Cheap to clone; clones share the connection, the locks and the read cache.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    connection: Mutex<Connection>,
    keyring: Keyring,
    locks: KeyLocks,
    cache: ReadCache,
}

impl SqliteStore {
    /// Opens (creating and migrating it if needed) the store at `path`, sealing tokens with
    /// `keyring`. Blocks while it opens: call it at start-up (or in `spawn_blocking`).
    pub fn open(path: impl AsRef<Path>, keyring: Keyring) -> Result<Self, SqliteError> {
        let path = path.as_ref().to_path_buf();
        let mut connection = Connection::open(&path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never wait for the writer; FULL: each commit is fsynced (see the module
        // docs).
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "the link store could not use write-ahead logging");
        }
        connection.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut connection)?;
        if keyring.is_plaintext() {
            tracing::warn!(
                path = %path.display(),
                "the link store keeps tokens UNENCRYPTED (Keyring::insecure_plaintext)"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                connection: Mutex::new(connection),
                keyring,
                locks: KeyLocks::default(),
                cache: ReadCache::new(DEFAULT_READ_CACHE_TTL, DEFAULT_READ_CACHE_CAPACITY),
            }),
        })
    }

    /// Answers repeated loads of a link from memory for up to `ttl` after it was read, holding
    /// at most `capacity` links. `Duration::ZERO` reads the file every time. Writes through
    /// this store always update it.
    pub fn read_cache(self, ttl: Duration, capacity: usize) -> Self {
        self.inner.cache.configure(ttl, capacity);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` over the connection on the blocking pool (inline outside a tokio runtime).
    fn blocking<T, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, SqliteError>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let run = move || {
            let mut connection = lock(&inner.connection);
            f(&inner, &mut connection)
        };
        let task = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Ok(runtime.spawn_blocking(run)),
            Err(_) => Err(run()),
        };
        async move {
            match task {
                Ok(task) => task.await.map_err(|_| SqliteError::Interrupted)?,
                Err(done) => done,
            }
        }
    }
}

fn migrate(connection: &mut Connection) -> Result<(), SqliteError> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        [],
    )?;
    let current: i64 = tx
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema(current));
    }
    for (version, migration) in (1..).zip(MIGRATIONS) {
        if version > current {
            tx.execute_batch(migration)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [version],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn now_ms() -> i64 {
    millis_since_epoch(SystemTime::now())
}

fn millis_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

fn version_of(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or_default()
}

impl Inner {
    fn read(&self, connection: &Connection, key: &LinkKey) -> Result<Option<Link>, SqliteError> {
        let row = connection
            .prepare_cached(
                "SELECT version, record FROM links WHERE issuer = ?1 AND user = ?2 AND provider = ?3",
            )?
            .query_row(
                params![key.issuer().unwrap_or(""), key.user(), key.provider()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()?;
        let Some((version, text)) = row else {
            return Ok(None);
        };
        let (link, _kid) = record::decode(key, text.as_bytes(), &self.keyring)?;
        Ok(Some(link.with_version(version_of(version))))
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("keyring", &self.inner.keyring)
            .finish_non_exhaustive()
    }
}

/// The lock guard of [`SqliteStore`]: the link's in-process lock.
pub struct SqliteGuard(#[allow(dead_code)] KeyLockGuard);

impl fmt::Debug for SqliteGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteGuard")
    }
}

/// The future of [`SqliteStore`]'s `load`.
pub type SqliteLoad = CachedLoad<SqliteError>;

impl TokenStore for SqliteStore {
    type Error = SqliteError;
    type Load = SqliteLoad;
    type Guard = SqliteGuard;

    fn load(&self, key: &LinkKey) -> Self::Load {
        if let Some(link) = self.inner.cache.get(key) {
            return CachedLoad::cached(link);
        }
        let epoch = self.inner.cache.epoch();
        let key = key.clone();
        CachedLoad::reading(self.blocking(move |inner, connection| {
            let link = inner.read(connection, &key)?;
            if let Some(link) = &link {
                inner.cache.put_read(epoch, &key, link);
            }
            Ok(link)
        }))
    }

    fn lock(&self, key: &LinkKey) -> impl Future<Output = Result<SqliteGuard, SqliteError>> + Send {
        let (locks, key) = (self.inner.locks.clone(), key.clone());
        async move { Ok(SqliteGuard(locks.lock(&key).await)) }
    }

    fn save(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<Saved, SqliteError>> + Send {
        let key = key.clone();
        self.blocking(move |inner, connection| {
            let Some(version) = link.version().and_then(|v| i64::try_from(v).ok()) else {
                return Ok(Saved::Superseded);
            };
            let text = record::encode(&key, &link, &inner.keyring)?;
            let changed = connection
                .prepare_cached(
                    "UPDATE links SET record = ?1, updated_ms = ?2 \
                     WHERE issuer = ?3 AND user = ?4 AND provider = ?5 AND version = ?6",
                )?
                .execute(params![
                    text,
                    now_ms(),
                    key.issuer().unwrap_or(""),
                    key.user(),
                    key.provider(),
                    version
                ])?;
            if changed == 0 {
                tracing::debug!(
                    provider = key.provider(),
                    "the link was removed or replaced meanwhile; not saving"
                );
                return Ok(Saved::Superseded);
            }
            inner.cache.written(&key, Some(&link));
            Ok(Saved::Written)
        })
    }

    fn insert(
        &self,
        key: &LinkKey,
        link: Link,
    ) -> impl Future<Output = Result<u64, SqliteError>> + Send {
        let key = key.clone();
        self.blocking(move |inner, connection| {
            let text = record::encode(&key, &link, &inner.keyring)?;
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row(
                "UPDATE counters SET value = value + 1 WHERE name = 'link_version' RETURNING value",
                [],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO links (issuer, user, provider, version, record, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (issuer, user, provider) DO UPDATE SET \
                 version = excluded.version, record = excluded.record, updated_ms = excluded.updated_ms",
                params![
                    key.issuer().unwrap_or(""),
                    key.user(),
                    key.provider(),
                    version,
                    text,
                    now_ms()
                ],
            )?;
            tx.commit()?;
            let version = version_of(version);
            inner.cache.written(&key, Some(&link.with_version(version)));
            Ok(version)
        })
    }

    fn remove(&self, key: &LinkKey) -> impl Future<Output = Result<bool, SqliteError>> + Send {
        let key = key.clone();
        self.blocking(move |inner, connection| {
            let removed = connection
                .prepare_cached(
                    "DELETE FROM links WHERE issuer = ?1 AND user = ?2 AND provider = ?3",
                )?
                .execute(params![
                    key.issuer().unwrap_or(""),
                    key.user(),
                    key.provider()
                ])?;
            inner.cache.written(&key, None);
            Ok(removed > 0)
        })
    }

    fn list(
        &self,
        issuer: Option<&str>,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(LinkKey, Link)>, SqliteError>> + Send {
        let issuer = issuer.unwrap_or("").to_owned();
        let user = user.to_owned();
        self.blocking(move |inner, connection| {
            let mut statement = connection.prepare_cached(
                "SELECT provider, version, record FROM links WHERE issuer = ?1 AND user = ?2",
            )?;
            let rows = statement
                .query_map(params![issuer, user], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(provider, version, text)| {
                    let key = LinkKey::for_subject(issuer.as_str(), user.as_str(), provider);
                    let (link, _kid) = record::decode(&key, text.as_bytes(), &inner.keyring)?;
                    Ok((key, link.with_version(version_of(version))))
                })
                .collect()
        })
    }
}

impl FlowStore for SqliteStore {
    type Error = SqliteError;

    fn put_flow(
        &self,
        state: &str,
        flow: PendingFlow,
        per_user: usize,
    ) -> impl Future<Output = Result<(), SqliteError>> + Send {
        let state = state.to_owned();
        self.blocking(move |inner, connection| {
            let record = record::encode_flow(&state, &flow, &inner.keyring)?;
            let key = flow.key();
            let expires_ms = millis_since_epoch(flow.expires_at());
            let tx =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM flows WHERE expires_ms <= ?1", [now_ms()])?;
            let seq: i64 = tx.query_row(
                "UPDATE counters SET value = value + 1 WHERE name = 'flow_seq' RETURNING value",
                [],
                |row| row.get(0),
            )?;
            let (issuer, user) = (key.issuer().unwrap_or(""), key.user());
            tx.execute(
                "INSERT OR REPLACE INTO flows (state, issuer, user, seq, expires_ms, record) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![state, issuer, user, seq, expires_ms, record],
            )?;
            // The user's oldest flows beyond `per_user` go.
            tx.execute(
                "DELETE FROM flows WHERE state IN (SELECT state FROM flows \
                 WHERE issuer = ?1 AND user = ?2 ORDER BY seq DESC LIMIT -1 OFFSET ?3)",
                params![issuer, user, i64::try_from(per_user).unwrap_or(i64::MAX)],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn peek_flow(
        &self,
        state: &str,
    ) -> impl Future<Output = Result<Option<PendingFlow>, SqliteError>> + Send {
        let state = state.to_owned();
        self.blocking(move |inner, connection| {
            let record: Option<String> = connection
                .prepare_cached("SELECT record FROM flows WHERE state = ?1 AND expires_ms > ?2")?
                .query_row(params![state, now_ms()], |row| row.get(0))
                .optional()?;
            record
                .map(|record| record::decode_flow(&state, record.as_bytes(), &inner.keyring))
                .transpose()
                .map_err(SqliteError::from)
        })
    }

    fn take_flow(&self, state: &str) -> impl Future<Output = Result<bool, SqliteError>> + Send {
        let state = state.to_owned();
        self.blocking(move |_, connection| {
            let taken = connection
                .prepare_cached("DELETE FROM flows WHERE state = ?1 AND expires_ms > ?2")?
                .execute(params![state, now_ms()])?;
            Ok(taken == 1)
        })
    }
}
