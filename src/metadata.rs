//! Protected resource metadata (RFC 9728): the document that tells clients which authorization
//! servers issue tokens for this resource and how to present them.
//!
//! Serve it at [`ProtectedResourceMetadata::well_known_path`] and point challenges at it with
//! [`Emitter::resource_metadata`](crate::emit::Emitter::resource_metadata).
//!
//! ```
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_bearer::metadata::ProtectedResourceMetadata;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let metadata = ProtectedResourceMetadata::new("https://api.example.com/v1")
//!     .authorization_server("https://login.example.com")
//!     .scopes(["reports:read", "reports:write"]);
//! assert_eq!(metadata.well_known_path(), "/.well-known/oauth-protected-resource/v1");
//!
//! let response = metadata.service().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(json["authorization_servers"][0], "https://login.example.com");
//! assert_eq!(json["bearer_methods_supported"][0], "header");
//! # }
//! ```

use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use tower_service::Service;

/// The well-known URI suffix of RFC 9728 §3.
pub const WELL_KNOWN_SUFFIX: &str = "/.well-known/oauth-protected-resource";

/// An RFC 9728 §2 protected resource metadata document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// The resource identifier: an `https` URL without a fragment.
    pub resource: String,
    /// Issuers of tokens this resource accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Scopes used in authorization requests for this resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How tokens may be presented: `header`, `body`, `query`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// Documentation for developers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
}

impl ProtectedResourceMetadata {
    /// A document for `resource`, accepting tokens in the `Authorization` header.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: None,
            resource_documentation: None,
        }
    }

    /// Adds an authorization server (its issuer identifier).
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// Lists supported scopes.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes_supported
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Also advertises the query method (match [`BearerExtractor::allow_query`](crate::token::BearerExtractor::allow_query)).
    pub fn query_method(mut self) -> Self {
        self.bearer_methods_supported.push("query".to_owned());
        self
    }

    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets the documentation URL.
    pub fn documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The path to serve the document at: the well-known suffix inserted before the resource's
    /// path (RFC 9728 §3.1), so `https://api.example.com/v1` → `/.well-known/oauth-protected-resource/v1`.
    pub fn well_known_path(&self) -> String {
        let after_scheme = self
            .resource
            .split_once("://")
            .map_or(self.resource.as_str(), |(_, rest)| rest);
        let path = after_scheme
            .find('/')
            .map_or("", |start| after_scheme[start..].trim_end_matches('/'));
        let path = path.split(['?', '#']).next().unwrap_or_default();
        format!("{WELL_KNOWN_SUFFIX}{path}")
    }

    /// The document's absolute URL, for `resource_metadata` in challenges.
    pub fn url(&self) -> String {
        let (scheme, rest) = self
            .resource
            .split_once("://")
            .unwrap_or(("https", self.resource.as_str()));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        format!("{scheme}://{authority}{}", self.well_known_path())
    }

    /// A service answering `GET` and `HEAD` with the document.
    pub fn service(&self) -> MetadataService {
        let json = serde_json::to_vec(self)
            .map(Bytes::from)
            .unwrap_or_default();
        MetadataService { json }
    }
}

/// Serves a [`ProtectedResourceMetadata`] document; see [`ProtectedResourceMetadata::service`].
#[derive(Debug, Clone)]
pub struct MetadataService {
    json: Bytes,
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut response = Response::new(Full::default());
        let headers = response.headers_mut();
        match *request.method() {
            Method::GET | Method::HEAD => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                );
                if request.method() == Method::GET {
                    *response.body_mut() = Full::new(self.json.clone());
                } else {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.json.len()));
                }
            }
            _ => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            }
        }
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_locations() {
        let root = ProtectedResourceMetadata::new("https://api.example.com");
        assert_eq!(
            root.well_known_path(),
            "/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            root.url(),
            "https://api.example.com/.well-known/oauth-protected-resource"
        );
        let nested = ProtectedResourceMetadata::new("https://api.example.com:8443/v1/");
        assert_eq!(
            nested.well_known_path(),
            "/.well-known/oauth-protected-resource/v1"
        );
        assert_eq!(
            nested.url(),
            "https://api.example.com:8443/.well-known/oauth-protected-resource/v1"
        );
    }
}
