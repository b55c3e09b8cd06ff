//! An application's `reqwest::Client` as the crate's HTTP client (feature `reqwest`): discovery
//! and the JWKS of a real OpenID provider (`oidc-provider`, see `tests/oidc/`) fetched through it.

mod support;

use std::sync::Arc;

use axum::{Extension, Router, routing::get};
use http::StatusCode;
use support::{
    http::{client, get_bearer, serve},
    oidc::{CLIENT_ID, OidcConfig, OidcProvider, RESOURCE_RS256},
};
use tower_bearer::{
    emit::Emitter,
    http_client::HttpClient,
    validate::{JwksValidator, StandardClaims, ValidateBearerLayer},
};

#[tokio::test]
async fn a_reqwest_client_validates_tokens_from_a_real_provider() {
    let provider = OidcProvider::start(OidcConfig::new()).await;
    let validator = JwksValidator::discover(provider.issuer())
        .client(HttpClient::from_reqwest(reqwest::Client::new()))
        .audience(RESOURCE_RS256)
        .build()
        .await
        .unwrap();
    assert_eq!(validator.cached_kids().len(), 2, "the RS256 and ES256 keys");
    let app = Router::new()
        .route(
            "/",
            get(
                |Extension(claims): Extension<Arc<StandardClaims>>| async move {
                    claims.sub.clone().unwrap_or_default()
                },
            ),
        )
        .layer(ValidateBearerLayer::new(validator, Emitter::new("reqwest")));
    let base = serve(app).await;

    let token = provider
        .client_credentials_token(Some(RESOURCE_RS256), "read")
        .await;
    let reply = get_bearer(&client(), &base, &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.text(), CLIENT_ID);
}
