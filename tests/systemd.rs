//! The unit file: hardened to an exposure of 1.5 or lower by systemd's own measure, and
//! consistent with what the daemon does. `systemd-analyze --offline` needs no running systemd.

use std::path::Path;
use std::process::Command;

fn unit() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mailroom.service")
}

#[test]
fn unit_is_hardened_to_1_5_or_lower() {
    let out = match Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(unit()).output() {
        Ok(o) => o,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("systemd-analyze is needed under CI: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: systemd-analyze not available: {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for mailroom.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(level <= 1.5, "exposure {level} > 1.5:\n{text}");
}

#[test]
fn unit_matches_the_daemon() {
    let text = std::fs::read_to_string(unit()).unwrap();
    let has = |line: &str| text.lines().any(|l| l.trim() == line);
    assert!(has("Type=notify"), "the daemon sends READY=1");
    assert!(has("RestartPreventExitStatus=2"), "exit 2 is a configuration error");
    assert!(text.contains("ExecStart=/usr/bin/mailroom run"));
    assert!(has("StateDirectory=mailroom"));
    // The first SystemCallFilter= decides allow-list mode: it must be the allow-list.
    let first_filter = text.lines().find(|l| l.starts_with("SystemCallFilter=")).unwrap();
    assert!(!first_filter.contains('~'), "the first SystemCallFilter= must be an allow-list: {first_filter}");
    // The stop bound: our shutdown grace must fit well inside TimeoutStopSec.
    let stop: u64 =
        text.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).unwrap().trim_end_matches('s').parse().unwrap();
    assert!(mailroom::outbox::SHUTDOWN_OUTBOX_GRACE.as_secs() * 2 <= stop);
}
