//! `RedisStore` on a real Redis (Debian's `redis-server`, started by the test on loopback): the
//! lock across replicas (two stores on one server are two replicas: separate connections,
//! locks, caches), its lease and its fence, the read cache kept coherent across replicas, an
//! outage and the recovery after it, and no token in the clear in anything Redis writes.
//!
//! The example proxy's replicas over one Redis (separate processes, SIGKILL, the provider's
//! rotation) are in `store_proxy.rs`.

mod support;

use std::time::{Duration, Instant};

use support::redis::RedisServer;
use tower_bearer::upstream::store::{
    Link, LinkKey, Saved, TokenStore,
    crypto::Keyring,
    redis::{RedisStore, RedisStoreError},
};

fn keyring() -> Keyring {
    Keyring::new("k1", [9; 32])
}

fn key() -> LinkKey {
    LinkKey::for_subject("https://login.example", "alice", "files")
}

async fn replica(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url(), keyring())
        .lock_lease(Duration::from_millis(600))
        .read_cache(Duration::from_secs(60), 100)
        .connect()
        .await
        .unwrap()
}

/// Deletes every lock in Redis, as if its lease had lapsed.
fn delete_locks(server: &RedisServer) {
    let deleted = server.command(
        r#"EVAL "for _, k in ipairs(redis.call('KEYS', '*:lock:*')) do redis.call('DEL', k) end return 1" 0"#,
    );
    assert_eq!(deleted.as_deref(), Some(":1"));
}

async fn access(store: &RedisStore) -> Option<String> {
    store
        .load(&key())
        .await
        .unwrap()
        .map(|link| link.access_token().expose_secret().to_owned())
}

#[tokio::test]
async fn a_replica_waits_for_anothers_lock_and_gets_it_when_released() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server).await, replica(&server).await);
    a.insert(&key(), Link::new("at-1")).await.unwrap();
    assert_eq!(access(&b).await.as_deref(), Some("at-1"), "shared");

    let guard = a.lock(&key()).await.unwrap();
    // Held longer than its lease: the holder renews it, so the other replica still waits.
    let waiting = tokio::spawn({
        let b = b.clone();
        async move {
            let guard = b.lock(&key()).await.unwrap();
            (Instant::now(), guard)
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !waiting.is_finished(),
        "a lock held (and renewed) is exclusive across replicas"
    );
    let released = Instant::now();
    a.unlock(guard).await;
    let (granted, guard) = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("granted once released")
        .unwrap();
    println!(
        "granted to the other replica {:?} after the release",
        granted - released
    );
    b.unlock(guard).await;
}

#[tokio::test]
async fn a_dead_holders_lock_lapses_after_its_lease() {
    let server = RedisServer::start();
    let url = server.url();
    // The holder lives in a runtime of its own, shut down while it holds the lock: its
    // renewals stop as a killed process's would, and it never releases.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = RedisStore::builder(url, keyring())
                .lock_lease(Duration::from_millis(600))
                .connect()
                .await
                .unwrap();
            std::mem::forget(store.lock(&key()).await.unwrap());
        });
        runtime.shutdown_background();
    })
    .join()
    .unwrap();
    let other = replica(&server).await;
    let started = Instant::now();
    let guard = tokio::time::timeout(Duration::from_secs(3), other.lock(&key()))
        .await
        .expect("the lease lapses")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the dead holder's lock was still there: {:?}",
        started.elapsed()
    );
    other.unlock(guard).await;
}

#[tokio::test]
async fn a_holder_whose_lock_lapsed_never_writes() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server).await, replica(&server).await);
    a.insert(&key(), Link::new("at-1").with_refresh_token("rt-1"))
        .await
        .unwrap();
    let guard = a.lock(&key()).await.unwrap();
    let loaded = a.load(&key()).await.unwrap().unwrap();
    // Its lock is gone (as after a stall longer than the lease) and another replica takes it.
    delete_locks(&server);
    let other = b.lock(&key()).await.unwrap();
    let stale = a
        .save(&key(), loaded.clone().with_refresh_token("rt-stale"))
        .await;
    assert!(matches!(stale, Err(RedisStoreError::LockLost)), "{stale:?}");
    let fresh = b.load(&key()).await.unwrap().unwrap();
    assert_eq!(fresh.refresh_token().unwrap().expose_secret(), "rt-1");
    assert_eq!(
        b.save(&key(), fresh.with_refresh_token("rt-2"))
            .await
            .unwrap(),
        Saved::Written
    );
    b.unlock(other).await;
    a.unlock(guard).await;
    let stored = b.load(&key()).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-2");
}

#[tokio::test]
async fn a_lapsed_lock_nobody_took_is_taken_back_by_the_holders_write() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server).await, replica(&server).await);
    a.insert(&key(), Link::new("at-1").with_refresh_token("rt-1"))
        .await
        .unwrap();
    let guard = a.lock(&key()).await.unwrap();
    let loaded = a.load(&key()).await.unwrap().unwrap();
    delete_locks(&server);
    // Nobody took it: the write goes through and takes the lock back.
    assert_eq!(
        a.save(&key(), loaded.with_refresh_token("rt-2"))
            .await
            .unwrap(),
        Saved::Written
    );
    let other = tokio::time::timeout(Duration::from_millis(300), b.lock(&key())).await;
    assert!(other.is_err(), "the holder has its lock back");
    a.unlock(guard).await;
    let stored = b.load(&key()).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-2");
}

#[tokio::test]
async fn another_replicas_write_evicts_the_read_cache_at_once() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server).await, replica(&server).await);
    a.insert(&key(), Link::new("at-1")).await.unwrap();
    assert_eq!(access(&b).await.as_deref(), Some("at-1"));
    // b caches for a minute; a's re-link reaches it through the channel.
    a.insert(&key(), Link::new("at-2")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while access(&b).await.as_deref() != Some("at-2") {
        assert!(Instant::now() < deadline, "b kept the stale link");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.remove(&key()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while access(&b).await.is_some() {
        assert!(Instant::now() < deadline, "b kept the removed link");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn redis_down_is_a_prompt_error_and_back_up_nothing_is_lost() {
    let mut server = RedisServer::start();
    let store = RedisStore::builder(server.url(), keyring())
        .read_cache(Duration::ZERO, 0)
        .timeouts(Duration::from_millis(500), Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    store
        .insert(&key(), Link::new("at-1").with_refresh_token("rt-1"))
        .await
        .unwrap();
    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let load = store.load(&key()).await;
        assert!(matches!(load, Err(RedisStoreError::Redis(_))), "{load:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    let lock = tokio::time::timeout(Duration::from_secs(5), store.lock(&key())).await;
    assert!(matches!(lock, Ok(Err(RedisStoreError::Redis(_)))));
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    let link = loop {
        match store.load(&key()).await {
            Ok(link) => break link.unwrap(),
            Err(_) => {
                assert!(Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(link.refresh_token().unwrap().expose_secret(), "rt-1");
    let guard = store.lock(&key()).await.unwrap();
    assert_eq!(
        store
            .save(&key(), link.with_refresh_token("rt-2"))
            .await
            .unwrap(),
        Saved::Written
    );
    store.unlock(guard).await;
}

#[tokio::test]
async fn no_token_is_in_redis_in_the_clear() {
    const ACCESS: &str = "at-SECRET-plain-7f3a";
    const REFRESH: &str = "rt-SECRET-plain-9c1e";
    for (keyring, sealed) in [(keyring(), true), (Keyring::insecure_plaintext(), false)] {
        let server = RedisServer::start();
        let store = RedisStore::builder(server.url(), keyring)
            .connect()
            .await
            .unwrap();
        store
            .insert(&key(), Link::new(ACCESS).with_refresh_token("rt-first"))
            .await
            .unwrap();
        let guard = store.lock(&key()).await.unwrap();
        let loaded = store.load(&key()).await.unwrap().unwrap();
        let saved = store
            .save(&key(), loaded.with_refresh_token(REFRESH))
            .await
            .unwrap();
        assert_eq!(saved, Saved::Written);
        store.unlock(guard).await;
        // The append-only file (every command as sent) and a snapshot of the data set.
        let bytes = server.raw_bytes();
        let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(contains("alice"), "the check reads the right files");
        for token in [ACCESS, REFRESH, "rt-first"] {
            assert_eq!(contains(token), !sealed, "{token} (sealed: {sealed})");
        }
    }
}
