//! An application with a document mailroom could not tell apart is answered honestly and shown
//! to the team: the `unsure` acknowledgement ("we received N documents; the team will check
//! them"), neither "complete" nor a request for what may be there; the digest lists it under
//! "needs a human".

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use mailroom::config::Config;
use mailroom::digest::Digest;
use mailroom::filing::{FiledApplication, FiledDocument, Filer};
use mailroom::lang::Lang;
use mailroom::mail::ReplyKind;
use mailroom::reason::ReplyNote;
use mailroom::reply::{History, Replier, ReplyDecision};
use mailroom::store::{Batch, FiledRecord, Ledger, MailboxKey, MessageRecord, Outcome, Store};
use mailroom::understand::{DocKind, Rules, Understood, understand};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn config() -> Config {
    Config::load_with_env(&fixtures().join("mailroom.toml"), std::iter::empty()).unwrap()
}

fn decide(fixture: &str) -> (ReplyDecision, mailroom::understand::Application) {
    let cfg = config();
    let raw = std::fs::read(fixtures().join(fixture)).unwrap();
    let Understood::Application(app) = understand(&raw, None, &Rules::from_config(&cfg)) else { panic!("quarantined") };
    let root = tempfile::tempdir().unwrap();
    let filed = Filer::new(root.path()).file_application(&app, &raw, &[]).unwrap();
    let first_start = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let decision = Replier::new(&cfg).unwrap().decide(&app, &filed, first_start, &History::default());
    (decision, *app)
}

/// Fixture 130: a named letter and a HEIC photo nothing here decodes.
#[test]
fn an_unknown_document_gets_the_unsure_acknowledgement_not_missing_cv() {
    let (decision, app) = decide("130-unknown-heic-beside-letter.eml");
    assert!(app.missing.is_empty(), "{:?}", app.missing);
    assert_eq!(app.unsure, vec![DocKind::Cv]);
    let ReplyDecision::Queue { mail, kind } = decision else { panic!("{decision:?}") };
    assert_eq!(kind, ReplyKind::Unsure);
    assert!(mail.subject.contains("en cours de vérification"), "{}", mail.subject);
    assert!(mail.text.contains("avec 2 documents"), "{}", mail.text);
    assert!(mail.text.contains("Notre équipe va les vérifier"), "{}", mail.text);
    assert!(!mail.text.contains("il manque votre") && !mail.text.contains("complet"), "{}", mail.text);
}

/// Fixture 122: CV and letter named, plus a Pages file nobody can read: complete, as it is.
#[test]
fn an_unknown_extra_document_beside_a_cv_and_a_letter_is_complete() {
    let (decision, app) = decide("122-unknown-pages-file-application-complete.eml");
    assert!(app.documents.iter().any(|d| d.kind == DocKind::Unknown));
    assert!(app.unsure.is_empty() && app.missing.is_empty());
    let ReplyDecision::Queue { kind, .. } = decision else { panic!("{decision:?}") };
    assert_eq!(kind, ReplyKind::Complete);
}

#[test]
fn the_english_wording_counts_the_documents() {
    let replier = Replier::new(&config()).unwrap();
    let rendered = replier.render(Lang::En, ReplyKind::Unsure, &replier.sample_context(Lang::En)).unwrap();
    assert!(
        rendered.subject.starts_with("Application received, we are checking your documents"),
        "{}",
        rendered.subject
    );
    assert!(rendered.text.contains("with 1 document."), "{}", rendered.text);
    assert!(rendered.text.contains("The team will check it"), "{}", rendered.text);
}

#[test]
fn the_digest_lists_undecided_documents_under_needs_a_human() {
    // The application as the store holds it once filed: a letter, and a photo nobody could read.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
    let doc = |kind, name: &str, sha: &str| FiledDocument {
        kind,
        filename: Some(name.to_owned()),
        original_name: Some(name.to_owned()),
        content_type: "application/octet-stream".into(),
        size: 100,
        sha256: sha.repeat(64),
        confidence: 0.3,
        reason: "test".into(),
    };
    let received = Utc::now();
    let application = FiledApplication {
        sha256: "a".repeat(64),
        message_id: None,
        subject: "Candidature".into(),
        received_at: received,
        eml: "message.eml".into(),
        repeat: false,
        posting: "stage-gestion-projet".into(),
        documents: vec![
            doc(DocKind::CoverLetter, "Lettre de motivation.pdf", "1"),
            doc(DocKind::Unknown, "IMG_4522.HEIC", "2"),
        ],
        missing: vec![],
    };
    let record = MessageRecord {
        uid: 1,
        sha256: "a".repeat(64),
        message_id: None,
        content_sha256: None,
        received_at: received,
        outcome: Outcome::Filed(Box::new(FiledRecord {
            candidate: "kevin.lopez@icloud.test".into(),
            candidate_name: "Kévin Lopez".into(),
            folder: "stage-gestion-projet/Lopez-Kevin--12345678".into(),
            application,
            reply: ReplyNote::Queued(ReplyKind::Unsure),
            outbox: None,
            publish: Vec::new(),
        })),
    };
    let inbox = MailboxKey { name: "test".into(), uidvalidity: 1 };
    store.commit(&Batch { mailbox: inbox, high_water: 1, records: vec![record] }).unwrap();
    let rows = store;
    let at = Utc::now() + chrono::Duration::seconds(1);
    let built = Digest::new(&config()).unwrap().build(&rows, at - chrono::Duration::days(1), at).unwrap();
    let needs = built.text.split("À traiter").nth(1).unwrap_or_else(|| panic!("no 'À traiter':\n{}", built.text));
    assert!(needs.contains("Kévin Lopez") && needs.contains("à vérifier : IMG_4522.HEIC"), "{}", built.text);
    assert!(built.text.contains("document à vérifier (IMG_4522.HEIC)"), "{}", built.text);
    assert!(built.html.contains("IMG_4522.HEIC"));
}
