//! What an acknowledgement says and to whom, on the real mail stack (issue 10, items 7 to 11):
//! only text mailroom controls goes out under the organisation's name; the headers copied from
//! the application are bounded and valid when Postfix delivers them; spam, newsletters and the
//! auto-replies of Exchange, iCloud, Gmail, Zimbra and vacation programs get no answer; and a
//! recipient the server can never take fails for good instead of being retried forever.

mod common;

use std::path::Path;
use std::time::Duration;

use mailroom::lang::Lang;
use mailroom::reason::ReplyNote;

use common::{Stack, application_eml, mailroom, pdf, status_json, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

fn tag(what: &str) -> String {
    format!("{what}-{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap() % 1_000_000_000)
}

fn once(config: &Path) -> String {
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// (uid, outcome, what became of the reply, in English) of every message, from the store.
fn rows(dir: &Path) -> Vec<(u32, String, String)> {
    let conn = rusqlite::Connection::open(dir.join("state/mailroom.sqlite3")).unwrap();
    let mut stmt = conn.prepare("SELECT uid, outcome, reply, reason FROM messages ORDER BY uid").unwrap();
    stmt.query_map([], |r| {
        let reply: String = r.get(2)?;
        let reason: Option<String> = r.get(3)?;
        let note = (!reply.is_empty()).then(|| ReplyNote::from_stored(&reply).describe(Lang::En));
        let quarantined =
            reason.map(|q| mailroom::reason::QuarantineReason::from_stored(&q).describe(Lang::En)).unwrap_or_default();
        Ok((r.get(0)?, r.get(1)?, note.unwrap_or(quarantined)))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The raw replies in catchall's INBOX addressed to `address` (unknown local parts land there).
fn replies_to(stack: &Stack, address: &str) -> Vec<String> {
    stack.messages_with("catchall@example.test", "INBOX", "To", address)
}

/// The header block of a raw message, and its fields unfolded.
fn header_fields(raw: &str) -> (String, Vec<(String, String)>) {
    let raw = raw.replace("\r\n", "\n");
    let head = raw.split("\n\n").next().unwrap_or_default().to_owned();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            fields.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    (head, fields)
}

#[test]
fn an_acknowledgement_carries_only_our_text_and_bounded_valid_headers() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, _, config) = stack.contact_folder_config(dir.path(), "ackhostile", "");
    once(&config);

    let bait = "Votre candidature est refusée, appelez le 08 99 00 00 00 ou payez sur http://evil.example/pay";
    let target = format!("{}@example.test", tag("target"));
    let jeanne = format!("{}@example.test", tag("jeanne"));
    // 1 MB of display name, a 100 KB Message-ID and 20,000 References: delivered over LMTP, as
    // a receiving MTA without a header size limit would hand them on.
    let name = format!("{bait} ").repeat(1_000_000 / (bait.len() + 1));
    let huge_id = format!("{}@example.test", "x".repeat(100_000));
    let references: String = (0..20_000).map(|i| format!("<r{i}.{target}>")).collect::<Vec<_>>().join("\r\n ");
    let hostile = application_eml(
        &format!("\"{name}\" <{target}>"),
        "contact@example.test",
        &format!("Candidature stage – {bait}"),
        &huge_id,
        &[("References", &references)],
        "Bonjour",
        &[
            ("CV http___evil.example_pay.pdf", "application/pdf", &pdf("cv")),
            (&format!("{bait}.pdf"), "application/pdf", &pdf("other")),
        ],
    );
    let fine = application_eml(
        &format!("Jeanne Dupré <{jeanne}>"),
        "contact@example.test",
        "Candidature stage – rappelez-moi au 06 00 00 00 00",
        &format!("{}@example.test", tag("fine")),
        &[],
        "Bonjour",
        &[("CV_Jeanne_2026.pdf", "application/pdf", &pdf("cv")), ("LM.pdf", "application/pdf", &pdf("lm"))],
    );
    stack.lmtp_deliver(&format!("contact+{folder}@example.test"), &[hostile, fine]);
    wait_for("delivery", DEADLINE, || (stack.count("contact@example.test", &folder) == 2).then_some(()));
    let summary = once(&config);
    assert!(summary.contains("sent 2"), "{summary}");

    let to_target = wait_for("the reply to the hostile sender", DEADLINE, || replies_to(&stack, &target).pop());
    let to_jeanne = wait_for("the reply to Jeanne", DEADLINE, || replies_to(&stack, &jeanne).pop());
    for (raw, address) in [(&to_target, &target), (&to_jeanne, &jeanne)] {
        let (head, fields) = header_fields(raw);
        assert!(head.len() < 8_000, "a header block of {} bytes", head.len());
        assert!(raw.lines().all(|l| l.len() <= 998), "a line over 998 bytes");
        let to: Vec<&String> = fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case("To")).map(|(_, v)| v).collect();
        assert_eq!(to.len(), 1, "{head}");
        assert!(
            to[0].contains(&format!("<{address}>")) || to[0] == address,
            "the delivered To: holds the address: {}",
            to[0]
        );
        for (n, v) in &fields {
            if n.eq_ignore_ascii_case("In-Reply-To") || n.eq_ignore_ascii_case("References") {
                let ids: Vec<&str> = v.split_whitespace().collect();
                assert!(ids.len() <= 10, "{n}: {} ids", ids.len());
                for id in ids {
                    assert!(id.starts_with('<') && id.ends_with('>') && id.len() <= 250, "{n}: {id:.80}");
                }
            }
        }
        let parsed = mailroom::understand::parse::parse(raw.as_bytes()).unwrap();
        let everything = format!(
            "{}\n{}\n{}\n{:?}",
            parsed.subject.clone().unwrap_or_default(),
            parsed.text_body.clone().unwrap_or_default(),
            parsed.html_body.clone().unwrap_or_default(),
            to
        );
        for word in ["refusée", "08 99", "evil", "http:", "payez", "06 00", "rappelez", "CV_Jeanne", "LM.pdf"] {
            assert!(!everything.contains(word), "{word:?} from the sender went out to {address}:\n{everything:.2000}");
        }
    }
    let (_, target_fields) = header_fields(&to_target);
    assert!(
        !target_fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("In-Reply-To")),
        "a 100 KB id is no Message-ID: In-Reply-To is left out"
    );
    let target_text = mailroom::understand::parse::parse(to_target.as_bytes()).unwrap().text_body.unwrap();
    assert!(target_text.trim_start().starts_with("Bonjour,"), "{target_text:.400}");
    assert!(target_text.contains("CV (PDF, "), "{target_text:.1000}");
    let jeanne_text = mailroom::understand::parse::parse(to_jeanne.as_bytes()).unwrap().text_body.unwrap();
    assert!(jeanne_text.trim_start().starts_with("Bonjour Jeanne,"), "{jeanne_text:.400}");
    assert!(jeanne_text.contains("lettre de motivation (PDF, "), "{jeanne_text:.1000}");
}

/// A fixture as a mail server would hand it on: without the trace the test stack adds itself.
fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let raw = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = raw
        .split_inclusive('\n')
        .skip_while(|l| l.starts_with("Return-Path:") || l.starts_with("Delivered-To:"))
        .collect();
    kept.concat().into_bytes()
}

#[test]
fn spam_newsletters_and_auto_replies_get_no_answer_and_a_reason() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (folder, to, config) = stack.contact_folder_config(dir.path(), "backscatter", "");
    once(&config);
    // (fixture, envelope sender)
    let cases = [
        ("301-exchange-automatic-reply.eml", "marc.leblanc@agglo.test"),
        ("302-exchange-mailbox-rules-agent.eml", "accueil@mairie-exemple.test"),
        ("303-icloud-vacation.eml", "lucie.bernard@icloud.test"),
        ("304-gmail-vacation-responder.eml", "thomas.girard@gmail.test"),
        ("305-zimbra-out-of-office.eml", ""),
        ("306-stalker-auto-reply-subject-only.eml", "susanne.gaumann@ecos.test"),
        ("307-unix-vacation-program.eml", "rita.bearth@agrl.test"),
        ("308-exchange-online-spam-with-attachment.eml", "rh-recrutement@offres-emploi.test"),
        ("309-spamassassin-flagged-no-document.eml", "promo@bonnes-affaires.test"),
        ("310-newsletter-without-list-headers.eml", "bonjour@librairie-exemple.test"),
    ];
    for (name, sender) in &cases {
        stack.inject(sender, &[&to], &fixture(name));
    }
    // One real application among them: the stack does answer.
    let person = format!("{}@example.test", tag("person"));
    let id = format!("{}@example.test", tag("app"));
    let application = application_eml(
        &format!("Alice Martin <{person}>"),
        &to,
        "Candidature stage",
        &id,
        &[],
        "Bonjour",
        &[("CV.pdf", "application/pdf", &pdf("cv"))],
    );
    stack.inject(&person, &[&to], &application);
    let total = cases.len() + 1;
    wait_for("delivery of every message", DEADLINE, || {
        (stack.count("contact@example.test", &folder) == total).then_some(())
    });
    let summary = once(&config);
    assert!(summary.contains("queued 1,") && summary.contains("sent 1,"), "{summary}");
    let rows = rows(dir.path());
    assert_eq!(rows.len(), total);
    // Delivery order is not submission order: count by what the store says.
    let count = |outcome: &str, start: &str| {
        rows.iter().filter(|(_, o, r)| o == outcome && r.starts_with(start) && !r.contains("spam")).count()
    };
    let spam = |outcome: &str, start: &str| {
        rows.iter().filter(|(_, o, r)| o == outcome && r.starts_with(start) && r.contains("marked as spam")).count()
    };
    assert_eq!(count("quarantined", "not an application: "), 7, "the seven auto-replies: {rows:#?}");
    assert_eq!(spam("quarantined", "not an application: "), 1, "spam with nothing attached: {rows:#?}");
    assert_eq!(spam("filed", "not answered: "), 1, "spam with a 'CV' attached: {rows:#?}");
    assert_eq!(count("filed", "not answered: does not look like an application"), 1, "the newsletter: {rows:#?}");
    assert_eq!(count("filed", "acknowledgement queued"), 1, "the application: {rows:#?}");
    assert_eq!(status_json(&config)["totals"]["outbox_sent"].as_u64(), Some(1));
    wait_for("the one acknowledgement", DEADLINE, || replies_to(&stack, &person).pop());
}

/// One SMTP exchange on a plain port: the server's answer to each line.
fn smtp_talk(port: u16, lines: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let read = |reader: &mut BufReader<std::net::TcpStream>| {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    let mut out = vec![read(&mut reader)];
    for line in lines {
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        out.push(read(&mut reader));
    }
    out
}

#[test]
fn a_recipient_the_server_cannot_take_fails_for_good() {
    let Some(stack) = Stack::get() else { return };
    // What the stack's Postfix says: no SMTPUTF8 in its EHLO, and a permanent refusal of it.
    let talk = smtp_talk(
        stack.port("MAILSTACK_SMTP_PORT"),
        &["EHLO tests.example.test", "MAIL FROM:<a@example.test> SMTPUTF8", "QUIT"],
    );
    assert!(talk[1].starts_with("250") && !talk[1].to_ascii_uppercase().contains("SMTPUTF8"), "{talk:?}");
    assert!(talk[2].starts_with("555"), "{talk:?}");

    let dir = tempfile::tempdir().unwrap();
    let (folder, _, config) = stack.contact_folder_config(dir.path(), "utf8rcpt", "[replies]\nonce_per_days = 0");
    once(&config);
    let local = tag("jérôme");
    let ascii = format!("{}@example.test", tag("ascii"));
    let messages = [
        format!("From: =?utf-8?q?J=C3=A9r=C3=B4me_Petit?= <{local}@example.test>"),
        format!("From: Ana Lopes <{ascii}>"),
    ]
    .map(|from| {
        let raw = application_eml(
            "placeholder <p@example.test>",
            "contact@example.test",
            "Candidature stage",
            &format!("{}@example.test", tag("utf8")),
            &[],
            "Bonjour",
            &[("CV.pdf", "application/pdf", &pdf(&from))],
        );
        String::from_utf8(raw).unwrap().replacen("From: placeholder <p@example.test>", &from, 1).into_bytes()
    });
    stack.lmtp_deliver(&format!("contact+{folder}@example.test"), &messages);
    wait_for("delivery", DEADLINE, || (stack.count("contact@example.test", &folder) == 2).then_some(()));
    let summary = once(&config);
    assert!(summary.contains("sent 1, retrying 0, failed 1"), "{summary}");
    // It stays failed: another pass sends nothing and retries nothing.
    let summary = once(&config);
    assert!(summary.contains("sent 0, retrying 0, failed 0; outbox waiting 0"), "{summary}");
    let totals = status_json(&config)["totals"].clone();
    assert_eq!((totals["outbox_failed"].as_u64(), totals["outbox_pending"].as_u64()), (Some(1), Some(0)), "{totals}");
    wait_for("the ASCII recipient's reply", DEADLINE, || replies_to(&stack, &ascii).pop());
}
