//! The PDF text extractor runs in a child process (`mailroom __extract-text`): whatever a PDF
//! does to it (panic, hang, spin, flood its output, eat memory, try to write a file) costs that
//! document its classification by text, and nothing else. The misbehaviours are simulated with
//! the child's test hook.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mailroom::config::Config;
use mailroom::understand::extract::{TextError, TextReader};
use mailroom::understand::text::Format;
use mailroom::understand::{DocKind, Rules, Understood, understand};

fn reader() -> TextReader {
    TextReader::with_program(Some(PathBuf::from(env!("CARGO_BIN_EXE_mailroom"))))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// A small real PDF with a CV's text, as the fixtures' generator writes them.
fn cv_pdf() -> Vec<u8> {
    let text = "BT /F1 10 Tf 1 0 0 1 56 790 Tm (Formation) Tj 1 0 0 1 56 770 Tm (2018-2020 Licence) Tj \
                1 0 0 1 56 750 Tm (Exp\\351rience) Tj 1 0 0 1 56 730 Tm (Comp\\351tences) Tj ET\n";
    let objs = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{text}endstream", text.len()),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).as_bytes(),
    );
    out
}

#[test]
fn a_good_pdf_gives_its_text() {
    let text = reader().read(Format::Pdf, &cv_pdf()).unwrap();
    assert!(text.contains("Formation") && text.contains("Expérience"), "{text:?}");
}

#[test]
fn a_file_that_is_not_a_pdf_is_unreadable_not_a_crash() {
    let err = reader().read(Format::Pdf, b"%PDF-1.4\nthis is not really a PDF").unwrap_err();
    assert!(matches!(err, TextError::Unreadable(_)), "{err:?}");
}

#[test]
fn a_panicking_extractor_is_a_crash_report() {
    let err = reader().with_fault("panic").read(Format::Pdf, &cv_pdf()).unwrap_err();
    match err {
        TextError::Crashed(why) => assert!(why.contains("simulated extractor panic"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hanging_extractor_is_killed_at_the_deadline() {
    let mut r = reader().with_fault("hang");
    r.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let err = r.read(Format::Pdf, &cv_pdf()).unwrap_err();
    assert_eq!(err, TextError::Timeout(Duration::from_secs(1)));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[test]
fn a_spinning_extractor_is_stopped() {
    let mut r = reader().with_fault("spin");
    r.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let err = r.read(Format::Pdf, &cv_pdf()).unwrap_err();
    // Whichever comes first: the CPU limit (SIGXCPU) or the wall clock.
    assert!(matches!(err, TextError::Timeout(_) | TextError::Crashed(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(6), "{:?}", start.elapsed());
}

#[test]
fn a_flood_of_output_is_cut_at_the_cap() {
    let mut r = reader().with_fault("flood");
    r.max_output = 100_000;
    let text = r.read(Format::Pdf, &cv_pdf()).unwrap();
    assert!(text.len() <= 100_000 && text.len() > 90_000, "{}", text.len());
}

#[test]
fn runaway_memory_ends_in_the_child() {
    let mut r = reader().with_fault("oom");
    r.max_memory = 256 << 20;
    let err = r.read(Format::Pdf, &cv_pdf()).unwrap_err();
    assert!(matches!(err, TextError::Crashed(_)), "{err:?}");
}

#[test]
fn the_child_cannot_write_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("escaped.txt");
    let said = reader().with_fault(&format!("write:{}", target.display())).read(Format::Pdf, &cv_pdf()).unwrap();
    assert!(said.starts_with("refused"), "{said}");
    assert!(!target.exists());
}

fn rules_with(text: TextReader) -> Rules {
    let cfg = Config::load_with_env(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mailroom.toml"),
        std::iter::empty(),
    )
    .unwrap();
    Rules { text, ..Rules::from_config(&cfg) }
}

/// Fixture 09: a letter as scan0001.pdf and a CV as a DOCX, names that say nothing.
#[test]
fn a_pdf_that_crashes_the_extractor_costs_only_its_classification() {
    let raw = fixture("09-gmail-names-do-not-tell-text-decides.eml");
    for text in [
        reader().with_fault("panic"),
        {
            let mut r = reader().with_fault("hang");
            r.timeout = Duration::from_secs(1);
            r
        },
        TextReader::with_program(Some("/nonexistent/mailroom".into())),
        TextReader::with_program(None),
    ] {
        let Understood::Application(app) = understand(&raw, None, &rules_with(text.clone())) else {
            panic!("{text:?}: quarantined")
        };
        let pdf = app.documents.iter().find(|d| d.extension == "pdf").unwrap();
        // Unknown, never the CV by elimination; the reason says what went wrong.
        assert_eq!(pdf.kind, DocKind::Unknown, "{text:?}");
        assert!(pdf.reason.contains("its text could not be read ("), "{}", pdf.reason);
        // The DOCX is read in-process: still the CV.
        let docx = app.documents.iter().find(|d| d.extension == "docx").unwrap();
        assert_eq!(docx.kind, DocKind::Cv, "{}", docx.reason);
    }
    // With a working extractor, the PDF is the letter.
    let Understood::Application(app) = understand(&raw, None, &rules_with(reader())) else { panic!() };
    assert_eq!(app.documents.iter().find(|d| d.extension == "pdf").unwrap().kind, DocKind::CoverLetter);
}

/// The systemd unit kills a process that makes a syscall of `~@privileged @resources`; the child
/// limits itself with prlimit64, which must stay allowed (setrlimit is not).
#[test]
fn the_units_syscall_filter_lets_the_child_restrict_itself() {
    // A set's system calls, nested sets (`@default` inside `@system-service`) expanded.
    fn calls(set: &str, depth: usize) -> Option<Vec<String>> {
        let out = std::process::Command::new("systemd-analyze").args(["syscall-filter", set]).output().ok()?;
        if !out.status.success() || depth > 4 {
            return None;
        }
        let mut all = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines().skip(1).map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_prefix('@') {
                Some(_) => all.extend(calls(line, depth + 1)?),
                None => all.push(line.to_owned()),
            }
        }
        Some(all)
    }
    let (Some(allowed), Some(resources), Some(privileged)) =
        (calls("@system-service", 0), calls("@resources", 0), calls("@privileged", 0))
    else {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "systemd-analyze is needed under CI");
        eprintln!("SKIPPED: systemd-analyze not available");
        return;
    };
    let has = |list: &[String], call: &str| list.iter().any(|c| c == call);
    for call in ["prlimit64", "execve", "clone", "clone3", "vfork", "pipe2", "wait4", "kill"] {
        assert!(has(&allowed, call), "@system-service lacks {call}");
        assert!(!has(&resources, call) && !has(&privileged, call), "{call} is denied by the unit");
    }
    assert!(has(&resources, "setrlimit"), "why the child uses prlimit64 and not setrlimit");
}
