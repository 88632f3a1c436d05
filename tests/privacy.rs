//! Privacy on the pipeline tier: the real pipeline, store, filing and purge on a temporary disk,
//! with a fake mailbox (that can delete, move and search) and a fixed clock, so months pass
//! without sleeping. tests/privacy_e2e.rs repeats the main paths on the real Dovecot.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use mailroom::config::Config;
use mailroom::courier::{Courier, SendError};
use mailroom::digest::Digest;
use mailroom::mail::OutgoingMail;
use mailroom::mailbox::{Envelope, Mailbox, MailboxError, RawMessage, Selected, Wake};
use mailroom::pipeline::{Pipeline, PipelineError, Report};
use mailroom::privacy::{OtherCopies, PrivacyError, PurgeReport, Purger};
use mailroom::reply::Replier;
use mailroom::schedule::Clock;
use mailroom::service::Quiet;
use mailroom::store::{PrivacyStore, Store};
use tokio::sync::watch;

use common::{application_eml, pdf, write_config};

/// The server's side of a folder, shared by every session the test opens on it.
#[derive(Default)]
struct Server {
    uid_validity: u32,
    messages: common::FakeMessages,
    deleted: Vec<u32>,
    moved: Vec<(u32, String)>,
}

type Shared = Arc<Mutex<Server>>;

struct FakeMailbox(Shared);

const MAILBOX: &str = "contact@example.test@imap.invalid/INBOX";

impl Mailbox for FakeMailbox {
    fn name(&self) -> &str {
        MAILBOX
    }
    async fn select(&mut self) -> Result<Selected, MailboxError> {
        let s = self.0.lock().unwrap();
        Ok(Selected { uid_validity: s.uid_validity, exists: s.messages.len() as u32 })
    }
    async fn list_after(&mut self, after: u32) -> Result<Vec<Envelope>, MailboxError> {
        let s = self.0.lock().unwrap();
        Ok(common::envelopes_after(&s.messages, after))
    }
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<RawMessage>, MailboxError> {
        let s = self.0.lock().unwrap();
        Ok(common::raw_messages(&s.messages, uids))
    }
    async fn add_keyword(&mut self, _: &[u32], _: &str) -> Result<(), MailboxError> {
        Ok(())
    }
    async fn wait_for_change(&mut self, _: std::time::Duration) -> Result<Wake, MailboxError> {
        Ok(Wake::Timeout)
    }
    async fn logout(&mut self) {}
    async fn existing(&mut self, uids: &[u32]) -> Result<Vec<u32>, MailboxError> {
        let s = self.0.lock().unwrap();
        Ok(uids.iter().copied().filter(|u| s.messages.contains_key(u)).collect())
    }
    async fn search_message_id(&mut self, id: &str) -> Result<Vec<u32>, MailboxError> {
        let s = self.0.lock().unwrap();
        let header = format!("Message-ID: <{id}>");
        Ok(s.messages
            .iter()
            .filter(|(_, (_, m))| String::from_utf8_lossy(m).contains(&header))
            .map(|(u, _)| *u)
            .collect())
    }
    async fn delete(&mut self, uids: &[u32]) -> Result<(), MailboxError> {
        let mut s = self.0.lock().unwrap();
        for u in uids {
            if s.messages.remove(u).is_some() {
                s.deleted.push(*u);
            }
        }
        Ok(())
    }
    async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), MailboxError> {
        let mut s = self.0.lock().unwrap();
        for u in uids {
            if s.messages.remove(u).is_some() {
                s.moved.push((*u, folder.to_owned()));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct FakeCourier {
    sent: Mutex<Vec<OutgoingMail>>,
}

impl Courier for FakeCourier {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), SendError> {
        self.sent.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

struct Fixed(DateTime<Utc>);
impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn never() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    std::mem::forget(tx);
    rx
}

struct World {
    _dir: tempfile::TempDir,
    cfg: Config,
    server: Shared,
    pipeline: Pipeline<Store>,
}

impl World {
    fn new(extra: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let imap = "host = \"imap.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
        let smtp = "host = \"smtp.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
        let extra = format!("[replies]\nacknowledge_backlog = true\nonce_per_days = 0\n{extra}");
        let path = write_config(dir.path(), imap, smtp, &extra);
        let cfg = Config::load_with_env(&path, std::iter::empty()).unwrap();
        let store = Store::open(&cfg.storage.state_path).unwrap();
        let pipeline = Pipeline::new(&cfg, Replier::new(&cfg).unwrap(), store);
        let server = Arc::new(Mutex::new(Server { uid_validity: 7, ..Default::default() }));
        World { _dir: dir, cfg, server, pipeline }
    }

    fn store(&self) -> &Store {
        self.pipeline.store()
    }

    /// Puts a message in the folder with this arrival time; returns its UID.
    fn arrive(&self, raw: Vec<u8>, at: DateTime<Utc>) -> u32 {
        let mut s = self.server.lock().unwrap();
        let uid = s.messages.keys().last().copied().unwrap_or(0).max(s.deleted.iter().copied().max().unwrap_or(0)) + 1;
        s.messages.insert(uid, (at, raw));
        uid
    }

    async fn once(&self) -> Result<Report, PipelineError> {
        let mut mailbox = FakeMailbox(Arc::clone(&self.server));
        let courier = FakeCourier::default();
        mailroom::daemon::once(&self.pipeline, &mut mailbox, &courier, &Quiet, never()).await.map(|(r, _)| r)
    }

    fn purger(&self) -> Purger<Store> {
        Purger::new(&self.cfg, self.store().clone())
    }

    fn connect(&self) -> impl FnMut(String) -> std::future::Ready<Result<FakeMailbox, MailboxError>> + use<> {
        let server = Arc::clone(&self.server);
        move |_folder| std::future::ready(Ok(FakeMailbox(Arc::clone(&server))))
    }

    async fn purge(&self, now: DateTime<Utc>) -> PurgeReport {
        self.purge_with(self.purger(), now, &never()).await
    }

    async fn purge_with(&self, purger: Purger<Store>, now: DateTime<Utc>, stop: &watch::Receiver<bool>) -> PurgeReport {
        let lock = purger.lock(false).unwrap().expect("nobody else purges");
        purger.purge(&lock, self.connect(), "test", &Fixed(now), stop).await.unwrap()
    }

    async fn forget(&self, address: &str, now: DateTime<Utc>) -> Result<PurgeReport, PrivacyError> {
        let purger = self.purger();
        let lock = purger.lock(false).unwrap().unwrap();
        purger.forget(&lock, address, self.connect(), "test", &Fixed(now), &never()).await
    }

    fn files(&self) -> Vec<String> {
        common::files_under(&self.cfg.storage.data_dir)
    }

    fn folder_of(&self, address: &str) -> Option<String> {
        self.store().person(address).unwrap().map(|p| p.folders().remove(0))
    }

    fn sql_count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(&self.cfg.storage.state_path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

fn application(who: &str, name: &str, n: u32) -> Vec<u8> {
    application_eml(
        &format!("{name} <{who}>"),
        "contact@example.test",
        "Candidature stage",
        &format!("{}-{n}@example.test", who.split('@').next().unwrap()),
        &[("Return-Path", &format!("<{who}>"))],
        "Bonjour, veuillez trouver ci-joint mon CV et ma lettre de motivation.",
        &[
            ("CV.pdf", "application/pdf", &pdf(&format!("cv {who} {n}"))),
            ("Lettre de motivation.pdf", "application/pdf", &pdf(&format!("lm {who} {n}"))),
        ],
    )
}

fn robot() -> Vec<u8> {
    application_eml(
        "Jobs Digest <jobs@example.test>",
        "contact@example.test",
        "Weekly digest",
        "digest-1@example.test",
        &[("Return-Path", "<bounces@example.test>"), ("List-Id", "<jobs.example.test>")],
        "New offers this week.",
        &[],
    )
}

#[tokio::test]
async fn past_retention_goes_everywhere_and_a_newer_application_a_hold_or_consent_keep_a_person() {
    let w = World::new("");
    w.arrive(application("alice@example.test", "Alice Martin", 1), t("2026-01-05T09:00:00Z"));
    let bob = w.arrive(application("bob@example.test", "Bob Durand", 1), t("2026-01-10T09:00:00Z"));
    w.arrive(application("carol@example.test", "Carol Leroy", 1), t("2026-01-12T09:00:00Z"));
    w.arrive(application("dave@example.test", "Dave Smith", 1), t("2026-01-14T09:00:00Z"));
    // Alice wrote again two months later: her window runs from then.
    w.arrive(application("alice@example.test", "Alice Martin", 2), t("2026-03-05T09:00:00Z"));
    assert_eq!(w.once().await.unwrap().filed, 5);
    // The team's digest lists everyone: it names Bob too.
    let digest = Digest::new(&w.cfg).unwrap();
    assert!(digest.send_window(w.store(), t("2026-01-01T00:00:00Z"), Utc::now()).unwrap().is_some());
    let store = w.store();
    store.set_hold("carol@example.test", Some("dispute"), t("2026-02-01T00:00:00Z")).unwrap();
    store.set_consent("dave@example.test", Some(t("2026-02-01T00:00:00Z"))).unwrap();
    let bob_folder = w.folder_of("bob@example.test").unwrap();
    let kept: Vec<String> =
        ["alice", "carol", "dave"].iter().map(|p| w.folder_of(&format!("{p}@example.test")).unwrap()).collect();

    // Dry run first: says who, removes nothing.
    let now = t("2026-05-20T03:00:00Z");
    let plan = w.purger().plan(now).unwrap();
    assert_eq!(plan.people.iter().map(|(p, _)| p.address.as_str()).collect::<Vec<_>>(), ["bob@example.test"]);
    assert!(w.files().iter().any(|f| f.starts_with(&bob_folder)));

    let report = w.purge(now).await;
    assert_eq!((report.finished, report.unfinished, report.totals.people), (1, 0, 1), "{report:?}");
    assert_eq!((report.totals.messages, report.totals.documents, report.totals.mailbox_deleted), (1, 2, 1));
    assert_eq!(report.totals.digests, 1, "the digest that named Bob goes too");
    // Gone from the folder, the store and the mailbox.
    assert!(!w.files().iter().any(|f| f.starts_with(&bob_folder)), "{:#?}", w.files());
    assert!(store.person("bob@example.test").unwrap().is_none());
    assert!(store.acknowledgements_to("bob@example.test").unwrap().is_empty());
    assert_eq!(w.sql_count("SELECT count(*) FROM messages WHERE candidate = 'bob@example.test'"), 0);
    assert_eq!(w.sql_count("SELECT count(*) FROM outbox WHERE instr(mail, 'bob@example.test') > 0"), 0);
    assert_eq!(w.server.lock().unwrap().deleted, vec![bob]);
    // Everyone else stays, files and mail.
    for folder in &kept {
        assert!(w.files().iter().any(|f| f.starts_with(folder.as_str())), "{folder} kept");
    }
    assert_eq!(w.server.lock().unwrap().messages.len(), 4);
    // The audit trail has the counts and no address.
    let audit = store.audit_since(DateTime::<Utc>::MIN_UTC).unwrap();
    let purge = audit.iter().find(|a| a.action == "purge").unwrap();
    assert_eq!(purge.counts["people"], 1);
    assert!(!serde_json::to_string(&audit).unwrap().contains("example.test"));

    // Twice is harmless.
    let again = w.purge(now + Duration::hours(1)).await;
    assert_eq!((again.totals.people, again.totals.mailbox_deleted, again.unfinished), (0, 0, 0));

    // The digest says what was purged (counts) and who goes next (Alice, on 2026-06-05).
    let built = digest.build(store, now - Duration::days(1), t("2026-05-30T08:00:00Z")).unwrap();
    assert!(built.text.contains("Données personnelles"), "{}", built.text);
    assert!(built.text.contains("Supprimé pendant la période"), "{}", built.text);
    assert!(built.text.contains("1 candidat·e,"), "{}", built.text);
    assert!(built.text.contains("Alice Martin <alice@example.test>"), "{}", built.text);
    assert!(!built.text.contains("bob@example.test"), "{}", built.text);

    // Released, Carol goes at the next purge; Dave's consent keeps him for 24 months.
    store.set_hold("carol@example.test", None, now).unwrap();
    let report = w.purge(now + Duration::days(1)).await;
    assert_eq!(report.totals.people, 1);
    assert!(store.person("carol@example.test").unwrap().is_none());
    assert!(store.person("dave@example.test").unwrap().is_some());
}

/// What an interrupted purge leaves, and how it ends: stopped between two steps (as a SIGTERM
/// stops it, and as a crash leaves it), the pipeline holds back the person's new mail, and the
/// next purge takes the recorded one up where it stopped.
#[tokio::test]
async fn an_interrupted_purge_holds_the_persons_mail_back_and_is_finished_by_the_next() {
    struct StopAfterCopies {
        calls: Mutex<Vec<String>>,
        stop: watch::Sender<bool>,
    }
    impl OtherCopies for StopAfterCopies {
        fn remove_copies_of(&self, folder: &str) -> Result<u64, String> {
            self.calls.lock().unwrap().push(folder.to_owned());
            let _ = self.stop.send(true);
            Ok(1)
        }
    }
    let w = World::new("");
    w.arrive(application("bob@example.test", "Bob Durand", 1), t("2026-01-10T09:00:00Z"));
    w.once().await.unwrap();
    let folder = w.folder_of("bob@example.test").unwrap();
    let (tx, rx) = watch::channel(false);
    let copies = Arc::new(StopAfterCopies { calls: Mutex::new(Vec::new()), stop: tx });
    let purger = w.purger().with_other_copies(copies.clone());
    let now = t("2026-05-20T03:00:00Z");
    let report = w.purge_with(purger, now, &rx).await;
    assert_eq!((report.finished, report.unfinished), (0, 1), "{report:?}");
    // The folder and its other copies went; the rows are still there.
    assert_eq!(*copies.calls.lock().unwrap(), vec![folder.clone()]);
    assert!(!w.files().iter().any(|f| f.starts_with(&folder)));
    assert!(w.store().person("bob@example.test").unwrap().is_some());
    assert_eq!(w.store().privacy_overview().unwrap().unfinished_purges, 1);

    // Bob writes again meanwhile: not filed into a half-removed folder, but held back (a
    // transient error: the next pass starts at this message).
    w.arrive(application("bob@example.test", "Bob Durand", 2), Utc::now());
    let err = w.once().await.unwrap_err();
    assert!(err.to_string().contains("purge"), "{err}");
    assert!(mailroom::error::Classified::is_transient(&err));

    // The next purge takes it up and finishes it; the copies step is not run again.
    let report = w.purge(now + Duration::minutes(5)).await;
    assert_eq!((report.resumed, report.unfinished), (1, 0), "{report:?}");
    assert_eq!(copies.calls.lock().unwrap().len(), 1);
    assert!(w.store().person("bob@example.test").unwrap().is_none());
    assert_eq!(w.store().privacy_overview().unwrap().unfinished_purges, 0);
    // And Bob's new application is filed, in a fresh folder.
    let report = w.once().await.unwrap();
    assert_eq!(report.filed, 1);
    assert_eq!(w.store().person("bob@example.test").unwrap().unwrap().applications.len(), 1);
}

#[tokio::test]
async fn forget_erases_everything_leaves_a_tombstone_and_mail_from_that_address_is_never_filed() {
    let w = World::new("[privacy]\npurge_mailbox = \"keep\"\n");
    let erin = w.arrive(application("erin@example.test", "Erin Petit", 1), t("2026-04-01T09:00:00Z"));
    // Her newsletter was set aside (no document): never tied to her, but it names her.
    let newsletter = application_eml(
        "Erin Petit <erin@example.test>",
        "contact@example.test",
        "My news",
        "erin-news@example.test",
        &[("Return-Path", "<erin@example.test>"), ("List-Id", "<erin.example.test>")],
        "News.",
        &[],
    );
    let news = w.arrive(newsletter, t("2026-04-01T09:30:00Z"));
    w.arrive(application("frank@example.test", "Frank Moreau", 1), t("2026-04-01T10:00:00Z"));
    w.once().await.unwrap();
    let cv_sha =
        w.store().filed_rows("erin@example.test").unwrap()[0].application.as_ref().unwrap().documents[0].sha256.clone();
    let raw = w.server.lock().unwrap().messages[&erin].1.clone();
    w.store().set_hold("erin@example.test", Some("dispute"), Utc::now()).unwrap();
    let now = t("2026-04-02T12:00:00Z");
    assert!(matches!(w.forget("erin@example.test", now).await, Err(PrivacyError::Held { .. })));
    w.store().set_hold("erin@example.test", None, Utc::now()).unwrap();
    assert!(matches!(w.forget("nobody@example.test", now).await, Err(PrivacyError::Unknown(_))));

    assert!(w.files().iter().any(|f| f.starts_with("_quarantine/")));
    let report = w.forget("erin@example.test", now).await.unwrap();
    assert_eq!((report.totals.people, report.totals.quarantined, report.unfinished), (1, 1, 0), "{report:?}");
    assert_eq!(report.totals.mailbox_deleted, 2);
    // Erasure deletes from the mailbox even when purges keep it.
    assert_eq!(w.server.lock().unwrap().deleted, vec![erin, news]);
    assert!(!w.files().iter().any(|f| f.starts_with("_quarantine/")), "{:#?}", w.files());
    assert!(w.store().person("erin@example.test").unwrap().is_none());
    assert!(w.store().person("frank@example.test").unwrap().is_some());
    // Nothing on the disk or in the database's bytes names her or holds her CV's hash.
    for f in w.files() {
        let bytes = std::fs::read(w.cfg.storage.data_dir.join(&f)).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(!text.contains("erin@example.test") && !text.contains(&cv_sha), "{f}");
    }
    let state = &w.cfg.storage.state_path;
    for ext in ["", "-wal", "-shm"] {
        let path = format!("{}{ext}", state.display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        for needle in ["erin@example.test", cv_sha.as_str(), "Erin Petit"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found in {path}");
        }
    }

    // A copy left on a server (or a new message) from her is never filed again.
    w.arrive(raw, t("2026-04-03T09:00:00Z"));
    w.arrive(application("erin@example.test", "Erin Petit", 2), t("2026-04-03T10:00:00Z"));
    let report = w.once().await.unwrap();
    assert_eq!((report.filed, report.forgotten), (0, 2), "{report:?}");
    assert!(!w.files().iter().any(|f| f.contains("Petit")), "{:#?}", w.files());
    // Lifted, her next application is filed.
    assert!(w.store().remove_tombstone(&w.store().keyed("erin@example.test").unwrap()).unwrap());
    w.arrive(application("erin@example.test", "Erin Petit", 3), t("2026-04-04T10:00:00Z"));
    assert_eq!(w.once().await.unwrap().filed, 1);
}

#[tokio::test]
async fn after_a_uidvalidity_change_messages_are_found_by_message_id_and_confirmed_by_their_bytes() {
    let w = World::new("");
    let raw = application("bob@example.test", "Bob Durand", 1);
    w.arrive(raw.clone(), t("2026-01-10T09:00:00Z"));
    w.once().await.unwrap();
    // The server renumbers the folder; another message carries the same Message-ID.
    {
        let mut s = w.server.lock().unwrap();
        s.uid_validity = 99;
        s.messages.clear();
        s.messages.insert(500, (t("2026-01-10T09:00:00Z"), raw));
        let mut impostor = application("bob@example.test", "Bob Durand", 1);
        impostor.extend_from_slice(b"\r\nanother body\r\n");
        s.messages.insert(501, (t("2026-01-10T09:00:00Z"), impostor));
    }
    let report = w.purge(t("2026-05-20T03:00:00Z")).await;
    assert_eq!((report.totals.mailbox_deleted, report.totals.mailbox_not_found), (1, 0), "{report:?}");
    let s = w.server.lock().unwrap();
    assert_eq!(s.deleted, vec![500]);
    assert!(s.messages.contains_key(&501), "a message that only shares the Message-ID stays");
}

#[tokio::test]
async fn move_mode_moves_and_keeps_a_stripped_record_and_quarantine_goes_after_its_days() {
    let w = World::new("[privacy]\npurge_mailbox = \"move:Purged\"\nquarantine_days = 30\n");
    let bob = w.arrive(application("bob@example.test", "Bob Durand", 1), t("2026-01-10T09:00:00Z"));
    let list = w.arrive(robot(), Utc::now());
    w.once().await.unwrap();
    assert!(w.files().iter().any(|f| f.starts_with("_quarantine/")));
    // 20 days on: Bob is due, the quarantined message is not yet.
    let report = w.purge(Utc::now() + Duration::days(20)).await;
    assert_eq!((report.totals.people, report.totals.quarantined, report.totals.mailbox_moved), (1, 0, 1));
    assert_eq!(w.server.lock().unwrap().moved, vec![(bob, "Purged".to_owned())]);
    // The record of the moved message stays, stripped: it stops it being filed again, and names nobody.
    assert_eq!(w.sql_count("SELECT count(*) FROM messages WHERE outcome = 'purged' AND candidate IS NULL AND path IS NULL AND filed IS NULL AND message_id IS NULL"), 1);
    assert_eq!(w.sql_count("SELECT count(*) FROM messages WHERE instr(coalesce(candidate_name, ''), 'Bob') > 0"), 0);
    // 31 days on: the quarantined message goes, files and mailbox copy.
    let report = w.purge(Utc::now() + Duration::days(31)).await;
    assert_eq!((report.totals.quarantined, report.totals.mailbox_moved), (1, 1), "{report:?}");
    assert!(!w.files().iter().any(|f| f.starts_with("_quarantine/")), "{:#?}", w.files());
    assert!(w.server.lock().unwrap().moved.contains(&(list, "Purged".to_owned())));
}

#[tokio::test]
async fn history_past_its_days_goes_and_the_latest_digest_window_stays() {
    let w = World::new("[privacy]\nhistory_days = 10\n");
    w.arrive(application("alice@example.test", "Alice Martin", 1), Utc::now());
    w.once().await.unwrap();
    let digest = Digest::new(&w.cfg).unwrap();
    digest.send_window(w.store(), Utc::now() - Duration::days(2), Utc::now() - Duration::days(1)).unwrap();
    digest.send_window(w.store(), Utc::now() - Duration::days(1), Utc::now()).unwrap();
    mailroom::outbox::send_due(w.store(), &FakeCourier::default()).await.unwrap();
    assert_eq!(
        w.sql_count("SELECT count(*) FROM outbox WHERE state = 'sent'"),
        3,
        "the acknowledgement and two digests"
    );
    let report = w.purge(Utc::now() + Duration::days(11)).await;
    assert_eq!(report.totals.people, 0, "Alice is inside her window");
    assert_eq!(w.sql_count("SELECT count(*) FROM outbox"), 0, "sent mail past history_days");
    assert_eq!(w.sql_count("SELECT count(*) FROM digests"), 1, "the latest window stays");
    assert!(w.store().person("alice@example.test").unwrap().is_some());
}

const MINIMAL: &str = r#"
[imap]
host = "imap.example.test"
username = "contact@example.test"
password = "-"
[smtp]
host = "smtp.example.test"
username = "contact@example.test"
password = "-"
[identity]
from = "contact@example.test"
organisation = "La 27e Région"
"#;

fn notice(cfg: &str, lang: mailroom::lang::Lang) -> String {
    let cfg = Config::from_toml(cfg, std::path::Path::new("."), std::iter::empty()).unwrap();
    let replier = Replier::new(&cfg).unwrap();
    let r = replier.render(lang, mailroom::mail::ReplyKind::Complete, &replier.sample_context(lang)).unwrap();
    r.text.rsplit("\n--\n").next().unwrap().to_owned()
}

#[test]
fn the_rendered_notice_names_the_configured_period_the_controller_the_rights_and_the_cnil() {
    use mailroom::lang::Lang;
    let fr = notice(&format!("{MINIMAL}[privacy]\nretention_months = 5\ncontact = \"dpo@example.test\"\n"), Lang::Fr);
    assert!(fr.contains("Nous les conservons 5 mois après votre dernière candidature"), "{fr}");
    assert!(fr.contains("24 mois après notre dernier contact"), "{fr}");
    assert!(fr.contains("La 27e Région, responsable du traitement"), "{fr}");
    assert!(fr.contains("écrivant à dpo@example.test") && fr.contains("CNIL"), "{fr}");
    let en = notice(&format!("{MINIMAL}[privacy]\nretention_months = 1\ncontroller = \"Example SAS\"\n"), Lang::En);
    assert!(en.contains("We keep it for 1 month after your last application"), "{en}");
    assert!(en.contains("Example SAS, the data controller") && en.contains("CNIL"), "{en}");
    // A posting's own period, counted from its closing date.
    let posting = "[[postings]]\nslug = \"stage-gestion-projet\"\ntitle = \"Stage\"\nretention_months = 6\nclosing_date = \"2099-09-30\"\n";
    let fr = notice(&format!("{MINIMAL}{posting}"), Lang::Fr);
    assert!(fr.contains("Nous les conservons 6 mois après la clôture de l'offre (30/09/2099)"), "{fr}");
    // Every period the notice names is one the policy applies.
    let named: Vec<String> = mailroom::privacy::periods(&fr).into_iter().map(|p| p.text).collect();
    assert_eq!(named, ["6 mois", "24 mois", "un mois"]);
}

#[test]
fn check_config_rejects_a_custom_notice_that_names_another_period_than_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let check = |notice: &str| {
        let path = dir.path().join("mailroom.toml");
        std::fs::write(&path, format!("{MINIMAL}[replies]\nprivacy_notice = \"{notice}\"\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["check-config", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check("Vos données sont conservées six mois au plus.");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("replies.privacy_notice") && err.contains("six mois") && err.contains("3 month"), "{err}");
    let (code, err) = check("Vos données sont traitées par La 27e Région pour ce recrutement.");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not say how long"), "{err}");
    let (code, err) = check(
        "Vos données sont conservées 3 mois après votre candidature (deux ans avec votre accord) ; réponse sous un mois.",
    );
    assert_eq!(code, Some(0), "{err}");
}
