//! Stage 2, understand: one raw message in, one typed [`Understood`] out.
//!
//! May: parse, open containers (ZIP, winmail.dat, forwarded messages), classify, read a
//! document's text when its name does not tell, decide who the candidate is and which posting
//! the message answers.
//! May not: touch the disk, the network or the store. It is a function of the message and the
//! configuration alone, which is what lets `mailroom inspect` show exactly what the daemon would
//! do. The one thing it starts is the document reader, a child process that can write nothing
//! and is killed at a deadline: the PDF text extractor, or, for scans, pdftoppm and Tesseract
//! ([`extract`], [`ocr`]); at most two at once across the process.
//! Bad mail is data here: every message gets an outcome, and nothing in this module panics on
//! input (a message we cannot make sense of becomes [`Understood::Quarantine`]; a document whose
//! text cannot be read becomes `unknown`, and the kinds it may be are `unsure`, not missing).
//!
//! | module | role |
//! |---|---|
//! | [`parse`] | the only user of mail-parser: raw bytes to a plain [`parse::ParsedMail`] |
//! | `documents` | every part's kind, confidence and reason; containers opened one level |
//! | [`classify`] | kinds from file names |
//! | [`text`], [`extract`] | kinds from documents' text; the isolated PDF extractor |
//! | [`ocr`] | scans read by Tesseract, through the same isolated child |
//! | [`aside`] | the slow lane: messages that need OCR, read on their own threads so the others need not wait |
//! | `body` | the message body as a cover letter |
//! | [`zip`], [`tnef`] | archives and Outlook's winmail.dat, read under limits |
//! | [`fingerprint`] | what makes two copies one message (the evidence a Message-ID needs) |
//! | [`forward`] | inline-forwarded applications |
//! | [`intent`] | whether a message reads as an application at all (who may be acknowledged) |
//! | `robots` | who must never be answered |

pub mod aside;
mod body;
pub(crate) mod classify;
mod documents;
pub mod extract;
pub mod fingerprint;
pub(crate) mod forward;
pub mod intent;
pub mod ocr;
pub mod parse;
mod robots;
pub mod sniff;
pub mod text;
pub(crate) mod tnef;
pub(crate) mod zip;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

pub use classify::DocKind;
use classify::fold;
use extract::TextReader;
pub use intent::Evidence;
use parse::{MailAddress, ParsedMail};

use crate::config::{Config, DangerousPolicy, Limits, Posting};
use crate::lang::{Lang, PostingLang};
use crate::reason::{Automated, QuarantineReason};
use sniff::Danger;

/// What understanding needs from the configuration, prepared once.
#[derive(Debug, Clone)]
pub struct Rules {
    pub postings: Vec<Posting>,
    pub limits: Limits,
    pub default_language: Lang,
    /// Our own addresses (the contact address and the team): never candidates, never answered.
    pub own_addresses: Vec<String>,
    /// Reads documents' text when their names do not tell (PDFs and OCR in an isolated child).
    pub text: TextReader,
}

impl Rules {
    pub fn from_config(cfg: &Config) -> Rules {
        let mut own = vec![normalise_address(&cfg.identity.from), normalise_address(&cfg.imap.username)];
        own.extend(cfg.identity.team.iter().map(|a| normalise_address(a)));
        Rules {
            postings: cfg.postings.clone(),
            limits: cfg.limits.clone(),
            default_language: cfg.replies.default_language,
            own_addresses: own,
            text: TextReader::locate(),
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
    pub language: PostingLang,
    pub closed: bool,
    /// Why this posting: which rule matched.
    pub matched_by: String,
}

/// Which reader decided a document's kind: `mailroom inspect` shows it beside the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// Its file name.
    Name,
    /// What the part is: its type, an inline logo, a signature, a delivery report.
    Part,
    /// A container: an archive or a winmail.dat, opened or not.
    Container,
    /// Its text (a PDF's text layer, DOCX, ODT, plain text).
    Text,
    /// Its text as OCR read it from the scan or photo.
    Ocr,
    /// The message body, read as a letter.
    Body,
    /// Nothing could decide: the document is `unknown`.
    Nothing,
}

impl Reader {
    pub fn as_str(self) -> &'static str {
        match self {
            Reader::Name => "name",
            Reader::Part => "part",
            Reader::Container => "container",
            Reader::Text => "text",
            Reader::Ocr => "OCR",
            Reader::Body => "body",
            Reader::Nothing => "nothing",
        }
    }
}

/// One document of an application, with its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub kind: DocKind,
    pub confidence: f32,
    pub reason: String,
    /// Which reader decided `kind`.
    pub decided_by: Reader,
    /// The name the sender gave it (none for a letter taken from the body).
    pub original_name: Option<String>,
    pub content_type: String,
    /// Extension to file it under (`pdf`, `txt`, …), taken from the original name or the type.
    pub extension: String,
    pub size: u64,
    pub sha256: String,
    /// Also stands for the cover letter (a single "CV et lettre de motivation.pdf").
    pub also_cover_letter: bool,
    /// A program, a script, macros, a password: never the CV or the letter, and a person must
    /// look (see [`Application::attention`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub danger: Option<Danger>,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Why a person must look at a message: the digest lists it as needing a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attention {
    /// A program, a script, a macro-enabled or password-protected file ([`Document::danger`]).
    DangerousAttachment,
}

impl Attention {
    /// For the digest: "needs a human: dangerous attachment".
    pub fn describe(self) -> &'static str {
        match self {
            Attention::DangerousAttachment => "dangerous attachment",
        }
    }
}

/// A message understood as an application.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    /// sha256 of the raw message, hex: the message's identity independent of the server.
    pub sha256: String,
    pub message_id: Option<String>,
    /// What the sender wrote, hashed ([`fingerprint`]): with the Message-ID, recognises the same
    /// message seen again through other servers.
    pub content_sha256: Option<String>,
    pub subject: String,
    pub received_at: DateTime<Utc>,
    pub candidate: Candidate,
    pub posting: PostingRef,
    pub documents: Vec<Document>,
    /// The kinds that are not there: neither found nor possibly among the `unknown` documents.
    pub missing: Vec<DocKind>,
    /// The kinds not found that an `unknown` document may be: nobody can say they are missing
    /// until the team has looked (the acknowledgement says "we will check", not "missing").
    pub unsure: Vec<DocKind>,
    /// Why the sender is a robot, a list or ourselves: then it never gets an answer.
    pub automated: Option<Automated>,
    /// Message-IDs for the reply's `References`.
    pub references: Vec<String>,
    /// Why it reads as an application; `None`: nothing says it is one, so it is not answered.
    pub evidence: Option<Evidence>,
}

impl Application {
    /// Whether understanding alone allows an acknowledgement: a person sent it (no robot, list,
    /// bounce or spam) and it reads as an application. The reply stage adds what the store knows.
    pub fn answerable(&self) -> bool {
        self.automated.is_none() && self.evidence.is_some()
    }

    /// The documents that are filed (everything but the ignored ones).
    pub fn filed_documents(&self) -> impl Iterator<Item = &Document> {
        self.documents.iter().filter(|d| d.kind != DocKind::Ignored)
    }

    /// Whether a person must look at it: it carries a dangerous document (filed as `other`
    /// under `limits.dangerous = "file_as_other"`).
    pub fn attention(&self) -> Option<Attention> {
        self.documents.iter().any(|d| d.danger.is_some()).then_some(Attention::DangerousAttachment)
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
    /// As [`Application::content_sha256`]; `None` when the message was not downloaded.
    pub content_sha256: Option<String>,
    pub received_at: DateTime<Utc>,
    pub reason: QuarantineReason,
    /// Set when a person must look, beyond the reason (a dangerous attachment held back).
    pub attention: Option<Attention>,
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
    pub fn content_sha256(&self) -> Option<&str> {
        match self {
            Understood::Application(a) => a.content_sha256.as_deref(),
            Understood::Quarantine(q) => q.content_sha256.as_deref(),
        }
    }
}

/// From this size on, [`understand`] hashes a message on a second thread while it parses it.
const HASH_ASIDE_BYTES: usize = 64 * 1024;

pub fn sha256_hex(bytes: &[u8]) -> String {
    // ring's SHA-256 uses the CPU's SHA extensions: hashing a 1.3 GB backlog twice is cheap.
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Understands one raw message. `received_at` is the server's arrival time when known.
pub fn understand(raw: &[u8], received_at: Option<DateTime<Utc>>, rules: &Rules) -> Understood {
    let too_large = raw.len() as u64 > rules.limits.max_message_bytes;
    let (sha256, content_sha256, parsed) = if too_large {
        (sha256_hex(raw), fingerprint::content_sha256(raw), None)
    } else if raw.len() < HASH_ASIDE_BYTES {
        (sha256_hex(raw), fingerprint::content_sha256(raw), Some(parse::parse(raw)))
    } else {
        // Both hashes read the whole message, as parsing does: on a thread of their own they
        // take nothing from the time a lone application waits for its acknowledgement.
        std::thread::scope(|s| {
            let hashes = s.spawn(|| (sha256_hex(raw), fingerprint::content_sha256(raw)));
            let parsed = parse::parse(raw);
            match hashes.join() {
                Ok((sha256, content)) => (sha256, content, Some(parsed)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    };
    let quarantine = |reason: QuarantineReason, message_id: Option<String>, at: Option<DateTime<Utc>>| {
        Understood::Quarantine(Quarantine {
            sha256: sha256.clone(),
            message_id,
            content_sha256: content_sha256.clone(),
            received_at: received_at.or(at).unwrap_or_else(Utc::now),
            reason,
            attention: None,
        })
    };
    let Some(parsed) = parsed else {
        let (size, limit) = (raw.len() as u64, rules.limits.max_message_bytes);
        return quarantine(QuarantineReason::TooLarge { size, limit, announced: false }, None, None);
    };
    let Some(mail) = parsed else {
        return quarantine(QuarantineReason::NotMail, None, None);
    };
    let message_id = mail.message_id.clone();
    let at = received_at.or(mail.date);
    if mail.part_count > rules.limits.max_parts {
        let (count, limit) = (mail.part_count, rules.limits.max_parts);
        return quarantine(QuarantineReason::TooManyParts { count, limit }, message_id, at);
    }
    if mail.depth > rules.limits.max_depth {
        let (depth, limit) = (mail.depth, rules.limits.max_depth);
        return quarantine(QuarantineReason::TooDeep { depth, limit }, message_id, at);
    }
    if let Some((name, size)) = oversized_part(&mail, rules.limits.max_document_bytes) {
        let limit = rules.limits.max_document_bytes;
        return quarantine(QuarantineReason::DocumentTooLarge { name, size, limit }, message_id, at);
    }
    let application = application_message(&mail, &rules.own_addresses);
    let Some(candidate) = application.sender.as_ref().and_then(candidate_from) else {
        return quarantine(QuarantineReason::NoSender, message_id, at);
    };
    let automated = robots::automated_reason(&mail, &candidate.email, &rules.own_addresses);
    let posting = match_posting(&mail, rules, at.unwrap_or_else(Utc::now).date_naive());
    let mut documents = application.containers;
    documents.extend(documents::find_documents(
        application.mail,
        application.letter_text.as_deref(),
        &candidate,
        rules,
    ));
    // A bounce, a newsletter or a robot with nothing to file is not an application: keep it out
    // of the candidate folders. (A job board relay that attaches a CV is filed, unanswered.)
    if let Some(automated) = &automated
        && documents.iter().all(|d| d.kind == DocKind::Ignored)
    {
        return quarantine(QuarantineReason::NotAnApplication { automated: automated.clone() }, message_id, at);
    }
    if rules.limits.dangerous == DangerousPolicy::Quarantine
        && let Some(danger) = documents.iter().find_map(|d| d.danger)
    {
        // No file name in the reason: it is logged, and names are the candidate's.
        let count = documents.iter().filter(|d| d.danger.is_some()).count();
        let reason = QuarantineReason::Dangerous { count, what: danger.describe().to_owned() };
        return Understood::Quarantine(Quarantine {
            sha256: sha256.clone(),
            message_id,
            content_sha256: content_sha256.clone(),
            received_at: received_at.or(at).unwrap_or_else(Utc::now),
            reason,
            attention: Some(Attention::DangerousAttachment),
        });
    }
    let (missing, unsure) = documents::missing_kinds(&documents);
    let evidence = intent::evidence(&mail, application.letter_text.as_deref(), &documents, &posting, rules);
    Understood::Application(Box::new(Application {
        sha256,
        message_id,
        content_sha256,
        subject: mail.subject.clone().unwrap_or_default(),
        received_at: at.unwrap_or_else(Utc::now),
        candidate,
        posting,
        documents,
        missing,
        unsure,
        automated,
        references: mail.references.clone(),
        evidence,
    }))
}

/// Lower-case and NFC: two spellings of one address are one candidate.
pub fn normalise_address(a: &str) -> String {
    a.trim().nfc().collect::<String>().to_lowercase()
}

/// The biggest part anywhere in the message (forwarded messages included) over the limit.
fn oversized_part(mail: &ParsedMail, limit: u64) -> Option<(String, u64)> {
    mail.parts.iter().find_map(|p| {
        if p.bytes.len() as u64 > limit {
            return Some((p.filename.clone().unwrap_or_else(|| "(unnamed)".into()), p.bytes.len() as u64));
        }
        p.message.as_deref().and_then(|m| oversized_part(m, limit))
    })
}

/// Where the application is inside the message that arrived.
struct ApplicationMessage<'a> {
    /// The message whose parts are the documents.
    mail: &'a ParsedMail,
    /// Who sent the application (From, or Reply-To for relays).
    sender: Option<MailAddress>,
    /// The text that may be the cover letter.
    letter_text: Option<String>,
    /// The forwarded messages opened on the way, listed as ignored parts.
    containers: Vec<Document>,
}

/// Follows forwards to the candidate's own message. A message with no document of its own and
/// exactly one attached message is a forward: the application is the attached one (repeatedly:
/// a forward of a forward). Otherwise an inline forward in the body names the original sender,
/// whose documents are the outer message's attachments.
fn application_message<'a>(mail: &'a ParsedMail, own: &[String]) -> ApplicationMessage<'a> {
    let mut current = mail;
    let mut containers = Vec::new();
    loop {
        let own_documents = current.parts.iter().any(documents::is_own_document);
        let attached: Vec<&parse::Part> =
            current.parts.iter().filter(|p| !p.in_report && p.message.is_some()).collect();
        let [part] = attached.as_slice() else { break };
        let Some(inner) = part.message.as_deref() else { break };
        if own_documents || sender_of(inner).is_none() {
            break;
        }
        let from = sender_of(inner).map(|a| a.address.clone()).unwrap_or_default();
        containers.push(Document {
            kind: DocKind::Ignored,
            confidence: 0.9,
            reason: format!("a forwarded message from {from}, opened: the application is inside"),
            decided_by: Reader::Container,
            original_name: part.filename.as_deref().map(parse::clean_line),
            content_type: part.content_type.clone(),
            extension: "eml".into(),
            size: part.bytes.len() as u64,
            sha256: sha256_hex(&part.bytes),
            also_cover_letter: false,
            danger: None,
            bytes: Vec::new(),
        });
        current = inner;
    }
    if containers.is_empty()
        && let Some(fwd) = mail.text_body.as_deref().and_then(forward::inline_forward)
    {
        let address = normalise_address(&fwd.from.address);
        let outer = sender_of(mail).map(|a| normalise_address(&a.address));
        if !own.contains(&address) && outer.as_ref() != Some(&address) && !robots::is_system_local_part(&address) {
            return ApplicationMessage { mail, sender: Some(fwd.from), letter_text: Some(fwd.body), containers };
        }
    }
    ApplicationMessage {
        mail: current,
        sender: sender_of(current).cloned(),
        letter_text: current.text_body.clone(),
        containers,
    }
}

/// The sender to treat as the candidate: From, unless it is a relay's system address and the
/// person is in Reply-To.
fn sender_of(mail: &ParsedMail) -> Option<&MailAddress> {
    match (mail.from.as_ref(), mail.reply_to.as_ref()) {
        (Some(f), Some(r)) if robots::is_system_local_part(&f.address) => Some(r),
        (Some(f), _) => Some(f),
        (None, Some(r)) => Some(r),
        (None, None) => None,
    }
}

fn candidate_from(chosen: &MailAddress) -> Option<Candidate> {
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
        language: p.language,
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
            language: rules.default_language.into(),
            closed: false,
            matched_by: "no posting configured".into(),
        },
    }
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
