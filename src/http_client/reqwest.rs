//! An application's `reqwest::Client` as a tower service (feature `reqwest`).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;

/// A `reqwest::Client` as a `tower::Service<http::Request<B>>`, answering
/// `http::Response<reqwest::Body>`: what [`HttpClient::from_reqwest`](super::HttpClient::from_reqwest)
/// wraps, and a client the outbound layers can stack on, with the application's TLS, proxy and
/// pool settings.
///
/// ```
/// use tower_bearer::http_client::ReqwestService;
///
/// let service = ReqwestService::new(reqwest::Client::new());
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct ReqwestService {
    client: reqwest::Client,
}

impl ReqwestService {
    /// Sends requests through `client`.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// The client.
    pub fn get_ref(&self) -> &reqwest::Client {
        &self.client
    }
}

impl<B> Service<Request<B>> for ReqwestService
where
    B: Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<reqwest::Body>;
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    /// Always ready: reqwest queues requests on its own pool.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request.map(reqwest::Body::wrap))?;
            Ok(client.execute(request).await?.into())
        })
    }
}
