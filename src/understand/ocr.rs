//! OCR of scans: image-only PDFs and images that may be photographed or scanned documents.
//!
//! Two programs do the work, Debian's `pdftoppm` (poppler-utils) to rasterise the first pages of
//! a PDF and `tesseract` (tesseract-ocr, with the `fra` and `eng` data) to read each page. Both
//! run through the same caged child as the PDF text reader ([`super::extract`]): the child
//! limits itself, then replaces itself with the program (`exec`), so the limits, the deadline
//! and the kill apply to the program itself and nothing outlives it.
//!
//! OCR is optional at run time: [`OcrTools::locate`] looks for the programs once, and when they
//! are missing the daemon says so once at start and reads scans by their names only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Pages of a PDF that are read at most: the first pages decide what a document is.
pub const MAX_PAGES: usize = 3;
/// The long side of a rasterised page, in pixels: an A4 page at 200 dpi, whatever the page size
/// claims (a poster-sized page must not become a gigapixel image).
pub const PAGE_PIXELS: u32 = 2339;

/// The OCR programs found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcrTools {
    pub tesseract: PathBuf,
    /// `None`: images can be read, image-only PDFs cannot.
    pub pdftoppm: Option<PathBuf>,
    /// Tesseract's `-l` argument: `fra+eng`, or whichever of the two is installed.
    pub languages: String,
    /// `env` from coreutils when it can ignore SIGXFSZ for the program it starts (coreutils ≥
    /// 8.31): fontconfig, inside pdftoppm, may try to refresh its cache, and a write to a file
    /// under the child's zero file-size limit must fail with EFBIG rather than kill it.
    pub env: Option<PathBuf>,
    /// Wall-clock limit for one page (rasterising all pages counts as one).
    pub page_timeout: Duration,
}

/// Where the programs are looked for, besides `PATH` (a service's environment may have none).
const SYSTEM_DIRS: &[&str] = &["/usr/bin", "/usr/local/bin", "/bin"];

impl OcrTools {
    /// The tools of this machine, looked for once per process. `Err`: why OCR is off.
    pub fn locate() -> Result<OcrTools, String> {
        static FOUND: OnceLock<Result<OcrTools, String>> = OnceLock::new();
        FOUND.get_or_init(Self::probe).clone()
    }

    fn probe() -> Result<OcrTools, String> {
        let tesseract = find_program("tesseract").ok_or("tesseract is not installed (Debian: tesseract-ocr)")?;
        let listed = Command::new(&tesseract)
            .arg("--list-langs")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", tesseract.display()))?;
        let listed = String::from_utf8_lossy(&listed.stdout);
        let installed: Vec<&str> = listed.lines().map(str::trim).collect();
        let languages: Vec<&str> = ["fra", "eng"].into_iter().filter(|l| installed.contains(l)).collect();
        if languages.is_empty() {
            return Err("tesseract has neither French nor English data (Debian: tesseract-ocr-fra, -eng)".into());
        }
        let env = find_program("env").filter(|env| {
            Command::new(env)
                .args(["--ignore-signal=XFSZ", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        Ok(OcrTools {
            tesseract,
            pdftoppm: find_program("pdftoppm"),
            languages: languages.join("+"),
            env,
            page_timeout: Duration::from_secs(30),
        })
    }

    /// The command line that rasterises the first pages of the PDF on standard input into PNGs
    /// on standard output, one after the other.
    pub fn rasterise_command(&self) -> Option<Vec<String>> {
        let pdftoppm = self.pdftoppm.as_ref()?;
        let mut cmd = Vec::new();
        if let Some(env) = &self.env {
            cmd.extend([env.display().to_string(), "--ignore-signal=XFSZ".into()]);
        }
        cmd.push(pdftoppm.display().to_string());
        cmd.extend(
            ["-png", "-gray", "-scale-to", &PAGE_PIXELS.to_string(), "-f", "1", "-l", &MAX_PAGES.to_string(), "-"]
                .map(str::to_owned),
        );
        Some(cmd)
    }

    /// The command line that reads the image on standard input and prints its text. `dpi`, when
    /// known (pages we rasterised), spares Tesseract a guess.
    pub fn read_command(&self, dpi: Option<u32>) -> Vec<String> {
        let mut cmd = vec![self.tesseract.display().to_string(), "stdin".into(), "stdout".into()];
        cmd.extend(["-l".to_owned(), self.languages.clone()]);
        if let Some(dpi) = dpi {
            cmd.extend(["--dpi".to_owned(), dpi.to_string()]);
        }
        cmd
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Image formats Tesseract (through Leptonica) decodes, told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Tiff,
    Gif,
    Webp,
    Bmp,
    /// HEIC/HEIF (iPhone photos): no decoder here.
    Heic,
}

impl ImageFormat {
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        Some(match bytes {
            [0xFF, 0xD8, 0xFF, ..] => ImageFormat::Jpeg,
            [0x89, b'P', b'N', b'G', ..] => ImageFormat::Png,
            [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => ImageFormat::Tiff,
            [b'G', b'I', b'F', b'8', ..] => ImageFormat::Gif,
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => ImageFormat::Webp,
            [b'B', b'M', ..] if bytes.len() > 26 => ImageFormat::Bmp,
            [_, _, _, _, b'f', b't', b'y', b'p', brand @ ..]
                if brand.starts_with(b"hei") || brand.starts_with(b"mif1") || brand.starts_with(b"hev") =>
            {
                ImageFormat::Heic
            }
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
            ImageFormat::Tiff => "TIFF",
            ImageFormat::Gif => "GIF",
            ImageFormat::Webp => "WebP",
            ImageFormat::Bmp => "BMP",
            ImageFormat::Heic => "HEIC",
        }
    }

    pub fn decodable(self) -> bool {
        self != ImageFormat::Heic
    }

    /// Width and height from the header, where it is cheap to read (PNG, GIF, BMP, JPEG).
    pub fn dimensions(self, bytes: &[u8]) -> Option<(u32, u32)> {
        let be16 = |i: usize| Some(u32::from(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?])));
        let le16 = |i: usize| Some(u32::from(u16::from_le_bytes([*bytes.get(i)?, *bytes.get(i + 1)?])));
        let be32 = |i: usize| Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
        let le32 = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
        match self {
            ImageFormat::Png => Some((be32(16)?, be32(20)?)),
            ImageFormat::Gif => Some((le16(6)?, le16(8)?)),
            ImageFormat::Bmp => Some((le32(18)?, le32(22)?.max(1))),
            ImageFormat::Jpeg => {
                // Walk the markers to the start of frame.
                let mut i = 2;
                while i + 9 < bytes.len() {
                    if bytes[i] != 0xFF {
                        return None;
                    }
                    let marker = bytes[i + 1];
                    if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
                        return Some((be16(i + 7)?, be16(i + 5)?));
                    }
                    i += 2 + usize::try_from(be16(i + 2)?).ok()?;
                }
                None
            }
            _ => None,
        }
    }
}

/// An image smaller than this on either side cannot hold a readable page: a logo, an icon.
pub const MIN_PAGE_SIDE: u32 = 300;

/// The PNG files of a stream of PNGs one after the other (what pdftoppm writes for several
/// pages on standard output). A truncated last file is dropped.
pub fn split_pngs(mut bytes: &[u8]) -> Vec<&[u8]> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let mut pngs = Vec::new();
    while bytes.starts_with(SIGNATURE) {
        let mut at = SIGNATURE.len();
        let mut end = None;
        while let Some(header) = bytes.get(at..at + 8) {
            let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let next = at.saturating_add(12).saturating_add(length);
            if next > bytes.len() {
                break;
            }
            at = next;
            if &header[4..8] == b"IEND" {
                end = Some(at);
                break;
            }
        }
        let Some(end) = end else { break };
        pngs.push(&bytes[..end]);
        bytes = &bytes[end..];
    }
    pngs
}

/// Resolution of a page of `width` × `height` pixels rasterised to [`PAGE_PIXELS`] on its long
/// side, if it is an A4 or Letter page (what scans are); other shapes leave Tesseract to guess.
pub fn page_dpi(png: &[u8]) -> Option<u32> {
    let ihdr = png.get(16..24)?;
    let (w, h) = (
        u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]),
        u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]),
    );
    let (long, short) = (w.max(h) as f32, w.min(h).max(1) as f32);
    let ratio = long / short;
    // A4 is 297 mm long (1.414), Letter 11 in (1.294).
    let long_inches = if (ratio - 1.414).abs() < 0.03 {
        297.0 / 25.4
    } else if (ratio - 1.294).abs() < 0.03 {
        11.0
    } else {
        return None;
    };
    Some((long / long_inches).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend((data.len() as u32).to_be_bytes());
            out.extend(kind);
            out.extend(data);
            out.extend([0, 0, 0, 0]); // CRC: not checked here
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[1, 2, 3]);
        chunk(b"IEND", &[]);
        out
    }

    #[test]
    fn splits_a_stream_of_pngs_and_drops_a_truncated_one() {
        let (a, b) = (png(1654, 2339), png(2339, 1654));
        let mut stream = [a.clone(), b.clone()].concat();
        assert_eq!(split_pngs(&stream), vec![&a[..], &b[..]]);
        stream.extend_from_slice(&a[..a.len() - 5]);
        assert_eq!(split_pngs(&stream).len(), 2);
        assert!(split_pngs(b"not a png").is_empty());
        assert!(split_pngs(b"").is_empty());
        // A length field that points past the end is not an overflow.
        let mut bad = b"\x89PNG\r\n\x1a\n".to_vec();
        bad.extend([0xFF, 0xFF, 0xFF, 0xFF, b'I', b'D', b'A', b'T']);
        assert!(split_pngs(&bad).is_empty());
    }

    #[test]
    fn dpi_of_a4_and_letter_pages() {
        assert_eq!(page_dpi(&png(1654, 2339)), Some(200));
        assert_eq!(page_dpi(&png(2339, 1654)), Some(200));
        assert_eq!(page_dpi(&png(1807, 2339)), Some(213));
        assert_eq!(page_dpi(&png(2339, 2339)), None);
        assert_eq!(page_dpi(b"short"), None);
    }

    #[test]
    fn images_by_their_first_bytes() {
        assert_eq!(ImageFormat::sniff(b"\xFF\xD8\xFF\xE0rest"), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::sniff(&png(1, 1)), Some(ImageFormat::Png));
        assert_eq!(ImageFormat::sniff(b"II*\0...."), Some(ImageFormat::Tiff));
        assert_eq!(ImageFormat::sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Some(ImageFormat::Heic));
        assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(ImageFormat::sniff(b"%PDF-1.7"), None);
        assert!(!ImageFormat::Heic.decodable());
    }

    #[test]
    fn dimensions_from_headers() {
        assert_eq!(ImageFormat::Png.dimensions(&png(1654, 2339)), Some((1654, 2339)));
        // A baseline JPEG: SOI, an APP0 of 16 bytes, then SOF0 with height 40 and width 120.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend([0u8; 14]);
        jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x28, 0x00, 0x78, 0x03]);
        jpeg.extend([0u8; 20]);
        assert_eq!(ImageFormat::Jpeg.dimensions(&jpeg), Some((120, 40)));
        assert_eq!(ImageFormat::Jpeg.dimensions(&[0xFF, 0xD8, 0xFF]), None);
        assert_eq!(ImageFormat::Gif.dimensions(b"GIF89a\x01\x00\x01\x00"), Some((1, 1)));
    }
}
