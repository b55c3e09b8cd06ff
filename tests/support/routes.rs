//! The inbound test application: a few routes with different rules behind
//! `ValidateBearerLayer` with the test [`validator`](super::keys::validator).

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    routing::{MethodRouter, get, post},
};
use serde_json::{Value, json};
use tower_bearer::{
    authorize::{AuthorizeLayer, Requirements, RuleExt as _},
    emit::Emitter,
    token::BearerExtractor,
    validate::{StandardClaims, ValidateBearerLayer},
};

use super::keys::validator;

/// `max_age` of the step-up route, in seconds.
pub const STEP_UP_MAX_AGE: u64 = 300;

async fn echo_sub(Extension(claims): Extension<Arc<StandardClaims>>) -> String {
    claims.sub.clone().unwrap_or_default()
}

async fn echo_json(
    Extension(claims): Extension<Arc<StandardClaims>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    Json(json!({ "sub": &claims.sub, "body": body }))
}

/// The routes, without the validation layer:
/// - `/me`: echoes `sub`, no rule;
/// - `/read`: requires scope `read`;
/// - `/step-up`: scope `read`, `acr` `mfa`, login at most [`STEP_UP_MAX_AGE`] seconds old;
/// - `/admin`: scope `admin`, hidden (404 when refused);
/// - `/json` (POST): scope `read`, then axum's `Json` extractor.
pub fn routes() -> Router {
    // GET (and so HEAD) and POST (gRPC calls); not `any`, whose handler is a fallback that
    // `route_layer` would not wrap.
    fn any<H, T>(handler: H) -> MethodRouter
    where
        H: axum::handler::Handler<T, ()>,
        T: 'static,
    {
        get(handler.clone()).post(handler)
    }
    let read = || AuthorizeLayer::new(Requirements::new().scope("read"));
    Router::new()
        .route("/me", any(echo_sub))
        .route("/read", any(|| async { "read ok" }).route_layer(read()))
        .route(
            "/step-up",
            any(|| async { "step-up ok" }).route_layer(AuthorizeLayer::new(
                Requirements::new()
                    .scope("read")
                    .acr_value("mfa")
                    .max_age(Duration::from_secs(STEP_UP_MAX_AGE)),
            )),
        )
        .route(
            "/admin",
            any(|| async { "admin ok" }).route_layer(AuthorizeLayer::new(
                Requirements::new().scope("admin").hidden(),
            )),
        )
        .route("/json", post(echo_json).route_layer(read()))
}

/// The test application: [`routes`] behind `ValidateBearerLayer` with the test validator.
pub fn app(emitter: Emitter) -> Router {
    routes().layer(ValidateBearerLayer::new(validator(), emitter))
}

/// Like [`app`], with a custom extractor.
pub fn app_with_extractor(emitter: Emitter, extractor: BearerExtractor) -> Router {
    routes().layer(ValidateBearerLayer::new(validator(), emitter).extractor(extractor))
}
