//! Golden tier: every `tests/fixtures/*.eml` goes through understand and file (into a temporary
//! data root) and must match its `*.json`: outcome, candidate, posting, the documents filed
//! (kind and file name), the kinds missing, and whether an acknowledgement is due.
//! Ignored parts (logos, signatures) are not listed in the JSON; quarantined messages list no
//! documents. A document may also give its `sha256` (the bytes filed) and its `danger`. The fixtures are judged against `tests/fixtures/mailroom.toml`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mailroom::config::Config;
use mailroom::filing::Filer;
use mailroom::understand::{DocKind, Rules, Understood, understand};
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

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct ExpectedDocument {
    kind: DocKind,
    filename: String,
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

/// Compares one fixture; returns the differences, empty when it matches.
fn check(eml: &Path, rules: &Rules, root: &Path) -> Vec<String> {
    let json = eml.with_extension("json");
    let expected: Expected = match std::fs::read(&json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(e) => return vec![format!("{}: {e}", json.display())],
    };
    let raw = std::fs::read(eml).unwrap();
    let mut diffs = Vec::new();
    let mut differ = |what: &str, got: String, want: String| {
        if got != want {
            diffs.push(format!("{what}: got {got}, expected {want}"));
        }
    };
    match understand(&raw, None, rules) {
        Understood::Quarantine(q) => {
            let got = if expected.outcome == "quarantined" {
                "quarantined".to_owned()
            } else {
                format!("quarantined ({})", q.reason)
            };
            differ("outcome", got, expected.outcome.clone());
            differ("reply", "none".into(), expected.reply);
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
            let got: BTreeSet<(DocKind, String)> =
                filed.application.documents.iter().filter_map(|d| Some((d.kind, d.filename.clone()?))).collect();
            let want: BTreeSet<(DocKind, String)> =
                expected.documents.iter().map(|d| (d.kind, d.filename.clone())).collect();
            differ("documents", format!("{got:?}"), format!("{want:?}"));
            for want in &expected.documents {
                let Some(got) = filed
                    .application
                    .documents
                    .iter()
                    .find(|d| d.kind == want.kind && d.filename.as_deref() == Some(want.filename.as_str()))
                else {
                    continue;
                };
                if let Some(sha) = &want.sha256 {
                    differ(&format!("{} sha256", want.filename), got.sha256.clone(), sha.clone());
                }
                if want.danger.is_some() {
                    let danger = app
                        .documents
                        .iter()
                        .find(|d| d.sha256 == got.sha256)
                        .and_then(|d| d.danger)
                        .map(|d| d.as_str().to_owned());
                    differ(&format!("{} danger", want.filename), format!("{danger:?}"), format!("{:?}", want.danger));
                }
            }
            let missing: BTreeSet<DocKind> = app.missing.iter().copied().collect();
            differ(
                "missing",
                format!("{missing:?}"),
                format!("{:?}", expected.missing.iter().copied().collect::<BTreeSet<_>>()),
            );
            let reply = if app.answerable() { "acknowledgement" } else { "none" };
            differ("reply", reply.into(), expected.reply);
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
    diffs
}

#[test]
fn every_fixture_matches_its_expected_outcome() {
    let rules = rules();
    let mut emls: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert!(!emls.is_empty(), "tests/fixtures holds no .eml: the golden test must not pass on an empty folder");
    let mut failures = Vec::new();
    for eml in &emls {
        let root = tempfile::tempdir().unwrap();
        let diffs = check(eml, &rules, root.path());
        if !diffs.is_empty() {
            failures.push(format!("{}:\n    {}", eml.file_name().unwrap().to_string_lossy(), diffs.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures differ:\n{}", failures.len(), emls.len(), failures.join("\n"));
}
