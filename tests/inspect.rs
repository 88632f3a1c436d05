//! `mailroom inspect`: what the daemon would do with one message, without doing it. Its
//! document names are the ones filing writes (both come from `filing::planned_names`), checked
//! here against every golden fixture; a bad message is a report, never a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn inspect(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .arg("inspect")
        .arg("--config")
        .arg(fixtures().join("mailroom.toml"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn json_documents_carry_the_filed_names_of_every_fixture() {
    let mut emls: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert!(emls.len() >= 75);
    // Fixtures that need OCR come out right only with Tesseract (the golden test says more).
    let no_ocr = mailroom::understand::ocr::OcrTools::locate().is_err();
    for eml in emls {
        let out = inspect(&["--json", eml.to_str().unwrap()], None);
        assert!(out.status.success(), "{}: {}", eml.display(), String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let want: Value = serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap()).unwrap();
        if no_ocr && want["ocr"] == true {
            continue;
        }
        assert_eq!(got["outcome"], want["outcome"], "{}", eml.display());
        if want["outcome"] != "filed" {
            assert!(got["reason"].is_string(), "{}", eml.display());
            continue;
        }
        let mut filed: Vec<(String, String)> = got["documents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] != "ignored")
            .map(|d| (d["kind"].as_str().unwrap().to_owned(), d["filename"].as_str().unwrap().to_owned()))
            .collect();
        let mut expected: Vec<(String, String)> = want["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["kind"].as_str().unwrap().to_owned(), d["filename"].as_str().unwrap().to_owned()))
            .collect();
        filed.sort();
        expected.sort();
        assert_eq!(filed, expected, "{}", eml.display());
        for d in got["documents"].as_array().unwrap() {
            for key in [
                "kind",
                "original_name",
                "content_type",
                "size",
                "sha256",
                "confidence",
                "decided_by",
                "reason",
                "filename",
            ] {
                assert!(d.get(key).is_some(), "{}: {key} missing in {d}", eml.display());
            }
            assert_eq!(d["filename"].is_null(), d["kind"] == "ignored", "{d}");
        }
        assert_eq!(got["candidate"]["email"], want["candidate"]["email"], "{}", eml.display());
        assert_eq!(got["posting"]["slug"], want["posting"], "{}", eml.display());
        assert!(got["reply"].is_string() && got["missing"].is_array());
    }
}

#[test]
fn reads_standard_input_and_prints_text() {
    let raw = std::fs::read(fixtures().join("21-outlook-winmail-dat-cv-and-letter.eml")).unwrap();
    let out = inspect(&["-"], Some(&raw));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("candidate: Thomas Durand <thomas.durand@wanadoo.test>"), "{text}");
    assert!(text.contains("CV - Thomas Durand.pdf ← \"CV_Thomas_Durand.pdf\""), "{text}");
    assert!(text.contains("(not filed) ← \"winmail.dat\""), "{text}");
    assert!(text.contains("reply:     acknowledgement: complete"), "{text}");
}

/// Which reader decided each document, and why: by name, by text, by OCR, by the body.
#[test]
fn says_which_reader_decided_each_document() {
    let text = |fixture: &str| {
        let out = inspect(&[fixtures().join(fixture).to_str().unwrap()], None);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let t = text("09-gmail-names-do-not-tell-text-decides.eml");
    assert!(t.contains("by text, 85%: the file name does not tell; its text layer: its text reads as a letter"), "{t}");
    let t = text("94-recommendation-by-name-en-letter-in-body.eml");
    assert!(t.contains("by name, 85%: file name names a recommendation letter (\"recommendation\")"), "{t}");
    assert!(t.contains("by body,"), "{t}");
    let t = text("130-unknown-heic-beside-letter.eml");
    assert!(
        t.contains("by nothing, 30%: the file name does not tell; a HEIC image, which nothing here can decode"),
        "{t}"
    );
    assert!(t.contains("reply:     acknowledgement: unsure"), "{t}");
    if mailroom::understand::ocr::OcrTools::locate().is_ok() {
        let t = text("84-scan-copier-pdf-cv.eml");
        assert!(t.contains("by OCR, ") && t.contains("no text layer (a scan?); OCR of 1 page (fra+eng)"), "{t}");
    }
}

#[test]
fn bad_messages_are_reports_not_failures() {
    for junk in [&b""[..], b"%PDF-1.4\n", b"\xff\xfe\x00garbage", b"From: nobody\r\n\r\n", b"Subject: x\r\n\r\n"] {
        let out = inspect(&["-"], Some(junk));
        assert!(out.status.success(), "{junk:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("quarantined"), "{junk:?}");
    }
    // A file that cannot be read is an I/O error, not a verdict on a message.
    let out = inspect(&["/nonexistent/message.eml"], None);
    assert_eq!(out.status.code(), Some(1));
}
