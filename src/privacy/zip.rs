//! A small ZIP writer for exports (`candidate export`).
//!
//! Written here rather than taken from the `zip` crate: the two pieces it needs are already in
//! the tree (miniz_oxide deflates, crc32fast sums; both serve the ZIP *reader* in
//! `understand::zip`), an export is a handful of files written once, and the reader of the same
//! crate checks the writer in the tests (an independent reader, Python's `zipfile`, checks it in
//! the end-to-end test). Deflate where it pays (text, JSON, messages), stored where it does not
//! (PDFs and images are compressed already). UTF-8 names (flag 11). No ZIP64: an export over
//! 4 GiB or 65,535 files is refused with a clear error rather than written wrong.

use std::io::{self, Write};

use chrono::{DateTime, Datelike, Timelike, Utc};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const FLAG_UTF8: u16 = 0x0800;
const VERSION_NEEDED: u16 = 20;
/// Made by Unix (3), spec 3.0: the external attributes carry the file mode.
const VERSION_MADE_BY: u16 = (3 << 8) | 30;
/// `-rw-------`: an export holds personal data.
const MODE: u32 = 0o100600;

struct Central {
    name: String,
    method: u16,
    time: u16,
    date: u16,
    crc: u32,
    compressed: u32,
    size: u32,
    offset: u32,
}

/// Writes a ZIP archive entry by entry into `out`.
pub(crate) struct ZipWriter<W: Write> {
    out: W,
    offset: u64,
    entries: Vec<Central>,
}

fn too_large() -> io::Error {
    io::Error::other("the export is larger than 4 GiB or 65,535 files, which this ZIP writer does not write (no ZIP64)")
}

/// MS-DOS time and date (2-second precision, from 1980).
fn dos_time(t: DateTime<Utc>) -> (u16, u16) {
    if t.year() < 1980 {
        return (0, (1 << 5) | 1);
    }
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    let date = (((t.year() - 1980).min(127) as u16) << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    (time, date)
}

impl<W: Write> ZipWriter<W> {
    pub(crate) fn new(out: W) -> ZipWriter<W> {
        ZipWriter { out, offset: 0, entries: Vec::new() }
    }

    /// Adds one file. `name` is a relative `/`-separated path the caller has made safe.
    pub(crate) fn add(&mut self, name: &str, data: &[u8], modified: DateTime<Utc>) -> io::Result<()> {
        debug_assert!(!name.starts_with('/') && !name.split('/').any(|c| c == ".." || c.is_empty()), "{name}");
        if self.entries.len() >= 0xFFFF || data.len() as u64 >= u64::from(u32::MAX) {
            return Err(too_large());
        }
        let crc = crc32fast::hash(data);
        let deflated = miniz_oxide::deflate::compress_to_vec(data, 6);
        let (method, body): (u16, &[u8]) = if deflated.len() < data.len() { (8, &deflated) } else { (0, data) };
        let offset = u32::try_from(self.offset).map_err(|_| too_large())?;
        let (time, date) = dos_time(modified);
        let name_bytes = name.as_bytes();
        let mut header = Vec::with_capacity(30 + name_bytes.len());
        header.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        header.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
        header.extend_from_slice(&FLAG_UTF8.to_le_bytes());
        header.extend_from_slice(&method.to_le_bytes());
        header.extend_from_slice(&time.to_le_bytes());
        header.extend_from_slice(&date.to_le_bytes());
        header.extend_from_slice(&crc.to_le_bytes());
        header.extend_from_slice(&(body.len() as u32).to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        header.extend_from_slice(&(name_bytes.len() as u16).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(name_bytes);
        self.out.write_all(&header)?;
        self.out.write_all(body)?;
        self.offset += (header.len() + body.len()) as u64;
        if self.offset > u64::from(u32::MAX) {
            return Err(too_large());
        }
        self.entries.push(Central {
            name: name.to_owned(),
            method,
            time,
            date,
            crc,
            compressed: body.len() as u32,
            size: data.len() as u32,
            offset,
        });
        Ok(())
    }

    /// Writes the central directory; returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        let start = u32::try_from(self.offset).map_err(|_| too_large())?;
        let mut cd = Vec::new();
        for e in &self.entries {
            cd.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            cd.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            cd.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
            cd.extend_from_slice(&FLAG_UTF8.to_le_bytes());
            cd.extend_from_slice(&e.method.to_le_bytes());
            cd.extend_from_slice(&e.time.to_le_bytes());
            cd.extend_from_slice(&e.date.to_le_bytes());
            cd.extend_from_slice(&e.crc.to_le_bytes());
            cd.extend_from_slice(&e.compressed.to_le_bytes());
            cd.extend_from_slice(&e.size.to_le_bytes());
            cd.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes()); // extra
            cd.extend_from_slice(&0u16.to_le_bytes()); // comment
            cd.extend_from_slice(&0u16.to_le_bytes()); // disk
            cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            cd.extend_from_slice(&(MODE << 16).to_le_bytes());
            cd.extend_from_slice(&e.offset.to_le_bytes());
            cd.extend_from_slice(e.name.as_bytes());
        }
        let size = u32::try_from(cd.len()).map_err(|_| too_large())?;
        start.checked_add(size).ok_or_else(too_large)?;
        let count = self.entries.len() as u16;
        cd.extend_from_slice(&EOCD_SIG.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        cd.extend_from_slice(&count.to_le_bytes());
        cd.extend_from_slice(&count.to_le_bytes());
        cd.extend_from_slice(&size.to_le_bytes());
        cd.extend_from_slice(&start.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        self.out.write_all(&cd)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::understand::zip::{Limits, entries, read};

    #[test]
    fn what_is_written_reads_back_through_the_crates_own_reader() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:15:42Z").unwrap().with_timezone(&Utc);
        let text = "Lettre de motivation – Jeanne Dupré\n".repeat(200);
        let random: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut zip = ZipWriter::new(Vec::new());
        zip.add("résumé.txt", text.as_bytes(), at).unwrap();
        zip.add("documents/stage/CV - Jeanne Dupré.pdf", &random, at).unwrap();
        zip.add("empty.json", b"", at).unwrap();
        let bytes = zip.finish().unwrap();
        let found = entries(&bytes).unwrap();
        let names: Vec<&str> = found.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["résumé.txt", "documents/stage/CV - Jeanne Dupré.pdf", "empty.json"]);
        let limits = Limits { max_members: 10, max_member_bytes: 1 << 20, max_total_bytes: 1 << 20, max_ratio: 1000 };
        assert_eq!(read(&bytes, &found[0], &limits).unwrap(), text.as_bytes());
        assert_eq!(read(&bytes, &found[1], &limits).unwrap(), random);
        assert_eq!(read(&bytes, &found[2], &limits).unwrap(), b"");
        // Text is deflated; the incompressible file is stored as it is.
        assert!(bytes.len() < text.len() / 4 + random.len() + 400, "{}", bytes.len());
    }

    #[test]
    fn dos_times_are_what_unzip_shows() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:15:42Z").unwrap().with_timezone(&Utc);
        let (time, date) = dos_time(t);
        assert_eq!((time >> 11, (time >> 5) & 63, (time & 31) * 2), (10, 15, 42));
        assert_eq!(((date >> 9) + 1980, (date >> 5) & 15, date & 31), (2026, 11, 23));
    }
}
