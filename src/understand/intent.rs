//! Whether a message reads as an application at all: what lets an acknowledgement go to its
//! sender. The sender is not authenticated, so answering everything that arrives turns mailroom
//! into a backscatter source (spam and newsletters with forged senders get a "no documents"
//! reply). A message is an application when it was sent to a posting's own address, when it
//! carries documents, or when its subject or text speaks of applying, in French or English.

use serde::Serialize;

use super::classify::fold;
use super::parse::ParsedMail;
use super::{DocKind, Document, PostingRef, Rules, normalise_address};

/// Why a message reads as an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Sent to one of a posting's addresses (`postings.addresses`).
    PostingAddress,
    /// It carries a document: a CV, a letter (attached or written in the body), another file.
    Documents,
    /// Its subject or text speaks of applying, or names a posting's subject keyword.
    Words,
}

/// Words (folded: lower case, no accents, punctuation as spaces) that speak of applying. Whole
/// words only: "stagiaire" is one, "stage" another, "cvs" neither.
const WORDS: &[&str] = &[
    // French
    "candidature",
    "candidatures",
    "candidat",
    "candidate",
    "candidater",
    "postuler",
    "postule",
    "postulant",
    "postulante",
    "cv",
    "curriculum",
    "stage",
    "stagiaire",
    "alternance",
    "alternant",
    "alternante",
    "apprentissage",
    "lettre de motivation",
    "motivation",
    "offre d emploi",
    "demande d emploi",
    "offre de stage",
    "recrutement",
    "embauche",
    // English
    "application",
    "apply",
    "applying",
    "applicant",
    "internship",
    "intern",
    "resume",
    "cover letter",
    "job",
    "vacancy",
    "hiring",
];

/// How much of the text is read for words: an application says so early.
const TEXT_CHARS: usize = 20_000;

/// Why `mail` reads as an application, or `None` when nothing says it does.
pub(super) fn evidence(
    mail: &ParsedMail,
    text: Option<&str>,
    documents: &[Document],
    posting: &PostingRef,
    rules: &Rules,
) -> Option<Evidence> {
    if addressed_to_a_posting(mail, rules) {
        return Some(Evidence::PostingAddress);
    }
    if documents.iter().any(|d| d.kind != DocKind::Ignored) {
        return Some(Evidence::Documents);
    }
    let mut words = String::new();
    words.push_str(mail.subject.as_deref().unwrap_or_default());
    words.push('\n');
    words.extend(text.unwrap_or_default().chars().take(TEXT_CHARS));
    let folded = format!(" {} ", fold(&words));
    let keywords = rules.postings.iter().filter(|p| p.slug == posting.slug).flat_map(|p| &p.subject_keywords);
    let speaks = WORDS
        .iter()
        .copied()
        .map(str::to_owned)
        .chain(keywords.map(|k| fold(k)))
        .any(|w| !w.is_empty() && folded.contains(&format!(" {w} ")));
    speaks.then_some(Evidence::Words)
}

fn addressed_to_a_posting(mail: &ParsedMail, rules: &Rules) -> bool {
    let mut recipients: Vec<String> = mail.to.iter().chain(&mail.cc).map(|a| normalise_address(&a.address)).collect();
    for h in ["Delivered-To", "X-Original-To"] {
        if let Some(v) = mail.header(h) {
            recipients.push(normalise_address(v.trim_matches(['<', '>'])));
        }
    }
    rules.postings.iter().flat_map(|p| &p.addresses).any(|a| recipients.contains(&normalise_address(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::{Lang, PostingLang};

    fn rules() -> Rules {
        let posting = crate::config::Posting {
            slug: "alternance".into(),
            title: "Alternance".into(),
            language: PostingLang::Fr,
            addresses: vec!["alternance@example.test".into()],
            subject_keywords: vec!["gestion de projet".into()],
            default: false,
            closing_date: None,
            retention_months: None,
        };
        Rules {
            postings: vec![posting],
            limits: Default::default(),
            default_language: Lang::Fr,
            own_addresses: Vec::new(),
            text: crate::understand::extract::TextReader::with_program(None),
        }
    }

    fn posting() -> PostingRef {
        PostingRef {
            slug: "alternance".into(),
            title: "Alternance".into(),
            language: PostingLang::Fr,
            closed: false,
            matched_by: "default posting".into(),
        }
    }

    fn mail(subject: &str, to: &str) -> ParsedMail {
        ParsedMail {
            subject: Some(subject.into()),
            to: vec![super::super::parse::MailAddress { address: to.into(), name: None }],
            ..Default::default()
        }
    }

    #[test]
    fn words_about_applying_in_either_language_are_evidence() {
        let r = rules();
        let p = posting();
        for (subject, text) in [
            ("Candidature spontanée", ""),
            ("Bonjour", "Je souhaite postuler à votre offre, vous trouverez mon CV ci-joint."),
            ("Question", "Je cherche un stage de six mois."),
            ("Hello", "I would like to apply for the internship."),
            ("Re: gestion de projet", ""),
            ("Ma lettre de motivation", ""),
        ] {
            assert_eq!(
                evidence(&mail(subject, "contact@example.test"), Some(text), &[], &p, &r),
                Some(Evidence::Words),
                "{subject} / {text}"
            );
        }
        for (subject, text) in [
            ("Nos promotions de novembre", "Découvrez nos meilleures offres du mois."),
            ("Question", "Bonjour, quels sont vos horaires d'ouverture ?"),
            ("Facture", "Veuillez trouver votre facture (CVS export)."),
            ("", ""),
        ] {
            assert_eq!(
                evidence(&mail(subject, "contact@example.test"), Some(text), &[], &p, &r),
                None,
                "{subject} / {text}"
            );
        }
    }

    #[test]
    fn a_posting_address_is_evidence_enough() {
        let m = mail("Bonjour", "Alternance@Example.test");
        assert_eq!(
            evidence(&m, Some("Pouvez-vous me rappeler ?"), &[], &posting(), &rules()),
            Some(Evidence::PostingAddress)
        );
    }
}
