//! How the file host phrases failures. A hypervisor request's failure
//! travels to a peer as text, and an operator reading it on the manager
//! must know which file to look at: so every IO error carries what was
//! being done and the path it was done to.

use std::io;
use std::path::Path;

/// Why a [`super::FileHost`] could not start on its datastore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file host: {0}")]
pub struct OpenError(pub String);

/// Adds the action and the path to an IO error.
pub(crate) trait At<T> {
    fn at(self, what: &str, path: &Path) -> Result<T, String>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, what: &str, path: &Path) -> Result<T, String> {
        self.map_err(|e| format!("{what} {}: {e}", path.display()))
    }
}

impl<T> At<T> for rustix::io::Result<T> {
    fn at(self, what: &str, path: &Path) -> Result<T, String> {
        self.map_err(io::Error::from).at(what, path)
    }
}
