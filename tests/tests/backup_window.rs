//! Backup windows (issue 5: "a session that cannot finish within its window
//! fails cleanly — no partial restore point visible — and the next session
//! catches up"). `scenarios/faults-backup-window.toml` slows the WAN to
//! 2 Mbit across the 2h session, whose 40-minute window then closes.

use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
use blockferry_tests::scenarios;

fn scenario(text_edit: impl Fn(String) -> String) -> Scenario {
    let text = scenarios::text("faults-backup-window");
    Scenario::from_str(&text_edit(text), "faults-backup-window.toml").expect("scenario parses")
}

#[test]
fn a_session_past_its_window_fails_cleanly_and_the_next_catches_up() {
    let s = runner::run(&scenario(|t| t), None, Some(EngineChoice::Des)).expect("runs");
    // The checker held: no partial point was ever visible, every committed
    // point (the catching-up one included) equals its snapshot and restores.
    assert!(s.ok, "{:?}", s.violations);
    let job = &s.jobs["backup"];
    assert_eq!(job.sessions_failed, 1, "{:?}", job.failures);
    // Both VMs of the 2h session were stopped when its window closed (2h40m).
    assert_eq!(job.failures.len(), 2, "{:?}", job.failures);
    for f in &job.failures {
        assert!(f.starts_with("at 2026-01-01T02:40:0") && f.ends_with("the session exceeded its backup window of 2400s"), "{f}");
    }
    // The 3h session caught up soon after the link recovered at 3h10m.
    let recovered = s.liveness.recovered_after_secs["backup"].expect("recovered");
    assert!(recovered < 1200, "recovered {recovered}s after the fault");
    assert_eq!(job.restore_points, 4);
}

#[test]
fn without_a_window_the_slow_session_runs_long_instead() {
    let s = runner::run(&scenario(|t| t.replace("window = \"40m\"\n", "")), None, Some(EngineChoice::Des)).expect("runs");
    assert!(s.ok, "{:?}", s.violations);
    let job = &s.jobs["backup"];
    assert_eq!(job.sessions_failed, 0, "{:?}", job.failures);
    assert!(job.sessions_skipped >= 1, "the slow session should have held off the next one");
}
