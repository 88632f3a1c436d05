//! What a file is by its bytes, whatever its name and its declared type say.
//!
//! Two questions, both answered from content first:
//! - [`content_type`]: the type a known signature proves (a PDF declared `text/plain`, a photo
//!   sent without a type), so a binary part is never read as text and gets the right extension;
//! - [`danger`]: whether opening the file can run code or hides its content from checks: a
//!   program, a script, an HTML application, a macro-enabled Office file, or an encrypted
//!   archive, Office file or PDF. Such a file is never the CV or the letter.
//!
//! Cheap on purpose: signatures, a ZIP's directory, a few byte searches. Deep inspection is the
//! antivirus's job (the `antivirus` module).

use serde::Serialize;

use super::zip;

/// Why a file must not be opened as a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Danger {
    /// A program: Windows (MZ/PE), Linux (ELF), macOS (Mach-O), an installer, a shortcut, a disk image.
    Executable,
    /// A script: shell, JavaScript, VBScript, PowerShell, batch.
    Script,
    /// An HTML application (`.hta`) or compiled help: HTML that runs with the user's rights.
    HtmlApplication,
    /// An Office or LibreOffice file with macros.
    Macros,
    /// A password-protected archive, Office file or PDF: its content cannot be checked.
    Encrypted,
}

impl Danger {
    pub fn as_str(self) -> &'static str {
        match self {
            Danger::Executable => "executable",
            Danger::Script => "script",
            Danger::HtmlApplication => "html_application",
            Danger::Macros => "macros",
            Danger::Encrypted => "encrypted",
        }
    }

    /// For people: "a program", "a macro-enabled Office file", …
    pub fn describe(self) -> &'static str {
        match self {
            Danger::Executable => "a program",
            Danger::Script => "a script",
            Danger::HtmlApplication => "an HTML application",
            Danger::Macros => "a document with macros",
            Danger::Encrypted => "a password-protected file",
        }
    }
}

/// A danger and what showed it ("its bytes are a Windows program (MZ header)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub danger: Danger,
    pub evidence: String,
}

impl Finding {
    fn new(danger: Danger, evidence: impl Into<String>) -> Finding {
        Finding { danger, evidence: evidence.into() }
    }
}

/// How much of a file the text searches look at: scripts and markers sit at the start.
const SCAN_BYTES: usize = 256 * 1024;

/// The type that the bytes' signature proves, or `None` when they carry no known signature.
pub fn content_type(bytes: &[u8]) -> Option<&'static str> {
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    Some(if is_pdf(bytes) {
        "application/pdf"
    } else if zip::looks_like_zip(bytes) {
        zip_type(bytes)
    } else if starts(OLE_MAGIC) {
        ole_type(bytes)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if starts(b"\xff\xd8\xff") {
        "image/jpeg"
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        "image/gif"
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "image/webp"
    } else if bytes.get(4..8) == Some(b"ftyp")
        && matches!(bytes.get(8..12), Some(b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc"))
    {
        "image/heic"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "image/tiff"
    } else if starts(b"{\\rtf") {
        "application/rtf"
    } else if starts(b"Rar!\x1a\x07") {
        "application/vnd.rar"
    } else if starts(b"7z\xbc\xaf\x27\x1c") {
        "application/x-7z-compressed"
    } else if starts(b"\x1f\x8b") {
        "application/gzip"
    } else if starts(b"\x78\x9f\x3e\x22") {
        "application/vnd.ms-tnef"
    } else if program_kind(bytes).is_some() {
        "application/octet-stream"
    } else {
        return None;
    })
}

/// Whether bytes cannot be text: a known binary signature, or NUL bytes (no text encoding a
/// mail client declares puts NULs in text).
pub fn is_binary(bytes: &[u8]) -> bool {
    content_type(bytes).is_some() || bytes[..bytes.len().min(SCAN_BYTES)].contains(&0)
}

/// The usual extension for a type (for a part that came without a name).
pub fn extension_for(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "application/pdf" => "pdf",
        "application/msword" => "doc",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.ms-powerpoint" => "ppt",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        "application/vnd.oasis.opendocument.text" => "odt",
        "application/vnd.oasis.opendocument.spreadsheet" => "ods",
        "application/vnd.oasis.opendocument.presentation" => "odp",
        "application/rtf" => "rtf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "image/tiff" => "tif",
        "application/zip" => "zip",
        "application/vnd.rar" => "rar",
        "application/x-7z-compressed" => "7z",
        "application/gzip" => "gz",
        _ => return None,
    })
}

/// Whether a declared type says nothing the bytes cannot say better: text (what clients put
/// on a file they do not know), `application/octet-stream`, or nothing at all.
pub fn declared_type_is_vague(declared: &str) -> bool {
    let t = declared.trim();
    t.is_empty() || t.starts_with("text/") || t == "application/octet-stream" || !t.contains('/')
}

fn is_pdf(bytes: &[u8]) -> bool {
    // Readers accept the header anywhere in the first KiB (after a mail gateway's junk, a BOM),
    // but a ZIP or an OLE file holding a PDF is a ZIP or an OLE file.
    if zip::looks_like_zip(bytes) || bytes.starts_with(OLE_MAGIC) {
        return false;
    }
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

const OLE_MAGIC: &[u8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

/// The names in an OLE compound file's directory are UTF-16; a byte search finds them.
fn ole_has(bytes: &[u8], stream: &str) -> bool {
    contains(bytes, &utf16(stream))
}

fn ole_type(bytes: &[u8]) -> &'static str {
    if ole_has(bytes, "WordDocument") {
        "application/msword"
    } else if ole_has(bytes, "Workbook") || ole_has(bytes, "Book") {
        "application/vnd.ms-excel"
    } else if ole_has(bytes, "PowerPoint Document") {
        "application/vnd.ms-powerpoint"
    } else {
        "application/x-ole-storage"
    }
}

/// ODF names its type in an uncompressed first member `mimetype`; OOXML has `[Content_Types].xml`
/// and a folder per application.
fn zip_type(bytes: &[u8]) -> &'static str {
    if bytes.get(30..38) == Some(b"mimetype") {
        let rest = &bytes[38..bytes.len().min(38 + 80)];
        for (sig, t) in [
            (&b"application/vnd.oasis.opendocument.text"[..], "application/vnd.oasis.opendocument.text"),
            (b"application/vnd.oasis.opendocument.spreadsheet", "application/vnd.oasis.opendocument.spreadsheet"),
            (b"application/vnd.oasis.opendocument.presentation", "application/vnd.oasis.opendocument.presentation"),
        ] {
            if rest.starts_with(sig) {
                return t;
            }
        }
    }
    let Ok(entries) = zip::entries(bytes) else { return "application/zip" };
    let has = |prefix: &str| entries.iter().any(|e| e.path.starts_with(prefix));
    if !entries.iter().any(|e| e.path == "[Content_Types].xml") {
        "application/zip"
    } else if has("word/") {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    } else if has("xl/") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else if has("ppt/") {
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    } else {
        "application/zip"
    }
}

/// A native program's header, named.
fn program_kind(bytes: &[u8]) -> Option<&'static str> {
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    if starts(b"MZ") && bytes.len() >= 64 {
        Some("a Windows program (MZ header)")
    } else if starts(b"\x7fELF") {
        Some("a Linux program (ELF header)")
    } else if [&b"\xfe\xed\xfa\xce"[..], b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"]
        .iter()
        .any(|m| starts(m))
    {
        Some("a macOS program (Mach-O header)")
    } else if starts(b"\xca\xfe\xba\xbe") {
        Some("a macOS universal program or Java class (CAFEBABE header)")
    } else if starts(b"\x4c\0\0\0\x01\x14\x02\0") {
        Some("a Windows shortcut (.lnk header)")
    } else {
        None
    }
}

/// Characters that change how a name looks without being seen: bidirectional overrides and
/// isolates, zero-width characters, the soft hyphen, the byte order mark.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The extension Windows would act on: invisible characters removed, and trailing dots and
/// spaces dropped ("CV.exe." runs as a program).
pub fn effective_extension(name: &str) -> Option<String> {
    let visible: String = name.chars().filter(|c| !is_invisible(*c)).collect();
    let trimmed = visible.trim_end_matches(['.', ' ']);
    let (stem, ext) = trimmed.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 12 || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// The danger an extension names on its own.
fn danger_of_extension(ext: &str) -> Option<Danger> {
    Some(match ext {
        "exe" | "com" | "scr" | "pif" | "cpl" | "dll" | "sys" | "drv" | "ocx" | "msi" | "msp" | "mst" | "msc"
        | "jar" | "lnk" | "appx" | "appxbundle" | "msix" | "msixbundle" | "application" | "appref-ms" | "gadget"
        | "xbap" | "iso" | "img" | "vhd" | "vhdx" | "dmg" | "app" | "pkg" | "deb" | "rpm" | "apk" | "run" | "scf"
        | "diagcab" | "settingcontent-ms" | "library-ms" => Danger::Executable,
        "js" | "jse" | "mjs" | "vbs" | "vbe" | "vb" | "wsf" | "wsh" | "wsc" | "sct" | "ps1" | "psm1" | "psd1"
        | "ps1xml" | "psc1" | "bat" | "cmd" | "sh" | "bash" | "zsh" | "csh" | "ksh" | "command" | "reg" | "inf"
        | "scpt" | "applescript" | "py" | "pyw" | "pyc" | "pl" | "rb" | "lua" | "xll" => Danger::Script,
        "hta" | "chm" | "htc" => Danger::HtmlApplication,
        "docm" | "dotm" | "xlsm" | "xltm" | "xlam" | "pptm" | "potm" | "ppsm" | "ppam" | "sldm" => Danger::Macros,
        _ => return None,
    })
}

/// Whether the file named `name` with these bytes is dangerous, and why. Content is looked at
/// first: a program named `CV.pdf` is a program.
pub fn danger(name: Option<&str>, bytes: &[u8]) -> Option<Finding> {
    by_content(bytes).or_else(|| {
        let ext = effective_extension(name?)?;
        let danger = danger_of_extension(&ext)?;
        Some(Finding::new(danger, format!("its name ends in .{ext}")))
    })
}

fn by_content(bytes: &[u8]) -> Option<Finding> {
    if let Some(what) = program_kind(bytes) {
        return Some(Finding::new(Danger::Executable, format!("its bytes are {what}")));
    }
    if is_pdf(bytes) {
        return pdf_encryption(bytes);
    }
    if zip::looks_like_zip(bytes) {
        return in_zip(bytes);
    }
    if bytes.starts_with(OLE_MAGIC) {
        if ole_has(bytes, "_VBA_PROJECT") {
            return Some(Finding::new(Danger::Macros, "an Office file holding a VBA project (macros)"));
        }
        if ole_has(bytes, "EncryptedPackage") || ole_has(bytes, "EncryptionInfo") {
            return Some(Finding::new(Danger::Encrypted, "a password-protected Office file (EncryptedPackage)"));
        }
        return None;
    }
    if bytes.starts_with(b"Rar!\x1a\x07") {
        return rar_encryption(bytes);
    }
    if content_type(bytes).is_some() {
        return None; // an image, RTF, another archive: no code of its own to run
    }
    script_text(bytes)
}

/// A ZIP: macros in an Office or LibreOffice file, encrypted members, or programs and scripts
/// inside (for an archive that is not opened; an opened one has its members checked one by one).
fn in_zip(bytes: &[u8]) -> Option<Finding> {
    let entries = zip::entries(bytes).ok()?;
    if entries.iter().any(zip::Entry::is_encrypted) {
        return Some(Finding::new(Danger::Encrypted, "a ZIP with password-protected files"));
    }
    if entries.iter().any(|e| e.name().eq_ignore_ascii_case("vbaProject.bin")) {
        return Some(Finding::new(Danger::Macros, "an Office file holding vbaProject.bin (macros)"));
    }
    if entries.iter().any(|e| e.path.starts_with("Basic/") && !e.is_dir() && e.name() != "script-lc.xml")
        || entries.iter().any(|e| e.path.starts_with("Scripts/") && !e.is_dir())
    {
        return Some(Finding::new(Danger::Macros, "an OpenDocument file holding Basic or script macros"));
    }
    if entries.iter().any(|e| e.path == "META-INF/manifest.xml")
        && let Ok(Some(manifest)) = zip::read_path(bytes, "META-INF/manifest.xml", &zip::Limits::OFFICE)
        && contains(&manifest, b"encryption-data")
    {
        return Some(Finding::new(Danger::Encrypted, "a password-protected OpenDocument file"));
    }
    entries.iter().filter(|e| !e.is_dir() && !e.is_os_clutter()).find_map(|e| {
        let ext = effective_extension(e.name())?;
        let d = danger_of_extension(&ext)?;
        Some(Finding::new(d, format!("an archive holding a .{ext} file")))
    })
}

/// RAR 5 marks an encrypted archive with an encryption header right after the signature; RAR 4
/// sets a flag in the main header (0x0080: headers encrypted) or per file (0x0004).
fn rar_encryption(bytes: &[u8]) -> Option<Finding> {
    let encrypted = if bytes.starts_with(b"Rar!\x1a\x07\x01\x00") {
        // After the 8-byte signature: CRC32 (4), then vint size, then vint type (4 = encryption).
        let mut at = 12;
        let mut vint = || {
            let mut v: u64 = 0;
            for shift in (0..63).step_by(7) {
                let b = *bytes.get(at)?;
                at += 1;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        };
        vint().and(vint()) == Some(4)
    } else {
        bytes.get(10..12).is_some_and(|f| u16::from_le_bytes([f[0], f[1]]) & 0x0080 != 0)
    };
    encrypted.then(|| Finding::new(Danger::Encrypted, "a password-protected RAR archive"))
}

/// Scripts and HTML applications written as text, whatever their name.
fn script_text(bytes: &[u8]) -> Option<Finding> {
    let head = &bytes[..bytes.len().min(SCAN_BYTES)];
    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    if body.starts_with(b"#!") {
        return Some(Finding::new(Danger::Script, "its first line is a #! interpreter line"));
    }
    let lower: Vec<u8> = body.iter().map(u8::to_ascii_lowercase).collect();
    let trimmed = lower.trim_ascii_start();
    if contains(&lower, b"<hta:application") {
        return Some(Finding::new(Danger::HtmlApplication, "it is an HTML application (HTA:APPLICATION)"));
    }
    if trimmed.starts_with(b"@echo off") {
        return Some(Finding::new(Danger::Script, "it is a Windows batch script (@echo off)"));
    }
    for (marker, what) in [
        (&b"wscript.shell"[..], "a Windows Script Host script (WScript.Shell)"),
        (b"wscript.createobject", "a Windows Script Host script (WScript.CreateObject)"),
        (b"new activexobject(", "a JScript script (ActiveXObject)"),
        (b"createobject(\"shell.application", "a VBScript script (Shell.Application)"),
        (b"-encodedcommand", "a PowerShell command line (-EncodedCommand)"),
        (b"downloadstring(", "a PowerShell downloader (DownloadString)"),
        (b"invoke-expression", "a PowerShell script (Invoke-Expression)"),
    ] {
        if contains(&lower, marker) {
            return Some(Finding::new(Danger::Script, format!("it is {what}")));
        }
    }
    None
}

// --- PDF encryption -------------------------------------------------------------------------
//
// A PDF with an /Encrypt dictionary is not necessarily locked: most "protected" PDFs only
// restrict printing or copying, with an empty user password, and open in any reader (and in
// clamd). Only a PDF that asks for a password to open is flagged. The encryption dictionary
// may never sit in an object stream (ISO 32000-1 §7.5.7), so its keys are plain text.

fn pdf_encryption(bytes: &[u8]) -> Option<Finding> {
    let after = key_in(bytes, b"/Encrypt")?;
    let dict = match after.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(i) if after[i] == b'<' => Some(&after[i..]),
        Some(i) => indirect_object(bytes, &after[i..]),
        None => None,
    };
    let locked = dict.and_then(|d| pdf::user_password_is_empty(bytes, d)).map(|empty| !empty);
    match locked {
        Some(false) => None,
        Some(true) => Some(Finding::new(Danger::Encrypted, "a PDF that asks for a password to open")),
        None => Some(Finding::new(Danger::Encrypted, "an encrypted PDF whose protection could not be checked")),
    }
}

/// The bytes after the first `/Key` that is the whole name (not `/EncryptMetadata`).
fn key_in<'a>(bytes: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], key) {
        let end = from + i + key.len();
        if !bytes.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            return Some(&bytes[end..]);
        }
        from = end;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// `12 0 R` → the bytes from `12 0 obj`'s dictionary on.
fn indirect_object<'a>(bytes: &'a [u8], reference: &[u8]) -> Option<&'a [u8]> {
    let text = std::str::from_utf8(&reference[..reference.len().min(32)]).ok().or_else(|| {
        let end = reference.iter().take(32).position(|b| !b.is_ascii()).unwrap_or(32);
        std::str::from_utf8(&reference[..end]).ok()
    })?;
    let mut words = text.split_ascii_whitespace();
    let (num, generation) = (words.next()?.parse::<u32>().ok()?, words.next()?.parse::<u32>().ok()?);
    let header = format!("{num} {generation} obj");
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], header.as_bytes()) {
        let at = from + i;
        // Not "112 0 obj" when looking for "12 0 obj".
        if at == 0 || !bytes[at - 1].is_ascii_digit() {
            let rest = &bytes[at + header.len()..];
            let start = rest.iter().position(|&b| b == b'<')?;
            return Some(&rest[start..]);
        }
        from = at + header.len();
    }
    None
}

mod pdf {
    //! The standard security handler's check of the empty user password (ISO 32000-1 §7.6.3.4,
    //! algorithms 2, 4, 5; ISO 32000-2 §7.6.4.3.3 for revision 6).

    use md5::{Digest, Md5};

    const PAD: [u8; 32] = [
        0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08, 0x2E, 0x2E,
        0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
    ];

    /// `Some(true)`: it opens without a password; `Some(false)`: it needs one; `None`: cannot tell.
    pub(super) fn user_password_is_empty(file: &[u8], dict: &[u8]) -> Option<bool> {
        let dict = &dict[..dict.len().min(8192)];
        let r = int_value(dict, b"/R")?;
        let u = string_value(dict, b"/U")?;
        match r {
            2..=4 => {
                let o = string_value(dict, b"/O")?;
                let p = int_value(dict, b"/P")? as i32;
                let length = if r == 2 { 40 } else { int_value(dict, b"/Length").unwrap_or(40) };
                let n = usize::try_from(length / 8).ok().filter(|n| (5..=16).contains(n))?;
                let id = first_id(file)?;
                let encrypt_metadata =
                    value_after(dict, b"/EncryptMetadata").is_none_or(|v| !v.trim_ascii_start().starts_with(b"false"));
                let mut h = Md5::new();
                h.update(PAD);
                h.update(&o[..o.len().min(32)]);
                h.update(p.to_le_bytes());
                h.update(&id);
                if r >= 4 && !encrypt_metadata {
                    h.update([0xff; 4]);
                }
                let mut key = h.finalize().to_vec();
                if r >= 3 {
                    for _ in 0..50 {
                        key = Md5::digest(&key[..n]).to_vec();
                    }
                }
                key.truncate(n);
                if r == 2 {
                    Some(rc4(&key, &PAD) == u.get(..32)?)
                } else {
                    let mut h = Md5::new();
                    h.update(PAD);
                    h.update(&id);
                    let mut x = rc4(&key, &h.finalize());
                    for i in 1..=19u8 {
                        let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
                        x = rc4(&k, &x);
                    }
                    Some(x.as_slice() == u.get(..16)?)
                }
            }
            5 => {
                let (hash, salt) = (u.get(..32)?, u.get(32..40)?);
                Some(ring::digest::digest(&ring::digest::SHA256, salt).as_ref() == hash)
            }
            6 => {
                let (hash, salt) = (u.get(..32)?, u.get(32..40)?);
                Some(hash_r6(b"", salt, &[]).as_slice() == hash)
            }
            _ => None,
        }
    }

    pub(super) fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
        let mut j: u8 = 0;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, j as usize);
        }
        let (mut i, mut j) = (0u8, 0u8);
        data.iter()
            .map(|b| {
                i = i.wrapping_add(1);
                j = j.wrapping_add(s[i as usize]);
                s.swap(i as usize, j as usize);
                b ^ s[s[i as usize].wrapping_add(s[j as usize]) as usize]
            })
            .collect()
    }

    /// ISO 32000-2 algorithm 2.B.
    fn hash_r6(password: &[u8], salt: &[u8], udata: &[u8]) -> Vec<u8> {
        use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
        use ring::digest::{SHA256, SHA384, SHA512, digest};
        let mut k = digest(&SHA256, &[password, salt, udata].concat()).as_ref().to_vec();
        let mut round = 0u32;
        loop {
            let k1: Vec<u8> = [password, &k, udata].concat().repeat(64);
            let Ok(enc) = cbc::Encryptor::<aes::Aes128>::new_from_slices(&k[..16], &k[16..32]) else {
                return Vec::new();
            };
            let e = enc.encrypt_padded_vec_mut::<NoPadding>(&k1);
            let modulo: u32 = e[..16].iter().map(|&b| u32::from(b)).sum::<u32>() % 3;
            k = match modulo {
                0 => digest(&SHA256, &e).as_ref().to_vec(),
                1 => digest(&SHA384, &e).as_ref().to_vec(),
                _ => digest(&SHA512, &e).as_ref().to_vec(),
            };
            round += 1;
            if round >= 64 && u32::from(*e.last().unwrap_or(&0)) <= round - 32 {
                break;
            }
        }
        k.truncate(32);
        k
    }

    /// The value of `/Key` in the dictionary that opens `dict`, looking at its own entries only
    /// (the nested crypt filter dictionaries have a `/Length` of their own).
    fn value_after<'a>(dict: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
        let mut depth = 0usize;
        let mut i = 0;
        while i < dict.len() {
            match dict[i] {
                b'<' if dict.get(i + 1) == Some(&b'<') => {
                    depth += 1;
                    i += 2;
                    continue;
                }
                b'>' if dict.get(i + 1) == Some(&b'>') => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return None;
                    }
                    i += 2;
                    continue;
                }
                b'<' => i += dict[i..].iter().position(|&b| b == b'>')?,
                b'(' => {
                    // Skip a literal string: balanced parentheses, backslash escapes.
                    let mut nest = 0usize;
                    loop {
                        i += 1;
                        match *dict.get(i)? {
                            b'\\' => i += 1,
                            b'(' => nest += 1,
                            b')' if nest == 0 => break,
                            b')' => nest -= 1,
                            _ => {}
                        }
                    }
                }
                b'/' => {
                    let start = i + 1;
                    let end = start
                        + dict[start..]
                            .iter()
                            .position(|b| b.is_ascii_whitespace() || b"/<>[]()".contains(b))
                            .unwrap_or(dict.len() - start);
                    if depth == 1 && &dict[i..end] == key {
                        return Some(&dict[end..]);
                    }
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    fn int_value(dict: &[u8], key: &[u8]) -> Option<i64> {
        let v = value_after(dict, key)?;
        let v = &v[v.iter().position(|b| !b.is_ascii_whitespace())?..];
        let end = v.iter().position(|b| !(b.is_ascii_digit() || *b == b'-')).unwrap_or(v.len());
        std::str::from_utf8(&v[..end]).ok()?.parse().ok()
    }

    fn string_value(dict: &[u8], key: &[u8]) -> Option<Vec<u8>> {
        let v = value_after(dict, key)?;
        let v = &v[v.iter().position(|b| !b.is_ascii_whitespace())?..];
        parse_string(v)
    }

    /// A literal `(…)` or hex `<…>` string.
    fn parse_string(v: &[u8]) -> Option<Vec<u8>> {
        match v.first()? {
            b'<' => {
                let end = v.iter().position(|&b| b == b'>')?;
                let digits: Vec<u8> = v[1..end].iter().copied().filter(u8::is_ascii_hexdigit).collect();
                let mut out: Vec<u8> = digits
                    .chunks(2)
                    .map(|c| {
                        let hi = (c[0] as char).to_digit(16).unwrap_or(0) as u8;
                        let lo = c.get(1).map_or(0, |&l| (l as char).to_digit(16).unwrap_or(0) as u8);
                        hi << 4 | lo
                    })
                    .collect();
                out.truncate(256);
                Some(out)
            }
            b'(' => {
                let mut out = Vec::new();
                let mut depth = 0usize;
                let mut i = 1;
                while i < v.len() && out.len() < 256 {
                    let b = v[i];
                    match b {
                        b'\\' => {
                            i += 1;
                            let e = *v.get(i)?;
                            match e {
                                b'n' => out.push(b'\n'),
                                b'r' => out.push(b'\r'),
                                b't' => out.push(b'\t'),
                                b'b' => out.push(8),
                                b'f' => out.push(12),
                                b'0'..=b'7' => {
                                    let mut n = u32::from(e - b'0');
                                    for _ in 0..2 {
                                        match v.get(i + 1) {
                                            Some(&d @ b'0'..=b'7') => {
                                                n = n * 8 + u32::from(d - b'0');
                                                i += 1;
                                            }
                                            _ => break,
                                        }
                                    }
                                    out.push(n as u8);
                                }
                                b'\r' => {
                                    if v.get(i + 1) == Some(&b'\n') {
                                        i += 1;
                                    }
                                }
                                b'\n' => {}
                                other => out.push(other),
                            }
                        }
                        b'(' => {
                            depth += 1;
                            out.push(b);
                        }
                        b')' if depth == 0 => return Some(out),
                        b')' => {
                            depth -= 1;
                            out.push(b);
                        }
                        _ => out.push(b),
                    }
                    i += 1;
                }
                None
            }
            _ => None,
        }
    }

    /// The first string of the trailer's `/ID [<…> <…>]` (the last one in the file wins: an
    /// incremental update writes a new trailer).
    fn first_id(file: &[u8]) -> Option<Vec<u8>> {
        let mut at = None;
        let mut from = 0;
        while let Some(i) = super::find(&file[from..], b"/ID") {
            let pos = from + i + 3;
            if file.get(pos).is_some_and(|c| !c.is_ascii_alphanumeric()) {
                at = Some(pos);
            }
            from = pos;
        }
        let v = &file[at?..];
        let v = &v[v.iter().position(|&b| b == b'[')? + 1..];
        let v = &v[v.iter().position(|b| !b.is_ascii_whitespace())?..];
        parse_string(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_give_types() {
        assert_eq!(content_type(b"%PDF-1.7\n%\xe2\xe3"), Some("application/pdf"));
        assert_eq!(content_type(b"\x89PNG\r\n\x1a\n\0\0"), Some("image/png"));
        assert_eq!(content_type(b"\xff\xd8\xff\xe0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(content_type(b"Bonjour"), None);
        assert!(is_binary(b"abc\0def"));
        assert!(!is_binary("Très bien".as_bytes()));
    }

    #[test]
    fn names_are_judged_as_windows_reads_them() {
        assert_eq!(effective_extension("CV\u{202E}fdp.exe").as_deref(), Some("exe"));
        assert_eq!(effective_extension("CV.exe.").as_deref(), Some("exe"));
        assert_eq!(effective_extension("CV.exe \u{200B}").as_deref(), Some("exe"));
        assert_eq!(effective_extension("CV.pdf").as_deref(), Some("pdf"));
        assert_eq!(danger(Some("CV.pdf.js"), b"var x = 1;").map(|f| f.danger), Some(Danger::Script));
        assert_eq!(danger(Some("Lettre.docm"), b"").map(|f| f.danger), Some(Danger::Macros));
        assert_eq!(danger(Some("CV.pdf"), b"%PDF-1.4\n"), None);
    }

    #[test]
    fn programs_are_known_by_their_bytes_whatever_the_name() {
        let mut pe = b"MZ\x90\0".to_vec();
        pe.resize(128, 0);
        assert_eq!(danger(Some("CV.pdf"), &pe).map(|f| f.danger), Some(Danger::Executable));
        assert_eq!(danger(None, b"\x7fELF\x02\x01\x01").map(|f| f.danger), Some(Danger::Executable));
        assert_eq!(danger(Some("cv.txt"), b"#!/bin/sh\nrm -rf ~\n").map(|f| f.danger), Some(Danger::Script));
        assert_eq!(danger(Some("cv.txt"), b"\xef\xbb\xbf@ECHO OFF\r\n").map(|f| f.danger), Some(Danger::Script));
        let hta = b"<html><head><HTA:APPLICATION ID=\"x\"></head></html>";
        assert_eq!(danger(Some("cv.html"), hta).map(|f| f.danger), Some(Danger::HtmlApplication));
    }

    #[test]
    fn a_letter_that_mentions_scripts_is_not_one() {
        let text = "Madame, Monsieur, je maîtrise JavaScript, PowerShell et VBA. Cordialement.";
        assert_eq!(danger(Some("lettre.txt"), text.as_bytes()), None);
    }

    #[test]
    fn ole_macros_and_encryption() {
        let mut ole = OLE_MAGIC.to_vec();
        ole.extend(utf16("Root Entry"));
        ole.extend(utf16("WordDocument"));
        assert_eq!(danger(Some("cv.doc"), &ole), None);
        assert_eq!(content_type(&ole), Some("application/msword"));
        let mut macro_doc = ole.clone();
        macro_doc.extend(utf16("_VBA_PROJECT"));
        assert_eq!(danger(Some("cv.doc"), &macro_doc).map(|f| f.danger), Some(Danger::Macros));
        let mut locked = OLE_MAGIC.to_vec();
        locked.extend(utf16("EncryptionInfo"));
        locked.extend(utf16("EncryptedPackage"));
        assert_eq!(danger(Some("cv.docx"), &locked).map(|f| f.danger), Some(Danger::Encrypted));
    }

    #[test]
    fn rc4_matches_the_reference_vector() {
        // RFC 6229's first test key, first bytes of keystream.
        let ks = pdf::rc4(&[1, 2, 3, 4, 5], &[0; 8]);
        assert_eq!(ks, [0xb2, 0x39, 0x63, 0x05, 0xf0, 0x3d, 0xc0, 0x27]);
    }

    #[test]
    fn a_pdf_is_flagged_only_when_it_asks_for_a_password_to_open() {
        macro_rules! pdf {
            ($name:literal) => {
                (&include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sniff/", $name))[..], $name)
            };
        }
        for (bytes, name) in [
            pdf!("plain.pdf"),
            pdf!("open-r2.pdf"),
            pdf!("open-r3.pdf"),
            pdf!("open-r4.pdf"),
            pdf!("open-r5.pdf"),
            pdf!("open-r6.pdf"),
            pdf!("open-r6-objstm.pdf"),
        ] {
            assert_eq!(danger(Some("CV.pdf"), bytes), None, "{name}");
        }
        for (bytes, name) in [
            pdf!("locked-r2.pdf"),
            pdf!("locked-r3.pdf"),
            pdf!("locked-r4.pdf"),
            pdf!("locked-r5.pdf"),
            pdf!("locked-r6.pdf"),
            pdf!("locked-r3-objstm.pdf"),
        ] {
            let f = danger(Some("CV.pdf"), bytes).unwrap_or_else(|| panic!("{name} not flagged"));
            assert_eq!(f.danger, Danger::Encrypted, "{name}");
            assert!(f.evidence.contains("asks for a password"), "{name}: {}", f.evidence);
        }
    }

    #[test]
    fn garbage_pdfs_and_zips_are_total() {
        for junk in [
            &b"%PDF-1.4 /Encrypt"[..],
            b"%PDF-1.4 /Encrypt 5 0 R",
            b"%PDF-1.4 /Encrypt <</R 3 /O (abc /U <zz",
            b"%PDF-1.4 /Encrypt <</R 6 /U (short)>>",
            b"PK\x03\x04garbage",
            b"Rar!\x1a\x07\x01\x00",
            b"Rar!\x1a\x07\x00",
        ] {
            let _ = danger(Some("x"), junk);
            let _ = content_type(junk);
        }
        // Random tails after every prefix that leads somewhere: no panic, no endless loop.
        let prefixes: [&[u8]; 8] = [
            b"%PDF-1.4\n/Encrypt <</R 3 /Length 128 /O (",
            b"%PDF-1.4\n/Encrypt <</R 2 /O <",
            b"%PDF-1.4\n/ID [(",
            b"%PDF-1.7\n/Encrypt 4 0 R /ID [<00><00>]\n4 0 obj <</R 6 /U (",
            b"PK\x03\x04",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            b"Rar!\x1a\x07\x01\x00",
            b"#!",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..2000 {
            let mut bytes = prefixes[round % prefixes.len()].to_vec();
            for _ in 0..(round % 97) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"()<>[]/\\ 0123456789RUOPn\r\n\xff";
                bytes.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = danger(Some("x.pdf"), &bytes);
            let _ = content_type(&bytes);
        }
    }
}
