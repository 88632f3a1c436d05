//! Pipeline tier: the real stages, store and filing on a temporary disk, with a fake mailbox and
//! a fake courier in place of the network. The end-to-end tier (tests/e2e.rs) repeats the main
//! paths on the real Dovecot and Postfix.

mod common;

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use mailroom::config::Config;
use mailroom::courier::{Courier, SendError};
use mailroom::error::Retry;
use mailroom::lang::PostingLang;
use mailroom::mail::OutgoingMail;
use mailroom::mailbox::{Envelope, Mailbox, MailboxError, RawMessage, Selected, Wake};
use mailroom::outbox::SendReport;
use mailroom::pipeline::{Pipeline, PipelineError, Report};
use mailroom::reply::Replier;
use mailroom::service::Quiet;
use mailroom::store::{Ledger, OutboxStore, Store};
use tokio::sync::watch;

use common::{application_eml, pdf, write_config};

#[derive(Default)]
struct FakeMailbox {
    uid_validity: u32,
    messages: common::FakeMessages,
    keywords: Vec<u32>,
    fetched_uids: Vec<u32>,
    /// Messages that arrive while a pass runs: delivered (given the next UIDs) at the next listing.
    arriving: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FakeMailbox {
    fn with(messages: Vec<Vec<u8>>, at: DateTime<Utc>) -> FakeMailbox {
        FakeMailbox {
            uid_validity: 7,
            messages: messages.into_iter().enumerate().map(|(i, m)| (i as u32 + 1, (at, m))).collect(),
            ..Default::default()
        }
    }
}

impl Mailbox for FakeMailbox {
    fn name(&self) -> &str {
        "contact@fake/INBOX"
    }
    async fn select(&mut self) -> Result<Selected, MailboxError> {
        Ok(Selected { uid_validity: self.uid_validity, exists: self.messages.len() as u32 })
    }
    async fn list_after(&mut self, after: u32) -> Result<Vec<Envelope>, MailboxError> {
        for m in self.arriving.lock().unwrap().drain(..) {
            let uid = self.messages.last_key_value().map_or(1, |(uid, _)| uid + 1);
            self.messages.insert(uid, (Utc::now(), m));
        }
        Ok(common::envelopes_after(&self.messages, after))
    }
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<RawMessage>, MailboxError> {
        self.fetched_uids.extend_from_slice(uids);
        Ok(common::raw_messages(&self.messages, uids))
    }
    async fn add_keyword(&mut self, uids: &[u32], _: &str) -> Result<(), MailboxError> {
        self.keywords.extend_from_slice(uids);
        Ok(())
    }
    async fn wait_for_change(&mut self, at_most: std::time::Duration) -> Result<Wake, MailboxError> {
        tokio::time::sleep(at_most).await;
        Ok(Wake::Timeout)
    }
    async fn logout(&mut self) {}
}

#[derive(Default)]
struct FakeCourier {
    sent: Mutex<Vec<OutgoingMail>>,
    /// Fail this many deliveries with a transient error first.
    transient_failures: Mutex<u32>,
}

impl Courier for FakeCourier {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), SendError> {
        let mut left = self.transient_failures.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Err(SendError {
                retry: Retry::Transient,
                message: "421 try again later".into(),
                maybe_sent: false,
            });
        }
        self.sent.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

struct World {
    dir: tempfile::TempDir,
    cfg: Config,
}

impl World {
    fn new(extra: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let imap = "host = \"imap.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
        let smtp = "host = \"smtp.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
        let path = write_config(dir.path(), imap, smtp, extra);
        let cfg = Config::load_with_env(&path, std::iter::empty()).unwrap();
        World { dir, cfg }
    }

    fn pipeline(&self) -> Pipeline<Store> {
        let ledger = Store::open(&self.cfg.storage.state_path).unwrap();
        Pipeline::new(&self.cfg, Replier::new(&self.cfg).unwrap(), ledger)
    }

    fn files(&self) -> Vec<String> {
        common::files_under(&self.cfg.storage.data_dir)
    }
}

/// `mailroom once` on one folder, as the command runs it.
async fn once(
    pipeline: &Pipeline<Store>,
    mailbox: &mut FakeMailbox,
    courier: &FakeCourier,
) -> Result<(Report, SendReport), PipelineError> {
    mailroom::daemon::once(pipeline, mailbox, courier, &Quiet, never()).await
}

fn reply_code(row: &(u32, String, Option<mailroom::reason::ReplyNote>)) -> &'static str {
    row.2.as_ref().map_or("none", |n| n.code())
}

fn never() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    std::mem::forget(tx);
    rx
}

fn jeanne(n: u32) -> Vec<u8> {
    application_eml(
        "Jeanne Dupré <jeanne.dupre@example.test>",
        "contact@example.test",
        "Candidature stage gestion de projet",
        &format!("jeanne-{n}@example.test"),
        &[("Return-Path", "<jeanne.dupre@example.test>")],
        "Bonjour, veuillez trouver ci-joint mon CV et ma lettre de motivation.",
        &[
            ("CV Jeanne Dupré.pdf", "application/pdf", &pdf(&format!("cv {n}"))),
            ("Lettre de motivation.pdf", "application/pdf", &pdf("lm")),
        ],
    )
}

fn robot() -> Vec<u8> {
    application_eml(
        "Jobs Digest <jobs@example.test>",
        "contact@example.test",
        "Weekly digest",
        "digest-1@example.test",
        &[("Return-Path", "<bounces@example.test>"), ("List-Id", "<jobs.example.test>"), ("Precedence", "bulk")],
        "New offers this week.",
        &[],
    )
}

#[tokio::test]
async fn files_each_message_once_and_answers_only_people_once() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let arrived = Utc::now() + Duration::seconds(1);
    let mut mailbox = FakeMailbox::with(vec![jeanne(1), robot(), b"\x00\x01 not mail".to_vec()], arrived);
    let courier = FakeCourier::default();

    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.fetched, report.filed, report.quarantined), (3, 1, 2));
    assert_eq!((report.replies_queued, report.replies_skipped), (1, 0));
    assert_eq!(sent.sent, 1);
    let sent_mail = courier.sent.lock().unwrap().clone();
    assert_eq!(sent_mail.len(), 1);
    assert_eq!(sent_mail[0].to, "jeanne.dupre@example.test");
    assert_eq!(sent_mail[0].in_reply_to.as_deref(), Some("jeanne-1@example.test"));
    assert!(sent_mail[0].subject.contains("Candidature bien reçue"), "{}", sent_mail[0].subject);
    assert_eq!(mailbox.keywords, vec![1, 2, 3]);

    let files = world.files();
    let folder = "stage-gestion-projet/Dupré-Jeanne--";
    assert!(files.iter().any(|f| f.starts_with(folder) && f.ends_with("/CV - Jeanne Dupré.pdf")), "{files:#?}");
    assert!(
        files.iter().any(|f| f.starts_with(folder) && f.ends_with("/Lettre de motivation - Jeanne Dupré.pdf")),
        "{files:#?}"
    );
    assert!(files.iter().any(|f| f.starts_with(folder) && f.ends_with(".eml")), "{files:#?}");
    assert!(files.iter().any(|f| f.starts_with("_quarantine/") && f.ends_with(".reason.txt")), "{files:#?}");

    // Again, and again after a restart: nothing is filed or sent twice.
    let before = world.files();
    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.fetched, sent.sent), (0, 0));
    drop(pipeline);
    let pipeline = world.pipeline();
    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.fetched, sent.sent), (0, 0));
    assert_eq!(world.files(), before);
    assert_eq!(courier.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn backlog_found_at_first_start_is_filed_but_not_answered() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() - Duration::days(30));
    let courier = FakeCourier::default();
    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.filed, report.replies_queued, sent.sent), (1, 0, 0));
    let rows = pipeline.store().messages().unwrap();
    assert_eq!(reply_code(&rows[0]), "backlog", "{rows:?}");

    // The setting turns it on.
    let world = World::new("[replies]\nacknowledge_backlog = true");
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() - Duration::days(30));
    let (_, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!(sent.sent, 1);
}

#[tokio::test]
async fn uidvalidity_reset_files_and_answers_nobody_twice() {
    let world = World::new("[replies]\nonce_per_days = 0");
    let pipeline = world.pipeline();
    let at = Utc::now() + Duration::seconds(1);
    let mut mailbox = FakeMailbox::with(vec![jeanne(1), jeanne(2)], at);
    let courier = FakeCourier::default();
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    let files = world.files();

    // The server renumbers everything (a restore, a migration): same messages, new UIDs.
    let mut renumbered = FakeMailbox::with(vec![jeanne(2), jeanne(1), jeanne(3)], at);
    renumbered.uid_validity = 8;
    let (report, sent) = once(&pipeline, &mut renumbered, &courier).await.unwrap();
    assert_eq!((report.fetched, report.duplicates, report.filed), (3, 2, 1));
    assert_eq!(sent.sent, 1, "only the new message is answered");
    assert_eq!(courier.sent.lock().unwrap().len(), 3);
    // The repeat application went into the same folder, as a new version of the CV.
    let new_files: Vec<_> = world.files().into_iter().filter(|f| !files.contains(f)).collect();
    assert!(new_files.iter().any(|f| f.ends_with("CV - Jeanne Dupré (3).pdf")), "{new_files:#?}");
}

#[tokio::test]
async fn transient_smtp_failure_waits_in_the_outbox_and_goes_out_once() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() + Duration::seconds(1));
    let courier = FakeCourier { transient_failures: Mutex::new(1), ..Default::default() };
    let (_, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((sent.sent, sent.retrying), (0, 1));
    let totals = pipeline.store().totals().unwrap();
    assert_eq!(totals.outbox_pending, 1);
    // Make the retry due now instead of waiting out the backoff.
    let due = pipeline.store().next_outbox_due().unwrap().unwrap();
    assert!(due > Utc::now(), "a retry is scheduled in the future");
    pipeline.store().mark_retry(1, "test: due now", Utc::now()).unwrap();
    let (_, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!(sent.sent, 1);
    let (_, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!(sent.sent, 0);
    assert_eq!(courier.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_reply_caught_mid_send_by_a_crash_is_never_sent_again() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() + Duration::seconds(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    // File and queue, but "crash" (stop) before the sender runs: claim it by hand as a sender would.
    pipeline.pass(&mut mailbox, &Quiet, &stop_rx).await.unwrap();
    assert!(pipeline.store().claim(1, Utc::now()).unwrap());
    drop(stop_tx);
    drop(pipeline);

    let ledger = Store::open(&world.cfg.storage.state_path).unwrap();
    assert_eq!(ledger.recover_interrupted().unwrap(), 1);
    let pipeline = Pipeline::new(&world.cfg, Replier::new(&world.cfg).unwrap(), ledger);
    let courier = FakeCourier::default();
    let (_, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!(sent.sent, 0);
    assert_eq!(pipeline.store().totals().unwrap().outbox_uncertain, 1);
    let _ = world.dir.path();
}

#[tokio::test]
async fn oversized_messages_are_quarantined_without_being_downloaded() {
    let world = World::new("[limits]\nmax_message_bytes = 500");
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() + Duration::seconds(1));
    let courier = FakeCourier::default();
    let (report, _) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.quarantined, report.filed), (1, 0));
    assert!(mailbox.fetched_uids.is_empty(), "{:?}", mailbox.fetched_uids);
    let files = world.files();
    assert!(files.iter().all(|f| !f.ends_with(".eml")), "nothing downloaded, so no .eml: {files:?}");
    assert!(files.iter().any(|f| f.ends_with(".reason.txt")));
}

fn from_person(
    name: &str,
    addr: &str,
    subject: &str,
    id: &str,
    body: &str,
    attachments: &[common::Attachment],
) -> Vec<u8> {
    application_eml(
        &format!("{name} <{addr}>"),
        "contact@example.test",
        subject,
        id,
        &[("Return-Path", &format!("<{addr}>"))],
        body,
        attachments,
    )
}

#[tokio::test]
async fn each_state_gets_its_own_reply_in_the_right_language() {
    let world = World::new("[replies]\nonce_per_days = 0");
    let pipeline = world.pipeline();
    let cv = pdf("cv");
    let lm = pdf("lm");
    let messages = vec![
        from_person(
            "Ana Lopes",
            "ana@example.test",
            "Candidature stage",
            "k1@x",
            "Bonjour",
            &[("CV.pdf", "application/pdf", &cv), ("LM.pdf", "application/pdf", &lm)],
        ),
        from_person(
            "Ben Roy",
            "ben@example.test",
            "Candidature stage",
            "k2@x",
            "Bonjour",
            &[("Lettre.pdf", "application/pdf", &lm)],
        ),
        from_person(
            "Cléa Roux",
            "clea@example.test",
            "Candidature stage",
            "k3@x",
            "Bonjour",
            &[("CV.pdf", "application/pdf", &cv)],
        ),
        from_person("Dan Petit", "dan@example.test", "Candidature stage", "k4@x", "Bonjour, je postule.", &[]),
        from_person(
            "Eve Stone",
            "eve@example.test",
            "Service design internship",
            "k5@x",
            "Hello",
            &[("Resume.pdf", "application/pdf", &cv), ("Cover letter.pdf", "application/pdf", &lm)],
        ),
        // Ana again: a repeat, and her file was already complete.
        from_person(
            "Ana Lopes",
            "ana@example.test",
            "Candidature stage (CV à jour)",
            "k6@x",
            "Bonjour",
            &[("CV 2.pdf", "application/pdf", &pdf("cv2"))],
        ),
    ];
    let mut mailbox = FakeMailbox::with(messages, Utc::now() + Duration::seconds(1));
    let courier = FakeCourier::default();
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    let sent = courier.sent.lock().unwrap().clone();
    let kinds: Vec<(&str, &str)> = sent.iter().map(|m| (m.to.as_str(), m.kind.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            ("ana@example.test", "complete"),
            ("ben@example.test", "missing_cv"),
            ("clea@example.test", "missing_letter"),
            ("dan@example.test", "no_documents"),
            ("eve@example.test", "complete"),
            ("ana@example.test", "repeat"),
        ]
    );
    assert!(sent[1].subject.contains("il manque votre CV"), "{}", sent[1].subject);
    assert!(sent[1].text.contains("Bonjour Ben,"), "{}", sent[1].text);
    assert!(sent[4].subject.starts_with("Application received"), "English posting, English reply: {}", sent[4].subject);
    assert!(sent[4].text.starts_with("Hello Eve,"), "{}", sent[4].text);
    assert!(sent[5].text.contains("mis à jour") && sent[5].text.contains("maintenant complet"), "{}", sent[5].text);
    // The HTML part says the same, escaped.
    assert!(sent[1].html.as_deref().unwrap().contains("<p>Bonjour Ben,</p>"));
    assert!(
        sent[0].text.contains("CV (PDF, ") && sent[0].text.contains("(Europe/Paris)")
            || sent[0].text.contains("(CET)")
            || sent[0].text.contains("(CEST)"),
        "{}",
        sent[0].text
    );
}

#[tokio::test]
async fn a_closed_posting_says_so() {
    let world = World::new("");
    let mut cfg = world.cfg.clone();
    cfg.postings[0].closing_date = Some(chrono::NaiveDate::from_ymd_opt(2020, 9, 30).unwrap());
    let pipeline = Pipeline::new(&cfg, Replier::new(&cfg).unwrap(), Store::open(&cfg.storage.state_path).unwrap());
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() + Duration::seconds(1));
    let courier = FakeCourier::default();
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    let sent = courier.sent.lock().unwrap().clone();
    assert_eq!(sent[0].kind.as_str(), "closed");
    assert!(sent[0].text.contains("close depuis le 30/09/2020"), "{}", sent[0].text);
}

#[tokio::test]
async fn one_reply_per_address_per_window_except_to_confirm_a_completed_file() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let courier = FakeCourier::default();
    let at = Utc::now() + Duration::seconds(1);
    let cv = pdf("cv");
    let lm = pdf("lm");
    let messages = vec![
        // CV only: we ask for the letter.
        from_person(
            "Jeanne Dupré",
            "jeanne@example.test",
            "Candidature stage",
            "w1@x",
            "Bonjour",
            &[("CV.pdf", "application/pdf", &cv)],
        ),
        // A nudge with nothing new inside the window: no second reply.
        from_person("Jeanne Dupré", "jeanne@example.test", "Re: Candidature", "w2@x", "Avez-vous reçu mon CV ?", &[]),
        // The letter: the file is complete, and we say so even within the window.
        from_person(
            "Jeanne Dupré",
            "jeanne@example.test",
            "Re: Candidature",
            "w3@x",
            "Voici ma lettre.",
            &[("Lettre de motivation.pdf", "application/pdf", &lm)],
        ),
        // Anything after that, within the window: silence.
        from_person("Jeanne Dupré", "jeanne@example.test", "Re: Candidature", "w4@x", "Merci !", &[]),
    ];
    let mut mailbox = FakeMailbox::with(messages, at);
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    let kinds: Vec<&str> = courier.sent.lock().unwrap().iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, vec!["missing_letter", "repeat"]);
    let rows = pipeline.store().messages().unwrap();
    assert_eq!(reply_code(&rows[1]), "already_answered", "{rows:?}");
    assert_eq!(reply_code(&rows[3]), "already_answered", "{rows:?}");
}

#[tokio::test]
async fn the_hourly_cap_holds_across_a_restart() {
    let world = World::new("[replies]\nmax_per_hour = 2");
    let courier = FakeCourier::default();
    let at = Utc::now() + Duration::seconds(1);
    let person = |i: u32| {
        from_person(
            &format!("P{i} Test"),
            &format!("p{i}@example.test"),
            "Candidature stage",
            &format!("cap{i}@x"),
            "Bonjour",
            &[("CV.pdf", "application/pdf", &pdf(&format!("cv{i}")))],
        )
    };
    {
        let pipeline = world.pipeline();
        let mut mailbox = FakeMailbox::with(vec![person(1), person(2), person(3)], at);
        let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
        assert_eq!((report.replies_queued, report.replies_skipped, sent.sent), (2, 1, 2));
        let rows = pipeline.store().messages().unwrap();
        assert_eq!(reply_code(&rows[2]), "hourly_cap", "{rows:?}");
    }
    // A restart does not reset the count: it lives in the store.
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(vec![person(1), person(2), person(3), person(4)], at);
    let (report, _) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.filed, report.replies_queued, report.replies_skipped), (1, 0, 1));
    assert_eq!(courier.sent.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_bilingual_posting_answers_in_the_candidates_language() {
    let world = World::new("");
    let mut cfg = world.cfg.clone();
    cfg.postings[1].language = PostingLang::Auto;
    let pipeline = Pipeline::new(&cfg, Replier::new(&cfg).unwrap(), Store::open(&cfg.storage.state_path).unwrap());
    let cv = pdf("cv");
    let messages = vec![
        from_person(
            "Eve Stone",
            "eve@example.test",
            "Application for the design internship",
            "l1@x",
            "Hello",
            &[("Resume.pdf", "application/pdf", &cv)],
        ),
        from_person(
            "Léa Morel",
            "lea@example.test",
            "Candidature pour le design internship",
            "l2@x",
            "Bonjour",
            &[("CV.pdf", "application/pdf", &cv)],
        ),
    ];
    let mut mailbox = FakeMailbox::with(messages, Utc::now() + Duration::seconds(1));
    let courier = FakeCourier::default();
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    let sent = courier.sent.lock().unwrap().clone();
    assert!(sent[0].text.starts_with("Hello Eve"), "{}", sent[0].text);
    assert!(sent[1].text.starts_with("Bonjour Léa"), "{}", sent[1].text);
}

fn applicant(name: &str, address: &str) -> Vec<u8> {
    application_eml(
        &format!("{name} <{address}>"),
        "contact@example.test",
        "Candidature stage",
        &format!("{address}.1@example.test"),
        &[("Return-Path", &format!("<{address}>"))],
        "Bonjour, veuillez trouver ci-joint mon CV.",
        &[("CV.pdf", "application/pdf", &pdf(name)), ("Lettre de motivation.pdf", "application/pdf", &pdf("lm"))],
    )
}

#[tokio::test]
async fn a_message_that_can_never_be_filed_is_set_aside_and_the_rest_go_on() {
    let world = World::new("");
    let pipeline = world.pipeline();
    // Something in the way where Bob's folder goes: filing him can never work, whatever is retried.
    let posting = world.cfg.storage.data_dir.join("stage-gestion-projet");
    std::fs::create_dir_all(&posting).unwrap();
    let bob_hash = &mailroom::understand::sha256_hex(b"bob@example.test")[..8];
    std::fs::write(posting.join(format!("Durand-Bob--{bob_hash}")), b"not a folder").unwrap();

    let at = Utc::now() + Duration::seconds(1);
    let mut mailbox = FakeMailbox::with(
        vec![
            applicant("Alice Martin", "alice@example.test"),
            applicant("Bob Durand", "bob@example.test"),
            applicant("Carol Leroy", "carol@example.test"),
        ],
        at,
    );
    let courier = FakeCourier::default();
    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.fetched, report.filed, report.quarantined), (3, 2, 1));
    assert_eq!(sent.sent, 2, "Alice and Carol are answered; Bob is not");
    let rows = pipeline.store().messages().unwrap();
    let outcomes: Vec<(u32, &str)> = rows.iter().map(|(uid, outcome, _)| (*uid, outcome.as_str())).collect();
    assert_eq!(outcomes, [(1, "filed"), (2, "quarantined"), (3, "filed")]);
    let files = world.files();
    assert!(files.iter().any(|f| f.contains("Leroy-Carol--")), "{files:#?}");
    let reason = files.iter().find(|f| f.starts_with("_quarantine/") && f.ends_with(".reason.txt")).unwrap();
    let text = std::fs::read_to_string(world.cfg.storage.data_dir.join(reason)).unwrap();
    assert!(text.contains("code: unfileable"), "{text}");
    // Nothing of Bob's was left half-filed, and the next pass does not try him again.
    assert!(!files.iter().any(|f| f.contains("CV - Bob Durand")), "{files:#?}");
    let (report, _) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!(report.fetched, 0);
}

/// The same raw message as a server that received it later shows it: its own `Received` and
/// `Delivered-To` on top (a move to another server, a restore, a UIDVALIDITY reset).
fn redelivered(raw: &[u8]) -> Vec<u8> {
    let mut out = b"Delivered-To: contact@example.test\r\nReceived: from mx2.example.test (mx2.example.test [192.0.2.7])\r\n\tby imap2.example.test with LMTP id 7f3a; Tue, 24 Nov 2026 08:00:00 +0100\r\n".to_vec();
    out.extend_from_slice(raw);
    out
}

#[tokio::test]
async fn distinct_messages_sharing_a_message_id_are_all_kept() {
    let world = World::new("[replies]\nonce_per_days = 0");
    let pipeline = world.pipeline();
    let courier = FakeCourier::default();
    let at = Utc::now() + Duration::seconds(1);
    // A web form and an old mailer that stamp every message with the same id.
    let form_id = "1@localhost";
    let alice = from_person(
        "Alice Martin",
        "alice@example.test",
        "Candidature stage",
        form_id,
        "Bonjour",
        &[("CV.pdf", "application/pdf", &pdf("alice cv"))],
    );
    let bob = from_person(
        "Bob Durand",
        "bob@example.test",
        "Candidature stage",
        form_id,
        "Bonjour",
        &[("CV.pdf", "application/pdf", &pdf("bob cv"))],
    );
    // One person's two applications (two postings, two CVs), sent by a client that reuses its id.
    let jeanne_stage = from_person(
        "Jeanne Dupré",
        "jeanne@example.test",
        "Candidature stage",
        "reused.42@laptop.local",
        "Bonjour",
        &[("CV.pdf", "application/pdf", &pdf("jeanne cv fr"))],
    );
    let jeanne_design = from_person(
        "Jeanne Dupré",
        "jeanne@example.test",
        "Service design internship",
        "reused.42@laptop.local",
        "Hello",
        &[("Resume.pdf", "application/pdf", &pdf("jeanne cv en"))],
    );
    // List software that reuses the id of every issue of its newsletter.
    let issue = |n: u32| {
        application_eml(
            "Jobs Weekly <news@jobs.example.test>",
            "contact@example.test",
            &format!("Jobs Weekly #{n}"),
            "weekly@jobs.example.test",
            &[("Return-Path", "<bounces@jobs.example.test>"), ("List-Id", "<weekly.jobs.example.test>")],
            &format!("Issue {n}: new offers."),
            &[],
        )
    };
    let mut mailbox = FakeMailbox::with(
        vec![alice.clone(), bob.clone(), jeanne_stage.clone(), jeanne_design.clone(), issue(1), issue(2)],
        at,
    );
    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.fetched, report.filed, report.quarantined, report.duplicates), (6, 4, 2, 0), "{report:?}");
    assert_eq!(sent.sent, 4);

    // The same messages seen again after a UIDVALIDITY reset, re-delivered with the new
    // server's headers on top, and once more in the same batch: recognised, not filed again.
    let mut moved = FakeMailbox::with(
        vec![redelivered(&alice), redelivered(&bob), redelivered(&jeanne_design), jeanne_design.clone()],
        at,
    );
    moved.uid_validity = 99;
    let (report, sent) = once(&pipeline, &mut moved, &courier).await.unwrap();
    assert_eq!((report.fetched, report.filed, report.duplicates), (4, 0, 4), "{report:?}");
    assert_eq!(sent.sent, 0);
    assert_eq!(courier.sent.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn one_address_is_one_folder_whatever_name_it_signs_with() {
    let world = World::new("[replies]\nonce_per_days = 0");
    let courier = FakeCourier::default();
    let at = Utc::now() + Duration::seconds(1);
    let cv = pdf("cv");
    let lm = pdf("lm");
    {
        let pipeline = world.pipeline();
        let mut mailbox = FakeMailbox::with(
            vec![
                from_person(
                    "Jeanne",
                    "jeanne.d@example.test",
                    "Candidature stage",
                    "f1@x",
                    "Bonjour",
                    &[("CV.pdf", "application/pdf", &cv)],
                ),
                // The same address, now with her full name, in the same batch.
                from_person(
                    "Jeanne Dupré",
                    "jeanne.d@example.test",
                    "Candidature stage",
                    "f2@x",
                    "Bonjour",
                    &[("Lettre de motivation.pdf", "application/pdf", &lm)],
                ),
                // Someone else with the same name: a folder of her own.
                from_person(
                    "Jeanne Dupré",
                    "j.dupre@example.test",
                    "Candidature stage",
                    "f3@x",
                    "Bonjour",
                    &[("CV.pdf", "application/pdf", &pdf("another cv"))],
                ),
            ],
            at,
        );
        once(&pipeline, &mut mailbox, &courier).await.unwrap();
    }
    // After a restart, written another way again.
    let pipeline = world.pipeline();
    let mut mailbox = FakeMailbox::with(
        vec![from_person(
            "DUPRÉ Jeanne",
            "Jeanne.D@Example.TEST",
            "Candidature stage",
            "f4@x",
            "Bonjour",
            &[("CV 2026.pdf", "application/pdf", &pdf("cv 2026"))],
        )],
        at,
    );
    mailbox.uid_validity = 8;
    once(&pipeline, &mut mailbox, &courier).await.unwrap();

    let folders: std::collections::BTreeSet<String> = world
        .files()
        .iter()
        .filter(|f| f.ends_with("/metadata.json"))
        .map(|f| f.trim_end_matches("/metadata.json").to_owned())
        .collect();
    assert_eq!(folders.len(), 2, "one folder per address: {folders:#?}");
    let hers =
        folders.iter().find(|f| f.contains(&mailroom::understand::sha256_hex(b"jeanne.d@example.test")[..8])).unwrap();
    // Named once, readably, from the first application.
    assert!(hers.starts_with("stage-gestion-projet/Jeanne--"), "{hers}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.cfg.storage.data_dir.join(hers).join("metadata.json")).unwrap())
            .unwrap();
    let repeats: Vec<bool> =
        meta["applications"].as_array().unwrap().iter().map(|a| a["repeat"].as_bool().unwrap()).collect();
    assert_eq!(repeats, [false, true, true], "{meta:#}");
    let kinds: Vec<String> = courier.sent.lock().unwrap().iter().map(|m| format!("{} {}", m.to, m.kind)).collect();
    assert_eq!(
        kinds,
        [
            "jeanne.d@example.test missing_letter",
            "jeanne.d@example.test repeat",
            "j.dupre@example.test missing_letter",
            "jeanne.d@example.test repeat"
        ]
    );
}

#[tokio::test]
async fn the_acknowledgement_says_only_what_mailroom_controls() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let courier = FakeCourier::default();
    let bait = "Votre candidature est refusée, appelez le 08 99 00 00 00 ou payez sur http://evil.example/pay";
    let name = format!("{bait} ").repeat(2_000);
    let hostile = application_eml(
        &format!("\"{name}\" <target@example.test>"),
        "contact@example.test",
        &format!("Candidature stage – {bait}"),
        "hostile@x",
        &[("Return-Path", "<target@example.test>")],
        "Bonjour",
        &[
            ("CV http___evil.example_pay.pdf", "application/pdf", &pdf("cv")),
            (&format!("{bait}.pdf"), "application/pdf", &pdf("other")),
        ],
    );
    let fine = from_person(
        "Jeanne Dupré",
        "jeanne@example.test",
        "Candidature stage – merci de me rappeler au 06 00 00 00 00",
        "fine@x",
        "Bonjour",
        &[("CV_Jeanne_Dupre_2026.pdf", "application/pdf", &pdf("cv")), ("LM.pdf", "application/pdf", &pdf("lm"))],
    );
    let mut mailbox = FakeMailbox::with(vec![hostile, fine], Utc::now() + Duration::seconds(1));
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    // The hostile one first, whichever was answered first (its PDFs without text go through OCR).
    let mut sent = courier.sent.lock().unwrap().clone();
    sent.sort_by_key(|m| m.to != "target@example.test");
    assert_eq!(sent.len(), 2);
    for m in &sent {
        let all = format!("{}\n{:?}\n{}\n{}", m.subject, m.to_name, m.text, m.html.as_deref().unwrap_or_default());
        for word in ["refusée", "08 99", "evil", "http", "payez", "06 00", "rappeler", "CV_Jeanne", "LM.pdf", ".pdf"] {
            assert!(!all.contains(word), "{word:?} from the sender went out:\n{all:.2000}");
        }
        assert!(m.to_name.as_deref().is_none_or(|n| n.chars().count() <= 64), "{:?}", m.to_name);
    }
    assert!(sent[0].text.starts_with("Bonjour,\n"), "no name that looks like a name, no name: {}", sent[0].text);
    assert!(sent[0].html.as_deref().unwrap().contains("<p>Bonjour,</p>"));
    assert!(sent[1].text.starts_with("Bonjour Jeanne,\n"), "{}", sent[1].text);
    assert_eq!(sent[1].to_name.as_deref(), Some("Jeanne Dupré"));
    // Documents by kind and type, never by the sender's file name.
    assert!(sent[1].text.contains("CV (PDF, "), "{}", sent[1].text);
    assert!(sent[1].text.contains("lettre de motivation (PDF, "), "{}", sent[1].text);
    // A file whose name and text do not tell is a document to check (never by its name).
    assert!(sent[0].text.contains("document à vérifier (PDF, "), "{}", sent[0].text);
}

#[tokio::test]
async fn headers_copied_into_the_acknowledgement_are_bounded_and_valid() {
    let world = World::new("");
    let pipeline = world.pipeline();
    let courier = FakeCourier::default();
    let huge_id = format!("{}@example.test", "x".repeat(100_000));
    let references: String =
        (0..20_000).map(|i| format!("<r{i}@lists.example.test>")).collect::<Vec<_>>().join("\r\n ");
    let long = application_eml(
        "Jeanne Dupré <jeanne@example.test>",
        "contact@example.test",
        "Candidature stage",
        &huge_id,
        &[("Return-Path", "<jeanne@example.test>"), ("References", &references)],
        "Bonjour",
        &[("CV.pdf", "application/pdf", &pdf("cv"))],
    );
    let mut mailbox = FakeMailbox::with(vec![long], Utc::now() + Duration::seconds(1));
    once(&pipeline, &mut mailbox, &courier).await.unwrap();
    let sent = courier.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].in_reply_to, None, "an id of 100 KB is not a Message-ID");
    assert!(sent[0].references.len() <= 10, "{} references", sent[0].references.len());
    assert_eq!(sent[0].references.last().map(String::as_str), Some("r19999@lists.example.test"));
}

#[tokio::test]
async fn only_what_looks_like_an_application_is_acknowledged() {
    let posting = "\n[[postings]]\nslug = \"alternance\"\ntitle = \"Alternance\"\nlanguage = \"fr\"\naddresses = [\"alternance@example.test\"]\n";
    let world = World::new(&format!("[replies]\nonce_per_days = 0\n{posting}"));
    let pipeline = world.pipeline();
    let courier = FakeCourier::default();
    let person = |n: u32, subject: &str, body: &str, extra: &[(&str, &str)], attachments: &[common::Attachment]| {
        let addr = format!("p{n}@example.test");
        let mut headers = vec![("Return-Path", format!("<{addr}>"))];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        application_eml(
            &format!("P{n} Test <{addr}>"),
            "contact@example.test",
            subject,
            &format!("b{n}@x"),
            &headers,
            body,
            attachments,
        )
    };
    let cv = pdf("cv");
    let to_posting = application_eml(
        "P7 Test <p7@example.test>",
        "alternance@example.test",
        "Bonjour",
        "b7@x",
        &[("Return-Path", "<p7@example.test>")],
        "Bonjour, pouvez-vous me rappeler ?",
        &[],
    );
    let messages = vec![
        // 1. Spam a filter marked, with nothing attached: set aside, unanswered.
        person(
            1,
            "Gagnez un iPhone",
            "Cliquez ici",
            &[("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, score=12.1")],
            &[],
        ),
        // 2. Spam a filter marked, with a "CV": filed, unanswered.
        person(
            2,
            "CV",
            "see attached",
            &[("X-MS-Exchange-Organization-SCL", "9")],
            &[("CV.pdf", "application/pdf", &cv)],
        ),
        // 3. A newsletter without list headers: filed, unanswered.
        person(3, "Nos promotions de novembre", "Découvrez nos meilleures offres du mois.", &[], &[]),
        // 4. A question that is not an application.
        person(4, "Question", "Bonjour, quels sont vos horaires d'ouverture ?", &[], &[]),
        // 5. An application whose documents were forgotten: answered (it asks for them).
        person(5, "Ma candidature", "Bonjour, je souhaite postuler, vous trouverez ci-joint mon CV.", &[], &[]),
        // 6. Documents and no words at all: answered.
        person(6, "Hello", "", &[], &[("scan0001.pdf", "application/pdf", &cv)]),
        // 7. Sent to a posting's own address: answered.
        to_posting,
        // 8. English words about applying.
        person(8, "Internship", "Hello, I would like to apply for the internship.", &[], &[]),
    ];
    let mut mailbox = FakeMailbox::with(messages, Utc::now() + Duration::seconds(1));
    let (report, _) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!(report.quarantined, 1, "{report:?}");
    // In any order: a message whose PDF has no text is read by OCR aside, and answered when read.
    let mut answered: Vec<String> = courier.sent.lock().unwrap().iter().map(|m| m.to.clone()).collect();
    answered.sort();
    assert_eq!(answered, ["p5@example.test", "p6@example.test", "p7@example.test", "p8@example.test"]);
    let mut rows = pipeline.store().messages().unwrap();
    rows.sort_by_key(|r| r.0);
    let codes: Vec<&str> = rows.iter().map(reply_code).collect();
    assert_eq!(
        codes,
        ["none", "automated", "not_an_application", "not_an_application", "queued", "queued", "queued", "queued"],
        "{rows:?}"
    );
}

/// A fake antivirus: infected when the document holds the marker; or a clamd that cannot be reached.
fn fake_antivirus(reachable: bool) -> std::sync::Arc<dyn mailroom::antivirus::Scanner> {
    use mailroom::antivirus::{AvError, ScanResult};
    std::sync::Arc::new(move |bytes: &[u8]| {
        if !reachable {
            let error = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
            return Err(AvError::Unreachable { address: "fake".into(), error });
        }
        Ok(if bytes.windows(5).any(|w| w == b"VIRUS") {
            ScanResult::Infected { signature: "Fake.Test.Virus".into() }
        } else {
            ScanResult::Clean
        })
    })
}

#[tokio::test]
async fn an_infected_application_is_set_aside_unanswered_and_the_clean_ones_are_filed() {
    use mailroom::config::OnUnreachable;
    let world = World::new("");
    let pipeline = world.pipeline().with_scanner(fake_antivirus(true), OnUnreachable::FailClosed);
    let infected = application_eml(
        "Bob Durand <bob@example.test>",
        "contact@example.test",
        "Candidature stage",
        "bob.1@example.test",
        &[("Return-Path", "<bob@example.test>")],
        "Bonjour, veuillez trouver ci-joint mon CV.",
        &[("CV.pdf", "application/pdf", &pdf("VIRUS")), ("Lettre de motivation.pdf", "application/pdf", &pdf("lm"))],
    );
    let mut mailbox = FakeMailbox::with(
        vec![applicant("Alice Martin", "alice@example.test"), infected],
        Utc::now() + Duration::seconds(1),
    );
    let courier = FakeCourier::default();
    let (report, sent) = once(&pipeline, &mut mailbox, &courier).await.unwrap();
    assert_eq!((report.filed, report.quarantined), (1, 1), "{report:?}");
    assert_eq!(sent.sent, 1, "only Alice is answered");
    let files = world.files();
    let reason = files.iter().find(|f| f.starts_with("_quarantine/") && f.ends_with(".reason.txt")).unwrap();
    let text = std::fs::read_to_string(world.cfg.storage.data_dir.join(reason)).unwrap();
    assert!(text.contains("code: infected") && text.contains("Fake.Test.Virus"), "{text}");
    assert!(!files.iter().any(|f| f.contains("Durand-Bob")), "nothing of Bob's was filed: {files:#?}");
}

#[tokio::test]
async fn an_unreachable_antivirus_holds_messages_back_or_lets_them_through_as_configured() {
    use mailroom::config::OnUnreachable;
    // fail_closed: nothing is filed unscanned; the pass fails, and a later pass files the message.
    let world = World::new("");
    let mut mailbox = FakeMailbox::with(vec![jeanne(1)], Utc::now() + Duration::seconds(1));
    let courier = FakeCourier::default();
    let closed = world.pipeline().with_scanner(fake_antivirus(false), OnUnreachable::FailClosed);
    let err = once(&closed, &mut mailbox, &courier).await.unwrap_err();
    assert!(matches!(err, PipelineError::Antivirus { .. }), "{err}");
    let data = &world.cfg.storage.data_dir;
    assert!(!data.exists() || world.files().is_empty(), "nothing filed unscanned");
    let problems = closed.store().problems().unwrap();
    assert!(problems.iter().any(|p| p.label == "antivirus unreachable"), "{problems:?}");
    drop(closed);
    let back = world.pipeline().with_scanner(fake_antivirus(true), OnUnreachable::FailClosed);
    let (report, _) = once(&back, &mut mailbox, &courier).await.unwrap();
    assert_eq!(report.filed, 1);
    assert!(back.store().problems().unwrap().iter().all(|p| p.label != "antivirus unreachable"));
    drop(back);
    // fail_open: filed, and said.
    let world = World::new("");
    let open = world.pipeline().with_scanner(fake_antivirus(false), OnUnreachable::FailOpen);
    let mut mailbox = FakeMailbox::with(vec![jeanne(2)], Utc::now() + Duration::seconds(1));
    let (report, _) = once(&open, &mut mailbox, &courier).await.unwrap();
    assert_eq!(report.filed, 1);
    assert!(open.store().problems().unwrap().iter().any(|p| p.message.contains("fail_open")));
}

/// A reader whose OCR waits for the test ([`common::held_tesseract`]).
fn held_ocr(dir: &std::path::Path) -> (mailroom::understand::extract::TextReader, std::path::PathBuf) {
    let (program, release) = common::held_tesseract(dir);
    let reader = mailroom::understand::extract::TextReader::locate().with_ocr(Ok(common::ocr_tools(program)));
    assert!(reader.program().is_some(), "the mailroom binary (the caged child) is built beside the tests");
    (reader, release)
}

/// An application whose one attachment is a photographed page under a name that tells nothing:
/// only OCR can say what it is.
fn scanned_application() -> Vec<u8> {
    let photo =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gen/real/scan-lo-cv-fr.jpg")).unwrap();
    application_eml(
        "Camille Martin <camille.martin@example.test>",
        "contact@example.test",
        "Candidature stage",
        "camille-1@example.test",
        &[("Return-Path", "<camille.martin@example.test>")],
        "Bonjour, veuillez trouver ci-joint mon dossier.",
        &[("IMG_2041.jpg", "image/jpeg", &photo)],
    )
}

fn inbox() -> mailroom::store::MailboxKey {
    mailroom::store::MailboxKey { name: "contact@fake/INBOX".into(), uidvalidity: 7 }
}

/// Waits (deadline: 60 s) until the store holds exactly these UIDs.
async fn until_recorded(store: &Store, uids: &[u32]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut recorded: Vec<u32> = store.messages().unwrap().iter().map(|r| r.0).collect();
        recorded.sort_unstable();
        if recorded == uids {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "recorded {recorded:?}, waiting for {uids:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn applications_behind_a_scan_are_committed_while_it_is_read() {
    let world = World::new("");
    let (reader, release) = held_ocr(world.dir.path());
    let pipeline = world.pipeline().with_text_reader(reader);
    let mut mailbox = FakeMailbox::with(
        vec![scanned_application(), jeanne(1), applicant("Paul Morel", "paul.morel@example.test")],
        Utc::now() + Duration::seconds(1),
    );
    let store = pipeline.store().clone();
    let stop = never();
    let (report, ()) = tokio::join!(pipeline.pass(&mut mailbox, &Quiet, &stop), async {
        // The scan (UID 1) cannot have been read: its OCR waits for `release`. UIDs 2 and 3 are
        // committed all the same, and the high-water mark stays below the scan.
        until_recorded(&store, &[2, 3]).await;
        assert_eq!(store.high_water(&inbox()).unwrap(), 0, "the mark never passes a message still being read");
        std::fs::write(&release, b"").unwrap();
    });
    let report = report.unwrap();
    assert_eq!((report.fetched, report.filed, report.quarantined, report.duplicates), (3, 3, 0, 0));
    let rows = store.messages().unwrap();
    let mut filed: Vec<u32> = rows.iter().filter(|r| r.1 == "filed").map(|r| r.0).collect();
    filed.sort_unstable();
    assert_eq!(filed, vec![1, 2, 3], "each filed once: {rows:?}");
    assert_eq!(store.high_water(&inbox()).unwrap(), 3);
    let files = world.files();
    assert!(files.iter().any(|f| f.ends_with(".jpg")), "the scan is in its folder: {files:?}");
    let read_by_ocr = files
        .iter()
        .filter(|f| f.ends_with("metadata.json"))
        .any(|f| std::fs::read_to_string(world.cfg.storage.data_dir.join(f)).unwrap().contains("OCR (fra)"));
    assert!(read_by_ocr, "the scan was read by OCR: {files:?}");
}

#[tokio::test]
async fn a_crash_while_a_scan_is_read_replays_only_the_scan() {
    let world = World::new("");
    let (reader, release) = held_ocr(world.dir.path());
    let pipeline = world.pipeline().with_text_reader(reader.clone());
    let mut mailbox = FakeMailbox::with(
        vec![scanned_application(), jeanne(1), applicant("Paul Morel", "paul.morel@example.test")],
        Utc::now() + Duration::seconds(1),
    );
    let store = pipeline.store().clone();
    let stop = never();
    tokio::select! {
        r = pipeline.pass(&mut mailbox, &Quiet, &stop) => panic!("the pass ended while its scan was held: {r:?}"),
        () = until_recorded(&store, &[2, 3]) => {}
    }
    // The crash: the pass is dropped while its scan is read; nothing else runs of it.
    drop(pipeline);
    assert_eq!(store.high_water(&inbox()).unwrap(), 0);
    drop(store);

    std::fs::write(&release, b"").unwrap();
    // The dropped pass's last task lets go of the store once the lane is closed (a process that
    // died would let go at once).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ledger = loop {
        match Store::open(&world.cfg.storage.state_path) {
            Ok(store) => break store,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(matches!(e, mailroom::store::StoreError::Locked(_)), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let pipeline = Pipeline::new(&world.cfg, Replier::new(&world.cfg).unwrap(), ledger).with_text_reader(reader);
    let store = pipeline.store().clone();
    mailbox.fetched_uids.clear();
    let report = pipeline.pass(&mut mailbox, &Quiet, &stop).await.unwrap();
    assert_eq!(mailbox.fetched_uids, vec![1], "only the scan is downloaded again");
    assert_eq!((report.fetched, report.filed, report.duplicates), (1, 1, 0));
    let mut rows: Vec<(u32, String)> = store.messages().unwrap().into_iter().map(|r| (r.0, r.1)).collect();
    rows.sort();
    let filed = |uid: u32| (uid, "filed".to_owned());
    assert_eq!(rows, vec![filed(1), filed(2), filed(3)], "each message filed exactly once");
    assert_eq!(store.high_water(&inbox()).unwrap(), 3);
    // Nothing is filed twice on disk either: one .eml per message.
    assert_eq!(world.files().iter().filter(|f| f.ends_with(".eml")).count(), 3, "{:?}", world.files());
}

#[tokio::test]
async fn a_later_message_of_the_same_sender_waits_behind_their_scan() {
    let world = World::new("");
    let (reader, release) = held_ocr(world.dir.path());
    let pipeline = world.pipeline().with_text_reader(reader);
    // Camille's scanned CV, then her cover letter in a message of its own, then Paul.
    let letter = application_eml(
        "Camille Martin <camille.martin@example.test>",
        "contact@example.test",
        "Candidature stage : lettre de motivation",
        "camille-2@example.test",
        &[("Return-Path", "<camille.martin@example.test>")],
        "Bonjour, voici ma lettre de motivation.",
        &[("Lettre de motivation.pdf", "application/pdf", &pdf("lm"))],
    );
    let mut mailbox = FakeMailbox::with(
        vec![scanned_application(), letter, applicant("Paul Morel", "paul.morel@example.test")],
        Utc::now() + Duration::seconds(1),
    );
    let store = pipeline.store().clone();
    let stop = never();
    let (report, ()) = tokio::join!(pipeline.pass(&mut mailbox, &Quiet, &stop), async {
        // Paul is not held up; Camille's letter is, behind her scan still being read.
        until_recorded(&store, &[3]).await;
        std::fs::write(&release, b"").unwrap();
    });
    let report = report.unwrap();
    assert_eq!((report.fetched, report.filed), (3, 3), "{report:?}");
    let order: Vec<u32> = store.messages().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(order, vec![3, 1, 2], "Camille's messages are recorded in the order she sent them");
    assert_eq!(store.high_water(&inbox()).unwrap(), 3);
}

#[tokio::test]
async fn mail_that_arrives_while_a_scan_is_read_is_filed_without_waiting_for_it() {
    let world = World::new("");
    let (reader, release) = held_ocr(world.dir.path());
    let pipeline = world.pipeline().with_text_reader(reader);
    let mut mailbox = FakeMailbox::with(vec![scanned_application()], Utc::now() + Duration::seconds(1));
    let arriving = std::sync::Arc::clone(&mailbox.arriving);
    let store = pipeline.store().clone();
    let stop = never();
    let (report, ()) = tokio::join!(pipeline.pass(&mut mailbox, &Quiet, &stop), async {
        arriving.lock().unwrap().push(applicant("Paul Morel", "paul.morel@example.test"));
        // The pass is still reading the scan (its OCR waits for `release`): Paul's application,
        // which came after the pass started, is listed and committed all the same.
        until_recorded(&store, &[2]).await;
        assert_eq!(store.high_water(&inbox()).unwrap(), 0, "the mark stays below the scan");
        std::fs::write(&release, b"").unwrap();
    });
    let report = report.unwrap();
    assert_eq!((report.fetched, report.filed), (2, 2), "{report:?}");
    assert_eq!(store.high_water(&inbox()).unwrap(), 2);
}
