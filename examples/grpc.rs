//! A tonic gateway behind tower-bearer that calls a provider's tonic API with each user's
//! upstream token: `cargo run --example grpc --features tonic`.
//!
//! Everything runs in this process on 127.0.0.1: the provider's gRPC API (which accepts only
//! fresh tokens), its OAuth token endpoint (HTTP/1.1), and the gateway (`demo.v1.Gateway`),
//! whose `Profile` call needs a caller token with the `profile:read` scope and asks the provider
//! who the caller's linked account is. A tonic client then makes a few calls and prints what
//! each shows:
//!
//! 1. no token: `UNAUTHENTICATED` with a bare `Bearer` challenge in the metadata;
//! 2. a token without the scope: `PERMISSION_DENIED` with `error="insufficient_scope"`;
//! 3. a user whose upstream token the provider rejects: refreshed once, retried, success;
//! 4. a user whose upstream grant was revoked: `PERMISSION_DENIED` with
//!    `proxy-status: …; details="upstream_reauth_required"` and no challenge — the caller's own
//!    token is fine;
//! 5. a user who never connected the provider: the same, with a `link` to the connect flow.
//!
//! The protobuf code in `examples/grpc/demo.v1.rs` was generated from `examples/grpc/demo.proto`
//! and is checked in, so no `protoc` is needed (see `examples/grpc/README.md`).

#[path = "grpc/demo.v1.rs"]
#[allow(clippy::all, missing_docs)]
mod demo;
#[path = "grpc/gateway.rs"]
mod gateway;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use demo::{
    ProfileReply, ProfileRequest, WhoamiReply, WhoamiRequest,
    gateway_client::GatewayClient,
    gateway_server::GatewayServer,
    provider_client::ProviderClient,
    provider_server::{Provider, ProviderServer},
};
use gateway::GatewayApi;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status, Streaming,
    metadata::MetadataValue,
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};
use tower::Layer as _;
use tower_bearer::{
    authorize::{AuthorizeLayer, Requirements},
    emit::Emitter,
    grpc::{GrpcUpstream, GrpcUpstreamLayer},
    upstream::{
        grant::RefreshGrant, refresh::RefreshAndRetryLayer, store::Link, store::LinkKey,
        store::MemoryStore,
    },
    validate::{ClaimsPolicy, JwtValidator, StandardClaims, ValidateBearerLayer, VerificationKey},
};

const ISSUER: &str = "https://demo-issuer.invalid";
const AUDIENCE: &str = "demo-gateway";
const PROVIDER: &str = "provider";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The gateway's tonic client to the provider, behind the outbound layers.
type Upstream = GrpcUpstream<Channel, MemoryStore, RefreshGrant>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let secret: Vec<u8> = std::iter::repeat_with(rand_byte).take(32).collect();
    let token_calls = Arc::new(AtomicUsize::new(0));

    let token_endpoint = start_token_endpoint(token_calls.clone()).await?;
    let provider = start_provider().await?;
    let emitter = Emitter::new("demo-gateway")
        .with_proxy_name("demo-gateway")
        .with_grpc(true);

    // The users' links to the provider (a real deployment stores them in a shared store).
    let store = MemoryStore::new();
    // Alice's access token is one the provider no longer accepts; her refresh token works.
    store.insert(
        LinkKey::new("alice", PROVIDER),
        Link::new("stale-access-token")
            .with_refresh_token("alice-refresh-token")
            .with_expires_in(Duration::from_secs(3600)),
    );
    // Bob revoked the gateway's access at the provider: his refresh token is dead.
    store.insert(
        LinkKey::new("bob", PROVIDER),
        Link::new("stale-access-token")
            .with_refresh_token("revoked-refresh-token")
            .with_expires_in(Duration::from_secs(3600)),
    );
    // Carol never connected the provider.

    // Outbound: a tonic client to the provider, with refresh-and-retry and gRPC classification.
    let grant = RefreshGrant::new(
        tower_bearer::http_client::HttpClient::new(
            Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>(),
        ),
        format!("http://{token_endpoint}/token").parse()?,
        "demo-gateway",
    )
    .client_secret_basic("demo-client-secret");
    let refresh = RefreshAndRetryLayer::new(PROVIDER, store.clone(), grant)
        .connect_url("https://gateway.example/connect/provider");
    let channel = Endpoint::from_shared(format!("http://{provider}"))?.connect_lazy();
    let upstream = GrpcUpstreamLayer::new(refresh, emitter.clone()).layer(channel);

    // Inbound: the gateway's tonic server behind token validation and a scope rule.
    let validator = JwtValidator::<StandardClaims>::builder()
        .key(VerificationKey::hmac(&secret, &[Algorithm::HS256])?)
        .policy(ClaimsPolicy::new().issuer(ISSUER).audience(AUDIENCE))
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gateway = listener.local_addr()?;
    let server = Server::builder()
        .layer(ValidateBearerLayer::new(validator, emitter))
        .layer(AuthorizeLayer::new(
            Requirements::new().scope("profile:read"),
        ))
        .add_service(GatewayServer::new(GatewayApi {
            provider: ProviderClient::new(upstream),
        }));
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    println!("gateway {gateway}, provider {provider}, token endpoint {token_endpoint}\n");

    let mut client =
        GatewayClient::new(Endpoint::from_shared(format!("http://{gateway}"))?.connect_lazy());
    let token = |sub: &str, scope: &str| mint(&secret, sub, scope);

    println!("1. no token");
    show(client.profile(request(None)).await);

    println!("2. a token without the profile:read scope");
    show(
        client
            .profile(request(Some(&token("alice", "email"))))
            .await,
    );

    println!("3. alice: the provider rejects her stored upstream token");
    show(
        client
            .profile(request(Some(&token("alice", "profile:read"))))
            .await,
    );
    println!(
        "   (token endpoint called {} time(s); alice's stored token was replaced: {})\n",
        token_calls.load(Ordering::SeqCst),
        store
            .get(&LinkKey::new("alice", PROVIDER))
            .is_some_and(|t| t.access_token().expose_secret() != "stale-access-token"),
    );

    println!("4. bob: his grant at the provider was revoked");
    show(
        client
            .profile(request(Some(&token("bob", "profile:read"))))
            .await,
    );
    println!(
        "   (the token endpoint answered invalid_grant; bob's link is marked for re-authorization: {})\n",
        store
            .get(&LinkKey::new("bob", PROVIDER))
            .is_some_and(|t| t.needs_reauthorization()),
    );

    println!("5. carol: never connected the provider");
    show(
        client
            .profile(request(Some(&token("carol", "profile:read"))))
            .await,
    );
    Ok(())
}

fn request(token: Option<&str>) -> Request<ProfileRequest> {
    let mut request = Request::new(ProfileRequest {});
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn show(result: Result<Response<ProfileReply>, Status>) {
    match result {
        Ok(reply) => {
            let reply = reply.into_inner();
            println!(
                "   OK: subject {:?}, provider account {:?}",
                reply.subject, reply.upstream_account
            );
        }
        Err(status) => {
            println!(
                "   {:?} ({}): {:?}",
                status.code(),
                status.code() as i32,
                status.message()
            );
            for name in ["www-authenticate", "proxy-status", "retry-after", "link"] {
                if let Some(value) = status.metadata().get(name).and_then(|v| v.to_str().ok()) {
                    println!("   {name}: {value}");
                }
            }
        }
    }
    println!();
}

fn mint(secret: &[u8], sub: &str, scope: &str) -> String {
    let now = get_current_timestamp();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope, "iat": now, "exp": now + 600,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing does not fail")
}

// ---------------------------------------------------------------------------------------------
// The provider: its gRPC API and its token endpoint
// ---------------------------------------------------------------------------------------------

/// Access tokens the provider accepts start with this; the token endpoint hands them out.
const FRESH: &str = "fresh-access-token-";

struct ProviderApi;

#[tonic::async_trait]
impl Provider for ProviderApi {
    async fn whoami(
        &self,
        request: Request<WhoamiRequest>,
    ) -> Result<Response<WhoamiReply>, Status> {
        let fresh = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("Bearer {FRESH}")));
        if !fresh {
            // What many providers answer for an expired or revoked token.
            let mut status = Status::unauthenticated("the access token expired");
            status.metadata_mut().insert(
                "www-authenticate",
                MetadataValue::from_static(r#"Bearer realm="provider", error="invalid_token""#),
            );
            return Err(status);
        }
        Ok(Response::new(WhoamiReply {
            account: "provider-account-4711".into(),
        }))
    }

    type EchoStream = tokio_stream::Empty<Result<demo::EchoMessage, Status>>;

    async fn echo(
        &self,
        _request: Request<Streaming<demo::EchoMessage>>,
    ) -> Result<Response<Self::EchoStream>, Status> {
        Err(Status::unimplemented("not part of this demo"))
    }
}

async fn start_provider() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = Server::builder().add_service(ProviderServer::new(ProviderApi));
    tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
    Ok(address)
}

/// The provider's OAuth token endpoint: the refresh grant, rotating refresh tokens;
/// `invalid_grant` for a revoked one.
async fn start_token_endpoint(calls: Arc<AtomicUsize>) -> Result<SocketAddr, BoxError> {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |form: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let json = [("content-type", "application/json")];
                if form.contains("refresh_token=revoked") {
                    let error = r#"{"error":"invalid_grant"}"#.to_owned();
                    return (http::StatusCode::BAD_REQUEST, json, error);
                }
                let answer = format!(
                    r#"{{"access_token":"{FRESH}{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rotated-refresh-token-{n}"}}"#
                );
                (http::StatusCode::OK, json, answer)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// A random byte from the standard library's randomly seeded hasher (no `rand` dependency).
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() as u8
}
