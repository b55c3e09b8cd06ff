//! The failure taxonomy of the upstream side, and how each failure is rendered (rows U4–U9).

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::grant::GrantError;
use crate::BoxError;
use crate::emit::{
    Bearer, Emitter, Rendering, RequestContext, Sealed,
    proxy_status::{ProxyErrorType, ProxyStatus},
};

/// The `Link` relation pointing at a provider's connect flow in a re-authorization response
/// (an extension relation type, RFC 8288 §2.1.2).
pub const CONNECT_RELATION: &str =
    "https://docs.rs/tower-bearer/latest/tower_bearer/upstream/#connect";

/// Why a user's link to a provider failed, as opposed to the caller's own credentials
/// ([`AuthError`](crate::failure::AuthError)).
///
/// Render it with the [`Emitter`] (directly, or by answering with
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
            | Self::TimedOut { provider, .. }
            | Self::BodyNotReplayable { provider, .. }
            | Self::RequestBody { provider, .. }
            | Self::StoreUnavailable { provider, .. } => provider,
        }
    }
}

/// How long to wait after a store failure or a retry that was not possible.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Sealed for UpstreamError {
    fn status(&self) -> StatusCode {
        match self {
            Self::ReauthRequired { .. } | Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::RefreshUnavailable { .. }
            | Self::BodyNotReplayable { .. }
            | Self::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::RequestBody { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn rendering(&self, emitter: &Emitter, request: &RequestContext) -> Rendering {
        let proxy = ProxyStatus::new(emitter.proxy());
        let provider = self.provider().to_owned();
        // The caller's own token is fine: never a Bearer challenge, let alone an error code.
        let rendering = Rendering::new(self.status(), self.to_string())
            .bearer(Bearer::None)
            .member("provider", provider.clone().into());
        match self {
            Self::ReauthRequired {
                received_status,
                connect_url,
                ..
            } => {
                let proxy = match received_status {
                    Some(status) => proxy.received_status(*status),
                    None => proxy.error(ProxyErrorType::HttpRequestDenied),
                };
                let proxy = proxy
                    .next_hop(&provider)
                    .details("upstream_reauth_required");
                let mut rendering = with_proxy_status(rendering, &proxy).problem(
                    "upstream-reauth-required",
                    "Upstream re-authorization required",
                );
                if let Some(url) = connect_url {
                    rendering.link = header_value(format!("<{url}>; rel=\"{CONNECT_RELATION}\""));
                    if request.is_browser_navigation() {
                        rendering.location = header_value(url.to_string());
                        if rendering.location.is_some() {
                            rendering.status = StatusCode::SEE_OTHER;
                        }
                    }
                    rendering = rendering.member("connect", url.to_string().into());
                }
                rendering
            }
            Self::InsufficientScope { scopes, .. } => {
                let proxy = proxy
                    .received_status(StatusCode::FORBIDDEN)
                    .details("upstream_insufficient_scope");
                let rendering = with_proxy_status(rendering, &proxy)
                    .problem("upstream-insufficient-scope", "Upstream scope insufficient");
                if scopes.is_empty() {
                    rendering
                } else {
                    rendering.member("scope", scopes.join(" ").into())
                }
            }
            Self::RefreshUnavailable { retry_after, .. } => {
                let proxy = proxy
                    .error(ProxyErrorType::DestinationUnavailable)
                    .details("upstream_refresh_unavailable");
                with_proxy_status(rendering, &proxy)
                    .retry_after(*retry_after)
                    .problem(
                        "upstream-refresh-unavailable",
                        "Upstream token refresh unavailable",
                    )
            }
            Self::Misconfigured { .. } => {
                let proxy = proxy.error(ProxyErrorType::ProxyConfigurationError);
                with_proxy_status(rendering, &proxy)
                    .problem("upstream-misconfigured", "Upstream client misconfigured")
            }
            Self::Unreachable { .. } => {
                let proxy = proxy.error(ProxyErrorType::ConnectionRefused);
                with_proxy_status(rendering, &proxy)
                    .problem("upstream-unreachable", "Upstream unreachable")
            }
            Self::TimedOut { .. } => {
                let proxy = proxy.error(ProxyErrorType::HttpResponseTimeout);
                with_proxy_status(rendering, &proxy)
                    .problem("upstream-timeout", "Upstream timed out")
            }
            Self::BodyNotReplayable {
                received_status, ..
            } => {
                let proxy = proxy
                    .received_status(*received_status)
                    .details("upstream_retry_not_possible");
                with_proxy_status(rendering, &proxy)
                    .retry_after(Duration::from_secs(1))
                    .problem(
                        "upstream-retry-not-possible",
                        "Upstream token refreshed, request not retried",
                    )
            }
            Self::RequestBody { .. } => {
                let proxy = proxy.error(ProxyErrorType::HttpRequestError);
                with_proxy_status(rendering, &proxy)
                    .problem("request-body-unreadable", "Request body unreadable")
            }
            Self::StoreUnavailable { .. } => {
                let proxy = proxy
                    .error(ProxyErrorType::ProxyInternalError)
                    .details("token_store_unavailable");
                with_proxy_status(rendering, &proxy)
                    .retry_after(STORE_RETRY_AFTER)
                    .problem("token-store-unavailable", "Token store unavailable")
            }
        }
    }
}

fn with_proxy_status(mut rendering: Rendering, proxy: &ProxyStatus) -> Rendering {
    rendering.proxy_status = Some(proxy.to_header_value());
    rendering
}

fn header_value(value: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
}
