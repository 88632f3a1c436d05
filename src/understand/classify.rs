//! Tells a CV from a cover letter by the attachment's name: French and English words, accents,
//! case and separators folded. A first cut that later stages refine with the document's text.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::lang::Lang;

/// What a part of an application is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Cv,
    CoverLetter,
    /// Diplomas, portfolio, references: kept, but neither of the two we ask for.
    Other,
    /// Signature logos, vCards, S/MIME signatures: not filed.
    Ignored,
    /// We could not tell: unreadable (a bomb, encrypted, corrupt, a format we cannot read) or
    /// too little evidence. Filed under its own name, never taken for the CV or the letter; the
    /// team checks it.
    Unknown,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Cv => "cv",
            DocKind::CoverLetter => "cover_letter",
            DocKind::Other => "other",
            DocKind::Ignored => "ignored",
            DocKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<DocKind> {
        [DocKind::Cv, DocKind::CoverLetter, DocKind::Other, DocKind::Ignored, DocKind::Unknown]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// What a person calls it, in their language.
    pub fn label(self, lang: Lang) -> &'static str {
        match (lang, self) {
            (Lang::En, DocKind::Cv) => "CV",
            (Lang::En, DocKind::CoverLetter) => "cover letter",
            (Lang::En, DocKind::Unknown) => "document to check",
            (Lang::En, _) => "other document",
            (Lang::Fr, DocKind::Cv) => "CV",
            (Lang::Fr, DocKind::CoverLetter) => "lettre de motivation",
            (Lang::Fr, DocKind::Unknown) => "document à vérifier",
            (Lang::Fr, _) => "autre document",
        }
    }
}

/// The classifier's verdict with its confidence (0–1) and the reason, kept in the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: DocKind,
    pub confidence: f32,
    pub reason: String,
    /// The one file stands for the cover letter too ("CV et lettre de motivation.pdf").
    pub also_cover_letter: bool,
}

impl Verdict {
    pub fn new(kind: DocKind, confidence: f32, reason: impl Into<String>) -> Self {
        Verdict { kind, confidence, reason: reason.into(), also_cover_letter: false }
    }
}

/// Lower-case, accents removed, ligatures opened ("ﬁ" is "fi"), every run of non-alphanumerics
/// (and camelCase humps) made one space.
pub(crate) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev_lower = false;
    for c in text.nfkd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            // "LettreMotivation" and "CVJeanne" are two words each.
            if c.is_uppercase() && prev_lower && !out.ends_with(' ') {
                out.push(' ');
            }
            prev_lower = c.is_lowercase() || c.is_numeric();
            out.extend(c.to_lowercase());
        } else {
            prev_lower = false;
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The lower-case extension of a file name, if it has a plausible one.
pub(crate) fn extension(name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 5 || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// Extensions of documents a person writes (as opposed to images, archives, signatures).
pub(crate) fn is_document_extension(ext: &str) -> bool {
    matches!(ext, "pdf" | "doc" | "docx" | "odt" | "rtf" | "txt" | "pages")
}

const LETTER_PHRASES: &[&str] = &[
    "lettre de motivation",
    "lettre motivation",
    "cover letter",
    "covering letter",
    "letter of motivation",
    "motivation letter",
    "letter of application",
];
const LETTER_WORDS: &[&str] = &["lm", "motivation", "lettre", "coverletter", "letter", "lettremotivation"];
const CV_WORDS: &[&str] = &["cv", "curriculum", "vitae", "resume", "cvs"];
const IGNORED_EXTENSIONS: &[&str] = &["vcf", "p7s", "p7m", "asc", "sig", "ics"];
/// Someone else writing about the candidate: a letter, but never the cover letter.
const RECOMMENDATION_WORDS: &[&str] = &[
    "recommandation",
    "recommandations",
    "recommendation",
    "recommendations",
    "reference",
    "references",
    "referee",
    "referees",
    "temoignage",
];
const SUPPORTING_WORDS: &[&str] = &[
    "diplome",
    "diplomes",
    "diploma",
    "portfolio",
    "releve",
    "notes",
    "transcript",
    "attestation",
    "certificat",
    "certificate",
    "photo",
];

/// Classifies an attachment by its file name alone. `None`: the name does not tell.
///
/// The words of a supporting document win over the bare letter words: "Lettre de
/// recommandation.pdf" and "Reference letter.pdf" are letters, but about the candidate, not
/// from them. A cover-letter phrase ("lettre de motivation", "cover letter") still wins.
pub(crate) fn classify_filename(name: &str) -> Option<Verdict> {
    let ext = extension(name);
    if let Some(ext) = ext.as_deref()
        && IGNORED_EXTENSIONS.contains(&ext)
    {
        return Some(Verdict::new(DocKind::Ignored, 0.95, format!("a .{ext} file is not an application document")));
    }
    let stem = match ext.as_deref() {
        Some(ext) => &name[..name.len() - ext.len() - 1],
        None => name,
    };
    let folded = fold(stem);
    let words: Vec<&str> = folded.split(' ').collect();
    let find = |list: &[&str]| words.iter().find(|w| list.contains(w)).copied();
    let padded = format!(" {folded} ");
    let phrase = LETTER_PHRASES.iter().find(|p| padded.contains(&format!(" {p} "))).copied();
    let recommendation = find(RECOMMENDATION_WORDS);
    let supporting = recommendation.or_else(|| find(SUPPORTING_WORDS));
    let letter = phrase.or_else(|| find(LETTER_WORDS).filter(|_| supporting.is_none()));
    // "CV_Jeanne", "cvJeanne", "MonCV": the token may be glued to a name.
    let cv = find(CV_WORDS).or_else(|| {
        words.iter().find(|w| (w.starts_with("cv") || w.ends_with("cv")) && w.len() <= 12 && w.len() > 2).copied()
    });
    match (cv, letter) {
        (Some(c), Some(l)) => Some(Verdict {
            also_cover_letter: true,
            ..Verdict::new(DocKind::Cv, 0.6, format!("file name mentions both a CV ({c:?}) and a letter ({l:?})"))
        }),
        (Some(c), None) => Some(Verdict::new(DocKind::Cv, 0.9, format!("file name contains {c:?}"))),
        (None, Some(l)) => Some(Verdict::new(DocKind::CoverLetter, 0.9, format!("file name contains {l:?}"))),
        (None, None) => match (recommendation, supporting) {
            (Some(r), _) => {
                Some(Verdict::new(DocKind::Other, 0.85, format!("file name names a recommendation letter ({r:?})")))
            }
            (None, Some(w)) => {
                Some(Verdict::new(DocKind::Other, 0.8, format!("file name names a supporting document ({w:?})")))
            }
            (None, None) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> Option<DocKind> {
        classify_filename(name).map(|v| v.kind)
    }

    #[test]
    fn folds_accents_case_separators_and_humps() {
        assert_eq!(fold("Lettre_de_Motivation-Étudiante"), "lettre de motivation etudiante");
        assert_eq!(fold("CVJeanneDupré"), "cvjeanne dupre");
        assert_eq!(fold("LettreMotivation"), "lettre motivation");
        assert_eq!(fold("  --  "), "");
    }

    #[test]
    fn french_and_english_cv_names() {
        for name in [
            "CV.pdf",
            "cv_jeanne_dupre.pdf",
            "Jeanne Dupré - CV 2020.pdf",
            "CURRICULUM VITAE.docx",
            "Résumé.pdf",
            "resume-john-smith.pdf",
            "MonCV.pdf",
            "CVJeanneDupre.pdf",
            "Curriculum_Vitae_Marie.odt",
        ] {
            assert_eq!(kind(name), Some(DocKind::Cv), "{name}");
        }
    }

    #[test]
    fn french_and_english_letter_names() {
        for name in [
            "Lettre de motivation.pdf",
            "LETTRE_MOTIVATION_JDupre.pdf",
            "LM Jeanne Dupré.pdf",
            "lm.docx",
            "Motivation.pdf",
            "Cover Letter - John Smith.pdf",
            "coverletter.pdf",
            "LettreMotivation.pdf",
            "lettre-de-motivation-stage.odt",
        ] {
            assert_eq!(kind(name), Some(DocKind::CoverLetter), "{name}");
        }
    }

    #[test]
    fn names_that_do_not_tell() {
        for name in ["Jeanne_Dupré.pdf", "Document1.pdf", "scan0001.pdf", "candidature.pdf", "IMG_2020.jpg", ""] {
            assert_eq!(kind(name), None, "{name}");
        }
    }

    #[test]
    fn words_inside_other_words_do_not_count() {
        // "lm" inside "film", "cv" inside a long word: no.
        assert_eq!(kind("film_festival.pdf"), None);
        assert_eq!(kind("acvxxxxxxxxxxxxxxxx.pdf"), None);
    }

    #[test]
    fn signatures_and_cards_are_ignored() {
        assert_eq!(kind("smime.p7s"), Some(DocKind::Ignored));
        assert_eq!(kind("Jeanne Dupré.vcf"), Some(DocKind::Ignored));
    }

    #[test]
    fn both_words_file_as_cv_with_lower_confidence() {
        let v = classify_filename("CV et lettre de motivation.pdf").unwrap();
        assert_eq!(v.kind, DocKind::Cv);
        assert!(v.also_cover_letter);
        assert!(v.confidence < 0.9);
    }

    #[test]
    fn supporting_documents() {
        assert_eq!(kind("Diplôme Master.pdf"), Some(DocKind::Other));
        assert_eq!(kind("portfolio.pdf"), Some(DocKind::Other));
        assert_eq!(kind("Photo d'identité.jpg"), Some(DocKind::Other));
    }

    #[test]
    fn recommendation_letters_are_not_cover_letters() {
        for name in [
            "Lettre de recommandation.pdf",
            "Letter of recommendation.pdf",
            "Lettre_de_recommandation_M_Durand.pdf",
            "Reference letter - Dr Ellison.pdf",
            "Recommendation Letter.docx",
            "Lettre de référence employeur.pdf",
            "LettreRecommandation.pdf",
        ] {
            let v = classify_filename(name).unwrap();
            assert_eq!(v.kind, DocKind::Other, "{name}");
            assert!(v.reason.contains("recommendation"), "{name}: {}", v.reason);
        }
        // A cover-letter phrase still wins, and a CV stays a CV.
        assert_eq!(kind("Lettre de motivation (recommandée par Mme X).pdf"), Some(DocKind::CoverLetter));
        assert_eq!(kind("CV + références.pdf"), Some(DocKind::Cv));
        assert!(!classify_filename("CV + références.pdf").unwrap().also_cover_letter);
    }

    #[test]
    fn ligatures_fold_open() {
        assert_eq!(fold("ﬁnal ﬂuent"), "final fluent");
    }
}
