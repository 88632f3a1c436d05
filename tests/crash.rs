//! The crash test (issue 10, item 12): `mailroom run` killed with SIGKILL again and again while
//! it files a backlog and acknowledges it on the real stack, then one run to the end. It counts
//! the kills, the acknowledgements left `uncertain`, and the duplicates (acknowledgements
//! delivered twice, applications filed twice), and fails on any duplicate or loss.
//!
//! `scripts/test` runs a short version (a few kills over a small backlog); `scripts/crash-test`
//! runs the long one and prints the figures. Knobs (environment): `CRASH_MESSAGES` (default 60),
//! `CRASH_KILLS` (default 6), `CRASH_SEED` (default: the clock).
//!
//! Replies go through the stack's submission port that files a copy in contact's Sent folder
//! (as Gmail and Microsoft 365 do), so an acknowledgement a kill caught mid-send can be looked up
//! there after the restart.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, Stack, application_eml, mailroom, pdf, status_json, wait_for, write_config};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift: the kill instants, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn sigkills_while_filing_and_acknowledging_send_nothing_twice() {
    let Some(stack) = Stack::get() else { return };
    let total = knob("CRASH_MESSAGES", 60) as usize;
    let kills_wanted = knob("CRASH_KILLS", 6);
    let seed = knob("CRASH_SEED", chrono::Utc::now().timestamp_subsec_nanos() as u64 | 1);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "crash");
    let tag = format!("crash{}x{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap());
    let to = format!("contact+{folder}@example.test");
    let messages: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            application_eml(
                &format!("Kill{i} Crashtest <k{i}.{tag}@example.test>"),
                &to,
                "Candidature stage",
                &format!("app{i}.{tag}@example.test"),
                &[],
                "Bonjour, voici mon CV et ma lettre de motivation.",
                &[
                    ("CV.pdf", "application/pdf", &pdf(&format!("cv {i} {tag}"))),
                    ("Lettre de motivation.pdf", "application/pdf", &pdf(&format!("lm {i}"))),
                ],
            )
        })
        .collect();
    stack.lmtp_deliver(&to, &messages);

    let imap = format!(
        "{}\npoll_interval_secs = 3600\nbatch_messages = 8",
        stack.imap_lines("contact@example.test", &folder, false)
    );
    let smtp = stack
        .smtp_lines("contact@example.test", false)
        .replace(&stack.port("MAILSTACK_SUBMISSIONS_PORT").to_string(), stack.var("MAILSTACK_SUBMISSIONS_SENT_PORT"));
    let extra =
        "[replies]\nacknowledge_backlog = true\nonce_per_days = 0\nmax_per_hour = 1000000\n\n[digest]\nenabled = false";
    let config = write_config(dir.path(), &imap, &smtp, extra);
    let db = dir.path().join("state/mailroom.sqlite3");
    // (filed, sent, waiting to be sent)
    let progress = || {
        if !db.exists() {
            return (0, 0, u64::MAX);
        }
        let s = status_json(&config);
        let n = |k: &str| s["totals"][k].as_u64().unwrap_or(0);
        (n("filed"), n("outbox_sent"), n("outbox_pending"))
    };

    let started = Instant::now();
    let mut kills = 0;
    while kills < kills_wanted {
        let before = progress();
        if before.0 == total as u64 && before.2 == 0 {
            break;
        }
        let mut daemon = Daemon::start(&config);
        // Let it get somewhere (it files, or it sends), then kill it at a random instant.
        wait_for("the daemon to make progress", Duration::from_secs(60), || (progress() != before).then_some(()));
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        if let Some(exit) = daemon.child.try_wait().unwrap() {
            panic!("mailroom run exited by itself ({exit}):\n{}", daemon.log_text());
        }
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
        kills += 1;
    }

    // One run to the end.
    let mut daemon = Daemon::start(&config);
    wait_for(
        "every application filed and its acknowledgement settled",
        Duration::from_secs(120 + total as u64 / 5),
        || {
            let s = status_json(&config);
            (s["totals"]["filed"].as_u64() == Some(total as u64) && s["totals"]["outbox_pending"].as_u64() == Some(0))
                .then_some(())
        },
    );
    // It may find everything done already: a SIGTERM before it catches signals would kill it.
    wait_for("the daemon to watch the mailbox", Duration::from_secs(30), || {
        daemon.log_text().contains("watching the mailbox").then_some(())
    });
    assert!(daemon.terminate(Duration::from_secs(15)).success(), "{}", daemon.log_text());
    wait_for("postfix to empty its queue", Duration::from_secs(60), || stack.postfix_queue_empty().then_some(()));
    // Every copy has reached the Sent folder now: one more start looks there for what is still
    // uncertain (as the daemon keeps doing for 30 minutes after a start).
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let elapsed = started.elapsed();

    // What the store says.
    let s = status_json(&config);
    let t = &s["totals"];
    let n = |k: &str| t[k].as_u64().unwrap_or(0);
    let store = rusqlite::Connection::open(&db).unwrap();
    let states: Vec<(String, String)> = {
        let mut stmt = store.prepare("SELECT json_extract(mail, '$.in_reply_to'), state FROM outbox").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };

    // What the candidates received: acknowledgements by the application they answer.
    let listing = stack.doveadm(&[
        "-f",
        "tab",
        "fetch",
        "-u",
        "catchall@example.test",
        "hdr.in-reply-to",
        "mailbox",
        "INBOX",
        "HEADER",
        "In-Reply-To",
        &tag,
    ]);
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for line in listing.lines().skip(1) {
        let id = line.trim().trim_matches(['<', '>']).to_owned();
        if !id.is_empty() {
            *delivered.entry(id).or_default() += 1;
        }
    }
    let twice: usize = delivered.values().map(|c| c.saturating_sub(1)).sum();
    let uncertain: Vec<&String> = states.iter().filter(|(_, st)| st == "uncertain").map(|(id, _)| id).collect();
    let uncertain_delivered = uncertain.iter().filter(|id| delivered.contains_key(id.as_str())).count();
    let lost: Vec<&String> =
        states.iter().filter(|(id, st)| st == "sent" && !delivered.contains_key(id)).map(|(id, _)| id).collect();

    // What the folders hold: one application per candidate, each file once.
    let posting = dir.path().join("data/stage-gestion-projet");
    let folders: Vec<_> = std::fs::read_dir(&posting).unwrap().map(|e| e.unwrap().path()).collect();
    let mut filed_twice = 0;
    for f in &folders {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(f.join("metadata.json")).unwrap()).unwrap();
        let apps = meta["applications"].as_array().unwrap().len();
        let files = std::fs::read_dir(f).unwrap().count();
        if apps != 1 || files != 4 {
            filed_twice += 1;
            eprintln!("{}: {apps} applications, {files} files", f.display());
        }
    }

    eprintln!(
        "crash test: {total} applications, {kills} SIGKILLs (seed {seed}), {:.1} s\n\
         \x20 store:           filed {}, duplicates {}, quarantined {}; acknowledgements sent {}, uncertain {}, failed {}\n\
         \x20 uncertain:       {} (of which {} had in fact been delivered)\n\
         \x20 duplicates:      {twice} acknowledgements delivered twice; {filed_twice} folders with an application or a file twice\n\
         \x20 delivered:       {} applications acknowledged; {} marked sent but never delivered",
        elapsed.as_secs_f64(),
        n("filed"),
        n("duplicates"),
        n("quarantined"),
        n("outbox_sent"),
        n("outbox_uncertain"),
        n("outbox_failed"),
        uncertain.len(),
        uncertain_delivered,
        delivered.len(),
        lost.len(),
    );
    assert!(kills >= 1, "no kill happened");
    assert_eq!(n("filed"), total as u64);
    assert_eq!((n("duplicates"), n("quarantined")), (0, 0));
    assert_eq!(folders.len(), total, "one folder per candidate");
    assert_eq!(filed_twice, 0, "an application or a file twice");
    assert_eq!(twice, 0, "an acknowledgement delivered twice");
    assert!(lost.is_empty(), "marked sent, never delivered: {lost:?}");
    assert_eq!(uncertain_delivered, 0, "delivered, its copy in Sent, and still called uncertain");
    assert_eq!(n("outbox_sent") + n("outbox_uncertain") + n("outbox_failed"), total as u64);
}
