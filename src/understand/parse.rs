//! The one module that knows mail-parser. It turns raw bytes into [`ParsedMail`], a plain
//! structure the rest of mailroom reads, so a parser upgrade (mail-parser 1.x once the toolchain
//! allows it) touches this file only.
//!
//! mail-parser never panics on input and returns `None` only when there is nothing to parse;
//! everything here is total as well.

use chrono::{DateTime, Utc};
use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

/// A mailbox from a header: address and decoded display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAddress {
    pub address: String,
    pub name: Option<String>,
}

/// One non-body part of the message.
#[derive(Debug, Clone)]
pub struct Part {
    pub filename: Option<String>,
    /// `type/subtype`, lower-case.
    pub content_type: String,
    pub inline: bool,
    pub content_id: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ParsedMail {
    pub from: Option<MailAddress>,
    pub reply_to: Option<MailAddress>,
    pub to: Vec<MailAddress>,
    pub cc: Vec<MailAddress>,
    /// Raw (name, value) pairs of the top-level header, in order: robot rules read these.
    pub headers: Vec<(String, String)>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// `type/subtype` of the whole message, lower-case.
    pub content_type: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub parts: Vec<Part>,
    /// Every MIME part, nested messages included: a limit on it bounds the work per message.
    pub part_count: usize,
    /// Deepest nesting of multiparts and attached messages.
    pub depth: usize,
}

impl ParsedMail {
    /// The value of the first header with this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }
}

/// Parses a raw message. `None` when the bytes hold no message at all.
pub fn parse(raw: &[u8]) -> Option<ParsedMail> {
    let message = MessageParser::default().parse(raw)?;
    // A message without a single header is not mail (random bytes, an empty file).
    if message.headers().is_empty() {
        return None;
    }
    let mut parsed = ParsedMail {
        from: message.from().and_then(first_address),
        reply_to: message.reply_to().and_then(first_address),
        to: message.to().map(all_addresses).unwrap_or_default(),
        cc: message.cc().map(all_addresses).unwrap_or_default(),
        headers: message.headers_raw().map(|(n, v)| (n.to_owned(), unfold(v))).collect(),
        subject: message.subject().map(clean_line),
        message_id: message.message_id().map(str::to_owned),
        references: message
            .references()
            .as_text_list()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| message.references().as_text().map(|s| vec![s.to_owned()]).unwrap_or_default()),
        date: message.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        content_type: message
            .root_part()
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_else(|| "text/plain".into())
            .to_ascii_lowercase(),
        text_body: message.body_text(0).map(|t| t.into_owned()),
        html_body: message.body_html(0).filter(|_| message.html_body_count() > 0).map(|t| t.into_owned()),
        part_count: 0,
        depth: 0,
        parts: Vec::new(),
    };
    let (count, depth) = measure(&message, 1);
    parsed.part_count = count;
    parsed.depth = depth;
    // The text body converted from HTML is not what the sender wrote; keep it only if no text part.
    for part in message.attachments() {
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        parsed.parts.push(Part {
            filename: part.attachment_name().map(str::to_owned),
            content_type,
            inline: part.content_disposition().is_some_and(|d| d.is_inline())
                || (part.content_disposition().is_none() && part.content_id().is_some()),
            content_id: part.content_id().map(str::to_owned),
            bytes: part.contents().to_vec(),
        });
    }
    Some(parsed)
}

fn measure(message: &mail_parser::Message<'_>, level: usize) -> (usize, usize) {
    let mut count = 0;
    let mut depth = level;
    for part in &message.parts {
        count += 1;
        if let PartType::Message(inner) = &part.body {
            let (c, d) = measure(inner, level + 1);
            count += c;
            depth = depth.max(d);
        }
    }
    (count, depth)
}

fn first_address(a: &Address<'_>) -> Option<MailAddress> {
    a.iter().find_map(to_mail_address)
}

fn all_addresses(a: &Address<'_>) -> Vec<MailAddress> {
    a.iter().filter_map(to_mail_address).collect()
}

fn to_mail_address(a: &mail_parser::Addr<'_>) -> Option<MailAddress> {
    let address = a.address.as_deref()?.trim();
    if address.is_empty() {
        return None;
    }
    let name = a.name.as_deref().map(clean_line).filter(|n| !n.is_empty() && n != address);
    Some(MailAddress { address: address.to_owned(), name })
}

/// One line of text, control characters gone: what a subject or a display name may contain.
pub fn clean_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

fn unfold(v: &str) -> String {
    v.replace("\r\n", "").replace('\n', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert!(parse(b"").is_none());
        // Whatever it makes of binary junk, it must return.
        let _ = parse(&[0xff, 0xfe, 0x00, 0x01, b'\n', b':', b'\r']);
    }

    #[test]
    fn decodes_names_subject_and_attachment_names() {
        let raw = b"From: =?utf-8?q?Jeanne_Dupr=C3=A9?= <Jeanne.Dupre@Example.TEST>\r\n\
To: contact@example.test\r\n\
Subject: =?utf-8?q?Candidature_stage_=E2=80=93_gestion?=\r\n\
Message-ID: <abc@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Bonjour\r\n\
--b\r\n\
Content-Type: application/pdf; name=\"CV.pdf\"\r\n\
Content-Disposition: attachment; filename*=utf-8''CV%20Jeanne%20Dupr%C3%A9.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b--\r\n";
        let m = parse(raw).unwrap();
        let from = m.from.unwrap();
        assert_eq!(from.address, "Jeanne.Dupre@Example.TEST");
        assert_eq!(from.name.as_deref(), Some("Jeanne Dupré"));
        assert_eq!(m.subject.as_deref(), Some("Candidature stage – gestion"));
        assert_eq!(m.message_id.as_deref(), Some("abc@example.test"));
        assert_eq!(m.parts.len(), 1);
        assert_eq!(m.parts[0].filename.as_deref(), Some("CV Jeanne Dupré.pdf"));
        assert_eq!(m.parts[0].content_type, "application/pdf");
        assert_eq!(m.parts[0].bytes, b"%PDF-1.4\n");
        assert_eq!(m.text_body.as_deref().map(str::trim), Some("Bonjour"));
    }
}
