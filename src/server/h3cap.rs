//! A QUIC connection for the `h3` crate whose incoming streams may carry only so
//! many octets. `h3` reads a whole HEADERS or unknown frame into memory before it
//! looks at it (and so keeps QUIC's flow control open), so without a cap one
//! stream could grow without bound; past its cap a stream fails and is stopped
//! (H3_EXCESSIVE_LOAD), which on a control stream closes the connection.

use std::task::{Context, Poll};

use bytes::Buf;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};

/// HTTP/3's H3_EXCESSIVE_LOAD.
const EXCESSIVE_LOAD: u64 = 0x107;

/// A stream with the octets it may still receive.
pub(super) struct Capped<T> {
    inner: T,
    left: usize,
}

impl<T: quic::RecvStream> quic::RecvStream for Capped<T> {
    type Buf = T::Buf;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Self::Buf>, StreamErrorIncoming>> {
        match self.inner.poll_data(cx) {
            Poll::Ready(Ok(Some(b))) => {
                let n = b.remaining();
                if n > self.left {
                    self.inner.stop_sending(EXCESSIVE_LOAD);
                    return Poll::Ready(Err(StreamErrorIncoming::Unknown(
                        "stream carried more than its limit".into(),
                    )));
                }
                self.left -= n;
                Poll::Ready(Ok(Some(b)))
            }
            other => other,
        }
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.inner.stop_sending(error_code);
    }

    fn recv_id(&self) -> StreamId {
        self.inner.recv_id()
    }
}

impl<B: Buf, T: quic::SendStream<B>> quic::SendStream<B> for Capped<T> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.inner.poll_ready(cx)
    }

    fn send_data<D: Into<WriteBuf<B>>>(&mut self, data: D) -> Result<(), StreamErrorIncoming> {
        self.inner.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.inner.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.inner.reset(reset_code);
    }

    fn send_id(&self) -> StreamId {
        self.inner.send_id()
    }
}

impl<B: Buf, T: quic::BidiStream<B>> quic::BidiStream<B> for Capped<T> {
    type SendStream = T::SendStream;
    type RecvStream = Capped<T::RecvStream>;

    fn split(self) -> (Self::SendStream, Self::RecvStream) {
        let (s, r) = self.inner.split();
        (
            s,
            Capped {
                inner: r,
                left: self.left,
            },
        )
    }
}

/// A connection whose incoming request streams may carry `bidi` octets and
/// whose unidirectional streams (control, QPACK, unknown) `uni`.
pub(super) struct CappedConn<C> {
    /// The connection, which also opens streams as its opener does.
    open: CappedOpen<C>,
    uni: usize,
}

impl<C> CappedConn<C> {
    pub(super) fn new(inner: C, bidi: usize, uni: usize) -> Self {
        Self {
            open: CappedOpen { inner, bidi },
            uni,
        }
    }
}

impl<B: Buf, C: quic::Connection<B>> quic::Connection<B> for CappedConn<C> {
    type RecvStream = Capped<C::RecvStream>;
    type OpenStreams = CappedOpen<C::OpenStreams>;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::RecvStream, ConnectionErrorIncoming>> {
        let left = self.uni;
        self.open
            .inner
            .poll_accept_recv(cx)
            .map_ok(|inner| Capped { inner, left })
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, ConnectionErrorIncoming>> {
        let left = self.open.bidi;
        self.open
            .inner
            .poll_accept_bidi(cx)
            .map_ok(|inner| Capped { inner, left })
    }

    fn opener(&self) -> Self::OpenStreams {
        CappedOpen {
            inner: self.open.inner.opener(),
            bidi: self.open.bidi,
        }
    }
}

impl<B: Buf, C: quic::OpenStreams<B>> quic::OpenStreams<B> for CappedConn<C> {
    type BidiStream = Capped<C::BidiStream>;
    type SendStream = C::SendStream;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        self.open.poll_open_bidi(cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        self.open.poll_open_send(cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        self.open.close(code, reason);
    }
}

/// The stream opener of a [`CappedConn`].
pub(super) struct CappedOpen<O> {
    inner: O,
    bidi: usize,
}

impl<B: Buf, O: quic::OpenStreams<B>> quic::OpenStreams<B> for CappedOpen<O> {
    type BidiStream = Capped<O::BidiStream>;
    type SendStream = O::SendStream;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        let left = self.bidi;
        self.inner
            .poll_open_bidi(cx)
            .map_ok(|inner| Capped { inner, left })
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        self.inner.poll_open_send(cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        self.inner.close(code, reason);
    }
}
