//! Privacy on the real stack: the mailroom binary against the Dovecot and Postfix that
//! `scripts/mailstack` runs (like tests/e2e.rs: under `CI=true` a missing stack fails).
//!
//! Time is real: a candidate "past retention" is a message whose arrival time (INTERNALDATE) is
//! months old, put in the folder with IMAP APPEND, as a mailbox restored from a backup holds them.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Daemon, Stack, application_eml, files_under, pdf, status_json, unique_id, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the binary with the config; debug logs on stderr.
fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(args)
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "mailroom=debug")
        .stdin(Stdio::null())
        .output()
        .expect("mailroom runs")
}

fn ok(config: &Path, args: &[&str]) -> (String, String) {
    let out = run(config, args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "mailroom {args:?}: {}\n{stdout}\n{stderr}", out.status);
    (stdout, stderr)
}

fn application(who: &str, name: &str, id: &str, cv: &[u8]) -> Vec<u8> {
    application_eml(
        &format!("{name} <{who}>"),
        "contact@example.test",
        "Candidature stage",
        id,
        &[("Return-Path", &format!("<{who}>"))],
        "Bonjour, veuillez trouver ci-joint mon CV et ma lettre de motivation.",
        &[("CV.pdf", "application/pdf", cv), ("Lettre de motivation.pdf", "application/pdf", &pdf(id))],
    )
}

/// IMAP APPEND with an arrival time in the past (Python's imaplib: an independent client).
fn append_dated(stack: &Stack, folder: &str, raw: &[u8], date: &str) {
    let script = r#"
import imaplib, ssl, sys
host, port, ca, user, password, folder, date = sys.argv[1:8]
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ssl.create_default_context(cafile=ca))
m.login(user, password)
typ, data = m.append(folder, None, '"' + date + '"', sys.stdin.buffer.read())
assert typ == "OK", (typ, data)
m.logout()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, "localhost", &stack.port("MAILSTACK_IMAPS_PORT").to_string(), stack.ca()])
        .args(["contact@example.test", stack.password(), folder, date])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/mailstack installs it)");
    child.stdin.take().unwrap().write_all(raw).unwrap();
    assert!(child.wait().unwrap().success(), "IMAP APPEND into {folder}");
}

/// UIDs of the folder's messages whose header matches.
fn found(stack: &Stack, folder: &str, header: &str, value: &str) -> usize {
    stack
        .doveadm(&["-f", "flow", "search", "-u", "contact@example.test", "mailbox", folder, "HEADER", header, value])
        .lines()
        .count()
}

fn folder_of(data: &Path, family: &str) -> Option<String> {
    files_under(data).into_iter().find(|f| f.contains(&format!("/{family}-")) && f.ends_with("/metadata.json"))
}

fn assert_no_personal_data(log: &str, what: &[&str]) {
    for w in what {
        assert!(!log.contains(w), "{w:?} in the log:\n{log}");
    }
}

#[test]
fn past_retention_is_gone_from_folder_store_and_mailbox_while_newer_held_and_others_stay() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "priv", "[privacy]\nretention_months = 5\n");
    ok(&config, &["once"]);
    let ids: Vec<String> = ["bob", "alice-old", "carol", "alice-new"].iter().map(|t| unique_id(t)).collect();
    append_dated(
        &stack,
        &folder,
        &application("bob@example.test", "Bob Durand", &ids[0], &pdf("cv bob")),
        "10-Jan-2025 09:00:00 +0000",
    );
    append_dated(
        &stack,
        &folder,
        &application("alice@example.test", "Alice Martin", &ids[1], &pdf("cv alice 1")),
        "05-Jan-2025 09:00:00 +0000",
    );
    append_dated(
        &stack,
        &folder,
        &application("carol@example.test", "Carol Leroy", &ids[2], &pdf("cv carol")),
        "12-Jan-2025 09:00:00 +0000",
    );
    // Alice writes again today: her window starts over.
    stack.submit(
        "alice@example.test",
        &[&to],
        &application("alice@example.test", "Alice Martin", &ids[3], &pdf("cv alice 2")),
    );
    wait_for("four messages in the folder", DEADLINE, || {
        (stack.count("contact@example.test", &folder) == 4).then_some(())
    });
    let (summary, _) = ok(&config, &["once"]);
    assert!(summary.contains("filed 4"), "{summary}");
    let data = dir.path().join("data");
    let bob_folder = folder_of(&data, "Durand").unwrap();
    // Data at rest: directories 0700, files 0600 (the umask), the state and its key too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let state = dir.path().join("state");
        for d in [data.clone(), data.join(&bob_folder).parent().unwrap().to_path_buf(), state.clone()] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for f in
            files_under(&data).iter().map(|f| data.join(f)).chain(files_under(&state).iter().map(|f| state.join(f)))
        {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        assert!(state.join("mailroom.privacy-key").exists());
    }

    // The acknowledgement Alice got names the configured period, in the posting's language.
    let acks = wait_for("Alice's acknowledgement", DEADLINE, || {
        let found = stack.messages_with("alice@example.test", "INBOX", "In-Reply-To", &ids[3]);
        (!found.is_empty()).then_some(found)
    });
    let ack = mailroom::understand::parse::parse(acks[0].as_bytes()).unwrap();
    let text = ack.text_body.unwrap_or_default();
    assert!(text.contains("Nous les conservons 5 mois après votre dernière candidature"), "{text}");
    assert!(text.contains("CNIL"), "{text}");

    ok(&config, &["candidate", "hold", "carol@example.test", "--reason", "dispute"]);
    let (dry, _) = ok(&config, &["purge", "--dry-run"]);
    assert!(dry.contains("would purge 1 candidate(s)") && dry.contains("bob@example.test"), "{dry}");
    assert!(data.join(&bob_folder).exists(), "a dry run removes nothing");

    let (out, log) = ok(&config, &["purge"]);
    assert!(out.contains("purged 1 candidate(s)") && out.contains("mailbox: 1 deleted"), "{out}");
    assert_no_personal_data(&log, &["bob@", "alice@", "carol@", "Durand", "Martin", "Leroy", "CV.pdf"]);
    // Gone from the folder, the store and the mailbox.
    assert!(!data.join(&bob_folder).exists());
    assert!(folder_of(&data, "Durand").is_none(), "{:#?}", files_under(&data));
    let shown = run(&config, &["candidate", "show", "bob@example.test"]);
    assert_eq!(shown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&shown.stderr).contains("no candidate with the address bob@example.test"));
    assert_eq!(found(&stack, &folder, "Message-ID", &ids[0]), 0);
    // Alice (newer application) and Carol (held) stay, with their mail.
    assert!(folder_of(&data, "Martin").is_some() && folder_of(&data, "Leroy").is_some());
    for id in &ids[1..] {
        assert_eq!(found(&stack, &folder, "Message-ID", id), 1, "{id}");
    }
    let (list, _) = ok(&config, &["candidate", "list"]);
    assert!(list.contains("carol@example.test") && list.contains("HELD (dispute)"), "{list}");
    let s = status_json(&config);
    assert!(!s["privacy"]["last_purge"].is_null(), "{s}");
    assert_eq!(s["privacy"]["held"], 1, "{s}");
    // Twice is harmless.
    let (again, _) = ok(&config, &["purge"]);
    assert!(again.contains("purged 0 candidate(s)") && again.contains("mailbox: 0 deleted"), "{again}");
}

#[test]
fn kill_9_during_a_purge_then_a_restart_finishes_it() {
    let Some(stack) = Stack::own("privacy-kill") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, _, config) = stack.contact_folder_config(dir.path(), "kill", "");
    let people = ["bob", "dave", "frank", "erin"];
    for (i, p) in people.iter().enumerate() {
        let raw = application(&format!("{p}@example.test"), &format!("{p} Person{i}"), &unique_id(p), &pdf(p));
        append_dated(&stack, &folder, &raw, "10-Jan-2025 09:00:00 +0000");
    }
    ok(&config, &["once"]);
    let data = dir.path().join("data");
    assert_eq!(files_under(&data).iter().filter(|f| f.ends_with("metadata.json")).count(), 4);

    // A mail server that hangs: the purge does every local step, then waits on it.
    stack.service("freeze", "dovecot");
    let log = dir.path().join("killed-purge.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["purge", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "mailroom=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the purge to be recorded and its local steps done", DEADLINE, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the purge ended before the kill ({status}):\n{}", std::fs::read_to_string(&log).unwrap());
        }
        let p = &status_json(&config)["privacy"];
        (p["unfinished_purges"] == 1 && p["steps_done"].as_u64() >= Some(12)).then_some(())
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stack.service("thaw", "dovecot");
    assert!(!files_under(&data).iter().any(|f| f.ends_with("metadata.json")), "the folders went first");
    assert_eq!(stack.count("contact@example.test", &folder), 4, "the mailbox step never ran");
    assert_eq!(status_json(&config)["privacy"]["unfinished_purges"], 1);

    // The restart: the daemon takes the recorded purge up at start and finishes it.
    let mut daemon = Daemon::start(&config);
    wait_for("the daemon to finish the interrupted purge", DEADLINE, || {
        (status_json(&config)["privacy"]["unfinished_purges"] == 0).then_some(())
    });
    assert!(daemon.terminate(Duration::from_secs(15)).success());
    let log = daemon.log_text();
    assert!(log.contains("taking up an unfinished purge") && log.contains("purge finished"), "{log}");
    assert_eq!(stack.count("contact@example.test", &folder), 0, "finished: the mailbox step ran");
    let s = status_json(&config);
    assert_eq!((s["privacy"]["unfinished_purges"].as_u64(), s["totals"]["filed"].as_u64()), (Some(0), Some(0)), "{s}");
    let (audit, _) = ok(&config, &["audit", "--json"]);
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let people_purged: u64 = audit.as_array().unwrap().iter().filter_map(|a| a["counts"]["people"].as_u64()).sum();
    assert_eq!(people_purged, 4, "{audit:#}");
    assert!(audit.as_array().unwrap().iter().any(|a| a["counts"]["mailbox_deleted"] == 4), "{audit:#}");
    // Once more: nothing left to do.
    let (again, _) = ok(&config, &["purge"]);
    assert!(again.contains("purged 0 candidate(s)") && !again.contains("interrupted"), "{again}");
}

#[test]
fn the_export_holds_exactly_that_persons_data_and_nobody_elses() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "export", "");
    ok(&config, &["once"]);
    let (alice_cv, bob_cv) = (pdf("alice's own cv, unique 41"), pdf("bob's own cv, unique 42"));
    let alice_ids = [unique_id("alice-1"), unique_id("alice-2")];
    stack.submit(
        "alice@example.test",
        &[&to],
        &application("alice@example.test", "Alice Martin", &alice_ids[0], &alice_cv),
    );
    stack.submit(
        "bob@example.test",
        &[&to],
        &application("bob@example.test", "Bob Durand", &unique_id("bob"), &bob_cv),
    );
    let design = application_eml(
        "Alice Martin <alice@example.test>",
        &to,
        "Application – design internship",
        &alice_ids[1],
        &[("Return-Path", "<alice@example.test>")],
        "Hello, please find my portfolio.",
        &[("Portfolio.pdf", "application/pdf", &pdf("alice portfolio"))],
    );
    stack.submit("alice@example.test", &[&to], &design);
    wait_for("three messages", DEADLINE, || (stack.count("contact@example.test", &folder) == 3).then_some(()));
    ok(&config, &["once"]);

    let unknown = run(&config, &["candidate", "export", "nobody@example.test", "--out", "x.zip"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no candidate with the address nobody@example.test"));

    let zip = dir.path().join("alice.zip");
    let (out, _) =
        ok(&config, &["candidate", "export", "Alice@Example.test", "--out", zip.to_str().unwrap(), "--lang", "en"]);
    assert!(out.contains("2 application(s), 3 document(s), 2 message(s)"), "{out}");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&zip).unwrap().permissions()) & 0o777, 0o600);
    // Read back by an independent reader (Python's zipfile), every entry checked.
    let listing = Command::new("python3")
        .args([
            "-c",
            "import zipfile, sys, json\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(json.dumps({n: z.read(n).hex() for n in z.namelist()}))",
            zip.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let entries: std::collections::BTreeMap<String, String> = serde_json::from_slice(&listing.stdout).unwrap();
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    let bytes = |name: &str| hex::decode(&entries[name]).unwrap();
    assert!(names.contains(&"summary.txt") && names.contains(&"metadata.json"), "{names:#?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("documents/")).count(), 3, "{names:#?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("messages/")).count(), 2, "{names:#?}");
    assert!(names.iter().any(|n| n.starts_with("acknowledgements/") && n.ends_with(".txt")), "{names:#?}");
    assert_eq!(bytes("documents/stage-gestion-projet/CV - Alice Martin.pdf"), alice_cv);
    let meta: serde_json::Value = serde_json::from_slice(&bytes("metadata.json")).unwrap();
    assert_eq!(meta["candidate"]["email"], "alice@example.test");
    assert_eq!(meta["applications"].as_array().unwrap().len(), 2);
    let summary = String::from_utf8(bytes("summary.txt")).unwrap();
    assert!(summary.contains("Alice Martin <alice@example.test>") && summary.contains("CNIL"), "{summary}");
    assert!(summary.contains("will be deleted on"), "{summary}");
    // Nobody else's data: no entry names Bob or holds his CV.
    for (name, hex_bytes) in &entries {
        let b = hex::decode(hex_bytes).unwrap();
        let text = String::from_utf8_lossy(&b);
        assert!(!text.contains("bob@example.test") && !text.contains("Durand"), "{name} names Bob");
        assert!(!b.windows(bob_cv.len()).any(|w| w == bob_cv.as_slice()), "{name} holds Bob's CV");
    }
    // Never over an existing file; French on request.
    let again = run(&config, &["candidate", "export", "alice@example.test", "--out", zip.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    let fr = dir.path().join("alice-fr.zip");
    ok(&config, &["candidate", "export", "alice@example.test", "--out", fr.to_str().unwrap()]);
    let (audit, _) = ok(&config, &["audit"]);
    assert_eq!(audit.lines().filter(|l| l.contains("candidate export")).count(), 2, "{audit}");
    assert!(!audit.contains("alice"), "{audit}");
}

#[test]
fn after_forget_nothing_in_the_data_dir_the_database_or_the_mailbox_finds_the_address_or_a_document() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "forget", "");
    ok(&config, &["once"]);
    let id = unique_id("erin");
    let raw = application("erin@example.test", "Erin Petit", &id, &pdf("erin's cv, unique 7"));
    stack.submit("erin@example.test", &[&to], &raw);
    stack.submit(
        "frank@example.test",
        &[&to],
        &application("frank@example.test", "Frank Moreau", &unique_id("frank"), &pdf("frank")),
    );
    wait_for("two messages", DEADLINE, || (stack.count("contact@example.test", &folder) == 2).then_some(()));
    ok(&config, &["once"]);
    let data = dir.path().join("data");
    let meta = folder_of(&data, "Petit").unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join(meta)).unwrap()).unwrap();
    let sha = meta["applications"][0]["documents"][0]["sha256"].as_str().unwrap().to_owned();

    // Without --yes and without a terminal, nothing happens.
    let refused = run(&config, &["candidate", "forget", "erin@example.test"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let (out, log) = ok(&config, &["candidate", "forget", "erin@example.test", "--yes"]);
    assert!(out.contains("erased erin@example.test") && out.contains("mailbox: 1 deleted"), "{out}");
    assert_no_personal_data(&log, &["erin", "Petit", &sha]);

    // The data dir: no file holds the address or the document's hash.
    for f in files_under(&data) {
        let b = std::fs::read(data.join(&f)).unwrap();
        for needle in ["erin@example.test", sha.as_str()] {
            assert!(!b.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in {f}");
        }
    }
    // The database's raw bytes, its write-ahead log and shared memory included.
    let state = dir.path().join("state");
    for f in files_under(&state) {
        let b = std::fs::read(state.join(&f)).unwrap();
        for needle in ["erin@example.test", sha.as_str(), "Erin Petit"] {
            assert!(!b.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in {f}");
        }
    }
    // The mailbox.
    for needle in ["erin@example.test", sha.as_str()] {
        let hits =
            stack.doveadm(&["-f", "flow", "search", "-u", "contact@example.test", "mailbox", &folder, "TEXT", needle]);
        assert!(hits.trim().is_empty(), "{needle} in the mailbox: {hits}");
    }
    assert_eq!(stack.count("contact@example.test", &folder), 1, "Frank's application stays");
    let shown = run(&config, &["candidate", "show", "erin@example.test"]);
    assert!(String::from_utf8_lossy(&shown.stderr).contains("was erased on request"));

    // A copy still on a server (here: sent again) is never filed again.
    stack.submit("erin@example.test", &[&to], &raw);
    wait_for("the copy", DEADLINE, || (stack.count("contact@example.test", &folder) == 2).then_some(()));
    let (summary, note) = ok(&config, &["once"]);
    assert!(summary.contains("fetched 1, filed 0"), "{summary}");
    assert!(note.contains("1 message(s) from erased addresses were not filed"), "{note}");
    assert!(folder_of(&data, "Petit").is_none());
}

#[test]
fn the_daemon_purges_on_its_schedule() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Every two seconds, so the test sees a firing without waiting for 03:00.
    let (folder, _, config) =
        stack.contact_folder_config(dir.path(), "sched", "[privacy]\nschedule = \"*/2 * * * * *\"\n");
    append_dated(
        &stack,
        &folder,
        &application("dave@example.test", "Dave Smith", &unique_id("dave"), &pdf("dave")),
        "10-Jan-2025 09:00:00 +0000",
    );
    let mut daemon = Daemon::start(&config);
    wait_for("the scheduled purge to remove Dave", DEADLINE, || {
        let out = run(&config, &["audit", "--json"]);
        let audit: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        audit
            .as_array()?
            .iter()
            .any(|a| a["action"] == "purge" && a["command"] == "schedule" && a["counts"]["people"] == 1)
            .then_some(())
    });
    assert_eq!(stack.count("contact@example.test", &folder), 0);
    assert!(!files_under(&dir.path().join("data")).iter().any(|f| f.contains("Smith")));
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let log = daemon.log_text();
    assert!(log.contains("purge finished"), "{log}");
    assert_no_personal_data(&log, &["dave@", "Smith"]);
}
