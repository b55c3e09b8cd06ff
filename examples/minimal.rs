//! A minimal axum API protected by tower-bearer: `cargo run --example minimal --features axum`.
//!
//! It signs demo tokens with a throw-away HMAC key and prints `curl` commands that show the
//! wire contract: a bare challenge without a token, the claims with one, `insufficient_scope`,
//! and a hidden route.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use tower_bearer::{
    authorize::{AuthorizeLayer, Requirements, RuleExt},
    axum::Authenticated,
    emit::{Disclosure, Emitter},
    metadata::ProtectedResourceMetadata,
    validate::{ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
};

const ISSUER: &str = "https://demo-issuer.invalid";
const AUDIENCE: &str = "demo-api";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let address: SocketAddr = listener.local_addr()?;
    let metadata = ProtectedResourceMetadata::new(format!("http://{address}"))
        .authorization_server(ISSUER)
        .scopes(["reports:read", "admin"]);

    let validator = JwtValidator::<StandardClaims>::builder()
        .key(VerificationKey::hmac(&secret, &[Algorithm::HS256])?)
        .policy(ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE))
        .build()?;
    let emitter = Emitter::new(AUDIENCE)
        .with_disclosure(Disclosure::Verbose)
        .with_resource_metadata(metadata.url());

    let app = Router::new()
        .route(
            "/reports",
            get(
                |Authenticated(claims): Authenticated<StandardClaims>| async move {
                    format!(
                        "reports for {}\n",
                        claims.sub.as_deref().unwrap_or_default()
                    )
                },
            )
            .route_layer(AuthorizeLayer::new(
                Requirements::new().scope("reports:read"),
            )),
        )
        .route(
            "/admin",
            get(|| async { "admin area\n" }).route_layer(AuthorizeLayer::new(
                Requirements::new().scope("admin").hidden(),
            )),
        )
        .layer(ValidateBearerLayer::new(validator, emitter))
        .route_service(&metadata.well_known_path(), metadata.service());

    let token = |scope: &str| {
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": scope,
            "exp": get_current_timestamp() + 3600,
        });
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&secret),
        )
    };
    let reader = token("reports:read")?;
    let other = token("profile")?;
    println!("listening on http://{address}\n");
    println!("# 401 with a bare challenge:\ncurl -i http://{address}/reports\n");
    println!("# 200:\ncurl -i -H 'Authorization: Bearer {reader}' http://{address}/reports\n");
    println!(
        "# 403 insufficient_scope:\ncurl -i -H 'Authorization: Bearer {other}' http://{address}/reports\n"
    );
    println!(
        "# 404, the admin area stays hidden:\ncurl -i -H 'Authorization: Bearer {reader}' http://{address}/admin\n"
    );
    println!(
        "# RFC 9728 metadata:\ncurl -i http://{address}{}\n",
        metadata.well_known_path()
    );

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// A byte from the OS's hash randomization: enough for a demo secret without another dependency.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8).to_le_bytes()[0]
}
