//! The shaped transport inside a turmoil simulation: a frame arrives after
//! its serialization delay plus the latency, a small frame of another
//! connection is not held behind a large one, and a link with breaks 1
//! breaks the connection on the first message.

use super::*;
use crate::net::{LinkSpec, Network};
use blockferry_core::Message;
use blockferry_core::wire::encode_frame;
use std::cell::RefCell;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 7000;

/// What the server saw of each connection: bytes, and when the last came.
type Received = Rc<RefCell<Vec<(usize, Duration)>>>;

/// A turmoil world with "server" in site 0 and "client" in site 1, joined
/// by an 8 Mbit link (a byte per µs) with 10 ms latency and `breaks`. The
/// server reads every connection to its end.
fn world(breaks: f64) -> (turmoil::Sim<'static>, ShapedTcp, Received) {
    let mut net = Network::default();
    let spec = LinkSpec { latency: Duration::from_millis(10), bandwidth_bps: Some(8_000_000), breaks, ..LinkSpec::default() };
    net.set_link(SiteId(0), SiteId(1), spec);
    let rng = (breaks > 0.0).then(|| crate::seed::rng(1, crate::seed::Stream::Network));
    let links = Links::new(net, rng, Duration::from_millis(1));
    let (server, client) = (Endpoint::at(SiteId(0)), Endpoint::at(SiteId(1)));
    let sites = Rc::new(BTreeMap::from([("server".to_string(), server), ("client".to_string(), client)]));
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(10))
        .max_message_latency(Duration::from_millis(10))
        .simulation_duration(Duration::from_secs(10))
        .build();
    let received = Received::default();
    let (server, got) = (ShapedTcp::new(links.clone(), server, sites.clone()), received.clone());
    sim.host("server", move || {
        let (server, got) = (server.clone(), got.clone());
        async move {
            let listener = server.bind(&format!("0.0.0.0:{PORT}")).await?;
            loop {
                let (mut stream, _) = ShapedTcp::accept(&listener).await?;
                let got = got.clone();
                tokio::task::spawn_local(async move {
                    let mut buf = vec![0; 64 * 1024];
                    let mut total = 0;
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    got.borrow_mut().push((total, turmoil::sim_elapsed().unwrap_or_default()));
                });
            }
        }
    });
    (sim, ShapedTcp::new(links, client, sites), received)
}

fn frame<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out).expect("encodes");
    out
}

#[test]
fn frames_take_their_serialization_delay_and_small_ones_are_not_stuck_behind_large_ones() {
    let (mut sim, client, received) = world(0.0);
    // Not a message, so it costs its length: about a second at 8 Mbit.
    let big = frame(&vec![0xaau8; 1_000_000]);
    let ping = frame(&Message::Ping { seq: 1 });
    let (big_len, ping_len) = (big.len(), ping.len());
    sim.client("client", async move {
        let mut bulk = client.connect(&format!("server:{PORT}")).await?;
        let mut small = client.connect(&format!("server:{PORT}")).await?;
        let started = turmoil::sim_elapsed().unwrap_or_default();
        bulk.write_all(&big).await?;
        small.write_all(&ping).await?;
        small.flush().await?;
        drop(small);
        bulk.flush().await?;
        let done = turmoil::sim_elapsed().unwrap_or_default() - started;
        // The writer is held until its last piece has left the pipe.
        assert!(done >= Duration::from_millis(990), "the big frame left after {done:?}");
        drop(bulk);
        Ok(())
    });
    sim.run().expect("simulation");
    while received.borrow().len() < 2 {
        sim.step().expect("simulation");
    }
    let got = received.borrow().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    // The ping went out between two pieces of the big frame: one piece
    // (64 KiB, 65 ms) at most ahead of it, then the latency.
    let (small_bytes, small_at) = got[0];
    assert_eq!(small_bytes, ping_len);
    assert!(small_at < Duration::from_millis(150), "ping arrived at {small_at:?}");
    let (big_bytes, big_at) = got[1];
    assert_eq!(big_bytes, big_len);
    // 1 MB at a byte per µs plus the ping's share, plus 10 ms latency, plus
    // the connection setup.
    assert!(big_at >= Duration::from_millis(1010) && big_at < Duration::from_millis(1100), "big frame arrived at {big_at:?}");
}

#[test]
fn a_link_with_breaks_one_breaks_the_connection_on_the_first_message() {
    let (mut sim, client, received) = world(1.0);
    sim.client("client", async move {
        let mut stream = client.connect(&format!("server:{PORT}")).await?;
        let err = stream.write_all(&frame(&Message::Ping { seq: 1 })).await.expect_err("the link must break");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        // Broken for good.
        assert!(stream.write_all(&frame(&Message::Ping { seq: 2 })).await.is_err());
        Ok(())
    });
    sim.run().expect("simulation");
    while received.borrow().is_empty() {
        sim.step().expect("simulation");
    }
    assert_eq!(received.borrow()[0].0, 0, "nothing of a lost message arrives");
}
