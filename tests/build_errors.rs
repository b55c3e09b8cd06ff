//! Configuration mistakes fail when the validator is built, with errors that name the URL and
//! the values involved: an issuer that is down, a discovery document for another issuer (the
//! trailing slash), a garbage answer, a JWKS that fails after discovery, a private key passed
//! as the public one, an empty audience. Real HTTP over loopback, through the built-in client.

mod support;

use axum::{Router, http::StatusCode, routing::get};
use serde_json::json;
use support::{
    http::closed_port,
    keys::{EC_PRIVATE, ED_PRIVATE, RSA_PRIVATE},
};
use tower_bearer::{
    jsonwebtoken::Algorithm,
    validate::{
        BuildError, JwksValidator, JwtValidator, KeyError, PolicyError, SourceError,
        StandardClaims, VerificationKey,
    },
};

const API: &str = "https://api.example.com";

/// `build().await` for discovery of `issuer`, which must fail.
async fn discovery_error(issuer: &str) -> BuildError {
    JwksValidator::discover(issuer)
        .audience(API)
        .build()
        .await
        .unwrap_err()
}

/// An issuer at a loopback port serving `document` as its discovery document and no JWKS
/// (`500`); returns its URL.
async fn issuer_serving(document: impl Fn(&str) -> String + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = document(&base);
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { body }),
        )
        .route("/jwks", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn an_issuer_that_is_down_names_the_url_and_the_cause() {
    let issuer = format!("http://{}", closed_port().await);
    let error = discovery_error(&issuer).await;
    assert_eq!(
        error.to_string(),
        format!(
            "request to {issuer}/.well-known/openid-configuration failed: client error (Connect): \
             tcp connect error: Connection refused (os error 111)"
        )
    );
}

#[tokio::test]
async fn a_document_for_another_issuer_names_both_and_the_trailing_slash() {
    let issuer = issuer_serving(|base| {
        json!({"issuer": format!("{base}/"), "jwks_uri": format!("{base}/jwks")}).to_string()
    })
    .await;
    let error = discovery_error(&issuer).await;
    assert_eq!(
        error.to_string(),
        format!(
            "the discovery document at {issuer}/.well-known/openid-configuration names the issuer \
             \"{issuer}/\", expected \"{issuer}\" (they differ in the trailing slash: configure the \
             issuer exactly as the provider spells it)"
        )
    );

    let other = issuer_serving(|_| {
        json!({"issuer": "https://elsewhere.example", "jwks_uri": "https://elsewhere.example/jwks"})
            .to_string()
    })
    .await;
    assert_eq!(
        discovery_error(&other).await.to_string(),
        format!(
            "the discovery document at {other}/.well-known/openid-configuration names the issuer \
             \"https://elsewhere.example\", expected \"{other}\""
        )
    );
}

#[tokio::test]
async fn a_garbage_answer_names_the_url_and_what_is_wrong() {
    let issuer = issuer_serving(|_| "<html>maintenance</html>".to_owned()).await;
    let error = discovery_error(&issuer).await;
    assert_eq!(
        error.to_string(),
        format!(
            "the response from {issuer}/.well-known/openid-configuration is not a valid discovery \
             document: expected value at line 1 column 1"
        )
    );
    let missing = issuer_serving(|base| json!({"issuer": base}).to_string()).await;
    assert_eq!(
        discovery_error(&missing).await.to_string(),
        format!(
            "the response from {missing}/.well-known/openid-configuration is not a valid discovery \
             document: missing field `jwks_uri` at line 1 column {}",
            json!({"issuer": missing}).to_string().len()
        )
    );
}

#[tokio::test]
async fn a_jwks_that_fails_after_discovery_names_its_url() {
    let issuer = issuer_serving(|base| {
        json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string()
    })
    .await;
    let error = discovery_error(&issuer).await;
    assert_eq!(
        error.to_string(),
        format!("{issuer}/jwks answered 500 Internal Server Error")
    );
}

#[tokio::test]
async fn lazy_start_is_still_available() {
    let issuer = format!("http://{}", closed_port().await);
    let validator = JwksValidator::discover(&issuer).audience(API).build_lazy();
    assert!(validator.is_ok(), "{validator:?}");
    assert_eq!(validator.unwrap().cached_kids(), Vec::<String>::new());
}

#[test]
fn a_private_key_where_the_public_key_belongs_is_named() {
    let rsa = VerificationKey::rsa_pem(RSA_PRIVATE, &[Algorithm::RS256]).unwrap_err();
    assert_eq!(
        rsa,
        KeyError::PrivateKey {
            label: "PRIVATE KEY".into()
        }
    );
    assert_eq!(
        rsa.to_string(),
        "this PEM holds a private key (-----BEGIN PRIVATE KEY-----): pass the public key instead \
         (`openssl pkey -in key.pem -pubout`); verifying never needs the private one"
    );
    let pkcs1 = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n";
    assert_eq!(
        VerificationKey::rsa_pem(pkcs1, &[Algorithm::RS256]).unwrap_err(),
        KeyError::PrivateKey {
            label: "RSA PRIVATE KEY".into()
        }
    );
    assert!(matches!(
        VerificationKey::ec_pem(EC_PRIVATE, &[Algorithm::ES256]),
        Err(KeyError::PrivateKey { .. })
    ));
    assert!(matches!(
        VerificationKey::ed_pem(ED_PRIVATE, &[Algorithm::EdDSA]),
        Err(KeyError::PrivateKey { .. })
    ));
}

#[tokio::test]
async fn an_empty_audience_is_refused_at_build_before_any_fetch() {
    const MESSAGE: &str = "the audience is empty (\"\"): configure the identifier your issuer \
                           puts in the tokens' `aud` (often the API's URL)";
    // Nothing listens there: the audience is refused before anything is fetched.
    let issuer = format!("http://{}", closed_port().await);
    let error = JwksValidator::discover(&issuer)
        .audience("")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            BuildError::Config(SourceError::Policy(PolicyError::EmptyAudience))
        ),
        "{error:?}"
    );
    assert_eq!(error.to_string(), MESSAGE);

    let error = JwtValidator::<StandardClaims>::builder()
        .key(VerificationKey::hmac(&[7; 32], &[Algorithm::HS256]).unwrap())
        .audience(" ")
        .build()
        .unwrap_err();
    assert_eq!(error, KeyError::Policy(PolicyError::EmptyAudience));
    assert_eq!(error.to_string(), MESSAGE);
}
