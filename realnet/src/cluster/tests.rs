//! The deployment file: the contract's example, its errors, and the
//! deployment built from it.

use super::*;
use blockferry_core::config::JobKind as CoreJobKind;

/// Issue 14's example, verbatim.
const EXAMPLE: &str = r#"[manager]
address = "127.0.0.1:7400"
database = "state/manager"        # the manager's catalog

[[site]]
name = "prod"

[[host]]
name = "h1"
site = "prod"
address = "127.0.0.1:7401"
datastore = "vms"                 # a folder per VM, its disks are the *.img files inside, by name order

[[proxy]]
name = "p1"
site = "prod"
address = "127.0.0.1:7402"
task_slots = 2
transport = "network"             # or "direct": reads the host's datastore path itself

[[repository]]
name = "r1"
site = "prod"
address = "127.0.0.1:7403"
path = "repo"
capacity = "50GiB"                # optional quota

[[job]]
name = "nightly"
kind = "backup"
vms = ["web", "db"]
repository = "r1"
schedule = "daily at 22:00"       # or "every 1h", or "manual"
retention = 7
compression = "optimal"
block_size = "1MiB"
"#;

fn parse(text: &str) -> Result<Cluster, String> {
    Cluster::from_str(text, Path::new("/etc/blockferry/cluster.toml")).map_err(|e| e.to_string())
}

#[test]
fn the_contract_example_reads_with_paths_anchored_at_the_file() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.manager.database, Path::new("/etc/blockferry/state/manager"));
    assert_eq!(c.hosts[0].datastore, Path::new("/etc/blockferry/vms"));
    assert_eq!(c.repositories[0].path, Path::new("/etc/blockferry/repo"));
    assert_eq!(c.repositories[0].capacity, Some(50 << 30));
    assert_eq!(c.jobs[0].schedule, Schedule::DailyAt(Duration::from_secs(22 * 3600)));
    let nodes: Vec<(u32, String, Role)> = c.nodes().into_iter().map(|n| (n.id.0, n.name, n.role)).collect();
    assert_eq!(
        nodes,
        [
            (0, "manager".into(), Role::Manager),
            (1, "h1".into(), Role::Host),
            (2, "p1".into(), Role::Proxy),
            (3, "r1".into(), Role::Repository)
        ]
    );
    assert_eq!(c.roster().get(&c.operator()), Some(&Role::Operator));
}

/// Ids derived from names are durable (they are in every manifest): this
/// pins the derivation, so changing it cannot go unnoticed.
#[test]
fn ids_from_names_never_change() {
    assert_eq!(vm_id("web"), vm_id("web"));
    assert_ne!(vm_id("web"), vm_id("db"));
    assert_eq!((vm_id("web").0, job_id("nightly").0), PINNED);
}

const PINNED: (u32, u32) = (1_675_831_640, 486_420_064);

#[test]
fn mistakes_name_the_file_the_line_and_the_key() {
    let cases = [
        ("task_slots = 2", "task_slots = 2\nslots = 3", "cluster.toml:19: unknown key \"slots\" in [[proxy]]"),
        ("capacity = \"50GiB\"", "capacity = \"50GB\"", "cluster.toml:26: [[repository]] capacity: invalid size \"50GB\""),
        ("schedule = \"daily at 22:00\"", "schedule = \"nightly\"", "cluster.toml:33: [[job]] schedule: invalid schedule \"nightly\""),
        (
            "transport = \"network\"",
            "transport = \"carrier pigeon\"",
            "cluster.toml:19: invalid value \"carrier pigeon\" for [[proxy]] transport",
        ),
        ("repository = \"r1\"", "repository = \"r2\"", "job \"nightly\": repository names unknown repository \"r2\""),
        ("name = \"p1\"", "name = \"h1\"", "proxy \"h1\": the name is taken"),
        (
            "site = \"prod\"\naddress = \"127.0.0.1:7402\"",
            "site = \"dr\"\naddress = \"127.0.0.1:7402\"",
            "proxy \"p1\" is in unknown site \"dr\"",
        ),
        ("address = \"127.0.0.1:7403\"", "address = \"127.0.0.1\"", "repository \"r1\": address \"127.0.0.1\" is not host:port"),
        ("retention = 7", "retention = 7\nrestore_points = 3", "job \"nightly\": key \"restore_points\" belongs to replication jobs"),
        ("vms = [\"web\", \"db\"]", "vms = []", "job \"nightly\": names no VM"),
    ];
    for (from, to, expected) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let e = parse(&EXAMPLE.replacen(from, to, 1)).unwrap_err();
        assert!(e.contains(expected), "{to:?}: {e}");
        assert!(e.starts_with("/etc/blockferry/cluster.toml"), "{e}");
    }
}

#[test]
fn replication_jobs_resolve_their_names_and_replicas() {
    let text = format!(
        "{EXAMPLE}\n[[job]]\nname = \"dr\"\nkind = \"replication\"\nvms = [\"db\", \"web\"]\nsource_proxy = \"p1\"\ntarget_proxy = \"p1\"\ntarget_host = \"h1\"\nmetadata_repository = \"r1\"\nschedule = \"every 2h\"\nrestore_points = 3\nseed_from = \"nightly\"\nmap = {{ db = \"db-copy\" }}\n"
    );
    let c = parse(&text).unwrap();
    let JobKind::Replication { replicas, seed_from, .. } = &c.jobs[1].kind else { panic!("a replication job") };
    assert_eq!(seed_from.as_deref(), Some("nightly"));
    assert_eq!(replicas, &BTreeMap::from([("db".into(), "db-copy".into()), ("web".into(), "web_replica".into())]));
    let e = parse(&text.replace("seed_from = \"nightly\"", "seed_from = \"dr\"")).unwrap_err();
    assert!(e.contains("not a backup job"), "{e}");
    let e = parse(&text.replace("db = \"db-copy\"", "mail = \"m\"")).unwrap_err();
    assert!(e.contains("map names VM \"mail\""), "{e}");
}

/// A folder of its own under the system's temporary folder, removed when
/// dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("blockferry-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn vms_are_found_in_the_datastores_and_the_deployment_names_them_by_id() {
    let scratch = Scratch::new("locate");
    let file = scratch.0.join("cluster.toml");
    for vm in ["web", "db"] {
        std::fs::create_dir_all(scratch.0.join("vms").join(vm)).unwrap();
        std::fs::write(scratch.0.join("vms").join(vm).join("disk0.img"), b"").unwrap();
    }
    let c = Cluster::from_str(EXAMPLE, &file).unwrap();
    let located = c.locate_vms().unwrap();
    assert_eq!(located, BTreeMap::from([("db".into(), "h1".into()), ("web".into(), "h1".into())]));
    let d = c.deployment(&located).unwrap();
    assert_eq!(d.vms[&vm_id("web")].host, NodeId(1));
    assert_eq!(d.jobs[0].id, job_id("nightly"));
    assert_eq!(d.jobs[0].vms, [vm_id("web"), vm_id("db")]);
    assert!(matches!(&d.jobs[0].kind, CoreJobKind::Backup(b) if b.repository == NodeId(3) && b.retention == 7));

    std::fs::remove_file(scratch.0.join("vms/db/disk0.img")).unwrap();
    let e = c.locate_vms().unwrap_err();
    assert!(e.contains("VM \"db\" of job \"nightly\" is in no host's datastore") && e.contains("vms"), "{e}");
}
