//! The realnet driver's transport and clock over turmoil, so the turmoil
//! engine runs the very driver production runs, on simulated sockets.
//!
//! [`TurmoilTcp`] is turmoil's TCP as is: latency per host pair, partitions
//! that silently drop segments, crashes. [`ShapedTcp`] adds what turmoil
//! lacks and the scenario runner needs: link bandwidth as serialization
//! delay, each connection's rate under packet loss, and per-message breaks
//! ([`shaped`]), from link state shared with the runner's fault steps
//! ([`links`]).
//!
//! Use only inside turmoil hosts: every call reaches into the simulated
//! world of the host that makes it.

pub mod frames;
pub mod links;
pub mod shaped;
#[cfg(test)]
mod tests;

pub use links::{Links, SharedLinks};
pub use shaped::{Route, ShapedStream};

use crate::net::{SiteId, tcp};
use blockferry_core::Timestamp;
use blockferry_realnet::{Clock, Transport};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;
use turmoil::net::{TcpListener, TcpStream};

/// TCP between turmoil hosts. Addresses are `"hostname:port"` (dial) and
/// `"0.0.0.0:port"` (listen), as turmoil's sockets take them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilTcp;

impl Transport for TurmoilTcp {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn bind(&self, addr: &str) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, String)> {
        let (stream, addr) = listener.accept().await?;
        // turmoil reports the peer's IP; its host name reads better in logs.
        let name = turmoil::reverse_lookup(addr.ip()).map_or_else(|| addr.to_string(), |h| format!("{h}:{}", addr.port()));
        Ok((stream, name))
    }

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }

    fn local_addr(listener: &TcpListener) -> io::Result<String> {
        Ok(listener.local_addr()?.to_string())
    }
}

/// Where a host sits, and for a proxy the TCP flows its connections bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub site: SiteId,
    pub streams: Option<u32>,
}

impl Endpoint {
    /// A host that is not a proxy.
    pub fn at(site: SiteId) -> Self {
        Endpoint { site, streams: None }
    }
}

/// [`TurmoilTcp`] through the run's links: each stream's writes are shaped
/// by the link from this host's site to the peer's, at the rate of the
/// connection's flows.
#[derive(Clone)]
pub struct ShapedTcp {
    links: SharedLinks,
    /// This host.
    me: Endpoint,
    /// Every host, by turmoil host name.
    hosts: Rc<BTreeMap<String, Endpoint>>,
}

impl ShapedTcp {
    pub fn new(links: SharedLinks, me: Endpoint, hosts: Rc<BTreeMap<String, Endpoint>>) -> Self {
        ShapedTcp { links, me, hosts }
    }

    fn shape(&self, stream: TcpStream, peer: &str) -> io::Result<ShapedStream<TcpStream>> {
        let host = peer.rsplit_once(':').map_or(peer, |(host, _)| host);
        let Some(&to) = self.hosts.get(host) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{peer}: not a host of this run")));
        };
        let route = Route { from: self.me.site, to: to.site, streams: tcp::bundle(self.me.streams, to.streams) };
        Ok(ShapedStream::new(stream, self.links.clone(), route))
    }
}

/// A turmoil listener that shapes the streams it accepts like
/// [`ShapedTcp`] shapes the ones it dials.
pub struct ShapedListener {
    inner: TcpListener,
    tcp: ShapedTcp,
}

impl Transport for ShapedTcp {
    type Stream = ShapedStream<TcpStream>;
    type Listener = ShapedListener;

    async fn bind(&self, addr: &str) -> io::Result<ShapedListener> {
        Ok(ShapedListener { inner: TurmoilTcp.bind(addr).await?, tcp: self.clone() })
    }

    async fn accept(listener: &ShapedListener) -> io::Result<(Self::Stream, String)> {
        let (stream, peer) = TurmoilTcp::accept(&listener.inner).await?;
        Ok((listener.tcp.shape(stream, &peer)?, peer))
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        let stream = TurmoilTcp.connect(addr).await?;
        self.shape(stream, addr)
    }

    fn local_addr(listener: &ShapedListener) -> io::Result<String> {
        TurmoilTcp::local_addr(&listener.inner)
    }
}

/// The scenario's start plus simulated time since the simulation started,
/// the same for every host and across crashes and restarts, so events of
/// different hosts, and of one host before and after a bounce, share one
/// timeline (a `TokioClock` reads the host's wall clock).
#[derive(Debug)]
pub struct TurmoilClock {
    start: Timestamp,
    /// Last reading, returned if called outside a simulated host, so time
    /// never goes backwards.
    last: Cell<Timestamp>,
}

impl TurmoilClock {
    /// A clock reading `start` when the simulation starts.
    pub fn starting_at(start: Timestamp) -> Self {
        TurmoilClock { start, last: Cell::new(start) }
    }
}

impl Clock for TurmoilClock {
    fn now(&self) -> Timestamp {
        let now = turmoil::sim_elapsed().map_or(self.last.get(), |elapsed| self.start + elapsed).max(self.last.get());
        self.last.set(now);
        now
    }
}
