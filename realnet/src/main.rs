//! `blockferry`: the production daemons and operator CLI. The daemons are
//! not built yet (the driver they will run is in this crate's library); the
//! binary says so instead of pretending to start.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("blockferry: the production daemons are not implemented yet; run scenarios with `blockferry-sim run FILE`");
    ExitCode::from(2)
}
