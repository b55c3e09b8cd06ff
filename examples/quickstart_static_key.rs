use axum::{Router, routing::get};
use tower_bearer::jsonwebtoken::Algorithm;
use tower_bearer::{axum::Authenticated, emit::Emitter, validate::*};

pub fn app(public_key_pem: &[u8]) -> Result<Router, KeyError> {
    let key = VerificationKey::rsa_pem(public_key_pem, &[Algorithm::RS256])?;
    let validator = JwtValidator::<StandardClaims>::builder()
        .key(key)
        .policy(ClaimsPolicy::new().issuer("https://login.example.com"))
        .audience("https://api.example.com")
        .build()?;
    let layer = ValidateBearerLayer::new(validator, Emitter::new("reports"));
    Ok(Router::new().route("/reports", get(reports)).layer(layer))
}

async fn reports(Authenticated(claims): Authenticated<StandardClaims>) -> String {
    format!("reports for {}", claims.sub.clone().unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = app(&std::fs::read("public.pem")?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    Ok(axum::serve(listener, app).await?)
}
