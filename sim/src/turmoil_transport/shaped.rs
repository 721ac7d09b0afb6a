//! A turmoil stream with a link model in front of its writes: turmoil
//! delivers every segment after the link's latency whatever its size, so
//! bandwidth, the rate packet loss leaves a TCP connection, and
//! per-message breaks are added here.
//!
//! Each frame written is charged its cost (see [`super::frames`]) on its
//! direction's pipe and split into pieces of at most [`PIECE`] cost; a
//! piece's bytes go to turmoil once its last bit has left the pipe, so a
//! message arrives after serialization plus latency, as under the
//! discrete-event engine. A stream reserves one piece at a time, so streams
//! sharing a link interleave piece by piece (a keepalive never waits behind
//! a whole 8 MiB batch of another connection), and a long frame trickles in
//! piece by piece, as over TCP, instead of arriving all at once after a
//! long silence. A write is accepted only once everything before it has
//! gone out: the driver's queue, not this stream, holds the backlog.
//!
//! On a link with `breaks` each frame may break the connection (drawn once
//! per message): the write fails, what was not yet delivered is lost, and the
//! driver drops the stream, which closes it at the peer too.

use super::frames::FrameSplitter;
use super::links::SharedLinks;
use crate::net::SiteId;
use blockferry_core::Timestamp;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Largest cost of one piece: 64 KiB is 5 ms at 100 Mbit, 100 ms at 5 Mbit.
pub const PIECE: u64 = 64 * 1024;

/// Part of a frame: its share of the frame's bytes (possibly none, for a
/// synthetic payload that stands for many more bytes than it has) and of
/// its cost.
#[derive(Debug)]
struct Piece {
    bytes: Vec<u8>,
    cost: u64,
}

/// Which way a stream's writes cross which link, and how many TCP flows
/// the connection stands for (see [`crate::net::tcp::bundle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub from: SiteId,
    pub to: SiteId,
    pub streams: u32,
}

pub struct ShapedStream<S> {
    inner: S,
    links: SharedLinks,
    route: Route,
    frames: FrameSplitter,
    /// Pieces accepted but not yet on the pipe, in order.
    queue: VecDeque<Piece>,
    /// The piece on the pipe, and when its last bit leaves.
    sending: Option<(Timestamp, Vec<u8>)>,
    /// Bytes that have left the pipe but turmoil has not taken yet.
    out: Vec<u8>,
    written: usize,
    /// When this stream's last piece left the pipe.
    last_done: Option<Timestamp>,
    timer: Pin<Box<Sleep>>,
    /// The link broke this connection: every later write fails.
    broken: bool,
}

impl<S> ShapedStream<S> {
    pub fn new(inner: S, links: SharedLinks, route: Route) -> Self {
        ShapedStream {
            inner,
            links,
            route,
            frames: FrameSplitter::default(),
            queue: VecDeque::new(),
            sending: None,
            out: Vec::new(),
            written: 0,
            last_done: None,
            timer: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            broken: false,
        }
    }
}

/// The simulation's time from its start: the links' own timeline (only
/// link reservations are compared with it, never a node's clock).
fn now() -> Timestamp {
    turmoil::sim_elapsed().map_or(Timestamp::ZERO, Timestamp::from_duration)
}

fn broken_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection broken by a lossy link")
}

impl<S: AsyncWrite + Unpin> ShapedStream<S> {
    /// Moves pieces through the pipe and on to turmoil until none is left
    /// (`Ready`) or one is still serializing or turmoil is full (`Pending`).
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.written < self.out.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
            self.out.clear();
            self.written = 0;
            if let Some((done, _)) = &self.sending {
                let (done, now) = (*done, now());
                if done > now {
                    let deadline = tokio::time::Instant::now() + (done - now);
                    self.timer.as_mut().reset(deadline);
                    ready!(self.timer.as_mut().poll(cx));
                    continue;
                }
                if let Some((_, bytes)) = self.sending.take() {
                    self.out = bytes;
                }
                self.last_done = Some(done);
                continue;
            }
            let Some(piece) = self.queue.pop_front() else { return Poll::Ready(Ok(())) };
            let done = self.links.borrow_mut().reserve(now(), self.last_done, self.route, piece.cost);
            self.sending = Some((done, piece.bytes));
        }
    }

    /// Accepts `buf`: cuts it into frames, draws each frame's break, and
    /// queues their pieces.
    fn accept(&mut self, buf: &[u8]) -> io::Result<()> {
        self.frames.push(buf);
        while let Some(chunk) = self.frames.next_chunk() {
            if chunk.frame && self.links.borrow_mut().breaks(self.route.from, self.route.to) {
                self.broken = true;
                self.queue.clear();
                self.sending = None;
                self.out.clear();
                self.written = 0;
                return Err(broken_error());
            }
            let pieces = chunk.cost.div_ceil(PIECE).max(1);
            let len = chunk.bytes.len() as u64;
            let mut from = 0;
            for k in 1..=pieces {
                // Bytes and cost both split evenly; the last piece takes the
                // remainders.
                let to = (len * k / pieces) as usize;
                let cost = chunk.cost * k / pieces - chunk.cost * (k - 1) / pieces;
                self.queue.push_back(Piece { bytes: chunk.bytes[from..to].to_vec(), cost });
                from = to;
            }
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ShapedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Err(broken_error()));
        }
        ready!(this.drive(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.accept(buf)?;
        // Start the first piece now: it may already be due (a fast link).
        // If it is not, the bytes are accepted all the same; the next call
        // waits for them.
        if let Poll::Ready(Err(e)) = this.drive(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Err(broken_error()));
        }
        ready!(this.drive(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.broken {
            ready!(this.drive(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ShapedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}
