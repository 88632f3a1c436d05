//! An application with a document mailroom could not tell apart is answered honestly and shown
//! to the team: the `unsure` acknowledgement ("we received N documents; the team will check
//! them"), neither "complete" nor a request for what may be there; the digest lists it under
//! "needs a human".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use mailroom::config::Config;
use mailroom::courier::OutgoingMail;
use mailroom::digest::{ApplicationRow, Digest, DigestRows, DigestStore};
use mailroom::filing::Filer;
use mailroom::reply::{History, Replier, ReplyDecision, ReplyKind};
use mailroom::store::StoreError;
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
    let ReplyDecision::Queue(mail, kind) = decision else { panic!("{decision:?}") };
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
    let ReplyDecision::Queue(_, kind) = decision else { panic!("{decision:?}") };
    assert_eq!(kind, ReplyKind::Complete);
}

#[test]
fn the_english_wording_counts_the_documents() {
    let replier = Replier::new(&config()).unwrap();
    let rendered = replier.render("en", ReplyKind::Unsure, &replier.sample_context("en")).unwrap();
    assert!(
        rendered.subject.starts_with("Application received, we are checking your documents"),
        "{}",
        rendered.subject
    );
    assert!(rendered.text.contains("with 1 document."), "{}", rendered.text);
    assert!(rendered.text.contains("The team will check it"), "{}", rendered.text);
}

struct Rows(DigestRows);

impl DigestStore for Rows {
    fn first_start(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()
    }
    fn last_digest_end(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }
    fn digest_rows(&self, _: DateTime<Utc>, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<DigestRows, StoreError> {
        Ok(self.0.clone())
    }
    fn claim_digest(
        &mut self,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: usize,
        _: &[OutgoingMail],
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn queue_mails(&mut self, _: &[OutgoingMail]) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn the_digest_lists_undecided_documents_under_needs_a_human() {
    let at = Utc.with_ymd_and_hms(2026, 2, 10, 9, 0, 0).unwrap();
    let row = ApplicationRow {
        candidate: "kevin.lopez@icloud.test".into(),
        name: "Kévin Lopez".into(),
        posting: "stage-gestion-projet".into(),
        folder: "stage-gestion-projet/Lopez-Kevin--12345678".into(),
        received_at: at,
        missing: vec![],
        repeat: false,
        reply: "queued: unsure".into(),
        documents: vec![
            (DocKind::CoverLetter, Some("Lettre de motivation.pdf".into())),
            (DocKind::Unknown, Some("IMG_4522.HEIC".into())),
        ],
    };
    let rows = Rows(DigestRows {
        applications: vec![row],
        totals: BTreeMap::from([("stage-gestion-projet".to_owned(), 1)]),
        ..Default::default()
    });
    let built = Digest::new(&config()).unwrap().build(&rows, at - chrono::Duration::days(1), at).unwrap();
    let needs = built.text.split("À traiter").nth(1).unwrap_or_else(|| panic!("no 'À traiter':\n{}", built.text));
    assert!(needs.contains("Kévin Lopez") && needs.contains("à vérifier : IMG_4522.HEIC"), "{}", built.text);
    assert!(built.text.contains("document à vérifier (IMG_4522.HEIC)"), "{}", built.text);
    assert!(built.html.contains("IMG_4522.HEIC"));
}
