//! The example proxy's `[store]`: the configuration it accepts and refuses, and links that
//! survive a restart of the proxy over its SQLite file — refreshed (rotated) before the restart,
//! used and refreshed again after it without the user connecting again.

#[allow(dead_code)] // main.rs uses all of the example; these tests use a part.
#[path = "../examples/proxy/app.rs"]
mod app;
mod support;

use std::path::PathBuf;

use app::config::{Settings, StoreKey, StoreSettings};

const BASE: &str = r#"
public_url = "https://gateway.example.com"
realm = "gateway"

[auth]
issuer = "https://login.example.com"
audience = "https://gateway.example.com"

[providers.example]
base_url = "https://api.example.com"
authorize_url = "https://auth.example.com/authorize"
token_url = "https://auth.example.com/token"
client_id = "id"
client_secret = "secret"
"#;

fn with_store(table: &str) -> String {
    format!("{BASE}\n[store]\n{table}\n")
}

#[test]
fn the_store_table_and_its_defaults() {
    let settings = Settings::from_toml(BASE).unwrap();
    assert_eq!(settings.store, StoreSettings::Memory, "no table: in memory");
    let settings = Settings::from_toml(&with_store(r#"key_env = "LINK_KEY""#)).unwrap();
    assert_eq!(
        settings.store,
        StoreSettings::Sqlite {
            path: PathBuf::from("proxy.db"),
            key: StoreKey::Env {
                id: "k1".into(),
                variable: "LINK_KEY".into(),
                old: Vec::new()
            }
        }
    );
    let settings = Settings::from_toml(&with_store(
        r#"kind = "sqlite"
path = "/var/lib/x.db"
key_env = "NEW"
key_id = "2025"
old_keys = [{ id = "2024", env = "OLD" }]"#,
    ))
    .unwrap();
    assert_eq!(
        settings.store,
        StoreSettings::Sqlite {
            path: PathBuf::from("/var/lib/x.db"),
            key: StoreKey::Env {
                id: "2025".into(),
                variable: "NEW".into(),
                old: vec![("2024".into(), "OLD".into())]
            }
        }
    );
    let settings = Settings::from_toml(&with_store("plaintext = true")).unwrap();
    assert!(matches!(
        settings.store,
        StoreSettings::Sqlite {
            key: StoreKey::Plaintext,
            ..
        }
    ));
    let settings = Settings::from_toml(&with_store(r#"kind = "memory""#)).unwrap();
    assert_eq!(settings.store, StoreSettings::Memory);
}

#[test]
fn a_persistent_store_without_a_key_is_refused_naming_the_field() {
    for (table, field) in [
        ("", "store.key_env"),
        (r#"path = "links.db""#, "store.key_env"),
        ("plaintext = false", "store.key_env"),
        ("key_env = \"K\"\nplaintext = true", "store.plaintext"),
        ("kind = \"memory\"\npath = \"x.db\"", "store.kind"),
        ("kind = \"redis\"", "store.key_env"),
        ("kind = \"redis\"\nplaintext = true", "store.url"),
        (
            "kind = \"redis\"\nplaintext = true\nurl = \"redis://x/\"\nurl_env = \"U\"",
            "store.url",
        ),
        (
            "kind = \"redis\"\nplaintext = true\npath = \"x.db\"",
            "store.path",
        ),
        (
            "kind = \"redis\"\nplaintext = true\nurl = \"redis://x/\"\nlock_lease_ms = 10",
            "store.lock_lease_ms",
        ),
        ("key_env = \"K\"\nurl = \"redis://x/\"", "store.url"),
        ("key_env = \"K\"\nkey_id = \"a b\"", "store.key_id"),
        (
            "key_env = \"K\"\nold_keys = [{ id = \"k1\", env = \"OLD\" }]",
            "store.old_keys[0].id",
        ),
        ("key_env = \"K\"\nkey = \"inline\"", "key"),
    ] {
        let error = Settings::from_toml(&with_store(table))
            .expect_err(table)
            .to_string();
        assert!(error.contains(field), "`{field}` not named in: {error}");
    }
    let error = Settings::from_toml(&with_store(""))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("plaintext = true"),
        "the way out is named: {error}"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_key_missing_from_the_environment_is_refused_at_start_naming_the_field() {
    let settings = Settings::from_toml(&with_store(
        r#"key_env = "TOWER_BEARER_TEST_NEVER_SET_STORE_KEY""#,
    ))
    .unwrap();
    let error = app::store::open(&settings.store)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("store.key_env"), "{error}");
    assert!(
        error.contains("TOWER_BEARER_TEST_NEVER_SET_STORE_KEY"),
        "{error}"
    );
}

/// The example proxy as a child process of the test, and what the tests do with one.
#[cfg(any(feature = "sqlite", feature = "redis"))]
mod child {
    use http::StatusCode;
    use tokio::net::TcpListener;

    use super::*;
    use support::http::{self as h};

    const CHILD_CONFIG: &str = "TOWER_BEARER_PROXY_CHILD_CONFIG";

    /// Run by the tests that start the proxy as a process (over SQLite, and the replicas over
    /// Redis) as their child process: the example proxy in real mode, as its `main.rs` runs it
    /// — the configuration file, the store it names, the proxy, served until SIGTERM.
    #[test]
    #[ignore = "the child process of the tests that start the proxy as a process"]
    fn proxy_child() {
        let Ok(config) = std::env::var(CHILD_CONFIG) else {
            return;
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let settings = Settings::load(std::path::Path::new(&config)).unwrap();
            let listener = TcpListener::bind(settings.listen).await.unwrap();
            let store = app::store::open(&settings.store).await.unwrap();
            let proxy = app::build(settings, store).await.unwrap();
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            let shutdown = async move {
                terminate.recv().await;
            };
            app::serve::serve(listener, proxy, Default::default(), shutdown).await;
        });
    }

    /// Waits until the proxy on `port` accepts connections, then checks its health.
    pub async fn until_healthy(client: &support::http::TestClient, port: u16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let health = h::get(client, &format!("http://127.0.0.1:{port}/healthz"), &[]).await;
        assert_eq!(health.status, StatusCode::OK);
    }

    pub fn signal(child: &std::process::Child, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A loopback port free right now.
    pub fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// The configuration file of a proxy listening on `port` and reached at `public_url`, its
    /// callers' tokens from `issuer` for `audience`, its links kept as `store` says (the body of
    /// a `[store]` table), and the demo provider `provider` under the name `name`.
    pub fn config(
        port: u16,
        public_url: &str,
        (issuer, audience): (&str, &str),
        store: &str,
        (name, provider): (&str, &app::config::ProviderSettings),
    ) -> String {
        format!(
            r#"
listen = "127.0.0.1:{port}"
public_url = "{public_url}"
realm = "test"
proxy_name = "proxy"

[auth]
issuer = "{issuer}"
audience = "{audience}"
scopes = ["api"]
token_type = "at+jwt"

[store]
{store}

[providers.{name}]
base_url = "{base_url}"
authorize_url = "{authorize_url}"
token_url = "{token_url}"
client_id = "{client_id}"
client_secret = "{client_secret}"
scopes = ["profile"]
refresh_skew_secs = 30
vendor_rules = ["power-bi"]
"#,
            base_url = provider.base_url,
            authorize_url = provider.authorize_url,
            token_url = provider.token_url,
            client_id = provider.client_id,
            client_secret = provider.client_secret.as_ref().unwrap().expose_secret(),
        )
    }

    /// Starts the proxy of the configuration file `config` as a child process, with `env`.
    pub fn start(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child::proxy_child", "--ignored", "--nocapture"])
            .env(CHILD_CONFIG, config)
            .envs(env.iter().copied())
            .env("PROXY_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use http::StatusCode;
    use tokio::net::TcpListener;

    use super::*;
    use app::config::Limits;
    use app::demo::{idp::Idp, provider::Provider};
    use support::http::{self as h};
    use support::temp::TempDir;
    use tower_bearer::upstream::store::{
        LinkKey, TokenStore, crypto::Keyring, sqlite::SqliteStore,
    };

    const PROVIDER: &str = "demo";

    struct Proxy {
        url: String,
        server: tokio::task::JoinHandle<()>,
    }

    /// The proxy over the SQLite file at `db`, on `listener`.
    async fn proxy(listener: TcpListener, settings: Settings, db: &PathBuf) -> Proxy {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let store = SqliteStore::open(db, Keyring::new("k1", [5; 32])).unwrap();
        let proxy = app::build(settings, store).await.unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, tower::make::Shared::new(proxy)).await;
        });
        Proxy { url, server }
    }

    #[tokio::test]
    async fn links_survive_a_restart_of_the_proxy() {
        let dir = TempDir::new("proxy-restart");
        let db = dir.join("links.db");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let idp = Idp::start().await.unwrap();
        let provider = Provider::start(format!("{public_url}/connect/{PROVIDER}/callback"))
            .await
            .unwrap();
        let settings = Settings {
            listen: listener.local_addr().unwrap(),
            public_url: public_url.clone(),
            realm: "test".into(),
            proxy_name: "proxy".into(),
            disclosure: tower_bearer::emit::Disclosure::Minimal,
            auth: app::config::AuthSettings {
                issuer: idp.issuer().to_owned(),
                audience: public_url.clone(),
                scopes: vec!["api".into()],
                token_type: Some("at+jwt".into()),
            },
            limits: Limits::default(),
            providers: [(PROVIDER.to_owned(), provider.settings())].into(),
            store: StoreSettings::Memory, // the store is handed to `build` directly
            cors_origins: Vec::new(),
        };
        {
            let store = SqliteStore::open(&db, Keyring::new("k1", [5; 32])).unwrap();
            store
                .insert(
                    &LinkKey::new("alice", PROVIDER),
                    provider.grant(app::demo::provider::ACCOUNT),
                )
                .await
                .unwrap();
        }
        let token = idp.token("alice", "openid api", &public_url);
        let client = h::client();
        let me = |proxy: &str| format!("{proxy}/api/{PROVIDER}/me");
        let expire = format!(
            "{}/demo/expire?account={}",
            provider.base_url(),
            app::demo::provider::ACCOUNT
        );

        let first = proxy(listener, settings.clone(), &db).await;
        assert_eq!(
            h::get_bearer(&client, &me(&first.url), &token).await.status,
            StatusCode::OK
        );
        // The provider expires the token: the proxy refreshes, the refresh token rotates, and
        // the rotated one is written to the file.
        assert!(
            h::post_form(&client, &expire, &[], &[])
                .await
                .status
                .is_success()
        );
        assert_eq!(
            h::get_bearer(&client, &me(&first.url), &token).await.status,
            StatusCode::OK
        );

        // Restart: the old proxy is gone, a new one opens the same file.
        first.server.abort();
        let _ = first.server.await;
        let listener = TcpListener::bind(settings.listen).await.unwrap();
        let second = proxy(listener, settings, &db).await;
        assert_eq!(
            h::get_bearer(&client, &me(&second.url), &token)
                .await
                .status,
            StatusCode::OK,
            "the link survived"
        );
        // And its refresh token is the rotated one: replaying the spent one would revoke the
        // grant (and the call would end in 403 re-authorization).
        assert!(
            h::post_form(&client, &expire, &[], &[])
                .await
                .status
                .is_success()
        );
        let answer = h::get_bearer(&client, &me(&second.url), &token).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{:?}",
            answer.header("proxy-status")
        );
        second.server.abort();
    }

    #[tokio::test]
    async fn the_proxy_keeps_links_across_sigkill_and_sigterm() {
        let dir = TempDir::new("proxy-kill");
        let db = dir.join("links.db");
        let key = [11; 32];
        let key_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(key)
        };

        let port = child::free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let idp = Idp::start().await.unwrap();
        let provider = Provider::start(format!("{public_url}/connect/{PROVIDER}/callback"))
            .await
            .unwrap();
        let config = child::config(
            port,
            &public_url,
            (idp.issuer(), &public_url),
            &format!(
                "kind = \"sqlite\"\npath = \"{}\"\nkey_env = \"TEST_PROXY_STORE_KEY\"",
                db.display()
            ),
            (PROVIDER, &provider.settings()),
        );
        let config_path = dir.join("proxy.toml");
        std::fs::write(&config_path, config).unwrap();
        // Linked before the proxy ever starts, as if by the connect flow.
        {
            let store = SqliteStore::open(&db, Keyring::new("k1", key)).unwrap();
            store
                .insert(
                    &LinkKey::new("alice", PROVIDER),
                    provider.grant(app::demo::provider::ACCOUNT),
                )
                .await
                .unwrap();
        }
        let start = || child::start(&config_path, &[("TEST_PROXY_STORE_KEY", &key_b64)]);
        let token = idp.token("alice", "openid api", &public_url);
        let client = h::client();
        let me = format!("{public_url}/api/{PROVIDER}/me");
        let expire = format!(
            "{}/demo/expire?account={}",
            provider.base_url(),
            app::demo::provider::ACCOUNT
        );
        // Refresh (the refresh token rotates) through the running proxy, then call.
        let refresh_and_call = || async {
            assert!(
                h::post_form(&client, &expire, &[], &[])
                    .await
                    .status
                    .is_success()
            );
            let answer = h::get_bearer(&client, &me, &token).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{:?}",
                answer.header("proxy-status")
            );
        };

        for stop in ["KILL", "TERM"] {
            let mut proxy = start();
            child::until_healthy(&client, port).await;
            refresh_and_call().await;
            child::signal(&proxy, stop);
            let status = proxy.wait().unwrap();
            #[cfg(unix)]
            if stop == "KILL" {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(9), "{status}");
            }
            let _ = status;
        }
        // Started again: the link (with the refresh token of the last rotation) still works.
        let mut proxy = start();
        child::until_healthy(&client, port).await;
        refresh_and_call().await;
        child::signal(&proxy, "TERM");
        let _ = proxy.wait();
    }
}

/// Two proxy processes sharing one Redis (Debian's `redis-server`, started by the test), a
/// provider that rotates refresh tokens, revokes the grant on replay and whose token endpoint
/// takes 300 ms.
#[cfg(feature = "redis")]
mod redis {
    use std::{
        path::PathBuf,
        process::Child,
        time::{Duration, Instant},
    };

    use http::StatusCode;

    use super::*;
    use app::demo::{
        idp::Idp,
        provider::{Provider, RefreshStats},
    };
    use support::{
        http::{self as h, Reply, TestClient},
        redis::RedisServer,
        temp::TempDir,
    };
    use tower_bearer::upstream::store::{LinkKey, TokenStore, crypto::Keyring, redis::RedisStore};

    const PROVIDER: &str = "demo";
    const AUDIENCE: &str = "https://gateway.test";
    const KEY: [u8; 32] = [21; 32];
    const KEY_ENV: &str = "TEST_PROXY_STORE_KEY";
    /// How long a killed replica's lock blocks a link.
    const LEASE: Duration = Duration::from_millis(5000);
    const STORE_UNAVAILABLE: &str =
        r#"proxy; error=proxy_internal_error; details="link_store_unavailable""#;

    struct Replicas {
        redis: RedisServer,
        idp: Idp,
        provider: Provider,
        ports: [u16; 2],
        configs: [PathBuf; 2],
        children: [Option<Child>; 2],
        _dir: TempDir,
        client: TestClient,
    }

    fn key_b64() -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(KEY)
    }

    impl Replicas {
        async fn start() -> Self {
            let dir = TempDir::new("replicas");
            let redis = RedisServer::start();
            let idp = Idp::start().await.unwrap();
            let ports = [child::free_port(), child::free_port()];
            // Behind one public address (as behind a load balancer): replica 0's.
            let public_url = format!("http://127.0.0.1:{}", ports[0]);
            let provider = Provider::start(format!("{public_url}/connect/{PROVIDER}/callback"))
                .await
                .unwrap();
            provider.set_token_delay(Duration::from_millis(300));
            let store = format!(
                "kind = \"redis\"\nurl = \"{}\"\nkey_env = \"{KEY_ENV}\"\nlock_lease_ms = {}",
                redis.url(),
                LEASE.as_millis()
            );
            let configs = ports.map(|port| {
                let config = child::config(
                    port,
                    &public_url,
                    (idp.issuer(), AUDIENCE),
                    &store,
                    (PROVIDER, &provider.settings()),
                );
                let path = dir.join(format!("proxy-{port}.toml"));
                std::fs::write(&path, config).unwrap();
                path
            });
            let mut replicas = Self {
                redis,
                idp,
                provider,
                ports,
                configs,
                children: [None, None],
                _dir: dir,
                client: h::client(),
            };
            for replica in 0..2 {
                replicas.resume(replica).await;
            }
            replicas
        }

        /// Starts replica `replica` (again) and waits until it is healthy.
        async fn resume(&mut self, replica: usize) {
            assert!(self.children[replica].is_none());
            let key = key_b64();
            self.children[replica] = Some(child::start(&self.configs[replica], &[(KEY_ENV, &key)]));
            child::until_healthy(&self.client, self.ports[replica]).await;
        }

        /// Stops replica `replica` with `signal` (KILL or TERM).
        fn stop(&mut self, replica: usize, signal: &str) {
            let mut process = self.children[replica].take().unwrap();
            child::signal(&process, signal);
            let _ = process.wait();
        }

        /// The store as the replicas see it, from the test.
        async fn store(&self) -> RedisStore {
            RedisStore::builder(self.redis.url(), Keyring::new("k1", KEY))
                .connect()
                .await
                .unwrap()
        }

        /// Links `user` to the provider's `account`, as the connect flow would.
        async fn link(&self, user: &str, account: &str) {
            let store = self.store().await;
            store
                .insert(&LinkKey::new(user, PROVIDER), self.provider.grant(account))
                .await
                .unwrap();
        }

        /// The provider expires `account`'s access tokens (the proxies do not know).
        async fn expire(&self, account: &str) {
            let url = format!("{}/demo/expire?account={account}", self.provider.base_url());
            assert!(
                h::post_form(&self.client, &url, &[], &[])
                    .await
                    .status
                    .is_success()
            );
        }

        async fn call(&self, replica: usize, user: &str) -> Reply {
            let token = self.idp.token(user, "openid api", AUDIENCE);
            let url = format!("http://127.0.0.1:{}/api/{PROVIDER}/me", self.ports[replica]);
            h::get_bearer(&self.client, &url, &token).await
        }

        fn stats(&self) -> RefreshStats {
            self.provider.refresh_stats()
        }
    }

    impl Drop for Replicas {
        fn drop(&mut self) {
            for process in self.children.iter_mut().filter_map(Option::take) {
                let mut process = process;
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }

    /// `calls` requests at once, `(replica, user)` each; every answer's status. Each user holds
    /// one token for all its calls, as a client does (so the replicas verify it once each).
    async fn concurrently(replicas: &Replicas, calls: Vec<(usize, String)>) -> Vec<StatusCode> {
        let mut tokens = std::collections::HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (replica, user) in calls {
            let token = tokens
                .entry(user.clone())
                .or_insert_with(|| replicas.idp.token(&user, "openid api", AUDIENCE))
                .clone();
            let url = format!(
                "http://127.0.0.1:{}/api/{PROVIDER}/me",
                replicas.ports[replica]
            );
            let client = replicas.client.clone();
            tasks.spawn(async move { h::get_bearer(&client, &url, &token).await.status });
        }
        tasks.join_all().await
    }

    fn delta(before: RefreshStats, after: RefreshStats) -> RefreshStats {
        RefreshStats {
            received: after.received - before.received,
            refreshed: after.refreshed - before.refreshed,
            replayed: after.replayed - before.replayed,
            revoked: after.revoked - before.revoked,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_over_one_redis_refresh_once_survive_kills_and_an_outage() {
        let mut replicas = Replicas::start().await;
        replicas.link("alice", app::demo::provider::ACCOUNT).await;
        for replica in 0..2 {
            assert_eq!(replicas.call(replica, "alice").await.status, StatusCode::OK);
        }

        // A connect flow started on one replica finishes on the other.
        let token = replicas.idp.token("dave", "openid api", AUDIENCE);
        let start = format!("http://127.0.0.1:{}/connect/{PROVIDER}", replicas.ports[0]);
        let started = h::get_bearer(&replicas.client, &start, &token).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER);
        let binding = started
            .header("set-cookie")
            .and_then(|cookie| cookie.split(';').next())
            .unwrap()
            .to_owned();
        let authorized = h::get(&replicas.client, started.location().unwrap(), &[]).await;
        assert_eq!(authorized.status, StatusCode::SEE_OTHER);
        let callback = authorized.location().unwrap().replace(
            &format!(":{}/", replicas.ports[0]),
            &format!(":{}/", replicas.ports[1]),
        );
        assert!(
            callback.contains(&format!(":{}/connect/", replicas.ports[1])),
            "{callback}"
        );
        let finished = h::get(&replicas.client, &callback, &[("cookie", &binding)]).await;
        assert_eq!(finished.status, StatusCode::OK, "{finished:?}");
        assert_eq!(
            String::from_utf8_lossy(&finished.body),
            "<!doctype html><meta charset=utf-8><title>Connected</title>\
             <p>Your demo account is connected. You can close this page.</p>"
        );
        for replica in 0..2 {
            assert_eq!(replicas.call(replica, "dave").await.status, StatusCode::OK);
        }

        // 400 concurrent calls with an expired upstream token, split across both replicas:
        // all succeed, with exactly one refresh and no replay.
        let before = replicas.stats();
        replicas.expire(app::demo::provider::ACCOUNT).await;
        let statuses = concurrently(
            &replicas,
            (0..400).map(|i| (i % 2, "alice".to_owned())).collect(),
        )
        .await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        assert_eq!(
            delta(before, replicas.stats()),
            RefreshStats {
                received: 1,
                refreshed: 1,
                replayed: 0,
                revoked: 0
            }
        );

        // 20 users × 20 calls, split across both: exactly 20 refreshes.
        for i in 0..20 {
            replicas
                .link(&format!("user-{i}"), &format!("account-{i}"))
                .await;
        }
        let before = replicas.stats();
        for i in 0..20 {
            replicas.expire(&format!("account-{i}")).await;
        }
        let calls = (0..400)
            .map(|i| (i % 2, format!("user-{}", (i / 2) % 20)))
            .collect();
        let statuses = concurrently(&replicas, calls).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        assert_eq!(
            delta(before, replicas.stats()),
            RefreshStats {
                received: 20,
                refreshed: 20,
                replayed: 0,
                revoked: 0
            }
        );

        // Redis stops: row S1 from both replicas, never 401 or 500.
        replicas.redis.stop();
        for replica in 0..2 {
            let deadline = Instant::now() + Duration::from_secs(10);
            let answer = loop {
                let answer = replicas.call(replica, "alice").await;
                if answer.status != StatusCode::OK || Instant::now() > deadline {
                    break answer;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(answer.header("proxy-status"), Some(STORE_UNAVAILABLE));
            assert_eq!(answer.header("retry-after"), Some("5"));
            assert_eq!(answer.header("www-authenticate"), None);
        }
        // Back (from its append-only file): the links work without connecting again, and the
        // refresh token of the last rotation is the one stored.
        replicas.redis.resume();
        replicas.expire(app::demo::provider::ACCOUNT).await;
        for replica in 0..2 {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let answer = replicas.call(replica, "alice").await;
                if answer.status == StatusCode::OK {
                    break;
                }
                assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
                assert!(Instant::now() < deadline, "never recovered");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(replicas.stats().replayed, 0);

        // The replica holding the lock is killed mid-refresh (its request is at the token
        // endpoint): the other one serves the link within the lease and a refresh timeout, and
        // the refresh token is honoured once — the dead replica's request was never answered.
        let before = replicas.stats();
        replicas.expire(app::demo::provider::ACCOUNT).await;
        let doomed = tokio::spawn({
            let token = replicas.idp.token("alice", "openid api", AUDIENCE);
            let url = format!("http://127.0.0.1:{}/api/{PROVIDER}/me", replicas.ports[0]);
            let client = replicas.client.clone();
            async move { h::get_bearer(&client, &url, &token).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while replicas.stats().received == before.received {
            assert!(Instant::now() < deadline, "replica 0 never refreshed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        replicas.stop(0, "KILL");
        let killed = Instant::now();
        doomed.abort();
        let answer = replicas.call(1, "alice").await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{:?}",
            answer.header("proxy-status")
        );
        let waited = killed.elapsed();
        println!("the other replica served the link {waited:?} after the kill");
        assert!(
            waited < LEASE + Duration::from_secs(20),
            "served after {waited:?}"
        );
        assert_eq!(
            delta(before, replicas.stats()),
            RefreshStats {
                received: 2,
                refreshed: 1,
                replayed: 0,
                revoked: 0
            },
            "served after {waited:?}"
        );

        // Restarts, SIGKILL and SIGTERM: the same calls work without connecting again.
        replicas.resume(0).await;
        replicas.stop(1, "TERM");
        replicas.resume(1).await;
        replicas.expire(app::demo::provider::ACCOUNT).await;
        for replica in 0..2 {
            assert_eq!(replicas.call(replica, "alice").await.status, StatusCode::OK);
        }
        assert_eq!(replicas.stats().replayed, 0);
    }
}
