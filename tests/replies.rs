//! Acknowledgements on the real mail stack: every variant arrives, in the right language; every
//! "never reply" rule holds with a recorded reason; a hostile display name cannot inject a header;
//! the hourly cap survives a restart; with Postfix down, replies wait and go out exactly once.

mod common;

use std::path::Path;
use std::time::Duration;

use mailroom::lang::Lang;
use mailroom::reason::ReplyNote;

use common::{Daemon, Stack, application_eml, mailroom, pdf, status_json, unique_id, wait_for, write_config};

const DEADLINE: Duration = Duration::from_secs(60);

fn once(config: &Path) -> String {
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// (uid, outcome, what became of the reply, in English words) of every message, from the store.
fn rows(dir: &Path) -> Vec<(u32, String, String)> {
    let conn = rusqlite::Connection::open(dir.join("state/mailroom.sqlite3")).unwrap();
    let mut stmt = conn.prepare("SELECT uid, outcome, reply FROM messages ORDER BY uid").unwrap();
    stmt.query_map([], |r| {
        let reply: String = r.get(2)?;
        let note = (!reply.is_empty()).then(|| ReplyNote::from_stored(&reply));
        Ok((r.get(0)?, r.get(1)?, note.map(|n| n.describe(Lang::En)).unwrap_or_default()))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn ack(stack: &Stack, user: &str, id: &str) -> String {
    wait_for(&format!("the acknowledgement of {id} in {user}'s INBOX"), DEADLINE, || {
        stack.messages_with(user, "INBOX", "In-Reply-To", id).into_iter().next()
    })
}

fn subject_of(raw: &str) -> String {
    // Decode the RFC 2047 subject through mailroom's own parser.
    let parsed = mailroom::understand::parse::parse(raw.as_bytes()).unwrap();
    parsed.subject.unwrap_or_default()
}

const CLOSED_POSTING: &str = r#"
[[postings]]
slug = "ancienne-offre"
title = "Chargé·e de mission 2019"
language = "fr"
subject_keywords = ["mission 2019"]
closing_date = "2019-12-31"
"#;

#[test]
fn every_reply_variant_arrives_in_the_candidates_language() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "variants");
    let to = format!("contact+{folder}@example.test");
    let extra = format!("[replies]\nonce_per_days = 0\n{CLOSED_POSTING}");
    let config = write_config(
        dir.path(),
        &stack.imap_lines("contact@example.test", &folder, false),
        &stack.smtp_lines("contact@example.test", false),
        &extra,
    );
    once(&config);

    let (cv, lm) = (pdf("cv"), pdf("lm"));
    let cases: Vec<(&str, &str, &str, Vec<common::Attachment>, &str)> = vec![
        (
            "alice@example.test",
            "Alice Martin",
            "Candidature stage",
            vec![("CV.pdf", "application/pdf", &cv), ("Lettre de motivation.pdf", "application/pdf", &lm)],
            "Candidature bien reçue",
        ),
        (
            "bob@example.test",
            "Bob Durand",
            "Candidature stage",
            vec![("Lettre de motivation.pdf", "application/pdf", &lm)],
            "il manque votre CV",
        ),
        (
            "carol@example.test",
            "Carol Leroy",
            "Candidature stage",
            vec![("CV.pdf", "application/pdf", &cv)],
            "il manque votre lettre de motivation",
        ),
        (
            "dave@example.test",
            "Dave Smith",
            "Service design internship",
            vec![("Resume.pdf", "application/pdf", &cv)],
            "Your application: your cover letter is missing",
        ),
        ("erin@example.test", "Erin Petit", "Candidature stage", vec![], "CV et lettre de motivation manquants"),
        (
            "frank@example.test",
            "Frank Moreau",
            "Candidature mission 2019",
            vec![("CV.pdf", "application/pdf", &cv), ("LM.pdf", "application/pdf", &lm)],
            "offre close",
        ),
    ];
    let mut ids = Vec::new();
    for (addr, name, subject, attachments, _) in &cases {
        let id = unique_id(addr.split('@').next().unwrap());
        let raw = application_eml(
            &format!("{name} <{addr}>"),
            &to,
            subject,
            &id,
            &[],
            "Bonjour, ma candidature.",
            attachments,
        );
        stack.submit(addr, &[&to], &raw);
        ids.push(id);
    }
    wait_for("delivery of all applications", DEADLINE, || {
        (stack.count("contact@example.test", &folder) == cases.len()).then_some(())
    });
    let summary = once(&config);
    assert!(summary.contains(&format!("sent {}", cases.len())), "{summary}");
    for ((addr, _, _, _, expected), id) in cases.iter().zip(&ids) {
        let subject = subject_of(&ack(&stack, addr, id));
        assert!(subject.contains(expected), "{addr}: {subject:?} lacks {expected:?}");
    }
    // Alice again, with a new CV: a repeat; her file was complete and still is.
    let id = unique_id("alice-again");
    let raw = application_eml(
        "Alice Martin <alice@example.test>",
        &to,
        "Candidature stage",
        &id,
        &[],
        "Mon CV à jour.",
        &[("CV 2026.pdf", "application/pdf", &pdf("cv2"))],
    );
    stack.submit("alice@example.test", &[&to], &raw);
    wait_for("delivery", DEADLINE, || (stack.count("contact@example.test", &folder) == cases.len() + 1).then_some(()));
    once(&config);
    let reply = ack(&stack, "alice@example.test", &id);
    assert!(subject_of(&reply).starts_with("Dossier mis à jour"), "{}", subject_of(&reply));
}

#[test]
fn robots_lists_bounces_and_ourselves_get_no_reply_and_a_recorded_reason() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "robots", "");
    once(&config);
    let cv = pdf("cv");
    /// (envelope sender, From, extra headers, expected reason)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("", "Mail Delivery System <MAILER-DAEMON@example.test>", vec![], "empty return path"),
        (
            "alice@example.test",
            "Alice Martin <alice@example.test>",
            vec![("Auto-Submitted", "auto-replied")],
            "Auto-Submitted",
        ),
        ("bob@example.test", "Bob Durand <bob@example.test>", vec![("List-Id", "<jobs.example.test>")], "mailing list"),
        ("carol@example.test", "Carol Leroy <carol@example.test>", vec![("Precedence", "bulk")], "Precedence"),
        (
            "dave@example.test",
            "Dave Smith <dave@example.test>",
            vec![("X-Auto-Response-Suppress", "OOF, AutoReply")],
            "X-Auto-Response-Suppress",
        ),
        ("noreply@example.test", "Jobs <noreply@example.test>", vec![], "system sender"),
        ("owner-jobs@example.test", "List owner <owner-jobs@example.test>", vec![], "system sender"),
        ("team@example.test", "The team <team@example.test>", vec![], "our own or the team's"),
        ("contact@example.test", "Contact <contact@example.test>", vec![], "our own or the team's"),
    ];
    for (i, (sender, from, headers, _)) in cases.iter().enumerate() {
        let raw = application_eml(
            from,
            &to,
            "Candidature stage",
            &unique_id(&format!("robot{i}")),
            headers,
            "Bonjour",
            &[("CV.pdf", "application/pdf", &cv)],
        );
        stack.inject(sender, &[&to], &raw);
    }
    // A real bounce: multipart/report with a null sender and nothing to file.
    let bounce = format!(
        "From: Mail Delivery System <MAILER-DAEMON@example.test>\r\nTo: {to}\r\nSubject: Undelivered Mail\r\nMessage-ID: <{}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.test\r\n\r\nFinal-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n",
        unique_id("bounce")
    );
    stack.inject("", &[&to], bounce.as_bytes());
    let total = cases.len() + 1;
    wait_for("delivery of every robot message", DEADLINE, || {
        (stack.count("contact@example.test", &folder) == total).then_some(())
    });

    let summary = once(&config);
    assert!(summary.contains("queued 0") && summary.contains("sent 0"), "{summary}");
    let rows = rows(dir.path());
    assert_eq!(rows.len(), total);
    for ((_, from, _, reason), (uid, outcome, reply)) in cases.iter().zip(&rows) {
        assert_eq!(outcome, "filed", "uid {uid} ({from})");
        assert!(
            reply.starts_with("not answered:") && reply.contains(reason),
            "uid {uid} ({from}): {reply:?} lacks {reason:?}"
        );
    }
    let (_, outcome, _) = &rows[total - 1];
    assert_eq!(outcome, "quarantined", "a bounce is not an application");
    assert_eq!(status_json(&config)["totals"]["outbox_sent"].as_u64(), Some(0));
}

#[test]
fn a_display_name_full_of_crlf_cannot_inject_a_header() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "crlf", "");
    once(&config);
    let id = unique_id("crlf");
    // "Erin\r\nBcc: intruder@example.test" and a subject with the same trick, RFC 2047-encoded.
    let raw = application_eml(
        "=?utf-8?q?Erin=0D=0ABcc=3A_intruder=40example=2Etest?= <erin@example.test>",
        &to,
        "=?utf-8?q?Candidature_stage=0D=0ABcc=3A_intruder=40example=2Etest?=",
        &id,
        &[],
        "Bonjour",
        &[("CV.pdf", "application/pdf", &pdf("cv"))],
    );
    stack.submit("erin@example.test", &[&to], &raw);
    wait_for("delivery", DEADLINE, || (stack.count("contact@example.test", &folder) == 1).then_some(()));
    assert!(once(&config).contains("sent 1"));
    let reply = ack(&stack, "erin@example.test", &id);
    let head = reply.split("\n\n").next().unwrap().split("\r\n\r\n").next().unwrap().to_owned();
    assert!(!head.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{head}");
    assert_eq!(head.lines().filter(|l| l.starts_with("To:")).count(), 1, "{head}");
    wait_for("postfix to empty its queue", DEADLINE, || stack.postfix_queue_empty().then_some(()));
    // intruder@ would land in catchall: nothing there answers this application.
    assert!(stack.messages_with("catchall@example.test", "INBOX", "In-Reply-To", &id).is_empty());
}

#[test]
fn the_hourly_cap_holds_across_restarts_on_the_real_stack() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "cap");
    let to = format!("contact+{folder}@example.test");
    let config = write_config(
        dir.path(),
        &stack.imap_lines("contact@example.test", &folder, false),
        &stack.smtp_lines("contact@example.test", false),
        "[replies]\nmax_per_hour = 1",
    );
    once(&config);
    let send = |who: &str, n: usize| {
        let raw = application_eml(
            &format!("X <{who}>"),
            &to,
            "Candidature stage",
            &unique_id(who),
            &[],
            "Bonjour",
            &[("CV.pdf", "application/pdf", &pdf(who))],
        );
        stack.submit(who, &[&to], &raw);
        wait_for("delivery", DEADLINE, || (stack.count("contact@example.test", &folder) == n).then_some(()));
    };
    send("alice@example.test", 1);
    send("bob@example.test", 2);
    let first = once(&config);
    assert!(first.contains("queued 1, skipped 1"), "{first}");
    send("carol@example.test", 3);
    let second = once(&config);
    assert!(second.contains("queued 0, skipped 1"), "a new process still counts the last hour: {second}");
    let rows = rows(dir.path());
    assert!(rows[1].2.contains("hourly cap reached") && rows[2].2.contains("hourly cap reached"), "{rows:?}");
}

#[test]
fn with_postfix_down_replies_wait_and_go_out_exactly_once() {
    let Some(stack) = Stack::own("smtpdown") else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "smtpdown");
    let imap = format!("{}\npoll_interval_secs = 3600", stack.imap_lines("contact@example.test", &folder, false));
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", true), "");
    let mut daemon = Daemon::start(&config);
    wait_for("the daemon's first pass", DEADLINE, || {
        (dir.path().join("state/mailroom.sqlite3").exists()
            && status_json(&config)["mailboxes"][0]["last_contact"].is_string())
        .then_some(())
    });
    stack.service("stop", "postfix");
    let ids: Vec<String> = (0..3).map(|i| unique_id(&format!("down{i}"))).collect();
    let users = ["alice@example.test", "bob@example.test", "carol@example.test"];
    let messages: Vec<Vec<u8>> = ids
        .iter()
        .zip(users)
        .map(|(id, who)| {
            application_eml(
                &format!("X <{who}>"),
                "contact@example.test",
                "Candidature stage",
                id,
                &[],
                "Bonjour",
                &[("CV.pdf", "application/pdf", &pdf(id))],
            )
        })
        .collect();
    // Postfix is down, so the applications come straight through LMTP, as from another MTA.
    stack.lmtp_deliver(&format!("contact+{folder}@example.test"), &messages);
    wait_for("a failed send to be scheduled for retry", DEADLINE, || {
        daemon.log_text().contains("will retry").then_some(())
    });
    assert!(status_json(&config)["totals"]["outbox_pending"].as_u64().unwrap() >= 1);
    stack.service("start", "postfix");
    for (id, who) in ids.iter().zip(users) {
        ack(&stack, who, id);
    }
    assert!(daemon.terminate(Duration::from_secs(15)).success());
    wait_for("postfix to empty its queue", DEADLINE, || stack.postfix_queue_empty().then_some(()));
    for (id, who) in ids.iter().zip(users) {
        assert_eq!(stack.messages_with(who, "INBOX", "In-Reply-To", id).len(), 1, "{who}: exactly one reply");
    }
    let s = status_json(&config);
    assert_eq!(s["totals"]["outbox_sent"].as_u64(), Some(3), "{s}");
}
