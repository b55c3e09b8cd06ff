//! `/api/{provider}/{*path}`: the caller's request, sent on to the provider on the caller's
//! behalf with the user's upstream token.
//!
//! The caller was authenticated and authorized by the layers around this service. Here the
//! request is rebuilt for the provider — its path under the provider's base URL, the caller's
//! headers minus those meant for this hop or for the proxy (its `Authorization`, its cookies) —
//! with its body read whole, within a size limit, so that it can be sent again after a refresh.
//! Failures of the upstream side are answered as pending failures, rendered by the enclosing
//! `ValidateBearer` with the same emitter as the caller's own.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header,
    uri::{self, Authority, PathAndQuery, Scheme},
};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use tokio::time::{Instant, timeout_at};
use tower::{Service, ServiceExt as _};
use tower_bearer::{
    BoxError, emit::pending_response, failure::AuthError, upstream::UpstreamError,
    validate::StandardClaims,
};

use super::{providers::Provider, reply::problem, router::App};

/// Whether `path` is the forwarding route's, `/api/{provider}/{rest}` with neither part empty.
pub fn is_forwarded(path: &str) -> bool {
    split_path(path).is_some_and(|(provider, rest)| !provider.is_empty() && rest.len() > 1)
}

/// The forwarder, as the service at the bottom of the forwarding stack.
#[derive(Clone)]
pub struct Forward {
    app: App,
}

impl Forward {
    /// Forwards with `app`'s providers and links.
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

impl<B> Service<Request<B>> for Forward
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move { Ok(forward(app, request).await) })
    }
}

/// Forwards `request`, on behalf of the caller whose claims the layers above put in it.
async fn forward<B>(app: App, request: Request<B>) -> Response
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let Some(claims) = request.extensions().get::<Arc<StandardClaims>>().cloned() else {
        // Outside the validating layer: a wiring mistake, refused as unauthenticated.
        return pending_response(AuthError::MissingCredentials);
    };
    if !is_forwardable(request.method()) {
        let mut refused = problem(StatusCode::METHOD_NOT_ALLOWED, "Method not forwarded");
        refused
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        return refused;
    }
    let deadline = Instant::now() + app.settings.limits.request_timeout;
    let Some((provider, rest)) = split_path(request.uri().path()) else {
        return problem(StatusCode::BAD_REQUEST, "Malformed path");
    };
    let Some(provider) = app.providers.get(provider).cloned() else {
        return problem(StatusCode::NOT_FOUND, "No such provider");
    };
    // The validator requires `sub`: it names the user whose link is used.
    let Some(key) = app.connect.link_key(&claims, provider.name.clone()) else {
        return problem(StatusCode::FORBIDDEN, "The token names no user");
    };
    let Some(uri) = upstream_uri(&provider, rest, request.uri().query()) else {
        return problem(StatusCode::BAD_REQUEST, "Path not allowed");
    };

    let (parts, body) = request.into_parts();
    // A navigation that meets a grant gone is sent to the provider (row U4).
    let navigation = app.connect.navigation(&parts);
    // Most requests have no body: nothing to wait for.
    let body = if body.is_end_stream() {
        Bytes::new()
    } else {
        let limit = app.settings.limits.max_request_body;
        match timeout_at(deadline, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) if error.is::<LengthLimitError>() => {
                return problem(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
            }
            Ok(Err(_)) => return problem(StatusCode::BAD_REQUEST, "Request body unreadable"),
            Err(_) => {
                return problem(
                    StatusCode::REQUEST_TIMEOUT,
                    "Request body not received in time",
                );
            }
        }
    };

    let mut upstream = http::Request::new(Full::new(body));
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    *upstream.version_mut() = Version::HTTP_11;
    *upstream.headers_mut() = forwarded_headers(parts.headers, &app.via);
    // The caller's extensions are for this side; their map (allocated for the claims) is
    // emptied and reused for what the outbound layers read.
    let mut extensions = parts.extensions;
    extensions.clear();
    extensions.insert(key.clone());
    *upstream.extensions_mut() = extensions;

    match timeout_at(deadline, provider.api.clone().oneshot(upstream)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            // The provider's cookies are for its own site, not the proxy's origin.
            remove_present(&mut parts.headers, &[header::SET_COOKIE]);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(error)) => {
            // The error's text names the provider and the reason, never a token.
            tracing::warn!(provider = error.provider(), %error, "upstream failure");
            app.connect.failure_response(navigation, &key, error).await
        }
        Err(_) => pending_response(UpstreamError::TimedOut {
            provider: provider.name.clone(),
            source: "the request deadline passed".into(),
        }),
    }
}

/// The methods a `405` names: the standard ones this proxy forwards. Others (an API's own
/// extension methods) are forwarded too; only the two below are refused.
const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Whether `method` may be sent on. `TRACE` is not: the provider would echo the request it
/// received, and with it the user's upstream token that this proxy added. Nor is `CONNECT`,
/// which asks for a tunnel, not a resource.
fn is_forwardable(method: &Method) -> bool {
    method != Method::TRACE && method != Method::CONNECT
}

/// `/api/{provider}/{rest}` → (`provider`, `/rest`), from the raw (still percent-encoded) path,
/// so that the provider receives the path exactly as the caller wrote it.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix("/api/")?;
    let slash = after.find('/')?;
    Some((&after[..slash], &after[slash..]))
}

/// The provider's URL for `rest`, or `None` if a segment of `rest` could climb out of the
/// provider's base path to endpoints the proxy is not meant to expose: a dot segment (also
/// with path parameters, `..;x`, which servlet containers read as `..`), a segment hiding a
/// separator (`%2F`, `%5C`, `\`) that the provider may normalise into one, or a segment that
/// is not UTF-8 once decoded (overlong forms such as `%C0%AE`, which old decoders read as `.`).
/// The caller's `access_token` query parameter, if any, is not for the provider.
fn upstream_uri(provider: &Provider, rest: &str, query: Option<&str>) -> Option<Uri> {
    if may_escape(rest) {
        return None;
    }
    let query = query.and_then(tower_bearer::token::without_access_token);
    provider.base.join(rest, query.as_deref())
}

/// Whether a segment of `rest` (which starts with `/`) is a dot segment, hides a separator or
/// is not UTF-8.
fn may_escape(rest: &str) -> bool {
    // Most paths have no dot after a slash, no escape and no backslash: nothing to decode.
    if !rest.contains("/.") && !rest.contains(['%', '\\']) {
        return false;
    }
    rest.split('/').any(|segment| {
        let Ok(decoded) = percent_decode_str(segment).decode_utf8() else {
            return true;
        };
        let name = decoded.split_once(';').map_or(&*decoded, |(name, _)| name);
        name == "." || name == ".." || decoded.contains(['/', '\\'])
    })
}

/// The caller's headers, less those that are not for the provider: hop-by-hop fields, `Host`
/// (the client sets the provider's), the caller's own credentials and cookies, and the length
/// (the body is re-framed); plus this proxy's `via`.
fn forwarded_headers(mut headers: HeaderMap, via: &HeaderValue) -> HeaderMap {
    const NOT_FORWARDED: [HeaderName; 5] = [
        header::HOST,
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
        header::CONTENT_LENGTH,
    ];
    tower_bearer::upstream::strip_hop_by_hop(&mut headers);
    remove_present(&mut headers, &NOT_FORWARDED);
    headers.append(header::VIA, via.clone());
    headers
}

/// Removes the fields named in `names`. A message carries few of them: one pass over its names
/// finds those, and only those are looked up (hashed) to be removed.
fn remove_present<const N: usize>(headers: &mut HeaderMap, names: &[HeaderName; N]) {
    let mut present = [false; N];
    for name in headers.keys() {
        if let Some(at) = names.iter().position(|wanted| wanted == name) {
            present[at] = true;
        }
    }
    for (name, present) in names.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// A provider's base URL, split once: a request's URL is its path appended to the base's.
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// Without a trailing slash; empty for the root.
    path: String,
}

impl BaseUrl {
    /// `url`, an absolute URL without query (checked when the configuration is loaded).
    pub fn new(url: &str) -> Result<Self, BoxError> {
        let parts = url.parse::<Uri>()?.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(format!("{url} is not an absolute URL").into());
        };
        let path = parts
            .path_and_query
            .map(|path| path.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(Self {
            scheme,
            authority,
            path,
        })
    }

    /// `{base}{rest}?{query}` (`rest` starts with a slash), if that is a valid URL.
    fn join(&self, rest: &str, query: Option<&str>) -> Option<Uri> {
        let mut path = String::with_capacity(
            self.path.len() + rest.len() + query.map_or(0, |query| query.len() + 1),
        );
        path.push_str(&self.path);
        path.push_str(rest);
        if let Some(query) = query {
            path.push('?');
            path.push_str(query);
        }
        let mut parts = uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(path)).ok()?);
        Uri::from_parts(parts).ok()
    }
}
