//! The problem types (RFC 9457) this crate's failure responses carry.
//!
//! Each failure kind has a stable `type` URI: by default this page with the kind's anchor
//! (`https://docs.rs/tower-bearer/latest/tower_bearer/problem/#invalid-token`); change the prefix
//! with [`Emitter::problem_base`](crate::emit::Emitter::problem_base). Nothing distinguishes the
//! two sides *only* by the body: every kind is also recognisable from its status and headers.
//!
//! # The caller's own credentials
//!
//! ## missing-credentials
//!
//! Status 401. The request carried no bearer token. Obtain one and send it in `Authorization: Bearer`.
//!
//! ## invalid-request
//!
//! Status 400. The token was sent twice, by two methods, or empty. Send exactly one token, once.
//!
//! ## invalid-token
//!
//! Status 401. The token is unreadable, expired, not yet valid, wrongly signed or not meant for this
//! resource. Refresh it or obtain a new one.
//!
//! ## insufficient-scope
//!
//! Status 403. The token is valid but lacks scopes; the member `scope` (and the challenge) lists all the
//! scopes required. Obtain a token with them.
//!
//! ## insufficient-user-authentication
//!
//! Status 401. The login behind the token is too weak or too old (RFC 9470); the challenge's
//! `acr_values` / `max_age` say what to ask the authorization server for.
//!
//! ## validation-unavailable
//!
//! Status 503. This service cannot check tokens right now (its keys or introspection endpoint are
//! unreachable). Not the caller's fault: retry after `Retry-After` seconds with the same token.
//!
//! A resource hidden from the caller (row I7 of the contract) answers `about:blank` with 404.
//!
//! # The user's link to a third-party provider
//!
//! These carry `Proxy-Status` (RFC 9209) — naming the provider as `next-hop` when the user must
//! act at the provider — and never a Bearer `error`: the caller's own token was fine. The body's
//! `provider` member names the provider for every kind.
//!
//! ## upstream-reauth-required
//!
//! Status 403. The user's authorization at the provider is gone (revoked, expired refresh token, or
//! rejected even when fresh). Send the user through the connect flow in `Link` to re-link.
//!
//! ## upstream-insufficient-scope
//!
//! Status 403. The provider requires scopes the user's link does not grant; re-link asking for them.
//!
//! ## upstream-refresh-unavailable
//!
//! Status 503. The provider's token endpoint is unavailable; the link is intact. Retry later.
//!
//! ## upstream-misconfigured
//!
//! Status 500. This service's own client configuration at the provider is wrong. Nothing the caller
//! can do.
//!
//! ## upstream-unreachable
//!
//! Status 502. The provider could not be reached.
//!
//! ## upstream-connection-terminated
//!
//! Status 502. The provider closed the connection before it answered.
//!
//! ## upstream-timeout
//!
//! Status 504. The provider did not answer in time.
//!
//! ## upstream-retry-not-possible
//!
//! Status 503. The provider rejected the token and it was refreshed, but the request could not be
//! sent again (its body was streamed or too large to keep). Send the request again.
//!
//! ## request-body-unreadable
//!
//! Status 400. The caller's request body failed while it was being read for a possible retry.
//!
//! ## link-store-unavailable
//!
//! Status 503. The store of users' upstream links is unreachable; nothing was changed. Retry later.
