//! The digest: its schedule across both DST changes (computed with a fixed clock, never by
//! waiting), catching up once after a stopped period, windows that are never sent twice, and the
//! digest itself on the real mail stack, with its text, HTML and CSV parts.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use mailroom::config::Config;
use mailroom::digest::Digest;
use mailroom::schedule::Schedule;
use mailroom::store::{DigestStore, Store};

use common::{Stack, application_eml, mailroom, pdf, wait_for, write_config};

fn paris(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Paris.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap().with_timezone(&Utc)
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

#[test]
fn eight_in_paris_stays_eight_across_both_dst_changes() {
    let s = Schedule::parse("0 8 * * *", Paris).unwrap();
    // Winter: 08:00 CET is 07:00 UTC.
    assert_eq!(s.next_after(utc(2027, 3, 26, 12, 0)), Some(utc(2027, 3, 27, 7, 0)));
    // The night of 27–28 March 2027 clocks go forward: 08:00 CEST is 06:00 UTC. A job that kept
    // the winter offset (tokio-cron-scheduler's time-zone jobs, its issues #87/#107) says 07:00.
    assert_eq!(s.next_after(utc(2027, 3, 27, 12, 0)), Some(utc(2027, 3, 28, 6, 0)));
    assert_eq!(s.next_after(utc(2027, 10, 30, 12, 0)), Some(utc(2027, 10, 31, 7, 0)), "back to CET on 31 October");
    // A whole year of firings: every one at 08:00 local, none missing, none doubled.
    let mut t = utc(2027, 1, 1, 0, 0);
    for _ in 0..365 {
        let next = s.next_after(t).unwrap();
        let local = next.with_timezone(&Paris);
        assert_eq!(local.format("%H:%M").to_string(), "08:00", "{next}");
        assert!((next - t).num_hours() <= 25, "{t} → {next}");
        t = next;
    }
}

#[test]
fn local_times_that_do_not_exist_or_repeat_fire_once() {
    let s = Schedule::parse("30 2 * * *", Paris).unwrap();
    // 02:30 does not exist on 28 March 2027 in Paris: the firing moves on to the next day.
    let after_27 = s.next_after(paris(2027, 3, 27, 3, 0)).unwrap();
    assert_eq!(after_27.with_timezone(&Paris).format("%m-%d %H:%M").to_string(), "03-29 02:30");
    // 02:30 happens twice on 31 October 2027: one firing that day.
    let first = s.next_after(paris(2027, 10, 30, 12, 0)).unwrap();
    let second = s.next_after(first).unwrap();
    assert_eq!(first.with_timezone(&Paris).format("%m-%d").to_string(), "10-31");
    assert_eq!(second.with_timezone(&Paris).format("%m-%d").to_string(), "11-01");
    assert!(Schedule::parse("not cron", Paris).is_err());
    assert!(Schedule::parse("0 8 * *", Paris).unwrap_err().contains("5 cron fields"));
}

fn config(dir: &Path, extra: &str) -> Config {
    let imap = "host = \"imap.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
    let smtp = "host = \"smtp.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
    Config::load_with_env(&write_config(dir, imap, smtp, extra), std::iter::empty()).unwrap()
}

#[test]
fn a_stopped_daemon_catches_up_with_one_digest_and_never_sends_a_window_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let digest = Digest::new(&cfg).unwrap();
    let store = Store::open(&cfg.storage.state_path).unwrap();
    let first_start = DigestStore::first_start(&store);

    // Nothing has fired since the first start yet (if it is before 08:00 today, or whenever):
    // compute against a clock where Monday 08:00 has passed.
    let monday_nine = paris(2030, 6, 3, 9, 0);
    let (start, end) = digest.due(None, first_start, monday_nine).expect("Monday's 08:00 has passed");
    assert_eq!((start, end), (first_start, monday_nine));
    assert!(digest.send_window(&store, start, end).unwrap().is_some());
    assert!(digest.send_window(&store, start, end).unwrap().is_none(), "the same window is never claimed twice");
    assert_eq!(store.last_digest_end().unwrap(), Some(monday_nine));
    assert_eq!(digest.due(Some(monday_nine), first_start, paris(2030, 6, 3, 23, 0)), None, "not due again on Monday");

    // The daemon was down from Monday night to Thursday 10:00: one digest covering the gap.
    let thursday = paris(2030, 6, 6, 10, 0);
    assert_eq!(digest.due(Some(monday_nine), first_start, thursday), Some((monday_nine, thursday)));
    assert!(digest.send_window(&store, monday_nine, thursday).unwrap().is_some());
    assert_eq!(digest.due(Some(thursday), first_start, paris(2030, 6, 6, 12, 0)), None);
    assert_eq!(digest.schedule.next_after(thursday), Some(paris(2030, 6, 7, 8, 0)), "then Friday 08:00");
}

#[test]
fn digest_on_the_real_stack_with_candidates_a_quarantine_and_a_missing_document() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "digest", "");
    let once = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        let out = mailroom(&all);
        assert!(out.status.success(), "{all:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    once(&["once"]);
    let (cv, lm) = (pdf("cv"), pdf("lm"));
    let people = [
        (
            "alice@example.test",
            "Alice Martin",
            vec![
                ("CV.pdf", "application/pdf", cv.as_slice()),
                ("Lettre de motivation.pdf", "application/pdf", lm.as_slice()),
            ],
        ),
        ("bob@example.test", "Bob Durand", vec![("CV Bob.pdf", "application/pdf", cv.as_slice())]),
    ];
    for (addr, name, attachments) in &people {
        let id = format!("digest.{addr}.{}", std::process::id());
        stack.submit(
            addr,
            &[&to],
            &application_eml(&format!("{name} <{addr}>"), &to, "Candidature stage", &id, &[], "Bonjour", attachments),
        );
    }
    stack.lmtp_deliver(&to, &[b"this is not a mail message at all".to_vec()]);
    wait_for("delivery", Duration::from_secs(30), || (stack.count("contact@example.test", &folder) == 3).then_some(()));
    once(&["once"]);

    let team_before = stack.count("team@example.test", "INBOX");
    let summary = once(&["digest", "--now"]);
    assert!(summary.contains("2 new application(s)") && summary.contains("sent 1"), "{summary}");
    let digest = wait_for("the digest in team's INBOX", Duration::from_secs(30), || {
        let all = stack.messages_with("team@example.test", "INBOX", "Auto-Submitted", "auto-generated");
        (stack.count("team@example.test", "INBOX") > team_before).then(|| all.into_iter().last()).flatten()
    });
    let parsed = mailparse_parts(&digest);
    assert!(
        parsed.contains(&"text/plain".to_owned())
            && parsed.contains(&"text/html".to_owned())
            && parsed.contains(&"text/csv".to_owned()),
        "{parsed:?}"
    );
    let text = mailroom::understand::parse::parse(digest.as_bytes()).unwrap();
    let body = text.text_body.unwrap_or_default();
    assert!(body.contains("Alice Martin") && body.contains("Bob Durand"), "{body}");
    assert!(body.contains("MANQUE : lettre de motivation"), "Bob's missing letter is flagged: {body}");
    assert!(body.contains("Message mis de côté"), "the quarantined message needs a human: {body}");
    let csv = text.parts.iter().find(|p| p.content_type == "text/csv").expect("a CSV attachment");
    let csv = String::from_utf8_lossy(&csv.bytes);
    assert_eq!(csv.lines().count(), 3, "a header and two candidates: {csv}");
    assert!(csv.contains("bob@example.test") && csv.contains("lettre de motivation"), "{csv}");

    // Right after, the window is empty: a short "nothing new" digest.
    let again = once(&["digest", "--now"]);
    assert!(again.contains("0 new application(s) (an empty window)"), "{again}");
    let dry = once(&["digest", "--dry-run"]);
    assert!(dry.contains("Rien de nouveau"), "{dry}");
    // --since rebuilds the past window without moving the stored one.
    let past = once(&["digest", "--dry-run", "--since", &Utc::now().format("%Y-%m-%d").to_string()]);
    assert!(past.contains("Alice Martin"), "{past}");
}

/// The content types of a message's leaf parts.
fn mailparse_parts(raw: &str) -> Vec<String> {
    let parsed = mailroom::understand::parse::parse(raw.as_bytes()).unwrap();
    let mut types: Vec<String> = parsed.parts.iter().map(|p| p.content_type.clone()).collect();
    if parsed.text_body.is_some() {
        types.push("text/plain".into());
    }
    if parsed.html_body.is_some() {
        types.push("text/html".into());
    }
    types
}
