//! When a document's name does not tell, its text does: what a CV looks like (headings such as
//! Formation, Expérience, Skills; date ranges; bullet lists) against what a letter sounds like
//! (Madame, Monsieur … je vous prie d'agréer; Dear … Sincerely; first-person prose).
//!
//! This module reads DOCX and ODT itself (ZIPs of XML, through [`super::zip`] and its limits)
//! and scores text. PDF text comes from a child process, see [`super::extract`].

use unicode_normalization::UnicodeNormalization;

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
    /// Someone else writing about the candidate: a recommendation or reference letter.
    pub reference: f32,
    /// A certificate, a transcript: a supporting document.
    pub supporting: f32,
    pub cv_signals: Vec<String>,
    pub letter_signals: Vec<String>,
    pub reference_signals: Vec<String>,
    pub supporting_signals: Vec<String>,
    /// Words in the text.
    pub words: usize,
}

/// Section headings of a CV, folded.
const CV_HEADINGS: &[&str] = &[
    // French
    "experience",
    "experiences",
    "experience professionnelle",
    "experiences professionnelles",
    "parcours professionnel",
    "parcours universitaire",
    "parcours academique",
    "parcours scolaire",
    "cursus",
    "etudes",
    "formation",
    "formations",
    "formation academique",
    "diplomes",
    "diplomes et formations",
    "stages",
    "competences",
    "competences techniques",
    "competences informatiques",
    "competences cles",
    "informatique",
    "logiciels",
    "outils",
    "qualites",
    "atouts",
    "savoir faire",
    "savoir etre",
    "langues",
    "centres d interet",
    "centres d interets",
    "interets",
    "loisirs",
    "engagement associatif",
    "engagements associatifs",
    "engagements",
    "vie associative",
    "activites associatives",
    "experiences associatives",
    "benevolat",
    "activites extra professionnelles",
    "activites extrascolaires",
    "profil",
    "a propos",
    "projets",
    "contact",
    // English
    "education",
    "work experience",
    "professional experience",
    "employment",
    "employment history",
    "work history",
    "career history",
    "internships",
    "skills",
    "key skills",
    "technical skills",
    "soft skills",
    "tools",
    "languages",
    "interests",
    "hobbies",
    "certifications",
    "projects",
    "profile",
    "summary",
    "professional summary",
    "objective",
    "about me",
    "volunteering",
    "volunteer experience",
    "activities",
    "extracurricular activities",
    "awards",
    "achievements",
    "publications",
    "training",
];

/// Phrases of a letter: folded form, as shown in a reason, weight.
const LETTER_PHRASES: &[(&str, &str, f32)] = &[
    ("madame monsieur", "Madame, Monsieur", 2.0),
    ("je vous prie d agreer", "je vous prie d'agréer", 2.0),
    ("veuillez agreer", "veuillez agréer", 2.0),
    ("je vous prie de croire", "je vous prie de croire", 2.0),
    ("je vous prie de recevoir", "je vous prie de recevoir", 2.0),
    ("veuillez recevoir", "veuillez recevoir", 2.0),
    ("salutations distinguees", "salutations distinguées", 1.5),
    ("salutations respectueuses", "salutations respectueuses", 1.5),
    ("sinceres salutations", "sincères salutations", 1.5),
    ("ma consideration", "ma considération", 1.0),
    ("l expression de mes", "l'expression de mes", 1.0),
    ("dear", "Dear", 1.5),
    ("sincerely", "Sincerely", 1.5),
    ("yours faithfully", "Yours faithfully", 1.5),
    ("i am writing", "I am writing", 1.5),
    ("i would like to be considered", "I would like to be considered", 1.5),
    ("i would like to apply", "I would like to apply", 1.5),
    ("please accept", "Please accept", 1.0),
    ("kind regards", "Kind regards", 1.0),
    ("best regards", "Best regards", 1.0),
    ("je me permets", "je me permets", 1.0),
    ("je vous adresse", "je vous adresse", 1.0),
    ("je vous propose ma candidature", "je vous propose ma candidature", 1.0),
    ("je souhaite rejoindre", "je souhaite rejoindre", 1.0),
    ("ma candidature", "ma candidature", 1.0),
    ("my application", "my application", 1.0),
    ("lettre de motivation", "lettre de motivation", 1.0),
    ("cover letter", "cover letter", 1.0),
    ("dans l attente", "dans l'attente", 1.0),
    ("lors d un entretien", "lors d'un entretien", 1.0),
    ("i look forward", "I look forward", 1.0),
    ("i would welcome", "I would welcome", 1.0),
    ("i would be glad", "I would be glad", 1.0),
    ("how i could contribute", "how I could contribute", 1.0),
    ("your team", "your team", 0.5),
    ("votre equipe", "votre équipe", 0.5),
];

/// Signs that someone else writes about the candidate: folded form, as shown, weight.
const REFERENCE_PHRASES: &[(&str, &str, f32)] = &[
    ("je recommande", "je recommande", 2.0),
    ("recommande vivement", "recommande vivement", 2.0),
    ("recommande sa candidature", "recommande sa candidature", 2.0),
    ("recommander sa candidature", "recommander sa candidature", 2.0),
    ("je ne peux que recommander", "je ne peux que recommander", 2.0),
    ("j ai eu le plaisir d encadrer", "j'ai eu le plaisir d'encadrer", 1.5),
    ("j ai encadre", "j'ai encadré", 1.5),
    ("en qualite de tuteur", "en qualité de tuteur", 1.0),
    ("maitre de stage", "maître de stage", 0.5),
    ("sans reserve", "sans réserve", 1.0),
    ("a qui de droit", "à qui de droit", 1.0),
    ("it is my pleasure to recommend", "It is my pleasure to recommend", 3.0),
    ("pleased to recommend", "pleased to recommend", 2.0),
    ("happy to recommend", "happy to recommend", 2.0),
    ("highly recommend", "highly recommend", 2.0),
    ("i recommend", "I recommend", 2.0),
    ("recommend her", "recommend her", 2.0),
    ("recommend him", "recommend him", 2.0),
    ("recommend them", "recommend them", 2.0),
    ("without reservation", "without reservation", 1.0),
    ("without hesitation", "without hesitation", 1.0),
    ("i have known", "I have known", 1.5),
    ("whom i taught", "whom I taught", 1.5),
    ("whom i supervised", "whom I supervised", 1.5),
    ("to whom it may concern", "To whom it may concern", 1.0),
    // Support for someone else's application.
    ("sa candidature", "sa candidature", 2.0),
    ("sa demande", "sa demande", 1.5),
    ("his application", "his application", 2.0),
    ("her application", "her application", 2.0),
    ("their application", "their application", 1.5),
    ("en faveur de", "en faveur de", 1.5),
    ("in support of", "in support of", 1.5),
    ("je soutiens", "je soutiens", 1.5),
    ("j appuie", "j'appuie", 1.5),
    ("i endorse", "I endorse", 1.5),
    ("i support", "I support", 1.0),
    ("je connais", "je connais", 1.0),
    ("my full support", "my full support", 2.0),
    ("tout mon soutien", "tout mon soutien", 2.0),
    ("mon entier soutien", "mon entier soutien", 2.0),
    ("i taught", "I taught", 1.0),
    ("i supervised", "I supervised", 1.0),
];

/// Names of a recommendation letter: in a title or subject line they are the strongest sign;
/// in running text, a cover letter may mention one enclosed.
const REFERENCE_TITLES: &[&str] = &[
    "lettre de recommandation",
    "lettre de reference",
    "letter of recommendation",
    "recommendation letter",
    "letter of reference",
    "reference letter",
    "reference for",
    "recommandation pour",
];

/// What a supporting document says of itself at its head.
const SUPPORTING_TITLES: &[&str] =
    &["attestation", "certificat", "certificate", "releve de notes", "transcript", "diplome de", "diploma"];

const FIRST_PERSON: &[&str] = &["je", "j", "me", "m", "moi", "mon", "ma", "mes", "i", "my", "me", "myself"];
const THIRD_PERSON: &[&str] = &["il", "elle", "lui", "he", "she", "her", "his", "him", "hers"];

/// Scores a document's text. Pure and cheap; only the first [`MAX_TEXT_CHARS`] count.
pub fn score(text: &str) -> Score {
    let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
    let mut s = Score::default();
    let lines: Vec<String> = text.lines().map(|l| join_spaced_letters(l.trim())).filter(|l| !l.is_empty()).collect();

    let mut headings: Vec<&str> = Vec::new();
    for line in &lines {
        if let Some(h) = heading(line)
            && !headings.contains(&h)
        {
            headings.push(h);
            let original = line.split([':', '|']).next().unwrap_or(line).trim();
            s.cv_signals.push(format!("heading {original:?}"));
        }
    }
    s.cv += headings.len() as f32;
    let ranges = date_ranges_in(&lines);
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

    let all = lines.join("\n");
    let folded = format!(" {} ", fold(&all));
    for (phrase, label, weight) in LETTER_PHRASES {
        if folded.contains(&format!(" {phrase} ")) {
            s.letter += weight;
            s.letter_signals.push(format!("{label:?}"));
        }
    }
    for (phrase, label, weight) in REFERENCE_PHRASES {
        if folded.contains(&format!(" {phrase} ")) {
            s.reference += weight;
            s.reference_signals.push(format!("{label:?}"));
        }
    }
    // The head of the document: its first lines, and any subject line.
    let head: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| *i < 8 || is_subject_line(l))
        .map(|(_, l)| format!(" {} ", fold(l)))
        .collect();
    if let Some(t) = REFERENCE_TITLES.iter().find(|t| head.iter().any(|h| h.contains(&format!(" {t} ")))) {
        s.reference += 3.0;
        s.reference_signals.push(format!("titled {t:?}"));
    } else if let Some(t) = REFERENCE_TITLES.iter().find(|t| folded.contains(&format!(" {t} "))) {
        s.reference += 1.0;
        s.reference_signals.push(format!("mentions {t:?}"));
    }
    let starts = |h: &str, t: &str| {
        let body =
            h.trim_start().strip_prefix("objet ").or(h.trim_start().strip_prefix("subject ")).unwrap_or(h.trim());
        body.starts_with(&format!("{t} ")) || body == t
    };
    if let Some(t) = SUPPORTING_TITLES.iter().find(|t| head.iter().any(|h| starts(h, t))) {
        s.supporting += 3.0;
        s.supporting_signals.push(format!("titled {t:?}"));
    }
    for (phrase, label) in [
        ("je soussigne", "je soussigné"),
        ("je soussignee", "je soussignée"),
        ("atteste que", "atteste que"),
        ("attestons que", "attestons que"),
        ("certifie que", "certifie que"),
        ("hereby certify", "hereby certify"),
        ("this is to certify", "this is to certify"),
    ] {
        if folded.contains(&format!(" {phrase} ")) {
            s.supporting += 1.5;
            s.supporting_signals.push(format!("{label:?}"));
        }
    }

    // A letter's frame, known by its form whatever its words: a short line ending with a comma
    // before the first paragraph ("Chère équipe,") and another among the last lines ("Sincèrement,").
    let short_comma = |l: &str| l.trim_end().ends_with(',') && l.split_whitespace().count() <= 8;
    let prose = |l: &str| l.split_whitespace().count() >= 8;
    if let Some(i) = lines.iter().take(15).position(|l| short_comma(l))
        && lines.get(i + 1).is_some_and(|l| prose(l))
    {
        s.letter += 1.5;
        s.letter_signals.push(format!("salutation {:?}", lines[i]));
        if let Some(close) = lines.iter().skip(i + 2).rev().take(4).find(|l| short_comma(l)) {
            s.letter += 1.0;
            s.letter_signals.push(format!("valediction {close:?}"));
        }
    }
    let words: Vec<&str> = folded.split_whitespace().collect();
    s.words = words.len();
    // The verb, in any form ("je vous la recommande", "recommends her"), not the noun: a cover
    // letter may mention an enclosed recommendation, it does not recommend anyone.
    if let Some(verb) = words.iter().find(|w| {
        (w.starts_with("recommand") || w.starts_with("recommend"))
            && !w.starts_with("recommandation")
            && !w.starts_with("recommendation")
    }) {
        s.reference += 2.0;
        s.reference_signals.push(format!("recommends ({verb:?})"));
    }
    let first_person = words.iter().filter(|w| FIRST_PERSON.contains(w)).count();
    let third_person = words.iter().filter(|w| THIRD_PERSON.contains(w)).count();
    if words.len() >= 50 {
        let density = first_person as f32 / words.len() as f32;
        if density >= 0.03 {
            s.letter += if density >= 0.05 { 2.0 } else { 1.0 };
            s.letter_signals.push(format!("first-person prose ({:.0}% of words)", density * 100.0));
        }
        // A letter about someone: "elle a su", "she listens".
        if third_person >= 4 && third_person * 2 >= first_person {
            s.reference += 2.0;
            s.reference_signals.push(format!("about someone in the third person ({third_person} times)"));
        }
    }
    s
}

/// How many times one of `names` (folded) appears in a sentence: a line of at least six words.
fn mentions_in_prose(text: &str, names: &[String]) -> usize {
    let names: Vec<String> = names.iter().map(|n| fold(n)).filter(|n| n.len() >= 3).collect();
    if names.is_empty() {
        return 0;
    }
    // Not in an address: "elise.marchand@…" on a contact line is no sentence.
    let no_address = |l: &str| l.split_whitespace().filter(|w| !w.contains('@')).collect::<Vec<_>>().join(" ");
    text.lines()
        .map(|l| format!(" {} ", fold(&no_address(&join_spaced_letters(l)))))
        .filter(|l| l.split_whitespace().count() >= 6)
        .map(|l| names.iter().map(|n| l.matches(&format!(" {n} ")).count()).max().unwrap_or(0))
        .sum()
}

/// "C O M P É T E N C E S" → "COMPÉTENCES", "2 0 2 2  – 2 0 2 3" → "2022 – 2023": design tools
/// space headings out with letter-spacing, and PDF text extraction gives one letter at a time.
/// Runs of single characters are joined (at least four, or three capitals or digits); a double
/// space stays the gap between words.
pub fn join_spaced_letters(line: &str) -> String {
    if !line.contains(' ') {
        return line.to_owned();
    }
    let groups: Vec<String> = line
        .split("  ")
        .map(|group| {
            let tokens: Vec<&str> = group.split(' ').collect();
            let single = |t: &str| t.chars().count() == 1 && t.chars().all(char::is_alphanumeric);
            let mut out: Vec<String> = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                let run = tokens[i..].iter().take_while(|t| single(t)).count();
                let strong =
                    tokens[i..i + run].iter().all(|t| t.chars().all(|c| c.is_uppercase() || c.is_ascii_digit()));
                if run >= 4 || (run >= 3 && strong) {
                    out.push(tokens[i..i + run].concat());
                    i += run;
                } else {
                    out.push(tokens[i].to_owned());
                    i += 1;
                }
            }
            out.join(" ")
        })
        .collect();
    let joined = groups.join("  ");
    // Keep the line as it was when nothing was spaced out.
    if joined == line { line.to_owned() } else { joined.split_whitespace().collect::<Vec<_>>().join(" ") }
}

fn is_subject_line(line: &str) -> bool {
    let f = fold(line);
    f.starts_with("objet ") || f.starts_with("subject ") || f.starts_with("re ") || f.starts_with("concerne ")
}

/// The CV heading a line is, if it is one: the whole line (up to four words), or what comes
/// before a colon ("Langues : anglais, espagnol").
fn heading(line: &str) -> Option<&'static str> {
    let candidates = [line, line.split([':', '|']).next().unwrap_or(line)];
    candidates.iter().find_map(|c| {
        let folded = fold(c);
        if folded.is_empty() || folded.split(' ').count() > 4 {
            return None;
        }
        CV_HEADINGS.iter().find(|h| folded == **h || folded.starts_with(&format!("{h} "))).copied()
    })
}

/// Date ranges in the text's lines. A line ending on a dash goes on with the next ("sept. 2023 –"
/// then "juin 2025", as a narrow column wraps).
fn date_ranges_in(lines: &[String]) -> usize {
    let mut count = 0;
    let mut carry = String::new();
    for line in lines {
        carry.push_str(line);
        if line.ends_with(['-', '–', '—']) {
            carry.push(' ');
            continue;
        }
        count += date_ranges(&carry);
        carry.clear();
    }
    count + date_ranges(&carry)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    /// A year, possibly with its month ("2023", "09/2023", "sept. 2023" is Month then Year).
    Year,
    Month,
    Dash,
    /// Today: "présent", "aujourd'hui", "now", "en cours".
    Now,
    /// "depuis", "since".
    Since,
    Other,
}

const MONTHS: &[&str] = &[
    "janvier",
    "janv",
    "jan",
    "january",
    "fevrier",
    "fevr",
    "fev",
    "feb",
    "february",
    "mars",
    "mar",
    "march",
    "avril",
    "avr",
    "apr",
    "april",
    "mai",
    "may",
    "juin",
    "jun",
    "june",
    "juillet",
    "juil",
    "jul",
    "july",
    "aout",
    "aug",
    "august",
    "septembre",
    "sept",
    "sep",
    "september",
    "octobre",
    "oct",
    "october",
    "novembre",
    "nov",
    "november",
    "decembre",
    "dec",
    "december",
    "ete",
    "summer",
    "printemps",
    "spring",
    "automne",
    "autumn",
    "hiver",
    "winter",
];
const NOW: &[&str] =
    &["present", "aujourd", "auj", "now", "today", "current", "currently", "ce", "actuel", "actuellement", "date"];

/// Year ranges on one line: "2018–2020", "2019 - 2021", "09/2023 – 06/2025", "sept. 2023 – juin
/// 2025", "2022 – aujourd'hui", "Jan 2023 – Present", "de 2019 à 2021", and at the start of a
/// line "depuis 2024", "Since 2024".
fn date_ranges(line: &str) -> usize {
    let toks = tokens(line);
    let mut count = 0;
    let mut i = 0;
    // "Since 2024" opens a CV entry; "depuis 2020" in a sentence is not a range.
    let skip_months = |mut j: usize| {
        while toks.get(j) == Some(&Tok::Month) {
            j += 1;
        }
        j
    };
    if toks.first() == Some(&Tok::Since) && toks.get(skip_months(1)) == Some(&Tok::Year) {
        count += 1;
        i = skip_months(1) + 1;
    }
    while i < toks.len() {
        if toks[i] == Tok::Year && toks.get(i + 1) == Some(&Tok::Dash) {
            let j = skip_months(i + 2);
            if matches!(toks.get(j), Some(Tok::Year | Tok::Now)) {
                count += 1;
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    count
}

/// The line as tokens, accents and case folded but punctuation kept where it matters.
fn tokens(line: &str) -> Vec<Tok> {
    let plain: String =
        line.nfkd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).collect::<String>().to_lowercase();
    let chars: Vec<char> = plain.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let is_year = |d: &str| d.len() == 4 && (d.starts_with("19") || d.starts_with("20"));
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            // "09/2023" and "09.2023": a month then its year.
            if digits.len() <= 2
                && matches!(chars.get(i), Some('/' | '.'))
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            {
                let after: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
                if is_year(&after) {
                    i += 1 + after.len();
                    toks.push(Tok::Year);
                    continue;
                }
            }
            toks.push(if is_year(&digits) { Tok::Year } else { Tok::Other });
            // "2019/2020", an academic year, is a range.
            if is_year(&digits) && chars.get(i) == Some(&'/') {
                toks.push(Tok::Dash);
                i += 1;
            }
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            toks.push(match word.as_str() {
                w if MONTHS.contains(&w) => Tok::Month,
                w if NOW.contains(&w) => Tok::Now,
                "en" if chars[i..].iter().collect::<String>().trim_start().starts_with("cours") => Tok::Now,
                "a" | "au" | "to" | "until" | "till" | "jusqu" => Tok::Dash,
                "depuis" | "since" => Tok::Since,
                _ => Tok::Other,
            });
        } else if matches!(c, '-' | '–' | '—' | '‐' | '‑' | '−') {
            toks.push(Tok::Dash);
            i += 1;
        } else {
            // Spaces, dots after an abbreviated month, apostrophes, brackets are not tokens;
            // a comma or a semicolon breaks a range.
            if matches!(c, ',' | ';' | ':' | '(' | ')' | '&') {
                toks.push(Tok::Other);
            }
            i += 1;
        }
    }
    toks
}

/// The evidence of a text that decides nothing, for a reason: "CV 1.5: heading "Langues"; letter 1: "Dear"".
pub fn evidence(text: &str) -> String {
    let s = score(text);
    let side = |label: &str, score: f32, signals: &[String]| {
        if signals.is_empty() {
            format!("no {label} signal")
        } else {
            format!("{label} {score}: {}", signals.iter().take(3).cloned().collect::<Vec<_>>().join(", "))
        }
    };
    format!("{}; {}", side("CV", s.cv, &s.cv_signals), side("letter", s.letter, &s.letter_signals))
}

/// What the text decides, if anything. `None`: the text is too short or too mixed to tell.
pub fn verdict(text: &str) -> Option<Verdict> {
    verdict_about(text, &[])
}

/// [`verdict`], knowing the candidate's names: a letter that names the candidate in its
/// sentences is someone else writing about them (their own letter has their name on top and
/// under it, not in the prose).
pub fn verdict_about(text: &str, names: &[String]) -> Option<Verdict> {
    let mut s = score(text);
    let mentions = mentions_in_prose(text, names);
    if mentions > 0 {
        s.reference += if mentions >= 2 { 2.5 } else { 1.0 };
        s.reference_signals.push(format!("names the candidate in its sentences ({mentions} times)"));
    }
    let shown = |signals: &[String]| signals.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    // Someone else writing about the candidate outweighs a salutation and a closing formula.
    if s.reference >= 3.5 && s.cv < 3.0 {
        return Some(Verdict::new(
            DocKind::Other,
            (0.55 + 0.05 * s.reference).min(0.85),
            format!(
                "its text reads as a recommendation letter (someone writing about the candidate): {}",
                shown(&s.reference_signals)
            ),
        ));
    }
    if s.supporting >= 3.0 && s.cv < 3.0 && s.letter < 4.0 {
        return Some(Verdict::new(
            DocKind::Other,
            0.6,
            format!("its text reads as a certificate or a transcript: {}", shown(&s.supporting_signals)),
        ));
    }
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
        assert_eq!(kind("Jeanne Dupré\n06 12 34 56 78"), None);
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
        assert_eq!(date_ranges("09/2023 – 06/2025   Master 2"), 1);
        assert_eq!(date_ranges("sept. 2023 – juin 2025"), 1);
        assert_eq!(date_ranges("Jan 2023 – Present"), 1);
        assert_eq!(date_ranges("2023-2025"), 1);
        assert_eq!(date_ranges("2019/2020 Licence 3"), 1);
        assert_eq!(date_ranges("Since 2024  Junior designer"), 1);
        assert_eq!(date_ranges("depuis 2024 Designer junior"), 1);
        assert_eq!(date_ranges("From 2020 to 2022: assistant"), 1);
        assert_eq!(date_ranges("Avril 2025 à septembre 2025"), 1);
        // Not ranges: a phone number, a date, "depuis" inside a sentence, a list of years.
        assert_eq!(date_ranges("Tel 0612-2020 or 12020-2021"), 0);
        assert_eq!(date_ranges("3 février 2026"), 0);
        assert_eq!(date_ranges("J'habite à Lyon depuis 2020 et je cherche un stage"), 0);
        assert_eq!(date_ranges("Promotions 2019, 2021"), 0);
        // A range cut by the end of a narrow column.
        let lines: Vec<String> = ["sept. 2023 –", "juin 2025 Master"].map(str::to_owned).to_vec();
        assert_eq!(date_ranges_in(&lines), 1);
    }

    #[test]
    fn spaced_out_headings_are_joined() {
        assert_eq!(join_spaced_letters("C O M P É T E N C E S"), "COMPÉTENCES");
        assert_eq!(join_spaced_letters("2 0 2 2  – 2 0 2 3"), "2022 – 2023");
        assert_eq!(join_spaced_letters("Jan 2 0 2 3  – Present"), "Jan 2023 – Present");
        assert_eq!(
            join_spaced_letters("E X P É R I E N C E S  P R O F E S S I O N N E L L E S"),
            "EXPÉRIENCES PROFESSIONNELLES"
        );
        // Prose is left alone: "a" and "y" are words.
        assert_eq!(join_spaced_letters("il y a un stage à Lyon"), "il y a un stage à Lyon");
        assert_eq!(join_spaced_letters("Formation  2023"), "Formation  2023");
    }

    /// What pdf-extract gives for a Chromium-printed sidebar CV (tests/fixtures/gen/real).
    #[test]
    fn a_chromium_cv_with_letter_spaced_headings() {
        let text = "C O N T A C T\n\nMarseille\n0 6  5 2  1 8  7 7  0 3\n\nC O M P É T E N C E S\n\nDesign de \
services\nEntretiens usagers\n\nL A N G U E S\n\nArabe : langue maternelle\n\nI N T É R Ê T S\n\nCéramique\n \
Yasmine Haddad\n\nDesigner de services publics\n\nE X P É R I E N C E S\n\ndepuis 2 0 2 4\n\nDesi gner j uni or – \
Atelier Commun\n\n2 0 2 2  – 2 0 2 3\n\nStagi ai re desi gn – Région Sud\n\nF O R M A T I O N\n\n2 0 1 9  – 2 0 2 2\n";
        let v = verdict(text).unwrap();
        assert_eq!(v.kind, DocKind::Cv, "{}", v.reason);
        assert!(v.reason.contains("COMPÉTENCES"), "{}", v.reason);
    }

    #[test]
    fn french_academic_and_associative_headings() {
        let text = "Élise Marchand\n\nParcours universitaire\n09/2023 – 06/2025 Master 2\n\nParcours professionnel\n\
02/2025 – 07/2025 Stage\n\nEngagement associatif\nBanque alimentaire\n\nCentres d'intérêt : théâtre, course à pied\n";
        let s = score(text);
        assert!(s.cv_signals.iter().any(|x| x.contains("Parcours universitaire")), "{:?}", s.cv_signals);
        assert!(s.cv_signals.iter().any(|x| x.contains("Centres d'intérêt")), "{:?}", s.cv_signals);
        assert_eq!(kind(text), Some(DocKind::Cv));
    }

    const RECOMMENDATION_FR: &str = "Nantes Métropole\nDirection de la citoyenneté\n\nObjet : lettre de \
recommandation – Mme Élise Marchand\n\nMadame, Monsieur,\n\nJ'ai eu le plaisir d'encadrer Mme Élise Marchand \
pendant son stage de six mois. Elle a préparé les comités de pilotage et en a suivi le budget avec rigueur. Elle \
a su gagner la confiance de nos partenaires et elle a animé un atelier. Son sens de l'organisation a été apprécié \
de toute l'équipe.\n\nC'est donc sans réserve que je recommande sa candidature.\n\nJe vous prie d'agréer, \
Madame, Monsieur, l'expression de mes salutations distinguées.\n\nClaire Fontaine\n";

    const REFERENCE_EN: &str = "Dear Hiring Committee,\n\nIt is my pleasure to recommend Hannah Whitfield, whom I \
taught and supervised for three years. Hannah was one of the most thoughtful students of her year. She listens \
carefully, she is rigorous with evidence, and she works generously with others. Her final project won a prize.\n\n\
I recommend her without reservation for any role in service design.\n\nYours faithfully,\n\nDr Robert Ellison\n";

    #[test]
    fn recommendation_letters_are_other_despite_their_salutation() {
        for text in [RECOMMENDATION_FR, REFERENCE_EN] {
            let v = verdict(text).unwrap();
            assert_eq!(v.kind, DocKind::Other, "{}", v.reason);
            assert!(v.reason.contains("recommendation"), "{}", v.reason);
        }
        // A cover letter that mentions an enclosed recommendation is still the cover letter.
        let letter = LETTER_FR.replace(
            "Je serais heureuse",
            "Vous trouverez ci-joint une lettre de recommandation de ma tutrice. Je serais heureuse",
        );
        assert_eq!(kind(&letter), Some(DocKind::CoverLetter));
    }

    #[test]
    fn certificates_are_supporting_documents() {
        let v = verdict(
            "Attestation de stage\n\nJe soussignée, Claire Fontaine, atteste que M. Girard a effectué un stage.",
        )
        .unwrap();
        assert_eq!(v.kind, DocKind::Other, "{}", v.reason);
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
