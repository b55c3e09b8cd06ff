//! The body of failure responses in the application's own format, in place of problem details.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::plan::Rendering;

/// Formats the body of failure responses: an application's own error format (its error JSON)
/// in place of problem details (RFC 9457). Set it with
/// [`Emitter::with_body_format`](super::Emitter::with_body_format).
///
/// Only the body is the application's: status, `WWW-Authenticate`, `Proxy-Status`, `Link`,
/// `Retry-After` and `Cache-Control` stay as the wire contract says, so every failure is still
/// unambiguous from its headers. The format is asked whenever a problem+json body would be
/// sent — [`BodyMode::ProblemJson`](super::BodyMode::ProblemJson), a caller whose `Accept`
/// takes problem+json, `application/json` or a wildcard — and never for a hidden resource's
/// `404` nor a gRPC answer.
///
/// [`format_body_fn`] makes one from a closure.
pub trait FormatBody: Send + Sync + 'static {
    /// The `Content-Type` and the bytes of the body for `failure`.
    fn format(&self, failure: &FailureView<'_>) -> (HeaderValue, Bytes);
}

/// A [`FormatBody`] from a closure; see [`format_body_fn`].
#[derive(Clone, Copy)]
pub struct FormatBodyFn<F>(F);

impl<F> fmt::Debug for FormatBodyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormatBodyFn")
    }
}

/// Adapts a closure into a [`FormatBody`].
///
/// ```
/// use bytes::Bytes;
/// use http::HeaderValue;
/// use tower_bearer::emit::{Emitter, FailureView, format_body_fn};
///
/// let emitter = Emitter::new("api").with_body_format(format_body_fn(|failure: &FailureView<'_>| {
///     let body = serde_json::json!({
///         "error": { "code": failure.kind(), "message": failure.title() },
///     });
///     (HeaderValue::from_static("application/json"), Bytes::from(body.to_string()))
/// }));
/// ```
pub fn format_body_fn<F>(f: F) -> FormatBodyFn<F>
where
    F: Fn(&FailureView<'_>) -> (HeaderValue, Bytes) + Send + Sync + 'static,
{
    FormatBodyFn(f)
}

impl<F> FormatBody for FormatBodyFn<F>
where
    F: Fn(&FailureView<'_>) -> (HeaderValue, Bytes) + Send + Sync + 'static,
{
    fn format(&self, failure: &FailureView<'_>) -> (HeaderValue, Bytes) {
        (self.0)(failure)
    }
}

/// What a failure response says, for a [`FormatBody`]: what problem details would carry.
/// Nothing in it comes from the token.
pub struct FailureView<'a> {
    rendering: &'a Rendering,
    verbose: bool,
}

impl<'a> FailureView<'a> {
    pub(super) fn new(rendering: &'a Rendering, verbose: bool) -> Self {
        Self { rendering, verbose }
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.rendering.status
    }

    /// The failure's kind, as in its problem type: `invalid-token`, `insufficient-scope`,
    /// `upstream-reauth-required`, … ([`problem`](crate::problem) lists them, stable); `None` for
    /// a failure without a kind of its own (problem type `about:blank`).
    pub fn kind(&self) -> Option<&'static str> {
        self.rendering.problem_slug
    }

    /// A short, human-readable summary, the same for every failure of the kind.
    pub fn title(&self) -> &'static str {
        self.rendering.title
    }

    /// What went wrong in this case, only at the verbose
    /// [disclosure level](super::Disclosure::Verbose).
    pub fn detail(&self) -> Option<&str> {
        Some(&*self.rendering.detail).filter(|detail| self.verbose && !detail.is_empty())
    }

    /// An extension member of the problem details: `scope` (the scopes required, either side),
    /// `provider` (every upstream failure), `connect` (where to re-link, row U4).
    pub fn member(&self, name: &str) -> Option<&serde_json::Value> {
        self.rendering
            .members
            .iter()
            .find(|(member, _)| *member == name)
            .map(|(_, value)| value)
    }
}

impl fmt::Debug for FailureView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureView")
            .field("status", &self.status())
            .field("kind", &self.kind())
            .field("title", &self.title())
            .finish()
    }
}
