//! One outbound stack per provider: the user's upstream token attached, refreshed and retried
//! (`RefreshAndRetry`), the provider's 401/403 read for what they mean (`ClassifyUpstream`, with
//! the vendor rules), and a timeout on each attempt, over the shared HTTP client.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use tower::{ServiceBuilder, timeout::Timeout};
use tower_bearer::{
    BoxError,
    http_client::HttpClient,
    upstream::{
        classify::{ClassifyUpstream, ClassifyUpstreamLayer, Standard},
        connect::Connector,
        grant::{OAuthClient, RefreshGrant},
        refresh::{RefreshAndRetry, RefreshAndRetryLayer, RetryBody},
    },
};

use super::{
    config::{ClientAuth, Limits, ProviderSettings, Settings},
    forward::BaseUrl,
    http_client::HttpsClient,
    store::LinkStore,
};

/// The client for token endpoints (refresh, code exchange).
pub type TokenClient = HttpsClient<Full<Bytes>>;

/// The client for providers' APIs: `RefreshAndRetry` hands it bodies it can send twice.
pub type ApiClient = HttpsClient<RetryBody<Full<Bytes>>>;

/// The whole outbound stack of one provider.
pub type ApiStack =
    RefreshAndRetry<ClassifyUpstream<Timeout<ApiClient>, Standard>, LinkStore, RefreshGrant>;

/// A configured provider with its stack.
pub struct Provider {
    /// Its name (`/api/{name}/…`, `next-hop` in `Proxy-Status`).
    pub name: Arc<str>,
    /// Its API's base URL, split.
    pub base: BaseUrl,
    /// The stack calls go through.
    pub api: ApiStack,
    /// Its connect flow (and the client its refresh grant uses too).
    pub connector: Connector,
}

/// Every provider, by name.
pub type Providers = BTreeMap<String, Arc<Provider>>;

/// Builds the stacks; all share one token store and one pool of connections.
pub fn build(
    settings: &Settings,
    store: &LinkStore,
    api: &ApiClient,
    tokens: &TokenClient,
) -> Result<Providers, BoxError> {
    settings
        .providers
        .iter()
        .map(|(name, provider)| {
            let connector = connector(name, provider, settings, tokens);
            let stack = stack(name, provider, settings, store, api, &connector);
            let provider = Provider {
                name: Arc::from(name.as_str()),
                base: BaseUrl::new(&provider.base_url)?,
                api: stack,
                connector,
            };
            Ok((name.clone(), Arc::new(provider)))
        })
        .collect()
}

fn stack(
    name: &str,
    provider: &ProviderSettings,
    settings: &Settings,
    store: &LinkStore,
    api: &ApiClient,
    connector: &Connector,
) -> ApiStack {
    let Limits {
        upstream_timeout,
        max_request_body,
        ..
    } = settings.limits;
    // The grant keeps its own, longer time limit: a late answer may carry a rotated refresh
    // token, which the refresh layer still stores after the callers were told to retry.
    let grant = connector.refresh_grant();
    let classifier = provider
        .rules
        .iter()
        .cloned()
        .fold(Standard::new(), Standard::rule);
    ServiceBuilder::new()
        .layer(
            RefreshAndRetryLayer::new(name, store.clone(), grant)
                // Absolute: the `Link` and the 303 must work wherever the caller resolves them.
                .connect_url(format!("{}/connect/{name}", settings.public_url))
                .refresh_skew(provider.refresh_skew)
                // The forwarder buffers bodies up to this size anyway: every call can be retried.
                .replay_limit(max_request_body),
        )
        .layer(ClassifyUpstreamLayer::with_classifier(classifier))
        // Per attempt, to the response headers; an elapsed timer is reported as 504 (row U9).
        .timeout(upstream_timeout)
        .service(api.clone())
}

/// The provider's connect flow, as the OAuth client configured for it.
fn connector(
    name: &str,
    provider: &ProviderSettings,
    settings: &Settings,
    tokens: &TokenClient,
) -> Connector {
    let client = OAuthClient::new(HttpClient::new(tokens.clone()), provider.client_id.clone());
    let client = match (&provider.client_auth, &provider.client_secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => client.client_secret_basic(secret.clone()),
        (ClientAuth::ClientSecretPost, Some(secret)) => client.client_secret_post(secret.clone()),
        _ => client,
    };
    let mut connector = Connector::new(
        name,
        provider.authorize_url.clone(),
        provider.token_url.clone(),
        client,
        format!("{}/connect/{name}/callback", settings.public_url),
    )
    .scopes(provider.scopes.iter().cloned());
    if let Some(resource) = &provider.resource {
        connector = connector.resource(resource.clone());
    }
    for (param, value) in &provider.authorize_params {
        connector = connector.param(param.clone(), value.clone());
    }
    if let Some(revocation) = &provider.revocation_url {
        connector = connector.revocation_endpoint(revocation.clone());
    }
    if let Some(issuer) = &provider.issuer {
        connector = connector.issuer(issuer.clone(), provider.iss_parameter_supported);
    }
    connector
}
