//! The proxy's routes, its layers and the state they share.
//!
//! | route | who may call | what |
//! |---|---|---|
//! | `/api/{provider}/{*path}` | a caller with a valid token and the configured scopes | forwarded to the provider with the user's upstream token |
//! | `GET /connect/{provider}` | same | starts linking the caller's account at the provider |
//! | `GET /connect/{provider}/callback` | the browser that started the flow | finishes it |
//! | `GET /.well-known/oauth-protected-resource` | anyone | RFC 9728 metadata |
//! | `GET /healthz` | anyone | `ok` |

use std::{ops::Deref, sync::Arc};

use axum::{
    Router, middleware,
    routing::{any, get},
};
use tower_bearer::{
    BoxError,
    authorize::{AuthorizeLayer, Requirements},
    emit::Emitter,
    http_client::HttpClient,
    metadata::ProtectedResourceMetadata,
    validate::{CachedValidator, ClaimsPolicy, JwksValidator, StandardClaims, ValidateBearerLayer},
};

use super::{
    config::Settings,
    connect, forward, http_client,
    providers::{self, ApiClient, Providers, TokenClient},
    request_id,
    store::LinkStore,
};

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Shared>);

/// The shared state.
pub struct Shared {
    /// The configuration.
    pub settings: Settings,
    /// The providers and their outbound stacks.
    pub providers: Providers,
    /// The users' links, in memory or in an SQLite file (`[store]`). Either way one replica
    /// only — a store shared by replicas must lock refreshes across them (see `TokenStore`).
    pub store: LinkStore,
    /// The client for token endpoints.
    pub token_client: TokenClient,
}

impl Deref for App {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The proxy's router for `settings`, keeping links in `store`.
///
/// Fetches the identity provider's keys once to warm up; if it is down, the proxy starts anyway
/// and answers `503` (row I8) until it is back.
pub async fn build(settings: Settings, store: impl Into<LinkStore>) -> Result<Router, BoxError> {
    let store = store.into();
    let timeout = settings.limits.upstream_timeout;
    let token_client: TokenClient = http_client::https(timeout);
    let api_client: ApiClient = http_client::https(timeout);

    let metadata = ProtectedResourceMetadata::new(settings.public_url.clone())
        .authorization_server(settings.auth.issuer.clone())
        .scopes(settings.auth.scopes.clone())
        .name("tower-bearer example proxy");
    // One emitter renders every failure, the caller's own and the providers'.
    let emitter = Emitter::new(settings.realm.clone())
        .with_proxy_name(settings.proxy_name.clone())
        .with_disclosure(settings.disclosure)
        .with_resource_metadata(metadata.url());
    let validator = validator(&settings, &token_client).await?;
    let requirements = settings
        .auth
        .scopes
        .iter()
        .fold(Requirements::new(), |r, scope| r.scope(scope.clone()));

    let providers = providers::build(&settings, &store, &api_client, &token_client);
    let app = App(Arc::new(Shared {
        settings,
        providers,
        store,
        token_client,
    }));

    let callers = Router::new()
        .route("/api/{provider}/{*path}", any(forward::forward))
        .route("/connect/{provider}", get(connect::start))
        .route_layer(AuthorizeLayer::new(requirements))
        .route_layer(ValidateBearerLayer::new(validator, emitter));
    Ok(Router::new()
        .merge(callers)
        .route("/connect/{provider}/callback", get(connect::callback))
        .route("/healthz", get(|| async { "ok\n" }))
        .route_service(&metadata.well_known_path(), metadata.service())
        .layer(middleware::from_fn(request_id::track))
        .with_state(app))
}

/// Callers' JWTs, checked against the issuer's published keys (OpenID Connect discovery), with
/// verified tokens cached so a token seen again costs a lookup, not a signature check.
async fn validator(
    settings: &Settings,
    client: &TokenClient,
) -> Result<CachedValidator<JwksValidator<StandardClaims>>, BoxError> {
    let auth = &settings.auth;
    let http = HttpClient::new(client.clone()).timeout(settings.limits.upstream_timeout);
    // `sub` names the user whose links are used: a token without one is no use here.
    let mut policy = ClaimsPolicy::new()
        .audience(auth.audience.clone())
        .require("sub");
    if let Some(typ) = &auth.token_type {
        policy = policy.token_type(typ.clone());
    }
    let jwks = JwksValidator::discover(&auth.issuer, http)
        .policy(policy)
        .build()?;
    if let Err(error) = jwks.refresh().await {
        tracing::warn!(%error, "the identity provider's keys are not available yet; callers get 503 until they are");
    }
    Ok(CachedValidator::new(jwks))
}
