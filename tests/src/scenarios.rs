//! The project's scenario files, by name, for the tests that replay or
//! edit them (found from this crate's folder, whatever the working
//! directory).

use blockferry_sim::scenario::Scenario;
use std::path::PathBuf;

/// The `scenarios/` folder.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// The file of scenario `name` (its stem, e.g. `"backup-basic"`).
pub fn path(name: &str) -> PathBuf {
    dir().join(format!("{name}.toml"))
}

/// The text of scenario `name`, to edit before parsing.
pub fn text(name: &str) -> String {
    let path = path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Scenario `name`, parsed.
pub fn load(name: &str) -> Scenario {
    Scenario::from_file(path(name)).unwrap_or_else(|e| panic!("{e}"))
}
