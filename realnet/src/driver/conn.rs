//! Connections: dialing, accepting, the hello exchange, and the per-connection
//! task that reads frames in and writes queued frames out.
//!
//! Everything here runs as local tasks beside the driver's main loop and
//! talks to it only through [`TaskEvent`]s, so the node itself is touched by
//! the main loop alone, one input at a time.

use super::config::{Backoff, Keepalive};
use super::queue::Outbound;
use crate::transport::Transport;
use blockferry_core::wire::{FrameDecoder, FrameError, Hello, HelloError, Message, encode_frame};
use blockferry_core::{Input, NodeId};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

/// Identifies one connection for the driver's lifetime, so events from a
/// connection that has since been replaced or closed can be recognised and
/// ignored.
pub(crate) type ConnId = u64;

/// Read buffer size; also the size above which queued frames are written
/// one by one instead of being coalesced.
const IO_CHUNK: usize = 64 * 1024;

/// What the driver's tasks tell the main loop.
pub(crate) enum TaskEvent<S> {
    /// A handshake completed: the peer is who it claims and speaks our
    /// version. `decoder` holds any bytes that arrived after its hello.
    Up { peer: NodeId, stream: S, decoder: FrameDecoder },
    /// A frame arrived and decoded.
    Message { peer: NodeId, conn: ConnId, msg: Message },
    /// The connection ended; nothing more will come from it.
    Closed { peer: NodeId, conn: ConnId, reason: ConnError },
    /// A storage or hypervisor request completed.
    Completed(Input),
}

/// Why a connection ended or was refused. Only ever logged: the node learns
/// no more than `PeerDown`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("closed by the peer")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("handshake refused: {0}")]
    Hello(#[from] HelloError),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("nothing received for {0:?}: the link or the peer is dead")]
    Idle(Duration),
    #[error("peer {name:?} ({peer}) dialed us, but in each pair the lower id dials and we are {own}")]
    WrongDirection { name: String, peer: NodeId, own: NodeId },
    #[error("send queue overflowed while connected: frames were dropped")]
    Overflow,
    #[error("replaced by a newer connection from the same peer")]
    Replaced,
    #[error("its input was refused: {0}")]
    Refused(String),
    #[error("the driver stopped")]
    DriverGone,
}

/// The largest hello accepted (a name, a version, a flag): what a caller
/// not yet known can make this node buffer.
pub(crate) const MAX_HELLO: usize = 4096;

/// Handshakes in progress at once: callers not yet authenticated, each
/// holding a task and a buffer for up to the handshake timeout.
pub(crate) const MAX_HANDSHAKES: usize = 256;

/// What the connection tasks need to know about this node.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub own_name: String,
    pub own_id: NodeId,
    pub by_name: BTreeMap<String, NodeId>,
    pub max_frame: usize,
    pub backoff: Backoff,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub keepalive: Keepalive,
    pub synthetic_payloads: bool,
}

/// Reads until `decoder` yields one frame. Bytes after it stay in `decoder`.
/// With `idle`, a read that brings nothing for that long fails the
/// connection ([`ConnError::Idle`]): any byte, even of a frame still
/// arriving, restarts the wait.
async fn read_frame<R, M>(rd: &mut R, decoder: &mut FrameDecoder, buf: &mut [u8], idle: Option<Duration>) -> Result<M, ConnError>
where
    R: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    loop {
        if let Some(msg) = decoder.next_frame()? {
            return Ok(msg);
        }
        let n = match idle {
            Some(after) => tokio::time::timeout(after, rd.read(buf)).await.map_err(|_| ConnError::Idle(after))??,
            None => rd.read(buf).await?,
        };
        if n == 0 {
            // A stream that ends inside a frame is reported as truncated.
            decoder.finish()?;
            return Err(ConnError::Closed);
        }
        decoder.extend(&buf[..n]);
    }
}

async fn write_hello<W: AsyncWrite + Unpin>(wr: &mut W, ctx: &Ctx) -> Result<(), ConnError> {
    let mut frame = Vec::new();
    let hello = Hello { synthetic_payloads: ctx.synthetic_payloads, ..Hello::new(ctx.own_name.as_str()) };
    encode_frame(&hello, &mut frame)?;
    wr.write_all(&frame).await?;
    wr.flush().await?;
    Ok(())
}

async fn with_timeout<T>(what: &'static str, after: Duration, fut: impl Future<Output = Result<T, ConnError>>) -> Result<T, ConnError> {
    tokio::time::timeout(after, fut).await.map_err(|_| ConnError::Timeout { what, after })?
}

/// The dialer's side: connect, send our hello, check the answer comes from
/// the node we meant to reach.
async fn dial_once<T: Transport>(transport: &T, ctx: &Ctx, name: &str, addr: &str) -> Result<(T::Stream, FrameDecoder), ConnError> {
    let mut stream = with_timeout("connect", ctx.connect_timeout, async { Ok(transport.connect(addr).await?) }).await?;
    let decoder = with_timeout("handshake", ctx.handshake_timeout, async {
        write_hello(&mut stream, ctx).await?;
        let mut decoder = FrameDecoder::new(MAX_HELLO);
        let mut buf = vec![0; IO_CHUNK];
        let reply: Hello = read_frame(&mut stream, &mut decoder, &mut buf, None).await?;
        decoder.set_max_frame(ctx.max_frame);
        reply.check_version()?;
        reply.check_payloads(ctx.synthetic_payloads)?;
        if reply.node != name {
            return Err(HelloError::UnexpectedNode { got: reply.node, expected: name.to_owned() }.into());
        }
        Ok(decoder)
    })
    .await?;
    Ok((stream, decoder))
}

/// Keeps one connection to a peer with a higher id: dials, hands the
/// connection to the main loop, waits for the main loop to report it lost,
/// and dials again after a backoff. One such task per dialed peer, so there
/// is never more than one dialed connection per pair.
pub(crate) async fn dial_loop<T: Transport>(
    transport: Rc<T>,
    ctx: Rc<Ctx>,
    peer: NodeId,
    name: String,
    addr: String,
    lost: Rc<Notify>,
    tx: mpsc::Sender<TaskEvent<T::Stream>>,
) {
    let mut delay = ctx.backoff.initial;
    let mut failures: u64 = 0;
    loop {
        match dial_once(&*transport, &ctx, &name, &addr).await {
            Ok((stream, decoder)) => {
                if tx.send(TaskEvent::Up { peer, stream, decoder }).await.is_err() {
                    return;
                }
                failures = 0;
                lost.notified().await;
                tokio::time::sleep(ctx.backoff.initial).await;
                delay = ctx.backoff.next(ctx.backoff.initial);
            }
            Err(e) => {
                failures += 1;
                match &e {
                    // The peer answered but refused or confused us: that is
                    // a configuration problem an operator must see.
                    ConnError::Hello(_) | ConnError::Frame(_) => {
                        tracing::warn!(node = %ctx.own_name, peer = %name, %addr, "handshake with peer failed: {e}");
                    }
                    // Unreachable peers are normal while they start; say so
                    // once per streak, then quietly keep trying.
                    _ if failures == 1 => {
                        tracing::info!(node = %ctx.own_name, peer = %name, %addr, "cannot reach peer, will retry: {e}");
                    }
                    _ => tracing::debug!(node = %ctx.own_name, peer = %name, %addr, failures, "dial failed: {e}"),
                }
                tokio::time::sleep(delay).await;
                delay = ctx.backoff.next(delay);
            }
        }
    }
}

/// The acceptor's side: read the dialer's hello, check its version, that we
/// know it and that it is the side that should dial, then answer.
async fn accept_handshake<S>(mut stream: S, ctx: &Ctx) -> Result<(NodeId, S, FrameDecoder), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = FrameDecoder::new(MAX_HELLO);
    let mut buf = vec![0; IO_CHUNK];
    let hello: Hello = read_frame(&mut stream, &mut decoder, &mut buf, None).await?;
    decoder.set_max_frame(ctx.max_frame);
    hello.check_version()?;
    hello.check_payloads(ctx.synthetic_payloads)?;
    let Some(&peer) = ctx.by_name.get(&hello.node) else {
        return Err(HelloError::UnknownNode(hello.node).into());
    };
    if peer > ctx.own_id {
        return Err(ConnError::WrongDirection { name: hello.node, peer, own: ctx.own_id });
    }
    write_hello(&mut stream, ctx).await?;
    Ok((peer, stream, decoder))
}

/// Accepts connections for the driver's lifetime. Each handshake runs in its
/// own task so a silent caller cannot hold up the others; the set is owned
/// here so they all stop when this task is aborted.
pub(crate) async fn accept_loop<T: Transport>(listener: T::Listener, ctx: Rc<Ctx>, tx: mpsc::Sender<TaskEvent<T::Stream>>) {
    let mut handshakes = JoinSet::new();
    loop {
        while handshakes.try_join_next().is_some() {}
        match T::accept(&listener).await {
            Ok((stream, from)) if handshakes.len() >= MAX_HANDSHAKES => {
                // Not yet authenticated callers are bounded: the rest are
                // closed at once (a real peer dials again after a backoff).
                tracing::warn!(node = %ctx.own_name, %from, "refused incoming connection: {MAX_HANDSHAKES} handshakes in progress");
                drop(stream);
            }
            Ok((stream, from)) => {
                let ctx = ctx.clone();
                let tx = tx.clone();
                handshakes.spawn_local(async move {
                    match with_timeout("handshake", ctx.handshake_timeout, accept_handshake(stream, &ctx)).await {
                        Ok((peer, stream, decoder)) => {
                            let _ = tx.send(TaskEvent::Up { peer, stream, decoder }).await;
                        }
                        Err(e) => {
                            tracing::warn!(node = %ctx.own_name, %from, "refused incoming connection: {e}");
                        }
                    }
                });
            }
            Err(e) => {
                // Typically out of file descriptors: pause rather than spin.
                tracing::warn!(node = %ctx.own_name, "accept failed: {e}");
                tokio::time::sleep(ctx.backoff.initial).await;
            }
        }
    }
}

/// Forwards every decoded frame to the main loop until the stream ends, a
/// frame is bad, or nothing arrives for the idle timeout. A bad frame ends
/// the connection before anything of it is forwarded. Keepalives are
/// swallowed here: they only prove the link alive, which reading them did.
async fn read_loop<R: AsyncRead + Unpin, S>(
    mut rd: R,
    mut decoder: FrameDecoder,
    peer: NodeId,
    conn: ConnId,
    idle: Duration,
    ch: &Channels<S>,
) -> ConnError {
    let mut buf = vec![0; IO_CHUNK];
    loop {
        let frame = read_frame::<_, Message>(&mut rd, &mut decoder, &mut buf, Some(idle)).await;
        if frame.is_ok() {
            ch.heard.set(tokio::time::Instant::now());
        }
        match frame {
            Ok(Message::Keepalive) => {}
            Ok(msg) => {
                // A bounded channel: a node slower than the network pushes
                // back on the socket instead of growing memory.
                if ch.tx.send(TaskEvent::Message { peer, conn, msg }).await.is_err() {
                    return ConnError::DriverGone;
                }
            }
            Err(e) => return e,
        }
    }
}

/// Writes the peer's queued frames, small ones coalesced into one write,
/// and a keepalive whenever the queue has been empty for `interval` since
/// the last write.
async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, out: &Outbound, interval: Duration) -> ConnError {
    let mut batch = Vec::with_capacity(IO_CHUNK);
    let mut keepalive = Vec::new();
    if let Err(e) = encode_frame(&Message::Keepalive, &mut keepalive) {
        return e.into();
    }
    loop {
        let first = out.queue.borrow_mut().pop();
        let Some(first) = first else {
            if let Err(e) = wr.flush().await {
                return e.into();
            }
            // `Notify` keeps a permit if the main loop queued something
            // before we got here, so no wake-up is lost; and a wake-up that
            // races the keepalive is not lost either, since the queue is
            // looked at again before the next wait.
            let quiet = tokio::select! {
                biased;
                () = out.ready.notified() => false,
                () = tokio::time::sleep(interval) => true,
            };
            if quiet && let Err(e) = wr.write_all(&keepalive).await {
                return e.into();
            }
            continue;
        };
        let result = if first.len() >= IO_CHUNK {
            wr.write_all(&first).await
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < IO_CHUNK {
                let next = out.queue.borrow_mut().pop();
                match next {
                    Some(frame) => batch.extend_from_slice(&frame),
                    None => break,
                }
            }
            wr.write_all(&batch).await
        };
        if let Err(e) = result {
            return e.into();
        }
    }
}

/// One live connection: reads and writes until either side fails, then
/// drops the stream (closing it) and reports why.
/// What a connection's task shares with the main loop.
pub(crate) struct Channels<S> {
    /// Frames to write.
    pub out: Rc<Outbound>,
    /// When a frame last arrived (the main loop asks whether the
    /// connection is alive before it lets another replace it).
    pub heard: Rc<Cell<tokio::time::Instant>>,
    /// Frames read, and the close.
    pub tx: mpsc::Sender<TaskEvent<S>>,
}

pub(crate) async fn run_connection<S>(stream: S, decoder: FrameDecoder, peer: NodeId, conn: ConnId, keepalive: Keepalive, ch: Channels<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, wr) = tokio::io::split(stream);
    let reason = tokio::select! {
        biased;
        e = read_loop(rd, decoder, peer, conn, keepalive.timeout, &ch) => e,
        e = write_loop(wr, &ch.out, keepalive.interval) => e,
    };
    let _ = ch.tx.send(TaskEvent::Closed { peer, conn, reason }).await;
}
