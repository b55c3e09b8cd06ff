//! The body of the layers that may replace one: a failure rendered by this crate in place of a
//! response, or a request body that was read to find a token.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the wrapped body, untouched, or bytes that replace it.
    pub struct MaybeBuffered<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough { #[pin] body: B },
        Buffered { bytes: Option<Bytes> },
    }
}

impl<B> MaybeBuffered<B> {
    pub(crate) fn passthrough(body: B) -> Self {
        Self {
            kind: Kind::Passthrough { body },
        }
    }

    pub(crate) fn buffered(bytes: Bytes) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        Self {
            kind: Kind::Buffered { bytes },
        }
    }

    /// The wrapped body if it was passed through untouched, or this body back: a service that
    /// boxes bodies into a type of its own (axum's `Body`) unwraps a passed-through one first
    /// and boxes once, not twice.
    pub fn into_passthrough(self) -> Result<B, Self> {
        match self.kind {
            Kind::Passthrough { body } => Ok(body),
            kind @ Kind::Buffered { .. } => Err(Self { kind }),
        }
    }
}

impl<B> Body for MaybeBuffered<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body.poll_frame(cx),
            KindProj::Buffered { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Buffered { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Buffered { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for MaybeBuffered<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Buffered { .. } => "Buffered",
        };
        f.debug_tuple("MaybeBuffered").field(&kind).finish()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, Full};

    use super::*;

    #[tokio::test]
    async fn only_a_passed_through_body_is_unwrapped() {
        let passed = MaybeBuffered::passthrough(Full::new(Bytes::from_static(b"theirs")));
        let inner = passed.into_passthrough().expect("passed through");
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "theirs");

        let ours = MaybeBuffered::<Full<Bytes>>::buffered(Bytes::from_static(b"ours"));
        let kept = ours.into_passthrough().expect_err("a replacement");
        assert_eq!(kept.collect().await.unwrap().to_bytes(), "ours");
    }
}
