//! JWT validation against keys known in advance (RFC 7519, RFC 8725, RFC 9068): the
//! [`JwtValidator`] and its builder.

use std::{fmt, marker::PhantomData, sync::Arc};

use serde::de::DeserializeOwned;

use super::{
    ClaimsPolicy, KeyError, KeySet, StandardClaims, ValidateToken, Verdict, VerificationKey,
};
use crate::{
    failure::{AuthError, TokenRejection},
    token::BearerToken,
};

/// Validates JWTs against static keys, yielding claims of type `C`.
///
/// Verification runs inline: every verdict is [`Verdict::Decided`].
pub struct JwtValidator<C = StandardClaims> {
    keys: Arc<KeySet>,
    claims: PhantomData<fn() -> C>,
}

impl<C> Clone for JwtValidator<C> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.clone(),
            claims: PhantomData,
        }
    }
}

impl<C> fmt::Debug for JwtValidator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("keys", &self.keys)
            .finish()
    }
}

impl<C> JwtValidator<C> {
    /// Starts configuring a validator.
    pub fn builder() -> JwtValidatorBuilder<C> {
        JwtValidatorBuilder {
            keys: Vec::new(),
            policy: ClaimsPolicy::new(),
            claims: PhantomData,
        }
    }
}

impl<C: DeserializeOwned> JwtValidator<C> {
    /// Verifies a token outside any layer.
    pub fn verify(&self, token: &str) -> Result<C, TokenRejection> {
        self.keys.verify(token)
    }
}

impl<C> ValidateToken for JwtValidator<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Claims = C;
    /// Never constructed (and zero-sized): static keys decide at once.
    type Future = std::future::Pending<Result<Arc<C>, AuthError>>;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<C>, Self::Future> {
        Verdict::Decided(
            self.verify(token.as_str())
                .map(Arc::new)
                .map_err(AuthError::InvalidToken),
        )
    }
}

/// Configures a [`JwtValidator`].
pub struct JwtValidatorBuilder<C> {
    keys: Vec<VerificationKey>,
    policy: ClaimsPolicy,
    claims: PhantomData<fn() -> C>,
}

impl<C> JwtValidatorBuilder<C> {
    /// Adds a key. With several keys, give each a `kid`.
    pub fn key(mut self, key: VerificationKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Sets the claims policy.
    pub fn policy(mut self, policy: ClaimsPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Accepts tokens for this audience: [`ClaimsPolicy::audience`] on the policy.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.policy = self.policy.audience(audience);
        self
    }

    /// Builds the validator; an empty audience or issuer is refused.
    pub fn build(self) -> Result<JwtValidator<C>, KeyError> {
        if self.keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        self.policy.check()?;
        Ok(JwtValidator {
            keys: Arc::new(KeySet::new(self.keys, self.policy)),
            claims: PhantomData,
        })
    }
}
