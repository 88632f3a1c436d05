//! Every part of an application gets a kind, a confidence and the reason.
//!
//! 1. Containers are opened one level deep: a ZIP archive and Outlook's winmail.dat give their
//!    files (the container itself is then ignored: the original message keeps it); a container
//!    found inside a container is kept as it is.
//! 2. The name decides when it can (`classify`), then the part's nature (report parts, small
//!    inline images, signatures and cards are ignored).
//! 3. When the name does not tell, the text does (`text`, `extract`): only then, so a backlog
//!    of well-named PDFs costs no extraction. A PDF without a text layer (a scan) and an image
//!    (a photographed page) are read by OCR (`ocr`).
//! 4. What is still undecided is `unknown`, with the reason: unreadable (a bomb, encrypted,
//!    corrupt, a format we cannot read) or too little evidence. Nothing becomes the CV or the
//!    letter by elimination; the acknowledgement then says the team will check.
//! 5. The body is the letter when no letter is attached and it reads like one (`body`).

use super::classify::{DocKind, Verdict, classify_filename, extension, is_document_extension};
use super::extract::TextError;
use super::ocr::{ImageFormat, MIN_PAGE_SIDE};
use super::parse::{self, ParsedMail, Part};
use super::text::{self, Format};
use super::zip::{self, ZipError};
use super::{Candidate, Document, Reader, Rules, body, sha256_hex, sniff, tnef};

/// Inline images below this size are signature logos and tracking pixels, not documents.
pub(super) const INLINE_IMAGE_IGNORE_BYTES: usize = 64 * 1024;
/// A PDF text layer with fewer words than this is a scan's (a scanning app's footer, a page
/// number): the page is read by OCR as well.
const SCAN_MAX_WORDS: usize = 20;

/// One file to classify: a part of the message, or a file out of a container.
struct Item<'a> {
    name: Option<String>,
    content_type: String,
    inline: bool,
    bytes: std::borrow::Cow<'a, [u8]>,
    /// The container it came out of, for the reason.
    within: Option<String>,
    /// A container's own verdict, decided while opening it.
    verdict: Option<(Verdict, Reader)>,
}

/// The documents of one message: `mail` is the message whose parts are the application (the
/// forwarded one when the application came forwarded), `letter_text` the text that may be the
/// letter, `candidate` who sent it (a letter in the body is signed with their name).
pub(super) fn find_documents(
    mail: &ParsedMail,
    letter_text: Option<&str>,
    candidate: &Candidate,
    rules: &Rules,
) -> Vec<Document> {
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
            .or_else(|| ImageFormat::sniff(&item.bytes).map(image_extension).map(str::to_owned))
            .unwrap_or_else(|| "bin".into());
        // Content before names: a program named "CV.pdf" is a program. An archive that was
        // opened is not judged as a whole: its files are, one by one.
        let opened = item.verdict.as_ref().is_some_and(|(v, _)| v.kind == DocKind::Ignored);
        let danger = if opened { None } else { sniff::danger(item.name.as_deref(), &item.bytes) };
        let dangerous = danger.as_ref().map(dangerous_verdict);
        let (verdict, reader) =
            match dangerous.or_else(|| item.verdict.clone()).or_else(|| first_verdict(&item, name.as_deref(), &ext)) {
                Some(decided) => decided,
                None => {
                    undecided.push(docs.len());
                    (Verdict::new(DocKind::Unknown, 0.3, "the file name does not tell"), Reader::Nothing)
                }
            };
        let reason = match &item.within {
            Some(c) => format!("in {c}: {}", verdict.reason),
            None => verdict.reason,
        };
        docs.push(Document {
            kind: verdict.kind,
            confidence: verdict.confidence,
            reason,
            decided_by: reader,
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
    // The text, or OCR, decides what the name could not; what nothing decides stays unknown.
    let names: Vec<String> = [&candidate.given_name, &candidate.family_name].into_iter().flatten().cloned().collect();
    for i in undecided {
        read_undecided(&mut docs[i], &names, rules);
    }
    let letter_attached = docs.iter().any(|d| d.kind == DocKind::CoverLetter || d.also_cover_letter);
    if !letter_attached && let Some(letter) = letter_text.and_then(|t| body::letter(t, candidate)) {
        docs.push(letter);
    }
    docs
}

/// A dangerous file is never the CV or the letter, whatever its name says. A program, a script
/// or macros are `other`; a password-protected file may well be the CV, but nobody can read it:
/// `unknown`, so the reply does not ask for what may be there (and the team checks it).
fn dangerous_verdict(finding: &sniff::Finding) -> (Verdict, Reader) {
    let why =
        format!("dangerous: {} ({}), never taken as the CV or the letter", finding.danger.describe(), finding.evidence);
    match finding.danger {
        sniff::Danger::Encrypted => (Verdict::new(DocKind::Unknown, 0.9, why), Reader::Nothing),
        _ => (Verdict::new(DocKind::Other, 0.95, why), Reader::Part),
    }
}

/// What reading a document gave.
enum Reading {
    /// Its text, and by which reader, with a note for the reason ("OCR of 2 pages").
    Text { text: String, reader: Reader, how: String },
    /// Nothing to read it with, or it could not be read: why.
    Unreadable(String),
    /// An image too small to be a page: not a document we ask for, and no doubt about it.
    Small(String),
}

/// Reads an undecided document and decides by its text, or leaves it `unknown` with the reason.
fn read_undecided(d: &mut Document, names: &[String], rules: &Rules) {
    let reading = read(d, rules);
    let why = match reading {
        Reading::Text { text, reader, how } => match text::verdict_about(&text, names) {
            Some(v) => {
                d.kind = v.kind;
                d.confidence = v.confidence;
                d.also_cover_letter = v.also_cover_letter;
                d.decided_by = reader;
                d.reason = format!("{}; {how}: {}", d.reason, v.reason);
                return;
            }
            None => match text.split_whitespace().count() {
                0 => format!("{how}: no text at all"),
                n if n < SCAN_MAX_WORDS => format!("{how}: too little text to tell ({n} words)"),
                n => format!("{how}: its text does not tell ({n} words, {})", text::evidence(&text)),
            },
        },
        Reading::Unreadable(why) => why,
        Reading::Small(why) => {
            d.kind = DocKind::Other;
            d.confidence = 0.7;
            d.decided_by = Reader::Part;
            d.reason = format!("{}; {why}", d.reason);
            return;
        }
    };
    d.kind = DocKind::Unknown;
    d.confidence = 0.3;
    d.decided_by = Reader::Nothing;
    d.reason = format!("{}; {why}; left for the team to check", d.reason);
}

fn read(d: &Document, rules: &Rules) -> Reading {
    let reader = &rules.text;
    let image = ImageFormat::sniff(&d.bytes);
    match Format::of(&d.extension, &d.content_type, &d.bytes) {
        Some(Format::Pdf) if image.is_none() => {
            let layer = reader.read(Format::Pdf, &d.bytes);
            let words = layer.as_ref().map_or(0, |t| t.split_whitespace().count());
            match layer {
                Ok(text) if words >= SCAN_MAX_WORDS => {
                    Reading::Text { text, reader: Reader::Text, how: "its text layer".into() }
                }
                // A PDF that keeps the text reader busy to its deadline is not given a second,
                // longer one: it stays unknown.
                Err(e @ TextError::Timeout(_)) => {
                    Reading::Unreadable(format!("its text could not be read ({}); not tried by OCR", describe(&e)))
                }
                // No text layer: a scan. Or the text reader failed: poppler may still draw it.
                layer => {
                    let before = match &layer {
                        Ok(_) if words == 0 => "no text layer (a scan?)".to_owned(),
                        Ok(_) => format!("a text layer of only {words} words (a scan?)"),
                        Err(e) => format!("its text could not be read ({})", describe(e)),
                    };
                    match reader.ocr_pdf(&d.bytes) {
                        Ok(o) => {
                            let mut text = layer.unwrap_or_default();
                            text.push('\n');
                            text.push_str(&o.text);
                            let how = format!("{before}; OCR of {} page{} ({})", o.pages, plural(o.pages), o.languages);
                            Reading::Text { text, reader: Reader::Ocr, how }
                        }
                        Err(e) => Reading::Unreadable(format!("{before}; OCR: {}", describe(&e))),
                    }
                }
            }
        }
        Some(format @ (Format::Docx | Format::Odt | Format::Text)) => match reader.read(format, &d.bytes) {
            Ok(text) => Reading::Text { text, reader: Reader::Text, how: "its text".into() },
            Err(e) => Reading::Unreadable(format!("its text could not be read ({})", describe(&e))),
        },
        _ => match image {
            Some(img) if img.dimensions(&d.bytes).is_some_and(|(w, h)| w.min(h) < MIN_PAGE_SIDE) => {
                let (w, h) = img.dimensions(&d.bytes).unwrap_or_default();
                Reading::Small(format!("a {} image of {w}×{h} pixels: too small to be a page (a logo?)", img.name()))
            }
            Some(img) if img.decodable() => match reader.ocr_image(&d.bytes) {
                Ok(o) => Reading::Text {
                    text: o.text,
                    reader: Reader::Ocr,
                    how: format!("a {} image; OCR ({})", img.name(), o.languages),
                },
                Err(e) => Reading::Unreadable(format!("a {} image; OCR: {}", img.name(), describe(&e))),
            },
            Some(img) => Reading::Unreadable(format!("a {} image, which nothing here can decode", img.name())),
            None if d.content_type.starts_with("image/") => {
                Reading::Unreadable(format!("declared {} but not an image that can be decoded", d.content_type))
            }
            None => Reading::Unreadable(format!("a .{} file, whose text mailroom cannot read", d.extension)),
        },
    }
}

/// A reader's failure, for a reason: what a bomb looks like from here is named.
fn describe(e: &TextError) -> String {
    match e {
        TextError::Crashed(why) if why.contains("SIGABRT") || why.contains("memory") => {
            format!("{e} (over the memory cap: a bomb?)")
        }
        TextError::Timeout(_) => format!("{e} (a bomb?)"),
        e => e.to_string(),
    }
}

fn image_extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Png => "png",
        ImageFormat::Tiff => "tif",
        ImageFormat::Gif => "gif",
        ImageFormat::Webp => "webp",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Heic => "heic",
    }
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
            items.push(Item { verdict: Some((Verdict::new(DocKind::Ignored, 0.95, why), Reader::Part)), ..item });
        } else if is_tnef(part) {
            let label = part.filename.clone().unwrap_or_else(|| "winmail.dat".into());
            match tnef::attachments(&part.bytes) {
                Ok(files) => {
                    let why = match files.len() {
                        0 => "Outlook's winmail.dat with no file in it (only the message's formatting)".to_owned(),
                        n => format!("Outlook's winmail.dat, unpacked: {n} file{}", plural(n)),
                    };
                    items.push(Item {
                        verdict: Some((Verdict::new(DocKind::Ignored, 0.9, why), Reader::Container)),
                        ..item
                    });
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
                    let why = format!("Outlook's winmail.dat could not be unpacked: {e}; left for the team to check");
                    items.push(Item {
                        verdict: Some((Verdict::new(DocKind::Unknown, 0.3, why), Reader::Nothing)),
                        ..item
                    });
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
                    items.push(Item {
                        verdict: Some((Verdict::new(DocKind::Ignored, 0.9, why), Reader::Container)),
                        ..item
                    });
                    items.extend(members.into_iter().map(|m| {
                        let content_type = extension(&m.name)
                            .and_then(type_for_extension)
                            .unwrap_or_else(|| "application/octet-stream".into());
                        // No nesting: an archive inside an archive stays closed.
                        let verdict = is_zip_archive(&content_type, Some(&m.name), &m.bytes).then(|| {
                            let why = "an archive inside an archive is not opened; left for the team to check";
                            (Verdict::new(DocKind::Unknown, 0.3, why), Reader::Nothing)
                        });
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
                    let why =
                        format!("a ZIP archive, not opened: {}; left for the team to check", describe_zip_error(&e));
                    items.push(Item {
                        verdict: Some((Verdict::new(DocKind::Unknown, 0.3, why), Reader::Nothing)),
                        ..item
                    });
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

/// What the name and the part's nature say; `None` when only the text (or OCR) can tell.
fn first_verdict(item: &Item<'_>, name: Option<&str>, ext: &str) -> Option<(Verdict, Reader)> {
    if let Some(v) = name.and_then(classify_filename) {
        return Some((v, Reader::Name));
    }
    let ct = item.content_type.as_str();
    let image =
        ct.starts_with("image/") || IMAGE_EXTENSIONS.contains(&ext) || ImageFormat::sniff(&item.bytes).is_some();
    if image && item.inline && item.bytes.len() < INLINE_IMAGE_IGNORE_BYTES {
        let why = "small inline image (signature logo or tracking pixel)";
        return Some((Verdict::new(DocKind::Ignored, 0.9, why), Reader::Part));
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
        return Some((Verdict::new(DocKind::Ignored, 0.95, format!("{ct} is not a document")), Reader::Part));
    }
    // A document format, or an image that may be a photographed or scanned page.
    if is_document_extension(ext) || image {
        return None;
    }
    Some((Verdict::new(DocKind::Other, 0.6, format!("a {ct} file, not a CV or letter format")), Reader::Part))
}

/// Extensions of images that may be scans or photographs of a page.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "tif", "tiff", "gif", "webp", "bmp", "heic", "heif"];

/// Whether a part would be a document of the application (not ignored) before any text is read:
/// a forwarding message whose only parts are logos and the forwarded message has none.
pub(super) fn is_own_document(part: &Part) -> bool {
    if part.message.is_some() || part.in_report || is_report_type(&part.content_type) || part.bytes.is_empty() {
        return false;
    }
    let item = Item::from_part(part);
    let name = part.filename.as_deref().map(parse::clean_line);
    let ext = name.as_deref().and_then(extension).unwrap_or_default();
    first_verdict(&item, name.as_deref(), &ext).is_none_or(|(v, _)| v.kind != DocKind::Ignored)
}

/// The kinds not found, split honestly: `(missing, unsure)`. With an `unknown` document on hand,
/// a kind not found may be that document, so it is unsure rather than missing.
pub(super) fn missing_kinds(docs: &[Document]) -> (Vec<DocKind>, Vec<DocKind>) {
    let mut absent = Vec::new();
    if !docs.iter().any(|d| d.kind == DocKind::Cv) {
        absent.push(DocKind::Cv);
    }
    if !docs.iter().any(|d| d.kind == DocKind::CoverLetter || d.also_cover_letter) {
        absent.push(DocKind::CoverLetter);
    }
    if docs.iter().any(|d| d.kind == DocKind::Unknown) { (Vec::new(), absent) } else { (absent, Vec::new()) }
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
