//! The link lifecycle: connecting a user's account at a provider (the OAuth 2 authorization-code
//! flow with PKCE), re-linking, listing and unlinking (with revocation) — [`Connector`], one
//! per provider, over a store that keeps links and flows ([`TokenStore`] + [`FlowStore`]).
//! With the `axum` feature, [`routes`] mounts it all in one line.
//!
//! 1. [`Connector::start`]: a fresh `state`, a PKCE verifier (RFC 7636, `S256`) and a browser
//!    binding are kept as a [`PendingFlow`] in the store — so any replica sharing it can finish
//!    the flow — and the user's browser is sent to the provider's authorization endpoint with
//!    the binding in a cookie ([`Started::set_cookie`]: `__Host-` prefixed, `Secure`, except on
//!    loopback where browsers allow neither).
//! 2. The provider sends the browser back to the callback: [`Connector::finish`] looks at the
//!    flow without using it up, checks the binding cookie, the provider and the RFC 9207 `iss`
//!    (mix-up defence), and only then takes it — once, across replicas — exchanges the code
//!    with the verifier ([`OAuthClient::exchange_code`]) and stores the new link under a new
//!    version (a refresh of the old one still in flight does not write over it). The grant it
//!    replaces is revoked at the provider.
//! 3. [`Connector::unlink`] removes a link and revokes its grant (RFC 7009, refresh token
//!    first); a revocation that fails is logged and does not block the unlink.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{
//!     http_client::HttpClient,
//!     upstream::{connect::Connector, grant::OAuthClient, store::{LinkKey, MemoryStore}},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # let http = HttpClient::new(tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
//! #     Err::<http::Response<http_body_util::Full<bytes::Bytes>>, tower_bearer::BoxError>("offline".into())
//! # }));
//! let client = OAuthClient::new(http, "my-client").client_secret_basic("s3cret");
//! let github = Connector::new(
//!     "github",
//!     "https://github.com/login/oauth/authorize".parse().unwrap(),
//!     "https://github.com/login/oauth/access_token".parse().unwrap(),
//!     client,
//!     "https://api.example.com/connect/github/callback",
//! )
//! .scopes(["repo"]);
//!
//! let store = MemoryStore::new();
//! let started = github
//!     .start(&store, LinkKey::new("alice", "github"), Some("/settings".into()), None)
//!     .await
//!     .unwrap();
//! assert!(started.authorization_url().starts_with("https://github.com/login/oauth/authorize?"));
//! assert!(started.authorization_url().contains("code_challenge_method=S256"));
//! let cookie = started.set_cookie(true, Duration::from_secs(600));
//! assert!(cookie.to_str().unwrap().starts_with("__Host-tb-connect="));
//! # }
//! ```

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod routes;

use std::{fmt, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderValue, Uri, uri::PathAndQuery};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest as _, Sha256};

use super::{
    grant::{CodeExchange, GrantError, OAuthClient, RefreshGrant, TokenTypeHint},
    store::{FlowStore, Link, LinkKey, PendingFlow, TokenSecret, TokenStore},
};

/// How long a user has to finish a connect flow, unless configured.
pub const DEFAULT_FLOW_LIFETIME: Duration = Duration::from_secs(600);

/// How many flows one user may have in progress, unless configured: starting another drops the
/// oldest, so one user starting flows in a loop cannot crowd out anyone else's.
pub const DEFAULT_FLOWS_PER_USER: usize = 10;

/// How long an unlink or a re-link waits for the provider to revoke the old grant.
pub const REVOCATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The binding cookie's name where cookies are `Secure` (`__Host-`: only ever set by this host,
/// for `/`, over HTTPS — a sibling subdomain cannot plant one).
pub const SECURE_BINDING_COOKIE: &str = "__Host-tb-connect";

/// The binding cookie's name on loopback over plain HTTP (a development setup), where a
/// `__Host-` cookie cannot be set.
pub const LOOPBACK_BINDING_COOKIE: &str = "tb-connect";

/// The RFC 7636 `S256` code challenge of `verifier`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `N` random bytes, base64url: states, verifiers, bindings.
fn random_url_safe<const N: usize>() -> Result<String, ConnectError> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(|_| ConnectError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `value` if it is a path on this server to come back to: absolute-path, not
/// protocol-relative (`//host`), no backslash (browsers read `/\host` as `//host`), nothing but
/// visible ASCII — so the flow is no open redirect.
pub fn safe_return_to(value: &str) -> Option<&str> {
    let safe = value.starts_with('/')
        && !value.starts_with("//")
        && value.len() <= 2048
        && value.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && value.parse::<PathAndQuery>().is_ok();
    safe.then_some(value)
}

/// Why a step of the link lifecycle failed. Never contains a code, token, verifier or binding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No live flow under the callback's `state` for this provider (unknown, expired, already
    /// finished, or started for another provider).
    #[error("unknown or expired connect flow")]
    UnknownFlow,
    /// The callback came from another browser than the one that started the flow (its binding
    /// cookie is missing or different). The flow is left for the right browser.
    #[error("the connect flow was started in another browser")]
    WrongBrowser,
    /// RFC 9207: the callback's `iss` is not the provider's issuer, or is missing although the
    /// provider advertises it — possibly a mix-up attack. The flow is left in place.
    #[error("the authorization response names another issuer than the provider's")]
    IssuerMismatch,
    /// The user did not grant access at the provider (`error` in the callback, e.g.
    /// `access_denied`). The flow is over.
    #[error("access was not granted at the provider ({0})")]
    Denied(String),
    /// The callback carries no code.
    #[error("the provider sent no authorization code")]
    NoCode,
    /// `return_to` is not a path on this server.
    #[error("return_to must be a path on this server")]
    UnsafeReturnTo,
    /// The token endpoint did not exchange the code.
    #[error("the provider did not exchange the code: {0}")]
    Exchange(#[source] GrantError),
    /// The store failed.
    #[error("the link store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The system's random source failed.
    #[error("no randomness for the connect flow")]
    Random,
}

impl ConnectError {
    fn store<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        Self::Store(Box::new(error))
    }
}

/// RFC 9207 for one provider: its issuer identifier, and whether it advertises
/// `authorization_response_iss_parameter_supported` (then a callback without `iss` is refused).
#[derive(Clone, Debug)]
struct IssuerCheck {
    issuer: String,
    required: bool,
}

/// One provider's connect flow and the lifecycle of its links. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    provider: Arc<str>,
    authorization_endpoint: Uri,
    token_endpoint: Uri,
    revocation_endpoint: Option<Uri>,
    client: OAuthClient,
    redirect_uri: String,
    scopes: Vec<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    issuer: Option<IssuerCheck>,
    lifetime: Duration,
    per_user: usize,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner;
        f.debug_struct("Connector")
            .field("provider", &c.provider)
            .field("authorization_endpoint", &c.authorization_endpoint)
            .field("token_endpoint", &c.token_endpoint)
            .field("revocation_endpoint", &c.revocation_endpoint)
            .field("client", &c.client)
            .field("redirect_uri", &c.redirect_uri)
            .field("scopes", &c.scopes)
            .finish_non_exhaustive()
    }
}

/// A flow just started: where to send the browser, and the binding it must carry back.
#[derive(Clone)]
pub struct Started {
    authorization_url: String,
    binding: TokenSecret,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

impl Started {
    /// The provider's authorization URL to send the browser to.
    pub fn authorization_url(&self) -> &str {
        &self.authorization_url
    }

    /// The binding the callback must come with.
    pub fn binding(&self) -> &TokenSecret {
        &self.binding
    }

    /// The `Set-Cookie` value carrying the binding for `max_age`: `__Host-tb-connect`, `Path=/`,
    /// `Secure`, `HttpOnly`, `SameSite=Lax` (the callback is a top-level navigation from the
    /// provider); with `secure` false (loopback over plain HTTP) `tb-connect` without `Secure`.
    pub fn set_cookie(&self, secure: bool, max_age: Duration) -> HeaderValue {
        binding_cookie(secure, self.binding.expose_secret(), max_age.as_secs())
    }
}

/// The `Set-Cookie` value that clears the binding cookie.
pub fn clear_binding_cookie(secure: bool) -> HeaderValue {
    binding_cookie(secure, "", 0)
}

fn binding_cookie(secure: bool, value: &str, max_age: u64) -> HeaderValue {
    let (name, secure) = if secure {
        (SECURE_BINDING_COOKIE, "; Secure")
    } else {
        (LOOPBACK_BINDING_COOKIE, "")
    };
    let cookie =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    // The binding is base64url: always a valid field value.
    let mut value = HeaderValue::try_from(cookie).unwrap_or(HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// The binding cookie's value in a request's `Cookie` headers, if any.
pub fn binding_from(headers: &http::HeaderMap, secure: bool) -> Option<&str> {
    let name = if secure {
        SECURE_BINDING_COOKIE
    } else {
        LOOPBACK_BINDING_COOKIE
    };
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then_some(value)
        })
}

/// What the provider's redirect to the callback carries (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Callback {
    /// The flow's `state`.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// The error, when the user did not grant access.
    pub error: Option<String>,
    /// The issuer of the response (RFC 9207).
    pub iss: Option<String>,
}

/// A flow finished: the link stored, and where the user wanted to return.
#[derive(Clone, Debug)]
pub struct Connected {
    /// The new link's key.
    pub key: LinkKey,
    /// Where to send the user: a path on this server, if the flow was started with one.
    pub return_to: Option<String>,
}

/// Whether an unlink found a link and whether the provider confirmed revoking its grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlinked {
    /// There was a link, and it is removed.
    pub removed: bool,
    /// The provider confirmed the revocation (`false`: no revocation endpoint, no token, or the
    /// revocation failed — logged).
    pub revoked: bool,
}

/// `application/x-www-form-urlencoded` unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

impl Connector {
    /// The connect flow of `provider` (the name in routes and link keys): the user is sent to
    /// `authorization_endpoint`, the code is exchanged at `token_endpoint` as `client`, and the
    /// provider sends the browser back to `redirect_uri` (as registered there).
    pub fn new(
        provider: impl Into<Arc<str>>,
        authorization_endpoint: Uri,
        token_endpoint: Uri,
        client: OAuthClient,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider: provider.into(),
                authorization_endpoint,
                token_endpoint,
                revocation_endpoint: None,
                client,
                redirect_uri: redirect_uri.into(),
                scopes: Vec::new(),
                resources: Vec::new(),
                params: Vec::new(),
                issuer: None,
                lifetime: DEFAULT_FLOW_LIFETIME,
                per_user: DEFAULT_FLOWS_PER_USER,
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// The scopes to ask for.
    pub fn scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.with(|c| c.scopes = scopes.into_iter().map(Into::into).collect())
    }

    /// Asks for a token for `resource` (RFC 8707) in the authorization request, the code
    /// exchange and every refresh; may be called more than once.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.with(|c| c.resources.push(resource.into()))
    }

    /// Adds a parameter to the authorization request (e.g. `prompt=consent`,
    /// `access_type=offline`).
    pub fn param(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.with(|c| c.params.push((name.into(), value.into())))
    }

    /// Revokes grants at `endpoint` (RFC 7009) when a link is unlinked or replaced.
    pub fn revocation_endpoint(self, endpoint: Uri) -> Self {
        self.with(|c| c.revocation_endpoint = Some(endpoint))
    }

    /// RFC 9207: the provider's issuer identifier. A callback's `iss` must equal it; with
    /// `advertised` (the provider's metadata says
    /// `authorization_response_iss_parameter_supported`), a callback without `iss` is refused
    /// too.
    pub fn issuer(self, issuer: impl Into<String>, advertised: bool) -> Self {
        self.with(|c| {
            c.issuer = Some(IssuerCheck {
                issuer: issuer.into(),
                required: advertised,
            });
        })
    }

    /// How long a user has to finish a flow ([`DEFAULT_FLOW_LIFETIME`] unless set).
    pub fn flow_lifetime(self, lifetime: Duration) -> Self {
        self.with(|c| c.lifetime = lifetime)
    }

    /// How many flows one user may have in progress ([`DEFAULT_FLOWS_PER_USER`] unless set).
    pub fn flows_per_user(self, flows: usize) -> Self {
        self.with(|c| c.per_user = flows.max(1))
    }

    /// The provider's name.
    pub fn provider(&self) -> &Arc<str> {
        &self.inner.provider
    }

    /// How long a user has to finish a flow.
    pub fn lifetime(&self) -> Duration {
        self.inner.lifetime
    }

    /// The refresh grant of links connected here: the same client, token endpoint and
    /// resources.
    pub fn refresh_grant(&self) -> RefreshGrant {
        let c = &self.inner;
        c.resources.iter().fold(
            RefreshGrant::with_client(c.client.clone(), c.token_endpoint.clone()),
            |grant, resource| grant.resource(resource.clone()),
        )
    }

    /// The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2.1).
    fn authorization_url(&self, state: &str, challenge: &str) -> String {
        let c = &self.inner;
        let scope = c.scopes.join(" ");
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", c.client.client_id()),
            ("redirect_uri", &c.redirect_uri),
            ("state", state),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        if !scope.is_empty() {
            params.push(("scope", &scope));
        }
        params.extend(c.resources.iter().map(|r| ("resource", r.as_str())));
        params.extend(c.params.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let query = params
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(name, QUERY),
                    utf8_percent_encode(value, QUERY)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let separator = if c.authorization_endpoint.query().is_some() {
            '&'
        } else {
            '?'
        };
        format!("{}{separator}{query}", c.authorization_endpoint)
    }

    /// Starts a flow that links `key`'s user to this provider: keeps it in `store` and returns
    /// where to send the browser. `binding` is the browser's binding cookie, if it has one
    /// already (several flows in one browser share it); otherwise a new one is made.
    /// `return_to` must be a path on this server.
    pub async fn start<St: FlowStore>(
        &self,
        store: &St,
        key: LinkKey,
        return_to: Option<String>,
        binding: Option<&str>,
    ) -> Result<Started, ConnectError> {
        let state = random_url_safe::<32>()?;
        let verifier = random_url_safe::<32>()?;
        let binding = match binding.filter(|b| (32..=128).contains(&b.len())) {
            Some(binding) => binding.to_owned(),
            None => random_url_safe::<32>()?,
        };
        let mut flow = PendingFlow::new(
            LinkKey::for_subject(
                key.issuer().unwrap_or(""),
                key.user(),
                self.inner.provider.clone(),
            ),
            verifier.clone(),
            binding.clone(),
            self.inner.lifetime,
        );
        if let Some(return_to) = return_to {
            let return_to = safe_return_to(&return_to).ok_or(ConnectError::UnsafeReturnTo)?;
            flow = flow.with_return_to(return_to);
        }
        store
            .put_flow(&state, flow, self.inner.per_user)
            .await
            .map_err(ConnectError::store)?;
        tracing::info!(provider = &*self.inner.provider, "connect flow started");
        Ok(Started {
            authorization_url: self.authorization_url(&state, &s256_challenge(&verifier)),
            binding: TokenSecret::new(binding),
        })
    }

    /// Finishes a flow from the provider's `callback`, in the browser whose binding cookie is
    /// `binding`: checks it all before taking the flow, exchanges the code, stores the link
    /// (revoking the grant it replaces) and says where to send the user.
    pub async fn finish<St: FlowStore + TokenStore>(
        &self,
        store: &St,
        callback: &Callback,
        binding: Option<&str>,
    ) -> Result<Connected, ConnectError> {
        let state = callback.state.as_deref().ok_or(ConnectError::UnknownFlow)?;
        let flow = FlowStore::peek_flow(store, state)
            .await
            .map_err(ConnectError::store)?
            .filter(|flow| flow.key().provider() == &*self.inner.provider)
            .ok_or(ConnectError::UnknownFlow)?;
        if !binding.is_some_and(|b| same_secret(b, flow.binding().expose_secret())) {
            tracing::warn!(
                provider = &*self.inner.provider,
                "connect callback from another browser than the one that started the flow"
            );
            return Err(ConnectError::WrongBrowser);
        }
        if let Some(check) = &self.inner.issuer {
            let mixed_up = match &callback.iss {
                Some(iss) => iss != &check.issuer,
                None => check.required,
            };
            if mixed_up {
                tracing::warn!(
                    provider = &*self.inner.provider,
                    "the authorization response's issuer is not the provider's (RFC 9207)"
                );
                return Err(ConnectError::IssuerMismatch);
            }
        }
        if !FlowStore::take_flow(store, state)
            .await
            .map_err(ConnectError::store)?
        {
            // Another callback of the same flow took it first.
            return Err(ConnectError::UnknownFlow);
        }
        if let Some(error) = &callback.error {
            let error: String = error
                .chars()
                .filter(char::is_ascii_graphic)
                .take(64)
                .collect();
            tracing::info!(provider = &*self.inner.provider, %error, "access not granted");
            return Err(ConnectError::Denied(error));
        }
        let code = callback.code.as_deref().ok_or(ConnectError::NoCode)?;
        let c = &self.inner;
        let link = c
            .client
            .exchange_code(
                &c.token_endpoint,
                CodeExchange {
                    code,
                    verifier: flow.verifier().expose_secret(),
                    redirect_uri: &c.redirect_uri,
                    resources: &c.resources,
                    requested_scopes: &c.scopes,
                },
            )
            .await
            .map_err(|error| {
                tracing::warn!(provider = &*c.provider, %error, "code exchange failed");
                ConnectError::Exchange(error)
            })?;
        let key = flow.key().clone();
        // The grant this one replaces, to revoke once the new one is stored.
        let replaced = TokenStore::load(store, &key).await.ok().flatten();
        // A new version: a refresh of the old link still in flight does not write over it.
        TokenStore::insert(store, &key, link.clone())
            .await
            .map_err(ConnectError::store)?;
        tracing::info!(provider = &*c.provider, "connected");
        if let Some(replaced) = replaced.filter(|old| old.refresh_token() != link.refresh_token()) {
            self.revoke(&replaced).await;
        }
        Ok(Connected {
            key,
            return_to: flow.return_to().map(str::to_owned),
        })
    }

    /// Removes the link at `key` and revokes its grant at the provider (refresh token first);
    /// a revocation that fails is logged and does not block the unlink.
    pub async fn unlink<St: TokenStore>(
        &self,
        store: &St,
        key: &LinkKey,
    ) -> Result<Unlinked, ConnectError> {
        let link = store.load(key).await.map_err(ConnectError::store)?;
        let removed = store.remove(key).await.map_err(ConnectError::store)?;
        let revoked = match link {
            Some(link) => self.revoke(&link).await,
            None => false,
        };
        tracing::info!(
            provider = &*self.inner.provider,
            removed,
            revoked,
            "unlinked"
        );
        Ok(Unlinked { removed, revoked })
    }

    /// Revokes `link`'s grant: its refresh token (which ends the grant at most providers),
    /// else its access token. Whether the provider confirmed it; failures are logged.
    pub async fn revoke(&self, link: &Link) -> bool {
        let c = &self.inner;
        let Some(endpoint) = &c.revocation_endpoint else {
            return false;
        };
        let (token, hint) = match link.refresh_token() {
            Some(refresh) => (refresh, TokenTypeHint::RefreshToken),
            None => (link.access_token(), TokenTypeHint::AccessToken),
        };
        let revocation = c.client.revoke(endpoint, token, hint);
        match tokio::time::timeout(REVOCATION_TIMEOUT, revocation).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(provider = &*c.provider, %error, "revocation failed");
                false
            }
            Err(_) => {
                tracing::warn!(provider = &*c.provider, "revocation timed out");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_be_a_path_here() {
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "x",
            "/a b",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad}");
        }
        assert_eq!(safe_return_to("/settings?tab=1"), Some("/settings?tab=1"));
    }

    #[test]
    fn the_binding_cookie_is_host_prefixed_unless_on_loopback() {
        let started = Started {
            authorization_url: String::new(),
            binding: TokenSecret::new("b1"),
        };
        assert_eq!(
            started.set_cookie(true, Duration::from_secs(600)),
            "__Host-tb-connect=b1; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            started.set_cookie(false, Duration::from_secs(600)),
            "tb-connect=b1; Path=/; Max-Age=600; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            clear_binding_cookie(true),
            "__Host-tb-connect=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; __Host-tb-connect=b1; tb-connect=b2"),
        );
        assert_eq!(binding_from(&headers, true), Some("b1"));
        assert_eq!(binding_from(&headers, false), Some("b2"));
    }

    #[test]
    fn the_s256_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
