//! The proxy's routes, its layers and the state they share.
//!
//! | route | who may call | what |
//! |---|---|---|
//! | `/api/{provider}/{*path}` | a caller with a valid token and the configured scopes | forwarded to the provider with the user's upstream token |
//! | `GET`/`POST /connect/{provider}` | same | starts linking the caller's account at the provider (`303`, or JSON for a script) |
//! | `GET /connect/{provider}/callback` | the browser that started the flow | finishes it |
//! | `GET /links`, `DELETE /links/{provider}` | a caller | lists the caller's links; unlinks one (revoking it) |
//! | `GET /.well-known/oauth-protected-resource` | anyone | RFC 9728 metadata |
//! | `GET /healthz` | anyone | `ok` |
//! | `GET /metrics` | anyone (feature `metrics`) | the crate's counters, Prometheus text format |

use std::{ops::Deref, sync::Arc};

use axum::{
    Router,
    routing::{any, get},
};
use http::{HeaderName, HeaderValue, Method, header};
use tower::ServiceBuilder;
use tower_bearer::{
    BoxError,
    authorize::{AuthorizeLayer, Requirements},
    emit::{Emitter, PROXY_STATUS},
    http_client::HttpClient,
    metadata::ProtectedResourceMetadata,
    upstream::connect::routes::ConnectRoutes,
    validate::{CachedValidator, ClaimsPolicy, JwksValidator, StandardClaims, ValidateBearerLayer},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{
    config::Settings,
    forward, http_client, metrics,
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
    /// The link lifecycle's routes, over the users' links (`[store]`); the forwarder keys
    /// links and answers navigations through it.
    pub connect: ConnectRoutes<LinkStore>,
    /// This proxy's `Via` (RFC 9110 §7.6.3), added to every forwarded request.
    pub via: HeaderValue,
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
    // First: the recorder counts from the warm-up fetch of the keys on.
    let metrics = metrics::routes();
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

    let providers = providers::build(&settings, &store, &api_client, &token_client)?;
    let connect = providers
        .values()
        .fold(ConnectRoutes::new(store), |routes, provider| {
            routes.connector(provider.connector.clone())
        })
        .for_public_url(&settings.public_url);
    // The caller's token, then the configured scopes, on every route but the callback.
    let callers = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(validator, emitter))
        .layer(AuthorizeLayer::new(requirements));
    let cors = cors(&settings.cors_origins);
    // The proxy name is a token (checked at start), so this is a valid field value.
    let via = HeaderValue::try_from(format!("1.1 {}", settings.proxy_name))?;
    let app = App(Arc::new(Shared {
        settings,
        providers,
        connect: connect.clone(),
        via,
    }));

    let api = Router::new()
        .route("/api/{provider}/{*path}", any(forward::forward))
        .route_layer(callers.clone())
        .with_state(app);
    let mut router = Router::new()
        .merge(api)
        .merge(connect.router(callers))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(metrics)
        .route_service(&metadata.well_known_path(), metadata.service());
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    Ok(router.layer(request_id::RequestIdLayer))
}

/// CORS for the configured origins, if any: their scripts may call with a bearer token, and read
/// the signals that say which side failed and what to do — without them a cross-origin script
/// cannot tell the caller's 401 from the provider's, nor find the connect flow.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::try_from(origin.as_str()).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([
                header::WWW_AUTHENTICATE,
                PROXY_STATUS,
                header::LINK,
                header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
            ]),
    )
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
    let jwks = JwksValidator::discover(&auth.issuer)
        .client(http)
        .policy(policy)
        .build_lazy()?;
    if let Err(error) = jwks.refresh().await {
        tracing::warn!(%error, "the identity provider's keys are not available yet; callers get 503 until they are");
    }
    Ok(CachedValidator::new(jwks))
}
