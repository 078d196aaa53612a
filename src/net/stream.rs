//! A connection that is plain TCP or TLS, and can switch to TLS in place (STARTTLS).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<async_native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Server side: TLS handshake on a plain stream (STARTTLS / STLS, or implicit TLS).
    pub async fn accept_tls(self, acceptor: &async_native_tls::TlsAcceptor) -> io::Result<Stream> {
        match self {
            Stream::Plain(s) => acceptor
                .accept(s)
                .await
                .map(|t| Stream::Tls(Box::new(t)))
                .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())),
            Stream::Tls(_) => Err(io::Error::other("already TLS")),
        }
    }

    /// Client side: TLS handshake toward `domain` (certificate checked by `connector`).
    pub async fn connect_tls(
        self,
        connector: &async_native_tls::TlsConnector,
        domain: &str,
    ) -> io::Result<Stream> {
        match self {
            Stream::Plain(s) => connector
                .connect(domain, s)
                .await
                .map(|t| Stream::Tls(Box::new(t)))
                .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())),
            Stream::Tls(_) => Err(io::Error::other("already TLS")),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
