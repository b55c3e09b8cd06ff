//! `SqliteStore` on a real file: links survive a restart and a `kill -9`, no token is in the
//! file (or its write-ahead log) in the clear, keys rotate, and the refresh layer works over it.

use std::{
    convert::Infallible,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use http_body_util::Full;
use support::temp::TempDir;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::upstream::{
    classify::ClassifyUpstreamLayer,
    grant::{TokenResponse, refresher_fn},
    refresh::RefreshAndRetryLayer,
    store::{
        Link, LinkKey, Saved, TokenStore,
        crypto::Keyring,
        sqlite::{SqliteError, SqliteStore},
    },
};

fn keyring() -> Keyring {
    Keyring::new("k1", [42; 32])
}

fn key() -> LinkKey {
    LinkKey::for_subject("https://idp.example", "alice", "acme")
}

/// Every byte SQLite keeps for the store at `db`: the file, its write-ahead log, its index.
fn raw_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        if let Ok(content) = std::fs::read(&path) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// A provider that accepts only `accepted`, and its token endpoint, rotating to `at-N` / `rt-N`.
fn client_over<St: TokenStore>(
    store: St,
    accepted: &'static str,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<tower_bearer::upstream::body::UpstreamBody<Full<Bytes>>>,
    Error = tower_bearer::upstream::UpstreamError,
    Future: Send,
> + Clone {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let refresher = refresher_fn(move |_refresh_token| {
        let n = refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok(TokenResponse::new(format!("at-{n}"))
                .with_refresh_token(format!("rt-{n}"))
                .with_expires_in(Duration::from_secs(3600)))
        }
    });
    let provider = service_fn(move |request: Request<_>| async move {
        let ok = request.headers()[AUTHORIZATION] == format!("Bearer {accepted}").as_str();
        let mut response = Response::new(Full::<Bytes>::default());
        if !ok {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        Ok::<_, Infallible>(response)
    });
    ServiceBuilder::new()
        .layer(RefreshAndRetryLayer::new("acme", store, refresher))
        .layer(ClassifyUpstreamLayer::new())
        .service(provider)
}

fn tagged() -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::<Bytes>::from("payload"));
    request.extensions_mut().insert(key());
    request
}

fn stale_link() -> Link {
    Link::new("at-0")
        .with_refresh_token("rt-0")
        .with_expires_in(Duration::from_secs(3600))
}

async fn stored(store: &SqliteStore) -> (String, String) {
    let link = store.load(&key()).await.unwrap().expect("the link");
    (
        link.access_token().expose_secret().to_owned(),
        link.refresh_token().unwrap().expose_secret().to_owned(),
    )
}

#[tokio::test]
async fn links_survive_a_restart() {
    let dir = TempDir::new("restart");
    {
        let store = SqliteStore::open(dir.join("links.db"), keyring()).unwrap();
        store.insert(&key(), stale_link()).await.unwrap();
        // A refresh through the layers, written back to the file.
        let response = client_over(store.clone(), "at-1")
            .oneshot(tagged())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let reopened = SqliteStore::open(dir.join("links.db"), keyring()).unwrap();
    assert_eq!(stored(&reopened).await, ("at-1".into(), "rt-1".into()));
    // And it is used without refreshing again.
    let response = client_over(reopened.clone(), "at-1")
        .oneshot(tagged())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(stored(&reopened).await, ("at-1".into(), "rt-1".into()));
}

#[tokio::test]
async fn no_token_is_in_the_file_or_its_log_in_the_clear() {
    let dir = TempDir::new("plaintext");
    let store = SqliteStore::open(dir.join("links.db"), keyring()).unwrap();
    let (access, refresh) = ("at-Zq8vN3kP-SECRET", "rt-Wm2xR7tL-SECRET");
    store
        .insert(&key(), Link::new(access).with_refresh_token(refresh))
        .await
        .unwrap();
    let loaded = store.load(&key()).await.unwrap().unwrap();
    let (access2, refresh2) = ("at-Hd5yB1cQ-SECRET", "rt-Ps9gJ4vE-SECRET");
    let saved = store
        .save(
            &key(),
            Link::new(access2)
                .with_refresh_token(refresh2)
                .versioned_like(&loaded),
        )
        .await
        .unwrap();
    assert_eq!(saved, Saved::Written);

    let bytes = raw_bytes(&dir.join("links.db"));
    assert!(contains(&bytes, r#""kid":"k1""#), "the records are there");
    assert!(contains(&bytes, "alice"), "keys are not secret");
    for token in [access, refresh, access2, refresh2, "SECRET"] {
        assert!(!contains(&bytes, token), "{token} in the clear");
    }
    drop(store);
    // After the last connection closes (a checkpoint), still nothing.
    let bytes = raw_bytes(&dir.join("links.db"));
    assert!(!contains(&bytes, "SECRET"));

    // Only when explicitly asked for: plaintext.
    let plain_dir = TempDir::new("plaintext-explicit");
    let plain =
        SqliteStore::open(plain_dir.join("links.db"), Keyring::insecure_plaintext()).unwrap();
    plain.insert(&key(), Link::new(access)).await.unwrap();
    assert!(contains(&raw_bytes(&plain_dir.join("links.db")), access));
}

trait VersionedLike {
    fn versioned_like(self, other: &Link) -> Self;
}

impl VersionedLike for Link {
    fn versioned_like(self, other: &Link) -> Self {
        self.with_version(other.version().unwrap())
    }
}

#[tokio::test]
async fn keys_rotate_and_a_record_is_resealed_at_its_next_save() {
    let dir = TempDir::new("rotation");
    {
        let store = SqliteStore::open(dir.join("links.db"), Keyring::new("k1", [1; 32])).unwrap();
        store.insert(&key(), stale_link()).await.unwrap();
    }
    // Without the old key the record does not open: the store says it is unavailable.
    {
        let store = SqliteStore::open(dir.join("links.db"), Keyring::new("k2", [2; 32])).unwrap();
        let error = store.load(&key()).await.unwrap_err();
        assert!(matches!(error, SqliteError::Record(_)), "{error}");
        assert!(error.to_string().contains("`k1`"), "{error}");
    }
    let rotated = Keyring::new("k2", [2; 32]).with_old_key("k1", [1; 32]);
    let store = SqliteStore::open(dir.join("links.db"), rotated)
        .unwrap()
        .read_cache(Duration::ZERO, 0);
    let loaded = store.load(&key()).await.unwrap().unwrap();
    assert_eq!(loaded.access_token().expose_secret(), "at-0");
    assert_eq!(
        store
            .save(&key(), loaded.with_refresh_token("rt-9"))
            .await
            .unwrap(),
        Saved::Written
    );
    drop(store);
    // Now under k2 only: the old key can go.
    let store = SqliteStore::open(dir.join("links.db"), Keyring::new("k2", [2; 32])).unwrap();
    assert_eq!(stored(&store).await, ("at-0".into(), "rt-9".into()));
}

#[tokio::test]
async fn a_record_the_store_cannot_open_is_row_s1_and_stays_as_it_is() {
    let dir = TempDir::new("unopenable");
    {
        let store = SqliteStore::open(dir.join("links.db"), Keyring::new("k1", [1; 32])).unwrap();
        store.insert(&key(), stale_link()).await.unwrap();
    }
    // Started with the wrong key: the store is unavailable for that link (row S1), which is
    // neither the user's fault (401) nor a link to re-authorize — and nothing is overwritten.
    let wrong = SqliteStore::open(dir.join("links.db"), Keyring::new("k2", [2; 32])).unwrap();
    let error = client_over(wrong, "at-1")
        .oneshot(tagged())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            tower_bearer::upstream::UpstreamError::StoreUnavailable { .. }
        ),
        "{error:?}"
    );
    let right = SqliteStore::open(dir.join("links.db"), Keyring::new("k1", [1; 32])).unwrap();
    assert_eq!(stored(&right).await, ("at-0".into(), "rt-0".into()));
}

#[tokio::test]
async fn a_file_of_a_newer_schema_is_refused() {
    let dir = TempDir::new("schema");
    drop(SqliteStore::open(dir.join("links.db"), keyring()).unwrap());
    // Another process writes a newer release's schema version.
    {
        let connection = rusqlite::Connection::open(dir.join("links.db")).unwrap();
        connection
            .execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
    }
    let error = SqliteStore::open(dir.join("links.db"), keyring()).unwrap_err();
    assert!(matches!(error, SqliteError::NewerSchema(99)), "{error}");
}

const CHILD_DB: &str = "TOWER_BEARER_KILL9_DB";

/// Run by [`a_refreshed_link_survives_kill_9`] as its child process: refreshes the link
/// through the layers, says so, and waits to be killed.
#[test]
#[ignore = "the child process of a_refreshed_link_survives_kill_9"]
fn kill9_child() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&db, keyring()).unwrap();
        let response = client_over(store, "at-1").oneshot(tagged()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        println!("REFRESHED");
        std::future::pending::<()>().await;
    });
}

#[tokio::test]
async fn a_refreshed_link_survives_kill_9() {
    let dir = TempDir::new("kill9");
    {
        let store = SqliteStore::open(dir.join("links.db"), keyring()).unwrap();
        store.insert(&key(), stale_link()).await.unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill9_child", "--ignored", "--nocapture"])
        .env(CHILD_DB, dir.join("links.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("REFRESHED"))
    });
    let said = tokio::time::timeout(Duration::from_secs(30), said)
        .await
        .expect("the child refreshed in time")
        .unwrap();
    // SIGKILL: no destructor, no checkpoint, no clean close.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(said, "the child never refreshed ({status})");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }

    let reopened = SqliteStore::open(dir.join("links.db"), keyring()).unwrap();
    assert_eq!(stored(&reopened).await, ("at-1".into(), "rt-1".into()));
}
