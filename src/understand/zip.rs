//! A small ZIP reader for what candidates send: an archive of their documents, and the DOCX and
//! ODT files that are ZIPs of XML. Written here rather than taken from a crate because what
//! matters is what it refuses: every size is checked against the limits before a byte is
//! inflated, inflation stops at the declared size, and nothing is ever written anywhere.
//!
//! Stored and deflated members only (what Windows, macOS, Office and LibreOffice write); ZIP64,
//! encryption and exotic methods are refused with a reason. Total: malformed input gives an
//! error, never a panic.

/// How much an archive may unpack to. A zip bomb declares (or hides) far more than it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_members: usize,
    pub max_member_bytes: u64,
    pub max_total_bytes: u64,
    /// Largest uncompressed/compressed ratio for members over [`RATIO_FLOOR`] bytes.
    pub max_ratio: u64,
}

/// Below this size a high ratio is harmless (a page of blank XML compresses 200:1).
pub(crate) const RATIO_FLOOR: u64 = 1024 * 1024;

impl Limits {
    /// An archive attached to an application: a handful of documents.
    pub(crate) const ARCHIVE: Limits =
        Limits { max_members: 50, max_member_bytes: 25 << 20, max_total_bytes: 50 << 20, max_ratio: 100 };
    /// The XML inside one DOCX or ODT.
    pub(crate) const OFFICE: Limits =
        Limits { max_members: 2000, max_member_bytes: 16 << 20, max_total_bytes: 16 << 20, max_ratio: 200 };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("not a ZIP archive")]
    NotZip,
    #[error("the archive's directory is damaged or cut short")]
    Corrupt,
    #[error("ZIP64 archives are not opened")]
    Zip64,
    #[error("{found} files, over the limit of {limit}")]
    TooManyMembers { found: usize, limit: usize },
    #[error("{name:?} would unpack to {size} bytes, over the limit of {limit}")]
    MemberTooLarge { name: String, size: u64, limit: u64 },
    #[error("the files would unpack to {size} bytes in all, over the limit of {limit}")]
    TotalTooLarge { size: u64, limit: u64 },
    #[error("{name:?} is compressed {ratio}:1, over the limit of {limit}:1")]
    Ratio { name: String, ratio: u64, limit: u64 },
    #[error("{0:?} is encrypted")]
    Encrypted(String),
    #[error("{name:?} uses compression method {method}, which is not supported")]
    Method { name: String, method: u16 },
    #[error("{0:?} is damaged")]
    Damaged(String),
}

/// One entry of the central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The stored path, decoded (UTF-8 when flagged or valid, CP437 otherwise).
    pub path: String,
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

impl Entry {
    /// The last component of the path: archives carry folders, filing never does.
    pub(crate) fn name(&self) -> &str {
        self.path.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or_default()
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.path.ends_with('/') || self.path.ends_with('\\')
    }

    /// A password-protected member (traditional PKWARE or AES): its content cannot be checked.
    pub(crate) fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    /// Files operating systems add to archives behind the user's back.
    pub(crate) fn is_os_clutter(&self) -> bool {
        let name = self.name();
        self.path.split(['/', '\\']).any(|c| c == "__MACOSX")
            || name.starts_with("._")
            || matches!(name, ".DS_Store" | "Thumbs.db" | "desktop.ini")
    }
}

/// A file taken out of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Last path component only.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Whether the bytes start like a ZIP archive (a local file header, or an empty archive).
pub(crate) fn looks_like_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_UTF8: u16 = 0x0800;

/// Reads the central directory.
pub(crate) fn entries(data: &[u8]) -> Result<Vec<Entry>, ZipError> {
    if data.len() < 22 {
        return Err(ZipError::NotZip);
    }
    // The end record is in the last 22 + 65535 (comment) bytes; search backwards.
    let lowest = data.len().saturating_sub(22 + 0xFFFF);
    let eocd = (lowest..=data.len() - 22).rev().find(|&i| u32_at(data, i) == Some(EOCD_SIG)).ok_or(ZipError::NotZip)?;
    let count = u16_at(data, eocd + 10).ok_or(ZipError::Corrupt)?;
    let cd_size = u32_at(data, eocd + 12).ok_or(ZipError::Corrupt)?;
    let cd_offset = u32_at(data, eocd + 16).ok_or(ZipError::Corrupt)?;
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        return Err(ZipError::Zip64);
    }
    let mut at = cd_offset as usize;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if u32_at(data, at) != Some(CENTRAL_SIG) {
            return Err(ZipError::Corrupt);
        }
        let field = |off: usize| u16_at(data, at + off).ok_or(ZipError::Corrupt);
        let field32 = |off: usize| u32_at(data, at + off).ok_or(ZipError::Corrupt);
        let flags = field(8)?;
        let method = field(10)?;
        let crc = field32(16)?;
        let compressed = field32(20)?;
        let size = field32(24)?;
        let (name_len, extra_len, comment_len) = (field(28)? as usize, field(30)? as usize, field(32)? as usize);
        let local_offset = field32(42)?;
        if compressed == 0xFFFF_FFFF || size == 0xFFFF_FFFF || local_offset == 0xFFFF_FFFF {
            return Err(ZipError::Zip64);
        }
        let name_at = at + 46;
        let raw_name = data.get(name_at..name_at + name_len).ok_or(ZipError::Corrupt)?;
        let extra = data.get(name_at + name_len..name_at + name_len + extra_len).ok_or(ZipError::Corrupt)?;
        let path = unicode_path(extra, raw_name).unwrap_or_else(|| decode_name(raw_name, flags & FLAG_UTF8 != 0));
        out.push(Entry {
            path,
            flags,
            method,
            crc,
            compressed: compressed as u64,
            size: size as u64,
            local_offset: local_offset as u64,
        });
        at = name_at + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// The Info-ZIP Unicode Path field (0x7075): a UTF-8 name, valid while the raw name's CRC matches.
fn unicode_path(mut extra: &[u8], raw_name: &[u8]) -> Option<String> {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0)?;
        let len = u16_at(extra, 2)? as usize;
        let body = extra.get(4..4 + len)?;
        if id == 0x7075 && body.len() > 5 && body[0] == 1 && u32_at(body, 1)? == crc32fast::hash(raw_name) {
            return std::str::from_utf8(&body[5..]).ok().map(str::to_owned);
        }
        extra = &extra[4 + len..];
    }
    None
}

/// Names are UTF-8 when the archiver says so, and in practice also when they decode as UTF-8;
/// otherwise they are in the DOS code page, as Windows' "Compressed folder" writes them.
fn decode_name(raw: &[u8], utf8_flag: bool) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) if utf8_flag => String::from_utf8_lossy(raw).into_owned(),
        Err(_) => raw.iter().map(|&b| if b < 0x80 { b as char } else { CP437_HIGH[(b - 0x80) as usize] }).collect(),
    }
}

/// Code page 437, bytes 0x80–0xFF.
const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û',
    'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡',
    '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─',
    '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧', '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█',
    '▄', '▌', '▐', '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±', '≥',
    '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{A0}',
];

/// Checks one entry against the limits, from its declared sizes alone.
fn check(entry: &Entry, limits: &Limits) -> Result<(), ZipError> {
    let name = || entry.name().to_owned();
    if entry.size > limits.max_member_bytes {
        return Err(ZipError::MemberTooLarge { name: name(), size: entry.size, limit: limits.max_member_bytes });
    }
    if entry.size > RATIO_FLOOR {
        let ratio = entry.size / entry.compressed.max(1);
        if ratio > limits.max_ratio {
            return Err(ZipError::Ratio { name: name(), ratio, limit: limits.max_ratio });
        }
    }
    if entry.flags & FLAG_ENCRYPTED != 0 {
        return Err(ZipError::Encrypted(name()));
    }
    if !matches!(entry.method, 0 | 8) {
        return Err(ZipError::Method { name: name(), method: entry.method });
    }
    Ok(())
}

/// Inflates one entry, never past its declared size, and checks its CRC.
pub(crate) fn read(data: &[u8], entry: &Entry, limits: &Limits) -> Result<Vec<u8>, ZipError> {
    check(entry, limits)?;
    let damaged = || ZipError::Damaged(entry.name().to_owned());
    let at = usize::try_from(entry.local_offset).map_err(|_| damaged())?;
    if u32_at(data, at) != Some(LOCAL_SIG) {
        return Err(damaged());
    }
    let name_len = u16_at(data, at + 26).ok_or_else(damaged)? as usize;
    let extra_len = u16_at(data, at + 28).ok_or_else(damaged)? as usize;
    let start = at + 30 + name_len + extra_len;
    let end = start.checked_add(entry.compressed as usize).ok_or_else(damaged)?;
    let packed = data.get(start..end).ok_or_else(damaged)?;
    let bytes = match entry.method {
        0 if entry.compressed == entry.size => packed.to_vec(),
        0 => return Err(damaged()),
        // The declared size bounds the output: a member that inflates further is lying.
        _ => miniz_oxide::inflate::decompress_to_vec_with_limit(packed, entry.size as usize).map_err(|_| damaged())?,
    };
    if bytes.len() as u64 != entry.size || crc32fast::hash(&bytes) != entry.crc {
        return Err(damaged());
    }
    Ok(bytes)
}

/// Every file of an archive, folders flattened, operating-system clutter left out. All or
/// nothing: an archive over any limit is not opened at all.
pub(crate) fn extract(data: &[u8], limits: &Limits) -> Result<Vec<Member>, ZipError> {
    let files: Vec<Entry> = entries(data)?.into_iter().filter(|e| !e.is_dir() && !e.is_os_clutter()).collect();
    if files.len() > limits.max_members {
        return Err(ZipError::TooManyMembers { found: files.len(), limit: limits.max_members });
    }
    for e in &files {
        check(e, limits)?;
    }
    let total: u64 = files.iter().map(|e| e.size).sum();
    if total > limits.max_total_bytes {
        return Err(ZipError::TotalTooLarge { size: total, limit: limits.max_total_bytes });
    }
    files.iter().map(|e| Ok(Member { name: e.name().to_owned(), bytes: read(data, e, limits)? })).collect()
}

/// One file by its exact path (`word/document.xml`), if the archive has it.
pub(crate) fn read_path(data: &[u8], path: &str, limits: &Limits) -> Result<Option<Vec<u8>>, ZipError> {
    let all = entries(data)?;
    if all.len() > limits.max_members {
        return Err(ZipError::TooManyMembers { found: all.len(), limit: limits.max_members });
    }
    match all.iter().find(|e| e.path == path) {
        Some(e) => read(data, e, limits).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a ZIP by hand: (stored path bytes, data, deflate?, flags, declared size override).
    pub(crate) struct Spec<'a> {
        pub name: &'a [u8],
        pub data: &'a [u8],
        pub deflate: bool,
        pub flags: u16,
        pub declared_size: Option<u32>,
    }

    pub(crate) fn file<'a>(name: &'a str, data: &'a [u8]) -> Spec<'a> {
        Spec { name: name.as_bytes(), data, deflate: true, flags: FLAG_UTF8, declared_size: None }
    }

    pub(crate) fn build(specs: &[Spec<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for s in specs {
            let packed = if s.deflate { miniz_oxide::deflate::compress_to_vec(s.data, 6) } else { s.data.to_vec() };
            let method: u16 = if s.deflate { 8 } else { 0 };
            let crc = crc32fast::hash(s.data);
            let size = s.declared_size.unwrap_or(s.data.len() as u32);
            let offset = out.len() as u32;
            let common = |v: &mut Vec<u8>| {
                v.extend_from_slice(&20u16.to_le_bytes());
                v.extend_from_slice(&s.flags.to_le_bytes());
                v.extend_from_slice(&method.to_le_bytes());
                v.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
                v.extend_from_slice(&crc.to_le_bytes());
                v.extend_from_slice(&(packed.len() as u32).to_le_bytes());
                v.extend_from_slice(&size.to_le_bytes());
                v.extend_from_slice(&(s.name.len() as u16).to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes());
            };
            out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
            common(&mut out);
            out.extend_from_slice(s.name);
            out.extend_from_slice(&packed);
            central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            common(&mut central);
            central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
            central.extend_from_slice(&0u32.to_le_bytes());
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(s.name);
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(specs.len() as u16).to_le_bytes());
        out.extend_from_slice(&(specs.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn extracts_files_flattening_folders_and_dropping_clutter() {
        let zip = build(&[
            file("Candidature/", b""),
            file("Candidature/CV Marie.pdf", b"%PDF-1.4 cv"),
            file("Candidature/Lettre.pdf", b"%PDF-1.4 lettre"),
            file("__MACOSX/Candidature/._CV Marie.pdf", b"junk"),
            file("Candidature/.DS_Store", b"junk"),
        ]);
        let members = extract(&zip, &Limits::ARCHIVE).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["CV Marie.pdf", "Lettre.pdf"]);
        assert_eq!(members[0].bytes, b"%PDF-1.4 cv");
    }

    #[test]
    fn cp437_names_without_the_utf8_flag() {
        // "Diplôme_DUT.pdf" as Windows' Compressed folder writes it: ô is 0x93 in CP437.
        let zip =
            build(&[Spec { name: b"Dipl\x93me_DUT.pdf", data: b"x", deflate: false, flags: 0, declared_size: None }]);
        assert_eq!(extract(&zip, &Limits::ARCHIVE).unwrap()[0].name, "Diplôme_DUT.pdf");
        // UTF-8 without the flag (some archivers) is still read as UTF-8.
        let zip =
            build(&[Spec { name: "Zoé.pdf".as_bytes(), data: b"x", deflate: false, flags: 0, declared_size: None }]);
        assert_eq!(extract(&zip, &Limits::ARCHIVE).unwrap()[0].name, "Zoé.pdf");
    }

    #[test]
    fn paths_keep_their_last_component_only() {
        let zip = build(&[file("../../etc/passwd", b"x"), file("C:\\Users\\x\\CV.pdf", b"y")]);
        let names: Vec<String> = extract(&zip, &Limits::ARCHIVE).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["passwd", "CV.pdf"]);
    }

    #[test]
    fn a_bomb_declaring_a_huge_member_is_refused_before_inflating() {
        let zeros = vec![0u8; 4 << 20];
        let zip = build(&[file("bomb.txt", &zeros)]);
        assert!(zip.len() < 20_000, "{}", zip.len());
        assert!(matches!(extract(&zip, &Limits::ARCHIVE), Err(ZipError::Ratio { .. })));
        // Declared far over the member limit.
        let zip = build(&[Spec { declared_size: Some(u32::MAX - 1), ..file("big.pdf", b"tiny") }]);
        assert!(matches!(extract(&zip, &Limits::ARCHIVE), Err(ZipError::MemberTooLarge { .. })));
        // Many members, each fine, too much in all.
        let names: Vec<String> = (0..3).map(|i| format!("{i}.pdf")).collect();
        let specs: Vec<Spec<'_>> =
            names.iter().map(|n| Spec { declared_size: Some(500_000), ..file(n, b"tiny") }).collect();
        let limits = Limits { max_total_bytes: 1_000_000, ..Limits::ARCHIVE };
        assert!(matches!(extract(&build(&specs), &limits), Err(ZipError::TotalTooLarge { .. })));
    }

    #[test]
    fn a_member_that_inflates_past_its_declared_size_is_damaged() {
        // Claims 10 bytes, holds 100 000: inflation stops at 10 and the member is refused.
        let big = vec![b'a'; 100_000];
        let zip = build(&[Spec { declared_size: Some(10), ..file("liar.txt", &big) }]);
        assert!(matches!(extract(&zip, &Limits::ARCHIVE), Err(ZipError::Damaged(_))));
    }

    #[test]
    fn too_many_members() {
        let names: Vec<String> = (0..51).map(|i| format!("{i}.pdf")).collect();
        let specs: Vec<Spec<'_>> = names.iter().map(|n| file(n, b"x")).collect();
        assert_eq!(extract(&build(&specs), &Limits::ARCHIVE), Err(ZipError::TooManyMembers { found: 51, limit: 50 }));
    }

    #[test]
    fn a_zip_inside_is_just_a_member() {
        let inner = build(&[file("CV.pdf", b"%PDF")]);
        let outer = build(&[file("inner.zip", &inner)]);
        let members = extract(&outer, &Limits::ARCHIVE).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "inner.zip");
        assert!(looks_like_zip(&members[0].bytes));
    }

    #[test]
    fn reads_one_path() {
        let zip = build(&[file("mimetype", b"application/vnd.oasis.opendocument.text"), file("content.xml", b"<x/>")]);
        assert_eq!(read_path(&zip, "content.xml", &Limits::OFFICE).unwrap().as_deref(), Some(&b"<x/>"[..]));
        assert_eq!(read_path(&zip, "missing.xml", &Limits::OFFICE).unwrap(), None);
    }

    #[test]
    fn truncated_and_random_input_is_an_error_not_a_panic() {
        let zip = build(&[file("CV.pdf", b"%PDF-1.4 some text that compresses"), file("b/LM.pdf", b"%PDF lettre")]);
        for cut in 0..zip.len() {
            let _ = extract(&zip[..cut], &Limits::ARCHIVE);
            let _ = extract(&zip[cut..], &Limits::ARCHIVE);
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let mut bad = zip.clone();
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..bad.len());
                bad[i] = rng.u8(..);
            }
            let _ = extract(&bad, &Limits::ARCHIVE);
            let junk: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
            let _ = extract(&[&b"PK\x05\x06"[..], &junk].concat(), &Limits::ARCHIVE);
        }
    }
}
