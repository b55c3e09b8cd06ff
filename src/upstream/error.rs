//! The failure taxonomy of the upstream side (rows U4–U9, S1); [`emit`](crate::emit) renders it.

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;

use super::grant::GrantError;
use crate::BoxError;

/// Why a user's link to a provider failed, as opposed to the caller's own credentials
/// ([`AuthError`](crate::failure::AuthError)).
///
/// Render it with the [`Emitter`](crate::emit::Emitter) (directly, or by answering with
/// [`pending_response`](crate::emit::pending_response)). Neither `Display` nor `Debug` ever
/// includes a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The user has to connect the provider again (row U4): the link was never made, it has no
    /// refresh token, the token endpoint answered `invalid_grant`, or even a fresh token was
    /// rejected. The link is marked as needing re-authorization; its refresh token is kept.
    #[error("the link to `{provider}` needs re-authorization: {reason}")]
    ReauthRequired {
        /// The provider.
        provider: Arc<str>,
        /// What showed that the grant is gone.
        reason: ReauthReason,
        /// The status with which the provider's API itself rejected the token, when that is
        /// what showed it.
        received_status: Option<StatusCode>,
        /// Where the user connects the provider again, when configured.
        connect_url: Option<Arc<str>>,
    },
    /// The provider's API requires scopes the link was not granted (row U5).
    #[error("`{provider}` requires a scope the link was not granted")]
    InsufficientScope {
        /// The provider.
        provider: Arc<str>,
        /// The scopes the provider named, if any.
        scopes: Vec<String>,
    },
    /// The token endpoint is down, slow, or answered nonsense (row U7). The stored tokens are
    /// unchanged.
    #[error("the token endpoint of `{provider}` is unavailable")]
    RefreshUnavailable {
        /// The provider.
        provider: Arc<str>,
        /// When to try again.
        retry_after: Duration,
        /// The token endpoint's answer, if any.
        #[source]
        source: Option<GrantError>,
    },
    /// Our own configuration is wrong (row U8): the token endpoint refused our client
    /// (`invalid_client`, `unauthorized_client`, …), or the request names another provider
    /// than the layer's.
    #[error("the OAuth client configuration for `{provider}` is wrong")]
    Misconfigured {
        /// The provider.
        provider: Arc<str>,
        /// The token endpoint's answer, when it was the one that refused.
        #[source]
        source: Option<GrantError>,
    },
    /// The provider's API could not be reached (row U9).
    #[error("`{provider}` could not be reached")]
    Unreachable {
        /// The provider.
        provider: Arc<str>,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The provider's API closed the connection without a complete answer (row U9).
    #[error("`{provider}` closed the connection without answering")]
    ConnectionTerminated {
        /// The provider.
        provider: Arc<str>,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The provider's API did not answer in time (row U9).
    #[error("`{provider}` did not answer in time")]
    TimedOut {
        /// The provider.
        provider: Arc<str>,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// The provider rejected the token and it was refreshed, but the request could not be sent
    /// again: its body was not kept. Sending the request again will use the new token.
    #[error(
        "`{provider}` rejected the token; it was refreshed, but the request was not retried: {reason}"
    )]
    BodyNotReplayable {
        /// The provider.
        provider: Arc<str>,
        /// Why the body was not kept.
        reason: NotReplayable,
        /// The status with which the provider rejected the token.
        received_status: StatusCode,
    },
    /// The caller's request body failed while it was being buffered.
    #[error("the request body for `{provider}` could not be read")]
    RequestBody {
        /// The provider.
        provider: Arc<str>,
        /// The body's error.
        #[source]
        source: BoxError,
    },
    /// The token store failed. The link is unchanged as far as this crate could tell.
    #[error("the token store failed for `{provider}`")]
    StoreUnavailable {
        /// The provider.
        provider: Arc<str>,
        /// The store's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// What showed that a link needs re-authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReauthReason {
    /// The store holds no link for this user and provider.
    NotConnected,
    /// The link was already marked as needing re-authorization.
    Marked,
    /// The token was rejected or expired, and there is no refresh token.
    NoRefreshToken,
    /// The token endpoint answered `invalid_grant`.
    InvalidGrant,
    /// The provider rejected the freshly refreshed token too.
    RejectedAfterRefresh,
}

impl fmt::Display for ReauthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotConnected => "the provider was never connected",
            Self::Marked => "the link was marked as needing re-authorization",
            Self::NoRefreshToken => "the token was rejected and there is no refresh token",
            Self::InvalidGrant => "the token endpoint refused the refresh token",
            Self::RejectedAfterRefresh => "the provider rejected a freshly refreshed token",
        })
    }
}

/// Why a request body could not be sent a second time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotReplayable {
    /// It was longer than the replay buffer.
    TooLarge {
        /// The replay buffer's size in bytes.
        limit: usize,
    },
    /// The request asked to be sent as it streams
    /// ([`NoReplay`](crate::upstream::refresh::NoReplay)).
    Streamed,
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => {
                write!(
                    f,
                    "the request body is larger than the {limit}-byte replay buffer"
                )
            }
            Self::Streamed => f.write_str("the request body was streamed, not kept"),
        }
    }
}

impl UpstreamError {
    /// The provider.
    pub fn provider(&self) -> &str {
        match self {
            Self::ReauthRequired { provider, .. }
            | Self::InsufficientScope { provider, .. }
            | Self::RefreshUnavailable { provider, .. }
            | Self::Misconfigured { provider, .. }
            | Self::Unreachable { provider, .. }
            | Self::ConnectionTerminated { provider, .. }
            | Self::TimedOut { provider, .. }
            | Self::BodyNotReplayable { provider, .. }
            | Self::RequestBody { provider, .. }
            | Self::StoreUnavailable { provider, .. } => provider,
        }
    }
}
