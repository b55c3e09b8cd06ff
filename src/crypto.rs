//! Selecting jsonwebtoken's crypto backend from this crate's features.

/// With both backends compiled in (features are additive, e.g. `--all-features`), jsonwebtoken
/// cannot choose and would panic at the first verification; install aws-lc-rs unless the
/// application already installed a provider of its own.
#[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
pub(crate) fn ensure_provider() {
    let _already_installed = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

/// With exactly one backend, jsonwebtoken selects it by itself.
#[cfg(not(all(feature = "aws-lc-rs", feature = "rust-crypto")))]
pub(crate) fn ensure_provider() {}
