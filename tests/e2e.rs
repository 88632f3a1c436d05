//! End-to-end tier: the mailroom binary against the real Dovecot and Postfix that
//! `scripts/mailstack` runs on loopback. `scripts/test` starts the stack and exports its
//! `MAILSTACK_*` facts; under `CI=true` a missing stack fails these tests instead of skipping.
//!
//! Each test works in a folder of its own: mail to `contact+<folder>@example.test` is delivered
//! by Dovecot into `<folder>` of the contact mailbox, so tests never see each other's mail.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Stack, application_eml, files_under, mailroom, pdf, unique_id, wait_for, write_config};

const DEADLINE: Duration = Duration::from_secs(30);

fn once(config: &Path) -> String {
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mailroom once failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn deliver_and_wait(stack: &Stack, from: &str, folder: &str, raw: &[u8]) {
    let before = stack.count("contact@example.test", folder);
    stack.submit(from, &[&format!("contact+{folder}@example.test")], raw);
    wait_for("delivery into the contact folder", DEADLINE, || {
        (stack.count("contact@example.test", folder) > before).then_some(())
    });
}

/// The walking skeleton's promise, on the real stack: a candidate applies through Postfix
/// submission → `mailroom once` → the folder holds both documents and the `.eml` → the
/// acknowledgement is in the candidate's mailbox with the right headers → a second run, and a
/// run after a restart, file and send nothing more.
#[test]
fn application_is_filed_once_and_acknowledged_once_over_implicit_tls() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "e2e");
    let config = write_config(
        dir.path(),
        &stack.imap_lines("contact@example.test", &folder, false),
        &stack.smtp_lines("contact@example.test", false),
        "",
    );
    // First start on an empty folder: from now on, new mail is answered.
    let first = once(&config);
    assert!(first.starts_with("fetched 0,"), "{first}");

    let message_id = unique_id("alice-application");
    let raw = application_eml(
        "Alice Martin <alice@example.test>",
        &format!("contact+{folder}@example.test"),
        "Candidature – stage gestion de projet",
        &message_id,
        &[],
        "Bonjour,\r\n\r\nVeuillez trouver ci-joint mon CV et ma lettre de motivation.\r\n\r\nAlice",
        &[
            ("CV_Alice_Martin.pdf", "application/pdf", &pdf("curriculum vitae")),
            ("Lettre de motivation.pdf", "application/pdf", &pdf("lettre")),
        ],
    );
    deliver_and_wait(&stack, "alice@example.test", &folder, &raw);

    let summary = once(&config);
    assert!(summary.contains("fetched 1, filed 1, quarantined 0"), "{summary}");
    assert!(summary.contains("sent 1"), "{summary}");

    let data = dir.path().join("data");
    let files = files_under(&data);
    let person = files
        .iter()
        .find_map(|f| f.strip_suffix("/metadata.json"))
        .unwrap_or_else(|| panic!("no metadata.json in {files:#?}"))
        .to_owned();
    assert!(person.starts_with("stage-gestion-projet/Martin-Alice--"), "{person}");
    assert!(files.contains(&format!("{person}/CV - Alice Martin.pdf")), "{files:#?}");
    assert!(files.contains(&format!("{person}/Lettre de motivation - Alice Martin.pdf")), "{files:#?}");
    let eml = files.iter().find(|f| f.ends_with(".eml")).expect("the original message is kept");
    let kept = std::fs::read(data.join(eml)).unwrap();
    let trim = |b: &[u8]| b[..b.iter().rposition(|c| !c.is_ascii_whitespace()).unwrap() + 1].to_vec();
    let (kept, sent) = (trim(&kept), trim(&raw));
    assert!(kept.ends_with(&sent[sent.len() - 400..]), "the .eml is the message as delivered");
    assert_eq!(std::fs::read(data.join(&person).join("CV - Alice Martin.pdf")).unwrap(), pdf("curriculum vitae"));

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join(&person).join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["candidate"]["email"], "alice@example.test");
    let app = &meta["applications"][0];
    assert_eq!(app["message_id"], message_id.as_str());
    let kinds: Vec<&str> = app["documents"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["cv", "cover_letter"]);
    assert_eq!(app["missing"].as_array().unwrap().len(), 0);
    for d in app["documents"].as_array().unwrap() {
        assert_eq!(d["sha256"].as_str().unwrap().len(), 64);
        assert!(d["size"].as_u64().unwrap() > 0);
    }

    // The acknowledgement, read back from Alice's mailbox.
    let acks = wait_for("the acknowledgement in alice's INBOX", DEADLINE, || {
        let found = stack.messages_with("alice@example.test", "INBOX", "In-Reply-To", &message_id);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    let head = ack.split("\r\n\r\n").next().unwrap_or(ack).replace("\r\n", "\n");
    assert!(head.contains("Auto-Submitted: auto-replied"), "{head}");
    assert!(head.contains("X-Auto-Response-Suppress: All"), "{head}");
    assert!(head.contains(&format!("In-Reply-To: <{message_id}>")), "{head}");
    assert!(head.contains(&format!("<{message_id}>")) && head.contains("References:"), "{head}");
    assert!(head.contains("contact@example.test"), "From is the configured identity: {head}");
    assert!(head.contains("Return-Path: <>"), "sent with a null envelope sender: {head}");
    assert!(ack.contains("multipart/alternative"), "text and HTML parts");

    // Nothing twice: a second run, then a "restart" (a new process on the same state).
    let again = once(&config);
    assert!(again.starts_with("fetched 0,") && again.contains("sent 0"), "{again}");
    let again = once(&config);
    assert!(again.starts_with("fetched 0,") && again.contains("sent 0"), "{again}");
    assert_eq!(files_under(&data), files);
    wait_for("postfix to empty its queue", DEADLINE, || stack.postfix_queue_empty().then_some(()));
    assert_eq!(stack.messages_with("alice@example.test", "INBOX", "In-Reply-To", &message_id).len(), 1);

    // The message stays in the mailbox, unread, with our keyword.
    let flags =
        stack.doveadm(&["-f", "flow", "fetch", "-u", "contact@example.test", "flags", "mailbox", &folder, "ALL"]);
    assert!(flags.contains("$MailroomFiled"), "{flags}");
    assert!(!flags.contains("\\Seen"), "{flags}");
}

/// STARTTLS on both sides; the backlog found at first start is filed but not answered, robots and
/// lists never are, and a later application is.
#[test]
fn backlog_and_robots_get_no_reply_over_starttls() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let folder = stack.fresh_folder("contact@example.test", "e2eb");
    let config = write_config(
        dir.path(),
        &stack.imap_lines("contact@example.test", &folder, true),
        &stack.smtp_lines("contact@example.test", true),
        "",
    );
    let old_id = unique_id("bob-old");
    let old = application_eml(
        "Bob Durand <bob@example.test>",
        &format!("contact+{folder}@example.test"),
        "Candidature",
        &old_id,
        &[],
        "Bonjour, voici mon CV.",
        &[("CV.pdf", "application/pdf", &pdf("bob"))],
    );
    deliver_and_wait(&stack, "bob@example.test", &folder, &old);
    // INTERNALDATE counts whole seconds, and mail from the first start's own second counts as
    // new: let the clock leave the delivery's second so this mail is unambiguously backlog.
    let delivered = chrono::Utc::now().timestamp();
    wait_for("the next second", DEADLINE, || (chrono::Utc::now().timestamp() > delivered).then_some(()));

    let first = once(&config);
    assert!(first.contains("fetched 1, filed 1") && first.contains("queued 0, skipped 1"), "{first}");

    let list_id = unique_id("list");
    let list = application_eml(
        "Job board <carol@example.test>",
        &format!("contact+{folder}@example.test"),
        "New jobs this week",
        &list_id,
        &[("List-Id", "<jobs.example.test>"), ("Precedence", "bulk")],
        "Digest",
        &[],
    );
    deliver_and_wait(&stack, "carol@example.test", &folder, &list);
    let new_id = unique_id("bob-new");
    let new = application_eml(
        "Bob Durand <bob@example.test>",
        &format!("contact+{folder}@example.test"),
        "Candidature (la lettre)",
        &new_id,
        &[],
        "Bonjour, voici ma lettre.",
        &[("Lettre de motivation Bob.pdf", "application/pdf", &pdf("lettre bob"))],
    );
    deliver_and_wait(&stack, "bob@example.test", &folder, &new);

    let second = once(&config);
    assert!(
        second.contains("fetched 2, filed 1, quarantined 1")
            && second.contains("queued 1, skipped 0")
            && second.contains("sent 1"),
        "{second}"
    );
    // The newsletter is not an application: set aside with its reason, no candidate folder.
    let quarantine = dir.path().join("data/_quarantine");
    let reasons: Vec<String> = std::fs::read_dir(&quarantine)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".reason.txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("not an application: mailing list"), "{}", reasons[0]);
    assert!(reasons[0].contains(&list_id), "{}", reasons[0]);
    let acks = wait_for("the acknowledgement of the new application", DEADLINE, || {
        let found = stack.messages_with("bob@example.test", "INBOX", "In-Reply-To", &new_id);
        (!found.is_empty()).then_some(found)
    });
    // His backlog message carried the CV: this letter completes his file, and the reply says so.
    let reply = mailroom::understand::parse::parse(acks[0].as_bytes()).unwrap();
    assert!(reply.subject.as_deref().unwrap_or_default().starts_with("Dossier mis à jour"), "{:?}", reply.subject);
    assert!(reply.text_body.unwrap_or_default().contains("maintenant complet"));
    wait_for("postfix to empty its queue", DEADLINE, || stack.postfix_queue_empty().then_some(()));
    assert!(stack.messages_with("bob@example.test", "INBOX", "In-Reply-To", &old_id).is_empty(), "backlog answered");
    assert!(stack.messages_with("carol@example.test", "INBOX", "In-Reply-To", &list_id).is_empty(), "list answered");
}

/// A wrong password is a clear failure naming the account, exit code 1, and nothing is written.
#[test]
fn wrong_password_fails_clearly() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let imap = stack.imap_lines("contact@example.test", "INBOX", false).replace(stack.password(), "wrong-password");
    let config = write_config(dir.path(), &imap, &stack.smtp_lines("contact@example.test", false), "");
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("login as contact@example.test refused"), "{err}");
    assert!(!err.contains("wrong-password"), "the password must not be printed: {err}");
}
