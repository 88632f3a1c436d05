//! Applications that reach us forwarded: a colleague received the candidate's message and sent
//! it on. The candidate is then the original sender, not the colleague.
//!
//! Two shapes. As an attachment (`message/rfc822`), handled in [`super`] by descending into the
//! attached message. Inline, handled here: the mail client writes a marker line and the
//! original header block into the body, and keeps the original attachments on the outer message.
//!
//! ```text
//! ---------- Forwarded message ---------          Gmail (and "Message transféré" in French)
//! -------- Message transféré --------             Thunderbird ("Forwarded Message" in English)
//! Début du message réexpédié :                    Apple Mail ("Begin forwarded message:")
//! ```

use super::classify::fold;
use super::parse::MailAddress;

/// A forwarded message found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InlineForward {
    /// The original sender, from the forwarded header block.
    pub from: MailAddress,
    /// The original message's text, after its header block.
    pub body: String,
}

/// Marker lines, folded (lower case, accents and punctuation gone).
const MARKERS: &[&str] = &[
    "forwarded message",
    "message transfere",
    "begin forwarded message",
    "debut du message reexpedie",
    "mensaje reenviado",
    "weitergeleitete nachricht",
];

/// Header names that give the original sender, folded.
const FROM_NAMES: &[&str] = &["from", "de", "von", "da", "van"];

/// The first inline-forwarded message of a body, when its header block names a sender.
pub(crate) fn inline_forward(body: &str) -> Option<InlineForward> {
    let lines: Vec<&str> = body.lines().collect();
    let marker = lines.iter().position(|l| is_marker(l))?;
    let mut i = marker + 1;
    while lines.get(i).is_some_and(|l| l.trim().is_empty()) {
        i += 1;
    }
    let mut from = None;
    while let Some(line) = lines.get(i) {
        if line.trim().is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { break };
        if name.chars().count() > 30 {
            break;
        }
        if from.is_none() && FROM_NAMES.contains(&fold(name).as_str()) {
            from = parse_mailbox(value);
        }
        i += 1;
    }
    let body = lines.get(i..).unwrap_or_default().join("\n").trim().to_owned();
    Some(InlineForward { from: from?, body })
}

fn is_marker(line: &str) -> bool {
    let t = line.trim();
    // A marker is framed by dashes or ends in a colon: a sentence that says "forwarded
    // message" is not one.
    (t.starts_with("---") || t.ends_with(':')) && t.len() < 80 && MARKERS.contains(&fold(t).as_str())
}

/// `Name <addr>`, `"Name" <addr>`, `Name [mailto:addr]`, `<addr>` or a bare `addr`.
fn parse_mailbox(value: &str) -> Option<MailAddress> {
    let value = value.trim();
    let (name, address) = if let (Some(lt), Some(gt)) = (value.find('<'), value.rfind('>')) {
        (&value[..lt], value.get(lt + 1..gt)?)
    } else if let Some(at) = value.find("[mailto:") {
        let rest = &value[at + 8..];
        (&value[..at], &rest[..rest.find(']')?])
    } else {
        ("", value.split_whitespace().find(|w| w.contains('@'))?)
    };
    let address = address.trim().trim_start_matches("mailto:").trim();
    if !address.contains('@') || address.contains(char::is_whitespace) {
        return None;
    }
    let name = name.trim().trim_matches('"').trim();
    let name = (!name.is_empty() && name != address).then(|| name.to_owned());
    Some(MailAddress { address: address.to_owned(), name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(body: &str) -> Option<(String, Option<String>)> {
        inline_forward(body).map(|f| (f.from.address, f.from.name))
    }

    #[test]
    fn the_markers_of_the_common_clients() {
        let gmail = "Hi,\r\n\r\n---------- Forwarded message ---------\r\nFrom: Daniel Okafor <daniel.okafor@mail.test>\r\n\
                     Date: Mon, 2 Feb 2026 at 09:14\r\nSubject: Application\r\nTo: <s@example.test>\r\n\r\n\r\nDear Ms Garnier,\r\n";
        assert_eq!(from(gmail), Some(("daniel.okafor@mail.test".into(), Some("Daniel Okafor".into()))));
        assert_eq!(inline_forward(gmail).unwrap().body, "Dear Ms Garnier,");
        let thunderbird = "Marc\n\n-------- Message transféré --------\nSujet : \tCandidature\nDate : \tMon, 2 Feb 2026\n\
                           De : \tPaul Nguyen <paul.nguyen@mail.test>\nPour : \trecrutement@example.test\n\n\nBonjour,\n";
        assert_eq!(from(thunderbird), Some(("paul.nguyen@mail.test".into(), Some("Paul Nguyen".into()))));
        let apple = "Pour toi.\n\nDébut du message réexpédié :\n\nDe: Inès Haddad <ines.haddad@mail.test>\nObjet: Candidature\n\nBonjour\n";
        assert_eq!(from(apple), Some(("ines.haddad@mail.test".into(), Some("Inès Haddad".into()))));
        let apple_en = "Begin forwarded message:\n\nFrom: \"Tom Baker\" <tom@mail.test>\nSubject: CV\n\nHello\n";
        assert_eq!(from(apple_en), Some(("tom@mail.test".into(), Some("Tom Baker".into()))));
        let gmail_fr = "---------- Message transféré ---------\nDe : jd1987@mail.test\nDate : lun.\n\ncv\n";
        assert_eq!(from(gmail_fr), Some(("jd1987@mail.test".into(), None)));
        let outlook_style = "-------- Forwarded Message --------\nFrom: Ana Lima [mailto:ana.lima@mail.test]\n\nx\n";
        assert_eq!(from(outlook_style), Some(("ana.lima@mail.test".into(), Some("Ana Lima".into()))));
    }

    #[test]
    fn no_marker_or_no_sender_is_no_forward() {
        assert_eq!(inline_forward("Bonjour,\n\nVoici mon CV.\n"), None);
        assert_eq!(inline_forward("I forwarded message after message:\nFrom: x@y.test\n"), None);
        assert_eq!(inline_forward("---------- Forwarded message ---------\nSubject: no sender\n\nbody"), None);
        assert_eq!(inline_forward("---------- Forwarded message ---------\nFrom: Nobody <not an address>\n"), None);
        assert_eq!(inline_forward("---------- Forwarded message ---------"), None);
    }
}
