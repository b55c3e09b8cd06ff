//! Tower middleware for services that authenticate their callers with bearer tokens and call
//! third-party APIs on their behalf with the callers' upstream OAuth2 tokens.
//!
//! (Crate docs are filled in as the layers land.)

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-bearer needs a crypto backend for jsonwebtoken: enable one of the features \
     `aws-lc-rs` (the default) or `rust-crypto` (with both, aws-lc-rs is used)"
);

pub mod authorize;
pub mod body;
pub mod challenge;
mod crypto;
pub mod emit;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod failure;
pub mod metadata;
pub mod problem;
pub mod token;
pub mod upstream;
pub mod validate;
