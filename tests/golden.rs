//! Golden tier: every `tests/fixtures/*.eml` goes through understand and file (into a temporary
//! data root) and must match its `*.json`: outcome, candidate, posting, the documents filed
//! (kind, file name, and where given the reader that must decide it), the kinds missing and
//! unsure, and whether an acknowledgement is due.
//! Ignored parts (logos, signatures) are not listed in the JSON; quarantined messages list no
//! documents. A document may also give its `sha256` (the bytes filed) and its `danger`. The
//! fixtures are judged against `tests/fixtures/mailroom.toml`.
//!
//! The test also prints, for every kind, precision and recall over all fixtures, and the
//! accuracy on the documents whose name does not tell (the text, OCR or the body's structure
//! alone decides, or nothing does): a regression shows as a number.
//!
//!     cargo test --test golden -- --nocapture
//!
//! Fixtures marked `"ocr": true` need Tesseract; under CI (`CI=true`) a machine without it
//! fails the test, elsewhere those fixtures are skipped and said so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mailroom::config::Config;
use mailroom::filing::Filer;
use mailroom::understand::{DocKind, Reader, Rules, Understood, understand};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    outcome: String,
    #[serde(default)]
    candidate: Option<ExpectedCandidate>,
    #[serde(default)]
    posting: Option<String>,
    #[serde(default)]
    documents: Vec<ExpectedDocument>,
    #[serde(default)]
    missing: Vec<DocKind>,
    /// Kinds not found that an unknown document may be.
    #[serde(default)]
    unsure: Vec<DocKind>,
    /// The fixture needs OCR (Tesseract) to come out right.
    #[serde(default)]
    ocr: bool,
    /// "acknowledgement" or "none".
    reply: String,
    /// What the fixture represents; not compared.
    #[allow(dead_code)]
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedCandidate {
    email: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct ExpectedDocument {
    kind: DocKind,
    filename: String,
    /// The reader that must decide it; not compared when absent.
    #[serde(default)]
    by: Option<Reader>,
    /// When given: the filed bytes must be exactly these (a binary file must not be re-encoded).
    #[serde(default)]
    sha256: Option<String>,
    /// When given: the document is flagged dangerous for this reason (`executable`, `macros`, …).
    #[serde(default)]
    danger: Option<String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn rules() -> Rules {
    let cfg = Config::load_with_env(&fixtures_dir().join("mailroom.toml"), std::iter::empty()).unwrap();
    Rules::from_config(&cfg)
}

/// One filed document as understood: kind, file name, reader.
type Got = (DocKind, String, Reader);

/// What one fixture gave: the differences (empty when it matches) and, for the tallies, the
/// documents filed against the documents expected.
struct Checked {
    diffs: Vec<String>,
    got: Vec<Got>,
    want: Vec<ExpectedDocument>,
}

fn check(eml: &Path, expected: Expected, rules: &Rules, root: &Path) -> Checked {
    let raw = std::fs::read(eml).unwrap();
    let mut diffs = Vec::new();
    let mut differ = |what: &str, got: String, want: String| {
        if got != want {
            diffs.push(format!("{what}: got {got}, expected {want}"));
        }
    };
    let mut got = Vec::new();
    match understand(&raw, None, rules) {
        Understood::Quarantine(q) => {
            let outcome = if expected.outcome == "quarantined" {
                "quarantined".to_owned()
            } else {
                format!("quarantined ({})", q.reason)
            };
            differ("outcome", outcome, expected.outcome.clone());
            differ("reply", "none".into(), expected.reply.clone());
        }
        Understood::Application(app) => {
            differ("outcome", "filed".into(), expected.outcome.clone());
            let mut filer = Filer::new(root);
            let filed = filer.file_application(&app, &raw, &[]).expect("filing into a temporary root works");
            if let Some(c) = &expected.candidate {
                differ("candidate.email", app.candidate.email.clone(), c.email.clone());
                differ("candidate.name", format!("{:?}", app.candidate.name), format!("{:?}", c.name));
            }
            differ("posting", format!("{:?}", Some(&app.posting.slug)), format!("{:?}", expected.posting.as_ref()));
            // Filing keeps the documents' order; the reader is understand's.
            let readers: BTreeMap<&str, Reader> =
                app.documents.iter().map(|d| (d.sha256.as_str(), d.decided_by)).collect();
            for d in &filed.application.documents {
                if let Some(name) = &d.filename {
                    let reader = readers.get(d.sha256.as_str()).copied().unwrap_or(Reader::Nothing);
                    got.push((d.kind, name.clone(), reader));
                }
            }
            let got_set: BTreeSet<(DocKind, String)> = got.iter().map(|(k, n, _)| (*k, n.clone())).collect();
            let want_set: BTreeSet<(DocKind, String)> =
                expected.documents.iter().map(|d| (d.kind, d.filename.clone())).collect();
            differ("documents", format!("{got_set:?}"), format!("{want_set:?}"));
            for w in &expected.documents {
                if let (Some(by), Some((_, _, reader))) =
                    (w.by, got.iter().find(|(k, n, _)| *k == w.kind && *n == w.filename))
                {
                    differ(&format!("decided_by of {:?}", w.filename), format!("{reader:?}"), format!("{by:?}"));
                }
                let Some(filed) = filed
                    .application
                    .documents
                    .iter()
                    .find(|d| d.kind == w.kind && d.filename.as_deref() == Some(w.filename.as_str()))
                else {
                    continue;
                };
                if let Some(sha) = &w.sha256 {
                    differ(&format!("{} sha256", w.filename), filed.sha256.clone(), sha.clone());
                }
                if w.danger.is_some() {
                    let danger = app
                        .documents
                        .iter()
                        .find(|d| d.sha256 == filed.sha256)
                        .and_then(|d| d.danger)
                        .map(|d| d.as_str().to_owned());
                    differ(&format!("{} danger", w.filename), format!("{danger:?}"), format!("{:?}", w.danger));
                }
            }
            let set = |kinds: &[DocKind]| format!("{:?}", kinds.iter().copied().collect::<BTreeSet<_>>());
            differ("missing", set(&app.missing), set(&expected.missing));
            differ("unsure", set(&app.unsure), set(&expected.unsure));
            let reply = if app.answerable() { "acknowledgement" } else { "none" };
            differ("reply", reply.into(), expected.reply.clone());
            for d in &filed.application.documents {
                if let Some(name) = &d.filename {
                    let path = root.join(&filed.folder).join(name);
                    assert!(
                        path.starts_with(root) && path.is_file(),
                        "{}: {path:?} not filed inside the root",
                        eml.display()
                    );
                }
            }
        }
    }
    Checked { diffs, got, want: expected.documents }
}

/// Precision and recall per kind, and the accuracy where the name does not tell.
#[derive(Default)]
struct Tally {
    /// kind → (right, filed as this kind, expected as this kind)
    kinds: BTreeMap<DocKind, (usize, usize, usize)>,
    /// reader → (right, judged)
    unnamed: BTreeMap<&'static str, (usize, usize)>,
}

/// Readers that decide when the name does not tell.
fn beyond_the_name(r: Reader) -> bool {
    matches!(r, Reader::Text | Reader::Ocr | Reader::Body | Reader::Nothing)
}

impl Tally {
    fn add(&mut self, got: &[Got], want: &[ExpectedDocument]) {
        let right = |k: DocKind, n: &str| want.iter().any(|w| w.kind == k && w.filename == n);
        for (k, n, _) in got {
            let e = self.kinds.entry(*k).or_default();
            e.1 += 1;
            if right(*k, n) {
                e.0 += 1;
            }
        }
        for w in want {
            self.kinds.entry(w.kind).or_default().2 += 1;
        }
        // The documents the name does not decide: those expected so, and any document filed
        // by such a reader that was not expected at all.
        for w in want.iter().filter(|w| w.by.is_some_and(beyond_the_name)) {
            let reader = w.by.unwrap_or(Reader::Nothing);
            let e = self.unnamed.entry(reader.as_str()).or_default();
            e.1 += 1;
            if got.iter().any(|(k, n, r)| *k == w.kind && *n == w.filename && *r == reader) {
                e.0 += 1;
            }
        }
        for (k, n, r) in got.iter().filter(|(_, _, r)| beyond_the_name(*r)) {
            if !want.iter().any(|w| w.kind == *k && w.filename == *n && w.by == Some(*r)) {
                self.unnamed.entry(r.as_str()).or_default().1 += 1;
            }
        }
    }

    fn report(&self) -> String {
        let pct =
            |a: usize, b: usize| if b == 0 { "-".to_owned() } else { format!("{:.1}%", 100.0 * a as f64 / b as f64) };
        let mut out = String::from("kind          precision          recall\n");
        for (k, (right, filed, expected)) in &self.kinds {
            out.push_str(&format!(
                "{:<13} {:>7} ({right:>3}/{filed:<3}) {:>7} ({right:>3}/{expected:<3})\n",
                k.as_str(),
                pct(*right, *filed),
                pct(*right, *expected)
            ));
        }
        let (right, judged) = self.unnamed.values().fold((0, 0), |(a, b), (r, j)| (a + r, b + j));
        out.push_str(&format!("name does not tell: {} right ({right}/{judged})", pct(right, judged)));
        let by: Vec<String> = self.unnamed.iter().map(|(r, (a, b))| format!("{r} {a}/{b}")).collect();
        out.push_str(&format!("  [{}]\n", by.join(", ")));
        out
    }
}

enum Outcome {
    Checked(Checked),
    /// Needs OCR, and there is none (outside CI).
    Skipped,
    /// The expected JSON could not be read.
    Broken(String),
}

fn run_one(eml: &Path, rules: &Rules, ocr: bool) -> Outcome {
    let json = eml.with_extension("json");
    let expected: Expected = match std::fs::read(&json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(e) => return Outcome::Broken(format!("{}: {e}", json.display())),
    };
    if expected.ocr && !ocr {
        return Outcome::Skipped;
    }
    let root = tempfile::tempdir().unwrap();
    Outcome::Checked(check(eml, expected, rules, root.path()))
}

#[test]
fn every_fixture_matches_its_expected_outcome() {
    let rules = rules();
    let ocr = rules.text.ocr().map(|_| ()).map_err(str::to_owned);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if let Err(why) = &ocr {
        assert!(!ci, "OCR is needed under CI (scripts/mailstack up installs Tesseract): {why}");
    }
    let mut emls: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert!(!emls.is_empty(), "tests/fixtures holds no .eml: the golden test must not pass on an empty folder");
    // Two at a time: OCR dominates, and the extractor lets only two children run at once anyway.
    let outcomes: Vec<std::sync::Mutex<Option<Outcome>>> = emls.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(eml) = emls.get(i) else { break };
                    let outcome = run_one(eml, &rules, ocr.is_ok());
                    *outcomes[i].lock().unwrap() = Some(outcome);
                }
            });
        }
    });
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut tally = Tally::default();
    for (eml, outcome) in emls.iter().zip(outcomes) {
        let name = eml.file_name().unwrap().to_string_lossy().into_owned();
        match outcome.into_inner().unwrap() {
            Some(Outcome::Checked(checked)) => {
                tally.add(&checked.got, &checked.want);
                if !checked.diffs.is_empty() {
                    failures.push(format!("{name}:\n    {}", checked.diffs.join("\n    ")));
                }
            }
            Some(Outcome::Skipped) => skipped.push(name),
            Some(Outcome::Broken(why)) => failures.push(why),
            None => failures.push(format!("{name}: not checked (a worker panicked)")),
        }
    }
    let report = tally.report();
    println!("{} fixtures\n{report}", emls.len());
    if !skipped.is_empty() {
        eprintln!(
            "SKIPPED {} fixtures that need OCR ({}): {}",
            skipped.len(),
            ocr.err().unwrap_or_default(),
            skipped.join(", ")
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}\n\n{report}",
        failures.len(),
        emls.len(),
        failures.join("\n")
    );
}
