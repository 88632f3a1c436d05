//! Pipeline tier: the real stages, store and filing on a temporary disk, with a fake mailbox and
//! a fake courier in place of the network. The end-to-end tier (tests/e2e.rs) repeats the main
//! paths on the real Dovecot and Postfix.

mod common;

use std::collections::BTreeMap;
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
    messages: BTreeMap<u32, (DateTime<Utc>, Vec<u8>)>,
    keywords: Vec<u32>,
    fetched_uids: Vec<u32>,
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
        Ok(self
            .messages
            .range(after + 1..)
            .map(|(uid, (at, m))| Envelope { uid: *uid, size: m.len() as u64, internal_date: Some(*at) })
            .collect())
    }
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<RawMessage>, MailboxError> {
        self.fetched_uids.extend_from_slice(uids);
        Ok(uids
            .iter()
            .filter_map(|u| {
                self.messages.get(u).map(|(at, m)| RawMessage { uid: *u, internal_date: Some(*at), raw: m.clone() })
            })
            .collect())
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
            return Err(SendError { retry: Retry::Transient, message: "421 try again later".into() });
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
