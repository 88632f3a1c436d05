//! Outlook's `winmail.dat` (`application/ms-tnef`, [MS-OXTNEF]): Outlook in rich-text mode wraps
//! every attachment of a message into this one file, so without unpacking it a CV sent from
//! Outlook is invisible.
//!
//! The stream: a signature (0x223E9F78), a legacy key, then attributes, each a level byte
//! (message or attachment), an id, a length, the data and a checksum. An attachment starts at
//! `attAttachRendData`; its name is in `attAttachTitle` (an 8.3 name in the OEM code page) or,
//! better, in the MAPI property `PR_ATTACH_LONG_FILENAME` inside `attAttachment`; its bytes are
//! `attAttachData`.
//!
//! Total: every read is bounds-checked; malformed or truncated input ends the walk and keeps
//! the attachments read whole so far.

pub(crate) const SIGNATURE: u32 = 0x223E_9F78;

const LVL_MESSAGE: u8 = 0x01;
const LVL_ATTACHMENT: u8 = 0x02;
const ATT_OEM_CODEPAGE: u32 = 0x0006_9007;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACHMENT: u32 = 0x0006_9005;

const PR_ATTACH_DATA_BIN: u16 = 0x3701;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;

/// More than this many attachments is not a message a person wrote.
const MAX_ATTACHMENTS: usize = 200;

/// A file found inside a winmail.dat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    /// The long name when Outlook recorded one, else the 8.3 title.
    pub name: Option<String>,
    /// `PR_ATTACH_MIME_TAG`, when present.
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TnefError {
    #[error("not a TNEF stream (wrong signature)")]
    NotTnef,
    #[error("the winmail.dat is damaged or cut short before any attachment")]
    Damaged,
}

pub(crate) fn looks_like_tnef(data: &[u8]) -> bool {
    u32_at(data, 0) == Some(SIGNATURE)
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[derive(Default)]
struct Building {
    title: Option<String>,
    long_name: Option<String>,
    short_name: Option<String>,
    content_type: Option<String>,
    data: Option<Vec<u8>>,
    data_prop: Option<Vec<u8>>,
}

impl Building {
    fn finish(self) -> Option<Attachment> {
        let bytes = self.data.or(self.data_prop)?;
        let clean = |s: String| Some(s.trim_matches(char::from(0)).trim().to_owned()).filter(|s| !s.is_empty());
        Some(Attachment {
            name: self.long_name.and_then(clean).or(self.short_name.and_then(clean)).or(self.title.and_then(clean)),
            content_type: self.content_type.and_then(clean).map(|t| t.to_ascii_lowercase()),
            bytes,
        })
    }
}

/// The files inside a winmail.dat. A stream damaged after some whole attachments keeps those.
pub(crate) fn attachments(data: &[u8]) -> Result<Vec<Attachment>, TnefError> {
    if !looks_like_tnef(data) {
        return Err(TnefError::NotTnef);
    }
    let mut codepage = 1252;
    let mut done: Vec<Attachment> = Vec::new();
    let mut current: Option<Building> = None;
    let mut damaged = false;
    let mut at = 6; // signature and legacy key
    while at < data.len() && done.len() < MAX_ATTACHMENTS {
        let (Some(&level), Some(id), Some(len)) = (data.get(at), u32_at(data, at + 1), u32_at(data, at + 5)) else {
            damaged = true;
            break;
        };
        let start = at + 9;
        let Some(value) = start.checked_add(len as usize).and_then(|end| data.get(start..end)) else {
            damaged = true;
            break;
        };
        // Outlook's checksums are right; other writers' are not always, and the data is still good.
        at = start + value.len() + 2;
        match (level, id) {
            (LVL_MESSAGE, ATT_OEM_CODEPAGE) => codepage = u32_at(value, 0).unwrap_or(1252),
            (LVL_ATTACHMENT, ATT_ATTACH_REND_DATA) => {
                if let Some(a) = current.take().and_then(Building::finish) {
                    done.push(a);
                }
                current = Some(Building::default());
            }
            (LVL_ATTACHMENT, ATT_ATTACH_TITLE) => {
                current.get_or_insert_with(Building::default).title = Some(decode_8bit(value, codepage));
            }
            (LVL_ATTACHMENT, ATT_ATTACH_DATA) => {
                current.get_or_insert_with(Building::default).data = Some(value.to_vec());
            }
            (LVL_ATTACHMENT, ATT_ATTACHMENT) => {
                let b = current.get_or_insert_with(Building::default);
                for (id, v) in mapi_props(value, codepage) {
                    match (id, v) {
                        (PR_ATTACH_LONG_FILENAME, Value::Text(s)) => b.long_name = Some(s),
                        (PR_ATTACH_FILENAME, Value::Text(s)) => b.short_name = Some(s),
                        (PR_ATTACH_MIME_TAG, Value::Text(s)) => b.content_type = Some(s),
                        (PR_ATTACH_DATA_BIN, Value::Binary(d)) => b.data_prop = Some(d),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !damaged && let Some(a) = current.take().and_then(Building::finish) {
        done.push(a);
    }
    if damaged && done.is_empty() {
        return Err(TnefError::Damaged);
    }
    Ok(done)
}

enum Value {
    Text(String),
    Binary(Vec<u8>),
    Other,
}

/// A MAPI property list (MS-OXTNEF 2.1.3.4): count, then type, id, [name], value(s), each value
/// padded to four bytes. Stops at the first property it cannot size.
fn mapi_props(d: &[u8], codepage: u32) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    let Some(count) = u32_at(d, 0) else { return out };
    let mut at = 4;
    for _ in 0..count {
        let (Some(ptype), Some(pid)) = (u16_at(d, at), u16_at(d, at + 2)) else { break };
        at += 4;
        if pid >= 0x8000 {
            // Named property: GUID, kind, then a number or a name.
            let Some(kind) = u32_at(d, at + 16) else { break };
            at += 20;
            if kind == 0 {
                at += 4;
            } else {
                let Some(len) = u32_at(d, at) else { break };
                at += 4 + pad4(len as usize);
            }
        }
        let multi = ptype & 0x1000 != 0;
        let fixed = match ptype & 0x0FFF {
            0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => Some(4),
            0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => Some(8),
            0x0048 => Some(16),
            0x000D | 0x001E | 0x001F | 0x0102 => None,
            _ => break,
        };
        let values = match fixed {
            Some(_) if !multi => 1,
            _ => {
                let Some(n) = u32_at(d, at) else { break };
                at += 4;
                n
            }
        };
        let mut last = Value::Other;
        let mut ok = true;
        for _ in 0..values {
            match fixed {
                Some(size) => {
                    at += size;
                    if at > d.len() {
                        ok = false;
                        break;
                    }
                }
                None => {
                    let Some(len) = u32_at(d, at) else {
                        ok = false;
                        break;
                    };
                    let start = at + 4;
                    let Some(bytes) = start.checked_add(len as usize).and_then(|end| d.get(start..end)) else {
                        ok = false;
                        break;
                    };
                    last = match ptype & 0x0FFF {
                        0x001E => Value::Text(decode_8bit(bytes, codepage)),
                        0x001F => Value::Text(decode_utf16(bytes)),
                        0x0102 => Value::Binary(bytes.to_vec()),
                        _ => Value::Other,
                    };
                    at = start + pad4(len as usize);
                }
            }
        }
        if !ok {
            break;
        }
        out.push((pid, last));
    }
    out
}

fn pad4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn decode_utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units).trim_end_matches('\0').to_owned()
}

/// An 8-bit string in the message's OEM code page (1252 for western Outlooks).
fn decode_8bit(b: &[u8], codepage: u32) -> String {
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    let label = match codepage {
        65001 => "utf-8".to_owned(),
        874 | 1250..=1258 => format!("windows-{codepage}"),
        932 => "shift_jis".into(),
        936 => "gbk".into(),
        949 => "euc-kr".into(),
        950 => "big5".into(),
        _ => "windows-1252".into(),
    };
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::WINDOWS_1252);
    encoding.decode_without_bom_handling(b).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(level: u8, id: u32, data: &[u8]) -> Vec<u8> {
        let mut out = vec![level];
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum = data.iter().map(|&b| b as u32).sum::<u32>() as u16;
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn padded(mut v: Vec<u8>) -> Vec<u8> {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
        v
    }

    fn unicode_prop(id: u16, s: &str) -> Vec<u8> {
        let mut data: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        data.extend_from_slice(&[0, 0]);
        let mut out = vec![];
        out.extend_from_slice(&0x001Fu16.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend(padded(data));
        out
    }

    fn long_prop(id: u16, v: u32) -> Vec<u8> {
        let mut out = vec![];
        out.extend_from_slice(&0x0003u16.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
        out
    }

    fn named_prop() -> Vec<u8> {
        // A named property (id ≥ 0x8000) with a string name, then a PT_BOOLEAN value.
        let mut out = vec![];
        out.extend_from_slice(&0x000Bu16.to_le_bytes());
        out.extend_from_slice(&0x8001u16.to_le_bytes());
        out.extend_from_slice(&[0x11; 16]);
        out.extend_from_slice(&1u32.to_le_bytes());
        let name: Vec<u8> = "Hidden\0".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend(padded(name));
        out.extend_from_slice(&1u32.to_le_bytes());
        out
    }

    /// A winmail.dat as Outlook writes it (see tests/fixtures/gen/docs.py).
    fn winmail(files: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut s = SIGNATURE.to_le_bytes().to_vec();
        s.extend_from_slice(&0x5A3Cu16.to_le_bytes());
        s.extend(attr(LVL_MESSAGE, 0x0008_9006, &0x0001_0000u32.to_le_bytes()));
        s.extend(attr(LVL_MESSAGE, ATT_OEM_CODEPAGE, &[0xE4, 0x04, 0, 0, 0, 0, 0, 0]));
        s.extend(attr(LVL_MESSAGE, 0x0007_8008, b"IPM.Microsoft Mail.Note\0"));
        for (title, long, data) in files {
            s.extend(attr(
                LVL_ATTACHMENT,
                ATT_ATTACH_REND_DATA,
                &[1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0],
            ));
            let mut t: Vec<u8> = title.chars().map(|c| if c == 'é' { 0xE9 } else { c as u8 }).collect();
            t.push(0);
            s.extend(attr(LVL_ATTACHMENT, ATT_ATTACH_TITLE, &t));
            s.extend(attr(LVL_ATTACHMENT, ATT_ATTACH_DATA, data));
            let mut props = vec![];
            let mut n = 2u32;
            props.extend(long_prop(0x3705, 1));
            props.extend(named_prop());
            if let Some(long) = long {
                props.extend(unicode_prop(PR_ATTACH_LONG_FILENAME, long));
                props.extend(unicode_prop(PR_ATTACH_MIME_TAG, "application/pdf"));
                n += 2;
            }
            let mut block = n.to_le_bytes().to_vec();
            block.extend(props);
            s.extend(attr(LVL_ATTACHMENT, ATT_ATTACHMENT, &block));
        }
        s
    }

    #[test]
    fn unpacks_names_types_and_bytes() {
        let w = winmail(&[
            ("CV_THO~1.PDF", Some("CV_Thomas_Durand.pdf"), b"%PDF-1.4 cv"),
            ("RELEVé~1.PDF", None, b"%PDF-1.4 notes"),
        ]);
        let got = attachments(&w).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name.as_deref(), Some("CV_Thomas_Durand.pdf"));
        assert_eq!(got[0].content_type.as_deref(), Some("application/pdf"));
        assert_eq!(got[0].bytes, b"%PDF-1.4 cv");
        // No long name: the 8.3 title, decoded from the OEM code page (1252).
        assert_eq!(got[1].name.as_deref(), Some("RELEVé~1.PDF"));
        assert_eq!(got[1].bytes, b"%PDF-1.4 notes");
    }

    #[test]
    fn not_tnef_and_empty() {
        assert_eq!(attachments(b"%PDF-1.4"), Err(TnefError::NotTnef));
        assert_eq!(attachments(&SIGNATURE.to_le_bytes()), Ok(vec![]));
        assert_eq!(attachments(&winmail(&[])), Ok(vec![]));
    }

    #[test]
    fn truncated_keeps_whole_attachments_only() {
        let w = winmail(&[("A.PDF", Some("a.pdf"), b"first"), ("B.PDF", Some("b.pdf"), b"second")]);
        let second = w.windows(6).position(|x| x == b"second").unwrap();
        let got = attachments(&w[..second + 3]).unwrap();
        assert_eq!(got.iter().map(|a| a.bytes.as_slice()).collect::<Vec<_>>(), [&b"first"[..]]);
    }

    #[test]
    fn fuzz_truncations_mutations_and_noise_never_panic() {
        let w = winmail(&[
            ("CV_THO~1.PDF", Some("CV_Thomas_Durand.pdf"), b"%PDF-1.4 cv"),
            ("LETTRE~1.DOC", Some("Lettre de motivation.docx"), b"PK\x03\x04 letter"),
        ]);
        for cut in 0..w.len() {
            let _ = attachments(&w[..cut]);
        }
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..20_000 {
            let mut bad = w.clone();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(4..bad.len());
                bad[i] = rng.u8(..);
            }
            let _ = attachments(&bad);
            let mut noise = SIGNATURE.to_le_bytes().to_vec();
            noise.extend((0..rng.usize(0..300)).map(|_| rng.u8(..)));
            let _ = attachments(&noise);
        }
        // Lengths near u32::MAX must not overflow.
        let mut huge = SIGNATURE.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0, 0, LVL_ATTACHMENT]);
        huge.extend_from_slice(&ATT_ATTACHMENT.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(attachments(&huge), Err(TnefError::Damaged));
        let props =
            [u32::MAX.to_le_bytes(), [0x1F, 0x00, 0x07, 0x37], 1u32.to_le_bytes(), u32::MAX.to_le_bytes()].concat();
        assert!(mapi_props(&props, 1252).is_empty());
    }
}
