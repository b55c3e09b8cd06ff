//! The proxy as a library: `main.rs` runs it, the tests (`tests/proxy_*.rs`) include this file
//! to drive the very same proxy.
//!
//! ```text
//! caller ─► request id ─► ValidateBearer ─► Authorize ─► forward ─► RefreshAndRetry ─► ClassifyUpstream ─► provider
//!                              │ (the caller's JWT)        │          │ (the user's upstream token)
//!                              └ connect flow ─────────────┴──────────┴► TokenStore ◄── callback
//! ```

pub mod config;
pub mod demo;
mod forward;
pub mod http_client;
mod metrics;
mod providers;
mod random;
mod reply;
mod request_id;
mod router;
pub mod serve;
pub mod store;

// Each test binary that includes this file uses a part (the demo's build through `build_with`).
#[allow(unused_imports)]
pub use router::{Proxy, build, build_with};
