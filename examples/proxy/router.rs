//! The proxy's routes, its layers and the state they share.
//!
//! The forwarding route carries nearly all the traffic, so it is not one of axum's routes: a
//! prefix check sends it straight to its own stack (`ValidateBearer` → `Authorize` → the
//! forwarder), unboxed and with the request's body as hyper delivers it. axum's router, with its
//! path parameters, boxed routes and extractors, serves the rest — the connect flow, the links,
//! the metadata — where that convenience costs nothing that matters.
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

use std::{
    convert::Infallible,
    future::Future,
    ops::Deref,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{Router, body::Body, response::Response, routing::get};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};
use pin_project_lite::pin_project;
use tower::{
    Service, ServiceBuilder,
    util::{Either, MapResponse, option_layer},
};
use tower_bearer::{
    BoxError,
    authorize::{Authorize, AuthorizeLayer, Requirements},
    body::MaybeBuffered,
    emit::{Emitter, PROXY_STATUS},
    http_client::HttpClient,
    metadata::ProtectedResourceMetadata,
    upstream::connect::routes::ConnectRoutes,
    validate::{
        CachedValidator, ClaimsPolicy, JwksValidator, StandardClaims, ValidateBearer,
        ValidateBearerLayer,
    },
};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use super::{
    config::Settings,
    forward, http_client, metrics,
    providers::{self, ApiClient, Providers, TokenClient},
    request_id::{self, RequestId},
    store::LinkStore,
};

/// What the forwarder reads on every call: the configuration, the providers, the link routes.
/// Cheap to clone.
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

/// The whole proxy, one tower service: request id and access log, CORS (if configured), then
/// the forwarding route or axum's router. Serve it with [`serve`](super::serve::serve), or with
/// `axum::serve(listener, tower::make::Shared::new(proxy))`.
pub type Proxy = RequestId<Either<Cors<Dispatch>, Dispatch>>;

/// The proxy for `settings`, keeping links in `store`.
///
/// Fetches the identity provider's keys once to warm up; if it is down, the proxy starts anyway
/// and answers `503` (row I8) until it is back.
pub async fn build(settings: Settings, store: impl Into<LinkStore>) -> Result<Proxy, BoxError> {
    build_with(settings, store, Router::new()).await
}

/// [`build`], with `routes` served beside the proxy's own (the demo's start page), behind the
/// same request id, access log and CORS. Paths of the forwarding route's shape,
/// `/api/{provider}/{rest}`, belong to the forwarder whatever `routes` holds.
pub async fn build_with(
    settings: Settings,
    store: impl Into<LinkStore>,
    routes: Router,
) -> Result<Proxy, BoxError> {
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

    let forwarding = MapResponse::new(
        callers.clone().service(forward::Forward::new(app)),
        boxed_body as fn(_) -> _,
    );
    let router = Router::new()
        .merge(connect.router(callers))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(metrics)
        .route_service(&metadata.well_known_path(), metadata.service())
        .merge(routes);
    let dispatch = Dispatch { forwarding, router };
    Ok(ServiceBuilder::new()
        .layer(request_id::RequestIdLayer)
        .layer(option_layer(cors))
        .service(dispatch))
}

/// The forwarding route's stack: the caller's token, the scopes, the forwarder.
type Forwarding = MapResponse<
    ValidateBearer<
        Authorize<forward::Forward, StandardClaims, Requirements>,
        CachedValidator<JwksValidator<StandardClaims>>,
    >,
    fn(Response<MaybeBuffered<Body>>) -> Response,
>;

/// An answer of the forwarding stack with the router's body type: the forwarder's body as it
/// is, or the failure the validating layer rendered in its place.
fn boxed_body(response: Response<MaybeBuffered<Body>>) -> Response {
    response.map(|body| body.into_passthrough().unwrap_or_else(Body::new))
}

/// Sends `/api/{provider}/{rest}` to the forwarding stack and every other path to the router.
#[derive(Clone)]
pub struct Dispatch {
    forwarding: Forwarding,
    router: Router,
}

impl<B> Service<Request<B>> for Dispatch
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = DispatchFuture<
        <Forwarding as Service<Request<B>>>::Future,
        <Router as Service<Request<B>>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both are always ready; asking both keeps that an implementation detail.
        ready!(Service::<Request<B>>::poll_ready(&mut self.forwarding, cx))?;
        Service::<Request<B>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if forward::is_forwarded(request.uri().path()) {
            DispatchFuture::Forwarding {
                future: self.forwarding.call(request),
            }
        } else {
            DispatchFuture::Router {
                future: self.router.call(request),
            }
        }
    }
}

pin_project! {
    /// Response future of [`Dispatch`].
    #[project = DispatchProj]
    pub enum DispatchFuture<F, R> {
        /// The forwarding stack's.
        Forwarding { #[pin] future: F },
        /// The router's.
        Router { #[pin] future: R },
    }
}

impl<F, R> Future for DispatchFuture<F, R>
where
    F: Future<Output = Result<Response, Infallible>>,
    R: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProj::Forwarding { future } => future.poll(cx),
            DispatchProj::Router { future } => future.poll(cx),
        }
    }
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
