//! Helpers shared by `tests/inbound.rs` and `tests/no_token_in_logs.rs`: fixed test keys, token
//! minting (well-formed and deliberately broken), the axum test application and a tiny HTTP client.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    Extension, Json, Router,
    routing::{MethodRouter, get, post},
};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower_bearer::{
    authorize::{AuthorizeLayer, Requirements, RuleExt as _},
    emit::Emitter,
    token::BearerExtractor,
    validate::{ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
};

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "https://api.example";
pub const HMAC_SECRET: &[u8] = b"an-hmac-secret-of-at-least-32-bytes-for-hs256";
/// `max_age` of the step-up route, in seconds.
pub const STEP_UP_MAX_AGE: u64 = 300;
/// Clock-skew allowance of the test policy, in seconds.
pub const LEEWAY: u64 = 30;

pub const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");
pub const RSA_FOREIGN_PRIVATE: &[u8] = include_bytes!("../keys/rsa_foreign_private.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../keys/ec_private.pem");
pub const EC_PUBLIC: &[u8] = include_bytes!("../keys/ec_public.pem");
pub const ED_PRIVATE: &[u8] = include_bytes!("../keys/ed_private.pem");
pub const ED_PUBLIC: &[u8] = include_bytes!("../keys/ed_public.pem");

/// The signing keys the tests mint tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// HS256 with [`HMAC_SECRET`], `kid: hs`.
    Hs,
    /// RS256, `kid: rs`.
    Rs,
    /// ES256 (P-256), `kid: es`.
    Es,
    /// EdDSA (Ed25519), `kid: ed`.
    Ed,
    /// An RSA key the validator does not know, `kid: foreign`.
    Foreign,
}

impl Key {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Key::Hs => Algorithm::HS256,
            Key::Rs | Key::Foreign => Algorithm::RS256,
            Key::Es => Algorithm::ES256,
            Key::Ed => Algorithm::EdDSA,
        }
    }

    pub fn kid(self) -> &'static str {
        match self {
            Key::Hs => "hs",
            Key::Rs => "rs",
            Key::Es => "es",
            Key::Ed => "ed",
            Key::Foreign => "foreign",
        }
    }

    pub fn encoding_key(self) -> EncodingKey {
        match self {
            Key::Hs => EncodingKey::from_secret(HMAC_SECRET),
            Key::Rs => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            Key::Foreign => EncodingKey::from_rsa_pem(RSA_FOREIGN_PRIVATE).unwrap(),
            Key::Es => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
            Key::Ed => EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        }
    }

    /// The header the key signs with: its algorithm, its `kid`, `typ: at+jwt`.
    pub fn header(self) -> Header {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.kid().to_owned());
        header.typ = Some("at+jwt".to_owned());
        header
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims every route accepts: right issuer and audience, `scope: read`, a fresh `mfa` login.
pub fn valid_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "scope": "read",
        "acr": "mfa",
        "auth_time": now,
    })
}

/// [`valid_claims`] with some members replaced (`null` removes a member).
pub fn claims_with(changes: Value) -> Value {
    let mut claims = valid_claims();
    let map = claims.as_object_mut().unwrap();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A token signed by `key` with its standard header.
pub fn token(key: Key, claims: &Value) -> String {
    jsonwebtoken::encode(&key.header(), claims, &key.encoding_key()).unwrap()
}

/// A token with a custom header, signed with `encoding_key`.
pub fn token_with_header(header: &Header, claims: &Value, encoding_key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, encoding_key).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `b64(header).b64(payload).signature`, the signature computed by `key` over whatever bytes
/// were given (so a broken header or payload still carries a valid signature).
pub fn raw_token(header: &[u8], payload: &[u8], key: Key) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding_key(), key.algorithm())
            .unwrap();
    format!("{message}.{signature}")
}

/// The last dot-separated part of a token.
pub fn signature_of(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// The validator every test server uses: all four key families, each under its `kid`, and a
/// policy requiring the issuer, the audience and `typ: at+jwt`.
pub fn validator() -> JwtValidator<StandardClaims> {
    JwtValidator::<StandardClaims>::builder()
        .key(
            VerificationKey::hmac(HMAC_SECRET, &[Algorithm::HS256])
                .unwrap()
                .with_kid("hs"),
        )
        .key(
            VerificationKey::rsa_pem(RSA_PUBLIC, &[Algorithm::RS256])
                .unwrap()
                .with_kid("rs"),
        )
        .key(
            VerificationKey::ec_pem(EC_PUBLIC, &[Algorithm::ES256])
                .unwrap()
                .with_kid("es"),
        )
        .key(
            VerificationKey::ed_pem(ED_PUBLIC, &[Algorithm::EdDSA])
                .unwrap()
                .with_kid("ed"),
        )
        .policy(policy())
        .build()
        .unwrap()
}

/// A validator with the RSA public key only (the classic algorithm-confusion target).
pub fn rsa_only_validator() -> JwtValidator<StandardClaims> {
    JwtValidator::<StandardClaims>::builder()
        .key(VerificationKey::rsa_pem(RSA_PUBLIC, &[Algorithm::RS256]).unwrap())
        .policy(policy())
        .build()
        .unwrap()
}

pub fn policy() -> ClaimsPolicy {
    ClaimsPolicy::new()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .token_type("at+jwt")
        .leeway(LEEWAY)
}

async fn echo_sub(Extension(claims): Extension<StandardClaims>) -> String {
    claims.sub.unwrap_or_default()
}

async fn echo_json(
    Extension(claims): Extension<StandardClaims>,
    Json(body): Json<Value>,
) -> Json<Value> {
    Json(json!({ "sub": claims.sub, "body": body }))
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
    let read = || AuthorizeLayer::<StandardClaims, _>::new(Requirements::new().scope("read"));
    Router::new()
        .route("/me", any(echo_sub))
        .route("/read", any(|| async { "read ok" }).route_layer(read()))
        .route(
            "/step-up",
            any(|| async { "step-up ok" }).route_layer(AuthorizeLayer::<StandardClaims, _>::new(
                Requirements::new()
                    .scope("read")
                    .acr_value("mfa")
                    .max_age(Duration::from_secs(STEP_UP_MAX_AGE)),
            )),
        )
        .route(
            "/admin",
            any(|| async { "admin ok" }).route_layer(AuthorizeLayer::<StandardClaims, _>::new(
                Requirements::new().scope("admin").hidden(),
            )),
        )
        .route("/json", post(echo_json).route_layer(read()))
}

/// The test application: [`routes`] behind `ValidateBearerLayer` with [`validator`].
pub fn app(emitter: Emitter) -> Router {
    routes().layer(ValidateBearerLayer::new(validator(), emitter))
}

/// Like [`app`], with a custom extractor.
pub fn app_with_extractor(emitter: Emitter, extractor: BearerExtractor) -> Router {
    routes().layer(ValidateBearerLayer::new(validator(), emitter).extractor(extractor))
}

/// Serves `app` on an ephemeral loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A collected response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header as text; `None` when absent. Panics if the header is repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut all = self.headers.get_all(name).iter();
        let first = all.next()?;
        assert!(
            all.next().is_none(),
            "header {name} is repeated: {:?}",
            self.headers
        );
        Some(first.to_str().unwrap())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_ref()).unwrap(),
        ));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(&self, client: &TestClient, base: &str) -> Reply {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(format!("{base}{}", self.path));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(self.body.clone())).unwrap();
        let fut = async {
            let response = client
                .request(request)
                .await
                .expect("request failed (did the server die?)");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("response body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("request timed out")
    }
}
