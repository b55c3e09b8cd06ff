//! The [`Standard`] classifier as a tower-http [`ClassifyResponse`], so that the same
//! classification drives `TraceLayer`.

use std::fmt;

use http::{Response, StatusCode};
use tower_http::classify::{ClassifiedResponse, ClassifyResponse, NeverClassifyEos};

use super::{Standard, UpstreamClass, UpstreamClassifier};

/// The failure class of [`Standard`] as a tower-http
/// [`ClassifyResponse`], e.g. for `TraceLayer`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamFailureClass {
    /// An auth-related answer.
    Auth(UpstreamClass),
    /// A `5xx` answer.
    Status(StatusCode),
    /// The call failed before an answer.
    Error(String),
}

impl fmt::Display for UpstreamFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(class) => write!(f, "upstream auth: {class:?}"),
            Self::Status(status) => write!(f, "upstream status {status}"),
            Self::Error(error) => write!(f, "upstream error: {error}"),
        }
    }
}

impl ClassifyResponse for Standard {
    type FailureClass = UpstreamFailureClass;
    type ClassifyEos = NeverClassifyEos<UpstreamFailureClass>;

    /// Uses the [`UpstreamClass`] that [`ClassifyUpstream`](super::ClassifyUpstream) put into the
    /// response's extensions (so body rules count), else the header rules and the standard table.
    fn classify_response<B>(
        self,
        res: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        let class = match res.extensions().get::<UpstreamClass>() {
            Some(class) => class.clone(),
            None => UpstreamClassifier::classify(&self, res.status(), res.headers(), None),
        };
        ClassifiedResponse::Ready(match class {
            UpstreamClass::NotAuthRelated if res.status().is_server_error() => {
                Err(UpstreamFailureClass::Status(res.status()))
            }
            UpstreamClass::NotAuthRelated => Ok(()),
            class => Err(UpstreamFailureClass::Auth(class)),
        })
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: fmt::Display + 'static,
    {
        UpstreamFailureClass::Error(error.to_string())
    }
}
