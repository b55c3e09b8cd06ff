//! One outbound stack per provider: the user's upstream token attached, refreshed and retried
//! (`RefreshAndRetry`), the provider's 401/403 read for what they mean (`ClassifyUpstream`, with
//! the vendor rules), and a timeout on each attempt, over the shared HTTP client.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use tower::{ServiceBuilder, timeout::Timeout};
use tower_bearer::upstream::{
    classify::{ClassifyUpstream, ClassifyUpstreamLayer, Standard},
    grant::RefreshGrant,
    refresh::{RefreshAndRetry, RefreshAndRetryLayer, RetryBody},
};

use super::{
    config::{ClientAuth, Limits, ProviderSettings, Settings},
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
    /// Its configuration.
    pub settings: ProviderSettings,
    /// The stack calls go through.
    pub api: ApiStack,
    /// The redirect URI registered at the provider for the connect flow.
    pub redirect_uri: String,
}

/// Every provider, by name.
pub type Providers = BTreeMap<String, Arc<Provider>>;

/// Builds the stacks; all share one token store and one pool of connections.
pub fn build(
    settings: &Settings,
    store: &LinkStore,
    api: &ApiClient,
    tokens: &TokenClient,
) -> Providers {
    settings
        .providers
        .iter()
        .map(|(name, provider)| {
            let stack = stack(name, provider, settings, store, api, tokens);
            let provider = Provider {
                name: Arc::from(name.as_str()),
                settings: provider.clone(),
                api: stack,
                redirect_uri: format!("{}/connect/{name}/callback", settings.public_url),
            };
            (name.clone(), Arc::new(provider))
        })
        .collect()
}

fn stack(
    name: &str,
    provider: &ProviderSettings,
    settings: &Settings,
    store: &LinkStore,
    api: &ApiClient,
    tokens: &TokenClient,
) -> ApiStack {
    let Limits {
        upstream_timeout,
        max_request_body,
        ..
    } = settings.limits;
    // The grant keeps its own, longer time limit: a late answer may carry a rotated refresh
    // token, which the refresh layer still stores after the callers were told to retry.
    let grant = refresh_grant(provider, tokens.clone());
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

fn refresh_grant(provider: &ProviderSettings, client: TokenClient) -> RefreshGrant {
    let token_url: Uri = provider.token_url.clone();
    let grant = RefreshGrant::new(
        tower_bearer::http_client::HttpClient::new(client),
        token_url,
        provider.client_id.clone(),
    );
    let grant = match (&provider.client_auth, &provider.client_secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => grant.client_secret_basic(secret.clone()),
        (ClientAuth::ClientSecretPost, Some(secret)) => grant.client_secret_post(secret.clone()),
        _ => grant,
    };
    match &provider.resource {
        Some(resource) => grant.resource(resource.clone()),
        None => grant,
    }
}
