//! Shared helpers for the integration tests: a real OpenID provider (`oidc`) and a tiny HTTP
//! client/server kit (`http`). Include with `mod support;` from a file in `tests/`.
//!
//! The provider needs node (>= 20) and the pinned packages: `npm ci --prefix tests/oidc`.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod http;
pub mod oidc;

pub use oidc::{
    Alg, CLIENT_ID, CLIENT_SECRET, OidcConfig, OidcProvider, REDIRECT_URI, RESOURCE_ES256,
    RESOURCE_OPAQUE, RESOURCE_RS256, Resource, Tokens,
};
