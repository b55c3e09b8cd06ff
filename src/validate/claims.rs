//! The claims types this crate deserializes tokens into ([`StandardClaims`], [`OneOrMany`]) and
//! what they tell authorization rules ([`AuthClaims`]).

use serde::{Deserialize, Serialize};

use crate::authorize::AuthClaims;

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
