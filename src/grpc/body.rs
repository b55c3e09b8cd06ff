//! The request and response bodies of the outbound path: what a call has ready is read before it
//! is sent (so that it can be sent again), and a status sent without a message is held until it
//! can be classified.

use std::{
    future::{Future, poll_fn},
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tower_service::Service;

use crate::{
    BoxError,
    upstream::refresh::{NoReplay, RetryBody},
};

pub(super) const GRPC_STATUS: &str = "grpc-status";

/// Reads what the request body has ready: all of it (the call can be replayed), or — when it
/// waits for more or exceeds `limit` — what it had, followed by the rest, marked [`NoReplay`].
pub(super) async fn probe<B>(request: Request<B>, limit: usize) -> Request<Probed<B>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let (mut parts, mut body) = request.into_parts();
    let mut data = BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    let outcome = poll_fn(|cx| {
        loop {
            if body.is_end_stream() {
                return Poll::Ready(Outcome::Whole);
            }
            match Pin::new(&mut body).poll_frame(cx) {
                // An open stream: the caller sends more as the call goes on.
                Poll::Pending => return Poll::Ready(Outcome::Open),
                Poll::Ready(None) => return Poll::Ready(Outcome::Whole),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Outcome::Failed(error.into())),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => {
                        data.extend_from_slice(&chunk);
                        if data.len() > limit {
                            return Poll::Ready(Outcome::Open);
                        }
                    }
                    Err(frame) => {
                        if let Ok(more) = frame.into_trailers() {
                            trailers.get_or_insert_with(HeaderMap::new).extend(more);
                        }
                    }
                },
            }
        }
    })
    .await;
    let prefix = data.freeze();
    let body = match outcome {
        Outcome::Whole => Probed {
            prefix: Some(prefix),
            trailers,
            error: None,
            rest: None,
        },
        Outcome::Open => {
            parts.extensions.insert(NoReplay);
            Probed {
                prefix: Some(prefix),
                trailers,
                error: None,
                rest: Some(body),
            }
        }
        Outcome::Failed(error) => Probed {
            prefix: Some(prefix),
            trailers: None,
            error: Some(error),
            rest: None,
        },
    };
    Request::from_parts(parts, body)
}

pub(super) enum Outcome {
    Whole,
    Open,
    Failed(BoxError),
}

/// A request body of which a prefix was read: then its trailers, or its error, or the rest.
pub(super) struct Probed<B> {
    prefix: Option<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    rest: Option<B>,
}

impl<B> Body for Probed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take().filter(|p| !p.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(rest) = this.rest.as_mut() {
            let frame = ready!(Pin::new(rest).poll_frame(cx));
            if frame.is_none() {
                this.rest = None;
            } else {
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.error.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(prefix));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint
    }
}

/// The innermost stage: hands the transport a `tonic::body::Body`, and for a replayable call
/// whose answer started with headers, holds it until its first frame so that a status sent
/// without a message is seen (and classified) as a trailers-only answer.
#[derive(Clone, Debug)]
pub(super) struct HoldStatus<S> {
    pub(super) inner: S,
}

// Boxed for the reason given on `ResponseFuture`: the transport's future is awaited along with a
// first body frame, once per call.
type HoldFuture<E> = Pin<Box<dyn Future<Output = Result<Response<HeldBody>, E>> + Send>>;

impl<S, B, ResBody> Service<Request<RetryBody<B>>> for HoldStatus<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<HeldBody>;
    type Error = S::Error;
    type Future = HoldFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RetryBody<B>>) -> Self::Future {
        let streamed = request.extensions().get::<NoReplay>().is_some();
        let future = self.inner.call(request.map(tonic::body::Body::new));
        Box::pin(async move {
            let response = future.await?.map(tonic::body::Body::new);
            let holds = !streamed
                && response.status() == StatusCode::OK
                && !response.headers().contains_key(GRPC_STATUS)
                && !response.body().is_end_stream();
            if !holds {
                return Ok(response.map(|rest| HeldBody { first: None, rest }));
            }
            let (mut parts, mut rest) = response.into_parts();
            let first = poll_fn(|cx| Pin::new(&mut rest).poll_frame(cx)).await;
            let first = match first {
                Some(Ok(frame)) => match frame.into_trailers() {
                    // Headers, then the status without a message: trailers-only in effect.
                    Ok(trailers) => {
                        for (name, value) in &trailers {
                            parts.headers.append(name, value.clone());
                        }
                        return Ok(Response::from_parts(
                            parts,
                            HeldBody {
                                first: None,
                                rest: tonic::body::Body::empty(),
                            },
                        ));
                    }
                    Err(frame) => Some(Ok(frame)),
                },
                other => other,
            };
            Ok(Response::from_parts(parts, HeldBody { first, rest }))
        })
    }
}

/// The answer's body after [`HoldStatus`]: the frame read ahead, if any, then the rest.
pub(super) struct HeldBody {
    first: Option<Result<Frame<Bytes>, tonic::Status>>,
    rest: tonic::body::Body,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        match this.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = match &self.first {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(first));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::Full;

    use super::*;

    #[tokio::test]
    async fn probe_reads_complete_bodies_and_leaves_open_ones() {
        let request = Request::new(Full::new(Bytes::from_static(b"\0\0\0\0\x01x")));
        let probed = probe(request, 1024).await;
        assert!(probed.extensions().get::<NoReplay>().is_none());
        assert!(probed.body().rest.is_none());

        let request = Request::new(Full::new(Bytes::from_static(b"0123456789")));
        let probed = probe(request, 4).await;
        assert!(probed.extensions().get::<NoReplay>().is_some());

        // A body that is not ready: an open stream.
        let probed = probe(Request::new(Waiting), 1024).await;
        assert!(probed.extensions().get::<NoReplay>().is_some());
    }

    /// A request stream whose next message is not there yet.
    struct Waiting;

    impl Body for Waiting {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }
}
