//! The demo's third-party provider: an OAuth 2 authorization server and an API, with the habits
//! that make calling third parties hard.
//!
//! - Short-lived access tokens ([`ACCESS_TOKEN_LIFETIME`]) and rotating refresh tokens: a refresh
//!   token works once, and replaying a spent one revokes the whole grant (RFC 9700 §4.14).
//! - A Power-BI-style quirk: an *expired* token is answered `403 {"error":{"code":"TokenExpired"}}`
//!   (an unknown or revoked one gets a proper `401` with `error="invalid_token"`).
//! - `/authorize` signs everyone in as its one account, [`ACCOUNT`], and consents at once; it
//!   insists on PKCE (`S256`).
//! - Two buttons for the walkthrough: `POST /demo/expire?account=…` makes the account's access
//!   tokens expire now (the provider's clock jumps; the proxy does not know), and
//!   `POST /demo/revoke?account=…` revokes its grants, as a user would in the provider's settings.
//!
//! The API: `GET /v1/me` (any valid token) and `GET /v1/admin` (scope `admin`, which the proxy
//! never asks for: a provider-side insufficient scope).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tower_bearer::upstream::{classify::JsonErrorCode, store::Link, store::TokenSecret};

use super::{
    super::{
        config::{ClientAuth, ProviderSettings},
        random,
    },
    serve_in_background,
};

/// The provider's one account.
pub const ACCOUNT: &str = "alice";

/// How long its access tokens live.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The proxy's client id at the provider.
const CLIENT_ID: &str = "tower-bearer-proxy";

/// The scope the proxy asks for.
const SCOPE: &str = "profile";

/// A running demo provider.
pub struct Provider {
    base: String,
    shared: Arc<Shared>,
}

struct Shared {
    /// Its issuer identifier: its origin.
    issuer: String,
    client_secret: String,
    redirect_uri: String,
    state: Mutex<Tokens>,
    /// How long the token endpoint takes before it looks at a request (a slow provider). A
    /// request whose client goes away meanwhile is never processed.
    token_delay: Mutex<Duration>,
}

/// What the token endpoint saw, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Refresh requests received (counted on arrival, before the delay).
    pub received: usize,
    /// Refresh tokens honoured (each one rotated).
    pub refreshed: usize,
    /// Grants revoked through the revocation endpoint (RFC 7009).
    pub revoked: usize,
    /// Spent refresh tokens presented again (each one revoked its grant).
    pub replayed: usize,
}

#[derive(Default)]
struct Tokens {
    stats: RefreshStats,
    codes: HashMap<String, Code>,
    grants: Vec<Grant>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
}

struct Code {
    grant: usize,
    challenge: String,
    expires: Instant,
}

struct Grant {
    account: String,
    scopes: Vec<String>,
    revoked: bool,
    /// Access tokens issued so far: the API reports which one it was called with.
    issued: u32,
}

struct Access {
    grant: usize,
    generation: u32,
    expires: Instant,
}

struct Refresh {
    grant: usize,
    spent: bool,
}

impl Provider {
    /// Starts it on a loopback port; `redirect_uri` is the proxy's connect callback.
    pub async fn start(redirect_uri: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            issuer: base.clone(),
            client_secret: random::url_safe::<24>(),
            redirect_uri,
            state: Mutex::default(),
            token_delay: Mutex::default(),
        });
        let router = Router::new()
            .route("/authorize", get(authorize).post(consent))
            .route("/token", post(token))
            .route("/oauth/revoke", post(revoke_token))
            .route("/v1/me", get(me))
            .route("/v1/admin", get(admin))
            .route("/demo/expire", post(expire))
            .route("/demo/revoke", post(revoke))
            .with_state(shared.clone());
        serve_in_background(listener, router);
        Ok(Self { base, shared })
    }

    /// Its origin, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// How the proxy is configured for it.
    pub fn settings(&self) -> ProviderSettings {
        ProviderSettings {
            base_url: format!("{}/v1", self.base),
            authorize_url: format!("{}/authorize", self.base)
                .parse()
                .expect("a loopback URL"),
            token_url: format!("{}/token", self.base)
                .parse()
                .expect("a loopback URL"),
            revocation_url: Some(
                format!("{}/oauth/revoke", self.base)
                    .parse()
                    .expect("a loopback URL"),
            ),
            issuer: Some(self.base.clone()),
            iss_parameter_supported: true,
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(TokenSecret::new(self.shared.client_secret.clone())),
            client_auth: ClientAuth::ClientSecretBasic,
            scopes: vec![SCOPE.to_owned()],
            resource: None,
            authorize_params: Default::default(),
            refresh_skew: Duration::from_secs(30),
            rules: vec![JsonErrorCode::power_bi()],
        }
    }

    /// Makes the token endpoint take `delay` before it looks at each request.
    #[allow(dead_code)] // for the tests (tests/store_proxy.rs), not the demo
    pub fn set_token_delay(&self, delay: Duration) {
        *self
            .shared
            .token_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Revokes `account`'s grants, as its user would in the provider's settings.
    pub fn revoke_account(&self, account: &str) {
        for grant in self.shared.tokens().grants.iter_mut() {
            if grant.account == account {
                grant.revoked = true;
            }
        }
    }

    /// What the token endpoint saw so far.
    #[allow(dead_code)] // for the tests (tests/store_proxy.rs), not the demo
    pub fn refresh_stats(&self) -> RefreshStats {
        self.shared.tokens().stats
    }

    /// A grant for `account`, as if it had gone through the connect flow: the link to store.
    pub fn grant(&self, account: &str) -> Link {
        let mut tokens = self.shared.tokens();
        let grant = tokens.new_grant(account, vec![SCOPE.to_owned()]);
        let (access, refresh) = tokens.issue(grant);
        Link::new(access)
            .with_refresh_token(refresh)
            .with_expires_in(ACCESS_TOKEN_LIFETIME)
            .with_scopes([SCOPE])
    }
}

impl Shared {
    fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tokens {
    fn new_grant(&mut self, account: &str, scopes: Vec<String>) -> usize {
        self.grants.push(Grant {
            account: account.to_owned(),
            scopes,
            revoked: false,
            issued: 0,
        });
        self.grants.len() - 1
    }

    /// A new access token and refresh token for `grant`.
    fn issue(&mut self, grant: usize) -> (String, String) {
        self.grants[grant].issued += 1;
        let access = format!("demo-at-{}", random::url_safe::<24>());
        let refresh = format!("demo-rt-{}", random::url_safe::<24>());
        self.access.insert(
            access.clone(),
            Access {
                grant,
                generation: self.grants[grant].issued,
                expires: Instant::now() + ACCESS_TOKEN_LIFETIME,
            },
        );
        self.refresh.insert(
            refresh.clone(),
            Refresh {
                grant,
                spent: false,
            },
        );
        (access, refresh)
    }
}

#[derive(Deserialize, serde::Serialize)]
struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// A browser (it asks for HTML) is shown a consent page; a script consents at once.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !browser {
        return grant_code(&shared, query);
    }
    // The request's own parameters, carried through the form as they came.
    let fields: String = serde_json::to_value(&query)
        .ok()
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_str()?.to_owned())))
        .map(|(name, value)| {
            format!(
                "<input type=hidden name=\"{}\" value=\"{}\">",
                html_escape(&name),
                html_escape(&value)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Demo provider: consent</title>\
         <h1>Demo provider</h1><p>The tower-bearer proxy asks to read your profile \
         (account <b>{ACCOUNT}</b>).</p>\
         <form method=post action=/authorize>{fields}\
         <button id=allow name=decision value=allow>Allow</button> \
         <button id=deny name=decision value=deny>Deny</button></form>"
    ))
    .into_response()
}

#[derive(Deserialize)]
struct Decision {
    decision: String,
    #[serde(flatten)]
    query: AuthorizeQuery,
}

/// The consent page's answer.
async fn consent(State(shared): State<Arc<Shared>>, Form(form): Form<Decision>) -> Response {
    if form.decision == "allow" {
        return grant_code(&shared, form.query);
    }
    if form.query.redirect_uri != shared.redirect_uri {
        return (StatusCode::BAD_REQUEST, "unknown redirect_uri\n").into_response();
    }
    see_other(&format!(
        "{}?error=access_denied&state={}&iss={}",
        shared.redirect_uri,
        encode(&form.query.state),
        encode(&shared.issuer)
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Consents: issues a code and sends the browser back with it.
fn grant_code(shared: &Shared, query: AuthorizeQuery) -> Response {
    // Errors before the redirect URI is known to be ours must not redirect (RFC 6749 §4.1.2.1).
    if query.client_id != CLIENT_ID || query.redirect_uri != shared.redirect_uri {
        return (StatusCode::BAD_REQUEST, "unknown client or redirect_uri\n").into_response();
    }
    let challenge = match (query.code_challenge, query.code_challenge_method.as_deref()) {
        (Some(challenge), Some("S256")) if query.response_type == "code" => challenge,
        _ => {
            let location = format!(
                "{}?error=invalid_request&state={}",
                shared.redirect_uri,
                encode(&query.state)
            );
            return see_other(&location);
        }
    };
    let mut tokens = shared.tokens();
    let grant = tokens.new_grant(ACCOUNT, vec![SCOPE.to_owned()]);
    let code = random::url_safe::<24>();
    tokens.codes.insert(
        code.clone(),
        Code {
            grant,
            challenge,
            expires: Instant::now() + Duration::from_secs(60),
        },
    );
    // RFC 9207: the response names its issuer (this provider's origin).
    let location = format!(
        "{}?code={code}&state={}&iss={}",
        shared.redirect_uri,
        encode(&query.state),
        encode(&shared.issuer)
    );
    see_other(&location)
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if !client_authenticated(&headers, &shared.client_secret) {
        let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"demo-provider\""),
        );
        return response;
    }
    if form.grant_type == "refresh_token" {
        shared.tokens().stats.received += 1;
    }
    let delay = *shared
        .token_delay
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // Dropped here if the client hangs up: the request is never processed.
    tokio::time::sleep(delay).await;
    let mut tokens = shared.tokens();
    let grant = match form.grant_type.as_str() {
        "authorization_code" => {
            let code = form.code.and_then(|code| tokens.codes.remove(&code));
            let verified = code.filter(|code| {
                code.expires > Instant::now()
                    && form.redirect_uri.as_deref() == Some(shared.redirect_uri.as_str())
                    && form.code_verifier.as_deref().is_some_and(|verifier| {
                        tower_bearer::upstream::connect::s256_challenge(verifier) == code.challenge
                    })
            });
            match verified {
                Some(code) => code.grant,
                None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        "refresh_token" => {
            let Some(refresh) = form.refresh_token.and_then(|t| tokens.refresh.get_mut(&t)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let (grant, replayed) = (refresh.grant, refresh.spent);
            refresh.spent = true;
            if replayed {
                // A spent refresh token came back: someone holds a copy. Revoke the grant.
                tokens.stats.replayed += 1;
                tokens.grants[grant].revoked = true;
            }
            if tokens.grants[grant].revoked {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            tokens.stats.refreshed += 1;
            grant
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let (access, refresh) = tokens.issue(grant);
    let scope = tokens.grants[grant].scopes.join(" ");
    let mut response = Json(json!({
        "access_token": access, "token_type": "Bearer", "refresh_token": refresh,
        "expires_in": ACCESS_TOKEN_LIFETIME.as_secs(), "scope": scope,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match shared.caller(&headers, None) {
        Ok(caller) => Json(json!({
            "account": caller.account, "scopes": caller.scopes,
            "token_generation": caller.generation,
        }))
        .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn admin(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match shared.caller(&headers, Some("admin")) {
        Ok(caller) => Json(json!({ "account": caller.account, "admin": true })).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Who is calling the API.
struct Caller {
    account: String,
    scopes: Vec<String>,
    /// Which of the grant's access tokens it is (1 for the first, 2 after a refresh, …).
    generation: u32,
}

/// Why the API refuses a call.
enum Refusal {
    /// Missing, unknown or revoked: RFC 6750's `401`.
    InvalidToken,
    /// Expired: the quirk.
    Expired,
    /// The grant lacks this scope.
    Scope(&'static str),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::InvalidToken => challenge(StatusCode::UNAUTHORIZED, "error=\"invalid_token\""),
            // Not 401 + invalid_token, but what Power BI sends.
            Refusal::Expired => {
                let body = json!({ "error": { "code": "TokenExpired", "message": "Access token has expired." } });
                (StatusCode::FORBIDDEN, Json(body)).into_response()
            }
            Refusal::Scope(scope) => challenge(
                StatusCode::FORBIDDEN,
                &format!("error=\"insufficient_scope\", scope=\"{scope}\""),
            ),
        }
    }
}

impl Shared {
    /// The caller behind the request's bearer token, if it may use the API (with `scope`).
    fn caller(&self, headers: &HeaderMap, scope: Option<&'static str>) -> Result<Caller, Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let tokens = self.tokens();
        let (access, grant) = token
            .and_then(|t| tokens.access.get(t))
            .map(|access| (access, &tokens.grants[access.grant]))
            .filter(|(_, grant)| !grant.revoked)
            .ok_or(Refusal::InvalidToken)?;
        if access.expires <= Instant::now() {
            return Err(Refusal::Expired);
        }
        if let Some(scope) = scope.filter(|s| !grant.scopes.iter().any(|g| g == s)) {
            return Err(Refusal::Scope(scope));
        }
        Ok(Caller {
            account: grant.account.clone(),
            scopes: grant.scopes.clone(),
            generation: access.generation,
        })
    }
}

#[derive(Deserialize)]
struct AccountQuery {
    account: String,
}

async fn expire(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<AccountQuery>,
) -> StatusCode {
    let mut tokens = shared.tokens();
    let Tokens { access, grants, .. } = &mut *tokens;
    let now = Instant::now();
    for token in access.values_mut() {
        if grants[token.grant].account == query.account {
            token.expires = token.expires.min(now);
        }
    }
    StatusCode::NO_CONTENT
}

async fn revoke(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<AccountQuery>,
) -> StatusCode {
    Provider {
        base: String::new(),
        shared,
    }
    .revoke_account(&query.account);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct RevocationForm {
    token: String,
}

/// RFC 7009: revoking a refresh token (or an access token) ends its whole grant.
async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<RevocationForm>,
) -> Response {
    if !client_authenticated(&headers, &shared.client_secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut tokens = shared.tokens();
    let grant = tokens
        .refresh
        .get(&form.token)
        .map(|refresh| refresh.grant)
        .or_else(|| tokens.access.get(&form.token).map(|access| access.grant));
    // An unknown token is no error (§2.2).
    if let Some(grant) = grant {
        tokens.grants[grant].revoked = true;
        tokens.stats.revoked += 1;
    }
    StatusCode::OK.into_response()
}

/// HTTP Basic client authentication (RFC 6749 §2.3.1: each part form-encoded).
fn client_authenticated(headers: &HeaderMap, secret: &str) -> bool {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((id, given)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return false;
    };
    let form_decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    form_decode(id) == CLIENT_ID && form_decode(given) == secret
}

fn oauth_error(status: StatusCode, error: &'static str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn challenge(status: StatusCode, params: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::try_from(format!("Bearer realm=\"demo-provider\", {params}")) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
