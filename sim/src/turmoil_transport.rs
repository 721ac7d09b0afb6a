//! The realnet driver's transport and clock over turmoil, so the turmoil
//! engine runs the very driver production runs, on simulated sockets.
//!
//! Use only inside turmoil hosts: every call reaches into the simulated
//! world of the host that makes it.

use blockferry_core::Timestamp;
use blockferry_realnet::{Clock, Transport};
use std::cell::Cell;
use std::io;
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

/// Simulated time since the simulation started, the same for every host and
/// across crashes and restarts, so events of different hosts, and of one host
/// before and after a bounce, share one timeline (a `TokioClock` starts over
/// with each host runtime).
#[derive(Debug, Default)]
pub struct TurmoilClock {
    /// Last reading, returned if called outside a simulated host, so time
    /// never goes backwards.
    last: Cell<Timestamp>,
}

impl TurmoilClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for TurmoilClock {
    fn now(&self) -> Timestamp {
        let now = turmoil::sim_elapsed().map_or(self.last.get(), Timestamp::from_duration).max(self.last.get());
        self.last.set(now);
        now
    }
}
