//! Claims: the types this crate deserializes tokens into ([`StandardClaims`], [`OneOrMany`]), and
//! the traits through which the layers read any claims type — what authorization rules need
//! ([`AuthClaims`]) and when the token expires, for the verified-token cache ([`TokenExpiry`]).
//! A claims type of the application's own implements the two traits to work with every layer.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What authorization rules read from validated claims. Every method has a default, so a claims
/// type implements only what it carries.
pub trait AuthClaims {
    /// Whether the token grants `scope`.
    fn has_scope(&self, _scope: &str) -> bool {
        false
    }

    /// The authentication context class (`acr`).
    fn acr(&self) -> Option<&str> {
        None
    }

    /// When the user authenticated (`auth_time`), seconds since the epoch.
    fn auth_time(&self) -> Option<u64> {
        None
    }
}

/// Claims that tell when the token expires, so a cache entry never outlives it.
pub trait TokenExpiry {
    /// The token's `exp`, seconds since the Unix epoch; `None` if it has none.
    fn expires_at(&self) -> Option<u64>;
}

impl TokenExpiry for StandardClaims {
    fn expires_at(&self) -> Option<u64> {
        self.exp
    }
}

impl TokenExpiry for serde_json::Value {
    fn expires_at(&self) -> Option<u64> {
        self.get("exp").and_then(serde_json::Value::as_u64)
    }
}

impl<T: TokenExpiry> TokenExpiry for Arc<T> {
    fn expires_at(&self) -> Option<u64> {
        T::expires_at(self)
    }
}

/// The registered and commonly used access-token claims (RFC 7519, RFC 9068, RFC 8693).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardClaims {
    /// Issuer.
    pub iss: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Audience.
    pub aud: Option<OneOrMany>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<u64>,
    /// Not before, seconds since the epoch.
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    pub iat: Option<u64>,
    /// Token identifier.
    pub jti: Option<String>,
    /// The client the token was issued to.
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 8693 §4.2).
    pub scope: Option<String>,
    /// Scopes as an array or a space-separated string (Azure AD, Okta).
    pub scp: Option<OneOrMany>,
    /// Authentication context class reference.
    pub acr: Option<String>,
    /// Authentication methods.
    pub amr: Option<Vec<String>>,
    /// When the user authenticated, seconds since the epoch.
    pub auth_time: Option<u64>,
}

/// A claim that may be a string or an array of strings (`aud`, `scp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// An array of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// Whether `value` is one of the strings (for `scp`, one of the space-separated words).
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Self::One(one) => one.split(' ').any(|word| word == value),
            Self::Many(many) => many.iter().any(|v| v == value),
        }
    }
}

impl AuthClaims for StandardClaims {
    fn has_scope(&self, scope: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|word| word == scope))
            || self.scp.as_ref().is_some_and(|scp| scp.contains(scope))
    }

    fn acr(&self) -> Option<&str> {
        self.acr.as_deref()
    }

    fn auth_time(&self) -> Option<u64> {
        self.auth_time
    }
}
