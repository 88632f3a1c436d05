//! The languages mailroom writes in, as types: a reply, a digest or a reason rendered for a reader
//! is rendered in a [`Lang`], and a posting says which one its candidates get ([`PostingLang`]).
//!
//! May: nothing but pure functions. Every other module may use it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A language we ship templates and wording for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Fr, Lang::En];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Picks the French or the English wording.
    pub fn pick<T>(self, fr: T, en: T) -> T {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language a posting answers in: a fixed one, or the candidate's own (`auto`, for a
/// bilingual posting), told from what they wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PostingLang {
    Fr,
    En,
    Auto,
}

impl PostingLang {
    /// The fixed language, or `None` for `auto`.
    pub fn fixed(self) -> Option<Lang> {
        match self {
            PostingLang::Fr => Some(Lang::Fr),
            PostingLang::En => Some(Lang::En),
            PostingLang::Auto => None,
        }
    }

    /// The language to use when nothing better is known (`auto` falls back to `default`).
    pub fn or(self, default: Lang) -> Lang {
        self.fixed().unwrap_or(default)
    }
}

// The configuration's error names the key; these say what is wrong with the value.
impl TryFrom<String> for Lang {
    type Error = String;
    fn try_from(s: String) -> Result<Lang, String> {
        Lang::parse(&s).ok_or_else(|| format!("unsupported language {s:?} (fr or en)"))
    }
}

impl TryFrom<String> for PostingLang {
    type Error = String;
    fn try_from(s: String) -> Result<PostingLang, String> {
        match s.as_str() {
            "auto" => Ok(PostingLang::Auto),
            other => Lang::parse(other)
                .map(PostingLang::from)
                .ok_or_else(|| format!("unsupported language {s:?} (fr, en, or auto for the candidate's)")),
        }
    }
}

impl From<Lang> for PostingLang {
    fn from(l: Lang) -> Self {
        match l {
            Lang::Fr => PostingLang::Fr,
            Lang::En => PostingLang::En,
        }
    }
}

/// French or English, from common words of `folded` text (lower case, no accents, words separated
/// by single spaces); `None` when the text does not say.
pub fn detect(folded: &str) -> Option<Lang> {
    const FR: &[&str] = &[
        "le",
        "la",
        "les",
        "de",
        "des",
        "du",
        "et",
        "je",
        "vous",
        "pour",
        "madame",
        "monsieur",
        "bonjour",
        "candidature",
        "stage",
        "lettre",
        "motivation",
        "mon",
        "ma",
        "mes",
        "cordialement",
        "veuillez",
        "avec",
        "est",
        "une",
        "un",
    ];
    const EN: &[&str] = &[
        "the",
        "and",
        "i",
        "you",
        "for",
        "dear",
        "hello",
        "application",
        "internship",
        "letter",
        "cover",
        "my",
        "resume",
        "regards",
        "sincerely",
        "with",
        "is",
        "a",
        "an",
        "to",
        "of",
    ];
    let (mut fr, mut en) = (0, 0);
    for w in folded.split(' ') {
        fr += FR.contains(&w) as usize;
        en += EN.contains(&w) as usize;
    }
    match fr.cmp(&en) {
        std::cmp::Ordering::Greater => Some(Lang::Fr),
        std::cmp::Ordering::Less => Some(Lang::En),
        std::cmp::Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_french_from_english() {
        assert_eq!(detect("candidature pour le stage de gestion de projet"), Some(Lang::Fr));
        assert_eq!(detect("application for the service design internship"), Some(Lang::En));
        assert_eq!(detect("cv pdf"), None);
    }

    #[test]
    fn names_round_trip() {
        for l in Lang::ALL {
            assert_eq!(Lang::parse(l.as_str()), Some(l));
        }
        assert_eq!(PostingLang::Auto.or(Lang::En), Lang::En);
        assert_eq!(PostingLang::Fr.or(Lang::En), Lang::Fr);
    }
}
