//! The refresh grant (RFC 6749 §6): [`Refresher`] and its standard implementation,
//! [`RefreshGrant`], over an [`OAuthClient`].

use std::{fmt, future::Future, time::Duration};

use http::Uri;

use super::{
    DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT,
    answer::{GrantError, TokenResponse},
    client::{ClientAuth, Form, OAuthClient},
};
use crate::{http_client::HttpClient, upstream::store::TokenSecret};

/// Obtains a new access token with a refresh token.
///
/// [`RefreshGrant`] is the standard implementation; implement this for a provider with a
/// non-standard token endpoint (or use [`refresher_fn`]).
pub trait Refresher: Clone + Send + Sync + 'static {
    /// Exchanges `refresh_token` for a new access token.
    fn refresh(
        &self,
        refresh_token: &TokenSecret,
    ) -> impl Future<Output = Result<TokenResponse, GrantError>> + Send + 'static;
}

/// A [`Refresher`] from a closure, see [`refresher_fn`].
#[derive(Clone, Copy)]
pub struct RefresherFn<F> {
    f: F,
}

impl<F> fmt::Debug for RefresherFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefresherFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A [`Refresher`] from a closure `Fn(TokenSecret) -> impl Future<Output = Result<TokenResponse,
/// GrantError>>`.
pub fn refresher_fn<F, Fut>(f: F) -> RefresherFn<F>
where
    F: Fn(TokenSecret) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenResponse, GrantError>> + Send + 'static,
{
    RefresherFn { f }
}

impl<F, Fut> Refresher for RefresherFn<F>
where
    F: Fn(TokenSecret) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenResponse, GrantError>> + Send + 'static,
{
    fn refresh(
        &self,
        refresh_token: &TokenSecret,
    ) -> impl Future<Output = Result<TokenResponse, GrantError>> + Send + 'static {
        (self.f)(refresh_token.clone())
    }
}

/// The refresh grant of one provider, over an [`OAuthClient`].
///
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    client: OAuthClient,
    token_endpoint: Uri,
    scope: Option<String>,
    resources: Vec<String>,
}

impl RefreshGrant {
    /// A public client `client_id` refreshing at `token_endpoint` (an absolute URI) through
    /// `http`.
    pub fn new(http: HttpClient, token_endpoint: Uri, client_id: impl Into<String>) -> Self {
        Self::with_client(OAuthClient::new(http, client_id), token_endpoint)
    }

    /// Refreshes at `token_endpoint` as `client` (the one the connect flow exchanges codes as).
    /// Unless `client` sets its own, the grant's limits are [`DEFAULT_TIMEOUT`] (long: see
    /// [`timeout`](Self::timeout)) and [`DEFAULT_BODY_LIMIT`].
    pub fn with_client(client: OAuthClient, token_endpoint: Uri) -> Self {
        let client = match client.time_limit() {
            Some(_) => client,
            None => client.timeout(DEFAULT_TIMEOUT),
        };
        let client = match client.answer_limit() {
            Some(_) => client,
            None => client.body_limit(DEFAULT_BODY_LIMIT),
        };
        Self {
            client,
            token_endpoint,
            scope: None,
            resources: Vec::new(),
        }
    }

    /// Authenticates with `client_secret_basic` (RFC 6749 §2.3.1).
    pub fn client_secret_basic(mut self, secret: impl Into<TokenSecret>) -> Self {
        self.client = self.client.client_secret_basic(secret);
        self
    }

    /// Authenticates with `client_secret_post` (RFC 6749 §2.3.1).
    pub fn client_secret_post(mut self, secret: impl Into<TokenSecret>) -> Self {
        self.client = self.client.client_secret_post(secret);
        self
    }

    /// Asks for `scope` (space-separated) on every refresh; it must not exceed the granted
    /// scope (RFC 6749 §6). Unset, the new token has the scope of the old one.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Asks for a token for `resource` (RFC 8707 §2.2); may be called more than once.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// How long the token endpoint has to answer ([`DEFAULT_TIMEOUT`] unless set).
    ///
    /// A provider that rotates refresh tokens retires the old one as soon as it receives the
    /// request, so an answer given up on loses the link. Under
    /// [`RefreshAndRetry`](crate::upstream::refresh::RefreshAndRetry), requests stop waiting at
    /// the layer's refresh timeout, but the answer is awaited (and stored) up to six refresh
    /// timeouts: keep this at least that long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.timeout(timeout);
        self
    }

    /// The largest answer read ([`DEFAULT_BODY_LIMIT`] unless set); a longer one is treated as
    /// unparseable.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.client = self.client.body_limit(bytes);
        self
    }

    /// The client authentication method.
    pub fn client_auth(&self) -> ClientAuth {
        self.client.client_auth()
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> &Uri {
        &self.token_endpoint
    }

    /// The OAuth client it refreshes as.
    pub fn client(&self) -> &OAuthClient {
        &self.client
    }

    /// The form of a refresh with `refresh_token`.
    fn form(&self, refresh_token: &TokenSecret) -> Form {
        let mut form = Form::new()
            .field("grant_type", "refresh_token")
            .field("refresh_token", refresh_token.expose_secret());
        if let Some(scope) = &self.scope {
            form = form.field("scope", scope);
        }
        for resource in &self.resources {
            form = form.field("resource", resource);
        }
        form
    }
}

impl Refresher for RefreshGrant {
    fn refresh(
        &self,
        refresh_token: &TokenSecret,
    ) -> impl Future<Output = Result<TokenResponse, GrantError>> + Send + 'static {
        self.client
            .token_request(&self.token_endpoint, self.form(refresh_token))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{Request, header::AUTHORIZATION};
    use http_body_util::Full;

    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn a_refresh_asks_for_its_scope_and_resources() {
        let http = HttpClient::new(tower::service_fn(|_: Request<Full<Bytes>>| async {
            Err::<http::Response<Full<Bytes>>, crate::BoxError>("not sent".into())
        }));
        let grant = RefreshGrant::new(http, Uri::from_static("https://p.example/token"), "id")
            .client_secret_basic("s")
            .scope("a b")
            .resource("https://api.example/");
        let request = grant
            .client()
            .request(grant.token_endpoint(), grant.form(&TokenSecret::new("r+1")));
        assert!(request.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(
            request.into_body().collect().await.unwrap().to_bytes(),
            Bytes::from_static(b"grant_type=refresh_token&refresh_token=r%2B1&scope=a%20b&resource=https%3A%2F%2Fapi.example%2F")
        );
        assert!(!format!("{grant:?}").contains("\"s\""));
    }
}
