//! The proxy's configuration: a TOML file in real mode (`proxy.sample.toml` documents every
//! field), built in code in demo mode. Either way it ends up as checked [`Settings`]; a bad file
//! is refused at start with a message that names the offending field.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use http::{StatusCode, Uri};
use serde::Deserialize;
use tower_bearer::{
    emit::Disclosure,
    upstream::{
        classify::{JsonErrorCode, UpstreamClass},
        store::TokenSecret,
    },
};

/// Everything the proxy needs to run, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The proxy's public origin (no trailing slash): the RFC 9728 resource identifier and the
    /// base of the connect flow's redirect URIs.
    pub public_url: String,
    /// The realm of the proxy's own challenges.
    pub realm: String,
    /// This proxy's name in `Proxy-Status` (RFC 9209).
    pub proxy_name: String,
    /// How much failure responses explain.
    pub disclosure: Disclosure,
    /// How callers' tokens are validated.
    pub auth: AuthSettings,
    /// Timeouts and sizes.
    pub limits: Limits,
    /// The third-party providers, by name (the `{provider}` of `/api/{provider}/…`).
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Where the users' links are kept.
    pub store: StoreSettings,
    /// Origins whose scripts may call the proxy (`[cors] allowed_origins`): they get CORS
    /// answers, with the failure signals exposed to them.
    pub cors_origins: Vec<String>,
}

/// Where the users' links are kept (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// In memory (no `[store]` table, or `kind = "memory"`): gone at a restart.
    Memory,
    /// In an SQLite file (`kind = "sqlite"`, the default in a `[store]` table).
    Sqlite {
        /// The file (`path`, default `proxy.db`).
        path: PathBuf,
        /// How the tokens in it are encrypted.
        key: StoreKey,
    },
    /// In Redis, shared by replicas (`kind = "redis"`).
    Redis {
        /// Where Redis is: `url`, or the environment variable holding it (`url_env`, for a URL
        /// with a password).
        url: RedisUrl,
        /// The prefix of every key (`prefix`, default `tower-bearer`).
        prefix: Option<String>,
        /// How long a dead replica's lock blocks a link (`lock_lease_ms`).
        lock_lease: Option<Duration>,
        /// How the tokens in it are encrypted.
        key: StoreKey,
    },
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrl {
    /// Given in the file.
    Literal(String),
    /// In this environment variable.
    Env(String),
}

/// The key that encrypts the tokens of a persistent store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub enum StoreKey {
    /// A base64 32-byte key in an environment variable (`key_env`), named `id` (`key_id`) in
    /// the records it seals; older keys (`old_keys`), by id and variable, kept for reading.
    Env {
        /// The key's id.
        id: String,
        /// The environment variable holding it.
        variable: String,
        /// Older keys: id and environment variable.
        old: Vec<(String, String)>,
    },
    /// A random key, new at every start (the demo: its file is new at every start too).
    Random,
    /// No encryption (`plaintext = true`, explicitly).
    Plaintext,
}

/// The proxy's own identity provider and what its tokens must carry.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The issuer; its keys are found by OpenID Connect discovery.
    pub issuer: String,
    /// The required `aud`.
    pub audience: String,
    /// Scopes every call through the proxy (and every connect flow) requires.
    pub scopes: Vec<String>,
    /// The required JWT `typ` (`at+jwt` for RFC 9068 access tokens), if any.
    pub token_type: Option<String>,
}

/// Timeouts and size limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole of one call: reading the caller's body, refreshing, both attempts.
    pub request_timeout: Duration,
    /// One attempt at the provider, until its response headers (and each token request).
    pub upstream_timeout: Duration,
    /// The largest request body forwarded; it is kept whole so the request can be retried.
    pub max_request_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(10),
            max_request_body: 1024 * 1024,
        }
    }
}

/// How the proxy authenticates at a provider's token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic.
    ClientSecretBasic,
    /// Credentials in the form body.
    ClientSecretPost,
    /// A public client.
    None,
}

/// One third-party provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The API's base URL (no trailing slash): `/api/{provider}/x` goes to `{base_url}/x`.
    pub base_url: String,
    /// The authorization endpoint (the connect flow sends users there).
    pub authorize_url: Uri,
    /// The token endpoint (code exchange and refresh).
    pub token_url: Uri,
    /// The revocation endpoint (RFC 7009): an unlinked or replaced grant is revoked there.
    pub revocation_url: Option<Uri>,
    /// The provider's issuer identifier (RFC 9207): a callback's `iss` must equal it.
    pub issuer: Option<String>,
    /// The provider advertises `authorization_response_iss_parameter_supported`: a callback
    /// without `iss` is refused.
    pub iss_parameter_supported: bool,
    /// The proxy's client id at the provider.
    pub client_id: String,
    /// Its secret, unless it is a public client.
    pub client_secret: Option<TokenSecret>,
    /// How it authenticates.
    pub client_auth: ClientAuth,
    /// Scopes asked for in the connect flow.
    pub scopes: Vec<String>,
    /// An RFC 8707 resource indicator, sent when authorizing and refreshing.
    pub resource: Option<String>,
    /// Extra authorization request parameters (`prompt = "consent"`, `access_type = "offline"`).
    pub authorize_params: BTreeMap<String, String>,
    /// Tokens expiring within this window are refreshed before use (row U3).
    pub refresh_skew: Duration,
    /// Vendor rules, tried before the standard 401/403 table.
    pub rules: Vec<JsonErrorCode>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or not the expected fields (the message names the field and line).
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// A field has a value the proxy cannot work with.
    #[error("`{field}`: {problem}")]
    Invalid {
        /// The field, as a dotted path (`providers.powerbi.token_url`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Settings {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str::<File>(text)?.check()
    }
}

// The file's shape. Unknown fields are refused, so a typo is an error, not a silent default.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: String,
    public_url: String,
    realm: String,
    #[serde(default = "default_proxy_name")]
    proxy_name: String,
    #[serde(default)]
    disclosure: DisclosureName,
    auth: AuthFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    providers: BTreeMap<String, ProviderFile>,
    store: Option<StoreFile>,
    #[serde(default)]
    cors: CorsFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CorsFile {
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    kind: StoreKind,
    path: Option<PathBuf>,
    key_env: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    old_keys: Vec<OldKeyFile>,
    #[serde(default)]
    plaintext: bool,
    url: Option<String>,
    url_env: Option<String>,
    prefix: Option<String>,
    lock_lease_ms: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum StoreKind {
    #[default]
    Sqlite,
    Memory,
    Redis,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OldKeyFile {
    id: String,
    env: String,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_proxy_name() -> String {
    "tower-bearer-proxy".to_owned()
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum DisclosureName {
    #[default]
    Minimal,
    Verbose,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    issuer: String,
    audience: String,
    #[serde(default)]
    scopes: Vec<String>,
    token_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    request_timeout_secs: Option<u64>,
    upstream_timeout_secs: Option<u64>,
    max_request_body_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    base_url: String,
    authorize_url: String,
    token_url: String,
    revocation_url: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    iss_parameter_supported: bool,
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    #[serde(default = "default_client_auth")]
    client_auth: ClientAuth,
    #[serde(default)]
    scopes: Vec<String>,
    resource: Option<String>,
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
    #[serde(default = "default_skew")]
    refresh_skew_secs: u64,
    #[serde(default)]
    vendor_rules: Vec<VendorRule>,
    #[serde(default)]
    json_rules: Vec<JsonRuleFile>,
}

fn default_client_auth() -> ClientAuth {
    ClientAuth::ClientSecretBasic
}

fn default_skew() -> u64 {
    60
}

/// Built-in rules for known vendor quirks.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum VendorRule {
    /// `403 {"error":{"code":"TokenExpired"}}` means an expired token.
    PowerBi,
}

/// A rule of one's own: a `status` response whose JSON body has `value` at `pointer` means…
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRuleFile {
    status: u16,
    pointer: String,
    value: String,
    means: Meaning,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Meaning {
    TokenRejected,
    InsufficientScope,
    Forbidden,
}

impl File {
    fn check(self) -> Result<Settings, ConfigError> {
        let listen = self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                "expected an address and port such as 127.0.0.1:8080",
            )
        })?;
        let public_url = origin(&self.public_url, "public_url")?;
        nonempty(&self.realm, "realm")?;
        nonempty(&self.proxy_name, "proxy_name")?;
        if !tower_bearer::syntax::is_token(&self.proxy_name) {
            return Err(invalid(
                "proxy_name",
                "must be a token (letters, digits, -._~ and the like): it names the proxy in Proxy-Status",
            ));
        }
        let auth = self.auth.check()?;
        let limits = self.limits.check()?;
        if self.providers.is_empty() {
            return Err(invalid("providers", "configure at least one provider"));
        }
        let providers = self
            .providers
            .into_iter()
            .map(|(name, provider)| {
                let field = format!("providers.{name}");
                if name.is_empty()
                    || !name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
                {
                    return Err(invalid(
                        field,
                        "a provider's name appears in URLs: use lowercase letters, digits, - and _",
                    ));
                }
                Ok((name, provider.check(&field)?))
            })
            .collect::<Result<_, _>>()?;
        let store = match self.store {
            None => StoreSettings::Memory,
            Some(store) => store.check()?,
        };
        Ok(Settings {
            listen,
            public_url,
            realm: self.realm,
            proxy_name: self.proxy_name,
            disclosure: match self.disclosure {
                DisclosureName::Minimal => Disclosure::Minimal,
                DisclosureName::Verbose => Disclosure::Verbose,
            },
            auth,
            limits,
            providers,
            store,
            cors_origins: self.cors.check()?,
        })
    }
}

impl StoreFile {
    fn check(self) -> Result<StoreSettings, ConfigError> {
        if self.kind == StoreKind::Memory {
            if self.path.is_some() || self.key_env.is_some() || self.plaintext {
                return Err(invalid(
                    "store.kind",
                    "an in-memory store takes no path, key_env or plaintext",
                ));
            }
            return Ok(StoreSettings::Memory);
        }
        let redis_only = [
            ("store.url", self.url.is_some()),
            ("store.url_env", self.url_env.is_some()),
            ("store.prefix", self.prefix.is_some()),
            ("store.lock_lease_ms", self.lock_lease_ms.is_some()),
        ];
        match self.kind {
            StoreKind::Redis if self.path.is_some() => {
                return Err(invalid(
                    "store.path",
                    "a Redis store takes a url, not a path",
                ));
            }
            StoreKind::Sqlite => {
                if let Some((field, _)) = redis_only.iter().find(|(_, given)| *given) {
                    return Err(invalid(
                        *field,
                        "only a Redis store (kind = \"redis\") takes it",
                    ));
                }
            }
            _ => {}
        }
        let (url, url_env, prefix, lock_lease_ms) = (
            self.url.clone(),
            self.url_env.clone(),
            self.prefix.clone(),
            self.lock_lease_ms,
        );
        let kind = self.kind;
        let path = self.path.clone();
        let key = self.key()?;
        if kind == StoreKind::Redis {
            let url = match (url, url_env) {
                (Some(url), None) => {
                    nonempty(&url, "store.url")?;
                    RedisUrl::Literal(url)
                }
                (None, Some(variable)) => {
                    nonempty(&variable, "store.url_env")?;
                    RedisUrl::Env(variable)
                }
                _ => {
                    return Err(invalid(
                        "store.url",
                        "a Redis store needs url or url_env (one of them)",
                    ));
                }
            };
            if let Some(prefix) = &prefix {
                nonempty(prefix, "store.prefix")?;
            }
            if lock_lease_ms.is_some_and(|ms| ms < 300) {
                return Err(invalid("store.lock_lease_ms", "at least 300"));
            }
            return Ok(StoreSettings::Redis {
                url,
                prefix,
                lock_lease: lock_lease_ms.map(Duration::from_millis),
                key,
            });
        }
        let path = path.unwrap_or_else(|| PathBuf::from("proxy.db"));
        if path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        Ok(StoreSettings::Sqlite { path, key })
    }

    /// The key of a persistent store.
    fn key(self) -> Result<StoreKey, ConfigError> {
        let key = match (self.key_env, self.plaintext) {
            (Some(_), true) => {
                return Err(invalid(
                    "store.plaintext",
                    "give key_env (encrypted) or plaintext = true (unencrypted), not both",
                ));
            }
            (None, false) => {
                return Err(invalid(
                    "store.key_env",
                    "a persistent store needs an encryption key: name the environment variable \
                     holding a base64 32-byte key (`openssl rand -base64 32`), or set \
                     plaintext = true to store tokens unencrypted",
                ));
            }
            (None, true) => {
                if self.key_id.is_some() || !self.old_keys.is_empty() {
                    return Err(invalid(
                        "store.plaintext",
                        "plaintext takes no key_id or old_keys",
                    ));
                }
                StoreKey::Plaintext
            }
            (Some(variable), false) => {
                nonempty(&variable, "store.key_env")?;
                let id = self.key_id.unwrap_or_else(|| "k1".to_owned());
                let is_id = |id: &str| {
                    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())
                };
                if !is_id(&id) {
                    return Err(invalid(
                        "store.key_id",
                        "1 to 64 printable ASCII characters",
                    ));
                }
                let mut old = Vec::new();
                for (i, key) in self.old_keys.into_iter().enumerate() {
                    if !is_id(&key.id) || key.id == id {
                        return Err(invalid(
                            format!("store.old_keys[{i}].id"),
                            "1 to 64 printable ASCII characters, not the current key_id",
                        ));
                    }
                    nonempty(&key.env, &format!("store.old_keys[{i}].env"))?;
                    old.push((key.id, key.env));
                }
                StoreKey::Env { id, variable, old }
            }
        };
        Ok(key)
    }
}

impl CorsFile {
    fn check(self) -> Result<Vec<String>, ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let field = format!("cors.allowed_origins[{i}]");
            let uri = url(origin, &field)?;
            // An origin is scheme, host and port: nothing after it, not even `/`.
            if !(uri.path() == "/" && !origin.ends_with('/') && uri.query().is_none()) {
                return Err(invalid(
                    field,
                    "an origin (https://app.example.com), no path",
                ));
            }
        }
        Ok(self.allowed_origins)
    }
}

impl AuthFile {
    fn check(self) -> Result<AuthSettings, ConfigError> {
        url(&self.issuer, "auth.issuer")?;
        nonempty(&self.audience, "auth.audience")?;
        scopes(&self.scopes, "auth.scopes")?;
        Ok(AuthSettings {
            issuer: self.issuer,
            audience: self.audience,
            scopes: self.scopes,
            token_type: self.token_type,
        })
    }
}

impl LimitsFile {
    fn check(self) -> Result<Limits, ConfigError> {
        let defaults = Limits::default();
        let seconds = |value: Option<u64>, default: Duration, field: &str| match value {
            None => Ok(default),
            Some(0) => Err(invalid(field, "must be at least 1")),
            Some(secs) => Ok(Duration::from_secs(secs)),
        };
        let limits = Limits {
            request_timeout: seconds(
                self.request_timeout_secs,
                defaults.request_timeout,
                "limits.request_timeout_secs",
            )?,
            upstream_timeout: seconds(
                self.upstream_timeout_secs,
                defaults.upstream_timeout,
                "limits.upstream_timeout_secs",
            )?,
            max_request_body: match self.max_request_body_bytes {
                Some(0) => {
                    return Err(invalid(
                        "limits.max_request_body_bytes",
                        "must be at least 1",
                    ));
                }
                Some(bytes) => bytes,
                None => defaults.max_request_body,
            },
        };
        if limits.upstream_timeout > limits.request_timeout {
            return Err(invalid(
                "limits.upstream_timeout_secs",
                "must not exceed limits.request_timeout_secs",
            ));
        }
        Ok(limits)
    }
}

impl ProviderFile {
    fn check(self, field: &str) -> Result<ProviderSettings, ConfigError> {
        let at = |name: &str| format!("{field}.{name}");
        let base_url = url(&self.base_url, &at("base_url"))?
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        if base_url.contains(['?', '#']) {
            return Err(invalid(at("base_url"), "must not have a query or fragment"));
        }
        let authorize_url = url(&self.authorize_url, &at("authorize_url"))?;
        let token_url = url(&self.token_url, &at("token_url"))?;
        let revocation_url = self
            .revocation_url
            .as_deref()
            .map(|revocation| url(revocation, &at("revocation_url")))
            .transpose()?;
        if let Some(issuer) = &self.issuer {
            url(issuer, &at("issuer"))?;
        }
        if self.iss_parameter_supported && self.issuer.is_none() {
            return Err(invalid(
                at("iss_parameter_supported"),
                "needs the provider's issuer (issuer = \"https://…\")",
            ));
        }
        nonempty(&self.client_id, &at("client_id"))?;
        let client_secret = match (self.client_secret, self.client_secret_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    at("client_secret_env"),
                    "give the secret inline or by environment variable, not both",
                ));
            }
            (Some(secret), None) => Some(TokenSecret::new(secret)),
            (None, Some(variable)) => match std::env::var(&variable) {
                Ok(secret) if !secret.is_empty() => Some(TokenSecret::new(secret)),
                _ => {
                    return Err(invalid(
                        at("client_secret_env"),
                        format!("the environment variable {variable} is not set"),
                    ));
                }
            },
            (None, None) => None,
        };
        match (self.client_auth, &client_secret) {
            (ClientAuth::None, Some(_)) => {
                return Err(invalid(
                    at("client_secret"),
                    "a public client (client_auth = \"none\") has no secret",
                ));
            }
            (ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost, None) => {
                return Err(invalid(
                    at("client_secret"),
                    "required unless client_auth = \"none\" (or set client_secret_env)",
                ));
            }
            _ => {}
        }
        scopes(&self.scopes, &at("scopes"))?;
        let mut rules: Vec<JsonErrorCode> = self
            .vendor_rules
            .iter()
            .map(|rule| match rule {
                VendorRule::PowerBi => JsonErrorCode::power_bi(),
            })
            .collect();
        for (i, rule) in self.json_rules.into_iter().enumerate() {
            let status = StatusCode::from_u16(rule.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or_else(|| {
                    invalid(
                        format!("{field}.json_rules[{i}].status"),
                        "must be 400 to 599",
                    )
                })?;
            if !(rule.pointer.is_empty() || rule.pointer.starts_with('/')) {
                return Err(invalid(
                    format!("{field}.json_rules[{i}].pointer"),
                    "must be a JSON pointer (RFC 6901) such as /error/code",
                ));
            }
            let class = match rule.means {
                Meaning::TokenRejected => UpstreamClass::TokenRejected,
                Meaning::InsufficientScope => {
                    UpstreamClass::InsufficientScope { scopes: Vec::new() }
                }
                Meaning::Forbidden => UpstreamClass::Forbidden,
            };
            rules.push(JsonErrorCode::new(status, rule.pointer, rule.value).class(class));
        }
        Ok(ProviderSettings {
            base_url,
            authorize_url,
            token_url,
            revocation_url,
            issuer: self.issuer,
            iss_parameter_supported: self.iss_parameter_supported,
            client_id: self.client_id,
            client_secret,
            client_auth: self.client_auth,
            scopes: self.scopes,
            resource: self.resource,
            authorize_params: self.authorize_params,
            refresh_skew: Duration::from_secs(self.refresh_skew_secs),
            rules,
        })
    }
}

fn nonempty(value: &str, field: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

/// An absolute `https` URL — or `http` to a loopback host, for local development: OAuth over
/// plain HTTP anywhere else would hand codes and tokens to the network.
fn url(value: &str, field: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = value
        .parse()
        .ok()
        .filter(|u: &Uri| u.authority().is_some())
        .ok_or_else(|| invalid(field, "must be an absolute URL"))?;
    let loopback = matches!(uri.host(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if loopback => Ok(uri),
        Some("http") => Err(invalid(
            field,
            "must use https (plain http is accepted for loopback hosts only)",
        )),
        _ => Err(invalid(field, "must be an http(s) URL")),
    }
}

/// A URL that is an origin only: the proxy serves its routes at the root.
fn origin(value: &str, field: &str) -> Result<String, ConfigError> {
    let uri = url(value, field)?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(invalid(
            field,
            "must be an origin (scheme, host, port), without a path",
        ));
    }
    Ok(format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    ))
}

fn scopes(scopes: &[String], field: &str) -> Result<(), ConfigError> {
    // RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
    let bad = scopes.iter().position(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    });
    match bad {
        Some(i) => Err(invalid(
            format!("{field}[{i}]"),
            "not a scope token (RFC 6749 §3.3)",
        )),
        None => Ok(()),
    }
}
