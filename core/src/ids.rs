//! Identifiers. Each is a distinct newtype so a disk id can never be passed
//! where a job id is expected; all are small, `Copy`, ordered (they key
//! `BTreeMap`s whose iteration order reaches outputs) and serialisable.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A node of the deployment (manager, proxy, repository, host), an index
    /// into the topology's node table. Names travel only in the handshake.
    NodeId(u32), "n"
);
id_type!(
    /// A virtual machine, as known to the manager's configuration.
    VmId(u32), "vm"
);
id_type!(
    /// A job definition.
    JobId(u32), "job"
);
id_type!(
    /// One run of a job. Allocated by the manager, unique for the run.
    SessionId(u64), "s"
);
id_type!(
    /// A restore point in a repository's catalog.
    RestorePointId(u64), "rp"
);
id_type!(
    /// A changed-block-tracking epoch of one disk: "changes since this id"
    /// is what an incremental asks the host for.
    ChangeId(u64), "cid"
);

/// A disk: the VM it belongs to and its position in the VM's disk list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DiskId {
    pub vm: VmId,
    pub index: u16,
}

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/disk{}", self.vm, self.index)
    }
}
id_type!(
    /// A hypervisor snapshot of one VM, named by the host that made it.
    SnapshotId(u64), "snap"
);
id_type!(
    /// One disk task of a session (backup, replication or restore).
    TaskId(u64), "t"
);
id_type!(
    /// A storage or hypervisor request a node made, echoed by its completion.
    RequestId(u64), "req"
);
