//! The upstream side's failures (rows U4–U9, S1): what each one sends. The caller's own token is
//! fine in every one of them, so none carries a Bearer challenge; each names itself in
//! `Proxy-Status` (RFC 9209).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::{
    Emitter, RequestContext,
    plan::{Bearer, Rendering, Sealed},
    proxy_status::{ProxyErrorType, ProxyStatus},
};
use crate::upstream::UpstreamError;

/// The `Link` relation pointing at a provider's connect flow in a re-authorization response
/// (an extension relation type, RFC 8288 §2.1.2).
pub const CONNECT_RELATION: &str =
    "https://docs.rs/tower-bearer/latest/tower_bearer/upstream/#connect";

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
            Self::Unreachable { .. } | Self::ConnectionTerminated { .. } => StatusCode::BAD_GATEWAY,
            Self::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::RequestBody { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn rendering(&self, emitter: &Emitter, _: &RequestContext) -> Rendering {
        let proxy = ProxyStatus::new(emitter.proxy_name());
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
                // A navigation carries no bearer token, so it is not sent to the connect route:
                // `connect::routes` starts the flow and sends it to the provider instead.
                if let Some(url) = connect_url {
                    rendering.link = header_value(format!("<{url}>; rel=\"{CONNECT_RELATION}\""));
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
            Self::ConnectionTerminated { .. } => {
                let proxy = proxy.error(ProxyErrorType::ConnectionTerminated);
                with_proxy_status(rendering, &proxy).problem(
                    "upstream-connection-terminated",
                    "Upstream closed the connection",
                )
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
                    .details("link_store_unavailable");
                with_proxy_status(rendering, &proxy)
                    .retry_after(STORE_RETRY_AFTER)
                    .problem("link-store-unavailable", "Link store unavailable")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_relation_points_at_its_documentation() {
        // rustdoc anchors the heading `# Connect` of the `upstream` module's docs as `#connect`.
        let (page, anchor) = CONNECT_RELATION.split_once('#').unwrap();
        assert_eq!(
            page,
            "https://docs.rs/tower-bearer/latest/tower_bearer/upstream/"
        );
        assert_eq!(anchor, "connect");
        let docs = include_str!("../upstream/mod.rs");
        assert_eq!(docs.lines().filter(|l| *l == "//! # Connect").count(), 1);
    }
}

/// Row U4 for a browser navigation: the link needs re-authorization and a connect flow was
/// started for it, so the browser is sent (`303`) straight to the provider's authorization
/// endpoint with the flow's binding cookie — a navigation carries no bearer token, so it
/// cannot be sent to a route that needs one. Every other header is U4's. Made by
/// [`connect::routes`](crate::upstream::connect::routes).
#[derive(Debug, thiserror::Error)]
#[error("{error}; the browser is sent to the provider to authorize again")]
pub struct ReauthorizeInBrowser {
    error: UpstreamError,
    location: HeaderValue,
    set_cookie: HeaderValue,
}

impl ReauthorizeInBrowser {
    /// `error` (a re-authorization failure), answered with a redirect to `location` setting
    /// `set_cookie`.
    pub fn new(error: UpstreamError, location: HeaderValue, set_cookie: HeaderValue) -> Self {
        Self {
            error,
            location,
            set_cookie,
        }
    }
}

impl Sealed for ReauthorizeInBrowser {
    fn status(&self) -> StatusCode {
        StatusCode::SEE_OTHER
    }

    fn rendering(&self, emitter: &Emitter, request: &RequestContext) -> Rendering {
        let mut rendering = self.error.rendering(emitter, request);
        rendering.status = StatusCode::SEE_OTHER;
        rendering.location = Some(self.location.clone());
        rendering.set_cookie = Some(self.set_cookie.clone());
        rendering
    }
}
