//! Stage 2, understand: one raw message in, one typed [`Understood`] out.
//!
//! May: parse, classify, decide who the candidate is and which posting the message answers.
//! May not: touch the disk, the network or the store. It is a pure function of the message and
//! the configuration, which is what lets `mailroom inspect` show exactly what the daemon would do.
//! Bad mail is data here: every message gets an outcome, and nothing in this module panics on
//! input (a message we cannot make sense of becomes [`Understood::Quarantine`]).

pub mod classify;
pub mod parse;
mod robots;
pub mod tnef;
pub mod zip;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

pub use classify::DocKind;
use classify::{Verdict, classify_filename, extension, fold, is_document_extension};
use parse::{MailAddress, ParsedMail};

use crate::config::{Config, Limits, Posting};

/// Inline images below this size are signature logos and tracking pixels, not documents.
const INLINE_IMAGE_IGNORE_BYTES: usize = 64 * 1024;
/// A body shorter than this is a note ("please find my CV attached"), not a letter.
const BODY_LETTER_MIN_CHARS: usize = 400;

/// What understanding needs from the configuration, prepared once.
#[derive(Debug, Clone)]
pub struct Rules {
    pub postings: Vec<Posting>,
    pub limits: Limits,
    pub default_language: String,
    /// Our own addresses (the contact address and the team): never candidates, never answered.
    pub own_addresses: Vec<String>,
}

impl Rules {
    pub fn from_config(cfg: &Config) -> Rules {
        let mut own = vec![normalise_address(&cfg.identity.from), normalise_address(&cfg.imap.username)];
        own.extend(cfg.identity.team.iter().map(|a| normalise_address(a)));
        Rules {
            postings: cfg.postings.clone(),
            limits: cfg.limits.clone(),
            default_language: cfg.replies.default_language.clone(),
            own_addresses: own,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    /// The identity: the address, lower-case and NFC.
    pub email: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

impl Candidate {
    /// "Jeanne Dupré", or the address when there is no name.
    pub fn display(&self) -> String {
        match (&self.given_name, &self.family_name, &self.name) {
            (Some(g), Some(f), _) => format!("{g} {f}"),
            (_, _, Some(n)) => n.clone(),
            _ => self.email.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PostingRef {
    pub slug: String,
    pub title: String,
    pub language: String,
    pub closed: bool,
    /// Why this posting: which rule matched.
    pub matched_by: String,
}

/// One document of an application, with its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub kind: DocKind,
    pub confidence: f32,
    pub reason: String,
    /// The name the sender gave it (none for a letter taken from the body).
    pub original_name: Option<String>,
    pub content_type: String,
    /// Extension to file it under (`pdf`, `txt`, …), taken from the original name or the type.
    pub extension: String,
    pub size: u64,
    pub sha256: String,
    /// Also stands for the cover letter (a single "CV et lettre de motivation.pdf").
    pub also_cover_letter: bool,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A message understood as an application.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    /// sha256 of the raw message, hex: the message's identity independent of the server.
    pub sha256: String,
    pub message_id: Option<String>,
    pub subject: String,
    pub received_at: DateTime<Utc>,
    pub candidate: Candidate,
    pub posting: PostingRef,
    pub documents: Vec<Document>,
    pub missing: Vec<DocKind>,
    /// Why the sender is a robot, a list or ourselves: then it never gets an answer.
    pub automated: Option<String>,
    /// Message-IDs for the reply's `References`.
    pub references: Vec<String>,
}

impl Application {
    /// The documents that are filed (everything but the ignored ones).
    pub fn filed_documents(&self) -> impl Iterator<Item = &Document> {
        self.documents.iter().filter(|d| d.kind != DocKind::Ignored)
    }
}

/// The outcome of the understand stage for one message.
#[derive(Debug, Clone)]
pub enum Understood {
    Application(Box<Application>),
    Quarantine(Quarantine),
}

#[derive(Debug, Clone, Serialize)]
pub struct Quarantine {
    pub sha256: String,
    pub message_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub reason: String,
}

impl Understood {
    pub fn sha256(&self) -> &str {
        match self {
            Understood::Application(a) => &a.sha256,
            Understood::Quarantine(q) => &q.sha256,
        }
    }
    pub fn message_id(&self) -> Option<&str> {
        match self {
            Understood::Application(a) => a.message_id.as_deref(),
            Understood::Quarantine(q) => q.message_id.as_deref(),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Understands one raw message. `received_at` is the server's arrival time when known.
pub fn understand(raw: &[u8], received_at: Option<DateTime<Utc>>, rules: &Rules) -> Understood {
    let sha256 = sha256_hex(raw);
    let quarantine = |reason: String, message_id: Option<String>, at: Option<DateTime<Utc>>| {
        Understood::Quarantine(Quarantine {
            sha256: sha256.clone(),
            message_id,
            received_at: received_at.or(at).unwrap_or_else(Utc::now),
            reason,
        })
    };
    if raw.len() as u64 > rules.limits.max_message_bytes {
        return quarantine(
            format!(
                "message of {} bytes is over limits.max_message_bytes ({})",
                raw.len(),
                rules.limits.max_message_bytes
            ),
            None,
            None,
        );
    }
    let Some(mail) = parse::parse(raw) else {
        return quarantine("not an email message: no header could be parsed".into(), None, None);
    };
    let message_id = mail.message_id.clone();
    let at = received_at.or(mail.date);
    if mail.part_count > rules.limits.max_parts {
        return quarantine(
            format!("{} MIME parts, over limits.max_parts ({})", mail.part_count, rules.limits.max_parts),
            message_id,
            at,
        );
    }
    if mail.depth > rules.limits.max_depth {
        return quarantine(
            format!("nesting depth {}, over limits.max_depth ({})", mail.depth, rules.limits.max_depth),
            message_id,
            at,
        );
    }
    if let Some(big) = mail.parts.iter().find(|p| p.bytes.len() as u64 > rules.limits.max_document_bytes) {
        return quarantine(
            format!(
                "attachment {:?} of {} bytes is over limits.max_document_bytes ({})",
                big.filename.as_deref().unwrap_or("(unnamed)"),
                big.bytes.len(),
                rules.limits.max_document_bytes
            ),
            message_id,
            at,
        );
    }
    let Some(candidate) = find_candidate(&mail) else {
        return quarantine("no sender address in From or Reply-To".into(), message_id, at);
    };
    let automated = robots::automated_reason(&mail, &candidate.email, &rules.own_addresses);
    let posting = match_posting(&mail, rules, at.unwrap_or_else(Utc::now).date_naive());
    let documents = find_documents(&mail);
    // A bounce, a newsletter or a robot with nothing to file is not an application: keep it out
    // of the candidate folders. (A job board relay that attaches a CV is filed, unanswered.)
    if let Some(why) = &automated
        && documents.iter().all(|d| d.kind == DocKind::Ignored)
    {
        return quarantine(format!("not an application: {why}, and no document"), message_id, at);
    }
    let missing = missing_kinds(&documents);
    Understood::Application(Box::new(Application {
        sha256,
        message_id,
        subject: mail.subject.clone().unwrap_or_default(),
        received_at: at.unwrap_or_else(Utc::now),
        candidate,
        posting,
        documents,
        missing,
        automated,
        references: mail.references.clone(),
    }))
}

/// Lower-case and NFC: two spellings of one address are one candidate.
pub fn normalise_address(a: &str) -> String {
    a.trim().nfc().collect::<String>().to_lowercase()
}

fn find_candidate(mail: &ParsedMail) -> Option<Candidate> {
    let from = mail.from.as_ref();
    // A job board relay or a no-reply sender names the candidate in Reply-To.
    let chosen: &MailAddress = match (from, &mail.reply_to) {
        (Some(f), Some(r)) if robots::is_system_local_part(&f.address) => r,
        (Some(f), _) => f,
        (None, Some(r)) => r,
        (None, None) => return None,
    };
    if !chosen.address.contains('@') {
        return None;
    }
    let email = normalise_address(&chosen.address);
    let name = chosen.name.as_ref().map(|n| n.nfc().collect::<String>()).filter(|n| !n.contains('@'));
    let (given_name, family_name) = match &name {
        Some(n) => split_name(n),
        None => name_from_local_part(&email),
    };
    Some(Candidate { email, name, given_name, family_name })
}

/// "Jeanne Dupré", "DUPRÉ Jeanne", "Dupré, Jeanne" → (given, family).
pub fn split_name(name: &str) -> (Option<String>, Option<String>) {
    if let Some((family, given)) = name.split_once(',') {
        let (family, given) = (family.trim(), given.trim());
        if !family.is_empty() && !given.is_empty() {
            return (Some(given.to_owned()), Some(family.to_owned()));
        }
    }
    let words: Vec<&str> = name.split_whitespace().collect();
    match words.len() {
        0 => (None, None),
        1 => (Some(words[0].to_owned()), None),
        _ => {
            let is_caps = |w: &str| w.chars().any(char::is_alphabetic) && w.chars().all(|c| !c.is_lowercase());
            // French habit: the family name in capitals, first ("DUPRÉ Jeanne") or last ("Jeanne DE LA TOUR").
            let leading = words.iter().take_while(|w| is_caps(w)).count();
            let trailing = words.iter().rev().take_while(|w| is_caps(w)).count();
            if leading > 0 && leading < words.len() {
                (Some(words[leading..].join(" ")), Some(title_case(&words[..leading].join(" "))))
            } else if trailing > 0 && trailing < words.len() {
                let split = words.len() - trailing;
                (Some(words[..split].join(" ")), Some(title_case(&words[split..].join(" "))))
            } else {
                (Some(words[..words.len() - 1].join(" ")), Some(words[words.len() - 1].to_owned()))
            }
        }
    }
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut out = String::new();
            let mut start = true;
            for c in w.chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.extend(c.to_lowercase());
                }
                start = c == '-' || c == '\'';
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// "jeanne.dupre@…" → (Jeanne, Dupre); anything less regular gives no name.
fn name_from_local_part(email: &str) -> (Option<String>, Option<String>) {
    let local = email.split('@').next().unwrap_or_default();
    let parts: Vec<&str> = local.split(['.', '_']).collect();
    if parts.len() == 2 && parts.iter().all(|p| p.len() > 1 && p.chars().all(char::is_alphabetic)) {
        (Some(title_case(parts[0])), Some(title_case(parts[1])))
    } else {
        (None, None)
    }
}

fn match_posting(mail: &ParsedMail, rules: &Rules, today: NaiveDate) -> PostingRef {
    let make = |p: &Posting, why: String| PostingRef {
        slug: p.slug.clone(),
        title: p.title.clone(),
        language: p.language.clone(),
        closed: p.closing_date.is_some_and(|d| today > d),
        matched_by: why,
    };
    let mut recipients: Vec<String> = mail.to.iter().chain(&mail.cc).map(|a| normalise_address(&a.address)).collect();
    for h in ["Delivered-To", "X-Original-To"] {
        if let Some(v) = mail.header(h) {
            recipients.push(normalise_address(v.trim_matches(['<', '>'])));
        }
    }
    for p in &rules.postings {
        if let Some(a) = p.addresses.iter().find(|a| recipients.contains(&normalise_address(a))) {
            return make(p, format!("recipient {a}"));
        }
    }
    let subject = format!(" {} ", fold(mail.subject.as_deref().unwrap_or_default()));
    for p in &rules.postings {
        if let Some(k) = p.subject_keywords.iter().find(|k| {
            let k = fold(k);
            !k.is_empty() && subject.contains(&format!(" {k} "))
        }) {
            return make(p, format!("subject keyword {k:?}"));
        }
    }
    match rules.postings.iter().find(|p| p.default).or(rules.postings.first()) {
        Some(p) => make(p, "default posting".into()),
        None => PostingRef {
            slug: "general".into(),
            title: "Candidature spontanée".into(),
            language: rules.default_language.clone(),
            closed: false,
            matched_by: "no posting configured".into(),
        },
    }
}

fn find_documents(mail: &ParsedMail) -> Vec<Document> {
    let mut docs: Vec<Document> = Vec::new();
    let mut unknown: Vec<usize> = Vec::new();
    for part in &mail.parts {
        if part.bytes.is_empty() {
            continue;
        }
        let sha256 = sha256_hex(&part.bytes);
        if docs.iter().any(|d| d.sha256 == sha256) {
            continue; // the same file attached twice is one document
        }
        let name = part.filename.as_deref().map(parse::clean_line).filter(|n| !n.is_empty());
        let ext = name
            .as_deref()
            .and_then(extension)
            .or_else(|| extension_for_type(&part.content_type).map(str::to_owned))
            .unwrap_or_else(|| "bin".into());
        let is_image = part.content_type.starts_with("image/");
        let verdict = match name.as_deref().and_then(classify_filename) {
            _ if part.in_report || is_report_type(&part.content_type) => Verdict::new(
                DocKind::Ignored,
                0.95,
                format!("{} is part of a delivery or read report", part.content_type),
            ),
            Some(v) => v,
            None if is_image && part.inline && part.bytes.len() < INLINE_IMAGE_IGNORE_BYTES => {
                Verdict::new(DocKind::Ignored, 0.9, "small inline image (signature logo or tracking pixel)")
            }
            None if matches!(
                part.content_type.as_str(),
                "application/pkcs7-signature" | "text/vcard" | "text/x-vcard"
            ) =>
            {
                Verdict::new(DocKind::Ignored, 0.95, format!("{} is not a document", part.content_type))
            }
            None if is_document_extension(&ext) => {
                unknown.push(docs.len());
                Verdict::new(DocKind::Other, 0.3, "the file name does not tell")
            }
            None => {
                Verdict::new(DocKind::Other, 0.6, format!("a {} file, not a CV or letter format", part.content_type))
            }
        };
        let also_cover_letter = verdict.also_cover_letter;
        docs.push(Document {
            kind: verdict.kind,
            confidence: verdict.confidence,
            reason: verdict.reason,
            original_name: name,
            content_type: part.content_type.clone(),
            extension: ext,
            size: part.bytes.len() as u64,
            sha256,
            also_cover_letter,
            bytes: part.bytes.clone(),
        });
    }
    let has = |docs: &[Document], k: DocKind| docs.iter().any(|d| d.kind == k);
    // One unnamed document and no CV: it is the CV (the usual "Jeanne_Dupré.pdf" case).
    if !has(&docs, DocKind::Cv) && unknown.len() == 1 {
        let d = &mut docs[unknown[0]];
        d.kind = DocKind::Cv;
        d.confidence = 0.5;
        d.reason = "the only document whose name does not tell; taken as the CV".into();
    } else if !has(&docs, DocKind::Cv) && !has(&docs, DocKind::CoverLetter) && unknown.len() == 2 {
        // Two unnamed documents: by far the most common pair is a CV and a letter, in that order.
        let (a, b) = (unknown[0], unknown[1]);
        docs[a].kind = DocKind::Cv;
        docs[a].confidence = 0.35;
        docs[a].reason = "two documents whose names do not tell; the first taken as the CV".into();
        docs[b].kind = DocKind::CoverLetter;
        docs[b].confidence = 0.35;
        docs[b].reason = "two documents whose names do not tell; the second taken as the letter".into();
    }
    let letter_attached = docs.iter().any(|d| d.kind == DocKind::CoverLetter || d.also_cover_letter);
    if !letter_attached && let Some(letter) = body_letter(mail) {
        docs.push(letter);
    }
    docs
}

/// The message body as a cover letter, when it reads like one.
fn body_letter(mail: &ParsedMail) -> Option<Document> {
    let text = mail.text_body.as_deref()?;
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
        bytes,
    })
}

fn missing_kinds(docs: &[Document]) -> Vec<DocKind> {
    let mut missing = Vec::new();
    if !docs.iter().any(|d| d.kind == DocKind::Cv) {
        missing.push(DocKind::Cv);
    }
    if !docs.iter().any(|d| d.kind == DocKind::CoverLetter || d.also_cover_letter) {
        missing.push(DocKind::CoverLetter);
    }
    missing
}

/// What mail systems write into reports (RFC 3464, 8098, 6522): status, not documents.
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
        "application/zip" => "zip",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_the_ways_people_write_them() {
        assert_eq!(split_name("Jeanne Dupré"), (Some("Jeanne".into()), Some("Dupré".into())));
        assert_eq!(split_name("DUPRÉ Jeanne"), (Some("Jeanne".into()), Some("Dupré".into())));
        assert_eq!(split_name("Dupré, Jeanne"), (Some("Jeanne".into()), Some("Dupré".into())));
        assert_eq!(split_name("Marie-Claire DE LA TOUR"), (Some("Marie-Claire".into()), Some("De La Tour".into())));
        assert_eq!(split_name("Jean Paul Martin"), (Some("Jean Paul".into()), Some("Martin".into())));
        assert_eq!(split_name("Jeanne"), (Some("Jeanne".into()), None));
    }

    #[test]
    fn names_from_addresses() {
        assert_eq!(name_from_local_part("jeanne.dupre@example.test"), (Some("Jeanne".into()), Some("Dupre".into())));
        assert_eq!(name_from_local_part("jd1987@example.test"), (None, None));
    }
}
