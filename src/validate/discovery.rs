//! OpenID Connect Discovery / RFC 8414: from an issuer URL to its metadata (`jwks_uri`,
//! `introspection_endpoint`), checking that the document speaks for that issuer.
//!
//! [`JwksValidator::discover`](super::JwksValidator::discover) uses this lazily, at its first
//! fetch; [`discover`] is the same step for applications that want the metadata themselves.

use http::Uri;
use serde::Deserialize;

use crate::http_client::{FetchError, HttpClient};

/// The parts of an authorization server's metadata the key sources use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// The issuer identifier; equal to the configured one (checked).
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_uri: String,
    /// The RFC 7662 introspection endpoint, when the server has one.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// The token endpoint, when the server has one.
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

/// The discovery document URL of `issuer`: `{issuer}/.well-known/openid-configuration`, the
/// issuer's trailing slash removed first (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> Result<Uri, FetchError> {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}/.well-known/openid-configuration")
        .parse::<Uri>()
        .ok()
        .filter(|uri| uri.scheme().is_some() && uri.authority().is_some())
        .ok_or(FetchError::InvalidUrl { what: "the issuer" })
}

/// Fetches and checks `issuer`'s discovery document: its `issuer` must equal `issuer` exactly
/// (§4.3; a document for another issuer is refused), and `jwks_uri` must be an absolute URL.
///
/// ```no_run
/// # async fn run(client: tower_bearer::http_client::HttpClient) -> Result<(), tower_bearer::http_client::FetchError> {
/// let metadata = tower_bearer::validate::discover(&client, "https://login.example.com").await?;
/// println!("keys at {}", metadata.jwks_uri);
/// # Ok(()) }
/// ```
pub async fn discover(client: &HttpClient, issuer: &str) -> Result<ProviderMetadata, FetchError> {
    let uri = discovery_url(issuer)?;
    let (metadata, _headers): (ProviderMetadata, _) =
        client.get_json(&uri, "discovery document").await?;
    if metadata.issuer != issuer {
        return Err(FetchError::IssuerMismatch {
            uri,
            expected: issuer.into(),
            found: metadata.issuer.into(),
        });
    }
    absolute(&metadata.jwks_uri, "jwks_uri")?;
    Ok(metadata)
}

/// Parses an absolute URL.
pub(crate) fn absolute(url: &str, what: &'static str) -> Result<Uri, FetchError> {
    url.parse::<Uri>()
        .ok()
        .filter(|uri| uri.scheme().is_some() && uri.authority().is_some())
        .ok_or(FetchError::InvalidUrl { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_url() {
        assert_eq!(
            discovery_url("https://id.example/tenant/").unwrap(),
            "https://id.example/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/.well-known/openid-configuration"
        );
        assert!(discovery_url("not a url").is_err());
        assert!(discovery_url("/relative").is_err());
    }
}
