//! HTTP plumbing for the tests: one client type ([`TestClient`]), one way to serve an axum app
//! ([`serve`]), one collected response ([`Reply`]), a request builder ([`Req`]), form helpers and
//! a cookie-keeping [`Browser`].

use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

use base64::Engine as _;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode,
    header::{self, AsHeaderName},
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// How long one request may take, body included, before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The tests' HTTP/1.1 client: hyper-util's legacy client over plain TCP. With the default body
/// it is also a `tower::Service<Request<Full<Bytes>>>`, so it can be handed to the crate as its
/// HTTP client (key sources, refresh grants).
pub type TestClient<B = Full<Bytes>> = Client<HttpConnector, B>;

/// A client that keeps connections alive between requests.
pub fn client<B>() -> TestClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// A client that opens a fresh connection per request: for servers that are stopped and
/// restarted under the test's feet (the OpenID provider), where a kept connection would be dead.
pub fn client_without_reuse() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// Serves an axum `Router` on an ephemeral loopback port; returns its base URL
/// (`http://127.0.0.1:PORT`). The server task ends with the test's runtime.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// A loopback port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A port whose server reads each request and closes the connection without answering.
pub async fn hang_up_port() -> SocketAddr {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).await;
            drop(stream);
        }
    });
    address
}

/// A collected response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// A header as text; `None` when absent. Panics if the header is repeated or not visible
    /// ASCII.
    pub fn header<K>(&self, name: K) -> Option<&str>
    where
        K: AsHeaderName + fmt::Display + Clone,
    {
        let mut all = self.headers.get_all(name.clone()).iter();
        let first = all.next()?;
        assert!(
            all.next().is_none(),
            "header {name} is repeated: {:?}",
            self.headers
        );
        Some(
            first
                .to_str()
                .unwrap_or_else(|_| panic!("header {name} is not visible ASCII: {first:?}")),
        )
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.header(header::LOCATION)
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

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
}

/// Sends `req`, collects the body; panics on transport errors or after [`REQUEST_TIMEOUT`].
pub async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Reply {
    try_send(client, req)
        .await
        .unwrap_or_else(|e| panic!("HTTP request failed (did the server die?): {e}"))
}

/// Sends `req`, collects the body; transport errors and timeouts become `Err`.
pub async fn try_send(client: &TestClient, req: Request<Full<Bytes>>) -> Result<Reply, String> {
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
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{uri}: timed out"))?
}

/// A request under construction, sent relative to a base URL.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Appends a header (a repeated name is sent repeatedly).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_ref()).unwrap(),
        ));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends it to `{base}{path}`.
    pub async fn send(&self, client: &TestClient, base: &str) -> Reply {
        let mut builder = request(self.method.clone(), &format!("{base}{}", self.path));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        send(client, builder.body(Full::new(self.body.clone())).unwrap()).await
    }
}

/// A request builder preset with method and URI.
pub fn request(method: Method, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// `GET uri` with the given headers.
pub async fn get(client: &TestClient, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = request(Method::GET, uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(client, b.body(Full::default()).unwrap()).await
}

/// `GET uri` with `Authorization: Bearer <token>`.
pub async fn get_bearer(client: &TestClient, uri: &str, token: &str) -> Reply {
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

/// `application/x-www-form-urlencoded` decoding of one value.
pub fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A form body from pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The pairs of a form body (or a query string), decoded.
pub fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// `POST uri` with a form body and extra headers.
pub async fn post_form(
    client: &TestClient,
    uri: &str,
    headers: &[(HeaderName, HeaderValue)],
    pairs: &[(&str, &str)],
) -> Reply {
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
    parse_form(query)
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// A cookie-keeping client that does not follow redirects.
#[derive(Debug, Default)]
pub struct Browser {
    /// Cookies by name (an empty value deletes one).
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    /// Sends a request with the cookies kept so far, an optional form body and an optional
    /// bearer token; keeps the cookies the answer sets.
    pub async fn go(
        &mut self,
        client: &TestClient,
        method: Method,
        url: &str,
        form: Option<String>,
        bearer: Option<&str>,
    ) -> Reply {
        self.send(client, method, url, form, bearer, &[]).await
    }

    /// A top-level navigation to `url`, as a browser sends it (Fetch Metadata, an `Accept`
    /// asking for HTML), with the cookies kept so far — and `bearer`, standing in for however
    /// the page authenticates a navigation (a session, RFC 6750 §2.3's query parameter).
    pub async fn navigate(
        &mut self,
        client: &TestClient,
        url: &str,
        bearer: Option<&str>,
    ) -> Reply {
        let headers = [
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
            ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ];
        self.send(client, Method::GET, url, None, bearer, &headers)
            .await
    }

    async fn send(
        &mut self,
        client: &TestClient,
        method: Method,
        url: &str,
        form: Option<String>,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let body = Full::new(Bytes::from(form.unwrap_or_default()));
        let response = send(client, request.body(body).unwrap()).await;
        for set in response.headers.get_all(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                let (name, value) = (name.trim(), value.trim());
                if value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        response
    }
}
