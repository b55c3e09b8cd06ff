//! The bodies of the outbound layers: [`UpstreamBody`], an upstream response body handed on
//! intact after part of it was read to classify it, and [`RetryBody`], a request body that can be
//! sent a second time.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`ClassifyUpstream`](super::classify::ClassifyUpstream): the
    /// upstream's body, byte for byte and frame for frame, including whatever was read ahead to
    /// classify a `401`/`403`.
    pub struct UpstreamBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Plain { #[pin] body: B },
        Peeked { peeked: Peeked<B> },
    }
}

/// A body of which some frames were read ahead.
pub(crate) struct Peeked<B: Body> {
    frames: VecDeque<Frame<B::Data>>,
    error: Option<B::Error>,
    rest: Option<Pin<Box<B>>>,
    len: usize,
    complete: bool,
}

impl<B: Body> Peeked<B> {
    /// Starts reading ahead of `body`. (Boxed: only `401`/`403` answers are peeked.)
    pub(crate) fn new(body: B) -> Self {
        let complete = body.is_end_stream();
        Self {
            frames: VecDeque::new(),
            error: None,
            rest: (!complete).then(|| Box::pin(body)),
            len: 0,
            complete,
        }
    }

    /// Reads frames until the body ends, fails, or more than `limit` data bytes were read.
    pub(crate) fn poll_peek(&mut self, cx: &mut Context<'_>, limit: usize) -> Poll<()> {
        while self.len <= limit {
            let Some(rest) = self.rest.as_mut() else {
                return Poll::Ready(());
            };
            match ready!(rest.as_mut().poll_frame(cx)) {
                None => {
                    self.rest = None;
                    self.complete = true;
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.len += data.remaining();
                    }
                    self.frames.push_back(frame);
                    if self.rest.as_ref().is_some_and(|r| r.is_end_stream()) {
                        self.rest = None;
                        self.complete = true;
                    }
                }
                Some(Err(error)) => {
                    self.error = Some(error);
                    self.rest = None;
                }
            }
        }
        Poll::Ready(())
    }

    /// The whole body, when it ended within the limit.
    pub(crate) fn contents(&self) -> Option<Vec<u8>> {
        if !self.complete || self.error.is_some() {
            return None;
        }
        let mut contents = Vec::with_capacity(self.len);
        for data in self.frames.iter().filter_map(Frame::data_ref) {
            if data.chunk().len() != data.remaining() {
                // A non-contiguous buffer cannot be read without consuming it; such bodies are
                // simply not classified by their contents.
                return None;
            }
            contents.extend_from_slice(data.chunk());
        }
        Some(contents)
    }
}

impl<B: Body> UpstreamBody<B> {
    pub(crate) fn plain(body: B) -> Self {
        Self {
            kind: Kind::Plain { body },
        }
    }

    pub(crate) fn peeked(peeked: Peeked<B>) -> Self {
        Self {
            kind: Kind::Peeked { peeked },
        }
    }
}

impl<B: Body> Body for UpstreamBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Plain { body } => body.poll_frame(cx),
            KindProj::Peeked { peeked } => {
                if let Some(frame) = peeked.frames.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(error) = peeked.error.take() {
                    return Poll::Ready(Some(Err(error)));
                }
                match peeked.rest.as_mut() {
                    Some(rest) => {
                        let frame = ready!(rest.as_mut().poll_frame(cx));
                        if frame.is_none() {
                            peeked.rest = None;
                        }
                        Poll::Ready(frame)
                    }
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Peeked { peeked } => {
                peeked.frames.is_empty()
                    && peeked.error.is_none()
                    && peeked.rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Peeked { peeked } => {
                let buffered: u64 = peeked
                    .frames
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|d| d.remaining() as u64)
                    .sum();
                let rest = peeked
                    .rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(buffered));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
        }
    }
}

impl<B: Body> fmt::Debug for UpstreamBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Plain { .. } => "Plain",
            Kind::Peeked { .. } => "Peeked",
        };
        f.debug_tuple("UpstreamBody").field(&kind).finish()
    }
}

pin_project! {
    /// The request body [`RefreshAndRetry`](super::refresh::RefreshAndRetry) sends: either fully
    /// buffered (so it can be sent again after a refresh), or a buffered prefix followed by the
    /// rest of a body too large to buffer.
    pub struct RetryBody<B> {
        #[pin]
        kind: RetryKind<B>,
    }
}

pin_project! {
    #[project = RetryKindProj]
    enum RetryKind<B> {
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Chained { prefix: Option<Bytes>, #[pin] rest: B },
    }
}

impl<B> RetryBody<B> {
    /// A body of `data` (and `trailers`, if any).
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: RetryKind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::buffered(Bytes::new(), None)
    }

    /// `prefix`, then whatever `rest` yields.
    pub fn chained(prefix: Bytes, rest: B) -> Self {
        Self {
            kind: RetryKind::Chained {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
        }
    }
}

impl<B> Default for RetryBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> Body for RetryBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            RetryKindProj::Buffered { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            RetryKindProj::Chained { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                rest.poll_frame(cx).map(|frame| {
                    frame.map(|frame| {
                        frame.map(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                    })
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RetryKind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            RetryKind::Chained { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RetryKind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RetryKind::Chained { prefix, rest } => {
                let buffered = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(buffered));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
        }
    }
}

impl<B> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RetryKind::Buffered { .. } => "Buffered",
            RetryKind::Chained { .. } => "Chained",
        };
        f.debug_tuple("RetryBody").field(&kind).finish()
    }
}

/// Reads a request body into memory, up to a limit.
pub(crate) struct Buffering<B> {
    body: Option<B>,
    first: Option<Bytes>,
    more: Option<BytesMut>,
    trailers: Option<HeaderMap>,
    len: usize,
    limit: usize,
}

/// What buffering a request body gave.
pub(crate) enum Buffered<B> {
    /// The whole body: it can be sent again.
    Whole {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// More than the limit: the part read so far, and the rest.
    TooLarge { prefix: Bytes, rest: B },
}

impl<B> Buffering<B>
where
    B: Body + Unpin,
{
    pub(crate) fn new(body: B, limit: usize) -> Self {
        Self {
            body: Some(body),
            first: None,
            more: None,
            trailers: None,
            len: 0,
            limit,
        }
    }

    fn take_data(&mut self) -> Bytes {
        match self.more.take() {
            Some(more) => more.freeze(),
            None => self.first.take().unwrap_or_default(),
        }
    }

    /// Polls until the body ended or exceeded the limit. Must not be polled after it returned
    /// `Ready`.
    pub(crate) fn poll_buffer(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Buffered<B>, B::Error>> {
        loop {
            // An empty body here would send a request without its payload.
            let body = self
                .body
                .as_mut()
                .expect("request body buffering polled after completion");
            if self.len > self.limit || body.size_hint().lower() > (self.limit - self.len) as u64 {
                let rest = self.body.take().expect("checked above");
                let prefix = self.take_data();
                return Poll::Ready(Ok(Buffered::TooLarge { prefix, rest }));
            }
            if body.is_end_stream() {
                self.body = None;
                return Poll::Ready(Ok(Buffered::Whole {
                    data: self.take_data(),
                    trailers: self.trailers.take(),
                }));
            }
            match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => {
                    self.body = None;
                    return Poll::Ready(Ok(Buffered::Whole {
                        data: self.take_data(),
                        trailers: self.trailers.take(),
                    }));
                }
                Some(Err(error)) => {
                    self.body = None;
                    return Poll::Ready(Err(error));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let chunk = data.copy_to_bytes(data.remaining());
                        self.len += chunk.len();
                        match (&mut self.first, &mut self.more) {
                            (_, Some(more)) => more.extend_from_slice(&chunk),
                            (None, None) => self.first = Some(chunk),
                            (Some(first), more @ None) => {
                                let mut joined = BytesMut::with_capacity(first.len() + chunk.len());
                                joined.extend_from_slice(first);
                                joined.extend_from_slice(&chunk);
                                *more = Some(joined);
                            }
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            match &mut self.trailers {
                                Some(existing) => existing.extend(trailers),
                                None => self.trailers = Some(trailers),
                            }
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::future::poll_fn;

    /// A body yielding the given chunks one frame at a time.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    #[tokio::test]
    async fn buffering_whole_and_too_large() {
        let mut buffering = Buffering::new(Full::new(Bytes::from_static(b"hello")), 16);
        match poll_fn(|cx| buffering.poll_buffer(cx)).await.unwrap() {
            Buffered::Whole { data, trailers } => {
                assert_eq!(data, "hello");
                assert!(trailers.is_none());
            }
            Buffered::TooLarge { .. } => panic!("fits"),
        }

        let chunks = Chunks(["ab", "cd", "ef"].map(Bytes::from).into());
        let mut buffering = Buffering::new(chunks, 3);
        match poll_fn(|cx| buffering.poll_buffer(cx)).await.unwrap() {
            Buffered::TooLarge { prefix, rest } => {
                assert_eq!(prefix, "abcd");
                let body = RetryBody::chained(prefix, rest);
                let all = body.collect().await.unwrap().to_bytes();
                assert_eq!(all, "abcdef");
            }
            Buffered::Whole { .. } => panic!("too large"),
        }

        let chunks = Chunks(["ab", "cd"].map(Bytes::from).into());
        let mut buffering = Buffering::new(chunks, 4);
        match poll_fn(|cx| buffering.poll_buffer(cx)).await.unwrap() {
            Buffered::Whole { data, .. } => assert_eq!(data, "abcd"),
            Buffered::TooLarge { .. } => panic!("fits exactly"),
        }
    }

    #[tokio::test]
    async fn peeked_body_is_intact() {
        let body = Full::new(Bytes::from_static(b"{\"error\":1}"));
        let mut peeked = Peeked::new(body);
        poll_fn(|cx| peeked.poll_peek(cx, 1024)).await;
        assert_eq!(peeked.contents().unwrap(), b"{\"error\":1}");
        let body = UpstreamBody::peeked(peeked);
        assert_eq!(body.size_hint().exact(), Some(11));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{\"error\":1}");

        let chunks = Chunks(["ab", "cd", "ef"].map(Bytes::from).into());
        let mut peeked = Peeked::new(chunks);
        poll_fn(|cx| peeked.poll_peek(cx, 3)).await;
        assert!(peeked.contents().is_none());
        let body = UpstreamBody::peeked(peeked);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
    }
}
