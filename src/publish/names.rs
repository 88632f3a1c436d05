//! Names that survive the trip: a file or folder name that is fine on ext4 but that Nextcloud
//! refuses, or that its desktop clients (and Windows) would not sync, is mapped to one they take,
//! the same way every time.
//!
//! What is refused or skipped, and what becomes of it:
//!
//! | rule | source | mapped |
//! |---|---|---|
//! | `\ / : * ? " < > \|` and control characters | Nextcloud (always `/`, `\`, 0–31; the rest with Windows-compatible names on), Windows | `_` |
//! | characters outside the Basic Multilingual Plane (emoji) | Nextcloud on MySQL/MariaDB without 4-byte support | `_` |
//! | a leading `.` | hidden by Nextcloud and the desktop clients (`.htaccess` is refused) | `_` |
//! | a trailing `.` or space | Nextcloud (Windows-compatible names), Windows | dropped |
//! | `CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`, `COM¹²³`, `LPT¹²³` as the part before the first dot | Nextcloud (Windows-compatible names), Windows | `_` in front |
//! | `desktop.ini`, `Thumbs.db`, `.DS_Store`, `csync_journal.db` | Nextcloud desktop client's exclude list | `_` in front |
//! | ending `.part`, `.filepart`, `.crdownload`, `.kate-swp`, `~` | Nextcloud (`.part`, `.filepart`), desktop client | the dot (or `~`) becomes `_` |
//! | starting `~$`; containing `.~`, `_conflict-`, `.unison` | desktop client (Office lock files, conflicts, temporaries) | `_$`, `._`, `_conflict_`, `_unison` |
//! | longer than 250 bytes | Nextcloud | cut, extension kept |
//!
//! A name that had to change gets 6 hex digits of its original's hash before its extension
//! (`desktop.ini` → `_desktop-5a1c2e.ini`), so two names in one folder can never land on one
//! remote name ("_desktop.ini" sent as such stays itself). Ordinary names, which is nearly all
//! of them (`CV - Jeanne Dupré.pdf`), pass unchanged.

use unicode_normalization::UnicodeNormalization;

use crate::understand::sha256_hex;

/// The longest name we create remotely, in bytes (Nextcloud refuses more than 250).
pub const MAX_REMOTE_NAME_BYTES: usize = 240;

const RESERVED_BASENAMES: &[&str] = &[
    "con", "prn", "aux", "nul", "com0", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "com¹",
    "com²", "com³", "lpt0", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9", "lpt¹", "lpt²",
    "lpt³",
];
const EXCLUDED_NAMES: &[&str] = &["desktop.ini", "thumbs.db", ".ds_store", "csync_journal.db", ".htaccess"];
const EXCLUDED_ENDINGS: &[&str] = &[".part", ".filepart", ".crdownload", ".kate-swp"];

/// The remote name for a local file or folder name. Deterministic, never empty, at most
/// [`MAX_REMOTE_NAME_BYTES`] bytes; the same as `local` for ordinary names.
pub fn remote_name(local: &str) -> String {
    let fixed = fix(local);
    if fixed == local {
        return fixed;
    }
    // Changed: mark it with its original's hash so that it cannot meet another name.
    let tag = &sha256_hex(local.as_bytes())[..6];
    let (stem, ext) = split_extension(&fixed);
    let room = MAX_REMOTE_NAME_BYTES - ext.len() - tag.len() - 1;
    format!("{}-{tag}{ext}", cut(stem, room))
}

/// Every rule of the table, without the hash mark.
fn fix(local: &str) -> String {
    let mut out: String = local
        .nfc()
        .map(|c| match c {
            '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => '_',
            c if c.len_utf8() == 4 => '_',
            c => c,
        })
        .collect();
    while out.ends_with(['.', ' ']) {
        out.pop();
    }
    if let Some(rest) = out.strip_prefix('.') {
        out = format!("_{rest}");
    }
    if out.is_empty() {
        return "unnamed".into();
    }
    let lower = out.to_lowercase();
    let basename = lower.split('.').next().unwrap_or_default();
    if RESERVED_BASENAMES.contains(&basename) || EXCLUDED_NAMES.contains(&lower.as_str()) {
        out.insert(0, '_');
    }
    // Byte positions below come from an ASCII-lowered copy: it has the same lengths as `out`.
    if let Some(ending) = EXCLUDED_ENDINGS.iter().find(|e| out.to_ascii_lowercase().ends_with(*e)) {
        let at = out.len() - ending.len();
        out.replace_range(at..at + 1, "_");
    }
    if out.ends_with('~') {
        out.pop();
        out.push('_');
    }
    if out.starts_with("~$") {
        out.replace_range(0..1, "_");
    }
    for (pattern, with) in [(".~", "._"), ("_conflict-", "_conflict_"), (".unison", "_unison")] {
        while let Some(at) = out.to_ascii_lowercase().find(pattern) {
            out.replace_range(at..at + pattern.len(), with);
        }
    }
    if out.len() > MAX_REMOTE_NAME_BYTES {
        let (stem, ext) = split_extension(&out);
        out = format!("{}{ext}", cut(stem, MAX_REMOTE_NAME_BYTES - ext.len()));
    }
    out
}

/// `("report", ".pdf")`; no extension for a name without a dot, or one longer than 10 bytes.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(at) if at > 0 && name.len() - at <= 11 => name.split_at(at),
        _ => (name, ""),
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Percent-encodes one path component for a URL: everything but the unreserved characters.
pub(crate) fn encode_component(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The `publish.web_url` link to a candidate folder (`posting/Family-Given--hash`, as the
/// ledger keys it): `{posting}` and `{folder}` become the folder's remote names, URL-encoded.
pub fn web_link(template: &str, folder: &str) -> Option<String> {
    if template.is_empty() {
        return None;
    }
    let mut parts = folder.split('/').filter(|p| !p.is_empty());
    let posting = parts.next()?;
    let person = parts.next_back().unwrap_or(posting);
    Some(
        template
            .replace("{posting}", &encode_component(&remote_name(posting)))
            .replace("{folder}", &encode_component(&remote_name(person))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nextcloud's own check (lib/private/Files/FilenameValidator.php) with Windows-compatible
    /// names on and a MySQL database without 4-byte characters, plus the desktop client's
    /// default exclude list (sync-exclude.lst): what a name must pass to reach every recruiter.
    fn survives(name: &str) -> Result<(), String> {
        let lower = name.to_lowercase();
        let fail = |why: &str| Err(format!("{name:?}: {why}"));
        if name.trim().is_empty() || name.trim() == "." || name.trim() == ".." {
            return fail("empty or a dot name");
        }
        if name.len() > 250 {
            return fail("longer than 250 bytes");
        }
        if name.chars().any(|c| c.len_utf8() == 4) {
            return fail("4-byte character");
        }
        if name.chars().any(|c| (c as u32) < 32 || "\\/<>:\"|?*".contains(c)) {
            return fail("forbidden character");
        }
        if [".part", ".filepart", " ", "."].iter().any(|e| lower.ends_with(e)) {
            return fail("forbidden ending");
        }
        // The part before the first dot, a leading dot not counting.
        let basename = lower.char_indices().skip(1).find(|(_, c)| *c == '.').map_or(&lower[..], |(at, _)| &lower[..at]);
        if RESERVED_BASENAMES.contains(&basename) || lower == ".htaccess" {
            return fail("reserved name");
        }
        let excluded = lower.ends_with('~')
            || lower.ends_with(".crdownload")
            || lower.ends_with(".kate-swp")
            || lower.contains(".unison")
            || lower.contains("_conflict-")
            || lower.contains(".~")
            || lower.starts_with("~$")
            || lower.starts_with('.')
            || ["desktop.ini", "thumbs.db", "csync_journal.db"].contains(&lower.as_str())
            || lower.starts_with("icon\r");
        if excluded {
            return fail("skipped by the desktop client");
        }
        Ok(())
    }

    #[test]
    fn ordinary_names_pass_unchanged() {
        for name in [
            "CV - Jeanne Dupré.pdf",
            "Lettre de motivation - Jeanne Dupré.pdf",
            "message-20261123T101500Z-1a2b3c4d.eml",
            "metadata.json",
            "Dupré-Jeanne--1a2b3c4d",
            "stage-gestion-projet",
            "COMMENT.pdf",
            "console.log",
            "CV (2).docx",
            "Ünïcödé ça marche – 2026.odt",
        ] {
            assert_eq!(remote_name(name), name);
            survives(name).unwrap();
        }
    }

    #[test]
    fn names_nextcloud_or_windows_refuse_are_mapped_the_same_way_every_time() {
        let hostile = [
            "a:b*c?.pdf",
            "quote\"pipe|lt<gt>.pdf",
            "back\\slash.pdf",
            "tab\there.pdf",
            "trailing dot.",
            "trailing space ",
            "dots and spaces. . .",
            ".htaccess",
            ".hidden.pdf",
            "CON",
            "con.pdf",
            "Nul.tar.gz",
            "COM0.txt",
            "lpt9",
            "com¹.doc",
            "desktop.ini",
            "Thumbs.db",
            "notes.part",
            "upload.FILEPART",
            "download.crdownload",
            "draft.docx~",
            "~$CV.docx",
            "CV.~1.pdf",
            "CV_conflict-2026.pdf",
            "x.unison.tmp",
            "Portfolio 🎨.pdf",
            "🎉",
            "",
            "...",
            &format!("{}.pdf", "é".repeat(200)),
        ];
        let mut seen = std::collections::HashSet::new();
        for name in hostile {
            let once = remote_name(name);
            assert_eq!(remote_name(name), once, "deterministic");
            survives(&once).unwrap_or_else(|e| panic!("{name:?} → {e}"));
            assert!(once.len() <= MAX_REMOTE_NAME_BYTES, "{once}");
            assert!(seen.insert(once.clone()), "{name:?} collides on {once:?}");
        }
        assert_eq!(remote_name("a:b*c?.pdf"), format!("a_b_c_-{}.pdf", &sha256_hex(b"a:b*c?.pdf")[..6]));
        assert!(remote_name("desktop.ini").starts_with("_desktop-"), "{}", remote_name("desktop.ini"));
        assert!(remote_name("notes.part").starts_with("notes_part-"), "{}", remote_name("notes.part"));
        assert!(remote_name("Portfolio 🎨.pdf").ends_with(".pdf"));
    }

    #[test]
    fn a_mapped_name_never_meets_a_name_that_was_already_legal() {
        // "_desktop.ini" is legal as it is; "desktop.ini" must not become it.
        assert_eq!(remote_name("_desktop.ini"), "_desktop.ini");
        assert_ne!(remote_name("desktop.ini"), "_desktop.ini");
        assert_ne!(remote_name("a:b.pdf"), remote_name("a_b.pdf"));
    }

    #[test]
    fn links_encode_the_remote_names() {
        let t = "https://cloud.example.org/apps/files/?dir=/Recrutement/{posting}/{folder}";
        assert_eq!(
            web_link(t, "stage-gestion-projet/Dupré-Jeanne--1a2b3c4d").unwrap(),
            "https://cloud.example.org/apps/files/?dir=/Recrutement/stage-gestion-projet/Dupr%C3%A9-Jeanne--1a2b3c4d"
        );
        let odd = web_link(t, "p/O'Brien & Co #1").unwrap();
        assert!(odd.ends_with("/p/O%27Brien%20%26%20Co%20%231"), "{odd}");
        assert_eq!(web_link("", "p/x"), None);
    }
}
