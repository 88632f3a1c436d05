//! Crashes, hangs, slow links, full disks and what `mailroom status` says about them, end to end:
//! the mailroom binary against the real Dovecot and Postfix of `scripts/mailstack` (issue 10,
//! items 6, 12, 13, 14, 15, 19 and 20). Like tests/e2e.rs, these need `scripts/test` (they fail
//! under CI=true without a stack, and say SKIPPED otherwise). Tests that mount filesystems need
//! root, as `scripts/test` has; under CI=true a test that cannot mount fails.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Daemon, Mount, Stack, application_eml, files_under, mailroom, pdf, status_json, unique_id, wait_for, write_config,
};

const DEADLINE: Duration = Duration::from_secs(60);
/// A stop must end well within the unit's `TimeoutStopSec` (30 s).
const STOP_BOUND: Duration = Duration::from_secs(15);

fn application(name: &str, from: &str, to: &str, id: &str, cv: &[u8]) -> Vec<u8> {
    application_eml(
        &format!("{name} <{from}>"),
        to,
        "Candidature stage",
        id,
        &[],
        "Bonjour, voici mon CV et ma lettre de motivation.",
        &[("CV.pdf", "application/pdf", cv), ("Lettre de motivation.pdf", "application/pdf", &pdf("lettre"))],
    )
}

/// A PDF of about `size` bytes that does not compress.
fn big_pdf(seed: u64, size: usize) -> Vec<u8> {
    let mut out = pdf(&format!("cv {seed}"));
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn once(config: &Path) -> String {
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "mailroom once: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn status_text(config: &Path) -> String {
    let out = mailroom(&["status", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn deliver_and_wait(stack: &Stack, from: &str, folder: &str, raw: &[u8]) {
    let before = stack.count("contact@example.test", folder);
    stack.submit(from, &[&format!("contact+{folder}@example.test")], raw);
    wait_for("delivery into the contact folder", DEADLINE, || {
        (stack.count("contact@example.test", folder) > before).then_some(())
    });
}

/// Replaces one line of a config file (write_config's `timeout_secs = 20`, for instance).
fn edit_config(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    std::fs::write(config, text.replacen(from, to, 1)).unwrap();
}

/// A server that accepts connections and never says a word (a hung SMTP server).
struct Mute {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Mute {
    fn start() -> Mute {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        Mute { port, accepted }
    }
}

/// A TCP relay on loopback to `target` that passes the server's bytes on at `rate` bytes a
/// second (a slow link), and the client's at full speed.
struct SlowLink {
    port: u16,
    relayed: Arc<AtomicUsize>,
}

impl SlowLink {
    fn start(target: u16, rate: usize) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed = Arc::new(AtomicUsize::new(0));
        let total = Arc::clone(&relayed);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_read, mut c_write) = (server, client);
                let total = Arc::clone(&total);
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n;
                        total.fetch_add(n, Ordering::SeqCst);
                        // Hold the average to `rate`: the link, not the test, is slow.
                        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                        if let Some(ahead) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(ahead);
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowLink { port, relayed }
    }
}

/// Item 13: SIGTERM while an acknowledgement is being handed to an SMTP server that accepted the
/// connection and then hangs. The send must be cut off at a safe point, within the bound, instead
/// of running to its own 60 s timeout.
#[test]
fn sigterm_is_bounded_while_the_smtp_server_hangs() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mute = Mute::start();
    let folder = stack.fresh_folder("contact@example.test", "hungsmtp");
    let smtp = format!(
        "host = \"localhost\"\nport = {}\ntls = \"implicit\"\nusername = \"contact@example.test\"\npassword = \"x\"\nca_file = \"{}\"",
        mute.port,
        stack.ca()
    );
    let config = write_config(dir.path(), &stack.imap_lines("contact@example.test", &folder, false), &smtp, "");
    assert!(once(&config).starts_with("fetched 0,"));
    let id = unique_id("hungsmtp");
    let to = format!("contact+{folder}@example.test");
    deliver_and_wait(
        &stack,
        "dave@example.test",
        &folder,
        &application("Dave Smith", "dave@example.test", &to, &id, &pdf("cv")),
    );

    let mut daemon = Daemon::start(&config);
    wait_for("the daemon to hand the reply to the hung server", DEADLINE, || {
        (mute.accepted.load(Ordering::SeqCst) > 0).then_some(())
    });
    let asked = Instant::now();
    let status = daemon.terminate(STOP_BOUND);
    eprintln!("stopped {:?} after SIGTERM, with the SMTP server hung", asked.elapsed());
    assert!(status.success(), "{status}\n{}", daemon.log_text());
    // Cut off mid-send, the reply may or may not have left: it is never sent again blindly.
    let s = status_json(&config);
    assert_eq!(s["totals"]["outbox_sent"], 0, "{s}");
}

/// Item 14: a backlog behind a slow link (200 KB/s, through a relay in the test) with a command
/// timeout shorter than the whole download: what counts is that bytes keep coming.
#[test]
fn a_slow_link_gets_a_backlog_through() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "slow");
    let to = format!("contact+{folder}@example.test");
    let messages: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            application(
                &format!("Slow{i} Link"),
                &format!("slow{i}@example.test"),
                &to,
                &unique_id("slow"),
                &big_pdf(i, 450_000),
            )
        })
        .collect();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    stack.lmtp_deliver(&to, &messages);
    let link = SlowLink::start(stack.port("MAILSTACK_IMAPS_PORT"), 200_000);
    let imap = stack
        .imap_lines("contact@example.test", &folder, false)
        .replace(&format!("port = {}", stack.port("MAILSTACK_IMAPS_PORT")), &format!("port = {}", link.port));
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    // The whole backlog needs some 6 s on this link; no single wait for a byte is near 3 s.
    edit_config(&config, "timeout_secs = 20", "timeout_secs = 3");
    let started = Instant::now();
    let summary = once(&config);
    eprintln!("{bytes} bytes of backlog over the slow link in {:?}: {summary}", started.elapsed());
    assert!(summary.starts_with("fetched 2, filed 2"), "{summary}");
    assert!(link.relayed.load(Ordering::SeqCst) > bytes, "the backlog came through the slow link");
}

/// Item 19: run by hand with the usual umask 022, mailroom still writes what it files and its
/// state for its own user only: directories 0700, files 0600.
#[test]
fn files_are_private_under_the_usual_umask() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "umask", "");
    assert!(once(&config).starts_with("fetched 0,"));
    let id = unique_id("umask");
    deliver_and_wait(
        &stack,
        "erin@example.test",
        &folder,
        &application("Erin Petit", "erin@example.test", &to, &id, &pdf("cv")),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" once --config \"$1\"", env!("CARGO_BIN_EXE_mailroom")])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("filed 1"));
    let mut checked = 0;
    for top in ["data", "state"] {
        let mut stack = vec![dir.path().join(top)];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}: {mode:o}", p.display());
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                assert_eq!(mode, 0o600, "{}: {mode:o}", p.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "the documents, the .eml, metadata.json and the state were checked ({checked})");
}

/// Item 20: `status` says "running since" only while a daemon holds the state, and shows the
/// daemon's ongoing error ("IMAP login failing since …").
#[test]
fn status_says_whether_a_daemon_runs_and_what_keeps_failing() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let imap = stack.imap_lines("contact@example.test", "INBOX", false).replace(stack.password(), "wrong-password");
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    let mut daemon = Daemon::start(&config);
    let text = wait_for("status to show the failing login", DEADLINE, || {
        if !dir.path().join("state/mailroom.sqlite3").exists() {
            return None;
        }
        let text = status_text(&config);
        text.contains("IMAP login failing since").then_some(text)
    });
    assert!(text.contains("running since"), "{text}");
    assert!(text.contains("login as contact@example.test refused"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
    let s = status_json(&config);
    assert_eq!(s["daemon"]["running"], true, "{s}");
    assert_eq!(s["problems"][0]["area"], "imap", "{s}");

    assert!(daemon.terminate(STOP_BOUND).success());
    let text = status_text(&config);
    assert!(!text.contains("running since"), "{text}");
    assert!(text.contains("not running"), "{text}");
}

/// Item 20: `status` reads the state without writing to it (its folder mounted read-only) and
/// without the password files (it needs no server).
#[test]
fn status_reads_a_read_only_state_without_the_password_files() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "rostatus");
    let imap = stack
        .imap_lines("contact@example.test", &folder, false)
        .replace(&format!("password = \"{}\"", stack.password()), "password_file = \"imap-password\"");
    let smtp = stack
        .smtp_lines("contact@example.test", false)
        .replace(&format!("password = \"{}\"", stack.password()), "password_file = \"smtp-password\"");
    let config = write_config(dir.path(), &imap, &smtp, "");
    for f in ["imap-password", "smtp-password"] {
        std::fs::write(dir.path().join(f), format!("{}\n", stack.password())).unwrap();
    }
    assert!(once(&config).starts_with("fetched 0,"));
    for f in ["imap-password", "smtp-password"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let state = dir.path().join("state");
    let before = files_under(&state);
    let Some(_ro) = Mount::read_only_bind(&state) else { return };
    let text = status_text(&config);
    assert!(text.contains("not running"), "{text}");
    assert!(text.contains(&format!("/{folder}")), "the mailbox and its last contact: {text}");
    let s = status_json(&config);
    assert_eq!(s["daemon"]["running"], false, "{s}");
    assert_eq!(files_under(&state), before);
}

/// Items 6 and 20: the data folder is on a filesystem too small for an application. Nothing is
/// left half filed, `status` says filing has failed since when and why, and once there is room
/// the application is filed (once) and the error is gone.
#[test]
fn a_full_data_disk_shows_in_status_and_leaves_nothing_half_filed() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(volume) = Mount::tmpfs(&dir.path().join("data"), "1m") else { return };
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "diskfull", "");
    assert!(once(&config).starts_with("fetched 0,"));
    let id = unique_id("diskfull");
    deliver_and_wait(
        &stack,
        "frank@example.test",
        &folder,
        &application("Frank Moreau", "frank@example.test", &to, &id, &big_pdf(7, 1_200_000)),
    );
    let mut daemon = Daemon::start(&config);
    let text = wait_for("status to show that filing fails", DEADLINE, || {
        let text = status_text(&config);
        text.contains("cannot file since").then_some(text)
    });
    assert!(text.contains("disk full"), "{text}");
    assert!(!text.contains("Frank") && !text.contains("Moreau"), "{text}");
    assert!(
        files_under(&dir.path().join("data")).is_empty(),
        "half filed: {:?}",
        files_under(&dir.path().join("data"))
    );
    assert!(daemon.terminate(STOP_BOUND).success());
    assert_eq!(status_json(&config)["totals"]["quarantined"], 0, "a full disk set the application aside");

    volume.resize("16m");
    assert!(once(&config).contains("fetched 1, filed 1, quarantined 0"));
    let text = status_text(&config);
    assert!(!text.contains("cannot file"), "{text}");
}

/// Item 12: after a crash, an acknowledgement left `sending` is looked up in the Sent folder
/// (where the submission server files a copy, as Gmail and Microsoft 365 do) before it is called
/// uncertain: found, it is `sent`; not found, `uncertain`. Neither is sent again.
#[test]
fn an_acknowledgement_found_in_the_sent_folder_is_sent_not_uncertain() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "sentcheck");
    let to = format!("contact+{folder}@example.test");
    let smtp = stack
        .smtp_lines("contact@example.test", false)
        .replace(&stack.port("MAILSTACK_SUBMISSIONS_PORT").to_string(), stack.var("MAILSTACK_SUBMISSIONS_SENT_PORT"));
    let config = write_config(dir.path(), &stack.imap_lines("contact@example.test", &folder, false), &smtp, "");
    assert!(once(&config).starts_with("fetched 0,"));
    let id = unique_id("sentcheck");
    deliver_and_wait(
        &stack,
        "carol@example.test",
        &folder,
        &application("Carol Leroy", "carol@example.test", &to, &id, &pdf("cv")),
    );
    assert!(once(&config).contains("sent 1"));

    // What a crash leaves: the reply was accepted (its copy is in Sent), but the store still says
    // `sending`; and a second entry, `sending` too, that never left.
    let db = rusqlite::Connection::open(dir.path().join("state/mailroom.sqlite3")).unwrap();
    let reply_id: String = db.query_row("SELECT reply_message_id FROM outbox", [], |r| r.get(0)).unwrap();
    wait_for("the reply's copy in the Sent folder", DEADLINE, || {
        (!stack.messages_with("contact@example.test", "Sent", "Message-ID", &reply_id).is_empty()).then_some(())
    });
    let never = unique_id("never-sent");
    db.execute("UPDATE outbox SET state = 'sending', sent_at = NULL", []).unwrap();
    db.execute(
        "INSERT INTO outbox (message, reply_message_id, recipient, mail, state, attempts, next_attempt_at, created_at, kind)
         SELECT message, ?1, recipient, mail, 'sending', 1, next_attempt_at, created_at, kind FROM outbox",
        [&never],
    )
    .unwrap();
    drop(db);

    let summary = once(&config);
    assert!(summary.contains("sent 0"), "{summary}");
    let s = status_json(&config);
    assert_eq!(
        (s["totals"]["outbox_sent"].as_u64(), s["totals"]["outbox_uncertain"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    wait_for("postfix to empty its queue", DEADLINE, || stack.postfix_queue_empty().then_some(()));
    assert_eq!(stack.messages_with("carol@example.test", "INBOX", "In-Reply-To", &id).len(), 1, "sent once");
}

/// Items 13 and 15, on a stack of this test's own: a frozen Dovecot is noticed within seconds
/// (IDLE liveness), its return too; after a run of refused reconnects, Dovecot's return is
/// noticed within 10 s; and SIGTERM while a download hangs on a frozen Dovecot ends within the
/// bound instead of waiting for the command's own timeout.
#[test]
fn hung_and_stopped_dovecot_are_noticed_quickly_and_a_stop_stays_bounded() {
    let Some(stack) = Stack::own("robust-freeze") else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "freeze");
    let imap = format!(
        "{}\npoll_interval_secs = 3600\nbatch_messages = 2\nliveness_secs = 3",
        stack.imap_lines("contact@example.test", &folder, false)
    );
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    // A command may wait a minute for its first byte: what ends a hung session sooner is the
    // liveness check, and what ends it at a stop is the stop.
    edit_config(&config, "timeout_secs = 20", "timeout_secs = 60");
    let mut daemon = Daemon::start(&config);
    let count = |d: &Daemon, what: &str| d.log_text().matches(what).count();
    wait_for("the daemon's first pass", DEADLINE, || {
        (config.with_file_name("state").join("mailroom.sqlite3").exists()
            && !status_json(&config)["mailboxes"][0]["last_contact"].is_null())
        .then_some(())
    });

    // A hung server, noticed by the liveness check, and its return.
    stack.service("freeze", "dovecot");
    let frozen = Instant::now();
    wait_for("the frozen session to be noticed", Duration::from_secs(20), || {
        (count(&daemon, "mailbox unavailable") >= 1).then_some(())
    });
    eprintln!("frozen Dovecot noticed after {:?}", frozen.elapsed());
    stack.service("thaw", "dovecot");
    let thawed = Instant::now();
    wait_for("the reconnection after the thaw", Duration::from_secs(10), || {
        (count(&daemon, "mailbox reachable again") >= 1).then_some(())
    });
    eprintln!("thawed Dovecot noticed after {:?}", thawed.elapsed());

    // An outage long enough for the backoff to grow, then Dovecot's return: within 10 s.
    let before = count(&daemon, "reconnect attempt failed");
    stack.service("stop", "dovecot");
    wait_for("six refused reconnects in a row", Duration::from_secs(90), || {
        (count(&daemon, "reconnect attempt failed") >= before + 6).then_some(())
    });
    stack.service("start", "dovecot");
    let back = Instant::now();
    wait_for("the reconnection after the outage", Duration::from_secs(10), || {
        (count(&daemon, "mailbox reachable again") >= 2).then_some(())
    });
    eprintln!("Dovecot's return noticed after {:?}", back.elapsed());

    // A backlog of large messages; freeze Dovecot in the middle of a download, then SIGTERM.
    let to = format!("contact+{folder}@example.test");
    let backlog: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            application(
                &format!("Freeze{i} Backlog"),
                &format!("freeze{i}@example.test"),
                &to,
                &unique_id("freeze"),
                &big_pdf(i, 1_000_000),
            )
        })
        .collect();
    stack.lmtp_deliver(&to, &backlog);
    wait_for("the daemon to be into the backlog", DEADLINE, || {
        (status_json(&config)["totals"]["filed"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    stack.service("freeze", "dovecot");
    let asked = Instant::now();
    let status = daemon.terminate(STOP_BOUND);
    eprintln!("stopped {:?} after SIGTERM, with Dovecot frozen mid-download", asked.elapsed());
    assert!(status.success(), "{status}\n{}", daemon.log_text());
    stack.service("thaw", "dovecot");
    let filed = status_json(&config)["totals"]["filed"].as_u64().unwrap();
    assert!(filed < 24, "the backlog was done before the freeze ({filed}); make it larger");
}
