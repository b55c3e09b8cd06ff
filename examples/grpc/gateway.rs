//! The demo gateway's gRPC API: `Profile` asks the provider who the caller's linked account is.
//! Included with `#[path]` by `examples/grpc.rs` and by `tests/grpc.rs`, whose crate roots
//! define `demo` (the generated code), `PROVIDER` and `Upstream`.

use tonic::{Request, Response, Status};
use tower_bearer::{grpc, upstream::store::LinkKey, validate::StandardClaims};

use super::demo::{
    ProfileReply, ProfileRequest, WhoamiRequest, gateway_server::Gateway,
    provider_client::ProviderClient,
};
use super::{PROVIDER, Upstream};

/// The gateway's API.
pub struct GatewayApi {
    pub provider: ProviderClient<Upstream>,
}

#[tonic::async_trait]
impl Gateway for GatewayApi {
    async fn profile(
        &self,
        request: Request<ProfileRequest>,
    ) -> Result<Response<ProfileReply>, Status> {
        // The claims ValidateBearerLayer validated.
        let claims = grpc::claims::<StandardClaims>(&request)
            .ok_or_else(|| Status::internal("not behind ValidateBearerLayer"))?;
        let subject = claims.sub.clone().unwrap_or_default();
        // Which user's link to use: the outbound layers attach that user's upstream token.
        let mut call = Request::new(WhoamiRequest {});
        call.extensions_mut()
            .insert(LinkKey::new(subject.clone(), PROVIDER));
        // Upstream failures arrive already rendered (code + proxy-status): forward them.
        let reply = self.provider.clone().whoami(call).await?;
        Ok(Response::new(ProfileReply {
            subject,
            upstream_account: reply.into_inner().account,
        }))
    }
}
