//! Routes for the link lifecycle, ready to mount (feature `axum`): [`ConnectRoutes`].
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /connect/{provider}` | the caller (bearer) | JSON with the authorization URL to navigate to; sets the binding cookie |
//! | `GET /connect/{provider}` | the caller (bearer) | the same flow, answered `303` to the provider |
//! | `GET /connect/{provider}/callback` | the browser that started the flow | finishes it: back to `return_to`, or a small HTML page |
//! | `GET /links` | the caller | its links: provider, state, scopes, expiry — never a secret |
//! | `DELETE /links/{provider}` | the caller | revokes the grant at the provider (RFC 7009) and removes the link |
//!
//! And for the proxy's own handler, [`ConnectRoutes::failure_response`]: a re-authorization
//! failure met by a browser navigation starts a flow and sends the browser straight to the
//! provider (row U4), since a navigation carries no bearer token.
//!
//! ```
//! use axum::Router;
//! use tower_bearer::upstream::{connect::routes::ConnectRoutes, store::MemoryStore};
//! # fn app(auth: tower::layer::util::Identity, github: tower_bearer::upstream::connect::Connector) {
//! // `auth` validates the caller's bearer token (a `ValidateBearerLayer`); the callback is the
//! // only route without it.
//! let routes = ConnectRoutes::new(MemoryStore::new()).connector(github);
//! let app: Router = Router::new().merge(routes.router(auth));
//! # }
//! ```

use std::{collections::BTreeMap, sync::Arc, time::UNIX_EPOCH};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, Request, State},
    response::{Html, IntoResponse, Response},
    routing::{Route, get},
};
use http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use serde::Deserialize;
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    Callback, ConnectError, Connector, binding_from, clear_binding_cookie, safe_return_to,
};
use crate::{
    axum::Authenticated,
    emit::{ReauthorizeInBrowser, RequestContext, pending_response},
    upstream::{
        UpstreamError,
        store::{FlowStore, LinkKey, TokenStore},
    },
    validate::StandardClaims,
};

/// The link-lifecycle routes over one store, for every configured provider. Cheap to clone.
pub struct ConnectRoutes<St> {
    inner: Arc<Inner<St>>,
}

impl<St> Clone for ConnectRoutes<St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<St> {
    store: St,
    connectors: BTreeMap<String, Connector>,
    secure_cookies: bool,
    key_by_issuer: bool,
}

impl<St> std::fmt::Debug for ConnectRoutes<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectRoutes")
            .field("providers", &self.inner.connectors.keys())
            .field("secure_cookies", &self.inner.secure_cookies)
            .finish_non_exhaustive()
    }
}

/// What [`ConnectRoutes::failure_response`] needs of the caller's request, taken before the
/// request is handed on: whether it is a browser navigation, the page it navigated to, and the
/// browser's binding cookie. Its `Debug` output never shows the binding.
#[derive(Clone)]
pub struct Navigation {
    navigation: bool,
    return_to: Option<String>,
    binding: Option<String>,
}

impl std::fmt::Debug for Navigation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Navigation")
            .field("navigation", &self.navigation)
            .field("return_to", &self.return_to)
            .field("binding", &self.binding.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize, Default)]
struct StartParams {
    return_to: Option<String>,
}

impl<St: TokenStore + FlowStore> ConnectRoutes<St> {
    /// Routes over `store`, with no provider yet; binding cookies `Secure`.
    pub fn new(store: St) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                connectors: BTreeMap::new(),
                secure_cookies: true,
                key_by_issuer: false,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Inner<St>)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            store: shared.store.clone(),
            connectors: shared.connectors.clone(),
            secure_cookies: shared.secure_cookies,
            key_by_issuer: shared.key_by_issuer,
        });
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Adds a provider's connect flow, under its name.
    pub fn connector(self, connector: Connector) -> Self {
        self.with(|inner| {
            inner
                .connectors
                .insert(connector.provider().to_string(), connector);
        })
    }

    /// Whether the binding cookie is `Secure` (with the `__Host-` prefix): always, unless this
    /// service is reached over plain HTTP on loopback, where browsers allow neither. See
    /// [`for_public_url`](Self::for_public_url).
    pub fn secure_cookies(self, secure: bool) -> Self {
        self.with(|inner| inner.secure_cookies = secure)
    }

    /// Sets [`secure_cookies`](Self::secure_cookies) for a service reached at `public_url`:
    /// off only for `http://` on a loopback host (`localhost`, `127.0.0.1`, `[::1]`).
    pub fn for_public_url(self, public_url: &str) -> Self {
        let loopback = public_url.parse::<http::Uri>().is_ok_and(|uri| {
            uri.scheme_str() == Some("http")
                && uri.host().is_some_and(|host| {
                    host == "localhost"
                        || host
                            .trim_matches(['[', ']'])
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                })
        });
        self.secure_cookies(!loopback)
    }

    /// Keys links by the caller's issuer and subject (where several issuers are accepted:
    /// [`LinkKey::for_subject`]) instead of the subject alone.
    pub fn key_by_issuer(self, by_issuer: bool) -> Self {
        self.with(|inner| inner.key_by_issuer = by_issuer)
    }

    /// The key of `claims`' user's link at `provider`, as these routes key it (the proxy's
    /// handler must key the links it uses the same way); `None` without a `sub`.
    pub fn link_key(
        &self,
        claims: &StandardClaims,
        provider: impl Into<Arc<str>>,
    ) -> Option<LinkKey> {
        let user = claims.sub.as_deref()?;
        Some(match (&claims.iss, self.inner.key_by_issuer) {
            (Some(issuer), true) => LinkKey::for_subject(issuer.as_str(), user, provider),
            _ => LinkKey::new(user, provider),
        })
    }

    /// The routes. `auth` validates the caller's bearer token (a
    /// [`ValidateBearerLayer`](crate::validate::ValidateBearerLayer)) on every route but the
    /// callback, which the provider's redirect reaches without one.
    pub fn router<L>(self, auth: L) -> Router
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Router::new()
            .route(
                "/connect/{provider}",
                get(start_and_redirect::<St>).post(start_for_script::<St>),
            )
            .route("/links", get(list::<St>))
            .route("/links/{provider}", axum::routing::delete(unlink::<St>))
            .route_layer(auth)
            .route("/connect/{provider}/callback", get(callback::<St>))
            // Every answer is the caller's own (links, flows, cookies): never cached.
            .layer(axum::middleware::map_response(no_store))
            .with_state(self)
    }

    /// Takes what [`failure_response`](Self::failure_response) needs from the caller's request
    /// before it is handed on.
    pub fn navigation(&self, parts: &Parts) -> Navigation {
        if !RequestContext::from_parts(&parts.method, &parts.headers).is_browser_navigation() {
            // Only a navigation is sent on to the provider: nothing more to keep.
            return Navigation {
                navigation: false,
                return_to: None,
                binding: None,
            };
        }
        Navigation {
            navigation: true,
            return_to: return_to(&parts.uri),
            binding: binding_from(&parts.headers, self.inner.secure_cookies).map(str::to_owned),
        }
    }

    /// The response to `error`, met by the request `navigation` was taken from, for the
    /// enclosing emitting layer to render: a browser navigation to a link that needs
    /// re-authorization starts a connect flow for `key` and is sent straight to the provider
    /// (`303`, binding cookie set, back to the page it navigated to afterwards); anything else
    /// is the failure as it is.
    pub async fn failure_response<B: Default>(
        &self,
        navigation: Navigation,
        key: &LinkKey,
        error: UpstreamError,
    ) -> http::Response<B> {
        let connector = self.inner.connectors.get(key.provider());
        let (true, UpstreamError::ReauthRequired { .. }, Some(connector)) =
            (navigation.navigation, &error, connector)
        else {
            return pending_response(error);
        };
        let started = connector
            .start(
                &self.inner.store,
                key.clone(),
                navigation.return_to,
                navigation.binding.as_deref(),
            )
            .await;
        match started {
            Ok(started) => match HeaderValue::try_from(started.authorization_url()) {
                Ok(location) => {
                    let cookie =
                        started.set_cookie(self.inner.secure_cookies, connector.lifetime());
                    pending_response(ReauthorizeInBrowser::new(error, location, cookie))
                }
                Err(_) => pending_response(error),
            },
            Err(start_error) => {
                // The 403 with its `Link` still tells the page what to do.
                tracing::warn!(provider = key.provider(), error = %start_error, "could not start a connect flow for a navigation");
                pending_response(error)
            }
        }
    }
}

/// The page a navigation asked for, to come back to: its path and query, less an
/// `access_token` (RFC 6750 §2.3) that must not end up in a redirect.
fn return_to(uri: &http::Uri) -> Option<String> {
    let path = match uri.query().and_then(crate::token::without_access_token) {
        Some(query) => format!("{}?{query}", uri.path()),
        None => uri.path().to_owned(),
    };
    safe_return_to(&path).map(str::to_owned)
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A problem answer of the link-lifecycle routes.
fn problem(status: StatusCode, title: &str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({ "title": title, "status": status.as_u16() }).to_string(),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

fn connect_error(error: &ConnectError) -> Response {
    let status = match error {
        ConnectError::UnknownFlow
        | ConnectError::WrongBrowser
        | ConnectError::IssuerMismatch
        | ConnectError::NoCode
        | ConnectError::UnsafeReturnTo => StatusCode::BAD_REQUEST,
        ConnectError::Denied(_) => StatusCode::FORBIDDEN,
        ConnectError::Exchange(_) => StatusCode::BAD_GATEWAY,
        ConnectError::Store(_) | ConnectError::Random => StatusCode::SERVICE_UNAVAILABLE,
    };
    problem(status, &error.to_string())
}

/// Why a route refused, before or while working.
enum Refusal {
    Problem(StatusCode, &'static str),
    Connect(ConnectError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(status, title) => problem(status, title),
            Self::Connect(error) => connect_error(&error),
        }
    }
}

/// The connector of `provider` and the caller's key, or why not.
fn caller_and_connector<'a, St: TokenStore + FlowStore>(
    routes: &'a ConnectRoutes<St>,
    provider: &str,
    claims: &StandardClaims,
) -> Result<(&'a Connector, LinkKey), Refusal> {
    let connector = routes
        .inner
        .connectors
        .get(provider)
        .ok_or(Refusal::Problem(StatusCode::NOT_FOUND, "No such provider"))?;
    let key = routes.link_key(claims, provider).ok_or(Refusal::Problem(
        StatusCode::FORBIDDEN,
        "The token names no user",
    ))?;
    Ok((connector, key))
}

async fn start<St: TokenStore + FlowStore>(
    routes: &ConnectRoutes<St>,
    provider: &str,
    claims: &StandardClaims,
    return_to: Option<String>,
    headers: &HeaderMap,
) -> Result<(super::Started, HeaderValue, std::time::Duration), Refusal> {
    let (connector, key) = caller_and_connector(routes, provider, claims)?;
    let secure = routes.inner.secure_cookies;
    let started = connector
        .start(
            &routes.inner.store,
            key,
            return_to,
            binding_from(headers, secure),
        )
        .await
        .map_err(Refusal::Connect)?;
    let cookie = started.set_cookie(secure, connector.lifetime());
    Ok((started, cookie, connector.lifetime()))
}

/// `GET /connect/{provider}`: `303` to the provider.
async fn start_and_redirect<St: TokenStore + FlowStore>(
    State(routes): State<ConnectRoutes<St>>,
    Path(provider): Path<String>,
    Query(params): Query<StartParams>,
    Authenticated(claims): Authenticated<StandardClaims>,
    headers: HeaderMap,
) -> Response {
    match start(&routes, &provider, &claims, params.return_to, &headers).await {
        Ok((started, cookie, _)) => redirect(started.authorization_url(), cookie),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /connect/{provider}`: the authorization URL as JSON, for a script to navigate to.
async fn start_for_script<St: TokenStore + FlowStore>(
    State(routes): State<ConnectRoutes<St>>,
    Path(provider): Path<String>,
    Query(params): Query<StartParams>,
    Authenticated(claims): Authenticated<StandardClaims>,
    headers: HeaderMap,
) -> Response {
    match start(&routes, &provider, &claims, params.return_to, &headers).await {
        Ok((started, cookie, lifetime)) => {
            let mut response = Json(json!({
                "authorization_url": started.authorization_url(),
                "expires_in": lifetime.as_secs(),
            }))
            .into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

fn redirect(location: &str, cookie: HeaderValue) -> Response {
    let Ok(location) = HeaderValue::try_from(location) else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "Unusable redirect");
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::SET_COOKIE, cookie);
    response
}

/// `GET /connect/{provider}/callback`.
async fn callback<St: TokenStore + FlowStore>(
    State(routes): State<ConnectRoutes<St>>,
    Path(provider): Path<String>,
    Query(callback): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let Some(connector) = routes.inner.connectors.get(&provider) else {
        return connect_error(&ConnectError::UnknownFlow);
    };
    let secure = routes.inner.secure_cookies;
    let finished = connector
        .finish(
            &routes.inner.store,
            &callback,
            binding_from(&headers, secure),
        )
        .await;
    let connected = match finished {
        Ok(connected) => connected,
        Err(error) => return connect_error(&error),
    };
    let clear = clear_binding_cookie(secure);
    match connected.return_to {
        Some(path) => redirect(&path, clear),
        None => {
            // The provider's name is this service's own configuration, not the caller's input.
            let page = format!(
                "<!doctype html><meta charset=utf-8><title>Connected</title>\
                 <p>Your {provider} account is connected. You can close this page.</p>"
            );
            let mut response = Html(page).into_response();
            response.headers_mut().insert(header::SET_COOKIE, clear);
            response
        }
    }
}

/// `GET /links`.
async fn list<St: TokenStore + FlowStore>(
    State(routes): State<ConnectRoutes<St>>,
    Authenticated(claims): Authenticated<StandardClaims>,
) -> Response {
    let Some(user) = claims.sub.as_deref() else {
        return problem(StatusCode::FORBIDDEN, "The token names no user");
    };
    let issuer = claims.iss.as_deref().filter(|_| routes.inner.key_by_issuer);
    let links = match routes.inner.store.list(issuer, user).await {
        Ok(links) => links,
        Err(error) => {
            tracing::error!(%error, "could not list links");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "The link store is unavailable",
            );
        }
    };
    let mut links: Vec<_> = links
        .into_iter()
        .map(|(key, link)| {
            json!({
                "provider": key.provider(),
                "state": if link.needs_reauthorization() { "needs_reauthorization" } else { "connected" },
                "scopes": link.scopes(),
                "expires_at": link.expires_at()
                    .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                    .map(|since| since.as_secs()),
                "connect": format!("/connect/{}", key.provider()),
            })
        })
        .collect();
    links.sort_by(|a, b| a["provider"].as_str().cmp(&b["provider"].as_str()));
    Json(json!({ "links": links })).into_response()
}

/// `DELETE /links/{provider}`.
async fn unlink<St: TokenStore + FlowStore>(
    State(routes): State<ConnectRoutes<St>>,
    Path(provider): Path<String>,
    Authenticated(claims): Authenticated<StandardClaims>,
) -> Response {
    let (connector, key) = match caller_and_connector(&routes, &provider, &claims) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    match connector.unlink(&routes.inner.store, &key).await {
        Ok(unlinked) if unlinked.removed => {
            Json(json!({ "provider": provider, "revoked": unlinked.revoked })).into_response()
        }
        Ok(_) => problem(StatusCode::NOT_FOUND, "No such link"),
        Err(error) => connect_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_navigation_comes_back_to_its_page_without_its_token() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(
            return_to(&uri("/api/p/me?view=full&access_token=secret&x=1")).as_deref(),
            Some("/api/p/me?view=full&x=1")
        );
        assert_eq!(
            return_to(&uri("/api/p/me?access_token=secret")).as_deref(),
            Some("/api/p/me")
        );
        assert_eq!(return_to(&uri("//evil.example/x")), None);
    }

    #[test]
    fn a_navigation_never_shows_its_binding() {
        let navigation = Navigation {
            navigation: true,
            return_to: Some("/api/p/me".to_owned()),
            binding: Some("binding-secret".to_owned()),
        };
        assert_eq!(
            format!("{navigation:?}"),
            r#"Navigation { navigation: true, return_to: Some("/api/p/me"), binding: Some("<redacted>") }"#
        );
    }
}
