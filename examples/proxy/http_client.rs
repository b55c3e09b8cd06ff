//! The proxy's outbound HTTP client: hyper-util's pooled client over rustls (with the Mozilla
//! root certificates), also speaking plain HTTP for loopback providers in tests and the demo.

use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// A client sending request bodies of type `B`.
pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// A client whose connection attempts give up after `connect_timeout`; a provider that is down
/// then answers quickly as unreachable instead of holding the caller until the deadline.
pub fn https<B>(connect_timeout: Duration) -> HttpsClient<B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let connector = HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}
