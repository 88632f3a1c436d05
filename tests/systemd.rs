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
    assert!(text.contains("ExecStart=/usr/bin/mailroom run"));
    // `systemctl reload`: SIGHUP re-reads the configuration (src/reload.rs). /bin/kill is procps's,
    // which the package depends on.
    assert!(has("ExecReload=/bin/kill -HUP $MAINPID"));
    let cargo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let depends = cargo.lines().find(|l| l.starts_with("depends = ")).unwrap();
    assert!(depends.contains("procps"), "{depends}");
    assert!(has("StateDirectory=mailroom"));
    // RestartPreventExitStatus= looks at the main process only: a check-config in ExecStartPre=
    // that exits 2 would be restarted forever (seen under systemd 252).
    assert!(!text.lines().any(|l| l.starts_with("ExecStartPre=")), "no ExecStartPre: `run` checks the config");
    assert!(has("RestartPreventExitStatus=2 243"), "config errors and missing credentials are not restarted");
    // The user the package creates (sysusers.d) is the one the unit runs as.
    assert!(has("User=mailroom") && has("Group=mailroom") && !has("DynamicUser=yes"));
    let sysusers = std::fs::read_to_string(unit().with_file_name("mailroom.sysusers")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u mailroom - ") && l.ends_with(" /var/lib/mailroom")),
        "{sysusers}"
    );
    // The first SystemCallFilter= decides allow-list mode: it must be the allow-list.
    let first_filter = text.lines().find(|l| l.starts_with("SystemCallFilter=")).unwrap();
    assert!(!first_filter.contains('~'), "the first SystemCallFilter= must be an allow-list: {first_filter}");
    // The stop bound: our shutdown grace must fit well inside TimeoutStopSec.
    let stop: u64 =
        text.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).unwrap().trim_end_matches('s').parse().unwrap();
    assert!(mailroom::outbox::SHUTDOWN_OUTBOX_GRACE.as_secs() * 2 <= stop);
}
