//! The realnet driver over real TCP on loopback: two core nodes exchange
//! pings, a peer with the wrong protocol version (or name) is refused, and
//! a corrupt or truncated frame costs a connection — never a panic — after
//! which the dialer reconnects; a peer that goes silent on an open socket
//! (half-open connection) is dropped after the idle timeout.

use blockferry_core::wire::frame::encode_frame_version;
use blockferry_core::wire::{FrameDecoder, Hello, Message, PROTOCOL_VERSION, encode_frame};
use blockferry_core::{Event, NodeId, Timestamp};
use blockferry_realnet::{Backoff, Driver, DriverConfig, EventSink, Keepalive, TokioClock, TokioTcp};
use blockferry_tests::fixtures::{PingPong, RefusesFirstPing};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, LocalSet, spawn_local};

type Log = Rc<RefCell<Vec<(Timestamp, Event)>>>;
type TestResult = Result<(), Box<dyn std::error::Error>>;

const N0: NodeId = NodeId(0);
const N1: NodeId = NodeId(1);

/// Runs `f` on a current-thread runtime inside a `LocalSet`, as realnet
/// does, failing the test if it takes longer than a few seconds.
fn local_test<F: Future<Output = TestResult>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = LocalSet::new().block_on(&rt, async { tokio::time::timeout(Duration::from_secs(8), f).await.expect("test timed out") });
    if let Err(e) = result {
        panic!("test failed: {e}");
    }
}

fn sink(log: &Log) -> EventSink {
    let log = log.clone();
    Box::new(move |at, event| log.borrow_mut().push((at, event.clone())))
}

fn events(log: &Log) -> Vec<Event> {
    log.borrow().iter().map(|(_, e)| e.clone()).collect()
}

fn pongs(log: &Log) -> Vec<u64> {
    log.borrow()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::PongReceived { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn fast_backoff() -> Backoff {
    Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) }
}

fn config(name: &str, id: NodeId, peer_name: &str, peer_id: NodeId, peer_addr: &str) -> DriverConfig {
    DriverConfig::new(name, id, "127.0.0.1:0").peer(peer_id, peer_name, peer_addr).with_backoff(fast_backoff())
}

/// Starts a driver in its own local task; it stops when `stop` turns true.
fn start<N: blockferry_core::Node + 'static>(
    driver: Driver<N, TokioTcp, TokioClock>,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<Result<N, blockferry_realnet::DriverError>> {
    let mut stop = stop.clone();
    spawn_local(driver.run_until(async move {
        let _ = stop.wait_for(|s| *s).await;
    }))
}

/// Waits (in real time, bounded by the test timeout) until `cond` holds.
async fn until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A responder n1 listening on an ephemeral port; returns it with its address.
async fn responder(log: &Log) -> Result<(Driver<PingPong, TokioTcp, TokioClock>, String), Box<dyn std::error::Error>> {
    responder_with(log, Keepalive::default()).await
}

/// The same with its own keepalive.
async fn responder_with(
    log: &Log,
    keepalive: Keepalive,
) -> Result<(Driver<PingPong, TokioTcp, TokioClock>, String), Box<dyn std::error::Error>> {
    let mut d1 = Driver::new(
        config("n1", N1, "n0", N0, "unused: n1 never dials n0").with_keepalive(keepalive),
        PingPong::responder(),
        TokioTcp,
        TokioClock::new(),
        sink(log),
    )?;
    let addr = d1.listen().await?;
    Ok((d1, addr))
}

#[test]
fn two_nodes_ping_pong_over_loopback() {
    local_test(async {
        let (log0, log1) = (Log::default(), Log::default());
        let (d1, addr1) = responder(&log1).await?;
        let pinger = PingPong::pinger(N1, Duration::from_millis(100), 5);
        let d0 = Driver::new(config("n0", N0, "n1", N1, &addr1), pinger, TokioTcp, TokioClock::new(), sink(&log0))?;

        let (stop_tx, stop) = watch::channel(false);
        let (h1, h0) = (start(d1, &stop), start(d0, &stop));
        until(|| pongs(&log0).len() == 5).await;
        stop_tx.send(true)?;
        h0.await??;
        h1.await??;

        assert_eq!(pongs(&log0), vec![0, 1, 2, 3, 4]);
        assert_eq!(events(&log0).first(), Some(&Event::PeerUp { peer: N1 }));
        assert_eq!(events(&log1), vec![Event::PeerUp { peer: N0 }]);
        // Pings go out every 100 ms, starting when the peer comes up.
        let times: Vec<Timestamp> = log0.borrow().iter().map(|(t, _)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "event times go backwards: {times:?}");
        Ok(())
    });
}

/// Reads until the peer closes; returns how many bytes it sent first. A
/// reset counts as closed.
async fn drain_until_closed<R: AsyncRead + Unpin>(stream: &mut R) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

#[test]
fn wrong_version_unknown_name_or_simulated_peer_is_refused() {
    local_test(async {
        let log1 = Log::default();
        let (d1, addr1) = responder(&log1).await?;
        let (stop_tx, stop) = watch::channel(false);
        let h1 = start(d1, &stop);

        let bad_hellos = [
            // The frame header itself carries version 99.
            (Hello { protocol_version: 99, ..Hello::new("n0") }, 99),
            // A well-framed hello that claims version 99.
            (Hello { protocol_version: 99, ..Hello::new("n0") }, PROTOCOL_VERSION),
            // The right version from a node not in the topology.
            (Hello::new("mallory"), PROTOCOL_VERSION),
            // A simulator's node, with synthetic payloads, at a real one.
            (Hello { synthetic_payloads: true, ..Hello::new("n0") }, PROTOCOL_VERSION),
        ];
        for (hello, frame_version) in bad_hellos {
            let mut raw = TcpStream::connect(&addr1).await?;
            let mut frame = Vec::new();
            encode_frame_version(&hello, frame_version, &mut frame)?;
            raw.write_all(&frame).await?;
            let answered = drain_until_closed(&mut raw).await;
            assert_eq!(answered, 0, "{hello:?} in a version {frame_version} frame got an answer");
        }

        stop_tx.send(true)?;
        h1.await??;
        assert_eq!(events(&log1), vec![], "a refused peer must never be reported up");
        Ok(())
    });
}

/// A scripted peer's side of the protocol: frames in and out of a raw socket.
struct RawPeer {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl RawPeer {
    fn new(stream: TcpStream) -> Self {
        RawPeer { stream, decoder: FrameDecoder::default() }
    }

    async fn send<T: serde::Serialize>(&mut self, msg: &T) -> TestResult {
        let mut frame = Vec::new();
        encode_frame(msg, &mut frame)?;
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// The next message that is not a keepalive.
    async fn recv_message(&mut self) -> Result<Message, Box<dyn std::error::Error>> {
        loop {
            match self.recv::<Message>().await? {
                Message::Keepalive => {}
                msg => return Ok(msg),
            }
        }
    }

    async fn recv<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Box<dyn std::error::Error>> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(msg) = self.decoder.next_frame()? {
                return Ok(msg);
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err("peer closed the connection".into());
            }
            self.decoder.extend(&buf[..n]);
        }
    }
}

/// A frame whose checksum does not match its payload.
fn corrupt_frame() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut frame = Vec::new();
    encode_frame(&Message::Pong { seq: 0 }, &mut frame)?;
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    Ok(frame)
}

#[test]
fn corrupt_frame_drops_the_connection_and_the_dialer_reconnects() {
    local_test(async {
        // A scripted n1: the first connection sends a corrupt frame after the
        // handshake; the second behaves and answers pings.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let fake: JoinHandle<TestResult> = spawn_local(async move {
            let mut first = RawPeer::new(listener.accept().await?.0);
            let hello: Hello = first.recv().await?;
            assert_eq!(hello, Hello::new("n0"));
            first.send(&Hello::new("n1")).await?;
            first.stream.write_all(&corrupt_frame()?).await?;
            drain_until_closed(&mut first.stream).await;

            let mut second = RawPeer::new(listener.accept().await?.0);
            let _: Hello = second.recv().await?;
            second.send(&Hello::new("n1")).await?;
            loop {
                match second.recv::<Message>().await {
                    Ok(Message::Ping { seq }) => second.send(&Message::Pong { seq }).await?,
                    Ok(other) => return Err(format!("unexpected {other:?}").into()),
                    Err(_) => return Ok(()), // the driver stopped
                }
            }
        });

        let log0 = Log::default();
        let pinger = PingPong::pinger(N1, Duration::from_millis(100), 5);
        let d0 = Driver::new(config("n0", N0, "n1", N1, &addr), pinger, TokioTcp, TokioClock::new(), sink(&log0))?;
        let (stop_tx, stop) = watch::channel(false);
        let h0 = start(d0, &stop);
        until(|| pongs(&log0).len() == 4).await;
        stop_tx.send(true)?;
        h0.await??;
        fake.await??;

        // Ping 0 went out on the first connection, which the corrupt frame
        // killed; the rest went over the second.
        let expected: Vec<Event> = [Event::PeerUp { peer: N1 }, Event::PeerDown { peer: N1 }, Event::PeerUp { peer: N1 }]
            .into_iter()
            .chain((1..5).map(|seq| Event::PongReceived { peer: N1, seq, rtt_nanos: 0 }))
            .collect();
        let got: Vec<Event> = events(&log0)
            .into_iter()
            .map(|e| match e {
                Event::PongReceived { peer, seq, .. } => Event::PongReceived { peer, seq, rtt_nanos: 0 },
                e => e,
            })
            .collect();
        assert_eq!(got, expected);
        Ok(())
    });
}

/// Keepalives every 100 ms: a connection silent for longer may be replaced.
const SHORT_KEEPALIVE: Keepalive = Keepalive { interval: Duration::from_millis(100), timeout: Duration::from_secs(5) };

#[test]
fn newest_connection_wins_and_a_truncated_frame_is_a_peer_down() {
    local_test(async {
        let log1 = Log::default();
        let (d1, addr1) = responder_with(&log1, SHORT_KEEPALIVE).await?;
        let (stop_tx, stop) = watch::channel(false);
        let h1 = start(d1, &stop);

        // n0 connects twice without closing the first connection (as after a
        // restart whose old socket is not yet known dead: silent for longer
        // than the keepalive interval).
        let mut old = RawPeer::new(TcpStream::connect(&addr1).await?);
        old.send(&Hello::new("n0")).await?;
        let _: Hello = old.recv().await?;
        until(|| events(&log1).len() == 1).await;
        tokio::time::sleep(SHORT_KEEPALIVE.interval * 2).await;

        let mut new = RawPeer::new(TcpStream::connect(&addr1).await?);
        new.send(&Hello::new("n0")).await?;
        assert_eq!(new.recv::<Hello>().await?, Hello::new("n1"));
        // The old connection is closed by the driver.
        drain_until_closed(&mut old.stream).await;

        new.send(&Message::Ping { seq: 7 }).await?;
        assert_eq!(new.recv::<Message>().await?, Message::Pong { seq: 7 });

        // Half a frame, then EOF.
        let mut frame = Vec::new();
        encode_frame(&Message::Ping { seq: 8 }, &mut frame)?;
        new.stream.write_all(&frame[..frame.len() / 2]).await?;
        new.stream.shutdown().await?;
        until(|| events(&log1).len() == 4).await;
        // Give a late (stale) close of the old connection the chance to show up.
        tokio::time::sleep(Duration::from_millis(50)).await;

        stop_tx.send(true)?;
        h1.await??;
        assert_eq!(
            events(&log1),
            vec![Event::PeerUp { peer: N0 }, Event::PeerDown { peer: N0 }, Event::PeerUp { peer: N0 }, Event::PeerDown { peer: N0 },],
            "one down per up, none for the replaced connection's own close"
        );
        Ok(())
    });
}

/// Issue 13 §2: a second connection claiming a peer whose connection is
/// alive (it sent something within the keepalive interval) is refused and
/// closed; the node never sees its peer go down, and the first connection
/// goes on answering.
#[test]
fn a_second_connection_claiming_a_live_peer_is_refused() {
    local_test(async {
        let log1 = Log::default();
        let (d1, addr1) = responder_with(&log1, SHORT_KEEPALIVE).await?;
        let (stop_tx, stop) = watch::channel(false);
        let h1 = start(d1, &stop);

        let mut real = RawPeer::new(TcpStream::connect(&addr1).await?);
        real.send(&Hello::new("n0")).await?;
        let _: Hello = real.recv().await?;
        until(|| events(&log1).len() == 1).await;
        // The real n0 keeps talking while an impostor claims its name.
        for seq in 0..3 {
            tokio::time::sleep(SHORT_KEEPALIVE.interval / 2).await;
            let mut impostor = RawPeer::new(TcpStream::connect(&addr1).await?);
            impostor.send(&Hello::new("n0")).await?;
            let _ = impostor.recv::<Hello>().await;
            let _ = impostor.send(&Message::Ping { seq: 100 + seq }).await;
            assert!(impostor.recv_message().await.is_err(), "the impostor's ping was answered");
            real.send(&Message::Ping { seq }).await?;
            assert_eq!(real.recv_message().await?, Message::Pong { seq });
        }

        stop_tx.send(true)?;
        h1.await??;
        assert_eq!(events(&log1), vec![Event::PeerUp { peer: N0 }], "the live connection was never replaced");
        Ok(())
    });
}

#[test]
fn a_silent_peer_gets_keepalives_and_is_dropped_after_the_idle_timeout() {
    local_test(async {
        let keepalive = Keepalive { interval: Duration::from_millis(50), timeout: Duration::from_millis(400) };
        // A scripted n1 that completes the handshake, then never writes again
        // but keeps its socket open: what a peer behind a dead link looks like.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let fake: JoinHandle<Result<(usize, Duration), Box<dyn std::error::Error>>> = spawn_local(async move {
            let mut silent = RawPeer::new(listener.accept().await?.0);
            let _: Hello = silent.recv().await?;
            silent.send(&Hello::new("n1")).await?;
            let since = tokio::time::Instant::now();
            let mut keepalives = 0;
            loop {
                match silent.recv::<Message>().await {
                    Ok(Message::Keepalive) => keepalives += 1,
                    Ok(other) => return Err(format!("unexpected {other:?}").into()),
                    Err(_) => break,
                }
            }
            let closed_after = since.elapsed();
            // The dialer comes back; this time, let it be.
            let mut again = RawPeer::new(listener.accept().await?.0);
            let _: Hello = again.recv().await?;
            Ok((keepalives, closed_after))
        });

        let log0 = Log::default();
        let config = config("n0", N0, "n1", N1, &addr).with_keepalive(keepalive);
        let d0 = Driver::new(config, PingPong::responder(), TokioTcp, TokioClock::new(), sink(&log0))?;
        let (stop_tx, stop) = watch::channel(false);
        let h0 = start(d0, &stop);
        let (keepalives, closed_after) = fake.await??;
        until(|| events(&log0).len() == 2).await;
        stop_tx.send(true)?;
        h0.await??;

        assert_eq!(events(&log0), vec![Event::PeerUp { peer: N1 }, Event::PeerDown { peer: N1 }]);
        assert!(keepalives >= 3, "only {keepalives} keepalives in {closed_after:?}");
        assert!(closed_after >= keepalive.timeout, "closed after {closed_after:?}, before the idle timeout");
        assert!(closed_after < keepalive.timeout * 3, "closed only after {closed_after:?}");
        Ok(())
    });
}

/// A node that refuses its peer's input closes the connection (the event
/// log names the peer and the reason); the peer sees it go down, dials
/// again, and what it sends then is judged afresh.
#[test]
fn a_refused_input_closes_the_connection_and_the_peer_comes_back() {
    local_test(async {
        let (log0, log1) = (Log::default(), Log::default());
        let refuser = RefusesFirstPing::default();
        let mut d1 =
            Driver::new(config("n1", N1, "n0", N0, "unused: n1 never dials n0"), refuser, TokioTcp, TokioClock::new(), sink(&log1))?;
        let addr1 = d1.listen().await?;
        let pinger = PingPong::pinger(N1, Duration::from_millis(100), 3);
        let d0 = Driver::new(config("n0", N0, "n1", N1, &addr1), pinger, TokioTcp, TokioClock::new(), sink(&log0))?;

        let (stop_tx, stop) = watch::channel(false);
        let (h1, h0) = (start(d1, &stop), start(d0, &stop));
        until(|| pongs(&log0).len() == 2).await;
        stop_tx.send(true)?;
        h0.await??;
        h1.await??;

        assert_eq!(pongs(&log0), vec![1, 2], "the refused ping is not answered, the later ones are");
        let refused = Event::InputRefused { peer: N0, reason: "ping 0 is not welcome".into() };
        assert_eq!(events(&log1), vec![Event::PeerUp { peer: N0 }, refused, Event::PeerDown { peer: N0 }, Event::PeerUp { peer: N0 }]);
        let peer_events: Vec<Event> = events(&log0).into_iter().filter(|e| !matches!(e, Event::PongReceived { .. })).collect();
        assert_eq!(peer_events, vec![Event::PeerUp { peer: N1 }, Event::PeerDown { peer: N1 }, Event::PeerUp { peer: N1 }]);
        Ok(())
    });
}

/// Reads from `stream` until it closes, for at most `within`: whether it
/// closed in that time.
async fn closes_within<R: AsyncRead + Unpin>(stream: &mut R, within: Duration) -> bool {
    tokio::time::timeout(within, drain_until_closed(stream)).await.is_ok()
}

/// Callers not yet authenticated are bounded (issue 13 §3): a hello larger
/// than any hello is refused from its header, and beyond 256 callers that
/// never say hello the next one is closed at once, not after the
/// handshake timeout (10 s here).
#[test]
fn unauthenticated_callers_are_bounded() {
    local_test(async {
        let log1 = Log::default();
        let (d1, addr1) = responder(&log1).await?;
        let (stop_tx, stop) = watch::channel(false);
        let h1 = start(d1, &stop);

        let mut frame = Vec::new();
        encode_frame(&Hello::new("n".repeat(100_000)), &mut frame)?;
        let mut big = TcpStream::connect(&addr1).await?;
        big.write_all(&frame[..64]).await?;
        assert!(closes_within(&mut big, Duration::from_secs(2)).await, "a 100 kB hello was waited for");

        let mut silent = Vec::new();
        for _ in 0..256 {
            silent.push(TcpStream::connect(&addr1).await?);
        }
        let mut one_more = TcpStream::connect(&addr1).await?;
        assert!(closes_within(&mut one_more, Duration::from_secs(2)).await, "the 257th silent caller was kept");
        drop(silent);

        stop_tx.send(true)?;
        h1.await??;
        assert_eq!(events(&log1), vec![], "no caller was reported up");
        Ok(())
    });
}
