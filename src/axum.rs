//! axum integration: the validated claims as an extractor, and failures as responses.

use std::{convert::Infallible, ops::Deref, sync::Arc};

use axum_core::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::request::Parts;

use crate::{emit::pending_response, failure::AuthError, upstream::UpstreamError};

/// Extracts the claims [`ValidateBearer`](crate::validate::ValidateBearer) validated.
///
/// The claims are the ones in the request's extensions, shared (an `Arc<C>`, never copied):
/// `Authenticated(claims)` binds an `Arc<C>`, and `Authenticated<C>` derefs to `C`.
/// Without them (the route is outside the layer) the request is refused as unauthenticated,
/// rendered by the enclosing emitting layer.
#[derive(Debug)]
pub struct Authenticated<C>(pub Arc<C>);

impl<C> Clone for Authenticated<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> Deref for Authenticated<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C: Send + Sync + 'static> Authenticated<C> {
    fn from_parts(parts: &Parts) -> Option<Self> {
        parts.extensions.get::<Arc<C>>().cloned().map(Authenticated)
    }
}

impl<S, C> FromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts).ok_or(AuthError::MissingCredentials)
    }
}

/// `Option<Authenticated<C>>`: the claims when the request was authenticated, `None` when it
/// carried no credentials under an [optional](crate::validate::ValidateBearerLayer::optional)
/// validation layer.
impl<S, C> OptionalFromRequestParts<S> for Authenticated<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_parts(parts))
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
