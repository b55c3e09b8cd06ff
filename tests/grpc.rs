//! tower-bearer on real tonic servers and clients over 127.0.0.1.
//!
//! Inbound: a gateway tonic server behind `ValidateBearerLayer` and `AuthorizeLayer`; every
//! failure reaches a real tonic client as the right `tonic::Code` with the challenge in the
//! metadata. Outbound: the gateway calls a provider's tonic server through `GrpcUpstreamLayer`
//! with the user's upstream token, refreshed at a token endpoint (axum, HTTP/1.1) when the
//! provider rejects it.
//!
//! Run: `cargo test --features tonic --test grpc`.

#[path = "../examples/grpc/demo.v1.rs"]
#[allow(clippy::all, missing_docs)]
mod demo;
#[path = "../examples/grpc/gateway.rs"]
mod gateway;
mod support;

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use demo::{
    EchoMessage, ProfileReply, ProfileRequest, WhoamiReply, WhoamiRequest,
    gateway_client::GatewayClient,
    gateway_server::GatewayServer,
    provider_client::ProviderClient,
    provider_server::{Provider, ProviderServer},
};
use gateway::GatewayApi;
use http::HeaderMap;
use http_body::Frame;
use http_body_util::Either;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use support::http::{client, closed_port, serve};
use tokio::net::TcpListener;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{
    Code, Request, Response, Status, Streaming,
    metadata::MetadataValue,
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};
use tower::Layer as _;
use tower_bearer::{
    authorize::{AuthorizeLayer, Requirements, RuleExt as _},
    emit::Emitter,
    failure::AuthError,
    grpc::{GrpcUpstream, GrpcUpstreamLayer},
    token::BearerToken,
    upstream::{
        grant::RefreshGrant, refresh::RefreshAndRetryLayer, store::Link, store::LinkKey,
        store::MemoryStore,
    },
    validate::{
        ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer, ValidateToken, Verdict,
    },
};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "gateway";
const SECRET: &[u8] = b"a test hmac secret of at least 32 bytes";
const REALM: &str = "gateway";
const PROVIDER: &str = "provider";
const TIMEOUT: Duration = Duration::from_secs(20);

type Upstream = GrpcUpstream<Channel, MemoryStore, RefreshGrant>;

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn mint_with(header: Header, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

/// A valid caller token for `sub` with `scope`.
fn token(sub: &str, scope: &str) -> String {
    mint_with(
        Header::new(Algorithm::HS256),
        serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope,
            "exp": now() + 300, "iat": now(),
        }),
    )
}

/// A validator whose key source is down for tokens signed by a key it does not know yet (the
/// JWKS refetch for an unknown `kid` fails): row I8.
#[derive(Clone)]
struct KeysDownForUnknownKid(JwtValidator<StandardClaims>);

impl ValidateToken for KeysDownForUnknownKid {
    type Claims = StandardClaims;
    type Future = std::future::Pending<Result<Arc<StandardClaims>, AuthError>>;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<StandardClaims>, Self::Future> {
        let unknown_kid = jsonwebtoken::decode_header(token.as_str())
            .is_ok_and(|h| h.kid.as_deref() == Some("rotated"));
        if unknown_kid {
            Verdict::Decided(Err(AuthError::ValidationUnavailable {
                retry_after: Duration::from_secs(30),
            }))
        } else {
            self.0.validate(token)
        }
    }
}

fn validator() -> KeysDownForUnknownKid {
    KeysDownForUnknownKid(
        JwtValidator::<StandardClaims>::builder()
            .key(
                tower_bearer::validate::VerificationKey::hmac(SECRET, &[Algorithm::HS256]).unwrap(),
            )
            .policy(ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE))
            .build()
            .unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// The provider: a tonic server that accepts only fresh upstream tokens
// ---------------------------------------------------------------------------------------------

/// Which upstream tokens the provider saw, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn tokens(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct ProviderApi {
    seen: Seen,
}

impl ProviderApi {
    /// The provider's verdict on a request's bearer token.
    fn check<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        self.seen.0.lock().unwrap().push(token.clone());
        let status = |code, message: &str, challenge: Option<&'static str>| {
            let mut status = Status::new(code, message);
            if let Some(challenge) = challenge {
                status
                    .metadata_mut()
                    .insert("www-authenticate", MetadataValue::from_static(challenge));
            }
            Err(status)
        };
        match token.as_str() {
            t if t.starts_with("at-fresh") => Ok(format!("account-of-{t}")),
            "at-stale" => status(
                Code::Unauthenticated,
                "token expired",
                Some(r#"Bearer realm="provider", error="invalid_token""#),
            ),
            "at-stale-bare" => status(Code::Unauthenticated, "token expired", None),
            "at-scope-poor" => status(
                Code::PermissionDenied,
                "scope",
                Some(r#"Bearer realm="provider", error="insufficient_scope", scope="repo admin""#),
            ),
            "at-forbidden" => status(
                Code::PermissionDenied,
                "not yours",
                Some(r#"Bearer realm="provider""#),
            ),
            _ => status(Code::Unauthenticated, "who are you", None),
        }
    }
}

#[tonic::async_trait]
impl Provider for ProviderApi {
    async fn whoami(
        &self,
        request: Request<WhoamiRequest>,
    ) -> Result<Response<WhoamiReply>, Status> {
        let account = self.check(&request)?;
        Ok(Response::new(WhoamiReply { account }))
    }

    type EchoStream = ReceiverStream<Result<EchoMessage, Status>>;

    async fn echo(
        &self,
        request: Request<Streaming<EchoMessage>>,
    ) -> Result<Response<Self::EchoStream>, Status> {
        self.check(&request)?;
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(Ok(message)) = incoming.next().await {
                let echo = EchoMessage {
                    text: format!("echo: {}", message.text),
                };
                if tx.send(Ok(echo)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Middleware for the provider's server that turns its trailers-only errors into headers
/// followed by trailers, as some servers and proxies send them.
#[derive(Clone)]
struct SplitTrailers<S>(S);

impl<S, B> tower::Service<http::Request<B>> for SplitTrailers<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Either<tonic::body::Body, TrailersBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.0.call(request);
        Box::pin(async move {
            let response = future.await?;
            if !response.headers().contains_key("grpc-status") {
                return Ok(response.map(Either::Left));
            }
            let (mut parts, _) = response.into_parts();
            let mut trailers = HeaderMap::new();
            for name in ["grpc-status", "grpc-message", "www-authenticate"] {
                if let Some(value) = parts.headers.remove(name) {
                    trailers.insert(name, value);
                }
            }
            Ok(http::Response::from_parts(
                parts,
                Either::Right(TrailersBody(Some(trailers))),
            ))
        })
    }
}

struct TrailersBody(Option<HeaderMap>);

impl http_body::Body for TrailersBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|t| Ok(Frame::trailers(t))))
    }
}

async fn start_provider(split: bool) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let api = ProviderServer::new(ProviderApi { seen: seen.clone() });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener);
    if split {
        let router = Server::builder()
            .layer(tower::layer::layer_fn(SplitTrailers))
            .add_service(api);
        tokio::spawn(router.serve_with_incoming(incoming));
    } else {
        tokio::spawn(
            Server::builder()
                .add_service(api)
                .serve_with_incoming(incoming),
        );
    }
    (address, seen)
}

// ---------------------------------------------------------------------------------------------
// The provider's token endpoint (HTTP/1.1, axum)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct TokenEndpoint {
    calls: Arc<AtomicUsize>,
}

/// Serves the token endpoint; returns its base URL.
async fn start_token_endpoint() -> (String, TokenEndpoint) {
    let endpoint = TokenEndpoint::default();
    let state = endpoint.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |body: String| {
            let state = state.clone();
            async move {
                let n = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
                let refresh_token = body
                    .split('&')
                    .find_map(|p| p.strip_prefix("refresh_token="))
                    .unwrap_or_default()
                    .to_owned();
                if refresh_token.starts_with("rt-revoked") {
                    return (
                        http::StatusCode::BAD_REQUEST,
                        [("content-type", "application/json")],
                        r#"{"error":"invalid_grant"}"#.to_owned(),
                    );
                }
                (
                    http::StatusCode::OK,
                    [("content-type", "application/json")],
                    format!(
                        r#"{{"access_token":"at-fresh-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-rotated-{n}"}}"#
                    ),
                )
            }
        }),
    );
    (serve(app).await, endpoint)
}

// ---------------------------------------------------------------------------------------------
// The gateway: a tonic server behind the inbound layers, calling the provider (its API is the
// example's, `examples/grpc/gateway.rs`)
// ---------------------------------------------------------------------------------------------

struct Fixture {
    gateway: GatewayClient<Channel>,
    gateway_address: SocketAddr,
    /// A client calling the provider directly through the outbound layers.
    provider: ProviderClient<Upstream>,
    store: MemoryStore,
    seen: Seen,
    token_endpoint: TokenEndpoint,
}

fn emitter() -> Emitter {
    Emitter::new(REALM).with_proxy_name("gw").with_grpc(true)
}

fn upstream(provider: SocketAddr, token_endpoint: &str, store: &MemoryStore) -> Upstream {
    let grant = RefreshGrant::new(
        tower_bearer::http_client::HttpClient::new(client()),
        format!("{token_endpoint}/token").parse().unwrap(),
        "gateway-client",
    )
    .client_secret_basic("gateway-secret");
    let refresh = RefreshAndRetryLayer::new(PROVIDER, store.clone(), grant)
        .connect_url("https://gateway.test/connect/provider");
    let channel = Endpoint::from_shared(format!("http://{provider}"))
        .unwrap()
        .connect_lazy();
    GrpcUpstreamLayer::new(refresh, emitter()).layer(channel)
}

async fn fixture(split: bool) -> Fixture {
    let (provider_address, seen) = start_provider(split).await;
    let (token_url, token_endpoint) = start_token_endpoint().await;
    let store = MemoryStore::new();
    let provider = ProviderClient::new(upstream(provider_address, &token_url, &store));

    let gateway = GatewayServer::new(GatewayApi {
        provider: provider.clone(),
    });
    // A second service, hidden from callers without the `admin` scope (row I7).
    let hidden = ProviderServer::new(ProviderApi {
        seen: Seen::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = Server::builder()
        .layer(ValidateBearerLayer::new(validator(), emitter()))
        .add_service(AuthorizeLayer::new(Requirements::new().scope("profile:read")).layer(gateway))
        .add_service(
            AuthorizeLayer::new(Requirements::new().scope("admin").hidden()).layer(hidden),
        );
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    Fixture {
        gateway: GatewayClient::new(channel),
        gateway_address: address,
        provider,
        store,
        seen,
        token_endpoint,
    }
}

fn alice() -> LinkKey {
    LinkKey::new("alice", PROVIDER)
}

fn link(fixture: &Fixture, access: &str, refresh: &str) {
    fixture.store.insert(
        alice(),
        Link::new(access)
            .with_refresh_token(refresh)
            .with_expires_in(Duration::from_secs(3600)),
    );
}

fn profile_request(authorization: &[&str]) -> Request<ProfileRequest> {
    let mut request = Request::new(ProfileRequest {});
    for value in authorization {
        request
            .metadata_mut()
            .append("authorization", value.parse().unwrap());
    }
    request
}

async fn profile(
    fixture: &Fixture,
    authorization: &[&str],
) -> Result<Response<ProfileReply>, Status> {
    tokio::time::timeout(
        TIMEOUT,
        fixture
            .gateway
            .clone()
            .profile(profile_request(authorization)),
    )
    .await
    .expect("the gateway answered in time")
}

fn metadata<'a>(status: &'a Status, name: &str) -> Option<&'a str> {
    status.metadata().get(name).and_then(|v| v.to_str().ok())
}

#[track_caller]
fn assert_failure(result: Result<Response<ProfileReply>, Status>, code: Code) -> Status {
    match result {
        Ok(reply) => panic!("expected {code:?}, got {:?}", reply.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn inbound_failures_arrive_as_grpc_codes_with_the_challenge_in_metadata() {
    let f = fixture(false).await;
    link(&f, "at-fresh-0", "rt-0");
    let bare = format!(r#"Bearer realm="{REALM}""#);
    let invalid_token = format!(r#"Bearer realm="{REALM}", error="invalid_token""#);
    let invalid_request = format!(r#"Bearer realm="{REALM}", error="invalid_request""#);

    // I1: no credentials, or another scheme.
    for authorization in [&[][..], &["Basic YWxpY2U6cHc="][..]] {
        let status = assert_failure(profile(&f, authorization).await, Code::Unauthenticated);
        assert_eq!(metadata(&status, "www-authenticate"), Some(&*bare));
        assert_eq!(status.message(), "Authentication required");
    }

    // I3: unreadable; I4: expired, wrong audience.
    let expired = mint_with(
        Header::new(Algorithm::HS256),
        serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() - 3600}),
    );
    let wrong_audience = mint_with(
        Header::new(Algorithm::HS256),
        serde_json::json!({"iss": ISSUER, "aud": "other", "sub": "alice", "exp": now() + 300}),
    );
    for bad in ["not-a-jwt", &expired, &wrong_audience] {
        let header = format!("Bearer {bad}");
        let status = assert_failure(profile(&f, &[&header]).await, Code::Unauthenticated);
        assert_eq!(metadata(&status, "www-authenticate"), Some(&*invalid_token));
        assert_eq!(status.message(), "Invalid access token");
    }

    // I2: two Authorization fields; `Bearer` without a token.
    let good = format!("Bearer {}", token("alice", "profile:read"));
    for authorization in [&[&*good, &*good][..], &["Bearer "][..]] {
        let status = assert_failure(profile(&f, authorization).await, Code::InvalidArgument);
        assert_eq!(
            metadata(&status, "www-authenticate"),
            Some(&*invalid_request)
        );
    }

    // I5: a valid token without the scope — PERMISSION_DENIED, never UNAUTHENTICATED.
    let weak = format!("Bearer {}", token("alice", "email"));
    let status = assert_failure(profile(&f, &[&weak]).await, Code::PermissionDenied);
    assert_eq!(
        metadata(&status, "www-authenticate"),
        Some(&*format!(
            r#"Bearer realm="{REALM}", error="insufficient_scope", scope="profile:read""#
        ))
    );

    // I7: a hidden service is NOT_FOUND, without a challenge.
    let mut client = ProviderClient::new(
        Endpoint::from_shared(format!("http://{}", f.gateway_address))
            .unwrap()
            .connect_lazy(),
    );
    let mut request = Request::new(WhoamiRequest {});
    request
        .metadata_mut()
        .insert("authorization", good.parse().unwrap());
    let hidden = tokio::time::timeout(TIMEOUT, client.whoami(request))
        .await
        .unwrap();
    let status = hidden.expect_err("hidden");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(metadata(&status, "www-authenticate"), None);

    // I8: keys unavailable — UNAVAILABLE with retry-after, no challenge.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rotated".into());
    let rotated = mint_with(
        header,
        serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + 300}),
    );
    let status = assert_failure(
        profile(&f, &[&format!("Bearer {rotated}")]).await,
        Code::Unavailable,
    );
    assert_eq!(metadata(&status, "www-authenticate"), None);
    assert_eq!(metadata(&status, "retry-after"), Some("30"));

    // And a valid token gets through, its claims in the handler.
    let reply = profile(&f, &[&good])
        .await
        .expect("valid token")
        .into_inner();
    assert_eq!(reply.subject, "alice");
    assert_eq!(reply.upstream_account, "account-of-at-fresh-0");
}

/// The inbound layers also wrap one service at a time: they are tonic `NamedService`s.
#[tokio::test]
async fn inbound_layers_wrap_single_services() {
    let (provider, _seen) = start_provider(false).await;
    let (token_endpoint, _calls) = start_token_endpoint().await;
    let store = MemoryStore::new();
    store.insert(alice(), Link::new("at-fresh-0"));
    let gateway = GatewayServer::new(GatewayApi {
        provider: ProviderClient::new(upstream(provider, &token_endpoint, &store)),
    });
    let protected = ValidateBearerLayer::new(validator(), emitter())
        .layer(AuthorizeLayer::new(Requirements::new().scope("profile:read")).layer(gateway));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = Server::builder().add_service(protected);
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    let mut client = GatewayClient::new(
        Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_lazy(),
    );

    let status = tokio::time::timeout(TIMEOUT, client.profile(profile_request(&[])))
        .await
        .unwrap()
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        metadata(&status, "www-authenticate"),
        Some(&*format!(r#"Bearer realm="{REALM}""#))
    );

    let good = format!("Bearer {}", token("alice", "profile:read"));
    let reply = tokio::time::timeout(TIMEOUT, client.profile(profile_request(&[&good])))
        .await
        .unwrap()
        .expect("valid token");
    assert_eq!(reply.into_inner().upstream_account, "account-of-at-fresh-0");
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

/// The provider rejects the stored token with UNAUTHENTICATED — trailers-only with a challenge,
/// trailers-only without one, or headers first and the status in the trailers: the gateway
/// refreshes once and retries, and its caller never notices.
#[tokio::test]
async fn upstream_unauthenticated_is_refreshed_and_retried() {
    for (stale, split) in [
        ("at-stale", false),
        ("at-stale-bare", false),
        ("at-stale", true),
    ] {
        let f = fixture(split).await;
        link(&f, stale, "rt-1");
        let caller = format!("Bearer {}", token("alice", "profile:read"));

        let reply = profile(&f, &[&caller])
            .await
            .unwrap_or_else(|s| panic!("{stale} (split: {split}): {s:?}"))
            .into_inner();

        assert_eq!(reply.upstream_account, "account-of-at-fresh-1");
        assert_eq!(
            f.token_endpoint.calls.load(Ordering::SeqCst),
            1,
            "one refresh"
        );
        assert_eq!(f.seen.tokens(), [stale, "at-fresh-1"], "one retry");
        let stored = f.store.get(&alice()).unwrap();
        assert_eq!(stored.access_token().expose_secret(), "at-fresh-1");
        assert_eq!(
            stored.refresh_token().unwrap().expose_secret(),
            "rt-rotated-1",
            "the rotated refresh token is kept"
        );

        // The next call uses the fresh token directly.
        profile(&f, &[&caller]).await.unwrap();
        assert_eq!(f.token_endpoint.calls.load(Ordering::SeqCst), 1);
        assert_eq!(f.seen.tokens(), [stale, "at-fresh-1", "at-fresh-1"]);
    }
}

/// The token endpoint answers `invalid_grant`: the user's link is gone. The caller's own token is
/// fine, so it gets PERMISSION_DENIED with `proxy-status` naming re-authorization and no
/// `www-authenticate`.
#[tokio::test]
async fn revoked_upstream_grant_is_permission_denied_with_proxy_status() {
    let f = fixture(false).await;
    link(&f, "at-stale", "rt-revoked");
    let caller = format!("Bearer {}", token("alice", "profile:read"));

    let status = assert_failure(profile(&f, &[&caller]).await, Code::PermissionDenied);

    // The provider answered the call itself (UNAUTHENTICATED, HTTP's 401): `received-status`,
    // not `http_request_denied`, which would mean it was never forwarded (RFC 9209).
    let proxy_status = metadata(&status, "proxy-status").expect("proxy-status metadata");
    assert_eq!(
        proxy_status,
        r#"gw; received-status=401; next-hop="provider"; details="upstream_reauth_required""#
    );
    assert_eq!(metadata(&status, "www-authenticate"), None);
    assert!(
        metadata(&status, "link")
            .is_some_and(|l| l.contains("https://gateway.test/connect/provider")),
        "{status:?}"
    );
    assert_eq!(f.token_endpoint.calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.seen.tokens(), ["at-stale"], "not retried");
    assert!(f.store.get(&alice()).unwrap().needs_reauthorization());

    // Marked: the next call fails the same way without asking anyone.
    let status = assert_failure(profile(&f, &[&caller]).await, Code::PermissionDenied);
    assert!(
        metadata(&status, "proxy-status")
            .unwrap()
            .contains(r#"details="upstream_reauth_required""#)
    );
    assert_eq!(f.token_endpoint.calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.seen.tokens(), ["at-stale"]);
}

/// PERMISSION_DENIED from the provider is not refreshed: insufficient scope is named in
/// `proxy-status`; a plain one is passed on with `proxy-status`; neither keeps the provider's
/// challenge.
#[tokio::test]
async fn upstream_permission_denied_is_passed_on_with_proxy_status() {
    let f = fixture(false).await;
    let caller = format!("Bearer {}", token("alice", "profile:read"));

    link(&f, "at-scope-poor", "rt-1");
    let status = assert_failure(profile(&f, &[&caller]).await, Code::PermissionDenied);
    assert_eq!(
        metadata(&status, "proxy-status"),
        Some(r#"gw; received-status=403; details="upstream_insufficient_scope""#)
    );
    assert_eq!(metadata(&status, "www-authenticate"), None);

    link(&f, "at-forbidden", "rt-1");
    let status = assert_failure(profile(&f, &[&caller]).await, Code::PermissionDenied);
    assert_eq!(
        metadata(&status, "proxy-status"),
        Some("gw; received-status=403")
    );
    assert_eq!(metadata(&status, "www-authenticate"), None);
    assert_eq!(status.message(), "not yours");

    assert_eq!(f.token_endpoint.calls.load(Ordering::SeqCst), 0);
}

/// A bidirectional stream is sent as it comes: the caller can wait for each answer before it
/// sends the next message (buffering the request would deadlock here).
#[tokio::test]
async fn bidirectional_streams_are_not_buffered() {
    let f = fixture(false).await;
    link(&f, "at-fresh-0", "rt-0");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut request = Request::new(ReceiverStream::new(rx));
    request.extensions_mut().insert(alice());

    let exchange = async {
        tx.send(EchoMessage { text: "one".into() }).await.unwrap();
        let mut answers = f.provider.clone().echo(request).await?.into_inner();
        let first = answers.message().await?.unwrap();
        tx.send(EchoMessage { text: "two".into() }).await.unwrap();
        let second = answers.message().await?.unwrap();
        drop(tx);
        let end = answers.message().await?;
        Ok::<_, Status>((first.text, second.text, end))
    };
    let (first, second, end) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("no deadlock")
        .unwrap();
    assert_eq!((&*first, &*second, end), ("echo: one", "echo: two", None));
    assert_eq!(f.seen.tokens(), ["at-fresh-0"]);
}

/// A streaming call whose token is rejected is not retried: the token is refreshed, the caller
/// gets UNAVAILABLE with `retry-after`, and calling again works.
#[tokio::test]
async fn rejected_streaming_call_refreshes_without_retrying() {
    let f = fixture(false).await;
    link(&f, "at-stale", "rt-1");
    let call = || async {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut request = Request::new(ReceiverStream::new(rx));
        request.extensions_mut().insert(alice());
        let mut client = f.provider.clone();
        let answers = tokio::spawn(async move { client.echo(request).await });
        tx.send(EchoMessage { text: "hi".into() }).await.ok();
        let result = tokio::time::timeout(TIMEOUT, answers)
            .await
            .unwrap()
            .unwrap();
        (result, tx)
    };

    let (result, _tx) = call().await;
    let status = result.expect_err("not retried");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(metadata(&status, "retry-after").is_some());
    assert!(
        metadata(&status, "proxy-status")
            .is_some_and(|p| p.contains(r#"details="upstream_retry_not_possible""#)),
        "{status:?}"
    );
    assert_eq!(f.token_endpoint.calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.seen.tokens(), ["at-stale"]);

    let (result, tx) = call().await;
    let mut answers = result.expect("the fresh token is used").into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().text, "echo: hi");
    drop(tx);
    assert_eq!(f.seen.tokens(), ["at-stale", "at-fresh-1"]);
}

/// Upstream failures never surface as transport errors: an unreachable provider is UNAVAILABLE
/// with `proxy-status: …; error=connection_refused`.
#[tokio::test]
async fn unreachable_provider_is_unavailable_with_proxy_status() {
    let (token_url, _endpoint) = start_token_endpoint().await;
    let closed = closed_port().await;
    let store = MemoryStore::new();
    store.insert(alice(), Link::new("at-fresh-0"));
    let mut client = ProviderClient::new(upstream(closed, &token_url, &store));
    let mut request = Request::new(WhoamiRequest {});
    request.extensions_mut().insert(alice());
    let status = tokio::time::timeout(TIMEOUT, client.whoami(request))
        .await
        .unwrap()
        .expect_err("unreachable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        metadata(&status, "proxy-status"),
        Some("gw; error=connection_refused")
    );
}
