//! Extracting bearer credentials from a request, exactly as RFC 6750 §2 describes.
//!
//! The `Authorization: Bearer` header (§2.1) is always read. The URI query parameter
//! `access_token` (§2.3) is off by default because URIs end up in logs and `Referer` headers; it is
//! still *detected*, so a request carrying both a header and a query token is refused as
//! ambiguous (row I2) rather than silently using one of them.
//!
//! ```
//! use tower_bearer::token::BearerExtractor;
//!
//! let request = http::Request::builder()
//!     .header("authorization", "bearer mF_9.B5f-4.1JqM")
//!     .body(())
//!     .unwrap();
//! let token = BearerExtractor::new().extract(&request).unwrap();
//! assert_eq!(token.as_str(), "mF_9.B5f-4.1JqM");
//! // The token never shows up in Debug output.
//! assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
//! ```

pub mod form;
mod params;

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header::AUTHORIZATION};

pub use self::params::without_access_token;
use self::{
    form::{FormParam, FormToken},
    params::Param,
};
use crate::{
    failure::{AuthError, InvalidRequest, TokenRejection},
    syntax::is_token68,
};

/// Default upper bound on the length of a bearer token, in bytes.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 8 * 1024;

/// A bearer token taken from a request.
///
/// It borrows the request's header bytes (a cheap reference-counted clone), and its `Debug` output
/// never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    value: HeaderValue,
    start: usize,
}

impl BearerToken {
    /// Wraps a token obtained some other way (a cookie, a gRPC metadata entry, a test).
    ///
    /// The token must be RFC 6750 `b64token` syntax: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
    /// "+" / "/" ) *"="`.
    pub fn new(token: &str) -> Result<Self, AuthError> {
        check_b64token(token.as_bytes())?;
        let value = HeaderValue::from_str(token)
            .map_err(|_| AuthError::InvalidToken(TokenRejection::Malformed))?;
        Ok(Self { value, start: 0 })
    }

    /// The token's bytes, without the UTF-8 check of [`as_str`](Self::as_str): for the cache's
    /// digest, so that a hit reads the token once.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.value.as_bytes()[self.start..]
    }

    /// The token itself. Handle with care: never log it.
    pub fn as_str(&self) -> &str {
        // `check_b64token` admitted only ASCII, so this cannot fail; an empty string is the
        // harmless answer if it ever did.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Finds the bearer token in a request (RFC 6750 §2).
///
/// Rejections map onto the wire contract: no `Bearer` credentials → [`AuthError::MissingCredentials`]
/// (I1); a token sent twice or empty → [`AuthError::InvalidRequest`] (I2); a token that is not
/// `b64token` syntax or longer than the limit → [`AuthError::InvalidToken`] (I3).
#[derive(Clone, Copy, Debug)]
pub struct BearerExtractor {
    allow_query: bool,
    max_token_length: usize,
}

impl Default for BearerExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl BearerExtractor {
    /// The header method only, tokens of at most [`DEFAULT_MAX_TOKEN_LENGTH`] bytes.
    pub const fn new() -> Self {
        Self {
            allow_query: false,
            max_token_length: DEFAULT_MAX_TOKEN_LENGTH,
        }
    }

    /// Also accept the `access_token` URI query parameter (RFC 6750 §2.3). Off by default: the
    /// RFC advises against it, as URIs are logged.
    pub const fn allow_query(mut self, allow: bool) -> Self {
        self.allow_query = allow;
        self
    }

    /// Whether the query method is accepted.
    pub const fn query_allowed(&self) -> bool {
        self.allow_query
    }

    /// Tokens longer than this are refused as unreadable (I3) without being parsed.
    pub const fn max_token_length(mut self, max: usize) -> Self {
        self.max_token_length = max;
        self
    }

    /// Extracts the token from a request, including one that
    /// [`FormTokenLayer`](form::FormTokenLayer) found in its body.
    pub fn extract<B>(&self, request: &Request<B>) -> Result<BearerToken, AuthError> {
        self.find(request)?.check()
    }

    /// Extracts the token from a request's headers and URI.
    pub fn extract_from(&self, headers: &HeaderMap, uri: &Uri) -> Result<BearerToken, AuthError> {
        self.find_with(AuthorizationField::of(headers), uri, None)?
            .check()
    }

    /// Finds the token in a request: every rule of [`extract`](Self::extract) but the header
    /// token's syntax, which is left to [`Presented::check`].
    pub(crate) fn find<'r, B>(&self, request: &'r Request<B>) -> Result<Presented<'r>, AuthError> {
        self.find_seen(request, AuthorizationField::of(request.headers()))
    }

    /// [`find`](Self::find), the request's `Authorization` field already looked up (by a pass
    /// over its headers that reads more of them).
    pub(crate) fn find_seen<'r, B>(
        &self,
        request: &'r Request<B>,
        authorization: AuthorizationField<'r>,
    ) -> Result<Presented<'r>, AuthError> {
        let form = request
            .extensions()
            .get::<FormToken>()
            .map(|found| &found.0);
        self.find_with(authorization, request.uri(), form)
    }

    fn find_with<'r>(
        &self,
        authorization: AuthorizationField<'r>,
        uri: &Uri,
        form: Option<&FormParam>,
    ) -> Result<Presented<'r>, AuthError> {
        let from_header = self.header_token(authorization)?;
        let from_query = uri.query().and_then(|query| params::find(query.as_bytes()));
        let methods = usize::from(from_header.is_some())
            + usize::from(from_query.is_some())
            + usize::from(form.is_some());
        if methods > 1 {
            // Detected even when the query method is off: which token was meant is ambiguous.
            return Err(InvalidRequest::MultipleMethods.into());
        }
        match (from_header, from_query, form) {
            (Some(token), _, _) => token,
            (_, Some(param), _) if self.allow_query => {
                self.decode_param(param).map(Presented::Checked)
            }
            (_, _, Some(FormParam::Once(value))) => self
                .decode_param(Param::Once(value))
                .map(Presented::Checked),
            (_, _, Some(FormParam::Repeated)) => Err(InvalidRequest::RepeatedParameter.into()),
            (_, _, Some(FormParam::Unreadable)) => Err(InvalidRequest::UnreadableBody.into()),
            _ => Err(AuthError::MissingCredentials),
        }
    }

    /// The header's token: the outer error is a malformed request (I2), the inner one an
    /// unreadable token (I3), reported only once the request is known to be unambiguous.
    fn header_token<'r>(
        &self,
        authorization: AuthorizationField<'r>,
    ) -> Result<Option<Extracted<'r>>, AuthError> {
        let Some(value) = authorization.first else {
            return Ok(None);
        };
        if authorization.repeated {
            return Err(InvalidRequest::RepeatedHeader.into());
        }
        let bytes = value.as_bytes();
        let scheme_end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
        if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
            // Another scheme (Basic, DPoP, …) carries no bearer credentials: row I1.
            return Ok(None);
        }
        // RFC 9110 §11.4: `auth-scheme [ 1*SP token68 ]`.
        let start = bytes[scheme_end..]
            .iter()
            .position(|&b| b != b' ')
            .map_or(bytes.len(), |offset| scheme_end + offset);
        let token = &bytes[start..];
        if token.is_empty() {
            return Err(InvalidRequest::EmptyToken.into());
        }
        if token.len() > self.max_token_length {
            return Ok(Some(Err(AuthError::InvalidToken(TokenRejection::TooLong))));
        }
        Ok(Some(Ok(Presented::Unchecked { value, start })))
    }

    /// The token of an `access_token` parameter (the query's, or a form body's).
    fn decode_param(&self, param: Param<'_>) -> Result<BearerToken, AuthError> {
        BearerToken::new(&params::decode_token(param, self.max_token_length)?)
    }
}

/// A request's `Authorization` field: its first value, and whether it has more.
#[derive(Default)]
pub(crate) struct AuthorizationField<'r> {
    first: Option<&'r HeaderValue>,
    repeated: bool,
}

impl<'r> AuthorizationField<'r> {
    /// Looks the field up.
    fn of(headers: &'r HeaderMap) -> Self {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        Self {
            first: values.next(),
            repeated: values.next().is_some(),
        }
    }

    /// Takes in one of a request's header fields, in a pass over all of them.
    pub(crate) fn see(&mut self, name: &HeaderName, value: &'r HeaderValue) {
        if name == AUTHORIZATION {
            self.repeated |= self.first.is_some();
            self.first.get_or_insert(value);
        }
    }
}

/// A token found by one method, or why it is unreadable.
type Extracted<'r> = Result<Presented<'r>, AuthError>;

/// A token as the request presents it. The header's token is not checked yet, nor copied: a
/// validator that has seen these exact bytes before (the verified-token cache) answers from
/// them alone, so a repeat costs one pass over the token, not two.
pub(crate) enum Presented<'r> {
    /// Decoded from a parameter, and checked on the way.
    Checked(BearerToken),
    /// The header's token, from `start`, whose `b64token` syntax is still to be checked.
    Unchecked {
        value: &'r HeaderValue,
        start: usize,
    },
}

impl Presented<'_> {
    /// The token's bytes, as sent.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Checked(token) => token.as_bytes(),
            Self::Unchecked { value, start } => &value.as_bytes()[*start..],
        }
    }

    /// The token once its syntax is known to be `b64token` (row I3 otherwise).
    pub(crate) fn check(self) -> Result<BearerToken, AuthError> {
        match self {
            Self::Checked(token) => Ok(token),
            Self::Unchecked { value, start } => {
                check_b64token(&value.as_bytes()[start..])?;
                Ok(BearerToken {
                    value: value.clone(),
                    start,
                })
            }
        }
    }
}

/// RFC 6750 §2.1 `b64token`.
fn check_b64token(token: &[u8]) -> Result<(), AuthError> {
    if is_token68(token) {
        Ok(())
    } else {
        Err(AuthError::InvalidToken(TokenRejection::Malformed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(
        headers: &[(&str, &str)],
        uri: &str,
        extractor: BearerExtractor,
    ) -> Result<String, AuthError> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(()).unwrap();
        extractor.extract(&request).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn header_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let got = extract(
                &[("authorization", &format!("{scheme} abc.def"))],
                "/",
                BearerExtractor::new(),
            );
            assert_eq!(got.unwrap(), "abc.def");
        }
    }

    #[test]
    fn rejections_follow_the_contract() {
        let e = BearerExtractor::new();
        assert!(matches!(
            extract(&[], "/", e),
            Err(AuthError::MissingCredentials)
        ));
        assert!(matches!(
            extract(&[("authorization", "Basic dXNlcg==")], "/", e),
            Err(AuthError::MissingCredentials)
        ));
        assert!(matches!(
            extract(&[("authorization", "Bearer")], "/", e),
            Err(AuthError::InvalidRequest(InvalidRequest::EmptyToken))
        ));
        assert!(matches!(
            extract(&[("authorization", "Bearer   ")], "/", e),
            Err(AuthError::InvalidRequest(InvalidRequest::EmptyToken))
        ));
        assert!(matches!(
            extract(
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
                "/",
                e
            ),
            Err(AuthError::InvalidRequest(InvalidRequest::RepeatedHeader))
        ));
        assert!(matches!(
            extract(&[("authorization", "Bearer a")], "/?access_token=b", e),
            Err(AuthError::InvalidRequest(InvalidRequest::MultipleMethods))
        ));
        assert!(matches!(
            extract(&[], "/?access_token=b", e),
            Err(AuthError::MissingCredentials)
        ));
        assert!(matches!(
            extract(&[("authorization", "Bearer a b")], "/", e),
            Err(AuthError::InvalidToken(TokenRejection::Malformed))
        ));
        assert!(matches!(
            extract(&[("authorization", "Bearer ==")], "/", e),
            Err(AuthError::InvalidToken(TokenRejection::Malformed))
        ));
        let long = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_LENGTH + 1));
        assert!(matches!(
            extract(&[("authorization", &long)], "/", e),
            Err(AuthError::InvalidToken(TokenRejection::TooLong))
        ));
    }

    #[test]
    fn ambiguity_is_reported_before_token_syntax() {
        assert!(matches!(
            extract(
                &[("authorization", "Bearer a b")],
                "/?access_token=x",
                BearerExtractor::new()
            ),
            Err(AuthError::InvalidRequest(InvalidRequest::MultipleMethods))
        ));
    }

    #[test]
    fn query_method_when_enabled() {
        let e = BearerExtractor::new().allow_query(true);
        assert_eq!(
            extract(&[], "/x?a=1&access_token=ab%2Bc%3D", e).unwrap(),
            "ab+c="
        );
        assert!(matches!(
            extract(&[], "/x?access_token=a&access_token=b", e),
            Err(AuthError::InvalidRequest(InvalidRequest::RepeatedParameter))
        ));
        assert!(matches!(
            extract(&[], "/x?access_token=", e),
            Err(AuthError::InvalidRequest(InvalidRequest::EmptyToken))
        ));
    }
}
