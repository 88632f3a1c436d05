//! `systemctl reload` (SIGHUP to `mailroom run`) on the real mail stack: a changed template is in
//! force for the next acknowledgement while the IMAP session stays the same TCP connection; a
//! broken template or configuration is refused with its file or key named (log and STATUS=) and
//! the previous one keeps working; a changed data_dir is reported as needing a restart and the
//! daemon keeps filing where it did. Like tests/daemon.rs, this needs `scripts/test` (it fails
//! under CI=true without a stack, and says SKIPPED otherwise).

mod common;

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, Stack, complete_application, status_json, unique_id, wait_for, write_config};

const DEADLINE: Duration = Duration::from_secs(60);

/// The built-in `fr/complete.j2` with a marker in its subject.
fn complete_template(marker: &str) -> String {
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/fr/complete.j2")).unwrap();
    let edited = builtin.replacen("{% block subject %}", &format!("{{% block subject %}}{marker} "), 1);
    assert_ne!(edited, builtin);
    edited
}

/// Sends an application and returns the decoded subject of its acknowledgement.
fn acknowledged_subject(stack: &Stack, to: &str, who: &str, name: &str) -> String {
    let id = unique_id(who.split('@').next().unwrap());
    stack.submit(who, &[to], &complete_application(who, name, to, &id));
    let raw = wait_for(&format!("the acknowledgement of {id}"), DEADLINE, || {
        stack.messages_with(who, "INBOX", "In-Reply-To", &id).into_iter().next()
    });
    mailroom::understand::parse::parse(raw.as_bytes()).unwrap().subject.unwrap_or_default()
}

/// The local ports of the process's established TCP connections to `port` (its IMAP sessions),
/// read from /proc: the same ports after a reload mean the same sessions.
fn connections_to(pid: u32, port: u16) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
            if f.len() > 9 && f[3] == "01" && port_of(f[2]) == port && inodes.contains(f[9]) {
                ports.push(port_of(f[1]));
            }
        }
    }
    ports.sort();
    ports
}

struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn drain(&mut self) -> &[String] {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        &self.seen
    }

    /// Waits for the `n`th reload to end: RELOADING=1 (with MONOTONIC_USEC), then READY=1.
    /// Returns the STATUS= line said after it.
    fn reload_done(&mut self, n: usize) -> String {
        wait_for(&format!("reload {n}: RELOADING=1, then READY=1 and STATUS="), DEADLINE, || {
            let seen = self.drain();
            let reloading: Vec<usize> =
                seen.iter().enumerate().filter(|(_, m)| m.contains("RELOADING=1")).map(|(i, _)| i).collect();
            let start = *reloading.get(n - 1)?;
            assert!(seen[start].contains("MONOTONIC_USEC="), "{:?}", seen[start]);
            let after = &seen[start + 1..];
            let ready = after.iter().position(|m| m.contains("READY=1"))?;
            let status = after[..ready].iter().rev().find_map(|m| m.strip_prefix("STATUS="))?;
            Some(status.trim_end().to_owned())
        })
    }
}

fn hangup(daemon: &Daemon) {
    let ok = std::process::Command::new("kill").args(["-HUP", &daemon.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[test]
fn reload_swaps_templates_keeps_the_session_and_refuses_what_it_cannot_apply() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "reload");
    let to = format!("contact+{folder}@example.test");
    let templates = dir.path().join("templates/fr");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("complete.j2"), complete_template("[v1]")).unwrap();
    // Polling once an hour: the session seen before and after is the one IDLE keeps open.
    let imap = format!("{}\npoll_interval_secs = 3600", stack.imap_lines("contact@example.test", &folder, false));
    let config = write_config(
        dir.path(),
        &imap,
        &stack.smtp_lines("contact@example.test", false),
        "[replies]\ntemplates_dir = \"templates\"\n",
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut notes = Notifications { socket, seen: Vec::new() };
    let mut daemon = Daemon::start_with_env(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let pid = daemon.child.id();
    let imaps = stack.port("MAILSTACK_IMAPS_PORT");

    let subject = acknowledged_subject(&stack, &to, "alice@example.test", "Alice Martin");
    assert!(subject.starts_with("[v1] "), "{subject:?}");
    let session = connections_to(pid, imaps);
    assert_eq!(session.len(), 1, "one IMAP session: {session:?}");

    // 1. A changed template: the next acknowledgement uses it, on the same IMAP session.
    std::fs::write(templates.join("complete.j2"), complete_template("[v2]")).unwrap();
    hangup(&daemon);
    let status = notes.reload_done(1);
    assert!(status.contains("configuration reloaded"), "{status}");
    assert!(daemon.log_text().contains("configuration reloaded changed=templates read again"), "{}", daemon.log_text());
    let subject = acknowledged_subject(&stack, &to, "bob@example.test", "Bob Durand");
    assert!(subject.starts_with("[v2] "), "{subject:?}");
    assert_eq!(connections_to(pid, imaps), session, "the IMAP session survives the reload");

    // 2. A broken template: refused with its file and line, and [v2] stays in force.
    let broken = templates.join("complete.j2");
    std::fs::write(&broken, "{% block subject %}[v3] {{ posting.title {% endblock %}\n").unwrap();
    hangup(&daemon);
    let status = notes.reload_done(2);
    let named = format!("template {}: line 1", broken.display());
    assert!(status.contains("reload rejected") && status.contains(&named), "{status}");
    assert!(status.contains("running with the previous configuration"), "{status}");
    let log = daemon.log_text();
    assert!(log.contains("reload rejected; the running configuration stays in force") && log.contains(&named), "{log}");
    let subject = acknowledged_subject(&stack, &to, "carol@example.test", "Carol Petit");
    assert!(subject.starts_with("[v2] "), "the previous templates stay in force: {subject:?}");

    // 3. A broken configuration (a misspelt key): refused with the key named.
    std::fs::write(&broken, complete_template("[v3]")).unwrap();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("templates_dir =", "templates_dirr =")).unwrap();
    hangup(&daemon);
    let status = notes.reload_done(3);
    assert!(status.contains("reload rejected") && status.contains("templates_dirr"), "{status}");

    // 4. A new data_dir needs a restart: said so, and the daemon files where it did; the rest of
    //    the file (the [v3] template) is in force.
    std::fs::write(&config, good.replace("data_dir = \"data\"", "data_dir = \"elsewhere\"")).unwrap();
    hangup(&daemon);
    let status = notes.reload_done(4);
    assert!(status.contains("a restart is needed to apply storage.data_dir"), "{status}");
    let log = daemon.log_text();
    assert!(log.contains("restart_needed=storage.data_dir"), "{log}");
    let subject = acknowledged_subject(&stack, &to, "dave@example.test", "Dave Smith");
    assert!(subject.starts_with("[v3] "), "{subject:?}");
    assert!(!dir.path().join("elsewhere").exists(), "the running data_dir is kept until a restart");
    assert_eq!(connections_to(pid, imaps), session, "the same IMAP session after four reloads");
    assert_eq!(daemon.child.try_wait().unwrap(), None, "still running");

    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"].as_u64(), Some(4), "{s}");
    assert_eq!(s["totals"]["outbox_sent"].as_u64(), Some(4), "{s}");
    let posting = dir.path().join("data/stage-gestion-projet");
    assert_eq!(std::fs::read_dir(&posting).unwrap().count(), 4, "every application filed in the running data_dir");
    assert!(Path::new(&posting).is_dir());
}
