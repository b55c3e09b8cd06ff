//! What a token must satisfy whichever key verifies it ([`ClaimsPolicy`]), and the
//! jsonwebtoken `Validation` built from it.

use jsonwebtoken::{Algorithm, Validation};

use super::registered::Checks;
use crate::failure::TokenRejection;

/// A policy value that no token can satisfy: refused when a validator is built, instead of
/// refusing every token later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `audience("")`: no issuer puts an empty `aud` in a token.
    #[error(
        "the audience is empty (\"\"): configure the identifier your issuer puts in the tokens' `aud` (often the API's URL)"
    )]
    EmptyAudience,
    /// `issuer("")`: no issuer is named by the empty string.
    #[error(
        "the issuer is empty (\"\"): configure the issuer's URL exactly as it appears in the tokens' `iss`"
    )]
    EmptyIssuer,
}

/// What a token's claims and header must satisfy, whichever key verifies it.
#[derive(Debug, Clone)]
pub struct ClaimsPolicy {
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
    token_type: Option<String>,
    required: Vec<String>,
}

impl Default for ClaimsPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimsPolicy {
    /// `exp` required and checked with 30 s of leeway, `nbf` checked when present; no issuer,
    /// audience or type constraint until configured.
    pub fn new() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: 30,
            token_type: None,
            required: vec!["exp".to_owned()],
        }
    }

    /// Accepts tokens from this issuer (`iss`, compared exactly); may be called several times.
    /// Once set, `iss` is required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens for this audience (`aud` as a string or array); may be called several
    /// times. Once set, `aud` is required. Without any, a token carrying `aud` is still refused,
    /// as RFC 7519 §4.1.3 demands.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock-skew allowance for `exp` and `nbf`, in seconds.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Requires the header `typ`, compared case-insensitively with an optional `application/`
    /// prefix (RFC 9068 access tokens: `at+jwt`).
    pub fn token_type(mut self, typ: impl Into<String>) -> Self {
        self.token_type = Some(typ.into());
        self
    }

    /// Requires a registered claim (`exp`, `nbf`, `sub`, `iss` or `aud`) to be present. Other
    /// claims are required by making them non-optional fields of the claims type.
    pub fn require(mut self, claim: impl Into<String>) -> Self {
        self.required.push(claim.into());
        self
    }

    /// The accepted issuers.
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The jsonwebtoken `Validation` for a key with these algorithms, for calling
    /// `jsonwebtoken::decode` directly. The crate's validators do not use it: they check the
    /// same claims the same way, except that they read a fractional `exp` or `nbf` exactly where
    /// jsonwebtoken rounds it to the nearest second.
    pub fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut validation =
            Validation::new(algorithms.first().copied().unwrap_or(Algorithm::RS256));
        validation.algorithms = algorithms.to_vec();
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let mut required = self.required.clone();
        if !self.issuers.is_empty() {
            validation.set_issuer(&self.issuers);
            required.push("iss".to_owned());
        }
        if !self.audiences.is_empty() {
            validation.set_audience(&self.audiences);
            required.push("aud".to_owned());
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Refuses values no token can satisfy (an empty audience or issuer).
    pub(super) fn check(&self) -> Result<(), PolicyError> {
        let empty = |values: &[String]| values.iter().any(|v| v.trim().is_empty());
        if empty(&self.audiences) {
            return Err(PolicyError::EmptyAudience);
        }
        if empty(&self.issuers) {
            return Err(PolicyError::EmptyIssuer);
        }
        Ok(())
    }

    /// The checks of the registered claims, as [`validation`](Self::validation) would make them
    /// (with `exp` and `nbf` read exactly, fractions included).
    pub(super) fn checks(&self) -> Checks {
        let required = |claim: &str| self.required.iter().any(|r| r == claim);
        Checks {
            leeway: self.leeway,
            issuers: (!self.issuers.is_empty()).then(|| self.issuers.clone()),
            audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            require_exp: required("exp"),
            require_nbf: required("nbf"),
            require_sub: required("sub"),
            require_iss: required("iss") || !self.issuers.is_empty(),
            require_aud: required("aud") || !self.audiences.is_empty(),
        }
    }

    pub(super) fn check_type(&self, typ: Option<&str>) -> Result<(), TokenRejection> {
        let Some(required) = &self.token_type else {
            return Ok(());
        };
        let strip = |t: &str| -> String {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(t)
        };
        match typ {
            Some(typ) if strip(typ) == strip(required) => Ok(()),
            _ => Err(TokenRejection::WrongType),
        }
    }
}
