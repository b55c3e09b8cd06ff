//! What a failure asks the emitter to send: the crate-private contract between the failure
//! taxonomies and the rendering policy.

use std::{borrow::Cow, time::Duration};

use http::{HeaderValue, StatusCode};

use super::{Emitter, RequestContext};

/// Implemented by each failure type to describe its response. Private, so only this crate's
/// failures can be rendered and the wire contract stays in one place.
pub trait Sealed {
    /// The response status (also used for a pending failure that no emitter renders).
    fn status(&self) -> StatusCode;

    /// The full description of the response for this request.
    fn rendering(&self, emitter: &Emitter, request: &RequestContext) -> Rendering;
}

/// The `Bearer` challenge a failure calls for.
pub enum Bearer {
    /// No `WWW-Authenticate` at all (the caller's own credentials are not the problem).
    None,
    /// `Bearer realm="R"`: credentials are needed, nothing was wrong with a token.
    Bare,
    /// `Bearer realm="R", error="…"` and further params.
    Error {
        /// The RFC 6750 / RFC 9470 error code.
        code: &'static str,
        /// Further params, in order.
        params: Vec<(&'static str, Cow<'static, str>)>,
    },
}

impl Bearer {
    /// A challenge with an error code.
    pub fn error(code: &'static str) -> Self {
        Self::Error {
            code,
            params: Vec::new(),
        }
    }

    /// Adds a param to an error challenge.
    pub fn param(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        if let Self::Error { params, .. } = &mut self {
            params.push((name, value.into()));
        }
        self
    }
}

/// The description of one failure response.
pub struct Rendering {
    pub status: StatusCode,
    pub bearer: Bearer,
    pub proxy_status: Option<HeaderValue>,
    pub retry_after: Option<Duration>,
    pub link: Option<HeaderValue>,
    pub location: Option<HeaderValue>,
    pub set_cookie: Option<HeaderValue>,
    /// `None` renders as `about:blank`.
    pub problem_slug: Option<&'static str>,
    pub title: &'static str,
    /// Shown only at the verbose disclosure level (`error_description`, problem `detail`).
    pub detail: Cow<'static, str>,
    /// Extension members of the problem body.
    pub members: Vec<(&'static str, serde_json::Value)>,
    /// Looks like the application's own response of this status (a hidden resource's `404`):
    /// no body whatever the client accepts, no header that only this crate sends.
    pub disguised: bool,
}

impl Rendering {
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            bearer: Bearer::None,
            proxy_status: None,
            retry_after: None,
            link: None,
            location: None,
            set_cookie: None,
            problem_slug: None,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: detail.into(),
            members: Vec::new(),
            disguised: false,
        }
    }

    /// The response must look like any other of its status: no body, nothing of ours.
    pub fn disguised(mut self) -> Self {
        self.disguised = true;
        self
    }

    pub fn bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = bearer;
        self
    }

    pub fn problem(mut self, slug: &'static str, title: &'static str) -> Self {
        self.problem_slug = Some(slug);
        self.title = title;
        self
    }

    pub fn title(mut self, title: &'static str) -> Self {
        self.title = title;
        self
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn member(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.members.push((name, value));
        self
    }
}
