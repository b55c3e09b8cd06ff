//! `Proxy-Status` field values (RFC 9209).
//!
//! One list member names this service (an sf-token when the name is one, otherwise an
//! sf-string) and carries parameters in the order they were set, each at most once:
//!
//! ```
//! use http::StatusCode;
//! use tower_bearer::emit::proxy_status::{ProxyErrorType, ProxyStatus};
//!
//! let value = ProxyStatus::new("gateway")
//!     .error(ProxyErrorType::HttpRequestDenied)
//!     .next_hop("github")
//!     .details("upstream_reauth_required");
//! assert_eq!(
//!     value.to_string(),
//!     r#"gateway; error=http_request_denied; next-hop="github"; details="upstream_reauth_required""#
//! );
//!
//! let passed_on = ProxyStatus::new("my proxy").received_status(StatusCode::FORBIDDEN);
//! assert_eq!(passed_on.to_string(), r#""my proxy"; received-status=403"#);
//! ```

use std::fmt::{self, Write as _};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::syntax::is_tchar;

/// The `error` parameter's registered types (RFC 9209 §2.3) that this crate uses, and a few
/// more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyErrorType {
    /// `destination_unavailable`: the next hop is considered unavailable.
    DestinationUnavailable,
    /// `connection_refused`: the connection to the next hop was refused.
    ConnectionRefused,
    /// `connection_timeout`: connecting to the next hop timed out.
    ConnectionTimeout,
    /// `connection_terminated`: the connection to the next hop closed before a complete
    /// response was received.
    ConnectionTerminated,
    /// `http_request_error`: a client (4xx) error generated on the next hop's behalf.
    HttpRequestError,
    /// `http_request_denied`: the intermediary denied the request.
    HttpRequestDenied,
    /// `http_response_timeout`: the next hop's response took too long.
    HttpResponseTimeout,
    /// `proxy_internal_error`: an internal error of the intermediary.
    ProxyInternalError,
    /// `proxy_configuration_error`: the intermediary is misconfigured.
    ProxyConfigurationError,
}

impl ProxyErrorType {
    /// The registered name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DestinationUnavailable => "destination_unavailable",
            Self::ConnectionRefused => "connection_refused",
            Self::ConnectionTimeout => "connection_timeout",
            Self::ConnectionTerminated => "connection_terminated",
            Self::HttpRequestError => "http_request_error",
            Self::HttpRequestDenied => "http_request_denied",
            Self::HttpResponseTimeout => "http_response_timeout",
            Self::ProxyInternalError => "proxy_internal_error",
            Self::ProxyConfigurationError => "proxy_configuration_error",
        }
    }
}

impl fmt::Display for ProxyErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `Proxy-Status` list member (RFC 9209 §2), always valid structured-field syntax
/// (RFC 8941).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyStatus {
    proxy: String,
    params: Vec<(&'static str, Value)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Token(&'static str),
    String(String),
    Integer(u16),
}

impl ProxyStatus {
    /// A member naming the intermediary `proxy`.
    pub fn new(proxy: &str) -> Self {
        Self {
            proxy: proxy.to_owned(),
            params: Vec::new(),
        }
    }

    /// Sets `error` (RFC 9209 §2.1.1).
    pub fn error(self, error: ProxyErrorType) -> Self {
        self.set("error", Value::Token(error.as_str()))
    }

    /// Sets `next-hop` (RFC 9209 §2.1.2), as an sf-string.
    pub fn next_hop(self, next_hop: &str) -> Self {
        self.set("next-hop", Value::String(next_hop.to_owned()))
    }

    /// Sets `received-status` (RFC 9209 §2.1.4).
    pub fn received_status(self, status: StatusCode) -> Self {
        self.set("received-status", Value::Integer(status.as_u16()))
    }

    /// Sets `details` (RFC 9209 §2.1.5), as an sf-string.
    pub fn details(self, details: &str) -> Self {
        self.set("details", Value::String(details.to_owned()))
    }

    fn set(mut self, name: &'static str, value: Value) -> Self {
        match self.params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => *existing = value,
            None => self.params.push((name, value)),
        }
        self
    }

    /// The field value.
    pub fn to_header_value(&self) -> HeaderValue {
        // Only printable ASCII is ever written (see `write_string`), so this cannot fail.
        HeaderValue::from_maybe_shared(Bytes::from(self.to_string()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

impl fmt::Display for ProxyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_sf_token(&self.proxy) {
            f.write_str(&self.proxy)?;
        } else {
            write_string(f, &self.proxy)?;
        }
        for (name, value) in &self.params {
            write!(f, "; {name}=")?;
            match value {
                Value::Token(token) => f.write_str(token)?,
                Value::String(string) => write_string(f, string)?,
                Value::Integer(integer) => write!(f, "{integer}")?,
            }
        }
        Ok(())
    }
}

/// `sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )` (RFC 8941 §3.3.4).
fn is_sf_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && bytes.all(|b| is_tchar(b) || b == b':' || b == b'/')
}

/// An sf-string (RFC 8941 §3.3.3): `"` and `\` escaped; anything outside printable ASCII,
/// which sf-strings cannot hold, replaced with `?`.
fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            ' '..='~' => f.write_char(c)?,
            _ => f.write_char('?')?,
        }
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_strings() {
        assert_eq!(
            ProxyStatus::new("api.example:8080/x").to_string(),
            "api.example:8080/x"
        );
        assert_eq!(ProxyStatus::new("*p").to_string(), "*p");
        assert_eq!(ProxyStatus::new("1proxy").to_string(), "\"1proxy\"");
        assert_eq!(ProxyStatus::new("").to_string(), "\"\"");
        assert_eq!(
            ProxyStatus::new("a \"b\" \\ é\n").to_string(),
            r#""a \"b\" \\ ??""#
        );
    }

    #[test]
    fn params_in_order_once() {
        let value = ProxyStatus::new("gw")
            .received_status(StatusCode::UNAUTHORIZED)
            .next_hop("p\"x")
            .details("d")
            .received_status(StatusCode::FORBIDDEN);
        assert_eq!(
            value.to_header_value(),
            r#"gw; received-status=403; next-hop="p\"x"; details="d""#
        );
        assert_eq!(
            ProxyStatus::new("gw")
                .error(ProxyErrorType::ProxyConfigurationError)
                .to_string(),
            "gw; error=proxy_configuration_error"
        );
    }
}
