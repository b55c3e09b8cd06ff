//! Validation of opaque tokens by asking the authorization server (RFC 7662 introspection).

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{StatusCode, Uri};
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    OneOrMany, StandardClaims, ValidateToken, Verdict,
    discovery::{absolute, discover},
    jwks::{SourceError, default_client},
};
use crate::{
    failure::{AuthError, TokenRejection},
    http_client::{FetchError, HttpClient},
    token::BearerToken,
    upstream::grant::{Form, OAuthClient},
};

/// Validates opaque tokens through an RFC 7662 introspection endpoint, yielding claims `C`
/// deserialized from the introspection answer.
///
/// Each token is posted to the introspection endpoint with the resource server's own client
/// credentials (`client_secret_basic`). The answer decides:
///
/// | introspection answer | the caller sees |
/// |---|---|
/// | `200`, `active: true`, `iss`/`aud`/`exp`/`nbf` acceptable | the claims reach the handler |
/// | `200`, `active: false` (unknown, expired, revoked…) | `401 invalid_token` (row I4) |
/// | `200`, active but wrong `iss` or `aud`, or past `exp` | `401 invalid_token` (row I4) |
/// | network error, timeout, `5xx`, unreadable answer | `503` + `Retry-After` (row I8) |
/// | `401`/`403` (our client credentials are refused) | `503` + `Retry-After`, logged as an error |
///
/// Introspection costs a round trip per token; put a [`CachedValidator`](super::CachedValidator)
/// in front, mindful of its revocation window.
///
/// ```no_run
/// use tower_bearer::validate::{IntrospectionValidator, StandardClaims};
///
/// // Through `HttpClient::builtin()`, unless `.client(..)` gives another.
/// let validator = IntrospectionValidator::<StandardClaims>::builder(
///         "https://login.example.com/oauth2/introspect")
///     .client_credentials("my-api", "its secret")
///     .issuer("https://login.example.com")
///     .audience("https://api.example.com")
///     .build()
///     .unwrap();
/// # let _ = validator;
/// ```
pub struct IntrospectionValidator<C = StandardClaims> {
    shared: Arc<Shared>,
    claims: PhantomData<fn() -> C>,
}

impl<C> Clone for IntrospectionValidator<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            claims: PhantomData,
        }
    }
}

impl<C> fmt::Debug for IntrospectionValidator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionValidator")
            .field("endpoint", &self.shared.endpoint)
            .field("client_id", &self.shared.oauth.client_id())
            .field("issuer", &self.shared.issuer)
            .field("audiences", &self.shared.audiences)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Endpoint {
    Fixed(Uri),
    Discovered {
        issuer: String,
        resolved: tokio::sync::OnceCell<Uri>,
        /// When discovery last failed: within [`DISCOVERY_BACKOFF`] of it, requests fail at
        /// once instead of queueing for attempts of their own.
        failed_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    },
}

/// How long a failed discovery is not tried again (JWKS fetches back off the same way).
const DISCOVERY_BACKOFF: Duration = Duration::from_secs(1);

struct Shared {
    endpoint: Endpoint,
    /// For discovery.
    client: HttpClient,
    /// The resource server as an OAuth client of the introspection endpoint.
    oauth: OAuthClient,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    retry_after: Duration,
}

/// The members of an introspection answer that are checked here.
#[derive(Deserialize)]
struct Checked {
    active: bool,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

impl IntrospectionValidator {
    /// Introspects at `endpoint`. The claims are [`StandardClaims`] unless
    /// [`claims`](IntrospectionValidatorBuilder::claims) names a type of your own.
    pub fn builder(endpoint: &str) -> IntrospectionValidatorBuilder {
        IntrospectionValidatorBuilder::new(
            absolute(endpoint, "introspection endpoint")
                .map(Endpoint::Fixed)
                .map_err(|_| SourceError::InvalidUrl("introspection endpoint")),
        )
    }

    /// Introspects at the `introspection_endpoint` of `issuer`'s discovery document (fetched at
    /// the first token), and requires `iss`, when the answer carries one, to equal `issuer`.
    pub fn discover(issuer: &str) -> IntrospectionValidatorBuilder {
        let endpoint = super::discovery::discovery_url(issuer)
            .map(|_| Endpoint::Discovered {
                issuer: issuer.to_owned(),
                resolved: tokio::sync::OnceCell::new(),
                failed_at: std::sync::Mutex::default(),
            })
            .map_err(|_| SourceError::InvalidUrl("issuer"));
        let builder = IntrospectionValidatorBuilder::new(endpoint);
        builder.issuer(issuer)
    }
}

impl Shared {
    /// The introspection endpoint; `None` while discovery fails (logged once per attempt).
    async fn endpoint(&self) -> Option<Uri> {
        let (issuer, resolved, failed_at) = match &self.endpoint {
            Endpoint::Fixed(uri) => return Some(uri.clone()),
            Endpoint::Discovered {
                issuer,
                resolved,
                failed_at,
            } => (issuer, resolved, failed_at),
        };
        if let Some(uri) = resolved.get() {
            return Some(uri.clone());
        }
        let backing_off = || {
            failed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|at| at.elapsed() < DISCOVERY_BACKOFF)
        };
        if backing_off() {
            return None;
        }
        let discovered = resolved
            .get_or_try_init(|| async {
                // Queued behind an attempt that just failed: don't make another one.
                if backing_off() {
                    return Err(None);
                }
                let found = async {
                    let metadata = discover(&self.client, issuer).await?;
                    let endpoint =
                        metadata
                            .introspection_endpoint
                            .ok_or(FetchError::InvalidUrl {
                                what: "introspection_endpoint (absent from the discovery document)",
                            })?;
                    absolute(&endpoint, "introspection_endpoint")
                };
                found.await.map_err(|error| {
                    tracing::warn!(%error, "introspection endpoint discovery failed");
                    *failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(tokio::time::Instant::now());
                    Some(error)
                })
            })
            .await;
        discovered.ok().cloned()
    }

    fn unavailable(&self) -> AuthError {
        AuthError::ValidationUnavailable {
            retry_after: self.retry_after,
        }
    }

    async fn introspect<C: DeserializeOwned>(&self, token: &BearerToken) -> Result<C, AuthError> {
        let endpoint = self.endpoint().await.ok_or_else(|| self.unavailable())?;
        let form = Form::new()
            .field("token", token.as_str())
            .field("token_type_hint", "access_token");
        let fetched = self.oauth.post(&endpoint, form).await.map_err(|error| {
            tracing::warn!(%error, "token introspection failed");
            self.unavailable()
        })?;
        match fetched.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST => {
                tracing::error!(
                    uri = %endpoint,
                    status = %fetched.status,
                    "the introspection endpoint refused our client credentials or request"
                );
                return Err(self.unavailable());
            }
            status => {
                tracing::warn!(uri = %endpoint, %status, "token introspection failed");
                return Err(self.unavailable());
            }
        }
        let answer: serde_json::Value = serde_json::from_slice(&fetched.body).map_err(|_| {
            tracing::warn!(uri = %endpoint, "the introspection answer is not JSON");
            self.unavailable()
        })?;
        let checked: Checked = serde_json::from_value(answer.clone()).map_err(|_| {
            tracing::warn!(uri = %endpoint, "the introspection answer is not an RFC 7662 response");
            self.unavailable()
        })?;
        self.check(&checked).map_err(AuthError::InvalidToken)?;
        serde_json::from_value(answer)
            .map_err(|_| AuthError::InvalidToken(TokenRejection::MissingClaim))
    }

    fn check(&self, answer: &Checked) -> Result<(), TokenRejection> {
        if !answer.active {
            return Err(TokenRejection::Inactive);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if answer
            .exp
            .is_some_and(|exp| exp.saturating_add(self.leeway) <= now)
        {
            return Err(TokenRejection::Expired);
        }
        if answer
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(TokenRejection::NotYetValid);
        }
        if let (Some(expected), Some(iss)) = (&self.issuer, &answer.iss)
            && expected != iss
        {
            return Err(TokenRejection::WrongIssuer);
        }
        if !self.audiences.is_empty() {
            let accepted = answer
                .aud
                .as_ref()
                .is_some_and(|aud| self.audiences.iter().any(|a| aud_contains(aud, a)));
            if !accepted {
                return Err(TokenRejection::WrongAudience);
            }
        }
        Ok(())
    }
}

fn aud_contains(aud: &OneOrMany, value: &str) -> bool {
    match aud {
        OneOrMany::One(one) => one == value,
        OneOrMany::Many(many) => many.iter().any(|a| a == value),
    }
}

impl<C> ValidateToken for IntrospectionValidator<C>
where
    C: DeserializeOwned + Send + Sync + 'static,
{
    type Claims = C;
    type Future = Pin<Box<dyn Future<Output = Result<Arc<C>, AuthError>> + Send>>;

    fn validate(&self, token: &BearerToken) -> Verdict<Arc<C>, Self::Future> {
        let shared = self.shared.clone();
        let token = token.clone();
        Verdict::Pending(Box::pin(async move {
            shared.introspect(&token).await.map(Arc::new)
        }))
    }
}

/// Configures an [`IntrospectionValidator`].
pub struct IntrospectionValidatorBuilder<C = StandardClaims> {
    endpoint: Result<Endpoint, SourceError>,
    client: Option<HttpClient>,
    credentials: Option<(String, String)>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    retry_after: Duration,
    claims: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for IntrospectionValidatorBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionValidatorBuilder")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.credentials.as_ref().map(|(id, _)| id))
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl IntrospectionValidatorBuilder {
    fn new(endpoint: Result<Endpoint, SourceError>) -> Self {
        Self {
            endpoint,
            client: default_client(),
            credentials: None,
            issuer: None,
            audiences: Vec::new(),
            leeway: 30,
            retry_after: Duration::from_secs(5),
            claims: PhantomData,
        }
    }
}

impl<C> IntrospectionValidatorBuilder<C> {
    /// Deserializes the claims into `D` (any `serde` type) instead of [`StandardClaims`].
    pub fn claims<D>(self) -> IntrospectionValidatorBuilder<D> {
        IntrospectionValidatorBuilder {
            endpoint: self.endpoint,
            client: self.client,
            credentials: self.credentials,
            issuer: self.issuer,
            audiences: self.audiences,
            leeway: self.leeway,
            retry_after: self.retry_after,
            claims: PhantomData,
        }
    }

    /// The HTTP client for discovery and introspection (default: [`HttpClient::builtin`]).
    pub fn client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Authenticates to the endpoint with HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1).
    pub fn client_credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.credentials = Some((client_id.into(), client_secret.into()));
        self
    }

    /// Requires the answer's `iss`, when present, to equal `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires the answer's `aud` to contain this audience (or one of several, if called again).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock-skew allowance for `exp` and `nbf` in the answer, in seconds (default 30).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// The `Retry-After` sent with a 503 when the endpoint is unavailable (default 5 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Builds the validator. Nothing is fetched yet.
    pub fn build(self) -> Result<IntrospectionValidator<C>, SourceError> {
        let endpoint = self.endpoint?;
        let client = self.client.ok_or(SourceError::NoClient)?;
        let oauth = match self.credentials {
            Some((id, secret)) => OAuthClient::new(client.clone(), id).client_secret_basic(secret),
            None => OAuthClient::new(client.clone(), ""),
        };
        Ok(IntrospectionValidator {
            shared: Arc::new(Shared {
                endpoint,
                client,
                oauth,
                issuer: self.issuer,
                audiences: self.audiences,
                leeway: self.leeway,
                retry_after: self.retry_after,
            }),
            claims: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://issuer.test";

    /// An issuer whose discovery document is down until `up`, counting discovery fetches; its
    /// introspection endpoint calls every token active.
    fn issuer(up: Arc<AtomicBool>, discoveries: Arc<AtomicUsize>) -> HttpClient {
        HttpClient::new(tower::service_fn(move |request: Request<Full<Bytes>>| {
            let (up, discoveries) = (up.clone(), discoveries.clone());
            async move {
                let body = if request.uri().path().ends_with("openid-configuration") {
                    discoveries.fetch_add(1, Ordering::SeqCst);
                    if !up.load(Ordering::SeqCst) {
                        return Err::<_, crate::BoxError>("connection refused".into());
                    }
                    json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}/jwks"),
                        "introspection_endpoint": format!("{ISSUER}/introspect")})
                } else {
                    json!({"active": true, "iss": ISSUER, "sub": "alice"})
                };
                Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
            }
        }))
    }

    /// While discovery fails, concurrent requests share one attempt (and the following ones
    /// fail at once) instead of each queueing for an attempt of its own; it is tried again
    /// after the backoff.
    #[tokio::test(start_paused = true)]
    async fn a_failing_discovery_is_tried_once_per_backoff() {
        let (up, discoveries) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let validator = IntrospectionValidator::<StandardClaims>::discover(ISSUER)
            .client(issuer(up.clone(), Arc::clone(&discoveries)))
            .build()
            .unwrap();
        let token = BearerToken::new("opaque").unwrap();
        let attempts: Vec<_> = (0..20)
            .map(|_| {
                let (validator, token) = (validator.clone(), token.clone());
                tokio::spawn(async move { validator.validate(&token).outcome().await })
            })
            .collect();
        for attempt in attempts {
            let outcome = attempt.await.unwrap();
            assert!(
                matches!(outcome, Err(AuthError::ValidationUnavailable { .. })),
                "{outcome:?}"
            );
        }
        assert_eq!(discoveries.load(Ordering::SeqCst), 1);

        up.store(true, Ordering::SeqCst);
        assert!(validator.validate(&token).outcome().await.is_err());
        assert_eq!(discoveries.load(Ordering::SeqCst), 1, "within the backoff");
        tokio::time::advance(DISCOVERY_BACKOFF).await;
        let claims = validator.validate(&token).outcome().await.unwrap();
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(discoveries.load(Ordering::SeqCst), 2);
    }
}
