//! The message body as a cover letter. Candidates write their letter straight into the mail as
//! often as they attach it, and they open and close it every way a letter can: "Madame,
//! Monsieur,", "À l'attention du service recrutement,", "To the Recruitment Team,", "Dear Hiring
//! Manager,"; "Je vous prie d'agréer…", "Bien à vous,", "Best,", their name under it.
//!
//! So the body is read for a letter's structure rather than for a list of formulas: an opening
//! line (salutation or addressee), a closing line, a signature with the candidate's name,
//! paragraphs of first-person prose, and words about applying. A note ("Bonjour, ci-joint mon
//! CV. Cordialement") is too short to be a letter; quoted replies, forwarded headers and
//! signatures after "-- " are cut first.

use super::classify::{DocKind, fold};
use super::{Candidate, Document, Reader, sha256_hex};

/// A body shorter than this is a note ("please find my CV attached"), not a letter.
const MIN_CHARS: usize = 150;
/// Prose shorter than this that asks a question is a question ("is the internship still open?").
const QUESTION_MAX_WORDS: usize = 80;
/// Prose: a paragraph of at least this many words.
const PROSE_WORDS: usize = 10;

/// Openings, folded, matched at the start of one of the first lines.
const OPENINGS: &[&str] = &[
    "madame",
    "monsieur",
    "mesdames",
    "messieurs",
    "bonjour",
    "bonsoir",
    "cher",
    "chere",
    "a l attention",
    "a l intention",
    "attention",
    "dear",
    "hello",
    "hi",
    "good morning",
    "good afternoon",
    "to whom",
    "to the",
    "greetings",
];

/// Closings, folded, matched at the start of one of the last lines. The short ones ("Best,")
/// only on a short line of their own.
const CLOSINGS: &[&str] = &[
    "je vous prie",
    "veuillez",
    "recevez",
    "dans l attente",
    "en vous remerciant",
    "je vous remercie",
    "je reste a votre disposition",
    "je me tiens a votre disposition",
    "cordialement",
    "bien cordialement",
    "tres cordialement",
    "bien a vous",
    "salutations",
    "sinceres salutations",
    "respectueusement",
    "belle journee",
    "bonne journee",
    "merci",
    "a bientot",
    "sincerely",
    "yours",
    "regards",
    "kind regards",
    "best regards",
    "warm regards",
    "best",
    "best wishes",
    "all the best",
    "many thanks",
    "thanks",
    "thank you",
    "cheers",
    "i look forward",
    "looking forward",
];

/// Words about applying: the letter is about the posting, not about anything else.
const APPLYING: &[&str] = &[
    "candidature",
    "candidate",
    "candidater",
    "postuler",
    "poste",
    "stage",
    "alternance",
    "offre",
    "annonce",
    "recrutement",
    "motivation",
    "apply",
    "applying",
    "application",
    "internship",
    "position",
    "role",
    "vacancy",
    "opportunity",
    "job",
];

/// Beginnings of the words of someone presenting themselves for work: studies, experience,
/// skills, availability ("travaill" is travailler, travaillé, travaillant). Two of them stand for
/// a word about applying: a letter that never says "apply" still says "my degree", "my last
/// placement", "available from March".
const PRESENTING: &[&str] = &[
    "experien",
    "placement",
    "stagiaire",
    "internship",
    "degree",
    "diplom",
    "master",
    "licence",
    "bachelor",
    "etud",
    "studi",
    "student",
    "graduat",
    "competen",
    "skill",
    "dispon",
    "availab",
    "motiv",
    "contribu",
    "apport",
    "rejoi",
    "join",
    "dissertation",
    "memoire",
    "cours",
    "parcours",
    "formation",
    "projet",
    "project",
    "travail",
    "work",
    "appren",
    "appris",
    "learn",
    "commenc",
    "start",
    "carrier",
    "career",
    "reorient",
    "benevol",
    "volunt",
    "atelier",
    "workshop",
    "keen",
    "interest",
    "curieu",
    "curious",
    "rigoureu",
    "rigorous",
    "organis",
    "organiz",
    "method",
    "autonom",
    "mobil",
    "relocat",
    "coordon",
    "coordin",
    "budget",
];

const FIRST_PERSON: &[&str] = &["je", "j", "me", "m", "moi", "mon", "ma", "mes", "i", "my", "me", "myself", "i m"];

/// The body as a cover letter, when it reads like one.
pub(super) fn letter(text: &str, candidate: &Candidate) -> Option<Document> {
    let own = own_text(text);
    let trimmed = own.trim();
    if trimmed.chars().count() < MIN_CHARS {
        return None;
    }
    let lines: Vec<&str> = trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let folded_lines: Vec<String> = lines.iter().map(|l| fold(l)).collect();
    let starts_with = |line: &str, start: &str| line == start || line.starts_with(&format!("{start} "));

    // A salutation or a valediction is known by its words, or by its form: a short line of its
    // own that ends with a comma ("Chère équipe,", "Sincèrement,", "All the best,").
    let by_form = |i: usize| {
        let line = lines[i].trim_end();
        line.ends_with([',', ':', '!']) && folded_lines[i].split(' ').count() <= 8
    };
    let opening = folded_lines.iter().enumerate().take(3).find_map(|(i, l)| {
        let listed = OPENINGS.iter().find(|o| starts_with(l, o)).copied().filter(|_| l.split(' ').count() <= 14);
        listed.map(|o| format!("{o:?}")).or_else(|| by_form(i).then(|| format!("{:?}", lines[i])))
    });
    let tail_from = folded_lines.len().saturating_sub(6).max(1);
    let closing = (tail_from..folded_lines.len()).find_map(|i| {
        let l = &folded_lines[i];
        let words = l.split(' ').count();
        let listed = CLOSINGS.iter().find(|c| starts_with(l, c) && (words <= 6 || c.contains(' '))).copied();
        listed.map(|c| format!("{c:?}")).or_else(|| by_form(i).then(|| format!("{:?}", lines[i])))
    });
    let names: Vec<String> = [&candidate.given_name, &candidate.family_name, &candidate.name]
        .into_iter()
        .flatten()
        .map(|n| fold(n))
        .filter(|n| n.len() >= 2)
        .collect();
    let signed = folded_lines[folded_lines.len().saturating_sub(3)..]
        .iter()
        .any(|l| l.split(' ').count() <= 6 && names.iter().any(|n| format!(" {l} ").contains(&format!(" {n} "))));

    // Paragraphs: blank-line separated, or long lines on their own.
    let paragraphs: Vec<String> =
        trimmed.split("\n\n").map(fold).filter(|p| p.split(' ').count() >= PROSE_WORDS).collect();
    let prose_words: Vec<&str> = paragraphs.iter().flat_map(|p| p.split(' ')).collect();
    let first_person = prose_words.iter().filter(|w| FIRST_PERSON.contains(w)).count();
    let density = first_person as f32 / prose_words.len().max(1) as f32;
    let applying = prose_words.iter().find(|w| APPLYING.contains(w)).copied();
    let mut presenting: Vec<&str> =
        prose_words.iter().filter_map(|w| PRESENTING.iter().find(|p| w.starts_with(**p)).copied()).collect();
    presenting.sort_unstable();
    presenting.dedup();

    // What every letter has: prose in the first person about applying, opened or closed as a
    // letter; and enough of the rest.
    let frame = usize::from(opening.is_some()) + usize::from(closing.is_some()) + usize::from(signed);
    // A short letter needs its whole frame: opened, closed and signed.
    let enough = prose_words.len() >= 30 || (frame == 3 && prose_words.len() >= 18);
    let prose = !paragraphs.is_empty() && enough && density >= 0.03;
    let asks = prose_words.len() < QUESTION_MAX_WORDS && trimmed.contains('?');
    if !prose || asks || (applying.is_none() && presenting.len() < 2) || frame < 2 {
        return None;
    }
    let mut evidence = Vec::new();
    if let Some(o) = &opening {
        evidence.push(format!("opening {o}"));
    }
    if let Some(c) = &closing {
        evidence.push(format!("closing {c}"));
    }
    if signed {
        evidence.push("signed with the candidate's name".to_owned());
    }
    evidence.push(format!("{} paragraph{} of first-person prose", paragraphs.len(), plural(paragraphs.len())));
    match applying {
        Some(a) => evidence.push(format!("about applying ({a:?})")),
        None => evidence.push(format!("presenting themselves ({})", presenting.join(", "))),
    }
    let bytes = trimmed.as_bytes().to_vec();
    Some(Document {
        kind: DocKind::CoverLetter,
        confidence: (0.5 + 0.07 * (frame as f32 + 1.0)).min(0.85),
        reason: format!(
            "no letter attached; the message body reads as one ({} words: {})",
            trimmed.split_whitespace().count(),
            evidence.join(", ")
        ),
        decided_by: Reader::Body,
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The candidate's own words: up to quoted history, a forwarded or replied-to header block, or
/// the signature; quoted lines dropped.
fn own_text(text: &str) -> String {
    let is_cut = |l: &str| {
        let l = l.trim_end();
        let f = fold(l);
        l == "--"
            || l == "-- "
            || l.starts_with("-----")
            || l.starts_with("________________________________")
            || (l.starts_with("Le ") && (l.ends_with("a écrit :") || l.ends_with("a écrit:")))
            || (l.starts_with("On ") && l.ends_with("wrote:"))
            || f.starts_with("envoye de mon")
            || f.starts_with("sent from my")
            || f.starts_with("envoye depuis")
    };
    text.lines().take_while(|l| !is_cut(l)).filter(|l| !l.starts_with('>')).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jeanne() -> Candidate {
        Candidate {
            email: "jeanne.dupre@example.test".into(),
            name: Some("Jeanne Dupré".into()),
            given_name: Some("Jeanne".into()),
            family_name: Some("Dupré".into()),
        }
    }

    fn is_letter(text: &str) -> bool {
        letter(text, &jeanne()).is_some()
    }

    const BODY: &str = "Actuellement en dernière année de master, je souhaite vous proposer ma candidature pour le \
stage d'assistante en gestion de projet que vous publiez sur votre site.\n\nLors de mon stage précédent, j'ai \
coordonné des ateliers de concertation et j'ai appris à tenir un budget partagé entre plusieurs partenaires. \
Je serais heureuse d'en parler avec vous.";

    #[test]
    fn openings_and_closings_beyond_the_formulas() {
        for (open, close) in [
            ("À l'attention du service recrutement,", "Bien à vous,"),
            ("Madame, Monsieur,", "Je vous prie d'agréer, Madame, Monsieur, mes salutations distinguées."),
            ("Bonjour Madame Moreau,", "Belle journée,"),
            ("To the Recruitment Team,", "Best,"),
            ("Dear Hiring Manager,", "Thanks,"),
        ] {
            let text = format!("{open}\n\n{BODY}\n\n{close}\nJeanne Dupré\n");
            assert!(is_letter(&text), "{open} … {close}");
        }
    }

    #[test]
    fn a_signature_with_the_name_counts_as_the_closing() {
        let text = format!("Bonjour,\n\n{BODY}\n\nJeanne Dupré\n06 12 34 56 78\n");
        let doc = letter(&text, &jeanne()).unwrap();
        assert!(doc.reason.contains("signed with the candidate's name"), "{}", doc.reason);
    }

    #[test]
    fn notes_signatures_and_quotes_are_not_letters() {
        assert!(!is_letter("Bonjour,\n\nci-joint mon CV et ma lettre.\n\nCordialement,\nJeanne Dupré\n"));
        // Long enough, but no frame at all: a text pasted without opening or closing.
        assert!(!is_letter(BODY));
        // The letter-like part is only in the quoted history.
        let quoted: String = format!("Madame, Monsieur,\n\n{BODY}\n\nCordialement,\nJeanne")
            .lines()
            .map(|l| format!("> {l}\n"))
            .collect();
        assert!(!is_letter(&format!("Voici mon CV.\n\nJeanne\n\nLe 3 févr. 2026, X a écrit :\n{quoted}")));
        // A question about the posting, framed as a letter.
        let question = "Bonjour,\n\nEst-ce que le stage est toujours ouvert ? Je voudrais savoir s'il est possible \
de le faire à temps partiel, et à partir de quelle date. Merci d'avance pour votre réponse.\n\nCordialement,\n\
Jeanne Dupré\n";
        assert!(!is_letter(question));
        // Not about applying: a thank-you after an interview.
        let thanks = "Bonjour Madame Moreau,\n\nMerci beaucoup pour notre échange de ce matin, j'ai beaucoup \
apprécié de découvrir vos locaux et de rencontrer toute l'équipe. Je vous renvoie comme convenu les \
références du livre dont je vous ai parlé, que je trouve très éclairant sur ces sujets.\n\nJe vous souhaite \
une excellente fin de semaine et je reste disponible si besoin.\n\nBien à vous,\nJeanne Dupré\n";
        assert!(!is_letter(thanks));
    }
}
