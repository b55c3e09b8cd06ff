//! Outbound: calling a third-party API with the user's upstream OAuth2 token.
//!
//! The handler builds the upstream request, tags it with the user × provider [`LinkKey`](store::LinkKey), and
//! sends it through two layers over its own HTTP client:
//!
//! ```text
//! handler ─► RefreshAndRetry ─► ClassifyUpstream ─► HTTP client ─► provider
//!              │ TokenStore          │ 401 / 403: what do they mean?
//!              │ RefreshGrant ─► HTTP client ─► token endpoint
//! ```
//!
//! - [`classify`]: what a response means for the token — rejected (refreshable), insufficient
//!   scope, plain forbidden, or not about the token — including vendor rules.
//! - [`refresh`]: attach the token, refresh it ahead of expiry or after a rejection (once,
//!   single-flight per link, rotation-safe), retry once.
//! - [`store`]: the links, behind a [`TokenStore`](store::TokenStore) designed for several replicas.
//! - [`grant`]: the RFC 6749 §6 refresh grant, with its failures classified (RFC 6749 §5.2).
//!
//! Failures are [`UpstreamError`]s. The [`Emitter`](crate::emit::Emitter) renders them so that
//! the caller can tell the upstream link from its own credentials by the headers alone: never a
//! Bearer `error` (the caller's token is fine), always a `Proxy-Status` (RFC 9209) naming the
//! failure, a `Link` to the connect flow when the user has to re-authorize.
//!
//! | the provider / token endpoint says | the caller sees |
//! |---|---|
//! | not auth-related (U1) | the response, without hop-by-hop headers |
//! | token rejected (U2), or expiring (U3) | nothing: refreshed, retried |
//! | no refresh token, `invalid_grant`, fresh token rejected (U4) | `403` + `Proxy-Status: <proxy>; error=http_request_denied; next-hop="<provider>"; details="upstream_reauth_required"` + `Link`; `303` for browser navigations |
//! | insufficient scope (U5) | `403` + `Proxy-Status: <proxy>; received-status=403; details="upstream_insufficient_scope"` |
//! | plain `403` (U6) | the `403` + `Proxy-Status: <proxy>; received-status=403`, no `WWW-Authenticate` |
//! | token endpoint down (U7) | `503` + `Proxy-Status: <proxy>; error=destination_unavailable; details="upstream_refresh_unavailable"` + `Retry-After` |
//! | our client refused (U8) | `500` + `Proxy-Status: <proxy>; error=proxy_configuration_error` |
//! | provider unreachable / slow (U9) | `502` `error=connection_refused` / `504` `error=http_response_timeout` |
//!
//! # Connect
//!
//! A re-authorization failure (U4) links to the flow where the user connects the provider
//! again, with this section's URL as the link relation
//! ([`CONNECT_RELATION`](crate::emit::CONNECT_RELATION), an extension relation type, RFC 8288
//! §2.1.2):
//!
//! ```text
//! Link: <https://gw.example/connect/github>; rel="https://docs.rs/tower-bearer/latest/tower_bearer/upstream/#connect"
//! ```
//!
//! A script asks that URL with `POST` and its own bearer token for the provider's authorization
//! URL (JSON) and navigates there; the user signs in and consents at the provider, comes back,
//! and the request can be retried ([`connect`], and its `routes` with the `axum` feature). A
//! browser navigation meeting U4 is sent to the provider directly. Only this service sends the
//! relation: responses passed on from a provider lose any `Link` carrying it.

pub mod body;
pub mod classify;
pub mod connect;
mod error;
pub mod grant;
pub mod refresh;
pub mod store;

use http::{HeaderMap, HeaderName, header};

pub use self::error::{NotReplayable, ReauthReason, UpstreamError};

/// Removes hop-by-hop fields (RFC 9110 §7.6.1): those a `Connection` field names, and the
/// usual ones. [`RefreshAndRetry`](refresh::RefreshAndRetry) does this to the provider's responses; a proxy does it to the
/// caller's request before sending it on.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const HOP_BY_HOP: [HeaderName; 8] = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    // Most responses have none: one pass over the names, no hashing.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
