//! Inbound: the caller's claims in tonic handlers, failures as `tonic::Status`, and the layers
//! as tonic services.

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use tonic::server::NamedService;

use crate::{
    authorize::Authorize,
    emit::{Emit, Emitter, Failure, RequestContext},
    validate::ValidateBearer,
};

/// The claims [`ValidateBearer`] inserted into a tonic request's extensions: `None` when the
/// request did not pass through it (or the type does not match the validator's claims).
///
/// ```
/// use tower_bearer::{grpc, validate::StandardClaims};
///
/// let mut request = tonic::Request::new(());
/// let alice = StandardClaims { sub: Some("alice".into()), ..Default::default() };
/// // As `ValidateBearer` puts them: shared, behind an `Arc`.
/// request.extensions_mut().insert(std::sync::Arc::new(alice));
/// let claims = grpc::claims::<StandardClaims>(&request).unwrap();
/// assert_eq!(claims.sub.as_deref(), Some("alice"));
/// ```
pub fn claims<C>(request: &tonic::Request<impl Sized>) -> Option<&C>
where
    C: Send + Sync + 'static,
{
    request.extensions().get::<Arc<C>>().map(Arc::as_ref)
}

/// Renders `failure` — the caller's own ([`AuthError`](crate::failure::AuthError)) or an
/// upstream one ([`UpstreamError`](crate::upstream::UpstreamError)) — as the [`tonic::Status`] a gRPC caller gets from the
/// `emitter`: the code, the message, and the `www-authenticate`, `proxy-status`, `retry-after`
/// and `link` metadata.
///
/// For a handler whose failure does not come from a layer, e.g. an HTTP upstream called through
/// [`RefreshAndRetry`](crate::upstream::refresh::RefreshAndRetry) from a tonic handler: `return Err(grpc::status(&emitter, &error))`.
pub fn status<F: Failure + ?Sized>(emitter: &Emitter, failure: &F) -> tonic::Status {
    let mut response = emitter.render_grpc(failure, &RequestContext::default());
    response.headers_mut().remove(CONTENT_TYPE);
    tonic::Status::from_header_map(response.headers())
        .unwrap_or_else(|| tonic::Status::unknown("unrenderable failure"))
}

impl<S: NamedService, V> NamedService for ValidateBearer<S, V> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService, C, R> NamedService for Authorize<S, C, R> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> NamedService for Emit<S> {
    const NAME: &'static str = S::NAME;
}
