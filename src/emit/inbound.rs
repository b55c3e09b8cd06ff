//! The caller's own failures (rows I1–I8): what each one sends.

use http::StatusCode;

use super::{
    Emitter, RequestContext,
    plan::{Bearer, Rendering, Sealed},
};
use crate::failure::AuthError;

impl Sealed for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken(_) | Self::StepUpRequired { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Hidden => StatusCode::NOT_FOUND,
            Self::ValidationUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn rendering(&self, _emitter: &Emitter, _request: &RequestContext) -> Rendering {
        let status = self.status();
        let rendering = Rendering::new(status, self.to_string());
        match self {
            Self::MissingCredentials => rendering
                .bearer(Bearer::Bare)
                .problem("missing-credentials", "Authentication required"),
            Self::InvalidRequest(_) => rendering
                .bearer(Bearer::error("invalid_request"))
                .problem("invalid-request", "Invalid authentication request"),
            Self::InvalidToken(_) => rendering
                .bearer(Bearer::error("invalid_token"))
                .problem("invalid-token", "Invalid access token"),
            Self::InsufficientScope { required } => rendering
                .bearer(Bearer::error("insufficient_scope").param("scope", required.to_string()))
                .problem("insufficient-scope", "Insufficient scope")
                .member("scope", required.to_string().into()),
            Self::StepUpRequired {
                acr_values,
                max_age,
            } => {
                let mut bearer = Bearer::error("insufficient_user_authentication");
                if let Some(acr_values) = acr_values {
                    bearer = bearer.param("acr_values", acr_values.to_string());
                }
                if let Some(max_age) = max_age {
                    bearer = bearer.param("max_age", max_age.to_string());
                }
                rendering.bearer(bearer).problem(
                    "insufficient-user-authentication",
                    "Stronger authentication required",
                )
            }
            // Indistinguishable from the application's own 404 for a path that doesn't exist.
            Self::Hidden => rendering.title("Not Found").disguised(),
            Self::ValidationUnavailable { retry_after } => {
                rendering.retry_after(*retry_after).problem(
                    "validation-unavailable",
                    "Token validation temporarily unavailable",
                )
            }
        }
    }
}
