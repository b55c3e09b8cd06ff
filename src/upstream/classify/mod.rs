//! Middleware that classifies a third-party API's responses by what they mean for the user's
//! upstream token.
//!
//! # Overview
//!
//! [`ClassifyUpstream`] wraps the HTTP client that calls the provider. Every response gets an
//! [`UpstreamClass`] in its extensions:
//!
//! | the upstream answers | class |
//! |---|---|
//! | `401` | [`TokenRejected`](UpstreamClass::TokenRejected) |
//! | `403` with a Bearer challenge `error="invalid_token"` | [`TokenRejected`](UpstreamClass::TokenRejected) |
//! | `403` with a Bearer challenge `error="insufficient_scope"` | [`InsufficientScope`](UpstreamClass::InsufficientScope), with its `scope` |
//! | any other `403` | [`Forbidden`](UpstreamClass::Forbidden) |
//! | anything else | [`NotAuthRelated`](UpstreamClass::NotAuthRelated) |
//!
//! Every challenge in every `WWW-Authenticate` field is read, in any case spelling.
//!
//! Providers that don't follow RFC 6750 get [`VendorRule`]s, tried before the standard table: header
//! rules ([`vendor_rule_fn`]) and body rules ([`body_rule_fn`], [`JsonErrorCode`]). Power BI, for one,
//! answers an expired token with `403` and `{"error":{"code":"TokenExpired"}}`:
//! [`JsonErrorCode::power_bi`]. Only `401` and `403` bodies are ever read, only when a rule asks
//! for them, and only up to a small limit ([`DEFAULT_PEEK_LIMIT`]); the body is handed on intact
//! as an [`UpstreamBody`]. (Reading waits for the body: keep a timeout on the client.)
//!
//! The [`Standard`] classifier also implements tower-http's
//! [`ClassifyResponse`], so the same classification
//! drives `TraceLayer` (placed outside `ClassifyUpstream`, it sees body rules' verdicts too).
//!
//! [`UpstreamBody`]: super::body::UpstreamBody
//! [`ClassifyResponse`]: tower_http::classify::ClassifyResponse
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_bearer::upstream::classify::{ClassifyUpstreamLayer, JsonErrorCode, Standard, UpstreamClass};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = ServiceBuilder::new()
//!     .layer(ClassifyUpstreamLayer::with_classifier(
//!         Standard::new().rule(JsonErrorCode::power_bi()),
//!     ))
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         let mut response = Response::new(Full::new(Bytes::from_static(
//!             br#"{"error":{"code":"TokenExpired"}}"#,
//!         )));
//!         *response.status_mut() = StatusCode::FORBIDDEN;
//!         Ok::<_, std::convert::Infallible>(response)
//!     }));
//!
//! let response = client.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.extensions().get(), Some(&UpstreamClass::TokenRejected));
//! # }
//! ```

use std::fmt;

use http::{HeaderMap, StatusCode};

use crate::challenge::Challenge;

#[cfg(feature = "tonic")]
pub(crate) mod grpc;
mod rules;
mod service;
mod trace;

pub use self::{
    rules::{BodyRuleFn, JsonErrorCode, VendorRule, VendorRuleFn, body_rule_fn, vendor_rule_fn},
    service::{ClassifyUpstream, ClassifyUpstreamLayer, ResponseFuture},
    trace::UpstreamFailureClass,
};

use self::rules::VendorRules;

/// How many bytes of a `401`/`403` body a body rule may read, unless configured.
pub const DEFAULT_PEEK_LIMIT: usize = 8 * 1024;

/// What an upstream response means for the user's upstream token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamClass {
    /// Not about the token: pass it on.
    NotAuthRelated,
    /// The token was rejected (expired, revoked, …): refreshing may help.
    TokenRejected,
    /// The token lacks scopes; refreshing does not help.
    InsufficientScope {
        /// The scopes the upstream asked for, when it said.
        scopes: Vec<String>,
    },
    /// Forbidden for reasons the token does not change.
    Forbidden,
}

impl UpstreamClass {
    /// Whether the response is about the token at all.
    pub fn is_auth_related(&self) -> bool {
        !matches!(self, Self::NotAuthRelated)
    }
}

/// Classifies upstream responses.
///
/// Only `classify` is required. [`ClassifyUpstream`] reads a body only for `401` and `403`, and
/// only when [`wants_body`](Self::wants_body) says so.
pub trait UpstreamClassifier: Clone {
    /// Whether classifying this `401`/`403` needs its body. The default: no.
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        false
    }

    /// How many body bytes may be read ([`DEFAULT_PEEK_LIMIT`] by default). A longer body is not
    /// shown to `classify`.
    fn body_limit(&self) -> usize {
        DEFAULT_PEEK_LIMIT
    }

    /// Classifies a response; `body` is the whole body when it was read and fit the limit.
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> UpstreamClass;
}

/// The standard table (see the [module docs](self)) for a response's status and challenges.
pub fn classify_challenges(status: StatusCode, headers: &HeaderMap) -> UpstreamClass {
    match status {
        StatusCode::UNAUTHORIZED => UpstreamClass::TokenRejected,
        StatusCode::FORBIDDEN => {
            let challenges = Challenge::from_headers(headers);
            let bearer_errors = || {
                challenges
                    .iter()
                    .filter(|c| c.is_scheme("Bearer"))
                    .filter_map(|c| c.param("error").map(|e| (c, e)))
            };
            if bearer_errors().any(|(_, e)| e == "invalid_token") {
                return UpstreamClass::TokenRejected;
            }
            match bearer_errors().find(|(_, e)| *e == "insufficient_scope") {
                Some((challenge, _)) => UpstreamClass::InsufficientScope {
                    scopes: challenge
                        .param("scope")
                        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                },
                None => UpstreamClass::Forbidden,
            }
        }
        _ => UpstreamClass::NotAuthRelated,
    }
}

/// The default classifier: vendor [`VendorRule`]s in order, then the standard table.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct Standard {
    rules: VendorRules,
    body_limit: usize,
}

impl Default for Standard {
    fn default() -> Self {
        Self {
            rules: VendorRules::default(),
            body_limit: DEFAULT_PEEK_LIMIT,
        }
    }
}

impl fmt::Debug for Standard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Standard")
            .field("rules", &self.rules.len())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Standard {
    /// The standard table, without vendor rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vendor rule after those already added.
    pub fn rule(mut self, rule: impl VendorRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets how many body bytes rules may see.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }
}

impl UpstreamClassifier for Standard {
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.rules.wants_body(status, headers)
    }

    fn body_limit(&self) -> usize {
        self.body_limit
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> UpstreamClass {
        self.rules
            .first_match(status, headers, body)
            .unwrap_or_else(|| classify_challenges(status, headers))
    }
}

/// An [`UpstreamClassifier`] from a closure, see [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

/// An [`UpstreamClassifier`] from a closure `Fn(StatusCode, &HeaderMap, Option<&[u8]>) ->
/// UpstreamClass`; it is shown the body of every `401`/`403` that fits [`DEFAULT_PEEK_LIMIT`].
pub fn classify_fn<F>(f: F) -> ClassifyFn<F>
where
    F: Fn(StatusCode, &HeaderMap, Option<&[u8]>) -> UpstreamClass + Clone,
{
    ClassifyFn { f }
}

impl<F> UpstreamClassifier for ClassifyFn<F>
where
    F: Fn(StatusCode, &HeaderMap, Option<&[u8]>) -> UpstreamClass + Clone,
{
    fn wants_body(&self, _status: StatusCode, _headers: &HeaderMap) -> bool {
        true
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> UpstreamClass {
        (self.f)(status, headers, body)
    }
}

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

fn is_auth_status(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, header::CONTENT_TYPE};

    fn headers(challenges: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for c in challenges {
            headers.append(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_str(c).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn standard_table() {
        let c = |status: u16, challenges: &[&str]| {
            classify_challenges(StatusCode::from_u16(status).unwrap(), &headers(challenges))
        };
        assert_eq!(c(401, &[]), UpstreamClass::TokenRejected);
        assert_eq!(c(200, &[]), UpstreamClass::NotAuthRelated);
        assert_eq!(c(500, &[]), UpstreamClass::NotAuthRelated);
        assert_eq!(c(403, &[]), UpstreamClass::Forbidden);
        assert_eq!(
            c(
                403,
                &[r#"Basic realm="x", bearer realm="y", ERROR="invalid_token""#]
            ),
            UpstreamClass::TokenRejected
        );
        assert_eq!(
            c(
                403,
                &[
                    r#"Basic realm="x""#,
                    r#"Bearer error="insufficient_scope", scope="a  b""#
                ]
            ),
            UpstreamClass::InsufficientScope {
                scopes: vec!["a".into(), "b".into()]
            }
        );
        // Not Bearer: not ours to interpret.
        assert_eq!(
            c(403, &[r#"DPoP error="invalid_token""#]),
            UpstreamClass::Forbidden
        );
    }

    #[test]
    fn power_bi_rule() {
        let classifier = Standard::new().rule(JsonErrorCode::power_bi());
        let mut json = HeaderMap::new();
        json.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(classifier.wants_body(StatusCode::FORBIDDEN, &json));
        assert!(!classifier.wants_body(StatusCode::OK, &json));
        let body = br#"{"error":{"code":"TokenExpired","message":"x"}}"#;
        assert_eq!(
            classifier.classify(StatusCode::FORBIDDEN, &json, Some(body)),
            UpstreamClass::TokenRejected
        );
        assert_eq!(
            classifier.classify(
                StatusCode::FORBIDDEN,
                &json,
                Some(br#"{"error":{"code":"Nope"}}"#)
            ),
            UpstreamClass::Forbidden
        );
        assert_eq!(
            classifier.classify(StatusCode::FORBIDDEN, &json, None),
            UpstreamClass::Forbidden
        );
    }
}
