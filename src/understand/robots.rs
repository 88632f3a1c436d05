//! Who must never get an automatic answer: the rules of RFC 3834 and of Dovecot's Sieve
//! vacation extension, which are the reference for auto-responders. Each rule gives a reason,
//! recorded with the message, so a recruiter can see why nobody was answered.

use super::parse::ParsedMail;
use crate::reason::Automated;

/// System senders by local part: bounces, list software, no-reply robots.
pub(super) fn is_system_local_part(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or_default().to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon"
            | "postmaster"
            | "listserv"
            | "majordomo"
            | "mailman"
            | "root"
            | "daemon"
            | "nobody"
            | "noreply"
            | "no-reply"
            | "no_reply"
            | "donotreply"
            | "do-not-reply"
            | "do_not_reply"
            | "bounce"
            | "bounces"
    ) || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-bounces")
        || local.starts_with("noreply")
        || local.starts_with("no-reply")
}

/// Why this message must not be answered, or `None` when a person sent it.
pub(super) fn automated_reason(mail: &ParsedMail, candidate: &str, own: &[String]) -> Option<Automated> {
    match mail.header("Return-Path") {
        None => return Some(Automated::NoReturnPath),
        Some(rp) if rp.trim().trim_matches(['<', '>']).trim().is_empty() => return Some(Automated::EmptyReturnPath),
        Some(_) => {}
    }
    if let Some(v) = mail.header("Auto-Submitted") {
        let value = v.split(';').next().unwrap_or_default().trim();
        if !value.eq_ignore_ascii_case("no") {
            return Some(Automated::AutoSubmitted { value: value.to_owned() });
        }
    }
    if let Some((name, _)) = mail.headers.iter().find(|(n, _)| n.len() > 5 && n[..5].eq_ignore_ascii_case("list-")) {
        return Some(Automated::MailingList { header: name.clone() });
    }
    if let Some(p) = mail.header("Precedence")
        && ["bulk", "junk", "list"].iter().any(|b| p.eq_ignore_ascii_case(b))
    {
        return Some(Automated::Precedence { value: p.to_owned() });
    }
    if let Some(s) = mail.header("X-Auto-Response-Suppress")
        && s.split(',').any(|t| t.trim().eq_ignore_ascii_case("all") || t.trim().eq_ignore_ascii_case("autoreply"))
    {
        return Some(Automated::AutoResponseSuppress { value: s.to_owned() });
    }
    for h in ["X-Autoreply", "X-Autorespond", "X-Auto-Reply"] {
        if mail.header(h).is_some() {
            return Some(Automated::AutoReplyHeader { header: h.to_owned() });
        }
    }
    if mail.content_type == "multipart/report" {
        return Some(Automated::Report);
    }
    if is_system_local_part(candidate) {
        return Some(Automated::SystemSender);
    }
    if own.iter().any(|a| a == candidate) {
        return Some(Automated::OwnAddress);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(headers: &[(&str, &str)]) -> ParsedMail {
        ParsedMail {
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            content_type: "text/plain".into(),
            ..Default::default()
        }
    }

    const PERSON: (&str, &str) = ("Return-Path", "<jeanne@example.test>");

    #[test]
    fn a_person_gets_an_answer() {
        assert_eq!(automated_reason(&mail(&[PERSON, ("Auto-Submitted", "no")]), "jeanne@example.test", &[]), None);
    }

    #[test]
    fn every_rule_has_its_reason() {
        let who = "jeanne@example.test";
        for (headers, expect) in [
            (vec![], "no Return-Path"),
            (vec![("Return-Path", "<>")], "empty return path"),
            (vec![PERSON, ("Auto-Submitted", "auto-replied")], "Auto-Submitted"),
            (vec![PERSON, ("Auto-Submitted", "auto-generated; owner-email=x")], "Auto-Submitted"),
            (vec![PERSON, ("List-Id", "<jobs.example.test>")], "mailing list"),
            (vec![PERSON, ("list-unsubscribe", "<mailto:x>")], "mailing list"),
            (vec![PERSON, ("Precedence", "bulk")], "Precedence"),
            (vec![PERSON, ("Precedence", "JUNK")], "Precedence"),
            (vec![PERSON, ("X-Auto-Response-Suppress", "DR, AutoReply")], "X-Auto-Response-Suppress"),
            (vec![PERSON, ("X-Auto-Response-Suppress", "All")], "X-Auto-Response-Suppress"),
        ] {
            let reason = automated_reason(&mail(&headers), who, &[]).map(|a| a.describe(crate::lang::Lang::En));
            assert!(reason.as_deref().unwrap_or_default().contains(expect), "{headers:?}: {reason:?}");
        }
        let mut report = mail(&[PERSON]);
        report.content_type = "multipart/report".into();
        assert_eq!(automated_reason(&report, who, &[]), Some(Automated::Report));
        for system in [
            "MAILER-DAEMON@example.test",
            "owner-jobs@example.test",
            "jobs-request@example.test",
            "no-reply@example.test",
            "noreply.jobs@example.test",
        ] {
            assert!(automated_reason(&mail(&[PERSON]), &system.to_lowercase(), &[]).is_some(), "{system}");
        }
        let own = vec!["contact@example.test".to_string()];
        assert_eq!(automated_reason(&mail(&[PERSON]), "contact@example.test", &own), Some(Automated::OwnAddress));
        // Precedence: first-class is a person's mail.
        assert_eq!(automated_reason(&mail(&[PERSON, ("Precedence", "first-class")]), who, &[]), None);
    }
}
