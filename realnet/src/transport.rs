//! The byte-stream transport the driver runs over.
//!
//! The driver only needs to listen, accept and dial; everything else is
//! `AsyncRead + AsyncWrite` on the stream. Keeping that surface this small is
//! what lets the same driver run over tokio's sockets in production and over
//! turmoil's simulated sockets in the simulator (see `blockferry-sim`).
//!
//! Everything runs on a current-thread runtime inside a
//! [`tokio::task::LocalSet`], so nothing here needs to be `Send`.

use std::future::Future;
use std::io;

/// A way to open byte streams between nodes, addressed by strings.
///
/// Addresses are plain `"host:port"` strings so a topology file can name
/// real addresses (realnet) or simulated host names (turmoil) alike.
pub trait Transport: 'static {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static;
    type Listener: 'static;

    /// Starts listening on `addr`.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>>;

    /// Waits for the next incoming connection; the string is the peer's
    /// address, for logs only (identity comes from the handshake).
    fn accept(listener: &Self::Listener) -> impl Future<Output = io::Result<(Self::Stream, String)>>;

    /// Opens a connection to `addr`.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>>;

    /// The address the listener actually bound, so a caller that bound port 0
    /// can tell its peers where to dial.
    fn local_addr(listener: &Self::Listener) -> io::Result<String>;
}

/// Real TCP through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTcp;

impl Transport for TokioTcp {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, String)> {
        let (stream, addr) = listener.accept().await?;
        // Frames are often small (pings, acks); waiting for Nagle to fill a
        // segment would add latency to every request/answer exchange.
        stream.set_nodelay(true)?;
        Ok((stream, addr.to_string()))
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<String> {
        Ok(listener.local_addr()?.to_string())
    }
}
