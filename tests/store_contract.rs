//! The contract every `TokenStore` keeps (versions, conditional save, lock per key, list),
//! checked by one store-generic suite against each store: `MemoryStore`, and `SqliteStore` on a
//! real file (feature `sqlite`). A later store (Redis) runs the same suite.

use std::time::{Duration, SystemTime};

use tower_bearer::upstream::store::{
    FlowStore, Link, LinkKey, MemoryStore, PendingFlow, Saved, TokenStore,
};

mod support;

async fn load<St: TokenStore>(store: &St, key: &LinkKey) -> Option<Link> {
    store.load(key).await.unwrap()
}

fn access(link: &Link) -> &str {
    link.access_token().expose_secret()
}

/// A re-link or an unlink wins over a refresh that started before it; the lock survives them.
async fn a_removed_link_is_not_resurrected_by_a_refresh_in_flight<St: TokenStore>(store: St) {
    let key = LinkKey::new("u", "p");
    store
        .insert(&key, Link::new("a").with_refresh_token("r"))
        .await
        .unwrap();
    let guard = store.lock(&key).await.unwrap();
    let loaded = load(&store, &key).await.unwrap();
    assert!(
        loaded.version().is_some(),
        "loaded links carry their version"
    );
    // The user disconnects while the refresh holds the lock…
    assert!(store.remove(&key).await.unwrap());
    // …and connects again: the new link is refreshed under the same lock.
    store.insert(&key, Link::new("b")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_millis(20), store.lock(&key)).await;
    assert!(second.is_err(), "a second lock for the same link");
    // The refresh's write of the old link is dropped.
    let saved = store
        .save(&key, loaded.clone().with_needs_reauthorization(true))
        .await
        .unwrap();
    assert_eq!(saved, Saved::Superseded);
    let now = load(&store, &key).await.unwrap();
    assert_eq!(access(&now), "b");
    assert!(!now.needs_reauthorization());
    // Removed for good: still not resurrected.
    assert!(store.remove(&key).await.unwrap());
    assert!(!store.remove(&key).await.unwrap(), "nothing left to remove");
    assert_eq!(store.save(&key, loaded).await.unwrap(), Saved::Superseded);
    assert!(load(&store, &key).await.is_none());
    store.unlock(guard).await;
    // A write of a link loaded from this store goes through, and twice in a row.
    store.insert(&key, Link::new("c")).await.unwrap();
    let loaded = load(&store, &key).await.unwrap();
    let saved = store
        .save(&key, loaded.clone().with_refresh_token("r2"))
        .await
        .unwrap();
    assert_eq!(saved, Saved::Written);
    let saved = store
        .save(&key, loaded.with_refresh_token("r3"))
        .await
        .unwrap();
    assert_eq!(saved, Saved::Written);
    let stored = load(&store, &key).await.unwrap();
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "r3");
    // A link not loaded from the store (no version) is never written by `save`.
    assert_eq!(
        store.save(&key, Link::new("x")).await.unwrap(),
        Saved::Superseded
    );
    let fresh = LinkKey::new("u", "fresh");
    assert_eq!(
        store.save(&fresh, Link::new("x")).await.unwrap(),
        Saved::Superseded
    );
    assert!(load(&store, &fresh).await.is_none());
}

async fn lock_is_per_key<St: TokenStore>(store: St) {
    let a = LinkKey::new("u", "a");
    let b = LinkKey::new("u", "b");
    let guard = store.lock(&a).await.unwrap();
    // Another key is not blocked.
    let other = store.lock(&b).await.unwrap();
    store.unlock(other).await;
    // The same key is.
    let again = tokio::time::timeout(Duration::from_millis(20), store.lock(&a)).await;
    assert!(again.is_err());
    store.unlock(guard).await;
    assert!(store.lock(&a).await.is_ok());
}

/// Every field survives a round trip; versions are new at every insert.
async fn links_round_trip_and_versions_are_never_reused<St: TokenStore>(store: St) {
    let key = LinkKey::for_subject("https://idp.example", "alice", "acme");
    let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_000_123);
    let issued = SystemTime::UNIX_EPOCH + Duration::from_millis(1_899_999_000_456);
    let link = Link::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_at(expires)
        .with_issued_at(issued)
        .with_scopes(["files.read", "files.write"])
        .with_needs_reauthorization(true);
    let first = store.insert(&key, link).await.unwrap();
    let stored = load(&store, &key).await.unwrap();
    assert_eq!(stored.version(), Some(first));
    assert_eq!(access(&stored), "at-1");
    assert_eq!(stored.refresh_token().unwrap().expose_secret(), "rt-1");
    assert_eq!(stored.expires_at(), Some(expires));
    assert_eq!(stored.issued_at(), Some(issued));
    assert_eq!(stored.scopes(), ["files.read", "files.write"]);
    assert!(stored.needs_reauthorization());
    // The same subject without the issuer is another key.
    assert!(load(&store, &LinkKey::new("alice", "acme")).await.is_none());

    let second = store.insert(&key, Link::new("at-2")).await.unwrap();
    assert_ne!(first, second);
    store.remove(&key).await.unwrap();
    let third = store.insert(&key, Link::new("at-3")).await.unwrap();
    assert!(
        third != first && third != second,
        "{first} {second} {third}"
    );
    let minimal = load(&store, &key).await.unwrap();
    assert!(minimal.refresh_token().is_none());
    assert_eq!(minimal.expires_at(), None);
    assert!(minimal.scopes().is_empty());
}

async fn list_returns_one_users_links<St: TokenStore>(store: St) {
    let iss = "https://idp.example";
    for (issuer, user, provider) in [
        (Some(iss), "alice", "acme"),
        (Some(iss), "alice", "github"),
        (Some("https://other.example"), "alice", "acme"),
        (Some(iss), "bob", "acme"),
        (None, "alice", "plain"),
    ] {
        let key = match issuer {
            Some(issuer) => LinkKey::for_subject(issuer, user, provider),
            None => LinkKey::new(user, provider),
        };
        store
            .insert(&key, Link::new(format!("at-{user}-{provider}")))
            .await
            .unwrap();
    }
    let mut links = store.list(Some(iss), "alice").await.unwrap();
    links.sort_by(|a, b| a.0.provider().cmp(b.0.provider()));
    let providers: Vec<_> = links.iter().map(|(key, _)| key.provider()).collect();
    assert_eq!(providers, ["acme", "github"]);
    assert_eq!(access(&links[0].1), "at-alice-acme");
    assert!(links.iter().all(|(_, link)| link.version().is_some()));
    let plain = store.list(None, "alice").await.unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].0, LinkKey::new("alice", "plain"));
    assert!(store.list(None, "carol").await.unwrap().is_empty());
}

/// Through the refresh layer: a refresh that started before a re-link (or an unlink) does not
/// write its tokens over the new link (or bring the old one back).
async fn a_refresh_in_flight_loses_to_a_relink_and_an_unlink<St: TokenStore>(store: St) {
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use std::sync::Arc;
    use tokio::sync::Notify;
    use tower::{ServiceBuilder, ServiceExt, service_fn};
    use tower_bearer::upstream::{
        classify::ClassifyUpstreamLayer,
        grant::{TokenResponse, refresher_fn},
        refresh::RefreshAndRetryLayer,
    };

    for relink in [true, false] {
        let key = LinkKey::new("alice", "acme");
        store
            .insert(&key, Link::new("at-0").with_refresh_token("rt-0"))
            .await
            .unwrap();
        let asked = Arc::new(Notify::new());
        let answer = Arc::new(Notify::new());
        let refresher = refresher_fn({
            let (asked, answer) = (asked.clone(), answer.clone());
            move |_| {
                let (asked, answer) = (asked.clone(), answer.clone());
                async move {
                    asked.notify_one();
                    answer.notified().await;
                    Ok(TokenResponse::new("at-1").with_refresh_token("rt-1"))
                }
            }
        });
        // The provider rejects the stored token, so the request refreshes.
        let provider = service_fn(|_: Request<_>| async {
            let mut response = Response::new(Full::<Bytes>::default());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok::<_, std::convert::Infallible>(response)
        });
        let client = ServiceBuilder::new()
            .layer(RefreshAndRetryLayer::new("acme", store.clone(), refresher))
            .layer(ClassifyUpstreamLayer::new())
            .service(provider);
        let mut request = Request::new(Full::<Bytes>::default());
        request.extensions_mut().insert(key.clone());
        let call = tokio::spawn(client.oneshot(request));
        asked.notified().await;
        // The user connects again (or disconnects) while the token endpoint is asked.
        if relink {
            store
                .insert(&key, Link::new("at-new").with_refresh_token("rt-new"))
                .await
                .unwrap();
        } else {
            assert!(store.remove(&key).await.unwrap());
        }
        answer.notify_one();
        let _ = call.await.unwrap();
        // The refresh's write back was dropped (give a background write-back a moment too).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = load(&store, &key).await;
        if relink {
            let now = now.expect("the new link");
            assert_eq!(access(&now), "at-new");
            assert_eq!(now.refresh_token().unwrap().expose_secret(), "rt-new");
        } else {
            assert!(now.is_none(), "resurrected by the refresh");
        }
        store.remove(&key).await.unwrap();
    }
}

fn flow(user: &str, provider: &str, binding: &str) -> PendingFlow {
    PendingFlow::new(
        LinkKey::for_subject("https://login.example", user, provider),
        format!("verifier-{binding}"),
        binding.to_owned(),
        Duration::from_secs(600),
    )
}

/// A pending flow can be looked at without being used up, and is taken exactly once.
async fn a_flow_is_peeked_then_taken_once<St: FlowStore>(store: St) {
    let started = flow("alice", "acme", "b-1").with_return_to("/settings");
    store.put_flow("state-1", started.clone(), 5).await.unwrap();
    for _ in 0..2 {
        // A callback that fails its checks (a wrong binding, another provider's path) peeks
        // and leaves the flow for the real browser.
        let peeked = store.peek_flow("state-1").await.unwrap().expect("kept");
        assert_eq!(peeked.key(), started.key());
        assert_eq!(peeked.verifier().expose_secret(), "verifier-b-1");
        assert_eq!(peeked.binding().expose_secret(), "b-1");
        assert_eq!(peeked.return_to(), Some("/settings"));
    }
    assert!(store.peek_flow("state-unknown").await.unwrap().is_none());
    assert!(!store.take_flow("state-unknown").await.unwrap());
    // Two callbacks race: exactly one takes it.
    let (a, b) = tokio::join!(store.take_flow("state-1"), store.take_flow("state-1"));
    assert!(a.unwrap() ^ b.unwrap(), "taken exactly once");
    assert!(store.peek_flow("state-1").await.unwrap().is_none());
    assert!(!store.take_flow("state-1").await.unwrap());
}

/// A user keeps at most `per_user` flows, the newest; other users' flows are untouched; an
/// expired flow is neither shown nor taken.
async fn flows_are_bounded_per_user_and_expire<St: FlowStore>(store: St) {
    store
        .put_flow("bob-1", flow("bob", "acme", "b"), 2)
        .await
        .unwrap();
    for i in 1..=5 {
        let provider = if i % 2 == 0 { "acme" } else { "other" };
        store
            .put_flow(&format!("alice-{i}"), flow("alice", provider, "a"), 2)
            .await
            .unwrap();
    }
    for i in 1..=3 {
        let state = format!("alice-{i}");
        assert!(
            store.peek_flow(&state).await.unwrap().is_none(),
            "{state} evicted"
        );
        assert!(!store.take_flow(&state).await.unwrap());
    }
    for state in ["alice-4", "alice-5", "bob-1"] {
        assert!(
            store.peek_flow(state).await.unwrap().is_some(),
            "{state} kept"
        );
    }
    // Taking one makes room: the next flow does not evict the other.
    assert!(store.take_flow("alice-5").await.unwrap());
    store
        .put_flow("alice-6", flow("alice", "acme", "a"), 2)
        .await
        .unwrap();
    assert!(store.peek_flow("alice-4").await.unwrap().is_some());
    assert!(store.peek_flow("alice-6").await.unwrap().is_some());

    let expired = flow("carol", "acme", "c").with_expires_at(SystemTime::now());
    store.put_flow("carol-1", expired, 2).await.unwrap();
    assert!(store.peek_flow("carol-1").await.unwrap().is_none());
    assert!(!store.take_flow("carol-1").await.unwrap());
}

/// The whole suite, each part on a fresh store from `new`.
async fn contract<St, F, Fut>(mut new: F)
where
    St: TokenStore + FlowStore,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = St>,
{
    a_refresh_in_flight_loses_to_a_relink_and_an_unlink(new().await).await;
    a_removed_link_is_not_resurrected_by_a_refresh_in_flight(new().await).await;
    lock_is_per_key(new().await).await;
    links_round_trip_and_versions_are_never_reused(new().await).await;
    list_returns_one_users_links(new().await).await;
    a_flow_is_peeked_then_taken_once(new().await).await;
    flows_are_bounded_per_user_and_expire(new().await).await;
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(|| async { MemoryStore::new() }).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_keeps_the_contract() {
    use tower_bearer::upstream::store::{crypto::Keyring, redis::RedisStore};

    let server = support::redis::RedisServer::start();
    let mut n = 0;
    contract(|| {
        n += 1;
        // A prefix of its own: a fresh store on the same server.
        let builder = RedisStore::builder(server.url(), Keyring::new("k1", [7; 32]))
            .prefix(format!("contract-{n}"));
        async move { builder.connect().await.unwrap() }
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    use tower_bearer::upstream::store::{crypto::Keyring, sqlite::SqliteStore};

    let dir = support::temp::TempDir::new("store-contract");
    let mut n = 0;
    contract(|| {
        n += 1;
        let keyring = Keyring::new("k1", [7; 32]);
        std::future::ready(SqliteStore::open(dir.join(format!("links-{n}.db")), keyring).unwrap())
    })
    .await;
}
