//! Grants at a provider's token endpoint (RFC 6749), over one OAuth client.
//!
//! [`OAuthClient`] is the OAuth client the crate speaks to a provider as: every call to its
//! token, revocation and introspection endpoints authenticates, encodes, is bounded in time and
//! size, and is classified the same way. On it: the refresh grant ([`RefreshGrant`], the
//! standard [`Refresher`]), the authorization-code exchange ([`OAuthClient::exchange_code`],
//! used by the connect flow) and revocation ([`OAuthClient::revoke`], RFC 7009).
//!
//! [`RefreshGrant`] posts `grant_type=refresh_token` to a provider's token endpoint through an
//! [`HttpClient`](crate::http_client::HttpClient) — which wraps any tower service `Service<http::Request<Full<Bytes>>>`
//! (hyper-util's client, reqwest's tower service, a test double, …) — authenticating as the OAuth client with `client_secret_basic`,
//! `client_secret_post` or as a public client, optionally asking for a `scope` and RFC 8707
//! `resource`s.
//!
//! Its answers are classified per RFC 6749 §5.2 *keeping the HTTP status* ([`GrantError`]), so
//! that a revoked grant (`invalid_grant`: the user must re-authorize) is never confused with a
//! broken client configuration (`invalid_client`, `unauthorized_client`) or an outage (5xx,
//! timeout, network error, an answer that is not a token response).
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::service_fn;
//! use tower_bearer::{
//!     http_client::HttpClient,
//!     upstream::{grant::{RefreshGrant, Refresher}, store::TokenSecret},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A token endpoint that rotates the refresh token.
//! let token_endpoint = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
//!         br#"{"access_token":"at-2","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}"#,
//!     ))))
//! });
//! let grant = RefreshGrant::new(
//!     HttpClient::new(token_endpoint),
//!     "https://provider.example/oauth/token".parse().unwrap(),
//!     "my-client",
//! )
//! .client_secret_basic("s3cret");
//!
//! let answer = grant.refresh(&TokenSecret::new("rt-1")).await.unwrap();
//! assert_eq!(answer.access_token().expose_secret(), "at-2");
//! assert_eq!(answer.refresh_token().unwrap().expose_secret(), "rt-2");
//! # }
//! ```

mod answer;
mod client;
mod refresh;

use std::time::Duration;

pub use self::{
    answer::{GrantError, TokenResponse},
    client::{ClientAuth, CodeExchange, Form, OAuthClient, TokenTypeHint},
    refresh::{RefreshGrant, Refresher, RefresherFn, refresher_fn},
};

/// The default limit on an endpoint's answer.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// The default time an endpoint has to answer: as long as
/// [`RefreshAndRetry`](super::refresh::RefreshAndRetry) waits for an answer with its default
/// refresh timeout, so that a late answer is not thrown away (see [`RefreshGrant::timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
