//! What configuration files share — the simulator's scenario files and the
//! daemons' deployment file (`cluster.toml`) speak one vocabulary: the same
//! value grammars ([`units`]) and errors that name the file, the line and
//! the key ([`FileError`]).

mod error;
pub mod units;

pub use error::FileError;
