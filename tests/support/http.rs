//! A tiny HTTP/1.1 client for tests: hyper-util's legacy client, no connection reuse (providers
//! are stopped and restarted under the tests' feet), whole bodies collected into `Bytes`.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

/// The client type the helpers use; also a `tower::Service<Request<Full<Bytes>>>`, so it can be
/// handed to the crate's key sources as their HTTP client.
pub type HyperClient = Client<HttpConnector, Full<Bytes>>;

/// A hyper-util client that opens a fresh connection per request.
pub fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// A collected response.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body parsed as JSON (panics with the body in the message when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as a `&str` (`None` when absent or not visible ASCII).
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.header(header::LOCATION)
    }
}

/// Sends `req`, collects the body; panics on transport errors or after 20 s.
pub async fn send(client: &HyperClient, req: Request<Full<Bytes>>) -> TestResponse {
    try_send(client, req)
        .await
        .unwrap_or_else(|e| panic!("HTTP request failed: {e}"))
}

/// Sends `req`, collects the body; transport errors and timeouts become `Err`.
pub async fn try_send(
    client: &HyperClient,
    req: Request<Full<Bytes>>,
) -> Result<TestResponse, String> {
    let uri = req.uri().clone();
    let fut = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("{uri}: {e:?}"))?;
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{uri}: body: {e}"))?
            .to_bytes();
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .map_err(|_| format!("{uri}: timed out"))?
}

/// A request builder preset with method and URI.
pub fn request(method: Method, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// `GET uri` with the given headers.
pub async fn get(client: &HyperClient, uri: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut b = request(Method::GET, uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::default()).unwrap()).await
}

/// `GET uri` with `Authorization: Bearer <token>`.
pub async fn get_bearer(client: &HyperClient, uri: &str, token: &str) -> TestResponse {
    get(
        client,
        uri,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
}

/// The value of an HTTP Basic `Authorization` header (RFC 6749 §2.3.1: both parts form-encoded).
pub fn basic_auth(user: &str, password: &str) -> HeaderValue {
    let raw = format!("{}:{}", form_encode(user), form_encode(password));
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    HeaderValue::from_str(&format!("Basic {b64}")).unwrap()
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'*');
    percent_encoding::utf8_percent_encode(s, SET)
        .to_string()
        .replace("%20", "+")
}

/// A form body from pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `POST uri` with a form body and extra headers.
pub async fn post_form(
    client: &HyperClient,
    uri: &str,
    headers: &[(http::HeaderName, HeaderValue)],
    pairs: &[(&str, &str)],
) -> TestResponse {
    let mut b = request(Method::POST, uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        b = b.header(k, v);
    }
    send(client, b.body(Full::new(Bytes::from(form(pairs)))).unwrap()).await
}

/// One query parameter of a URL (decoded), e.g. the `code` of a redirect.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Serves an axum `Router` (or any compatible service) on an ephemeral loopback port; returns
/// its base URL (`http://127.0.0.1:PORT`). The server task ends with the test's runtime.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}
