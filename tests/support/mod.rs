//! The integration tests' kit. Each test crate includes it with `mod support;` and uses the
//! submodules it needs:
//!
//! - `http`: the one HTTP client type (`TestClient`), `serve` for an axum app, the collected
//!   response (`Reply`), a request builder (`Req`), forms, and a cookie-keeping `Browser`;
//! - `keys`: the fixed test keys (`tests/keys/`) and the validator that knows them;
//! - `tokens`: claims and token minting, well-formed or broken on purpose;
//! - `routes`: the inbound test application (routes with scope, step-up and hidden rules);
//! - `logs`: an in-memory writer for `tracing` subscribers (`Capture`);
//! - `oidc`: a real OpenID provider (node's `oidc-provider`) for key sources and flows;
//! - `redis`: a real Redis server (Debian's `redis-server`) on a free loopback port;
//! - `temp`: fresh temporary directories, removed when dropped (`TempDir`);
//! - `upstream`: doubles of a third-party provider's API and token endpoint, and a gateway over
//!   the outbound layers (`World`).
//!
//! The OpenID provider needs node (>= 20) and the pinned packages: `npm ci --prefix tests/oidc`.

// Each test crate uses a different subset of the kit.
#![allow(dead_code)]

pub mod http;
pub mod keys;
pub mod logs;
pub mod oidc;
pub mod redis;
pub mod routes;
pub mod temp;
pub mod tokens;
pub mod upstream;
