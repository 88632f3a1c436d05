//! The one module that knows mail-parser. It turns raw bytes into [`ParsedMail`], a plain
//! structure the rest of mailroom reads, so a parser upgrade (mail-parser 1.x once the toolchain
//! allows it) touches this file only.
//!
//! mail-parser never panics on input and returns `None` only when there is nothing to parse;
//! everything here is total as well.

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::sniff;

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
    /// A part of a `multipart/report` (delivery status, read receipt, the returned message):
    /// written by a mail system, never by a candidate.
    pub in_report: bool,
    /// The message inside a `message/rfc822` part, parsed (a forwarded application).
    pub message: Option<Box<ParsedMail>>,
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
///
/// Read the way tolerant mail tools read it: blank lines before the header are skipped, and a
/// multipart whose boundary is missing, empty or never used takes the boundary from its first
/// `--xxx` line.
pub fn parse(raw: &[u8]) -> Option<ParsedMail> {
    // mail-parser reads anything as a message (a PDF's first line becomes a header name); mail
    // starts with a header field, or with the "From " line of an mbox.
    let raw = header_start(raw).map(|at| &raw[at..])?;
    let mut repaired: Option<Vec<u8>> = None;
    let mut repairs = 0;
    loop {
        let buf = repaired.as_deref().unwrap_or(raw);
        let fixed = {
            let message = MessageParser::default().parse(buf)?;
            // A message without a single header is not mail (random bytes, an empty file).
            if message.headers().is_empty() {
                return None;
            }
            match repair_boundary(&message, buf).filter(|_| repairs < MAX_BOUNDARY_REPAIRS) {
                Some(fixed) => fixed,
                None => {
                    let mut parsed = convert(&message, buf);
                    let (count, depth) = measure(&message, 1);
                    parsed.part_count = count;
                    parsed.depth = depth;
                    return Some(parsed);
                }
            }
        };
        repaired = Some(fixed);
        repairs += 1;
    }
}

/// Multiparts repaired in one message at most: each repair is a parse of the whole message.
const MAX_BOUNDARY_REPAIRS: usize = 8;

/// Where the header begins: after an mbox `From ` line and any blank or white lines (7 of 196
/// real messages in public test suites open with one; every mail client reads them). `None`
/// when what follows is not a header field (`Name:`).
fn header_start(raw: &[u8]) -> Option<usize> {
    let mut at = 0;
    if raw.starts_with(b"From ") {
        at = raw.iter().position(|&b| b == b'\n')? + 1;
    }
    loop {
        let line_end = raw[at..].iter().position(|&b| b == b'\n')?;
        if !raw[at..at + line_end].iter().all(|&b| b == b' ' || b == b'\t' || b == b'\r') {
            break;
        }
        at += line_end + 1;
    }
    starts_like_mail(&raw[at..]).then_some(at)
}

/// Whether the bytes open with a header field (`Name:`).
fn starts_like_mail(raw: &[u8]) -> bool {
    let name_len = raw.iter().take_while(|&&b| (33..=126).contains(&b) && b != b':').count();
    if name_len == 0 {
        return false;
    }
    let rest = &raw[name_len..];
    let spaces = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    rest.get(spaces) == Some(&b':')
}

/// The message with one broken multipart's `Content-Type` rewritten to name the boundary its
/// parts actually use; `None` when nothing needs repair. A multipart is broken when
/// mail-parser could not split it (no boundary, an empty one, or one that never occurs), and
/// its body has a `--xxx` line directly followed by a MIME header, as a delimiter line is.
fn repair_boundary(message: &Message<'_>, buf: &[u8]) -> Option<Vec<u8>> {
    let mut known = Vec::new();
    declared_boundaries(message, buf, &mut known);
    repair_in(message, buf, &known)
}

/// Every boundary the message's multiparts declare (nested messages in the same buffer included).
fn declared_boundaries(message: &Message<'_>, buf: &[u8], out: &mut Vec<String>) {
    for part in &message.parts {
        if let Some(b) = part.content_type().and_then(|ct| ct.attribute("boundary")).filter(|b| !b.is_empty()) {
            out.push(b.to_owned());
        }
        if let PartType::Message(inner) = &part.body
            && offsets_base(inner, buf).as_ptr() == buf.as_ptr()
        {
            declared_boundaries(inner, buf, out);
        }
    }
}

fn repair_in(message: &Message<'_>, buf: &[u8], known: &[String]) -> Option<Vec<u8>> {
    for part in &message.parts {
        let is_multipart = type_of(part).is_some_and(|t| t.starts_with("multipart/"));
        if is_multipart && !matches!(part.body, PartType::Multipart(_)) {
            let body = buf.get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)?;
            let Some(boundary) = first_delimiter(body, known) else { continue };
            let declared = part.content_type().and_then(|ct| ct.attribute("boundary"));
            if declared == Some(boundary.as_str()) {
                continue; // named already: mail-parser could not split it for another reason
            }
            let header = part.headers().iter().find(|h| h.name == HeaderName::ContentType)?;
            let (start, end) = (header.offset_start as usize, header.offset_end as usize);
            let old = buf.get(start..end)?;
            let subtype = type_of(part).unwrap_or_default();
            let eol: &[u8] = if old.ends_with(b"\r\n") { b"\r\n" } else { b"\n" };
            let mut fixed = Vec::with_capacity(buf.len() + boundary.len() + 32);
            fixed.extend_from_slice(&buf[..start]);
            fixed.extend_from_slice(format!(" {subtype}; boundary=\"{boundary}\"").as_bytes());
            fixed.extend_from_slice(eol);
            fixed.extend_from_slice(&buf[end..]);
            return Some(fixed);
        }
        if let PartType::Message(inner) = &part.body
            && offsets_base(inner, buf).as_ptr() == buf.as_ptr()
            && let Some(fixed) = repair_in(inner, buf, known)
        {
            return Some(fixed);
        }
    }
    None
}

/// The boundary of the first line `--xxx` that is followed by a `Content-…:` header line. A
/// boundary another multipart declares is an enclosing one's: the part ends there, and it is
/// never taken (a cut-off nested message must not swallow its parent's parts).
fn first_delimiter(body: &[u8], known: &[String]) -> Option<String> {
    let mut lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(b"--") else { continue };
        let boundary = rest.trim_ascii_end();
        let bare = boundary.strip_suffix(b"--").unwrap_or(boundary);
        if known.iter().any(|k| k.as_bytes() == boundary || k.as_bytes() == bare) {
            return None;
        }
        let next = lines.peek().copied().unwrap_or_default();
        let valid = !boundary.is_empty()
            && boundary.len() <= 200
            && !boundary[0].is_ascii_whitespace()
            && boundary.iter().all(|&b| (32..127).contains(&b) && b != b'"' && b != b'\\')
            && next.len() > 8
            && next[..8].eq_ignore_ascii_case(b"content-");
        if valid {
            return String::from_utf8(boundary.to_vec()).ok();
        }
    }
    None
}

/// The buffer a message's offsets point into. mail-parser gives a nested message that was not
/// transfer-encoded a slice of the outer buffer, or all of it, while its parts' offsets count
/// from the start of the outer buffer; an encoded one has a buffer and offsets of its own.
fn offsets_base<'a>(message: &'a Message<'_>, root: &'a [u8]) -> &'a [u8] {
    let own = message.raw_message();
    let root_range = root.as_ptr_range();
    if root_range.contains(&own.as_ptr()) || own.as_ptr() == root_range.start { root } else { own }
}

/// One level of the message tree; nested messages recurse through [`Part::message`]. `root` is
/// the buffer the whole message was parsed from.
fn convert(message: &Message<'_>, root: &[u8]) -> ParsedMail {
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
        content_type: type_of(message.root_part()).unwrap_or_else(|| "text/plain".into()),
        text_body: None,
        html_body: message.body_html(0).filter(|_| message.html_body_count() > 0).map(|t| t.into_owned()),
        part_count: 0,
        depth: 0,
        parts: Vec::new(),
    };
    let raw = offsets_base(message, root);
    let mut in_report: Vec<u32> = Vec::new();
    for part in &message.parts {
        if type_of(part).as_deref() == Some("multipart/report") {
            in_report.extend(part.sub_parts().unwrap_or_default());
        }
    }
    // Body parts that are in fact files (a PDF sent as `text/plain` with no name) join the
    // attachments; the text body is the first text part that is text.
    let mut text_body = None;
    let mut files: Vec<u32> = message.attachments.clone();
    for (pos, &id) in message.text_body.iter().enumerate() {
        let Some(part) = message.part(id) else { continue };
        if matches!(part.body, PartType::Text(_) | PartType::Html(_)) && is_file(part, &transfer_decoded(part, raw)) {
            files.push(id);
        } else if text_body.is_none() {
            text_body = message.body_text(pos).map(|t| t.into_owned());
        }
    }
    parsed.text_body = text_body;
    for &id in &message.html_body {
        if !files.contains(&id)
            && let Some(part) = message.part(id)
            && matches!(part.body, PartType::Html(_))
            && is_file(part, &transfer_decoded(part, raw))
        {
            files.push(id);
        }
    }
    files.sort_unstable();
    files.dedup();
    for id in files {
        let Some(part) = message.part(id) else { continue };
        let nested = part.message();
        let filename = attachment_name(part, raw);
        let declared = type_of(part);
        let mut content_type = declared.clone().unwrap_or_else(|| "application/octet-stream".into());
        let bytes = match (nested, &part.body) {
            // An unencoded nested message shares the outer buffer: its own bytes are the part's body.
            (Some(inner), _) if inner.raw_message().as_ptr() == raw.as_ptr() => {
                raw.get(part.raw_body_offset() as usize..part.raw_end_offset() as usize).unwrap_or_default().to_vec()
            }
            // mail-parser turns every text part into UTF-8 (lossy), and falls back to the raw
            // transfer encoding when a part is cut short or badly encoded. A file keeps its bytes:
            // a part with a name, an attachment, or bytes that cannot be text.
            (None, PartType::Text(_) | PartType::Html(_)) => {
                let decoded = transfer_decoded(part, raw);
                let is_attachment = part.content_disposition().is_some_and(|d| d.is_attachment());
                if filename.is_some() || is_attachment || part.is_encoding_problem || is_file(part, &decoded) {
                    if let Some(sniffed) = sniff::content_type(&decoded)
                        && sniff::declared_type_is_vague(declared.as_deref().unwrap_or_default())
                    {
                        content_type = sniffed.to_owned();
                    }
                    decoded
                } else {
                    part.contents().to_vec()
                }
            }
            _ => part.contents().to_vec(),
        };
        if declared.is_none()
            && let Some(sniffed) = sniff::content_type(&bytes)
        {
            content_type = sniffed.to_owned();
        }
        parsed.parts.push(Part {
            filename,
            content_type,
            inline: part.content_disposition().is_some_and(|d| d.is_inline())
                || (part.content_disposition().is_none() && part.content_id().is_some()),
            content_id: part.content_id().map(str::to_owned),
            in_report: in_report.contains(&id),
            message: nested.filter(|m| !m.headers().is_empty()).map(|m| Box::new(convert(m, raw))),
            bytes,
        });
    }
    parsed
}

/// Whether a part declared as text holds a file: a binary signature, or NUL bytes (which no text
/// charset a mail client declares has, UTF-16 and UTF-32 aside).
fn is_file(part: &MessagePart<'_>, decoded: &[u8]) -> bool {
    let charset = part.content_type().and_then(|ct| ct.attribute("charset")).unwrap_or_default().to_ascii_lowercase();
    if charset.starts_with("utf-16") || charset.starts_with("utf-32") || charset.starts_with("ucs") {
        return sniff::content_type(decoded).is_some();
    }
    sniff::is_binary(decoded)
}

/// A part's body as its transfer encoding gives it, decoded leniently from the raw bytes (as
/// tolerant readers do: characters outside the alphabet are skipped, a body cut short gives
/// what arrived). The declared encoding is read from the header: mail-parser forgets it for a
/// part it could not decode.
fn transfer_decoded(part: &MessagePart<'_>, raw: &[u8]) -> Vec<u8> {
    let body = raw.get(part.raw_body_offset() as usize..part.raw_end_offset() as usize).unwrap_or_default();
    let encoding = part.content_transfer_encoding().map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        // Base64, or base64 cut short; or not base64 at all (plain text under a wrong header, as
        // some mailers write), which keeps its bytes, as Python's email does. A `--` line ends
        // it: no base64 character is a dash, and mail-parser's end offset may lie past a
        // delimiter when it recovered from a broken structure.
        Some("base64") => {
            let end = body
                .split_inclusive(|&b| b == b'\n')
                .take_while(|l| !l.starts_with(b"--"))
                .map(<[u8]>::len)
                .sum::<usize>();
            let body = &body[..end];
            if looks_like_base64(body) { base64_lenient(body) } else { body.to_vec() }
        }
        Some("quoted-printable") => quoted_printable_lenient(body),
        // mail-parser's text is the part's exact bytes when they are UTF-8, and it is cut right
        // where the offsets of a recovered part are not: prefer it whenever it is lossless.
        _ => match part.contents() {
            text if body.starts_with(text) => text.to_vec(),
            _ => body.to_vec(),
        },
    }
}

/// Lines of the base64 alphabet only (the last one may be cut anywhere).
fn looks_like_base64(body: &[u8]) -> bool {
    let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    let (mut lines, mut good) = (0usize, 0usize);
    for line in body.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty()) {
        lines += 1;
        good += usize::from(line.iter().all(is_b64));
    }
    good > 0 && good * 10 >= lines * 9
}

fn base64_lenient(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn quoted_printable_lenient(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16);
    while i < body.len() {
        match body[i] {
            b'=' if body.get(i + 1) == Some(&b'\r') && body.get(i + 2) == Some(&b'\n') => i += 3,
            b'=' if body.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => match (body.get(i + 1).copied().and_then(hex), body.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn type_of(part: &MessagePart<'_>) -> Option<String> {
    part.content_type().map(|ct| {
        match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        }
        .to_ascii_lowercase()
    })
}

/// The attachment's name, with mail-parser 0.11's RFC 2231 defects repaired from the raw header:
/// continuations cut inside a UTF-8 sequence come out with U+FFFD, and a quote inside an
/// extended value (`filename*=utf-8''O'Brien.pdf`) is taken for the charset delimiter.
fn attachment_name(part: &MessagePart<'_>, raw: &[u8]) -> Option<String> {
    let parsed = part.attachment_name().map(str::to_owned);
    let raw_header = |name: HeaderName<'_>| {
        part.headers()
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
            .map(String::from_utf8_lossy)
    };
    let repaired = raw_header(HeaderName::ContentDisposition)
        .and_then(|v| rfc2231_param(&v, "filename"))
        .or_else(|| raw_header(HeaderName::ContentType).and_then(|v| rfc2231_param(&v, "name")));
    match (parsed, repaired) {
        (Some(p), Some(r)) if (p.contains('\u{FFFD}') || r.quote_in_value) && !r.value.contains('\u{FFFD}') => {
            Some(r.value)
        }
        (None, Some(r)) => Some(r.value),
        (p, _) => p,
    }
}

/// An RFC 2231 parameter decoded from the raw header value.
#[derive(Debug, PartialEq)]
struct Extended {
    value: String,
    /// The value holds a `'` past the charset and language: mail-parser 0.11 misreads those.
    quote_in_value: bool,
}

/// Decodes `param*=charset'lang'value` or its continuations `param*0*=…; param*1*=…` whole:
/// the segments' bytes are joined before the charset is applied, as RFC 2231 §4.1 requires.
/// `None` when the parameter is not in the extended form.
fn rfc2231_param(header_value: &str, param: &str) -> Option<Extended> {
    let unfolded = unfold(header_value);
    let mut segments: Vec<(u32, bool, String)> = Vec::new();
    for (name, value) in split_params(&unfolded) {
        let name = name.to_ascii_lowercase();
        let Some(rest) = name.strip_prefix(param) else { continue };
        let Some(rest) = rest.strip_prefix('*') else { continue };
        if rest.is_empty() {
            segments = vec![(0, true, value)];
            break;
        }
        let (number, encoded) = match rest.strip_suffix('*') {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Ok(n) = number.parse::<u32>() else { continue };
        if n < 1000 && !segments.iter().any(|s| s.0 == n) {
            segments.push((n, encoded, value));
        }
    }
    if segments.is_empty() {
        return None;
    }
    segments.sort_by_key(|s| s.0);
    let mut charset = String::new();
    let mut quote_in_value = false;
    let mut bytes = Vec::new();
    for (i, (_, encoded, value)) in segments.iter().enumerate() {
        let mut value = value.as_str();
        if i == 0 && *encoded {
            // charset'language'value: only the first two quotes delimit.
            let mut it = value.splitn(3, '\'');
            if let (Some(cs), Some(_lang), Some(v)) = (it.next(), it.next(), it.next()) {
                charset = cs.to_owned();
                value = v;
            }
        }
        quote_in_value |= *encoded && value.contains('\'');
        if *encoded {
            bytes.extend(percent_decode(value));
        } else {
            bytes.extend_from_slice(value.as_bytes());
        }
    }
    let value = decode_charset(&charset, &bytes);
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(Extended { value, quote_in_value })
}

/// `name=value` pairs of a structured header value (the first item, the type itself, has no `=`).
fn split_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    let mut item = String::new();
    let mut items = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                item.push(c);
                while let Some(q) = chars.next() {
                    item.push(q);
                    if q == '\\' {
                        if let Some(e) = chars.next() {
                            item.push(e);
                        }
                    } else if q == '"' {
                        break;
                    }
                }
            }
            ';' => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    items.push(item);
    for item in items {
        if let Some((name, value)) = item.split_once('=') {
            let value = value.trim();
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => value.to_owned(),
            };
            out.push((name.trim().to_owned(), value));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn decode_charset(charset: &str, bytes: &[u8]) -> String {
    let cs = charset.trim().to_ascii_lowercase();
    if cs.is_empty() || cs == "utf-8" || cs == "utf8" || cs == "us-ascii" {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match mail_parser::decoders::charsets::map::charset_decoder(cs.as_bytes()) {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn measure(message: &Message<'_>, level: usize) -> (usize, usize) {
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
    fn files_that_are_not_mail_are_none() {
        assert!(parse(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n").is_none());
        assert!(parse(b"\xfd]n\xa4\x96\xa4\x0e\xf8:\r\n").is_none());
        assert!(parse(b"just words: then a colon\r\n").is_none());
        assert!(
            parse(b"From jeanne@example.test Mon Feb  2 10:00:00 2026\nFrom: jeanne@example.test\n\nhi\n").is_some()
        );
        assert!(parse(b"Subject : spaced\r\n\r\nbody").is_some());
    }

    fn with_attachment(disposition: &str) -> Vec<u8> {
        format!(
            "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
             --b\r\nContent-Type: application/pdf\r\n{disposition}\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             JVBERi0xLjQK\r\n--b--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn rfc2231_continuations_cut_inside_a_utf8_sequence_decode_whole() {
        let raw = with_attachment(
            "Content-Disposition: attachment;\r\n filename*0*=utf-8''Relev%C3;\r\n filename*1*=%A9%20de%20notes.pdf",
        );
        assert_eq!(parse(&raw).unwrap().parts[0].filename.as_deref(), Some("Relevé de notes.pdf"));
        // Mixed encoded and plain segments, and a charset other than UTF-8.
        let raw = with_attachment(
            "Content-Disposition: attachment; filename*0*=iso-8859-1'fr'Dipl%F4me; filename*1=\" BTS.pdf\"",
        );
        assert_eq!(parse(&raw).unwrap().parts[0].filename.as_deref(), Some("Diplôme BTS.pdf"));
    }

    #[test]
    fn a_quote_inside_an_rfc2231_value_belongs_to_the_name() {
        let raw = with_attachment("Content-Disposition: attachment; filename*=utf-8''O'Brien_Portfolio.pdf");
        assert_eq!(parse(&raw).unwrap().parts[0].filename.as_deref(), Some("O'Brien_Portfolio.pdf"));
        let raw = with_attachment("Content-Disposition: attachment; filename*=UTF-8'en'l'%C3%A9t%C3%A9.pdf");
        assert_eq!(parse(&raw).unwrap().parts[0].filename.as_deref(), Some("l'été.pdf"));
    }

    #[test]
    fn names_mail_parser_gets_right_are_left_alone() {
        for (header, want) in [
            ("Content-Disposition: attachment; filename=\"CV.pdf\"", "CV.pdf"),
            ("Content-Disposition: attachment; filename*=utf-8''CV%20Ren%C3%A9e.pdf", "CV Renée.pdf"),
            ("Content-Disposition: attachment; filename=\"=?utf-8?q?Lettre_Ren=C3=A9e.pdf?=\"", "Lettre Renée.pdf"),
        ] {
            assert_eq!(parse(&with_attachment(header)).unwrap().parts[0].filename.as_deref(), Some(want), "{header}");
        }
    }

    #[test]
    fn every_truncation_of_a_broken_message_parses_without_panic() {
        // Blank lines first, a multipart without a boundary holding an attached message with a
        // base64 PDF declared text/plain: cut at every byte.
        let raw = b"\r\n \r\nFrom: a@example.test\r\nContent-Type: multipart/mixed\r\n\r\npreamble\r\n\
--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@example.test\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n\
--b2\r\nContent-Type: text/plain; name=\"cv.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK4uPP0w==\r\n\
--b2--\r\n--b1--\r\n";
        for n in 0..=raw.len() {
            let _ = parse(&raw[..n]);
        }
        let m = parse(raw).expect("the whole message parses");
        let inner = m.parts.iter().find_map(|p| p.message.as_deref()).expect("the attached message");
        assert_eq!(inner.parts[0].bytes, b"%PDF-1.4\n\xe2\xe3\xcf\xd3");
        assert_eq!(inner.parts[0].content_type, "application/pdf");
    }

    #[test]
    fn rfc2231_decoder_is_total() {
        for v in [
            "attachment; filename*0*=%",
            "attachment; filename*=''",
            "attachment; filename*99999999999*=x",
            "attachment; filename*=\"unterminated",
            "attachment; filename*1*=%41; filename*0*=utf-8''%42",
            ";;;==;*=",
        ] {
            let _ = rfc2231_param(v, "filename");
        }
        assert_eq!(
            rfc2231_param("attachment; filename*1*=%41; filename*0*=utf-8''%42", "filename").unwrap().value,
            "BA"
        );
    }

    #[test]
    fn report_parts_are_marked_and_nested_messages_parsed() {
        let raw = b"From: MAILER-DAEMON@example.test\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\nAction: failed\r\n\
--r\r\nContent-Type: message/rfc822\r\n\r\nFrom: Jeanne <jeanne@example.test>\r\nSubject: CV\r\n\r\nhello\r\n\
--r--\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.content_type, "multipart/report");
        assert!(!m.parts.is_empty());
        assert!(m.parts.iter().all(|p| p.in_report), "{:?}", m.parts);
        let returned = m.parts.iter().find_map(|p| p.message.as_ref()).expect("the returned message is parsed");
        assert_eq!(returned.from.as_ref().unwrap().address, "jeanne@example.test");
        let eml = m.parts.iter().find(|p| p.content_type == "message/rfc822").unwrap();
        assert!(eml.bytes.starts_with(b"From: Jeanne"), "{:?}", String::from_utf8_lossy(&eml.bytes));
        assert!(!eml.bytes.windows(11).any(|w| w == b"MAILER-DAEM"), "only the nested message's bytes");
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
