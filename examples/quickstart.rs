use axum::{Router, routing::get};
use tower_bearer::{axum::Authenticated, emit::Emitter, validate::*};

pub async fn app(issuer: &str, audience: &str) -> Result<Router, BuildError> {
    let keys = JwksValidator::discover(issuer).audience(audience);
    let layer = ValidateBearerLayer::new(keys.build().await?, Emitter::new("reports"));
    Ok(Router::new().route("/reports", get(reports)).layer(layer))
}

async fn reports(Authenticated(claims): Authenticated<StandardClaims>) -> String {
    format!("reports for {}", claims.sub.clone().unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = app("https://login.example.com", "https://api.example.com").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    Ok(axum::serve(listener, app).await?)
}
