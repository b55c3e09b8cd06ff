//! [`OAuthClient`]: the OAuth client the crate speaks to a provider's endpoints as — client
//! authentication, form requests, time and size limits — and the requests it makes: token
//! requests (the refresh grant, the authorization-code exchange), revocation (RFC 7009) and
//! introspection (RFC 7662).

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use bytes::Bytes;
use http::{
    HeaderValue, Method, Request, StatusCode, Uri,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER},
};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::answer::{GrantError, TokenResponse, classify_answer, error_code};
#[cfg(doc)]
use super::{DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT};
use crate::{
    http_client::{FetchError, Fetched, HttpClient},
    upstream::store::{Link, TokenSecret},
};

/// The longest `Retry-After` taken from a provider (a day); longer ones are cut to it.
const MAX_RETRY_AFTER_SECS: u64 = 24 * 60 * 60;

/// How the OAuth client authenticates at the provider (RFC 6749 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded client id and secret (`client_secret_basic`).
    SecretBasic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    SecretPost,
    /// A public client: only `client_id` in the form body.
    None,
}

/// Which token a revocation names (RFC 7009 §2.1 `token_type_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenTypeHint {
    /// `refresh_token`: revoking it ends the whole grant at most providers.
    RefreshToken,
    /// `access_token`.
    AccessToken,
}

/// An OAuth client as registered at one provider, over an [`HttpClient`]: every call the crate
/// makes to the provider's token, revocation and introspection endpoints goes through it, so
/// they authenticate, encode, bound and classify alike.
///
/// Cheap to clone. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct OAuthClient {
    http: HttpClient,
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    client_id: String,
    client_secret: Option<TokenSecret>,
    auth: ClientAuth,
    /// `None`: the HTTP client's own.
    timeout: Option<Duration>,
    /// `None`: the HTTP client's own.
    body_limit: Option<usize>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("OAuthClient")
            .field("client_id", &c.client_id)
            .field("client_secret", &c.client_secret)
            .field("auth", &c.auth)
            .field("timeout", &c.timeout)
            .field("body_limit", &c.body_limit)
            .finish()
    }
}

impl OAuthClient {
    /// The public client `client_id` (no secret), speaking through `http`, within `http`'s
    /// time and size limits unless [`timeout`](Self::timeout) and
    /// [`body_limit`](Self::body_limit) say otherwise. An empty `client_id` is sent nowhere (an
    /// introspection endpoint that needs no client).
    pub fn new(http: HttpClient, client_id: impl Into<String>) -> Self {
        Self {
            http,
            config: Arc::new(Config {
                client_id: client_id.into(),
                client_secret: None,
                auth: ClientAuth::None,
                timeout: None,
                body_limit: None,
            }),
        }
    }

    /// The public client `client_id` over the built-in HTTP client ([`HttpClient::builtin`]).
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn builtin(client_id: impl Into<String>) -> Self {
        Self::new(HttpClient::builtin(), client_id)
    }

    /// Authenticates with `client_secret_basic` (RFC 6749 §2.3.1).
    pub fn client_secret_basic(self, secret: impl Into<TokenSecret>) -> Self {
        self.with_config(|c| {
            c.client_secret = Some(secret.into());
            c.auth = ClientAuth::SecretBasic;
        })
    }

    /// Authenticates with `client_secret_post` (RFC 6749 §2.3.1).
    pub fn client_secret_post(self, secret: impl Into<TokenSecret>) -> Self {
        self.with_config(|c| {
            c.client_secret = Some(secret.into());
            c.auth = ClientAuth::SecretPost;
        })
    }

    /// How long an endpoint has to answer (the HTTP client's limit unless set; a
    /// [`RefreshGrant`](super::RefreshGrant) sets [`DEFAULT_TIMEOUT`] — see its
    /// [`timeout`](super::RefreshGrant::timeout) for why it is long).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with_config(|c| c.timeout = Some(timeout))
    }

    /// The largest answer read (the HTTP client's limit unless set; a
    /// [`RefreshGrant`](super::RefreshGrant) sets [`DEFAULT_BODY_LIMIT`]); a longer one is
    /// treated as unparseable.
    pub fn body_limit(self, bytes: usize) -> Self {
        self.with_config(|c| c.body_limit = Some(bytes))
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.config.client_id
    }

    /// The client authentication method.
    pub fn client_auth(&self) -> ClientAuth {
        self.config.auth
    }

    /// How long an endpoint has to answer, when set here (else the HTTP client's limit).
    pub fn time_limit(&self) -> Option<Duration> {
        self.config.timeout
    }

    /// The largest answer read, when set here (else the HTTP client's limit).
    pub fn answer_limit(&self) -> Option<usize> {
        self.config.body_limit
    }

    fn with_config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The `POST` of `form` to `endpoint`, with the client's authentication.
    pub(crate) fn request(&self, endpoint: &Uri, mut form: Form) -> Request<Full<Bytes>> {
        let c = &self.config;
        let mut request = Request::new(Full::default());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        match (c.auth, &c.client_secret) {
            (ClientAuth::SecretBasic, Some(secret)) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
                let credentials = format!(
                    "{}:{}",
                    form_encode(&c.client_id),
                    form_encode(secret.expose_secret())
                );
                let value = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                );
                if let Ok(mut value) = HeaderValue::try_from(value) {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
            }
            (ClientAuth::SecretPost, Some(secret)) => {
                form.push("client_id", &c.client_id);
                form.push("client_secret", secret.expose_secret());
            }
            _ if c.client_id.is_empty() => {}
            _ => form.push("client_id", &c.client_id),
        }
        *request.body_mut() = Full::new(Bytes::from(form.0));
        request
    }

    /// Posts `form` to `endpoint`, within the client's time and size limits.
    pub(crate) fn post(
        &self,
        endpoint: &Uri,
        form: Form,
    ) -> impl Future<Output = Result<Fetched, GrantError>> + Send + 'static {
        let request = self.request(endpoint, form);
        // This client's own bounds where set, else the HTTP client's.
        let mut http = self.http.clone();
        if let Some(timeout) = self.config.timeout {
            http = http.timeout(timeout);
        }
        if let Some(limit) = self.config.body_limit {
            http = http.body_limit(limit);
        }
        let timeout = http.time_limit();
        async move {
            http.send(request).await.map_err(|error| match error {
                FetchError::Timeout { .. } => GrantError::TimedOut(timeout),
                FetchError::Body { status, .. } => GrantError::Unparseable { status },
                FetchError::Transport { source, .. } => GrantError::Unreachable(Arc::from(source)),
                other => GrantError::Unreachable(Arc::new(other)),
            })
        }
    }

    /// A token request (RFC 6749 §3.2) of `form` at `token_endpoint`, its answer classified
    /// keeping the status (§5.1, §5.2).
    pub fn token_request(
        &self,
        token_endpoint: &Uri,
        form: Form,
    ) -> impl Future<Output = Result<TokenResponse, GrantError>> + Send + 'static {
        let answer = self.post(token_endpoint, form);
        async move {
            let answer = answer.await?;
            classify_answer(answer.status, retry_after(&answer), &answer.body)
        }
    }

    /// Exchanges an authorization `code` (RFC 6749 §4.1.3) with its PKCE `verifier` (RFC 7636
    /// §4.5) for the user's tokens: the new link, its scopes the `requested` ones unless the
    /// answer names the granted ones.
    pub fn exchange_code(
        &self,
        token_endpoint: &Uri,
        exchange: CodeExchange<'_>,
    ) -> impl Future<Output = Result<Link, GrantError>> + Send + 'static {
        let mut form = Form::new()
            .field("grant_type", "authorization_code")
            .field("code", exchange.code)
            .field("redirect_uri", exchange.redirect_uri)
            .field("code_verifier", exchange.verifier);
        for resource in exchange.resources {
            form.push("resource", resource);
        }
        let requested = exchange.requested_scopes.to_vec();
        let answer = self.token_request(token_endpoint, form);
        async move { Ok(answer.await?.into_link(requested, SystemTime::now())) }
    }

    /// Revokes `token` at `revocation_endpoint` (RFC 7009): revoking a refresh token ends the
    /// grant at the provider. An unknown or already revoked token is no error (§2.2).
    pub fn revoke(
        &self,
        revocation_endpoint: &Uri,
        token: &TokenSecret,
        hint: TokenTypeHint,
    ) -> impl Future<Output = Result<(), GrantError>> + Send + 'static {
        let hint = match hint {
            TokenTypeHint::RefreshToken => "refresh_token",
            TokenTypeHint::AccessToken => "access_token",
        };
        let form = Form::new()
            .field("token", token.expose_secret())
            .field("token_type_hint", hint);
        let answer = self.post(revocation_endpoint, form);
        async move {
            let answer = answer.await?;
            let status = answer.status;
            if status.is_success() {
                return Ok(());
            }
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = retry_after(&answer);
                return Err(GrantError::Unavailable {
                    status,
                    retry_after,
                });
            }
            match error_code(&answer.body) {
                Some(error) if status.is_client_error() => {
                    Err(GrantError::Misconfigured { status, error })
                }
                _ => Err(GrantError::Unparseable { status }),
            }
        }
    }
}

/// What an authorization-code exchange sends, beside the client's authentication.
#[derive(Clone, Copy, Debug)]
pub struct CodeExchange<'a> {
    /// The code from the callback.
    pub code: &'a str,
    /// The PKCE code verifier of the flow.
    pub verifier: &'a str,
    /// The `redirect_uri` of the authorization request.
    pub redirect_uri: &'a str,
    /// The RFC 8707 resources asked for.
    pub resources: &'a [String],
    /// The scopes asked for: the link's unless the answer names the granted ones.
    pub requested_scopes: &'a [String],
}

/// The provider's `Retry-After`, when given in seconds.
fn retry_after(answer: &Fetched) -> Option<Duration> {
    answer
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        // Untrusted: keep it within what `Instant`/`SystemTime` arithmetic tolerates.
        .map(|secs| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)))
}

/// `application/x-www-form-urlencoded` unreserved characters: `*-._` and alphanumerics.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

fn form_encode(value: &str) -> String {
    utf8_percent_encode(value, FORM).to_string()
}

/// An `application/x-www-form-urlencoded` body, built field by field.
#[derive(Clone, Default)]
pub struct Form(String);

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fields hold tokens and codes.
        f.write_str("Form(<redacted>)")
    }
}

impl Form {
    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// The form with `name=value` added.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.push(name, value);
        self
    }

    fn push(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.extend(utf8_percent_encode(name, FORM));
        self.0.push('=');
        self.0.extend(utf8_percent_encode(value, FORM));
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use http::{Method, header::AUTHORIZATION};

    use http_body_util::BodyExt as _;

    use super::*;

    /// A client the test never sends through.
    fn unused_client() -> HttpClient {
        HttpClient::new(tower::service_fn(|_: Request<Full<Bytes>>| async {
            Err::<http::Response<Full<Bytes>>, crate::BoxError>("not sent".into())
        }))
    }

    #[tokio::test]
    async fn request_shapes() {
        let client = OAuthClient::new(unused_client(), "id:1").client_secret_basic("s&cret");
        let request = client.request(
            &Uri::from_static("https://p.example/token"),
            Form::new()
                .field("grant_type", "refresh_token")
                .field("refresh_token", "r+1"),
        );
        assert_eq!(request.method(), Method::POST);
        let auth = request.headers()[AUTHORIZATION].to_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"id%3A1:s%26cret");
        assert!(request.headers()[AUTHORIZATION].is_sensitive());

        let client = OAuthClient::new(unused_client(), "id").client_secret_post("s");
        let request = client.request(
            &Uri::from_static("https://p.example/token"),
            Form::new().field("token", "t"),
        );
        assert!(request.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            request.into_body().collect().await.unwrap().to_bytes(),
            Bytes::from_static(b"token=t&client_id=id&client_secret=s")
        );
        let debug = format!("{client:?}");
        assert!(!debug.contains("\"s\""), "{debug}");
    }
}
