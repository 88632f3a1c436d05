//! What makes two copies of a message the same message: the evidence a Message-ID needs.
//!
//! A Message-ID alone proves nothing: broken clients, web forms and list software reuse them,
//! and one person's two different applications can share one. The raw bytes prove too much: a
//! message moved to another server, restored, or seen again after a UIDVALIDITY reset comes
//! back with the new server's `Received`, `Delivered-To` or `Return-Path` on top. The content
//! fingerprint hashes what the sender wrote and servers leave alone: the body (without the blank
//! lines at its end), and the header fields `From`, `To`, `Cc`, `Subject`, `Date` and
//! `Content-Type` (unfolded, spaces collapsed). Two copies with one Message-ID and one
//! fingerprint are one message.
//!
//! The body is hashed as IMAP serves it, byte for byte: servers hand messages out with CRLF line
//! endings, whatever they store, so there is nothing to normalise, and the body (most of a
//! message of up to 25 MB) goes through SHA-256 in one call, as fast as the raw hash.

/// The header fields the sender wrote that a server on the way does not rewrite.
const FIELDS: [&str; 6] = ["from", "to", "cc", "subject", "date", "content-type"];

/// The content fingerprint of a raw message (hex sha256); `None` when it has no header at all.
pub fn content_sha256(raw: &[u8]) -> Option<String> {
    // An mbox "From " line and blank lines before the header belong to the transport.
    let mut start = raw;
    if start.starts_with(b"From ") {
        start = start.iter().position(|&b| b == b'\n').map_or(&[][..], |eol| &start[eol + 1..]);
    }
    let skip = start.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let start = &start[skip..];
    let (head, body) = split_header(start);
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push(b' ');
                value.extend_from_slice(line);
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
            fields.push((name, line[colon + 1..].to_vec()));
        }
    }
    if fields.is_empty() {
        return None;
    }
    let mut head = b"mailroom-content-v1\n".to_vec();
    for wanted in FIELDS {
        head.extend_from_slice(wanted.as_bytes());
        head.push(b':');
        if let Some((_, value)) = fields.iter().find(|(n, _)| n == wanted) {
            head.extend(collapse_spaces(value));
        }
        head.push(b'\n');
    }
    head.push(b'\n');
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&head);
    ctx.update(body.trim_ascii_end());
    Some(hex::encode(ctx.finish()))
}

/// The header block and the body: split at the first empty line.
fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while let Some(nl) = raw[i..].iter().position(|&b| b == b'\n') {
        let end = i + nl + 1;
        let next = &raw[end..];
        if next.starts_with(b"\n") {
            return (&raw[..end], &raw[end + 1..]);
        }
        if next.starts_with(b"\r\n") {
            return (&raw[..end], &raw[end + 2..]);
        }
        i = end;
    }
    (raw, &[])
}

fn collapse_spaces(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_whitespace() {
            if !out.is_empty() && out.last() != Some(&b' ') {
                out.push(b' ');
            }
        } else {
            out.push(b);
        }
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Return-Path: <jeanne@example.test>\r\nFrom: Jeanne <jeanne@example.test>\r\nTo: contact@example.test\r\nSubject: Candidature\r\n stage\r\nDate: Mon, 9 Feb 2026 10:00:00 +0100\r\nMessage-ID: <1@localhost>\r\nContent-Type: text/plain\r\n\r\nBonjour,\r\nmon CV.\r\n";

    #[test]
    fn a_copy_with_the_next_servers_headers_is_the_same_content() {
        let fp = content_sha256(MESSAGE).unwrap();
        let mut moved =
            b"Delivered-To: contact@example.test\r\nReceived: from mx2 by imap2; Tue, 10 Feb 2026\r\n".to_vec();
        moved.extend_from_slice(MESSAGE);
        assert_eq!(content_sha256(&moved).unwrap(), fp);
        // Refolded, with an mbox line and a trailing blank line.
        let refolded = String::from_utf8_lossy(MESSAGE).replace("Candidature\r\n stage", "Candidature  stage");
        let mbox = format!("From MAILER-DAEMON Mon Feb  9 10:00:00 2026\r\n{refolded}\r\n");
        assert_eq!(content_sha256(mbox.as_bytes()).unwrap(), fp);
    }

    #[test]
    fn what_the_sender_wrote_differently_is_other_content() {
        let fp = content_sha256(MESSAGE).unwrap();
        let text = String::from_utf8_lossy(MESSAGE).into_owned();
        for other in [
            text.replace("mon CV.", "ma lettre."),
            text.replace("Subject: Candidature", "Subject: Application"),
            text.replace("From: Jeanne <jeanne@", "From: Jeanne <jeanne.d@"),
            text.replace("10:00:00", "10:05:00"),
            text.replace("text/plain", "text/html"),
        ] {
            assert_ne!(content_sha256(other.as_bytes()).unwrap(), fp, "{other}");
        }
        assert_eq!(content_sha256(b""), None);
        assert_eq!(content_sha256(b"\r\n\r\nbody only"), None);
    }
}
