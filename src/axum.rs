//! axum integration: the validated claims as an extractor, and failures as responses.

use std::convert::Infallible;

use axum_core::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::request::Parts;

use crate::{emit::pending_response, failure::AuthError, upstream::UpstreamError};

/// Extracts the claims [`ValidateBearer`](crate::validate::ValidateBearer) validated.
///
/// Without them (the route is outside the layer) the request is refused as unauthenticated,
/// rendered by the enclosing emitting layer.
#[derive(Debug, Clone)]
pub struct Authenticated<C>(pub C);

impl<S, C> FromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: Clone + Send + Sync + 'static,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<C>()
            .cloned()
            .map(Authenticated)
            .ok_or(AuthError::MissingCredentials)
    }
}

/// `Option<Authenticated<C>>`: the claims when the request was authenticated, `None` when it
/// carried no credentials under an [optional](crate::validate::ValidateBearerLayer::optional)
/// validation layer.
impl<S, C> OptionalFromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: Clone + Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<C>().cloned().map(Authenticated))
    }
}

/// A pending failure, rendered by the enclosing [`ValidateBearer`](crate::validate::ValidateBearer)
/// or [`EmitLayer`](crate::emit::EmitLayer).
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        pending_response::<Body>(self)
    }
}

/// A pending failure, rendered by the enclosing [`ValidateBearer`](crate::validate::ValidateBearer)
/// or [`EmitLayer`](crate::emit::EmitLayer): a handler answers `Err(error)` straight from the
/// upstream client.
impl IntoResponse for UpstreamError {
    fn into_response(self) -> Response {
        pending_response::<Body>(self)
    }
}
