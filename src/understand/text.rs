//! When a document's name does not tell, its text does: what a CV looks like (headings such as
//! Formation, Expérience, Skills; date ranges; bullet lists) against what a letter sounds like
//! (Madame, Monsieur … je vous prie d'agréer; Dear … Sincerely; first-person prose).
//!
//! This module reads DOCX and ODT itself (ZIPs of XML, through [`super::zip`] and its limits)
//! and scores text. PDF text comes from a child process, see [`super::extract`].

use super::classify::{DocKind, Verdict, fold};
use super::zip::{self, Limits, ZipError};

/// More text than this says nothing more about the kind of a document.
pub const MAX_TEXT_CHARS: usize = 200_000;

/// Formats whose text mailroom can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pdf,
    Docx,
    Odt,
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Text => "txt",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "odt" => Format::Odt,
            "txt" => Format::Text,
            _ => return None,
        })
    }

    /// The format of a document from its extension, its type, and as a last word its bytes.
    pub fn of(extension: &str, content_type: &str, bytes: &[u8]) -> Option<Format> {
        match (extension, content_type) {
            ("pdf", _) | (_, "application/pdf") => Some(Format::Pdf),
            ("docx", _) | (_, "application/vnd.openxmlformats-officedocument.wordprocessingml.document") => {
                Some(Format::Docx)
            }
            ("odt", _) | (_, "application/vnd.oasis.opendocument.text") => Some(Format::Odt),
            ("txt", _) | (_, "text/plain") => Some(Format::Text),
            _ if bytes.starts_with(b"%PDF-") => Some(Format::Pdf),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfficeError {
    #[error("not a {0} file: {1}")]
    Zip(&'static str, ZipError),
    #[error("not a {0} file: it has no {1}")]
    Missing(&'static str, &'static str),
}

/// The text of a Word document: `word/document.xml`, runs joined, one line per paragraph.
pub fn docx_text(bytes: &[u8]) -> Result<String, OfficeError> {
    let xml = zip::read_path(bytes, "word/document.xml", &Limits::OFFICE)
        .map_err(|e| OfficeError::Zip("DOCX", e))?
        .ok_or(OfficeError::Missing("DOCX", "word/document.xml"))?;
    Ok(xml_text(&String::from_utf8_lossy(&xml), Dialect::Word))
}

/// The text of an OpenDocument text: `content.xml`, one line per paragraph or heading.
pub fn odt_text(bytes: &[u8]) -> Result<String, OfficeError> {
    let xml = zip::read_path(bytes, "content.xml", &Limits::OFFICE)
        .map_err(|e| OfficeError::Zip("ODT", e))?
        .ok_or(OfficeError::Missing("ODT", "content.xml"))?;
    Ok(xml_text(&String::from_utf8_lossy(&xml), Dialect::Odf))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Word,
    Odf,
}

/// Character data of the elements that hold text, with the layout elements that matter to a
/// reader (paragraphs, tabs, breaks, ODF's run of spaces). Not a validating parser: it only has
/// to be total and to get the words right.
fn xml_text(xml: &str, dialect: Dialect) -> String {
    let mut out = String::new();
    // Word keeps text in <w:t>; ODF keeps it anywhere in the body.
    let mut inside = 0usize;
    let mut rest = xml;
    while !rest.is_empty() && out.len() < MAX_TEXT_CHARS * 4 {
        let Some(lt) = rest.find('<') else {
            if inside > 0 {
                push_text(&mut out, rest);
            }
            break;
        };
        if inside > 0 {
            push_text(&mut out, &rest[..lt]);
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            if inside > 0 {
                out.push_str(&after[..end]);
            }
            rest = after.get(end + 3..).unwrap_or_default();
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").and_then(|e| after.get(e + 3..)).unwrap_or_default();
            continue;
        }
        let end = tag_end(rest);
        let (whole, after) = rest.split_at(end);
        let tag = whole[1..].strip_suffix('>').unwrap_or(&whole[1..]);
        rest = after;
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let closing = tag.starts_with('/');
        let self_closing = tag.ends_with('/');
        let name =
            tag.trim_start_matches('/').split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or_default();
        match (dialect, name) {
            (Dialect::Word, "w:t") if !self_closing => {
                inside = if closing { inside.saturating_sub(1) } else { inside + 1 };
            }
            (Dialect::Word, "w:p") | (Dialect::Odf, "text:p" | "text:h") if closing => out.push('\n'),
            (Dialect::Word, "w:tab") | (Dialect::Odf, "text:tab") if !closing => out.push('\t'),
            (Dialect::Word, "w:br" | "w:cr") | (Dialect::Odf, "text:line-break") if !closing => out.push('\n'),
            (Dialect::Odf, "text:s") if !closing => {
                let n = attribute(tag, "text:c").and_then(|c| c.parse::<usize>().ok()).unwrap_or(1);
                out.extend(std::iter::repeat_n(' ', n.min(64)));
            }
            (Dialect::Odf, "office:body") => {
                inside = if closing { 0 } else { 1 };
            }
            _ => {}
        }
    }
    out
}

/// Where the tag that starts `s` (at `<`) ends, just past its `>`; quotes in attributes respected.
fn tag_end(s: &str) -> usize {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return i + 1,
            (None, '<') => return i,
            _ => {}
        }
    }
    s.len()
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!("{name}="))? + name.len() + 1;
    let rest = tag.get(at..)?;
    let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(&rest[..rest.find(q)?])
}

/// Character data with its entities decoded.
fn push_text(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
            }
            e if e.starts_with('#') => e[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

/// What the text says, with the evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub cv: f32,
    pub letter: f32,
    pub cv_signals: Vec<String>,
    pub letter_signals: Vec<String>,
}

/// Section headings of a CV, folded.
const CV_HEADINGS: &[&str] = &[
    "experience",
    "experiences",
    "experience professionnelle",
    "experiences professionnelles",
    "parcours professionnel",
    "formation",
    "formations",
    "diplomes",
    "competences",
    "competences techniques",
    "langues",
    "centres d interet",
    "centres d interets",
    "loisirs",
    "education",
    "work experience",
    "professional experience",
    "employment",
    "employment history",
    "skills",
    "key skills",
    "languages",
    "interests",
    "hobbies",
    "certifications",
    "projets",
    "projects",
];

/// Phrases of a letter: folded form, as shown in a reason, weight.
const LETTER_PHRASES: &[(&str, &str, f32)] = &[
    ("madame monsieur", "Madame, Monsieur", 2.0),
    ("je vous prie d agreer", "je vous prie d'agréer", 2.0),
    ("veuillez agreer", "veuillez agréer", 2.0),
    ("je vous prie de croire", "je vous prie de croire", 2.0),
    ("salutations distinguees", "salutations distinguées", 1.5),
    ("l expression de mes", "l'expression de mes", 1.0),
    ("dear", "Dear", 1.5),
    ("sincerely", "Sincerely", 1.5),
    ("yours faithfully", "Yours faithfully", 1.5),
    ("i am writing", "I am writing", 1.5),
    ("kind regards", "Kind regards", 1.0),
    ("best regards", "Best regards", 1.0),
    ("je me permets", "je me permets", 1.0),
    ("je vous adresse", "je vous adresse", 1.0),
    ("ma candidature", "ma candidature", 1.0),
    ("my application", "my application", 1.0),
    ("lettre de motivation", "lettre de motivation", 1.0),
    ("cover letter", "cover letter", 1.0),
    ("dans l attente", "dans l'attente", 1.0),
    ("i look forward", "I look forward", 1.0),
    ("i would welcome", "I would welcome", 1.0),
];

const FIRST_PERSON: &[&str] = &["je", "j", "me", "m", "moi", "mon", "ma", "mes", "i", "my", "me", "myself"];

/// Scores a document's text. Pure and cheap; only the first [`MAX_TEXT_CHARS`] count.
pub fn score(text: &str) -> Score {
    let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
    let mut s = Score::default();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();

    let mut headings: Vec<&str> = Vec::new();
    for line in &lines {
        let folded = fold(line);
        if folded.split(' ').count() <= 4
            && let Some(h) = CV_HEADINGS.iter().find(|h| folded == **h || folded.starts_with(&format!("{h} ")))
        {
            let original = line.trim_end_matches([':', ' ']);
            if !headings.contains(h) {
                headings.push(h);
                s.cv_signals.push(format!("heading {original:?}"));
            }
        }
    }
    s.cv += headings.len() as f32;
    let ranges = lines.iter().map(|l| date_ranges(l)).sum::<usize>();
    if ranges > 0 {
        s.cv += (ranges.min(4) as f32) * 0.5;
        s.cv_signals.push(format!("{ranges} date range{}", if ranges == 1 { "" } else { "s" }));
    }
    let bullets = lines
        .iter()
        .filter(|l| l.starts_with(['•', '▪', '●', '◦', '■', '➢', '✓']) || l.starts_with("- ") || l.starts_with("* "))
        .count();
    if bullets >= 3 {
        s.cv += 1.0;
        s.cv_signals.push(format!("{bullets} bullet points"));
    }

    let folded = format!(" {} ", fold(&text));
    for (phrase, label, weight) in LETTER_PHRASES {
        if folded.contains(&format!(" {phrase} ")) {
            s.letter += weight;
            s.letter_signals.push(format!("{label:?}"));
        }
    }
    let words: Vec<&str> = folded.split_whitespace().collect();
    let first_person = words.iter().filter(|w| FIRST_PERSON.contains(w)).count();
    if words.len() >= 50 {
        let density = first_person as f32 / words.len() as f32;
        if density >= 0.03 {
            s.letter += if density >= 0.05 { 2.0 } else { 1.0 };
            s.letter_signals.push(format!("first-person prose ({:.0}% of words)", density * 100.0));
        }
    }
    s
}

/// Year ranges on one line: "2018–2020", "2019 - 2021", "2022 – aujourd'hui", "2023-present".
fn date_ranges(line: &str) -> usize {
    let chars: Vec<char> = line.chars().collect();
    let is_year = |i: usize| {
        i + 4 <= chars.len()
            && chars[i..i + 4].iter().all(char::is_ascii_digit)
            && matches!((chars[i], chars[i + 1]), ('1', '9') | ('2', '0'))
            && (i == 0 || !chars[i - 1].is_ascii_digit())
            && chars.get(i + 4).is_none_or(|c| !c.is_ascii_digit())
    };
    let skip_spaces = |mut j: usize| {
        while chars.get(j) == Some(&' ') {
            j += 1;
        }
        j
    };
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        if !is_year(i) {
            i += 1;
            continue;
        }
        let j = skip_spaces(i + 4);
        let after_separator = match (chars.get(j), chars.get(j + 1), chars.get(j + 2)) {
            (Some('-' | '–' | '—' | '/'), _, _) => Some(j + 1),
            (Some('a'), Some('u'), Some(' ')) => Some(j + 2),
            _ => None,
        };
        if let Some(k) = after_separator.map(skip_spaces) {
            let tail: String = chars[k.min(chars.len())..].iter().take(14).collect::<String>().to_lowercase();
            if is_year(k)
                || ["present", "présent", "aujourd", "now", "today", "en cours", "current"]
                    .iter()
                    .any(|w| tail.starts_with(w))
            {
                count += 1;
                i = k + 4;
                continue;
            }
        }
        i += 1;
    }
    count
}

/// What the text decides, if anything. `None`: the text is too short or too mixed to tell.
pub fn verdict(text: &str) -> Option<Verdict> {
    let s = score(text);
    let shown = |signals: &[String]| signals.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    if s.cv >= 3.0 && s.letter >= 3.0 {
        return Some(Verdict {
            also_cover_letter: true,
            ..Verdict::new(
                DocKind::Cv,
                0.5,
                format!(
                    "its text reads as both a CV ({}) and a letter ({})",
                    shown(&s.cv_signals),
                    shown(&s.letter_signals)
                ),
            )
        });
    }
    let confidence = |margin: f32| (0.55 + 0.05 * margin).min(0.85);
    if s.cv >= 2.0 && s.cv >= s.letter + 1.5 {
        return Some(Verdict::new(
            DocKind::Cv,
            confidence(s.cv - s.letter),
            format!("its text reads as a CV: {}", shown(&s.cv_signals)),
        ));
    }
    if s.letter >= 2.0 && s.letter >= s.cv + 1.5 {
        return Some(Verdict::new(
            DocKind::CoverLetter,
            confidence(s.letter - s.cv),
            format!("its text reads as a letter: {}", shown(&s.letter_signals)),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CV_FR: &str = "Jeanne Dupré\nÉtudiante en master\nLyon – 06 12 34 56 78 – jeanne@example.test\n\n\
Formation\n2024–2026  Master Management de projets innovants, Université Lumière Lyon 2\n\
2021–2024  Licence Sciences politiques\n\nExpérience professionnelle\n\
Avril–septembre 2025  Stagiaire chargée de projet\n2022 - 2023  Service civique\n\n\
Compétences\nGestion de projet, animation d'ateliers\n\nLangues\nAnglais (C1)\n\n\
Centres d'intérêt\nPhotographie, randonnée\n";

    const LETTER_FR: &str = "Jeanne Dupré\n\nLyon, le 2 février 2026\n\nObjet : candidature au stage\n\n\
Madame, Monsieur,\n\nActuellement en dernière année de master, je me permets de vous adresser ma candidature \
pour le stage d'assistante gestion de projet. Lors de mon précédent stage, j'ai coordonné des ateliers de \
concertation et j'ai appris à tenir un planning et un budget. Je serais heureuse de vous présenter ma \
motivation lors d'un entretien.\n\nJe vous prie d'agréer, Madame, Monsieur, l'expression de mes salutations \
distinguées.\n\nJeanne Dupré\n";

    const CV_EN: &str = "Tom Baker\nService design student\n\nEducation\n2022–2025  BA (Hons) Design for \
Services\n\nExperience\n• 2024  Design intern, Open Streets Lab\n• Ran 14 user interviews\n• Prototyped a \
booking flow\n\nSkills\nUser research, journey mapping\n\nLanguages\nEnglish (native), French (B1)\n";

    const LETTER_EN: &str = "Tom Baker\n\n2 February 2026\n\nDear Hiring Manager,\n\nI am writing to apply \
for the service design internship advertised on your website. I am in the final year of my degree and I am \
keen to apply what I have learnt to public services. During my internship I ran user interviews and I \
prototyped a booking flow.\n\nI would welcome the opportunity to discuss how I could contribute.\n\nYours \
sincerely,\n\nTom Baker\n";

    fn kind(text: &str) -> Option<DocKind> {
        verdict(text).map(|v| v.kind)
    }

    #[test]
    fn cvs_and_letters_in_french_and_english() {
        assert_eq!(kind(CV_FR), Some(DocKind::Cv));
        assert_eq!(kind(LETTER_FR), Some(DocKind::CoverLetter));
        assert_eq!(kind(CV_EN), Some(DocKind::Cv));
        assert_eq!(kind(LETTER_EN), Some(DocKind::CoverLetter));
        let v = verdict(CV_FR).unwrap();
        assert!(v.reason.contains("\"Formation\""), "{}", v.reason);
        assert!(
            verdict(LETTER_FR).unwrap().reason.contains("\"Madame, Monsieur\""),
            "{}",
            verdict(LETTER_FR).unwrap().reason
        );
    }

    #[test]
    fn too_little_or_too_mixed_decides_nothing() {
        assert_eq!(kind(""), None);
        assert_eq!(kind("Attestation de stage\nNous attestons que M. Girard a effectué un stage."), None);
        assert_eq!(kind("Portfolio\nProjets 2023–2025"), None);
        let both = verdict(&format!("{CV_FR}\n{LETTER_FR}")).unwrap();
        assert!(both.also_cover_letter && both.kind == DocKind::Cv, "{both:?}");
    }

    #[test]
    fn date_ranges_the_ways_cvs_write_them() {
        assert_eq!(date_ranges("2018–2020 Licence"), 1);
        assert_eq!(date_ranges("2019 - 2021 and 2021 — 2023"), 2);
        assert_eq!(date_ranges("2023-present: designer"), 1);
        assert_eq!(date_ranges("depuis 2022 – aujourd'hui"), 1);
        assert_eq!(date_ranges("de 2019 au 2021"), 1);
        assert_eq!(date_ranges("Tel 0612-2020 or 12020-2021"), 0);
        assert_eq!(date_ranges("3 février 2026"), 0);
    }

    #[test]
    fn word_xml_runs_paragraphs_and_entities() {
        let xml = r#"<?xml version="1.0"?><w:document><w:body><w:p><w:r><w:t>Exp</w:t></w:r><w:proofErr w:type="spellStart"/><w:r><w:rPr><w:lang w:val="fr-FR"/></w:rPr><w:t xml:space="preserve">érience &amp; </w:t></w:r><w:r><w:tab/><w:t>pro</w:t></w:r></w:p><w:p><w:r><w:t>L&apos;été &#233;&#xE9;</w:t></w:r></w:p><w:p><w:r><w:instrText>PAGE</w:instrText></w:r></w:p></w:body></w:document>"#;
        assert_eq!(xml_text(xml, Dialect::Word), "Expérience & \tpro\nL'été éé\n\n");
    }

    #[test]
    fn odf_xml_headings_spaces_and_styles() {
        let xml = r#"<office:document-content><office:automatic-styles><style:style style:name="P1">ignored</style:style></office:automatic-styles><office:body><office:text><text:h text:outline-level="1">Formation</text:h><text:p text:style-name="P1">Deux <text:s/>espaces,<text:s text:c="3"/>trois<text:tab/>tab<text:line-break/>ligne</text:p></office:text></office:body></office:document-content>"#;
        assert_eq!(xml_text(xml, Dialect::Odf), "Formation\nDeux  espaces,   trois\ttab\nligne\n");
    }

    #[test]
    fn xml_scanner_is_total() {
        for junk in ["<", "<w:t", "<w:t>unclosed", "&", "&#xFFFFFFFF;", "&#;", "<![CDATA[", "<!--", "<a b='>", "é<é>é"]
        {
            let _ = xml_text(junk, Dialect::Word);
            let _ = xml_text(&format!("<office:body>{junk}"), Dialect::Odf);
        }
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet: Vec<char> = "<>/&;#x'\"=: w:tpétext:s!-[]CDATA".chars().collect();
        for _ in 0..5000 {
            let s: String = (0..rng.usize(0..60)).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            let _ = xml_text(&s, Dialect::Word);
            let _ = xml_text(&s, Dialect::Odf);
            let _ = score(&s);
        }
    }
}
