//! `mailroom run` as a daemon, on the real mail stack: IDLE, readiness and watchdog messages,
//! reconnecting after an outage, stopping cleanly mid-backlog, and `mailroom status` telling the
//! truth after each. Like tests/e2e.rs, these need `scripts/test` (they fail under CI=true
//! without a stack, and say SKIPPED otherwise).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Daemon, Stack, application_eml, complete_application, mailroom, pdf, status_json, unique_id, wait_for, write_config,
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until the daemon has completed a pass on its folder (its status shows a contact).
fn wait_ready(config: &Path) {
    let log = config.with_file_name("daemon.log");
    let what = format!("the daemon's first pass (log: {})", log.display());
    wait_for(&what, DEADLINE, || {
        if !config.with_file_name("state").join("mailroom.sqlite3").exists() {
            return None;
        }
        let s = status_json(config);
        s["mailboxes"].as_array().filter(|m| !m.is_empty() && !m[0]["last_contact"].is_null()).map(|_| ())
    });
}

fn notifications(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[test]
fn run_acknowledges_through_idle_and_reports_to_systemd() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "idle");
    // Polling once an hour: only IDLE can explain a reply within seconds.
    let imap = format!("{}\npoll_interval_secs = 3600", stack.imap_lines("contact@example.test", &folder, false));
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut daemon = Daemon::start_with_env(
        &config,
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "3000000")],
    );
    wait_ready(&config);
    let mut seen = Vec::new();
    wait_for("READY=1 on the notify socket", DEADLINE, || {
        seen.extend(notifications(&socket));
        seen.iter().any(|m| m.contains("READY=1")).then_some(())
    });

    let id = unique_id("idle");
    let sent_at = Instant::now();
    stack.submit(
        "erin@example.test",
        &[&format!("contact+{folder}@example.test")],
        &complete_application("erin@example.test", "Erin Petit", &format!("contact+{folder}@example.test"), &id),
    );
    wait_for("the acknowledgement within 5 s of sending", Duration::from_secs(5), || {
        (!stack.messages_with("erin@example.test", "INBOX", "In-Reply-To", &id).is_empty()).then_some(())
    });
    eprintln!("application submitted → acknowledgement in the candidate's mailbox: {:?}", sent_at.elapsed());
    // A second one through the next IDLE wake-up: that pass reuses the selection of the folder
    // (no SELECT after an IDLE announcement), which must still see and file the new message.
    let second = unique_id("idle-second");
    stack.submit(
        "frank@example.test",
        &[&format!("contact+{folder}@example.test")],
        &complete_application("frank@example.test", "Frank Moreau", &format!("contact+{folder}@example.test"), &second),
    );
    wait_for("the second acknowledgement", DEADLINE, || {
        (!stack.messages_with("frank@example.test", "INBOX", "In-Reply-To", &second).is_empty()).then_some(())
    });

    // The watchdog is pinged (every WATCHDOG_USEC/3) and STATUS= says what it is doing.
    wait_for("WATCHDOG=1 and a STATUS= line", DEADLINE, || {
        seen.extend(notifications(&socket));
        (seen.iter().any(|m| m.contains("WATCHDOG=1")) && seen.iter().any(|m| m.contains("STATUS=watching")))
            .then_some(())
    });
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", daemon.log_text());
    seen.extend(notifications(&socket));
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    let log = daemon.log_text();
    assert!(!log.contains("erin@example.test") && !log.contains("Erin Petit"), "no personal data in the log:\n{log}");
    assert!(
        !log.contains("frank@example.test") && !log.contains("Frank Moreau"),
        "no personal data in the log:\n{log}"
    );

    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"], 2, "{s}");
    assert_eq!(s["totals"]["outbox_sent"], 2, "{s}");
    assert_eq!(s["totals"]["outbox_pending"], 0, "{s}");
}

#[test]
fn run_reconnects_after_a_dovecot_outage_and_files_what_arrived_meanwhile() {
    let Some(stack) = Stack::own("outage") else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "outage");
    let imap = format!("{}\npoll_interval_secs = 3600", stack.imap_lines("contact@example.test", &folder, false));
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", true), "");
    let mut daemon = Daemon::start(&config);
    wait_ready(&config);

    stack.service("stop", "dovecot");
    wait_for("the daemon to notice the outage", DEADLINE, || {
        daemon.log_text().contains("mailbox unavailable").then_some(())
    });
    // Postfix keeps the application while Dovecot is away.
    let id = unique_id("outage");
    stack.inject(
        "frank@example.test",
        &[&format!("contact+{folder}@example.test")],
        &complete_application("frank@example.test", "Frank Moreau", &format!("contact+{folder}@example.test"), &id),
    );
    // Let the daemon fail a few times in a row before the server comes back.
    wait_for("several failed reconnects", DEADLINE, || {
        (daemon.log_text().matches("reconnect attempt failed").count() >= 3).then_some(())
    });
    stack.service("start", "dovecot");

    wait_for("the acknowledgement after the outage", Duration::from_secs(120), || {
        (!stack.messages_with("frank@example.test", "INBOX", "In-Reply-To", &id).is_empty()).then_some(())
    });
    let log = daemon.log_text();
    assert!(log.contains("mailbox reachable again"), "{log}");
    // Three or more refused connections in a row, one error line for them: logged once per
    // change of state (connection lost, then refused), not once per try.
    assert!(log.matches("reconnect attempt failed").count() >= 3, "{log}");
    assert_eq!(log.matches("Connection refused").count(), 1, "{log}");
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let s = status_json(&config);
    assert_eq!((s["totals"]["filed"].as_u64(), s["totals"]["outbox_sent"].as_u64()), (Some(1), Some(1)), "{s}");
}

#[test]
fn sigterm_mid_backlog_exits_cleanly_and_a_restart_finishes_without_doubles() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "term");
    const TOTAL: usize = 400;
    let big = vec![b'x'; 120_000];
    let messages: Vec<Vec<u8>> = (0..TOTAL)
        .map(|i| {
            application_eml(
                &format!("Candidate {i} <candidate{i}@example.test>"),
                "contact@example.test",
                "Candidature stage",
                &unique_id(&format!("backlog{i}")),
                &[],
                "Bonjour, ci-joint mon CV.",
                &[("CV.pdf", "application/pdf", &[pdf("cv").as_slice(), &big].concat())],
            )
        })
        .collect();
    stack.lmtp_deliver(&format!("contact+{folder}@example.test"), &messages);
    assert_eq!(stack.count("contact@example.test", &folder), TOTAL);

    let imap = format!(
        "{}\npoll_interval_secs = 3600\nbatch_messages = 4",
        stack.imap_lines("contact@example.test", &folder, false)
    );
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    let mut daemon = Daemon::start(&config);
    wait_for("the daemon to be into the backlog", DEADLINE, || {
        let db = dir.path().join("state/mailroom.sqlite3");
        (db.exists() && status_json(&config)["totals"]["filed"].as_u64().unwrap_or(0) >= 20).then_some(())
    });
    let asked = Instant::now();
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit after SIGTERM: {status}\n{}", daemon.log_text());
    eprintln!("stopped {:?} after SIGTERM", asked.elapsed());
    let filed_before = status_json(&config)["totals"]["filed"].as_u64().unwrap();
    assert!(
        filed_before < TOTAL as u64,
        "the stop came after the backlog was done ({filed_before}); make the backlog larger"
    );

    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"].as_u64(), Some(TOTAL as u64), "{s}");
    assert_eq!(s["totals"]["duplicates"].as_u64(), Some(0), "{s}");
    // One folder and one .eml per candidate: nothing filed twice.
    let posting = dir.path().join("data/stage-gestion-projet");
    let folders: Vec<_> = std::fs::read_dir(&posting).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(folders.len(), TOTAL);
    for f in folders {
        let emls = std::fs::read_dir(&f)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "eml"))
            .count();
        assert_eq!(emls, 1, "{f:?}");
    }
}

#[test]
fn run_watches_several_folders_at_once() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = stack.fresh_folder("contact@example.test", "multia");
    let second = stack.fresh_folder("contact@example.test", "multib");
    let imap = format!(
        "{}\nalso_watch = [\"{second}\"]\npoll_interval_secs = 3600",
        stack.imap_lines("contact@example.test", &first, false)
    );
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    let mut daemon = Daemon::start(&config);
    wait_for("both folders contacted", DEADLINE, || {
        if !dir.path().join("state/mailroom.sqlite3").exists() {
            return None;
        }
        let s = status_json(&config);
        let contacted = s["mailboxes"].as_array()?.iter().filter(|m| !m["last_contact"].is_null()).count();
        (contacted == 2).then_some(())
    });
    let ids = [unique_id("multia"), unique_id("multib")];
    // Two people, one per folder (one person writing twice would be answered once a day).
    let senders = [("dave@example.test", "Dave Smith"), ("erin@example.test", "Erin Petit")];
    for ((folder, id), (who, name)) in [(&first, &ids[0]), (&second, &ids[1])].into_iter().zip(senders) {
        let to = format!("contact+{folder}@example.test");
        stack.submit(who, &[&to], &complete_application(who, name, &to, id));
    }
    for (id, (who, _)) in ids.iter().zip(senders) {
        wait_for("an acknowledgement from each folder", DEADLINE, || {
            (!stack.messages_with(who, "INBOX", "In-Reply-To", id).is_empty()).then_some(())
        });
    }
    assert!(daemon.terminate(Duration::from_secs(15)).success());
    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"].as_u64(), Some(2), "{s}");
}

#[test]
fn sigkill_mid_backlog_loses_nothing_and_files_nothing_twice() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "kill");
    const TOTAL: usize = 300;
    let big = vec![b'y'; 100_000];
    let messages: Vec<Vec<u8>> = (0..TOTAL)
        .map(|i| {
            application_eml(
                &format!("Person {i} <person{i}@example.test>"),
                "contact@example.test",
                "Candidature stage",
                &unique_id(&format!("kill{i}")),
                &[],
                "Bonjour",
                &[
                    ("CV.pdf", "application/pdf", &[pdf(&format!("cv{i}")).as_slice(), &big].concat()),
                    ("Lettre de motivation.pdf", "application/pdf", &pdf(&format!("lm{i}"))),
                ],
            )
        })
        .collect();
    stack.lmtp_deliver(&format!("contact+{folder}@example.test"), &messages);
    let imap = format!(
        "{}\npoll_interval_secs = 3600\nbatch_messages = 8",
        stack.imap_lines("contact@example.test", &folder, false)
    );
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    let mut daemon = Daemon::start(&config);
    wait_for("the daemon to be into the backlog", DEADLINE, || {
        let db = dir.path().join("state/mailroom.sqlite3");
        (db.exists() && status_json(&config)["totals"]["filed"].as_u64().unwrap_or(0) >= 30).then_some(())
    });
    // No goodbye: the process dies wherever it is, mid-write or mid-commit.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"].as_u64(), Some(TOTAL as u64), "{s}");
    assert_eq!(s["totals"]["duplicates"].as_u64(), Some(0), "{s}");
    // Every folder holds exactly what its metadata lists, with the bytes it records.
    let posting = dir.path().join("data/stage-gestion-projet");
    let folders: Vec<_> = std::fs::read_dir(&posting).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(folders.len(), TOTAL);
    for f in folders {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(f.join("metadata.json")).unwrap()).unwrap();
        let apps = meta["applications"].as_array().unwrap();
        assert_eq!(apps.len(), 1, "{f:?}");
        let mut listed = vec!["metadata.json".to_owned(), apps[0]["eml"].as_str().unwrap().to_owned()];
        for d in apps[0]["documents"].as_array().unwrap() {
            let name = d["filename"].as_str().unwrap();
            let bytes = std::fs::read(f.join(name)).unwrap();
            assert_eq!(mailroom::understand::sha256_hex(&bytes), d["sha256"].as_str().unwrap(), "{f:?}/{name}");
            listed.push(name.to_owned());
        }
        let mut on_disk: Vec<String> =
            std::fs::read_dir(&f).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        listed.sort();
        assert_eq!(on_disk, listed, "{f:?}: nothing more, nothing less");
    }
}

#[test]
fn a_scan_being_read_does_not_hold_up_the_next_application() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "scan");
    let to = format!("contact+{folder}@example.test");
    let imap = format!("{}\npoll_interval_secs = 3600", stack.imap_lines("contact@example.test", &folder, false));
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    // A Tesseract of the test's own, first on the daemon's PATH.
    let (tesseract, release) = common::held_tesseract(dir.path());
    let bin = tesseract.parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // Read at once, as systemd does: a notify socket nobody reads blocks its sender.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let listener = {
        let (heard, listening) = (std::sync::Arc::clone(&heard), std::sync::Arc::clone(&listening));
        std::thread::spawn(move || {
            while listening.load(std::sync::atomic::Ordering::Relaxed) {
                heard.lock().unwrap().extend(notifications(&socket));
            }
        })
    };
    let mut daemon = Daemon::start_with_env(
        &config,
        &[("PATH", &path), ("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "3000000")],
    );
    wait_ready(&config);

    // A photographed page under a name that tells nothing: only OCR can say it is a CV.
    let photo =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gen/real/scan-lo-cv-fr.jpg")).unwrap();
    let scan_id = unique_id("scan");
    stack.submit(
        "bob@example.test",
        &[&to],
        &application_eml(
            "Bob Roux <bob@example.test>",
            &to,
            "Candidature stage",
            &scan_id,
            &[],
            "Bonjour, veuillez trouver ci-joint mon dossier.",
            &[("IMG_2041.jpg", "image/jpeg", &photo)],
        ),
    );
    wait_for("the scan handed to OCR (the stand-in running)", DEADLINE, || {
        daemon.log_text().contains("needs OCR: read aside").then_some(())
    });
    let next_id = unique_id("after-scan");
    stack.submit(
        "carol@example.test",
        &[&to],
        &complete_application("carol@example.test", "Carol Blanc", &to, &next_id),
    );
    wait_for("the next application's acknowledgement while the scan is still read", DEADLINE, || {
        (!stack.messages_with("carol@example.test", "INBOX", "In-Reply-To", &next_id).is_empty()).then_some(())
    });
    assert!(
        stack.messages_with("bob@example.test", "INBOX", "In-Reply-To", &scan_id).is_empty(),
        "the scan cannot have been answered: its OCR has not read a word yet"
    );
    assert_eq!(status_json(&config)["totals"]["filed"], 1);
    // The pass lasts as long as the scan is read: it keeps showing life, so systemd's watchdog
    // does not restart a daemon that is only waiting for OCR.
    let pings = || heard.lock().unwrap().iter().filter(|m| m.contains("WATCHDOG=1")).count();
    let before = pings();
    wait_for("three WATCHDOG=1 while the pass waits for the scan", DEADLINE, || (pings() >= before + 3).then_some(()));
    assert!(
        stack.messages_with("bob@example.test", "INBOX", "In-Reply-To", &scan_id).is_empty(),
        "still not answered: the watchdog pings came from a pass waiting for OCR"
    );

    std::fs::write(&release, b"").unwrap();
    wait_for("the scan's acknowledgement once it is read", DEADLINE, || {
        (!stack.messages_with("bob@example.test", "INBOX", "In-Reply-To", &scan_id).is_empty()).then_some(())
    });
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", daemon.log_text());
    listening.store(false, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"], 2, "{s}");
    assert_eq!(s["totals"]["outbox_sent"], 2, "{s}");
    let metadata: Vec<String> = common::files_under(&dir.path().join("data"))
        .into_iter()
        .filter(|f| f.ends_with("metadata.json"))
        .map(|f| std::fs::read_to_string(dir.path().join("data").join(f)).unwrap())
        .collect();
    assert!(metadata.iter().any(|m| m.contains("OCR (")), "the scan was decided by OCR: {metadata:?}");
}
