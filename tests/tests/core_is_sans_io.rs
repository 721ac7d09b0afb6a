//! core must stay sans-IO: no async runtime or socket crate anywhere in its
//! dependency tree, and no clock, filesystem, network, thread or randomly
//! ordered map in its source.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn core_dependency_tree_has_no_io_crates() {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args(["tree", "-p", "blockferry-core", "-e", "normal", "--prefix", "none", "--offline"])
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"blake3"), "the tree was not read: {tree}");
    for banned in ["tokio", "turmoil", "mio", "socket2", "async-std", "futures-io"] {
        assert!(!crates.contains(&banned), "blockferry-core depends on {banned}:\n{tree}");
    }
}

#[test]
fn core_source_reads_no_clock_and_does_no_io() {
    let banned = ["std::time::Instant", "SystemTime", "std::fs", "std::net", "std::thread", "RandomState", "thread_rng"];
    let mut checked = 0;
    let mut stack = vec![workspace().join("core/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for word in banned {
                assert!(!text.contains(word), "{} uses {word}", path.display());
            }
            // Hash tables only with a seedless hasher (`DigestHasher` in
            // block.rs; `DigestTable` hashes with it itself): a randomly
            // seeded one would make iteration order, and so runs, differ
            // from process to process.
            for line in text.lines().filter(|l| l.contains("HashMap") || l.contains("HashSet")) {
                let seedless = line.contains("BuildHasherDefault") || line.trim_start().starts_with("use std::collections::");
                assert!(seedless, "{} uses a hash table without a fixed hasher: {line}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 5, "only {checked} core source files found");
}
