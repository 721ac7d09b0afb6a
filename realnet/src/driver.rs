//! The driver: runs one sans-IO core node over a [`Transport`], feeding it
//! inputs one at a time and carrying out its outputs.
//!
//! # Shape
//!
//! One main loop owns the node, its timers and the peer table. Around it run
//! local tasks that never touch the node: one accept loop, one dial loop per
//! peer this node dials, and one task per live connection (reader and writer
//! of that stream). Tasks report to the main loop over one channel; the main
//! loop hands outgoing frames to writers through per-peer queues. Because
//! the node is touched by the main loop alone, the drain invariant holds
//! trivially: every `handle` is followed by a full drain of `poll_output`
//! before the next input is even looked at.
//!
//! # Connection policy
//!
//! For every pair of nodes, the one with the lower [`NodeId`] dials (eagerly
//! at start, and again with backoff whenever the connection breaks); the
//! higher one only accepts, and refuses a hello from a higher id. So there is
//! at most one *dialed* connection per pair and no simultaneous-open race.
//!
//! The dialer sends [`Hello`](blockferry_core::wire::Hello); the acceptor
//! checks the frame and hello versions and that the name is in its peer
//! table, answers with its own hello, and the dialer checks the answer names
//! the node it dialed. Any failure is logged (`warn`) and the connection is
//! closed; the node never hears of it.
//!
//! # What the node sees
//!
//! * `Start` first, once per driver (a restarted process builds a new driver
//!   and so starts its node again).
//! * `PeerUp(p)` when a connection to `p` completes its handshake, and
//!   exactly one `PeerDown(p)` when that connection ends (EOF, IO error, any
//!   bad frame, nothing received for the idle timeout, or a send-queue
//!   overflow, see below). Ups and downs of a peer therefore always
//!   alternate, starting with up.
//! * If a peer connects again while its previous connection is still open,
//!   the old one must prove it is alive: if a byte came over it within the
//!   keepalive interval (a live peer sends at least that often), the new
//!   connection is refused and closed — a second connection claiming a
//!   name never evicts a live first one, since a hello proves no identity
//!   (certificates will). Otherwise (the peer restarted and its old
//!   connection went silent) **the newest wins**: the old connection is
//!   closed and the node sees `PeerDown` then `PeerUp`. Later events of the
//!   old connection (its EOF, late frames) are recognised by connection id
//!   and ignored, so no second `PeerDown` is emitted for it.
//! * `Message` inputs for every frame of the current connection, in order,
//!   except keepalives (below), which never reach the node.
//!
//! # Keepalive
//!
//! The driver does not rely on the transport to notice a dead link: TCP
//! keepalive is off by default and slow, a half-open connection (peer
//! machine gone, link cut without a reset) can look established for hours,
//! and turmoil's TCP has no retransmission or timeouts at all — a partition
//! there just drops segments. So each connection watches itself
//! ([`DriverConfig::keepalive`]): its writer sends a
//! [`Message::Keepalive`] frame whenever it has had nothing to write for
//! the keepalive interval, and its reader closes the connection when it has
//! received nothing — no frame, not a byte — for the idle timeout. That close
//! is like any other: the node sees exactly one `PeerDown`, and the dialer
//! redials with backoff. A live peer sends at least once per interval, so a
//! connection silent for the timeout is dead, and a broken link is noticed
//! at most the timeout after the last byte that crossed it. Keepalives are
//! swallowed by the reader: the node neither sees nor sends them.
//!
//! # Sends
//!
//! Each peer has one queue of encoded frames, drained by the writer of its
//! current connection. Frames sent while the peer is down wait there and go
//! out, in order, when it connects. Frames still queued when a connection
//! breaks are discarded with it, like frames in flight: they were sent before
//! the node saw `PeerDown`, so the node already assumes they may be lost, and
//! delivering them on the next connection would put pre-break traffic ahead
//! of whatever the node resumes with. The queue is bounded
//! ([`DriverConfig::max_queued_bytes`]); beyond the bound the oldest frames
//! are dropped with a warning, and if the peer was connected its connection
//! is closed too, so the loss is signalled by `PeerDown` rather than
//! leaving a silent gap in an otherwise ordered stream.
//!
//! # Storage and hypervisor requests
//!
//! Handed to the [`Services`] given with [`Driver::with_services`] (none by
//! default: every request fails at once). Each runs as its own task and its
//! completion is fed back as one input.
//!
//! # Timers
//!
//! Kept in `(at, id)` order; every due timer is fed as its own input
//! followed by its own drain. A timer's `now` is the clock's reading when it
//! is fed, never earlier than `at`.

mod config;
mod conn;
mod queue;
mod timers;

pub use config::{Backoff, ConfigError, DriverConfig, Keepalive, MAX_QUEUED_BYTES_DEFAULT, Peer};

use crate::clock::Clock;
use crate::services::{NoServices, Services};
use crate::transport::Transport;
use blockferry_core::wire::frame::HEADER_LEN;
use blockferry_core::wire::{FrameDecoder, Message, encode_frame};
use blockferry_core::{Event, Input, Node, NodeId, Output, Timestamp};
use conn::{ConnError, ConnId, Ctx, TaskEvent};
use queue::Outbound;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::rc::Rc;
use timers::Timers;
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// Receives every [`Event`] the node emits, with the `now` of the `handle`
/// call that produced it. The simulator records a trace with it; realnet
/// logs ([`tracing_sink`]).
pub type EventSink = Box<dyn FnMut(Timestamp, &Event)>;

/// An event sink that logs every event with `tracing` at info level.
pub fn tracing_sink(node: impl Into<String>) -> EventSink {
    let node = node.into();
    Box::new(move |now, event| tracing::info!(%node, %now, ?event, "event"))
}

/// Capacity of the channel from connection tasks to the main loop: enough to
/// batch, small enough that a slow node pushes back on its sockets.
const EVENT_CHANNEL: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("invalid driver configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
}

/// Aborts a task when dropped, so a driver that returns (or a connection
/// that is replaced) leaves nothing running behind it.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Live {
    id: ConnId,
    /// When a frame (a keepalive included) last arrived on it.
    heard: Rc<Cell<tokio::time::Instant>>,
    _task: TaskGuard,
}

struct PeerSlot {
    name: String,
    addr: String,
    out: Rc<Outbound>,
    conn: Option<Live>,
    /// Present if this node dials the peer: wakes the dial loop when the
    /// connection is lost.
    lost: Option<Rc<Notify>>,
}

/// Runs one node. See the module documentation for the policy.
pub struct Driver<N: Node, T: Transport, C: Clock> {
    inner: Inner<N, T, C>,
    listener: Option<T::Listener>,
    rx: mpsc::Receiver<TaskEvent<T::Stream>>,
}

/// The main loop's state: everything but the listener and the receiving end
/// of the task channel, which `run_until` takes apart.
struct Inner<N: Node, T: Transport, C: Clock> {
    node: N,
    transport: Rc<T>,
    clock: C,
    sink: EventSink,
    ctx: Rc<Ctx>,
    listen_addr: String,
    peers: BTreeMap<NodeId, PeerSlot>,
    timers: Timers,
    next_conn: ConnId,
    /// Connections to close once the current drain is complete (closing
    /// feeds `PeerDown`, which must not happen in the middle of a drain):
    /// a queue overflowed, or the node refused the peer's input. The first
    /// reason for a peer is the one logged.
    closing: BTreeMap<NodeId, ConnError>,
    tx: mpsc::Sender<TaskEvent<T::Stream>>,
    services: Box<dyn Services>,
    /// Storage and hypervisor requests in progress; aborted with the driver.
    requests: JoinSet<()>,
}

impl<N: Node, T: Transport, C: Clock> Driver<N, T, C> {
    /// A driver for `node`. Nothing happens until [`Driver::run`] or
    /// [`Driver::run_until`].
    pub fn new(config: DriverConfig, node: N, transport: T, clock: C, sink: EventSink) -> Result<Self, ConfigError> {
        config.validate()?;
        let by_name = config.peers.iter().map(|(&id, p)| (p.name.clone(), id)).collect();
        let ctx = Rc::new(Ctx {
            own_name: config.name,
            own_id: config.id,
            by_name,
            max_frame: config.max_frame,
            backoff: config.backoff,
            connect_timeout: config.connect_timeout,
            handshake_timeout: config.handshake_timeout,
            keepalive: config.keepalive,
            synthetic_payloads: config.synthetic_payloads,
        });
        let peers = config
            .peers
            .into_iter()
            .map(|(id, p)| {
                let slot = PeerSlot {
                    name: p.name,
                    addr: p.addr,
                    out: Rc::new(Outbound::new(config.max_queued_bytes)),
                    conn: None,
                    lost: (config.id < id).then(|| Rc::new(Notify::new())),
                };
                (id, slot)
            })
            .collect();
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL);
        let inner = Inner {
            node,
            transport: Rc::new(transport),
            clock,
            sink,
            ctx,
            listen_addr: config.listen,
            peers,
            timers: Timers::default(),
            next_conn: 0,
            closing: BTreeMap::new(),
            tx,
            services: Box::new(NoServices),
            requests: JoinSet::new(),
        };
        Ok(Driver { inner, listener: None, rx })
    }

    /// Lets `services` carry out the node's storage and hypervisor requests
    /// (by default every request fails at once: [`NoServices`]).
    pub fn with_services(mut self, services: Box<dyn Services>) -> Self {
        self.inner.services = services;
        self
    }

    /// Binds the listen address now (instead of at the start of `run`) and
    /// returns the address actually bound, e.g. the port chosen for port 0.
    pub async fn listen(&mut self) -> Result<String, DriverError> {
        let listener = match self.listener.take() {
            Some(listener) => listener,
            None => self.inner.bind().await?,
        };
        let bound = T::local_addr(&listener);
        self.listener = Some(listener);
        bound.map_err(|source| DriverError::Bind { addr: self.inner.listen_addr.clone(), source })
    }

    /// Runs forever (until the task is dropped).
    pub async fn run(self) -> Result<N, DriverError> {
        self.run_until(std::future::pending::<()>()).await
    }

    /// Runs until `stop` resolves, then closes every connection and returns
    /// the node. No `PeerDown` is fed on the way out: the node is handed back
    /// as it was after its last input.
    pub async fn run_until(self, stop: impl Future) -> Result<N, DriverError> {
        let Driver { mut inner, listener, mut rx } = self;
        let listener = match listener {
            Some(listener) => listener,
            None => inner.bind().await?,
        };
        match T::local_addr(&listener) {
            Ok(addr) => tracing::info!(node = %inner.ctx.own_name, id = %inner.ctx.own_id, %addr, "listening"),
            Err(e) => tracing::info!(node = %inner.ctx.own_name, id = %inner.ctx.own_id, "listening (address unknown: {e})"),
        }

        // The node's first input, before anything from the network (the
        // tasks spawned below cannot run before this task yields).
        inner.feed(Input::Start);

        let mut tasks = vec![TaskGuard(tokio::task::spawn_local(conn::accept_loop::<T>(listener, inner.ctx.clone(), inner.tx.clone())))];
        for (&peer, slot) in &inner.peers {
            if let Some(lost) = &slot.lost {
                tasks.push(TaskGuard(tokio::task::spawn_local(conn::dial_loop(
                    inner.transport.clone(),
                    inner.ctx.clone(),
                    peer,
                    slot.name.clone(),
                    slot.addr.clone(),
                    lost.clone(),
                    inner.tx.clone(),
                ))));
            }
        }

        let mut stop = std::pin::pin!(stop);
        loop {
            let deadline = inner.timers.next_deadline().map(|at| {
                // Relative to the runtime's clock, so this works with any
                // `Clock` whose time runs at tokio's pace.
                tokio::time::Instant::now() + at.saturating_since(inner.clock.now())
            });
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = sleep_until(deadline) => inner.fire_due_timers(),
                ev = rx.recv() => match ev {
                    Some(ev) => inner.on_task_event(ev),
                    // Unreachable while `inner.tx` lives; stop cleanly anyway.
                    None => break,
                },
            }
        }
        drop(tasks);
        Ok(inner.node)
    }
}

impl<N: Node, T: Transport, C: Clock> Inner<N, T, C> {
    async fn bind(&self) -> Result<T::Listener, DriverError> {
        self.transport.bind(&self.listen_addr).await.map_err(|source| DriverError::Bind { addr: self.listen_addr.clone(), source })
    }

    /// Feeds every due timer, earliest `(at, id)` first, each with its own
    /// drain. Timers armed by those inputs and already due fire too.
    fn fire_due_timers(&mut self) {
        let now = self.clock.now();
        while let Some(id) = self.timers.pop_due(now) {
            self.feed(Input::Timer(id));
        }
    }

    fn on_task_event(&mut self, ev: TaskEvent<T::Stream>) {
        match ev {
            TaskEvent::Up { peer, stream, decoder } => self.on_up(peer, stream, decoder),
            TaskEvent::Message { peer, conn, msg } => {
                if self.is_current(peer, conn) {
                    self.feed(Input::Message { from: peer, msg });
                }
            }
            TaskEvent::Completed(input) => self.feed(input),
            TaskEvent::Closed { peer, conn, reason } => {
                if self.is_current(peer, conn) {
                    if self.detach(peer, &reason, true) {
                        self.feed(Input::PeerDown(peer));
                    }
                } else {
                    tracing::debug!(node = %self.ctx.own_name, %peer, conn, "superseded connection ended: {reason}");
                }
            }
        }
    }

    fn on_up(&mut self, peer: NodeId, stream: T::Stream, decoder: FrameDecoder) {
        // A live connection keeps its place (see "What the node sees").
        // Only accepted connections can meet one: a peer we dial is dialed
        // only while it has none.
        let alive = |live: &Live| live.heard.get().elapsed() < self.ctx.keepalive.interval;
        if let Some(slot) = self.peers.get(&peer)
            && slot.lost.is_none()
            && slot.conn.as_ref().is_some_and(alive)
        {
            tracing::warn!(
                node = %self.ctx.own_name, peer = %slot.name, id = %peer,
                "refused a second connection claiming to be {}: its connection is alive", slot.name
            );
            return drop(stream);
        }
        if self.peers.get(&peer).is_some_and(|slot| slot.conn.is_some()) {
            // The newest connection wins; the node sees the old one go down.
            // The dialer (if we are it) is not woken: it is the one that
            // just delivered the new connection.
            if self.detach(peer, &ConnError::Replaced, false) {
                self.feed(Input::PeerDown(peer));
            }
        }
        let Some(slot) = self.peers.get_mut(&peer) else { return };
        let id = self.next_conn;
        self.next_conn += 1;
        let heard = Rc::new(Cell::new(tokio::time::Instant::now()));
        let task = tokio::task::spawn_local(conn::run_connection(
            stream,
            decoder,
            peer,
            id,
            self.ctx.keepalive,
            conn::Channels { out: slot.out.clone(), heard: heard.clone(), tx: self.tx.clone() },
        ));
        slot.conn = Some(Live { id, heard, _task: TaskGuard(task) });
        tracing::info!(node = %self.ctx.own_name, peer = %slot.name, id = %peer, conn = id, "peer up");
        slot.out.ready.notify_one();
        self.feed(Input::PeerUp(peer));
    }

    fn is_current(&self, peer: NodeId, conn: ConnId) -> bool {
        self.peers.get(&peer).and_then(|slot| slot.conn.as_ref()).is_some_and(|live| live.id == conn)
    }

    /// Closes the peer's current connection, if any, discarding its unsent
    /// frames; wakes the dial loop if `redial`. Returns whether there was a
    /// connection, i.e. whether the caller must feed `PeerDown`.
    fn detach(&mut self, peer: NodeId, reason: &ConnError, redial: bool) -> bool {
        let Some(slot) = self.peers.get_mut(&peer) else { return false };
        let Some(live) = slot.conn.take() else { return false };
        drop(live); // aborts the connection task, closing the stream
        let discarded = slot.out.queue.borrow_mut().clear();
        match reason {
            ConnError::Closed | ConnError::Replaced => {
                tracing::info!(node = %self.ctx.own_name, peer = %slot.name, id = %peer, "peer down: {reason}");
            }
            _ => tracing::warn!(node = %self.ctx.own_name, peer = %slot.name, id = %peer, "peer down: {reason}"),
        }
        if discarded.frames > 0 {
            tracing::debug!(
                node = %self.ctx.own_name, peer = %slot.name,
                frames = discarded.frames, bytes = discarded.bytes,
                "discarded frames not yet written when the connection ended"
            );
        }
        if let Some(lost) = slot.lost.as_ref().filter(|_| redial) {
            lost.notify_one();
        }
        true
    }

    /// One input, then a full drain, then the `PeerDown`s that overflowing
    /// queues made necessary (each again a full input and drain).
    fn feed(&mut self, input: Input) {
        let now = self.clock.now();
        self.node.handle(now, input);
        self.drain(now);
        self.close_pending();
    }

    fn close_pending(&mut self) {
        while let Some((peer, reason)) = self.closing.pop_first() {
            if self.detach(peer, &reason, true) {
                let now = self.clock.now();
                self.node.handle(now, Input::PeerDown(peer));
                self.drain(now);
            }
        }
    }

    /// Carries out every output the last `handle` decided, in order.
    fn drain(&mut self, now: Timestamp) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { to, msg } => self.send(to, &msg),
                Output::SetTimer { id, at } => self.timers.set(id, at),
                Output::CancelTimer(id) => self.timers.cancel(id),
                Output::Storage(request) => {
                    let done = self.services.storage(now, request);
                    self.start_request(async move { Input::Storage(done.await) });
                }
                Output::Hypervisor(request) => {
                    let done = self.services.hypervisor(now, request);
                    self.start_request(async move { Input::Hypervisor(done.await) });
                }
                Output::Event(event) => (self.sink)(now, &event),
                Output::Close { peer, reason } => {
                    self.closing.entry(peer).or_insert(ConnError::Refused(reason));
                }
            }
        }
    }

    /// Runs a request as its own task; its completion comes back through
    /// the task channel, so it is fed like any other input — never in the
    /// middle of the drain that started it, even if it is ready at once.
    fn start_request(&mut self, done: impl Future<Output = Input> + 'static) {
        while self.requests.try_join_next().is_some() {}
        let tx = self.tx.clone();
        self.requests.spawn_local(async move {
            let input = done.await;
            let _ = tx.send(TaskEvent::Completed(input)).await;
        });
    }

    fn send(&mut self, to: NodeId, msg: &Message) {
        let Some(slot) = self.peers.get(&to) else {
            tracing::warn!(node = %self.ctx.own_name, %to, "message for a node not in the peer table dropped");
            return;
        };
        let mut frame = Vec::new();
        if let Err(e) = encode_frame(msg, &mut frame) {
            tracing::error!(node = %self.ctx.own_name, peer = %slot.name, "message dropped: {e}");
            return;
        }
        let payload = frame.len() - HEADER_LEN;
        if payload > self.ctx.max_frame {
            // The peer would refuse it and close the connection; better to
            // drop this one message loudly than lose everything in flight.
            tracing::error!(
                node = %self.ctx.own_name, peer = %slot.name, payload, max = self.ctx.max_frame,
                "message larger than the frame limit dropped"
            );
            return;
        }
        let dropped = slot.out.queue.borrow_mut().push(frame);
        if dropped.frames > 0 {
            tracing::warn!(
                node = %self.ctx.own_name, peer = %slot.name, frames = dropped.frames, bytes = dropped.bytes,
                "send queue full: oldest frames dropped"
            );
            if slot.conn.is_some() {
                self.closing.entry(to).or_insert(ConnError::Overflow);
            }
        }
        slot.out.ready.notify_one();
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
