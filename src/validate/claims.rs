//! Claims: the types this crate deserializes tokens into ([`StandardClaims`], [`OneOrMany`]), and
//! the traits through which the layers read any claims type — what authorization rules need
//! ([`AuthClaims`]) and when the token expires, for the verified-token cache ([`TokenExpiry`]).
//! A claims type of the application's own implements the two traits to work with every layer.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::registered::NumericDate;

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
    /// `exp` as any JSON number (RFC 7519 §2); a fractional one is floored, so that a cache
    /// entry never outlives it.
    fn expires_at(&self) -> Option<u64> {
        let exp = self.get("exp")?;
        exp.as_u64().or_else(|| {
            exp.as_f64()
                .and_then(NumericDate::from_f64)
                .map(NumericDate::floor)
        })
    }
}

impl<T: TokenExpiry> TokenExpiry for Arc<T> {
    fn expires_at(&self) -> Option<u64> {
        T::expires_at(self)
    }
}

/// The registered and commonly used access-token claims (RFC 7519, RFC 9068, RFC 8693).
///
/// The dates are whole seconds since the epoch. A token may carry any JSON number there
/// (RFC 7519 §2, e.g. `1795790700.5` or `1.7957907E9`); a fraction is rounded toward the safe
/// side: `exp`, `iat` and `auth_time` down (an expiry never later, a login never more recent),
/// `nbf` up. The validators check `exp` and `nbf` on the exact values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardClaims {
    /// Issuer.
    pub iss: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Audience.
    pub aud: Option<OneOrMany>,
    /// Expiry, seconds since the epoch.
    #[serde(default, deserialize_with = "numeric_date::floor")]
    pub exp: Option<u64>,
    /// Not before, seconds since the epoch.
    #[serde(default, deserialize_with = "numeric_date::ceil")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, deserialize_with = "numeric_date::floor")]
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
    #[serde(default, deserialize_with = "numeric_date::floor")]
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

/// Lenient readers of NumericDates into whole seconds, for [`StandardClaims`].
mod numeric_date {
    use std::fmt;

    use serde::de::{self, Visitor};

    use super::{Deserializer, NumericDate};

    struct DateVisitor(fn(NumericDate) -> u64);

    impl<'de> Visitor<'de> for DateVisitor {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a NumericDate (a non-negative JSON number)")
        }

        fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            NumericDate::from_f64(value)
                .map(|date| Some((self.0)(date)))
                .ok_or_else(|| E::invalid_value(de::Unexpected::Float(value), &self))
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    pub(super) fn floor<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        deserializer.deserialize_option(DateVisitor(NumericDate::floor))
    }

    pub(super) fn ceil<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        deserializer.deserialize_option(DateVisitor(NumericDate::ceil))
    }
}
