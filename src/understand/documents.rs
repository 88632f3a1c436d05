//! Every part of an application gets a kind, a confidence and the reason.
//!
//! 1. Containers are opened one level deep: a ZIP archive and Outlook's winmail.dat give their
//!    files (the container itself is then ignored: the original message keeps it); a container
//!    found inside a container is kept as it is.
//! 2. The name decides when it can (`classify`), then the part's nature (report parts, small
//!    inline images, signatures and cards are ignored).
//! 3. When the name does not tell, the text does (`text`, `extract`): only then, so a backlog
//!    of well-named PDFs costs no extraction.
//! 4. What is still undecided falls back on the usual habits: one unnamed document is the CV,
//!    two are the CV then the letter.
//! 5. The body is the letter when no letter is attached and it reads like one.

use super::classify::{DocKind, Verdict, classify_filename, extension, fold, is_document_extension};
use super::parse::{self, ParsedMail, Part};
use super::text::{self, Format};
use super::zip::{self, ZipError};
use super::{Document, Rules, sha256_hex, sniff, tnef};

/// Inline images below this size are signature logos and tracking pixels, not documents.
pub(super) const INLINE_IMAGE_IGNORE_BYTES: usize = 64 * 1024;
/// A body shorter than this is a note ("please find my CV attached"), not a letter.
const BODY_LETTER_MIN_CHARS: usize = 400;

/// One file to classify: a part of the message, or a file out of a container.
struct Item<'a> {
    name: Option<String>,
    content_type: String,
    inline: bool,
    bytes: std::borrow::Cow<'a, [u8]>,
    /// The container it came out of, for the reason.
    within: Option<String>,
    /// A container's own verdict, decided while opening it.
    verdict: Option<Verdict>,
}

/// The documents of one message: `mail` is the message whose parts are the application (the
/// forwarded one when the application came forwarded), `letter_text` the text that may be the
/// letter.
pub(super) fn find_documents(mail: &ParsedMail, letter_text: Option<&str>, rules: &Rules) -> Vec<Document> {
    let items = open_containers(&mail.parts, rules);
    let mut docs: Vec<Document> = Vec::new();
    let mut undecided: Vec<usize> = Vec::new();
    for item in items {
        if item.bytes.is_empty() {
            continue;
        }
        let sha256 = sha256_hex(&item.bytes);
        if docs.iter().any(|d| d.sha256 == sha256) {
            continue; // the same file attached twice is one document
        }
        let name = item.name.as_deref().map(parse::clean_line).filter(|n| !n.is_empty());
        let ext = name
            .as_deref()
            .and_then(extension)
            .or_else(|| {
                extension_for_type(&item.content_type)
                    .or_else(|| sniff::extension_for(&item.content_type))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "bin".into());
        // Content before names: a program named "CV.pdf" is a program. An archive that was
        // opened is not judged as a whole: its files are, one by one.
        let opened = item.verdict.as_ref().is_some_and(|v| v.kind == DocKind::Ignored);
        let danger = if opened { None } else { sniff::danger(item.name.as_deref(), &item.bytes) };
        let verdict = match danger.as_ref().map(dangerous_verdict).or(item.verdict.clone()) {
            Some(v) => v,
            None => match first_verdict(&item, name.as_deref(), &ext) {
                Some(v) => v,
                None => {
                    undecided.push(docs.len());
                    Verdict::new(DocKind::Other, 0.3, "the file name does not tell")
                }
            },
        };
        let reason = match &item.within {
            Some(c) => format!("in {c}: {}", verdict.reason),
            None => verdict.reason,
        };
        docs.push(Document {
            kind: verdict.kind,
            confidence: verdict.confidence,
            reason,
            original_name: name,
            content_type: item.content_type,
            extension: ext,
            size: item.bytes.len() as u64,
            sha256,
            also_cover_letter: verdict.also_cover_letter,
            danger: danger.map(|f| f.danger),
            bytes: item.bytes.into_owned(),
        });
    }
    // The text decides what the name could not.
    undecided.retain(|&i| {
        let d = &mut docs[i];
        let Some(format) = Format::of(&d.extension, &d.content_type, &d.bytes) else { return true };
        let why = match rules.text.read(format, &d.bytes) {
            Ok(t) => match text::verdict(&t) {
                Some(v) => {
                    d.kind = v.kind;
                    d.confidence = v.confidence;
                    d.also_cover_letter = v.also_cover_letter;
                    d.reason = format!("{}; {}", d.reason, v.reason);
                    return false;
                }
                None if t.trim().is_empty() => "it has no text (a scan?)".to_owned(),
                None => format!("its text does not tell ({} words)", t.split_whitespace().count()),
            },
            Err(e) => format!("text could not be read: {e}"),
        };
        d.reason = format!("{}; {why}", d.reason);
        true
    });
    let has = |docs: &[Document], k: DocKind| docs.iter().any(|d| d.kind == k);
    // One undecided document and no CV: it is the CV (the usual "Jeanne_Dupré.pdf" case).
    if !has(&docs, DocKind::Cv) && undecided.len() == 1 {
        let d = &mut docs[undecided[0]];
        d.kind = DocKind::Cv;
        d.confidence = 0.5;
        d.reason = format!("{}; the only document undecided and no CV, so taken as the CV", d.reason);
    } else if !has(&docs, DocKind::Cv) && !has(&docs, DocKind::CoverLetter) && undecided.len() == 2 {
        // Two: by far the most common pair is a CV and a letter, in that order.
        for (i, (kind, which)) in
            [(DocKind::Cv, "first taken as the CV"), (DocKind::CoverLetter, "second as the letter")]
                .into_iter()
                .enumerate()
        {
            let d = &mut docs[undecided[i]];
            d.kind = kind;
            d.confidence = 0.35;
            d.reason = format!("{}; two documents undecided, the {which}", d.reason);
        }
    }
    let letter_attached = docs.iter().any(|d| d.kind == DocKind::CoverLetter || d.also_cover_letter);
    if !letter_attached && let Some(letter) = letter_text.and_then(body_letter) {
        docs.push(letter);
    }
    docs
}

/// A dangerous file is filed as `other` at most, whatever its name says.
fn dangerous_verdict(finding: &sniff::Finding) -> Verdict {
    let why =
        format!("dangerous: {} ({}), never taken as the CV or the letter", finding.danger.describe(), finding.evidence);
    Verdict::new(DocKind::Other, 0.95, why)
}

impl<'a> Item<'a> {
    /// A part of the message as it stands, before any container is opened or verdict given.
    fn from_part(part: &'a Part) -> Item<'a> {
        Item {
            name: part.filename.clone(),
            content_type: part.content_type.clone(),
            inline: part.inline,
            bytes: std::borrow::Cow::Borrowed(&part.bytes),
            within: None,
            verdict: None,
        }
    }
}

/// The parts, with ZIP archives and winmail.dat replaced by the files inside them (one level).
fn open_containers<'a>(parts: &'a [Part], rules: &Rules) -> Vec<Item<'a>> {
    let mut items = Vec::new();
    for part in parts {
        let item = Item::from_part(part);
        if part.in_report || is_report_type(&part.content_type) {
            let why = format!("{} is part of a delivery or read report", part.content_type);
            items.push(Item { verdict: Some(Verdict::new(DocKind::Ignored, 0.95, why)), ..item });
        } else if is_tnef(part) {
            let label = part.filename.clone().unwrap_or_else(|| "winmail.dat".into());
            match tnef::attachments(&part.bytes) {
                Ok(files) => {
                    let why = match files.len() {
                        0 => "Outlook's winmail.dat with no file in it (only the message's formatting)".to_owned(),
                        n => format!("Outlook's winmail.dat, unpacked: {n} file{}", plural(n)),
                    };
                    items.push(Item { verdict: Some(Verdict::new(DocKind::Ignored, 0.9, why)), ..item });
                    items.extend(files.into_iter().map(|f| {
                        Item {
                            content_type: f
                                .content_type
                                .filter(|t| t.contains('/'))
                                .or_else(|| f.name.as_deref().and_then(extension).and_then(type_for_extension))
                                .unwrap_or_else(|| "application/octet-stream".into()),
                            name: f.name,
                            inline: false,
                            bytes: std::borrow::Cow::Owned(f.bytes),
                            within: Some(label.clone()),
                            verdict: None,
                        }
                    }));
                }
                Err(e) => {
                    let why = format!("Outlook's winmail.dat could not be unpacked: {e}");
                    items.push(Item { verdict: Some(Verdict::new(DocKind::Other, 0.5, why)), ..item });
                }
            }
        } else if is_zip_archive(&part.content_type, part.filename.as_deref(), &part.bytes) {
            let label = part.filename.clone().unwrap_or_else(|| "the archive".into());
            let limits = zip::Limits {
                max_member_bytes: zip::Limits::ARCHIVE.max_member_bytes.min(rules.limits.max_document_bytes),
                ..zip::Limits::ARCHIVE
            };
            match zip::extract(&part.bytes, &limits) {
                Ok(members) => {
                    let n = members.len();
                    let why = format!("a ZIP archive, unpacked: {n} file{}", plural(n));
                    items.push(Item { verdict: Some(Verdict::new(DocKind::Ignored, 0.9, why)), ..item });
                    items.extend(members.into_iter().map(|m| {
                        let content_type = extension(&m.name)
                            .and_then(type_for_extension)
                            .unwrap_or_else(|| "application/octet-stream".into());
                        // No nesting: an archive inside an archive stays closed.
                        let verdict = is_zip_archive(&content_type, Some(&m.name), &m.bytes)
                            .then(|| Verdict::new(DocKind::Other, 0.6, "an archive inside an archive is not opened"));
                        Item {
                            name: Some(m.name),
                            content_type,
                            inline: false,
                            bytes: std::borrow::Cow::Owned(m.bytes),
                            within: Some(label.clone()),
                            verdict,
                        }
                    }));
                }
                Err(e) => {
                    let why = format!("a ZIP archive, not opened: {}", describe_zip_error(&e));
                    items.push(Item { verdict: Some(Verdict::new(DocKind::Other, 0.5, why)), ..item });
                }
            }
        } else {
            items.push(item);
        }
    }
    items
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn describe_zip_error(e: &ZipError) -> String {
    match e {
        ZipError::Ratio { .. } | ZipError::TotalTooLarge { .. } | ZipError::MemberTooLarge { .. } => {
            format!("{e} (a zip bomb?)")
        }
        e => e.to_string(),
    }
}

fn is_tnef(part: &Part) -> bool {
    (part.content_type == "application/ms-tnef"
        || part.content_type == "application/vnd.ms-tnef"
        || part.filename.as_deref().is_some_and(|n| n.eq_ignore_ascii_case("winmail.dat")))
        && tnef::looks_like_tnef(&part.bytes)
}

fn is_zip_archive(content_type: &str, name: Option<&str>, bytes: &[u8]) -> bool {
    let by_type = matches!(content_type, "application/zip" | "application/x-zip-compressed" | "application/x-zip");
    let by_name = name.and_then(extension).is_some_and(|e| e == "zip");
    (by_type || by_name) && zip::looks_like_zip(bytes)
}

/// What the name and the part's nature say; `None` when only the text can tell.
fn first_verdict(item: &Item<'_>, name: Option<&str>, ext: &str) -> Option<Verdict> {
    if let Some(v) = name.and_then(classify_filename) {
        return Some(v);
    }
    let ct = item.content_type.as_str();
    if ct.starts_with("image/") && item.inline && item.bytes.len() < INLINE_IMAGE_IGNORE_BYTES {
        return Some(Verdict::new(DocKind::Ignored, 0.9, "small inline image (signature logo or tracking pixel)"));
    }
    if matches!(
        ct,
        "application/pkcs7-signature"
            | "application/x-pkcs7-signature"
            | "application/pgp-signature"
            | "application/pgp-keys"
            | "text/vcard"
            | "text/x-vcard"
            | "text/calendar"
    ) {
        return Some(Verdict::new(DocKind::Ignored, 0.95, format!("{ct} is not a document")));
    }
    if is_document_extension(ext) {
        return None;
    }
    Some(Verdict::new(DocKind::Other, 0.6, format!("a {ct} file, not a CV or letter format")))
}

/// Whether a part would be a document of the application (not ignored) before any text is read:
/// a forwarding message whose only parts are logos and the forwarded message has none.
pub(super) fn is_own_document(part: &Part) -> bool {
    if part.message.is_some() || part.in_report || is_report_type(&part.content_type) || part.bytes.is_empty() {
        return false;
    }
    let item = Item::from_part(part);
    let name = part.filename.as_deref().map(parse::clean_line);
    let ext = name.as_deref().and_then(extension).unwrap_or_default();
    first_verdict(&item, name.as_deref(), &ext).is_none_or(|v| v.kind != DocKind::Ignored)
}

/// The message body as a cover letter, when it reads like one.
fn body_letter(text: &str) -> Option<Document> {
    // Quoted history, forwarded text and signatures are not the letter.
    let is_cut = |l: &str| {
        let l = l.trim_end();
        l == "--"
            || l.starts_with("-----")
            || l.starts_with("________________________________")
            || (l.starts_with("Le ") && l.ends_with("a écrit :"))
            || (l.starts_with("On ") && l.ends_with("wrote:"))
    };
    let own: String =
        text.lines().take_while(|l| !is_cut(l)).filter(|l| !l.starts_with('>')).collect::<Vec<_>>().join("\n");
    let trimmed = own.trim();
    if trimmed.chars().count() < BODY_LETTER_MIN_CHARS {
        return None;
    }
    let folded = format!(" {} ", fold(trimmed));
    const GREETINGS: &[&str] = &["madame", "monsieur", "bonjour", "dear", "hello", "to whom", "chere", "cher"];
    const CLOSINGS: &[&str] = &[
        "cordialement",
        "salutations",
        "je vous prie",
        "sincerely",
        "regards",
        "bien a vous",
        "yours faithfully",
        "yours truly",
        "best wishes",
        "dans l attente",
    ];
    let greeting = GREETINGS.iter().find(|g| folded.contains(&format!(" {g} ")))?;
    let closing = CLOSINGS.iter().find(|c| folded.contains(&format!(" {c} ")))?;
    let bytes = trimmed.as_bytes().to_vec();
    Some(Document {
        kind: DocKind::CoverLetter,
        confidence: 0.7,
        reason: format!(
            "no letter attached; the message body reads as one ({} words, greeting {greeting:?}, closing {closing:?})",
            trimmed.split_whitespace().count()
        ),
        original_name: None,
        content_type: "text/plain".into(),
        extension: "txt".into(),
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        also_cover_letter: false,
        danger: None,
        bytes,
    })
}

pub(super) fn missing_kinds(docs: &[Document]) -> Vec<DocKind> {
    let mut missing = Vec::new();
    if !docs.iter().any(|d| d.kind == DocKind::Cv) {
        missing.push(DocKind::Cv);
    }
    if !docs.iter().any(|d| d.kind == DocKind::CoverLetter || d.also_cover_letter) {
        missing.push(DocKind::CoverLetter);
    }
    missing
}

/// What mail systems write into reports (RFC 3464, 8098, 6522, 5965): status, not documents.
fn is_report_type(content_type: &str) -> bool {
    matches!(
        content_type,
        "message/delivery-status"
            | "message/global-delivery-status"
            | "message/disposition-notification"
            | "message/global-disposition-notification"
            | "text/rfc822-headers"
            | "message/global-headers"
            | "message/feedback-report"
    )
}

fn extension_for_type(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "application/pdf" => "pdf",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.oasis.opendocument.text" => "odt",
        "application/rtf" | "text/rtf" => "rtf",
        "text/plain" => "txt",
        "text/html" => "html",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "message/rfc822" => "eml",
        "application/zip" | "application/x-zip-compressed" => "zip",
        _ => return None,
    })
}

/// The type of a file that came without one (out of an archive or a winmail.dat).
fn type_for_extension(ext: String) -> Option<String> {
    Some(
        match ext.as_str() {
            "pdf" => "application/pdf",
            "doc" => "application/msword",
            "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "odt" => "application/vnd.oasis.opendocument.text",
            "rtf" => "application/rtf",
            "txt" => "text/plain",
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "gif" => "image/gif",
            "heic" => "image/heic",
            "zip" => "application/zip",
            "eml" => "message/rfc822",
            _ => return None,
        }
        .to_owned(),
    )
}
