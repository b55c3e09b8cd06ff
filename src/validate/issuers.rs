//! Several issuers at once (multi-tenant): each token goes to the validator of its `iss`.

use std::{collections::HashMap, fmt, sync::Arc};

use super::{ValidateToken, Verdict, peek};
use crate::{
    failure::{AuthError, TokenRejection},
    token::BearerToken,
};

/// Routes each token to the validator registered for its `iss`.
///
/// The `iss` is read from the *unverified* payload only to choose the validator; that validator
/// then verifies the signature with its own keys and checks the verified `iss` against its own
/// policy (which [`JwksValidator`](super::JwksValidator) insists on), so a token cannot borrow
/// another tenant's keys by lying about its issuer. A token naming no configured issuer is
/// refused as `invalid_token` (row I4) without any fetch.
///
/// ```no_run
/// use tower_bearer::validate::{ClaimsPolicy, Issuers, JwksValidator, StandardClaims};
///
/// let mut issuers = Issuers::new();
/// for tenant in ["https://login.example.com/a", "https://login.example.com/b"] {
///     // Lazy: a tenant whose issuer is down answers 503 until it is back.
///     let validator = JwksValidator::<StandardClaims>::discover(tenant)
///         .policy(ClaimsPolicy::new().audience("https://api.example.com"))
///         .build_lazy()
///         .unwrap();
///     issuers = issuers.issuer(tenant, validator);
/// }
/// # let _ = issuers;
/// ```
pub struct Issuers<V> {
    by_issuer: Arc<HashMap<String, V>>,
}

impl<V> Clone for Issuers<V> {
    fn clone(&self) -> Self {
        Self {
            by_issuer: self.by_issuer.clone(),
        }
    }
}

impl<V> Default for Issuers<V> {
    fn default() -> Self {
        Self {
            by_issuer: Arc::new(HashMap::new()),
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for Issuers<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.by_issuer.iter()).finish()
    }
}

impl<V> Issuers<V> {
    /// No issuers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `validator` for tokens whose `iss` equals `issuer` exactly. The validator must
    /// itself check the verified `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>, validator: V) -> Self
    where
        V: Clone,
    {
        Arc::make_mut(&mut self.by_issuer).insert(issuer.into(), validator);
        self
    }

    /// The validator for `issuer`.
    pub fn get(&self, issuer: &str) -> Option<&V> {
        self.by_issuer.get(issuer)
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.by_issuer.keys().map(String::as_str)
    }
}

impl<V: ValidateToken> ValidateToken for Issuers<V> {
    type Claims = V::Claims;
    type Future = V::Future;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<Self::Claims>, Self::Future> {
        let chosen = match peek::issuer(token.as_str()) {
            Ok(Some(iss)) => self.by_issuer.get(&iss).ok_or(TokenRejection::WrongIssuer),
            Ok(None) => Err(TokenRejection::MissingClaim),
            Err(rejection) => Err(rejection),
        };
        match chosen {
            Ok(validator) => validator.validate(token),
            Err(rejection) => Verdict::Decided(Err(AuthError::InvalidToken(rejection))),
        }
    }
}
