//! The README's Quickstart, as the README shows it: `examples/quickstart.rs` (OpenID discovery)
//! and `examples/quickstart_static_key.rs` are compiled here and run — discovery with the
//! built-in client against a real OpenID provider (`oidc-provider`, see `tests/oidc/`) — and
//! the README must hold both files verbatim, with the `Cargo.toml` lines they need.

mod support;

// The examples' `main`s are not called here: `app` is what the README teaches.
#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;
#[allow(dead_code)]
#[path = "../examples/quickstart_static_key.rs"]
mod quickstart_static_key;

use http::StatusCode;
use serde_json::json;
use support::{
    http::{client, get, get_bearer, serve},
    keys::{Key, RSA_PUBLIC},
    oidc::{Alg, CLIENT_ID, OidcConfig, OidcProvider, Resource},
    tokens::{now, token_with_header},
};
use tower_bearer::jsonwebtoken::{Algorithm, Header};

const README: &str = include_str!("../README.md");
/// The audience the examples accept.
const API: &str = "https://api.example.com";

#[test]
fn the_readme_shows_the_examples_verbatim() {
    for example in [
        include_str!("../examples/quickstart.rs"),
        include_str!("../examples/quickstart_static_key.rs"),
    ] {
        let fenced = format!("```rust\n{example}```\n");
        assert!(
            README.contains(&fenced),
            "README.md must show this file verbatim:\n{example}"
        );
    }
    let manifest = format!(
        "```toml\n[dependencies]\naxum = \"0.8\"\ntokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\ntower-bearer = {{ version = \"{}.{}\", features = [\"axum\"] }}\n```\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    assert!(
        README.contains(&manifest),
        "README.md must show the Cargo.toml lines:\n{manifest}"
    );
}

#[tokio::test]
async fn discovery_with_the_builtin_client_lets_a_real_token_through() {
    let provider =
        OidcProvider::start(OidcConfig::new().resource(API, Resource::jwt(Alg::RS256))).await;
    let app = quickstart::app(provider.issuer(), API).await.unwrap();
    let base = serve(app).await;
    let http = client();

    let token = provider.client_credentials_token(Some(API), "read").await;
    let reply = get_bearer(&http, &format!("{base}/reports"), &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.text(), format!("reports for {CLIENT_ID}"));

    let reply = get(&http, &format!("{base}/reports"), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="reports""#)
    );
}

#[tokio::test]
async fn the_static_key_quickstart_lets_a_signed_token_through() {
    let base = serve(quickstart_static_key::app(RSA_PUBLIC).unwrap()).await;
    let claims = json!({
        "iss": "https://login.example.com", "aud": API, "sub": "alice", "exp": now() + 60,
    });
    // No `kid`: the one static key verifies it.
    let token = token_with_header(
        &Header::new(Algorithm::RS256),
        &claims,
        &Key::Rs.encoding_key(),
    );
    let reply = get_bearer(&client(), &format!("{base}/reports"), &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.text(), "reports for alice");
}
