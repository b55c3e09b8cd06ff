//! Vendor rules, tried before a classifier's standard table: the [`VendorRule`] trait, closure rules
//! and [`JsonErrorCode`] for JSON error bodies.

use std::{borrow::Cow, fmt, sync::Arc};

use http::{HeaderMap, StatusCode, header::CONTENT_TYPE};

use super::{UpstreamClass, is_auth_status};

/// A vendor rule, tried before the standard table. The first rule with a verdict wins.
pub trait VendorRule: Send + Sync + 'static {
    /// Whether this rule needs the body of this `401`/`403`. The default: no.
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        false
    }

    /// The class of this response, or `None` to leave it to the next rule. `body` is the whole
    /// body when it was read and fit the limit.
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass>;
}

/// The vendor rules of a classifier, in the order they were added. [`Standard`](super::Standard)
/// and the gRPC classifier both try theirs through this, so the rule handling exists once.
///
/// Cheap to clone: the rules are shared.
#[derive(Clone, Default)]
pub(crate) struct VendorRules(Arc<[Arc<dyn VendorRule>]>);

impl VendorRules {
    /// Adds `rule` after those already added.
    pub(crate) fn push(&mut self, rule: impl VendorRule) {
        // Rebuilt rather than kept as a `Vec`: rules are added at start-up, cloned per request.
        let mut rules = self.0.to_vec();
        rules.push(Arc::new(rule));
        self.0 = rules.into();
    }

    /// How many rules there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether any rule needs the body of this `401`/`403`.
    pub(crate) fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.0.iter().any(|rule| rule.wants_body(status, headers))
    }

    /// The verdict of the first rule that has one.
    pub(crate) fn first_match(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        self.0
            .iter()
            .find_map(|rule| rule.classify(status, headers, body))
    }
}

/// A [`VendorRule`] from a closure over status and headers, see [`vendor_rule_fn`].
#[derive(Clone, Copy)]
pub struct VendorRuleFn<F> {
    f: F,
}

/// A header [`VendorRule`]: `Fn(StatusCode, &HeaderMap) -> Option<UpstreamClass>`.
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::upstream::classify::{Standard, UpstreamClass, vendor_rule_fn};
///
/// // A provider that reports expired tokens as `419`.
/// let classifier = Standard::new().rule(vendor_rule_fn(|status, _headers| {
///     (status.as_u16() == 419).then_some(UpstreamClass::TokenRejected)
/// }));
/// ```
pub fn vendor_rule_fn<F>(f: F) -> VendorRuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    VendorRuleFn { f }
}

impl<F> VendorRule for VendorRuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        _body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        (self.f)(status, headers)
    }
}

impl<F> fmt::Debug for VendorRuleFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorRuleFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A [`VendorRule`] from a closure over a `401`/`403` and its body, see [`body_rule_fn`].
#[derive(Clone, Copy)]
pub struct BodyRuleFn<F> {
    f: F,
}

/// A body [`VendorRule`]: `Fn(StatusCode, &HeaderMap, &[u8]) -> Option<UpstreamClass>`, asked only
/// for `401` and `403` responses whose whole body fit the limit.
pub fn body_rule_fn<F>(f: F) -> BodyRuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap, &[u8]) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    BodyRuleFn { f }
}

impl<F> VendorRule for BodyRuleFn<F>
where
    F: Fn(StatusCode, &HeaderMap, &[u8]) -> Option<UpstreamClass> + Send + Sync + 'static,
{
    fn wants_body(&self, status: StatusCode, _headers: &HeaderMap) -> bool {
        is_auth_status(status)
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        body.filter(|_| is_auth_status(status))
            .and_then(|body| (self.f)(status, headers, body))
    }
}

impl<F> fmt::Debug for BodyRuleFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyRuleFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A body [`VendorRule`]: a JSON body whose value at a JSON pointer (RFC 6901) is a given string.
///
/// ```
/// use http::StatusCode;
/// use tower_bearer::upstream::classify::{JsonErrorCode, UpstreamClass};
///
/// // What `JsonErrorCode::power_bi()` is:
/// let rule = JsonErrorCode::new(StatusCode::FORBIDDEN, "/error/code", "TokenExpired");
/// // Another vendor, whose expired tokens are `401 {"errors":[{"code":"expired"}]}`, and whose
/// // `403 {"reason":"scope"}` means a missing scope:
/// let other = JsonErrorCode::new(StatusCode::FORBIDDEN, "/reason", "scope")
///     .class(UpstreamClass::InsufficientScope { scopes: vec![] });
/// ```
#[derive(Clone, Debug)]
pub struct JsonErrorCode {
    status: StatusCode,
    pointer: Cow<'static, str>,
    value: Cow<'static, str>,
    class: UpstreamClass,
}

impl JsonErrorCode {
    /// Classifies a `status` response whose JSON body has `value` at `pointer` as
    /// [`TokenRejected`](UpstreamClass::TokenRejected).
    pub fn new(
        status: StatusCode,
        pointer: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            pointer: pointer.into(),
            value: value.into(),
            class: UpstreamClass::TokenRejected,
        }
    }

    /// Power BI's expired token: `403` with `{"error":{"code":"TokenExpired"}}`.
    pub fn power_bi() -> Self {
        Self::new(StatusCode::FORBIDDEN, "/error/code", "TokenExpired")
    }

    /// Sets the class a match yields.
    pub fn class(mut self, class: UpstreamClass) -> Self {
        self.class = class;
        self
    }
}

impl VendorRule for JsonErrorCode {
    fn wants_body(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        status == self.status
            && headers.get(CONTENT_TYPE).is_none_or(|ct| {
                ct.to_str()
                    .is_ok_and(|ct| ct.to_ascii_lowercase().contains("json"))
            })
    }

    fn classify(
        &self,
        status: StatusCode,
        _headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<UpstreamClass> {
        if status != self.status {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(body?).ok()?;
        (json.pointer(&self.pointer)?.as_str()? == self.value).then(|| self.class.clone())
    }
}
