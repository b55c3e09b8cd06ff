//! A token endpoint's answers (RFC 6749 §5.1, §5.2), classified keeping the HTTP status.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::StatusCode;
use serde::Deserialize as _;

use crate::upstream::store::{Link, TokenSecret};

/// Classifies a token endpoint's answer (RFC 6749 §5.1, §5.2).
pub(super) fn classify_answer(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<TokenResponse, GrantError> {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(GrantError::Unavailable {
            status,
            retry_after,
        });
    }
    // RFC 6749 §5.2 errors come with a 4xx; a 1xx, 3xx or 6xx–9xx answer is no OAuth answer at
    // all — never a reason to drop the user's grant, whatever its body says.
    if !status.is_success() && !status.is_client_error() {
        return Err(GrantError::Unparseable { status });
    }
    if status.is_success() {
        return match serde_json::from_slice::<Answer>(body) {
            Ok(answer) => answer.into_response(status),
            Err(_) => Err(rotated_anyway(body, GrantError::Unparseable { status })),
        };
    }
    match error_code(body).as_deref() {
        Some("invalid_grant") => Err(GrantError::InvalidGrant { status }),
        Some(
            code @ ("invalid_client"
            | "unauthorized_client"
            | "invalid_request"
            | "unsupported_grant_type"
            | "invalid_scope"
            | "invalid_target"),
        ) => Err(GrantError::Misconfigured {
            status,
            error: code.to_owned(),
        }),
        // No parseable error code: only a failed client authentication is recognisable by
        // its status alone (RFC 6749 §5.2 allows 401 for `invalid_client`).
        None if status == StatusCode::UNAUTHORIZED => Err(GrantError::Misconfigured {
            status,
            error: "invalid_client".to_owned(),
        }),
        // `temporarily_unavailable`, `server_error`, unknown codes and unreadable answers: nothing
        // says the grant is gone, so keep it and try again later.
        Some(_) => Err(GrantError::Unavailable {
            status,
            retry_after,
        }),
        None => Err(GrantError::Unparseable { status }),
    }
}

/// `error`, for a `2xx` answer that cannot be used — unless it carries a new refresh token,
/// which must not be lost.
fn rotated_anyway(body: &[u8], error: GrantError) -> GrantError {
    #[derive(serde::Deserialize)]
    struct Rotation {
        refresh_token: String,
    }
    match serde_json::from_slice::<Rotation>(body) {
        Ok(Rotation { refresh_token }) if !refresh_token.is_empty() => {
            GrantError::RefreshTokenRotated {
                error: Box::new(error),
                refresh_token: TokenSecret::new(refresh_token),
            }
        }
        _ => error,
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl Answer {
    fn into_response(self, status: StatusCode) -> Result<TokenResponse, GrantError> {
        let refresh_token = self
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(TokenSecret::new);
        let unusable = if self.access_token.is_empty() {
            Some(GrantError::Unparseable { status })
        } else {
            // Only bearer tokens can be attached as `Authorization: Bearer` (RFC 6750);
            // DPoP-bound tokens need a proof this crate does not make yet.
            self.token_type
                .filter(|token_type| !token_type.eq_ignore_ascii_case("bearer"))
                .map(|_| GrantError::Misconfigured {
                    status,
                    error: "unsupported_token_type".to_owned(),
                })
        };
        match (unusable, refresh_token) {
            (None, refresh_token) => Ok(TokenResponse {
                access_token: TokenSecret::new(self.access_token),
                expires_in: self.expires_in.map(Duration::from_secs),
                refresh_token,
                scope: self.scope,
            }),
            (Some(error), Some(refresh_token)) => Err(GrantError::RefreshTokenRotated {
                error: Box::new(error),
                refresh_token,
            }),
            (Some(error), None) => Err(error),
        }
    }
}

/// `expires_in` as a number, or (as some providers send it) a numeric string.
fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Seconds>::deserialize(d)? {
        Some(Seconds::Number(n)) => Some(n),
        Some(Seconds::Float(f)) if f.is_finite() && f >= 0.0 => Some(f as u64),
        Some(Seconds::Text(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// The RFC 6749 §5.2 `error` code of an error answer, if it has one.
pub(super) fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorAnswer>(body)
        .ok()
        .map(|answer| answer.error)
}

/// A successful token endpoint answer (RFC 6749 §5.1). Its `Debug` output redacts the tokens.
#[derive(Clone, Debug)]
pub struct TokenResponse {
    access_token: TokenSecret,
    expires_in: Option<Duration>,
    refresh_token: Option<TokenSecret>,
    scope: Option<String>,
}

impl TokenResponse {
    /// A response carrying `access_token` and nothing else.
    pub fn new(access_token: impl Into<TokenSecret>) -> Self {
        Self {
            access_token: access_token.into(),
            expires_in: None,
            refresh_token: None,
            scope: None,
        }
    }

    /// Sets the lifetime of the access token.
    pub fn with_expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }

    /// Sets a (rotated) refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<TokenSecret>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets the granted scope (space-separated).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The new access token.
    pub fn access_token(&self) -> &TokenSecret {
        &self.access_token
    }

    /// Its lifetime, if the provider said.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// A new refresh token, if the provider rotated it.
    pub fn refresh_token(&self) -> Option<&TokenSecret> {
        self.refresh_token.as_ref()
    }

    /// The granted scope, if it differs from the requested one (RFC 6749 §5.1).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The link a new grant starts with (the answer to an authorization-code exchange),
    /// issued `now`: the requested scopes unless the answer names the granted ones (RFC 6749
    /// §5.1). A lifetime too long to represent leaves the expiry unknown.
    pub fn into_link<I, S>(self, requested_scopes: I, now: SystemTime) -> Link
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut link = Link::new(self.access_token).with_issued_at(now);
        if let Some(expires_at) = self
            .expires_in
            .and_then(|lifetime| now.checked_add(lifetime))
        {
            link = link.with_expires_at(expires_at);
        }
        if let Some(refresh) = self.refresh_token {
            link = link.with_refresh_token(refresh);
        }
        match self.scope {
            Some(scope) => link.with_scopes(scope.split_ascii_whitespace()),
            None => link.with_scopes(requested_scopes),
        }
    }

    /// The link after this refresh: the new access token, issued `now`, and its expiry; the
    /// rotated refresh token, or `previous`'s when none was issued (RFC 6749 §6); the new
    /// scopes, or `previous`'s. The re-authorization mark is cleared.
    ///
    /// An `expires_in` too large to represent (the token endpoint's input is not trusted)
    /// leaves the expiry unknown, as if none had been given: never a panic, which would lose a
    /// rotated refresh token.
    pub fn apply_to(&self, previous: &Link, now: SystemTime) -> Link {
        let mut next = Link::new(self.access_token.clone())
            .with_issued_at(now)
            .versioned_as(previous);
        if let Some(expires_at) = self
            .expires_in
            .and_then(|lifetime| now.checked_add(lifetime))
        {
            next = next.with_expires_at(expires_at);
        }
        if let Some(refresh) = self.refresh_token.as_ref().or(previous.refresh_token()) {
            next = next.with_refresh_token(refresh.clone());
        }
        match &self.scope {
            Some(scope) => next.with_scopes(scope.split_ascii_whitespace()),
            None => next.with_scopes(previous.scopes().iter().cloned()),
        }
    }
}

/// Why a refresh failed, keeping the token endpoint's HTTP status.
///
/// Never shows a token (a rotated refresh token it carries is redacted); error codes are the
/// provider's RFC 6749 §5.2 codes.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// `invalid_grant`: the refresh token is expired, revoked or was replayed. The user has to
    /// authorize again.
    #[error("the token endpoint refused the refresh token (HTTP {status}, invalid_grant)")]
    InvalidGrant {
        /// The token endpoint's status.
        status: StatusCode,
    },
    /// The token endpoint refused our client or request (`invalid_client`,
    /// `unauthorized_client`, `invalid_request`, `invalid_scope`, …): our configuration is wrong.
    #[error("the token endpoint refused the client configuration (HTTP {status}, {error})")]
    Misconfigured {
        /// The token endpoint's status.
        status: StatusCode,
        /// The RFC 6749 §5.2 error code.
        error: String,
    },
    /// A 5xx or 429 answer, or an error code that does not say the grant is gone.
    #[error("the token endpoint is unavailable (HTTP {status})")]
    Unavailable {
        /// The token endpoint's status.
        status: StatusCode,
        /// The token endpoint's `Retry-After`, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// An answer that is not a token response (or an RFC 6749 §5.2 error), or is too long.
    #[error("the token endpoint's answer (HTTP {status}) is not a token response")]
    Unparseable {
        /// The token endpoint's status.
        status: StatusCode,
    },
    /// No answer in time.
    #[error("the token endpoint did not answer within {0:?}")]
    TimedOut(Duration),
    /// The request failed before an answer (connection refused, DNS, TLS, …).
    #[error("the token endpoint could not be reached")]
    Unreachable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A `2xx` answer that cannot be used (`error`: no access token, or not a bearer token),
    /// but that carries a new refresh token. The provider may have retired the old one, so
    /// [`RefreshAndRetry`](crate::upstream::refresh::RefreshAndRetry) stores the new one; otherwise the
    /// failure is `error`'s.
    #[error("{error}, but it rotated the refresh token")]
    RefreshTokenRotated {
        /// Why the answer cannot be used.
        error: Box<GrantError>,
        /// The new refresh token.
        refresh_token: TokenSecret,
    },
}

impl GrantError {
    /// The token endpoint's HTTP status, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::InvalidGrant { status }
            | Self::Misconfigured { status, .. }
            | Self::Unavailable { status, .. }
            | Self::Unparseable { status } => Some(*status),
            Self::TimedOut(_) | Self::Unreachable(_) => None,
            Self::RefreshTokenRotated { error, .. } => error.status(),
        }
    }

    /// Whether the grant is gone and the user must authorize again.
    pub fn needs_reauthorization(&self) -> bool {
        match self {
            Self::RefreshTokenRotated { error, .. } => error.needs_reauthorization(),
            _ => matches!(self, Self::InvalidGrant { .. }),
        }
    }

    /// Whether our own client configuration is at fault.
    pub fn is_misconfiguration(&self) -> bool {
        match self {
            Self::RefreshTokenRotated { error, .. } => error.is_misconfiguration(),
            _ => matches!(self, Self::Misconfigured { .. }),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        !self.needs_reauthorization() && !self.is_misconfiguration()
    }

    /// How long to wait before trying again, when the token endpoint said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            Self::RefreshTokenRotated { error, .. } => error.retry_after(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> Result<TokenResponse, GrantError> {
        classify_answer(StatusCode::from_u16(status).unwrap(), None, body.as_bytes())
    }

    #[test]
    fn success_and_rotation() {
        let ok = classify(
            200,
            r#"{"access_token":"a","token_type":"bearer","expires_in":"60","refresh_token":"r"}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_in(), Some(Duration::from_secs(60)));
        let previous = Link::new("old").with_refresh_token("r0").with_scopes(["x"]);
        let now = SystemTime::now();
        let next = ok.apply_to(&previous, now);
        assert_eq!(next.refresh_token().unwrap().expose_secret(), "r");
        assert_eq!(next.scopes(), ["x"]);
        // Without rotation the old refresh token stays.
        let kept = classify(200, r#"{"access_token":"a","token_type":"Bearer"}"#)
            .unwrap()
            .apply_to(&previous, now);
        assert_eq!(kept.refresh_token().unwrap().expose_secret(), "r0");
        assert_eq!(kept.expires_at(), None);
    }

    #[test]
    fn errors_keep_status_and_kind() {
        let e = classify(400, r#"{"error":"invalid_grant"}"#).unwrap_err();
        assert!(e.needs_reauthorization());
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
        let e = classify(401, r#"{"error":"invalid_client"}"#).unwrap_err();
        assert!(e.is_misconfiguration());
        let e = classify(400, r#"{"error":"unauthorized_client"}"#).unwrap_err();
        assert!(e.is_misconfiguration());
        let e = classify(401, "").unwrap_err();
        assert!(e.is_misconfiguration());
        for (status, body) in [
            (500, r#"{"error":"invalid_grant"}"#),
            (503, ""),
            (429, ""),
            (200, "<html>"),
            (200, r#"{"token_type":"bearer"}"#),
            (400, "<html>"),
            (400, r#"{"error":"temporarily_unavailable"}"#),
        ] {
            let e = classify(status, body).unwrap_err();
            assert!(e.is_transient(), "{status} {body}: {e:?}");
            assert_eq!(e.status(), Some(StatusCode::from_u16(status).unwrap()));
        }
        let e = classify(200, r#"{"access_token":"a","token_type":"DPoP"}"#).unwrap_err();
        assert!(e.is_misconfiguration());
    }

    #[test]
    fn a_rotated_refresh_token_in_an_unusable_answer_is_handed_on() {
        for (body, misconfigured) in [
            (r#"{"access_token":"","refresh_token":"r2"}"#, false),
            (r#"{"token_type":"Bearer","refresh_token":"r2"}"#, false),
            (r#"{"access_token":7,"refresh_token":"r2"}"#, false),
            (
                r#"{"access_token":"a","token_type":"DPoP","refresh_token":"r2"}"#,
                true,
            ),
        ] {
            let e = classify(200, body).unwrap_err();
            let GrantError::RefreshTokenRotated {
                error,
                refresh_token,
            } = &e
            else {
                panic!("{body}: {e:?}")
            };
            assert_eq!(refresh_token.expose_secret(), "r2", "{body}");
            assert_eq!(error.is_misconfiguration(), misconfigured, "{body}");
            assert_eq!(e.is_misconfiguration(), misconfigured, "{body}");
            assert_eq!(e.is_transient(), !misconfigured, "{body}");
            assert_eq!(e.status(), Some(StatusCode::OK));
            assert!(!format!("{e:?} {e}").contains("r2"), "{body}");
        }
        // Without a refresh token (or with an empty one), the plain failure.
        for body in [
            r#"{"access_token":"","refresh_token":""}"#,
            r#"{"access_token":""}"#,
            "<html>",
        ] {
            let e = classify(200, body).unwrap_err();
            assert!(matches!(e, GrantError::Unparseable { .. }), "{body}: {e:?}");
        }
    }

    #[test]
    fn huge_expires_in_never_panics() {
        let previous = Link::new("old").with_refresh_token("r0");
        let now = SystemTime::now();
        for expires_in in [
            "1e19",
            "18446744073709551615",
            "\"18446744073709551615\"",
            "1.7e308",
            "-5",
            "\"soon\"",
        ] {
            let body = format!(
                r#"{{"access_token":"a","token_type":"Bearer","expires_in":{expires_in},"refresh_token":"r1"}}"#
            );
            let answer = classify(200, &body).expect(expires_in);
            let next = answer.apply_to(&previous, now);
            // The rotated refresh token is kept whatever the lifetime says.
            assert_eq!(
                next.refresh_token().unwrap().expose_secret(),
                "r1",
                "{expires_in}"
            );
            assert_eq!(next.issued_at(), Some(now));
            if let Some(at) = next.expires_at() {
                assert!(at >= now, "{expires_in}");
            }
        }
        // Too large to represent: no expiry rather than a panic.
        let huge = TokenResponse::new("a").with_expires_in(Duration::MAX);
        assert_eq!(huge.apply_to(&previous, now).expires_at(), None);
        assert_eq!(
            Link::new("a").with_expires_in(Duration::MAX).expires_at(),
            None
        );
    }

    #[test]
    fn an_answer_outside_2xx_4xx_5xx_is_unparseable_whatever_its_body() {
        for status in [301, 304, 800, 999] {
            let status = StatusCode::from_u16(status).unwrap();
            let outcome = classify_answer(status, None, br#"{"error":"invalid_grant"}"#);
            assert!(
                matches!(outcome, Err(GrantError::Unparseable { status: s }) if s == status),
                "{status}: {outcome:?}"
            );
        }
    }
}
