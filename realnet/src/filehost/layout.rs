//! Where things are in a datastore: the deployment contract's folder per
//! VM with its `*.img` disks, and the file host's own corner,
//! `.blockferry/`, for state and snapshot copies.

use super::error::At;
use blockferry_core::SnapshotId;
use std::fs;
use std::path::{Path, PathBuf};

/// The suffix that makes a file in a VM's folder one of its disks.
pub const DISK_SUFFIX: &str = ".img";

/// The longest VM folder name: what common filesystems allow for one name
/// (the manager bounds restored VM names the same way).
const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The file host's own folder. Hidden, so it is never mistaken for a
    /// VM folder (VM folder names may not start with a dot).
    pub(crate) fn meta(&self) -> PathBuf {
        self.root.join(".blockferry")
    }

    pub(crate) fn state_file(&self) -> PathBuf {
        self.meta().join("state.json")
    }

    pub(crate) fn snapshots(&self) -> PathBuf {
        self.meta().join("snapshots")
    }

    /// Where a reflink snapshot keeps its copies, under their disk names.
    pub(crate) fn snapshot_dir(&self, snap: SnapshotId) -> PathBuf {
        self.snapshots().join(snap.0.to_string())
    }

    pub(crate) fn vm_dir(&self, folder: &str) -> PathBuf {
        self.root.join(folder)
    }
}

/// Checks a VM folder name: one plain path component, so a restore named
/// `../etc` or `.blockferry` cannot write outside its own folder or over
/// the file host's state.
pub(crate) fn check_folder_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("vm folder name {name:?} {why}"));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad(&format!("is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name.starts_with('.') {
        return bad("starts with a dot (hidden names are the file host's own)");
    }
    if name.contains(['/', '\\', '\0']) {
        return bad("contains a path separator or a NUL");
    }
    Ok(())
}

/// The disks of the VM in `folder`: its `*.img` files in name (byte)
/// order, which is the order of the VM's disk indexes. Hidden files are
/// left out, as a shell's `*.img` leaves them out, so an editor's or a
/// copy tool's hidden temporary never shifts the indexes. Anything else
/// named `*.img` that is not a regular file (after symlinks) is an error
/// rather than skipped: skipping it would renumber the disks after it.
pub(crate) fn list_disks(folder: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(folder).at("listing vm folder", folder)? {
        let entry = entry.at("listing vm folder", folder)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            if name.as_encoded_bytes().ends_with(DISK_SUFFIX.as_bytes()) {
                return Err(format!("disk image {:?} in {} has a name that is not UTF-8", name, folder.display()));
            }
            continue;
        };
        if name.starts_with('.') || !name.ends_with(DISK_SUFFIX) {
            continue;
        }
        let path = entry.path();
        if !fs::metadata(&path).at("reading", &path)?.is_file() {
            return Err(format!("{} is not a regular file, so it cannot be a disk image", path.display()));
        }
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// Disk file names for a VM the file host creates (a restore target):
/// `disk0.img`, `disk1.img`... zero-padded to one width so that name order
/// is index order (`disk10.img` would sort before `disk2.img`).
pub(crate) fn restored_disk_names(count: usize) -> Vec<String> {
    let width = count.saturating_sub(1).to_string().len();
    (0..count).map(|i| format!("disk{i:0width$}{DISK_SUFFIX}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Disk indexes follow name order; hidden files and other suffixes are
    /// not disks.
    #[test]
    fn disks_are_the_visible_img_files_in_name_order() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        for name in ["b.img", "a.img", "10.img", "9.img", "notes.txt", ".partial.img", "c.img.bak"] {
            fs::write(dir.path().join(name), b"x").expect("a file");
        }
        assert_eq!(list_disks(dir.path()), Ok(vec!["10.img".into(), "9.img".into(), "a.img".into(), "b.img".into()]));
    }

    #[test]
    fn a_folder_named_like_a_disk_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        fs::create_dir(dir.path().join("odd.img")).expect("a folder");
        let err = list_disks(dir.path()).expect_err("a folder is not a disk");
        assert!(err.contains("odd.img") && err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn restored_names_sort_in_index_order() {
        assert_eq!(restored_disk_names(2), ["disk0.img", "disk1.img"]);
        let many = restored_disk_names(12);
        assert_eq!(many[2], "disk02.img");
        let mut sorted = many.clone();
        sorted.sort();
        assert_eq!(sorted, many);
        assert!(restored_disk_names(0).is_empty());
    }

    #[test]
    fn folder_names_stay_inside_the_datastore() {
        for bad in ["", ".", "..", "../etc", ".blockferry", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(check_folder_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["web", "db 01", "restored-web.2"] {
            assert_eq!(check_folder_name(good), Ok(()));
        }
    }
}
