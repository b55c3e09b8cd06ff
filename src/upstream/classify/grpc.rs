//! [`GrpcClassifier`]: the classifier for gRPC providers, whose answers carry their status in
//! `grpc-status` metadata rather than in the HTTP status.

use std::fmt;

use http::{HeaderMap, StatusCode};

use super::{UpstreamClass, UpstreamClassifier, VendorRule, rules::VendorRules};
use crate::grpc::classify_grpc;

/// The [`UpstreamClassifier`] for gRPC providers: vendor [`VendorRule`]s in order, then
/// [`classify_grpc`]. Use it with [`ClassifyUpstream`](super::ClassifyUpstream) (which
/// [`GrpcUpstreamLayer`](crate::grpc::GrpcUpstreamLayer) does).
///
/// VendorRules see the HTTP status, which is `200` for any gRPC answer, and the headers, which hold
/// the `grpc-status`, `grpc-message` and metadata; they are never shown a body.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_bearer::{
///     grpc::GrpcClassifier,
///     upstream::{classify::UpstreamClass, classify::{UpstreamClassifier, vendor_rule_fn}},
/// };
///
/// // A provider that answers an expired token with PERMISSION_DENIED "token expired".
/// let classifier = GrpcClassifier::new().rule(vendor_rule_fn(|_status, headers| {
///     let expired = headers.get("grpc-status").is_some_and(|s| s == "7")
///         && headers.get("grpc-message").is_some_and(|m| m == "token%20expired");
///     expired.then_some(UpstreamClass::TokenRejected)
/// }));
/// let mut headers = HeaderMap::new();
/// headers.insert("grpc-status", "7".parse().unwrap());
/// headers.insert("grpc-message", "token%20expired".parse().unwrap());
/// assert_eq!(classifier.classify(StatusCode::OK, &headers, None), UpstreamClass::TokenRejected);
/// ```
#[derive(Clone, Default)]
pub struct GrpcClassifier {
    rules: VendorRules,
}

impl GrpcClassifier {
    /// The standard gRPC table, without vendor rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vendor rule after those already added.
    pub fn rule(mut self, rule: impl VendorRule) -> Self {
        self.rules.push(rule);
        self
    }
}

impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcClassifier")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl UpstreamClassifier for GrpcClassifier {
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> UpstreamClass {
        // Never a body: `wants_body` keeps its default, so none is ever read.
        self.rules
            .first_match(status, headers, None)
            .unwrap_or_else(|| classify_grpc(status, headers))
    }
}
