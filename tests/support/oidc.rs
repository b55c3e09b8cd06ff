//! A real OpenID provider for tests: `node tests/oidc/provider.mjs` (the npm package
//! `oidc-provider`, pinned in `tests/oidc/package-lock.json`) on a loopback port.
//!
//! ```ignore
//! let provider = OidcProvider::start(OidcConfig::new()).await;
//! let token = provider.client_credentials_token(Some(RESOURCE_RS256), "read").await;
//! ```
//!
//! The child process is killed when the handle is dropped, and exits by itself when the test
//! process dies (it watches its stdin, a pipe held by this handle).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::http::{self as h, Browser, Reply, TestClient};

/// The default confidential client's id (client_credentials, authorization_code, refresh_token).
pub const CLIENT_ID: &str = "tower-bearer-test";
/// The default client's secret.
pub const CLIENT_SECRET: &str = "tower-bearer-test-secret";
/// The default client's redirect URI.
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// A resource whose access tokens are RS256 JWTs (`aud` = this string).
pub const RESOURCE_RS256: &str = "urn:tower-bearer:rs256";
/// A resource whose access tokens are ES256 JWTs.
pub const RESOURCE_ES256: &str = "urn:tower-bearer:es256";
/// A resource whose access tokens are opaque (introspection only).
pub const RESOURCE_OPAQUE: &str = "urn:tower-bearer:opaque";

/// A JWS algorithm the provider signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA 2048 key).
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl Alg {
    fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
}

/// A resource server the provider knows (RFC 8707 resource indicator).
#[derive(Debug, Clone)]
pub struct Resource {
    /// JWT (`typ: at+jwt`) access tokens when `Some(alg)`, opaque ones when `None`.
    pub alg: Option<Alg>,
    /// Access-token lifetime in seconds (`None`: the provider default).
    pub ttl: Option<u64>,
    /// Scopes the resource accepts (space-separated).
    pub scope: String,
    /// The `aud` of its tokens (`None`: the indicator itself).
    pub audience: Option<String>,
}

impl Resource {
    /// JWT access tokens signed with `alg`, scopes `read write`.
    pub fn jwt(alg: Alg) -> Self {
        Resource {
            alg: Some(alg),
            ttl: None,
            scope: "read write".into(),
            audience: None,
        }
    }
    /// Opaque access tokens, scopes `read write`.
    pub fn opaque() -> Self {
        Resource {
            alg: None,
            ttl: None,
            scope: "read write".into(),
            audience: None,
        }
    }
    /// Sets the access-token lifetime.
    pub fn ttl(mut self, secs: u64) -> Self {
        self.ttl = Some(secs);
        self
    }
    /// Sets the accepted scopes.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.into();
        self
    }
    /// Sets the `aud` of the tokens.
    pub fn audience(mut self, aud: &str) -> Self {
        self.audience = Some(aud.into());
        self
    }
    fn to_json(&self) -> Value {
        let mut v = json!({
            "format": if self.alg.is_some() { "jwt" } else { "opaque" },
            "scope": self.scope,
        });
        if let Some(alg) = self.alg {
            v["alg"] = alg.as_str().into();
        }
        if let Some(ttl) = self.ttl {
            v["ttl"] = ttl.into();
        }
        if let Some(aud) = &self.audience {
            v["audience"] = aud.as_str().into();
        }
        v
    }
}

/// How to start the provider. [`OidcConfig::new`] mirrors the defaults of `provider.mjs`:
/// client [`CLIENT_ID`], resources [`RESOURCE_RS256`], [`RESOURCE_ES256`], [`RESOURCE_OPAQUE`].
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Port to bind (0: any free port).
    pub port: u16,
    /// Issuer URL (`None`: `http://127.0.0.1:<port>`).
    pub issuer: Option<String>,
    /// Default access-token lifetime in seconds.
    pub access_token_ttl: u64,
    /// Clients, as oidc-provider client metadata objects.
    pub clients: Vec<Value>,
    /// Resource indicators.
    pub resources: BTreeMap<String, Resource>,
    /// Private signing keys (`{"keys": [...]}`); `None`: fresh keys at each (re)start.
    pub jwks: Option<Value>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl OidcConfig {
    /// The defaults described on the type.
    pub fn new() -> Self {
        let mut resources = BTreeMap::new();
        resources.insert(RESOURCE_RS256.to_owned(), Resource::jwt(Alg::RS256));
        resources.insert(RESOURCE_ES256.to_owned(), Resource::jwt(Alg::ES256));
        resources.insert(RESOURCE_OPAQUE.to_owned(), Resource::opaque());
        OidcConfig {
            port: 0,
            issuer: None,
            access_token_ttl: 300,
            clients: vec![json!({
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
                "response_types": ["code"],
                "redirect_uris": [REDIRECT_URI],
                "scope": "openid offline_access read write",
            })],
            resources,
            jwks: None,
        }
    }
    /// Adds (or replaces) a resource.
    pub fn resource(mut self, indicator: &str, resource: Resource) -> Self {
        self.resources.insert(indicator.to_owned(), resource);
        self
    }
    /// Adds a client (oidc-provider client metadata, e.g. `{"client_id", "client_secret",
    /// "grant_types", "redirect_uris", "scope"}`).
    pub fn client(mut self, metadata: Value) -> Self {
        self.clients.push(metadata);
        self
    }
    /// Sets the default access-token lifetime.
    pub fn access_token_ttl(mut self, secs: u64) -> Self {
        self.access_token_ttl = secs;
        self
    }
    /// Binds this port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Uses fixed private signing keys (so restarts keep the same `kid`s).
    pub fn jwks(mut self, jwks: Value) -> Self {
        self.jwks = Some(jwks);
        self
    }
    fn to_json(&self) -> Value {
        let mut v = json!({
            "port": self.port,
            "accessTokenTtl": self.access_token_ttl,
            "clients": self.clients,
            "resources": self.resources.iter()
                .map(|(k, r)| (k.clone(), r.to_json()))
                .collect::<serde_json::Map<_, _>>(),
        });
        if let Some(issuer) = &self.issuer {
            v["issuer"] = issuer.as_str().into();
        }
        if let Some(jwks) = &self.jwks {
            v["jwks"] = jwks.clone();
        }
        v
    }
}

/// What the provider printed when ready.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ready {
    /// The issuer identifier (`iss` of its tokens).
    pub issuer: String,
    /// The bound port.
    pub port: u16,
    /// Its JWKS URL.
    pub jwks_uri: String,
    /// The `kid` of the signing key per algorithm (`"RS256"`, `"ES256"`).
    pub kids: BTreeMap<String, String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, when issued.
    pub refresh_token: Option<String>,
    /// The ID token, when issued.
    pub id_token: Option<String>,
    /// Lifetime of the access token.
    pub expires_in: Option<u64>,
    /// Granted scopes.
    pub scope: Option<String>,
}

struct Running {
    child: Child,
    // Held open: the provider exits when this pipe closes.
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

/// A running (or stopped) `oidc-provider`.
pub struct OidcProvider {
    config: OidcConfig,
    ready: Ready,
    running: Option<Running>,
    client: TestClient,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.ready.issuer)
            .field("running", &self.running.is_some())
            .finish()
    }
}

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("oidc")
}

impl OidcProvider {
    /// Starts the provider and waits for its ready line (panics with its stderr on failure).
    pub async fn start(config: OidcConfig) -> Self {
        let (running, ready) = spawn(&config).await;
        OidcProvider {
            config,
            ready,
            running: Some(running),
            client: h::client_without_reuse(),
        }
    }

    /// The issuer URL, e.g. `http://127.0.0.1:40123`.
    pub fn issuer(&self) -> &str {
        &self.ready.issuer
    }
    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.ready.port
    }
    /// The JWKS URL.
    pub fn jwks_uri(&self) -> &str {
        &self.ready.jwks_uri
    }
    /// The discovery document URL.
    pub fn discovery_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.ready.issuer)
    }
    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.ready.issuer)
    }
    /// The introspection endpoint (RFC 7662).
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.ready.issuer)
    }
    /// The `kid` of the current signing key for `alg`.
    pub fn kid(&self, alg: Alg) -> &str {
        &self.ready.kids[alg.as_str()]
    }
    /// The configuration it was started with.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }
    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stops the provider (closes its stdin, then kills it if it lingers) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(mut r) = self.running.take() {
            drop(r.stdin.take());
            if tokio::time::timeout(Duration::from_secs(3), r.child.wait())
                .await
                .is_err()
            {
                let _ = r.child.kill().await;
            }
        }
    }

    /// Stops and starts it again on the same port and issuer. Signing keys are new unless
    /// [`OidcConfig::jwks`] fixed them; all issued tokens and grants are forgotten.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut config = self.config.clone();
        config.port = self.ready.port;
        config.issuer = Some(self.ready.issuer.clone());
        let (running, ready) = spawn(&config).await;
        self.running = Some(running);
        self.ready = ready;
    }

    /// What the provider wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.running
            .as_ref()
            .map(|r| r.stderr.lock().unwrap().clone())
            .unwrap_or_default()
    }

    fn basic(&self) -> [(http::HeaderName, HeaderValue); 1] {
        [(
            header::AUTHORIZATION,
            h::basic_auth(CLIENT_ID, CLIENT_SECRET),
        )]
    }

    /// A raw token-endpoint request authenticated as the default client.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> Reply {
        h::post_form(&self.client, &self.token_endpoint(), &self.basic(), form).await
    }

    /// A client_credentials access token for `resource` (JWT for a JWT resource; opaque for an
    /// opaque one or for `None`). Panics unless the provider answers 200.
    pub async fn client_credentials_token(&self, resource: Option<&str>, scope: &str) -> String {
        self.client_credentials(resource, scope).await.access_token
    }

    /// Like [`client_credentials_token`](Self::client_credentials_token), the whole answer.
    pub async fn client_credentials(&self, resource: Option<&str>, scope: &str) -> Tokens {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        tokens(self.token_request(&form).await)
    }

    /// Exchanges a refresh token (the default client). Returns the raw answer: 200 with new
    /// tokens, or 400 `invalid_grant` for a spent (rotated) one.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// RFC 7662 introspection as the default client.
    pub async fn introspect(&self, token: &str) -> Value {
        h::post_form(
            &self.client,
            &self.introspection_endpoint(),
            &self.basic(),
            &[("token", token)],
        )
        .await
        .json()
    }

    /// RFC 7009 revocation as the default client.
    pub async fn revoke(&self, token: &str) -> StatusCode {
        let uri = format!("{}/token/revocation", self.ready.issuer);
        h::post_form(&self.client, &uri, &self.basic(), &[("token", token)])
            .await
            .status
    }

    /// Runs the whole authorization-code flow for user `login` through devInteractions (login
    /// form, consent form) with plain HTTP, and exchanges the code. With `offline_access` in
    /// `scope` the answer carries a refresh token. `resource`, when given, makes the access
    /// token a JWT for that resource.
    pub async fn authorization_code(
        &self,
        login: &str,
        scope: &str,
        resource: Option<&str>,
    ) -> Tokens {
        let mut q = vec![
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", scope),
            ("prompt", "consent"),
            ("state", "st"),
        ];
        if let Some(r) = resource {
            q.push(("resource", r));
        }
        let url = format!("{}/auth?{}", self.ready.issuer, h::form(&q));
        let redirect = sign_in(
            &mut Browser::default(),
            &self.client,
            &self.ready.issuer,
            url,
            login,
        )
        .await;
        assert!(
            redirect.starts_with(REDIRECT_URI),
            "the authorization flow ended at {redirect}"
        );
        let code = h::query_param(&redirect, "code")
            .unwrap_or_else(|| panic!("no code in redirect {redirect}"));
        tokens(
            self.token_request(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ])
            .await,
        )
    }
}

/// Runs oidc-provider's dev interactions from `url` (an authorization request at `issuer`) as a
/// browser: the login form as user `login`, then the consent form. Returns the URL the provider
/// finally redirects to, outside itself (the client's redirect URI, with the code).
pub async fn sign_in(
    browser: &mut Browser,
    client: &TestClient,
    issuer: &str,
    mut url: String,
    login: &str,
) -> String {
    // GET /auth → interaction(login) → POST → /auth/uid → interaction(consent) → POST →
    // /auth/uid → redirect_uri?code=…
    for _ in 0..8 {
        let response = if url.contains("/interaction/") {
            let page = browser.go(client, Method::GET, &url, None, None).await;
            assert_eq!(page.status, StatusCode::OK, "interaction page: {page:?}");
            let form = if String::from_utf8_lossy(&page.body)
                .contains("name=\"prompt\" value=\"login\"")
            {
                h::form(&[("prompt", "login"), ("login", login), ("password", "x")])
            } else {
                h::form(&[("prompt", "consent")])
            };
            browser
                .go(client, Method::POST, &url, Some(form), None)
                .await
        } else {
            browser.go(client, Method::GET, &url, None, None).await
        };
        let location = response
            .location()
            .unwrap_or_else(|| panic!("the sign-in stalled at {url}: {response:?}"))
            .to_owned();
        if !location.starts_with(issuer) && !location.starts_with('/') {
            return location;
        }
        url = if location.starts_with('/') {
            format!("{issuer}{location}")
        } else {
            location
        };
    }
    panic!("the sign-in did not finish");
}

fn tokens(res: Reply) -> Tokens {
    assert_eq!(
        res.status,
        StatusCode::OK,
        "token endpoint: {}",
        String::from_utf8_lossy(&res.body)
    );
    serde_json::from_slice(&res.body).expect("token response")
}

/// Node start-ups at once: tests run in parallel on a small machine, and a provider starting
/// (loading oidc-provider, generating an RSA key) is CPU-bound for a moment.
static STARTING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// How long a start may take before the harness gives up (normally about a second; generous for
/// a loaded CI machine, but short enough that a stuck start fails fast with a clear message).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

async fn spawn(config: &OidcConfig) -> (Running, Ready) {
    let _starting = STARTING.acquire().await.expect("never closed");
    let dir = harness_dir();
    if !dir
        .join("node_modules")
        .join("oidc-provider")
        .join("package.json")
        .exists()
    {
        panic!(
            "the test OpenID provider's node packages are not installed: run \
             `npm ci --prefix tests/oidc` in the repository root (needs node >= 20 and npm)"
        );
    }
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(config.to_json().to_string())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): the OpenID provider for the tests needs node >= 20")
        });
    let stdin = child.stdin.take();
    let stderr_buf = Arc::new(Mutex::new(String::new()));
    let stderr_task = {
        let mut stderr = child.stderr.take().unwrap();
        let buf = stderr_buf.clone();
        tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                buf.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        })
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        other => {
            // Say what happened: exited (with which status) or still running without a ready line.
            let what = match other {
                Ok(Ok(None)) => "closed its stdout before the ready line".to_owned(),
                Ok(Err(e)) => format!("could not be read ({e})"),
                Err(_) => format!(
                    "printed no ready line within {READY_TIMEOUT:?} (pid {:?}; a start normally \
                     takes about a second)",
                    child.id()
                ),
                Ok(Ok(Some(_))) => unreachable!(),
            };
            let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(status)) => format!("exited: {status}"),
                Ok(Err(e)) => format!("wait failed: {e}"),
                Err(_) => {
                    let _ = child.kill().await;
                    "still running, killed".to_owned()
                }
            };
            // The child is gone, so its stderr reaches EOF: collect all of it.
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr_task).await;
            panic!(
                "the OpenID provider (port {}) {what}; {status}; its stderr:\n{}",
                config.port,
                stderr_buf.lock().unwrap()
            );
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let ready: Ready = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("unexpected ready line from the provider ({e}): {line}"));
    (
        Running {
            child,
            stdin,
            stderr: stderr_buf,
        },
        ready,
    )
}
