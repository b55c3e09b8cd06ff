//! The last step of the connect flow (RFC 6749 §4.1.3, RFC 7636 §4.5): the authorization code
//! from the callback, with the PKCE verifier, exchanged at the provider's token endpoint for the
//! user's tokens.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tower::ServiceExt as _;
use tower_bearer::upstream::store::Link;

use super::{config::ClientAuth, providers::Provider, providers::TokenClient};

/// Why the code could not be exchanged. Never contains the code or a token.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No answer: connection refused, DNS, TLS, …
    #[error("the token endpoint could not be reached")]
    Unreachable,
    /// No answer in time.
    #[error("the token endpoint did not answer in time")]
    TimedOut,
    /// An RFC 6749 §5.2 error (an expired or replayed code is `invalid_grant`).
    #[error("the token endpoint refused the code (HTTP {status}, {error})")]
    Refused {
        /// Its status.
        status: StatusCode,
        /// Its error code.
        error: String,
    },
    /// Anything else.
    #[error("the token endpoint's answer (HTTP {0}) is not a bearer token response")]
    Unparseable(StatusCode),
}

/// A token endpoint answer is small; a huge one is not a token response.
const MAX_ANSWER: usize = 64 * 1024;

/// Exchanges `code` and returns the new link.
pub async fn exchange(
    client: &TokenClient,
    provider: &Provider,
    code: &str,
    verifier: &str,
    timeout: Duration,
) -> Result<Link, ExchangeError> {
    let settings = &provider.settings;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", provider.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    if let Some(resource) = &settings.resource {
        form.push(("resource", resource));
    }
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(settings.token_url.clone())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    match (settings.client_auth, &settings.client_secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => {
            // RFC 6749 §2.3.1: each part form-encoded before base64.
            let credentials = format!(
                "{}:{}",
                encode(&settings.client_id),
                encode(secret.expose_secret())
            );
            let mut value =
                HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
                    .map_err(|_| ExchangeError::Unparseable(StatusCode::BAD_REQUEST))?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            form.push(("client_id", &settings.client_id));
            form.push(("client_secret", secret.expose_secret()));
        }
        _ => form.push(("client_id", &settings.client_id)),
    }
    let body = form
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| ExchangeError::Unparseable(StatusCode::BAD_REQUEST))?;

    let exchange = async {
        let response = client
            .clone()
            .oneshot(request)
            .await
            .map_err(|_| ExchangeError::Unreachable)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| ExchangeError::Unparseable(status))?
            .to_bytes();
        Ok::<_, ExchangeError>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::TimedOut)??;
    if !status.is_success() {
        let error = serde_json::from_slice::<ErrorAnswer>(&body)
            .ok()
            .map(|answer| answer.error)
            // Shown in logs: keep it to a short, plain code.
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or(ExchangeError::Unparseable(status))?;
        return Err(ExchangeError::Refused { status, error });
    }
    let answer: Answer =
        serde_json::from_slice(&body).map_err(|_| ExchangeError::Unparseable(status))?;
    if answer.access_token.is_empty()
        || answer
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(ExchangeError::Unparseable(status));
    }
    let mut link = Link::new(answer.access_token);
    if let Some(seconds) = answer.expires_in {
        link = link.with_expires_in(Duration::from_secs(seconds));
    }
    if let Some(refresh) = answer.refresh_token.filter(|t| !t.is_empty()) {
        link = link.with_refresh_token(refresh);
    }
    // RFC 6749 §5.1: no `scope` in the answer means the requested scope was granted.
    Ok(match answer.scope {
        Some(scope) => link.with_scopes(scope.split_ascii_whitespace()),
        None => link.with_scopes(settings.scopes.iter().cloned()),
    })
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// `application/x-www-form-urlencoded` leaves `*-._` and alphanumerics as they are.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Form-encodes one value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, FORM).to_string()
}
