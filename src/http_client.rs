//! The one HTTP-client abstraction for the requests this crate makes itself — discovery, JWKS,
//! introspection, token endpoints: any tower service the application supplies.

use std::{fmt, time::Duration};

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde::de::DeserializeOwned;
use tower::{ServiceExt, util::BoxCloneSyncService};
use tower_service::Service;

use crate::BoxError;

#[cfg(feature = "reqwest")]
mod reqwest;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use self::reqwest::ReqwestService;

type ErasedBody = UnsyncBoxBody<Bytes, BoxError>;
type Erased = BoxCloneSyncService<Request<Full<Bytes>>, Response<ErasedBody>, BoxError>;

/// An HTTP client for fetching JWKS, discovery documents and introspection answers.
///
/// [`HttpClient`] wraps a `tower::Service<http::Request<Full<Bytes>>>` — hyper-util's legacy
/// client, a client with TLS and proxies of the application's choosing, or a test double — and
/// adds what fetching keys needs: a timeout, a response-size limit, and errors that name the URL
/// but never a token or a credential.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use tower::service_fn;
/// use tower_bearer::http_client::HttpClient;
///
/// // Any tower service speaking `http` types will do; this one answers every request itself.
/// let client = HttpClient::new(service_fn(|_req: Request<Full<Bytes>>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(br#"{"keys":[]}"#))))
/// }))
/// .timeout(std::time::Duration::from_secs(3));
/// # let _ = client;
/// ```
///
/// With hyper-util's client (add an HTTPS connector such as `hyper-rustls` for real issuers):
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use tower_bearer::http_client::HttpClient;
///
/// let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let client = HttpClient::new(hyper);
/// # let _ = client;
/// ```
///
/// Without a client of your own, [`HttpClient::builtin`] (feature `client`, on by default) is
/// hyper-util's client over rustls, and the key sources use it unless given another; an
/// application's `reqwest::Client` plugs in through [`HttpClient::from_reqwest`] (feature
/// `reqwest`).
///
/// Cheap to clone. Defaults: 5 s timeout per request (connect to last body byte), 1 MiB
/// response limit.
#[derive(Clone)]
pub struct HttpClient {
    inner: Erased,
    timeout: Duration,
    max_body: usize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// Why a fetch failed. Names the URL, never a token or credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request could not be sent or the connection failed.
    #[error("request to {uri} failed: {}", Causes(source.as_ref()))]
    Transport {
        /// The URL.
        uri: Uri,
        /// The client's error.
        source: BoxError,
    },
    /// No complete answer within the timeout.
    #[error("request to {uri} timed out")]
    Timeout {
        /// The URL.
        uri: Uri,
    },
    /// The server answered with an unexpected status.
    #[error("{uri} answered {status}")]
    Status {
        /// The URL.
        uri: Uri,
        /// The status.
        status: StatusCode,
    },
    /// The body was too large or could not be read.
    #[error("the response from {uri} could not be read (too large or interrupted)")]
    Body {
        /// The URL.
        uri: Uri,
        /// The status the answer started with.
        status: StatusCode,
    },
    /// The body was not the expected document.
    #[error("the response from {uri} is not a valid {what}")]
    Invalid {
        /// The URL.
        uri: Uri,
        /// What was expected.
        what: &'static str,
    },
    /// The body is not JSON of the expected shape.
    #[error("the response from {uri} is not a valid {what}: {source}")]
    Unparseable {
        /// The URL.
        uri: Uri,
        /// What was expected.
        what: &'static str,
        /// What the JSON parser says (the documents read this way are public: no secret in it).
        source: serde_json::Error,
    },
    /// A discovery document names another issuer than the configured one.
    #[error(
        "the discovery document at {uri} names the issuer {found:?}, expected {expected:?}{}",
        if found.trim_end_matches('/') == expected.trim_end_matches('/') {
            " (they differ in the trailing slash: configure the issuer exactly as the provider spells it)"
        } else {
            ""
        }
    )]
    IssuerMismatch {
        /// The URL.
        uri: Uri,
        /// The configured issuer.
        expected: Box<str>,
        /// The issuer the document names.
        found: Box<str>,
    },
    /// A URL from configuration or a document is not a valid absolute URL.
    #[error("invalid URL in {what}")]
    InvalidUrl {
        /// Where the URL came from.
        what: &'static str,
    },
}

/// An error and its sources, `: `-separated: hyper-util's "client error (Connect)" alone does
/// not say that the connection was refused.
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A collected response.
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    /// Wraps an HTTP client service, for example hyper-util's
    /// `Client::builder(TokioExecutor::new()).build(https_connector)`.
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        fn erase<E: Into<BoxError>>(error: E) -> BoxError {
            error.into()
        }
        let inner = service
            .map_err(erase::<S::Error>)
            .map_response(|response: Response<B>| {
                response.map(|body| {
                    body.map_frame(|frame| {
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    })
                    .map_err(erase::<B::Error>)
                    .boxed_unsync()
                })
            });
        Self {
            inner: BoxCloneSyncService::new(inner),
            timeout: Duration::from_secs(5),
            max_body: 1024 * 1024,
        }
    }

    /// The built-in client: hyper-util's pooled HTTP/1.1 client over rustls, trusting the
    /// Mozilla roots (webpki-roots) with the crate's crypto backend, speaking HTTPS and plain
    /// HTTP (a loopback issuer in development). Connection attempts give up after 3 s, whole
    /// requests after 5 s, bodies over 1 MiB are refused.
    ///
    /// ```
    /// let client = tower_bearer::http_client::HttpClient::builtin();
    /// # let _ = client;
    /// ```
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn builtin() -> Self {
        use hyper_util::client::legacy::{Client, connect::HttpConnector};

        // With both backends compiled in, rustls cannot pick a process default: name ours.
        #[cfg(feature = "aws-lc-rs")]
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        #[cfg(not(feature = "aws-lc-rs"))]
        let provider = rustls::crypto::ring::default_provider();

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(3)));
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .expect("the crypto provider supports TLS 1.2 and 1.3")
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Self::new(
            Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Full<Bytes>>(connector),
        )
    }

    /// An application's `reqwest::Client` (its TLS, proxy and pool settings) as the client,
    /// through [`ReqwestService`], with this type's timeout and body limit on top.
    ///
    /// ```
    /// let client = tower_bearer::http_client::HttpClient::from_reqwest(reqwest::Client::new());
    /// # let _ = client;
    /// ```
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn from_reqwest(client: ::reqwest::Client) -> Self {
        Self::new(ReqwestService::new(client))
    }

    /// Limits each request, from sending to the last body byte.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limits the size of response bodies.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long each request may take.
    pub fn time_limit(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` and collects the answer, whatever its status.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Result<Fetched, FetchError> {
        let uri = request.uri().clone();
        let max_body = self.max_body;
        let service = self.inner.clone();
        let exchange = async {
            let response =
                service
                    .oneshot(request)
                    .await
                    .map_err(|source| FetchError::Transport {
                        uri: uri.clone(),
                        source,
                    })?;
            let (parts, body) = response.into_parts();
            let body = collect_limited(body, max_body)
                .await
                .ok_or_else(|| FetchError::Body {
                    uri: uri.clone(),
                    status: parts.status,
                })?;
            Ok(Fetched {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { uri }),
        }
    }

    /// `GET uri` expecting `200` and a public JSON document (discovery, JWKS: their parse errors
    /// may quote them); returns it with the response headers.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        uri: &Uri,
        what: &'static str,
    ) -> Result<(T, HeaderMap), FetchError> {
        let request = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|_| FetchError::InvalidUrl { what })?;
        let fetched = self.send(request).await?;
        if fetched.status != StatusCode::OK {
            return Err(FetchError::Status {
                uri: uri.clone(),
                status: fetched.status,
            });
        }
        let document =
            serde_json::from_slice(&fetched.body).map_err(|source| FetchError::Unparseable {
                uri: uri.clone(),
                what,
                source,
            })?;
        Ok((document, fetched.headers))
    }
}

/// The whole body, or `None` if it fails or exceeds `limit` bytes.
async fn collect_limited(mut body: ErasedBody, limit: usize) -> Option<Bytes> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if collected.len() + data.len() > limit {
                return None;
            }
            collected.extend_from_slice(&data);
        }
    }
    Some(collected.freeze())
}

/// The freshness lifetime a response grants (`Cache-Control: max-age` minus `Age`); `Some(0)`
/// for `no-store` / `no-cache`; `None` when it says nothing.
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "no-store" | "no-cache" => return Some(Duration::ZERO),
                "max-age" => {
                    if let Ok(seconds) = argument.trim().trim_matches('"').parse::<u64>() {
                        max_age = Some(max_age.map_or(seconds, |m: u64| m.min(seconds)));
                    }
                }
                _ => {}
            }
        }
    }
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn cache_control() {
        assert_eq!(max_age(&headers(&[])), None);
        assert_eq!(
            max_age(&headers(&[("cache-control", "public, max-age=600")])),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            max_age(&headers(&[
                ("cache-control", "Max-Age=\"60\""),
                ("age", "20")
            ])),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=60, no-cache")])),
            Some(Duration::ZERO)
        );
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=abc")])), None);
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=10"), ("age", "99")])),
            Some(Duration::ZERO)
        );
    }
}
