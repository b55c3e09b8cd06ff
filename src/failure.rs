//! The failure taxonomy of the caller's side: why a request's own bearer credentials were refused.
//!
//! Failures are values, never strings. Each variant maps onto one row of the wire contract; the
//! [`Emitter`](crate::emit::Emitter) renders them. Upstream failures (the user's link to a
//! third-party provider) are a different type, so the two sides can never be confused.

use std::{sync::Arc, time::Duration};

use http::Request;

/// Why the caller's bearer credentials were refused.
///
/// `Display` never includes the token, nor anything taken from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials, or only credentials of a scheme other than Bearer (row I1).
    #[error("the request carries no bearer credentials")]
    MissingCredentials,
    /// The request is ambiguous or malformed (row I2).
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] InvalidRequest),
    /// The token is unreadable (row I3) or was refused (row I4).
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenRejection),
    /// The token is valid but lacks scopes this resource requires (row I5).
    #[error("the token lacks a required scope")]
    InsufficientScope {
        /// The scopes the resource requires, all of them, space-separated.
        required: Arc<str>,
    },
    /// The token is valid but the login behind it is too weak or too old (row I6, RFC 9470).
    #[error("a stronger or more recent authentication is required")]
    StepUpRequired {
        /// Acceptable `acr` values, space-separated, when the authentication level was too weak.
        acr_values: Option<Arc<str>>,
        /// The maximum authentication age in seconds, when the login was too old.
        max_age: Option<u64>,
    },
    /// The caller must not learn that this resource exists (row I7).
    #[error("not found")]
    Hidden,
    /// Keys or the introspection endpoint are unavailable and nothing usable is cached (row I8).
    #[error("token validation is temporarily unavailable")]
    ValidationUnavailable {
        /// When the caller should try again.
        retry_after: Duration,
    },
}

impl AuthError {
    /// A short, stable label for why the credentials were refused, for logs and metrics:
    /// `missing`, `malformed`, `expired`, `signature`, `issuer`, `audience`, `typ`,
    /// `unknown_kid`, `scope`, … (the variants' own [`InvalidRequest::reason`] and
    /// [`TokenRejection::reason`] included). Nothing in it comes from the request.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing",
            Self::InvalidRequest(invalid) => invalid.reason(),
            Self::InvalidToken(rejection) => rejection.reason(),
            Self::InsufficientScope { .. } => "scope",
            Self::StepUpRequired { .. } => "step_up",
            Self::Hidden => "hidden",
            Self::ValidationUnavailable { .. } => "unavailable",
        }
    }

    /// Tells the operator why `request` was refused: a `debug` event with the
    /// [`reason`](Self::reason), the method and the path. Never the token, nor the query string,
    /// which may carry one (RFC 6750 §2.3); the response says only what the disclosure level
    /// allows.
    pub(crate) fn trace_refusal<B>(&self, request: &Request<B>) {
        tracing::debug!(
            reason = self.reason(),
            method = %request.method(),
            path = request.uri().path(),
            "bearer credentials refused"
        );
    }
}

/// Why a request was refused as malformed (row I2, RFC 6750 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// The token was sent by more than one method (RFC 6750 §2).
    #[error("the access token was sent by more than one method")]
    MultipleMethods,
    /// More than one `Authorization` header.
    #[error("the Authorization header was repeated")]
    RepeatedHeader,
    /// More than one `access_token` parameter.
    #[error("the access_token parameter was repeated")]
    RepeatedParameter,
    /// `Bearer` with nothing after it.
    #[error("the bearer token is empty")]
    EmptyToken,
    /// A form body that may carry the token failed while it was read.
    #[error("the request body could not be read")]
    UnreadableBody,
}

impl InvalidRequest {
    /// A short, stable label for logs and metrics: `multiple_methods`, `repeated_header`,
    /// `repeated_parameter`, `empty_token` or `unreadable_body`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MultipleMethods => "multiple_methods",
            Self::RepeatedHeader => "repeated_header",
            Self::RepeatedParameter => "repeated_parameter",
            Self::EmptyToken => "empty_token",
            Self::UnreadableBody => "unreadable_body",
        }
    }
}

/// Why a present token was refused (rows I3 and I4, RFC 6750 `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a well-formed token: bad characters, not a JWT, bad base64 or JSON (I3).
    #[error("the access token is malformed")]
    Malformed,
    /// Longer than the configured limit; refused unread (I3).
    #[error("the access token is too long")]
    TooLong,
    /// Past its `exp` (plus leeway).
    #[error("the access token expired")]
    Expired,
    /// Before its `nbf` (minus leeway).
    #[error("the access token is not yet valid")]
    NotYetValid,
    /// The signature does not verify.
    #[error("the access token signature is invalid")]
    BadSignature,
    /// The header names an algorithm outside the allow-list (including `none`).
    #[error("the access token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No key matches the token's `kid` (after at most one refetch).
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    /// `iss` is not an accepted issuer.
    #[error("the access token issuer is not accepted")]
    WrongIssuer,
    /// `aud` names none of the accepted audiences.
    #[error("the access token audience is not accepted")]
    WrongAudience,
    /// The header `typ` is not the required one (e.g. `at+jwt`, RFC 9068).
    #[error("the access token type is not accepted")]
    WrongType,
    /// A required claim is absent.
    #[error("the access token lacks a required claim")]
    MissingClaim,
    /// Introspection answered `active: false` (RFC 7662).
    #[error("the access token is not active")]
    Inactive,
}

impl TokenRejection {
    /// A short, stable label for logs and metrics: `malformed`, `too_long`, `expired`,
    /// `not_yet_valid`, `signature`, `algorithm`, `unknown_kid`, `issuer`, `audience`, `typ`,
    /// `missing_claim` or `inactive`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLong => "too_long",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "signature",
            Self::AlgorithmNotAllowed => "algorithm",
            Self::UnknownKey => "unknown_kid",
            Self::WrongIssuer => "issuer",
            Self::WrongAudience => "audience",
            Self::WrongType => "typ",
            Self::MissingClaim => "missing_claim",
            Self::Inactive => "inactive",
        }
    }

    /// Whether the token could not even be read (row I3) rather than read and refused (row I4).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::Malformed | Self::TooLong)
    }
}
