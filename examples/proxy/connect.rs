//! The connect flow: how a user links — and re-links — their account at a provider, so the
//! proxy holds tokens to call it on their behalf. It is where a re-authorization failure's
//! `Link` and `303` point (row U4).
//!
//! 1. `GET /connect/{provider}?return_to=/path` with the caller's bearer token: the proxy keeps
//!    a flow under a fresh `state` (the user, a PKCE verifier, a browser binding) in the token
//!    store — so that any replica sharing it can finish the flow — and answers `303` to the
//!    provider's authorization endpoint, setting the binding as a cookie.
//! 2. The user signs in and consents at the provider, which redirects to
//!    `GET /connect/{provider}/callback?code=…&state=…`.
//! 3. The callback looks at the flow, checks the cookie and the provider, and only then takes it
//!    (once: a stray or forged callback does not burn the flow the real browser needs),
//!    exchanges the code with the PKCE verifier, stores the tokens for that user, and sends the
//!    browser to `return_to` — which must be a path on this proxy, so the flow cannot be used
//!    as an open redirect.

use std::time::Duration;

use axum::{
    Json,
    body::Body,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header, uri::PathAndQuery};
use serde::Deserialize;
use tower_bearer::{
    axum::Authenticated,
    upstream::store::{FlowStore, LinkKey, PendingFlow, TokenStore},
    validate::StandardClaims,
};

use super::{
    exchange::{encode, exchange},
    pkce,
    providers::Provider,
    random,
    reply::problem,
    router::App,
};

/// The cookie binding a flow to the browser that started it.
const BINDING_COOKIE: &str = "tb_connect";

/// How long a user has to finish a connect flow.
const FLOW_LIFETIME: Duration = Duration::from_secs(600);

/// How many connect flows one user may have in progress; starting another drops the oldest, so
/// a user starting flows in a loop cannot crowd out anyone else's.
const FLOWS_PER_USER: usize = 10;

/// The query of the first step.
#[derive(Deserialize)]
pub struct StartQuery {
    return_to: Option<String>,
}

/// Step 1: start a flow for the authenticated caller.
pub async fn start(
    State(app): State<App>,
    Path(provider): Path<String>,
    Query(query): Query<StartQuery>,
    Authenticated(claims): Authenticated<StandardClaims>,
) -> Response {
    let Some(provider) = app.providers.get(&provider).cloned() else {
        return problem(StatusCode::NOT_FOUND, "No such provider");
    };
    let Some(user) = claims.sub else {
        return problem(StatusCode::FORBIDDEN, "The token names no user");
    };
    let return_to = match query.return_to.as_deref().map(safe_return_to) {
        None => None,
        Some(Some(path)) => Some(path),
        Some(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "return_to must be a path on this server",
            );
        }
    };
    let state = random::url_safe::<32>();
    let verifier = pkce::verifier();
    let binding = random::url_safe::<32>();
    let location = authorization_url(&provider, &state, &pkce::challenge(&verifier));
    let mut flow = PendingFlow::new(
        LinkKey::new(user, provider.name.clone()),
        verifier,
        binding.clone(),
        FLOW_LIFETIME,
    );
    if let Some(return_to) = return_to {
        flow = flow.with_return_to(return_to);
    }
    if let Err(error) = app.store.put_flow(&state, flow, FLOWS_PER_USER).await {
        tracing::error!(provider = &*provider.name, %error, "could not keep the connect flow");
        return store_unavailable("The connect flow could not be started; try again later");
    }
    tracing::info!(provider = &*provider.name, "connect flow started");
    let secure = if app.settings.public_url.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{BINDING_COOKIE}={binding}; Path=/connect/{}/callback; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        provider.name,
        FLOW_LIFETIME.as_secs()
    );
    redirect(&location, Some(&cookie))
}

/// The query the provider sends back (RFC 6749 §4.1.2, §4.1.2.1).
#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// Step 3: finish the flow.
pub async fn callback(
    State(app): State<App>,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let unknown = || problem(StatusCode::BAD_REQUEST, "Unknown or expired connect flow");
    let Some(state) = query.state.as_deref() else {
        return unknown();
    };
    let flow = match app.store.peek_flow(state).await {
        Ok(flow) => flow.filter(|flow| flow.key().provider() == provider),
        Err(error) => {
            tracing::error!(%error, "could not read the connect flow");
            return store_unavailable("The connect flow could not be read; try again later");
        }
    };
    let (Some(flow), Some(provider)) = (flow, app.providers.get(&provider).cloned()) else {
        return unknown();
    };
    // Checked before the flow is taken: a callback from another browser leaves it in place.
    if !cookie(&headers, BINDING_COOKIE)
        .is_some_and(|value| same(value, flow.binding().expose_secret()))
    {
        tracing::warn!(
            provider = &*provider.name,
            "connect callback from another browser than the one that started the flow"
        );
        return problem(
            StatusCode::BAD_REQUEST,
            "This connect flow was started in another browser",
        );
    }
    match app.store.take_flow(state).await {
        Ok(true) => {}
        // Another callback for the same flow took it first.
        Ok(false) => return unknown(),
        Err(error) => {
            tracing::error!(%error, "could not take the connect flow");
            return store_unavailable("The connect flow could not be read; try again later");
        }
    }
    if query.error.is_some() {
        tracing::info!(provider = &*provider.name, "the user did not grant access");
        return problem(
            StatusCode::FORBIDDEN,
            "Access was not granted at the provider",
        );
    }
    let Some(code) = query.code else {
        return problem(StatusCode::BAD_REQUEST, "The provider sent no code");
    };
    let timeout = app.settings.limits.upstream_timeout;
    let verifier = flow.verifier().expose_secret();
    let link = match exchange(&app.token_client, &provider, &code, verifier, timeout).await {
        Ok(link) => link,
        Err(error) => {
            tracing::warn!(provider = &*provider.name, %error, "code exchange failed");
            return problem(
                StatusCode::BAD_GATEWAY,
                "The provider did not exchange the code for tokens",
            );
        }
    };
    // A new link replaces the old one whole, clearing any re-authorization mark, under a new
    // version: a refresh of the old link still in flight does not write over it.
    if let Err(error) = app.store.insert(flow.key(), link).await {
        tracing::error!(provider = &*provider.name, %error, "could not store the new link");
        return store_unavailable("The link could not be stored; connect again later");
    }
    tracing::info!(provider = &*provider.name, "connected");
    let clear = format!(
        "{BINDING_COOKIE}=; Path=/connect/{}/callback; Max-Age=0; HttpOnly; SameSite=Lax",
        provider.name
    );
    match flow.return_to() {
        Some(path) => redirect(path, Some(&clear)),
        None => {
            let mut response =
                Json(serde_json::json!({ "connected": &*provider.name })).into_response();
            if let Ok(clear) = HeaderValue::try_from(clear) {
                response.headers_mut().insert(header::SET_COOKIE, clear);
            }
            response
        }
    }
}

/// `503` with `Retry-After`: the store is down, the caller may try again shortly.
fn store_unavailable(title: &'static str) -> Response {
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, title);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2.1).
fn authorization_url(provider: &Provider, state: &str, challenge: &str) -> String {
    let settings = &provider.settings;
    let scope = settings.scopes.join(" ");
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &settings.client_id),
        ("redirect_uri", &provider.redirect_uri),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    if !scope.is_empty() {
        params.push(("scope", &scope));
    }
    if let Some(resource) = &settings.resource {
        params.push(("resource", resource));
    }
    params.extend(
        settings
            .authorize_params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    let query = params
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let separator = if settings.authorize_url.query().is_some() {
        '&'
    } else {
        '?'
    };
    format!("{}{separator}{query}", settings.authorize_url)
}

/// `value` if it is a path on this server: absolute-path, not protocol-relative (`//host`), no
/// backslash (browsers read `/\host` as `//host`), nothing but visible ASCII.
fn safe_return_to(value: &str) -> Option<String> {
    let safe = value.starts_with('/')
        && !value.starts_with("//")
        && value.len() <= 2048
        && value.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && value.parse::<PathAndQuery>().is_ok();
    safe.then(|| value.to_owned())
}

fn redirect(location: &str, cookie: Option<&str>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    match HeaderValue::try_from(location) {
        Ok(location) => headers.insert(header::LOCATION, location),
        Err(_) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "Unusable redirect"),
    };
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// Compares secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}
