//! Reading a document's text without trusting the document.
//!
//! PDF parsing is the riskiest code mailroom runs: pdf-extract panics on some real PDFs
//! (upstream issue #153, often PDFs with images, which CVs with a photo are), and a crafted file
//! can loop or eat memory. So PDF text is read in a child process, the same binary run as
//! `mailroom __extract-text pdf`, fed the document on standard input:
//!
//! - the child restricts itself before it reads a byte: no new file descriptors (so it can
//!   neither open nor create a file), no file writes, no core dumps, no child processes, bounded
//!   memory and CPU time; its environment is emptied and its directory is `/`;
//! - the parent kills it at a wall-clock deadline, and reads at most [`TextReader::max_output`]
//!   bytes of what it prints;
//! - whatever goes wrong (a panic, a kill, a missing binary) is a [`TextError`]: the document
//!   loses its classification by text, and nothing else happens.
//!
//! DOCX and ODT are read in-process by our own total code in [`super::text`], under the ZIP
//! limits.
//!
//! OCR ([`super::ocr`]) runs `pdftoppm` and `tesseract` through the same child: run as
//! `mailroom __extract-text exec …`, it cages itself the same way (except that the program may
//! open its libraries and language data, with at most [`PROGRAM_MAX_FILES`] descriptors), then
//! replaces itself with the program, so the deadline and the kill reach the program itself.
//!
//! The process tree stays bounded: every child is capped at [`CHILD_MEMORY`] of address space,
//! and at most [`MAX_CHILDREN`] run at once across the whole process (a semaphore that every
//! child takes before it starts), so the children's worst case is `MAX_CHILDREN × CHILD_MEMORY`.
//! OCR programs may hold at most [`MAX_OCR_CHILDREN`] of those slots: a page of OCR takes about a
//! second, reading a PDF's text a few milliseconds, so the text reader always keeps a slot of its
//! own and ordinary PDFs never queue behind a backlog of scans.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use super::ocr::{self, OcrTools};
use super::text::{self, Format};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__extract-text";
/// Its mode that cages itself and then becomes a program (OCR's pdftoppm and tesseract).
const EXEC_MODE: &str = "exec";
/// Address-space limit of every child: the PDF reader, the rasteriser, Tesseract. A 12-megapixel
/// phone photo is read within it; Tesseract stops with an error on much larger images.
pub const CHILD_MEMORY: u64 = 256 << 20;
/// Children (PDF reader or OCR program) running at once across the whole process, at most.
pub const MAX_CHILDREN: usize = 2;
/// Of those, OCR programs (rasteriser, Tesseract) running at once, at most.
pub const MAX_OCR_CHILDREN: usize = MAX_CHILDREN - 1;
/// Descriptors a program run for OCR may hold: its libraries and language data are opened one at
/// a time, so a few are enough; standard input, output and error are three of them.
pub const PROGRAM_MAX_FILES: u64 = 32;
/// Exit status of a child that could not become its program.
const EXEC_FAILED: u8 = 70;
/// Test hook read by the child (only ever set through `TextReader::with_fault`: the child's
/// environment is otherwise empty): `panic`, `hang`, `spin`, `flood`, `oom`, `write:PATH`.
#[cfg(feature = "fault-injection")]
const FAULT_ENV: &str = "MAILROOM_EXTRACT_FAULT";
/// The child reads no more than this from its standard input.
const MAX_INPUT_BYTES: u64 = 64 << 20;
const MAX_STDERR_BYTES: usize = 4096;

static RUNNING_AS_CLI: AtomicBool = AtomicBool::new(false);

/// Called by the command line at start: this process is the `mailroom` binary, so it can run
/// itself as the extractor. (A program that merely links the library, such as a test binary,
/// looks for the `mailroom` binary next to it instead.)
pub fn running_as_cli() {
    RUNNING_AS_CLI.store(true, Ordering::Relaxed);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("no text extractor program (the mailroom binary was not found)")]
    NoExtractor,
    #[error("cannot start the text extractor {program}: {error}")]
    Spawn { program: String, error: String },
    #[error("the extractor took longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the extractor crashed: {0}")]
    Crashed(String),
    #[error("{0}")]
    Unreadable(String),
    #[error("OCR is not available: {0}")]
    NoOcr(String),
    /// A reader made by [`TextReader::deferring_ocr`] met a document only OCR can read: the
    /// message is read again, with OCR, aside ([`super::aside`]).
    #[error("OCR put off: the message is read aside")]
    OcrDeferred,
}

/// The semaphore every child takes before it starts.
struct Slots {
    state: Mutex<SlotState>,
    freed: Condvar,
}

struct SlotState {
    running: usize,
    /// Of `running`, the OCR programs.
    ocr: usize,
    /// The most children ever running at once.
    peak: usize,
}

static SLOTS: Slots = Slots { state: Mutex::new(SlotState { running: 0, ocr: 0, peak: 0 }), freed: Condvar::new() };

/// A running child's place; dropping it lets the next one start.
struct Slot {
    ocr: bool,
}

impl Slots {
    fn take(&self, ocr: bool) -> Slot {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.running >= MAX_CHILDREN || (ocr && state.ocr >= MAX_OCR_CHILDREN) {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.running += 1;
        state.ocr += usize::from(ocr);
        state.peak = state.peak.max(state.running);
        Slot { ocr }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = SLOTS.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running -= 1;
        state.ocr -= usize::from(self.ocr);
        // Waiters differ (OCR or not): wake them all, each checks its own rule.
        SLOTS.freed.notify_all();
    }
}

/// The most children that have run at once in this process (for tests and benchmarks).
pub fn children_peak() -> usize {
    SLOTS.state.lock().unwrap_or_else(|p| p.into_inner()).peak
}

/// Text read by OCR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ocred {
    pub text: String,
    /// Pages (or images) read.
    pub pages: usize,
    /// Tesseract's languages.
    pub languages: String,
}

/// Reads text out of documents; PDFs through the isolated child.
#[derive(Debug, Clone)]
pub struct TextReader {
    program: Option<PathBuf>,
    /// Wall-clock limit for one document.
    pub timeout: Duration,
    /// Text beyond this many bytes is cut (and the child stopped).
    pub max_output: usize,
    /// Address-space limit of the child.
    pub max_memory: u64,
    env: Vec<(OsString, OsString)>,
    /// The OCR programs, or why there is no OCR.
    ocr: Result<OcrTools, String>,
    /// Set instead of running OCR (see [`TextReader::deferring_ocr`]).
    defer_ocr: Option<Arc<AtomicBool>>,
}

impl TextReader {
    /// The extractor for this process: itself when it is the `mailroom` binary; otherwise the
    /// `mailroom` binary beside it or one directory up (cargo puts test binaries in
    /// `target/<profile>/deps/` and the binary in `target/<profile>/`).
    pub fn locate() -> TextReader {
        let program = if RUNNING_AS_CLI.load(Ordering::Relaxed) {
            // /proc/self/exe still runs this very binary after a package upgrade replaced the file.
            let proc_self = Path::new("/proc/self/exe");
            if proc_self.exists() { Some(proc_self.to_path_buf()) } else { std::env::current_exe().ok() }
        } else {
            let name = format!("mailroom{}", std::env::consts::EXE_SUFFIX);
            std::env::current_exe().ok().and_then(|exe| {
                exe.ancestors().skip(1).take(2).map(|dir| dir.join(&name)).find(|candidate| candidate.is_file())
            })
        };
        let ocr = OcrTools::locate();
        if let Err(why) = &ocr {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                tracing::warn!(reason = %why, "OCR is off: scans and photos are told apart by their names only");
            });
        }
        TextReader::with_program(program).with_ocr(ocr)
    }

    /// A reader running `program` (`None`: PDFs cannot be read; the other formats still can),
    /// without OCR.
    pub fn with_program(program: Option<PathBuf>) -> TextReader {
        TextReader {
            program,
            timeout: Duration::from_secs(15),
            max_output: 4 << 20,
            max_memory: CHILD_MEMORY,
            env: Vec::new(),
            ocr: Err("not configured".into()),
            defer_ocr: None,
        }
    }

    /// The same reader with these OCR programs (`Err`: no OCR, and why).
    pub fn with_ocr(mut self, ocr: Result<OcrTools, String>) -> TextReader {
        self.ocr = ocr;
        self
    }

    /// The same reader, except that it never runs OCR: where OCR would read a document, it sets
    /// the flag it returns and fails with [`TextError::OcrDeferred`]. The pipeline understands
    /// with it first, so that a message that needs seconds of OCR can be read aside while the
    /// others go on; when OCR is off on this machine nothing is deferred.
    pub fn deferring_ocr(&self) -> (TextReader, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let mut reader = self.clone();
        reader.defer_ocr = Some(Arc::clone(&flag));
        (reader, flag)
    }

    fn defer(&self) -> Result<(), TextError> {
        match &self.defer_ocr {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                Err(TextError::OcrDeferred)
            }
            None => Ok(()),
        }
    }

    /// The OCR programs, or why there is no OCR.
    pub fn ocr(&self) -> Result<&OcrTools, &str> {
        self.ocr.as_ref().map_err(String::as_str)
    }

    pub fn program(&self) -> Option<&Path> {
        self.program.as_deref()
    }

    /// Test hook: the child misbehaves as told instead of extracting (see `FAULT_ENV`). Only in a
    /// build with the `fault-injection` feature, which the tests enable and a release never does.
    #[doc(hidden)]
    #[cfg(feature = "fault-injection")]
    pub fn with_fault(mut self, fault: &str) -> TextReader {
        self.env.push((FAULT_ENV.into(), fault.into()));
        self
    }

    /// The text of a document. PDFs go through the child; DOCX, ODT and plain text are read here.
    pub fn read(&self, format: Format, bytes: &[u8]) -> Result<String, TextError> {
        match format {
            Format::Pdf => {
                let args = [format.as_str().to_owned(), self.max_memory.to_string(), cpu_seconds(self.timeout)];
                let out = self.in_child(&args, &[], bytes, self.timeout, self.max_output, false)?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
            _ => extract_here(format, bytes).map_err(TextError::Unreadable),
        }
    }

    /// The text of an image-only PDF: its first pages ([`ocr::MAX_PAGES`]) rasterised, then read
    /// one by one (all of them: a scan of a CV then a letter is both).
    pub fn ocr_pdf(&self, bytes: &[u8]) -> Result<Ocred, TextError> {
        let tools = self.ocr.as_ref().map_err(|why| TextError::NoOcr(why.clone()))?;
        let rasterise = tools.rasterise_command().ok_or_else(|| {
            TextError::NoOcr("pdftoppm is not installed (Debian: poppler-utils), so PDFs cannot be rasterised".into())
        })?;
        self.defer()?;
        // Three grey PNGs of text pages are a few hundred kilobytes; photos of pages, a few MB.
        let pngs = self.run_program(&rasterise, bytes, tools.page_timeout, 48 << 20)?;
        let pages = ocr::split_pngs(&pngs);
        if pages.is_empty() {
            return Err(TextError::Unreadable("the PDF has no page that could be rasterised".into()));
        }
        // One document's OCR never takes more than two pages' time, whatever its page count.
        let deadline = Instant::now() + tools.page_timeout * 2;
        let mut text = String::new();
        let mut read = 0;
        for page in pages.iter().take(ocr::MAX_PAGES) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_secs(1) {
                if read == 0 {
                    return Err(TextError::Timeout(tools.page_timeout * 2));
                }
                break;
            }
            let out = self.run_program(&tools.read_command(ocr::page_dpi(page)), page, left, 1 << 20)?;
            text.push_str(&String::from_utf8_lossy(&out));
            text.push('\n');
            read += 1;
        }
        Ok(Ocred { text, pages: read, languages: tools.languages.clone() })
    }

    /// The text of an image (a photographed or scanned page).
    pub fn ocr_image(&self, bytes: &[u8]) -> Result<Ocred, TextError> {
        let tools = self.ocr.as_ref().map_err(|why| TextError::NoOcr(why.clone()))?;
        self.defer()?;
        let out = self.run_program(&tools.read_command(None), bytes, tools.page_timeout, 1 << 20)?;
        Ok(Ocred { text: String::from_utf8_lossy(&out).into_owned(), pages: 1, languages: tools.languages.clone() })
    }

    /// Runs `command` (program and arguments) in the caged child, `input` on its standard input.
    fn run_program(
        &self,
        command: &[String],
        input: &[u8],
        timeout: Duration,
        max_output: usize,
    ) -> Result<Vec<u8>, TextError> {
        let mut args = vec![EXEC_MODE.to_owned(), self.max_memory.to_string(), cpu_seconds(timeout)];
        args.extend(command.iter().cloned());
        // OpenMP would start a thread per core: one is what the caps are measured for.
        let env = [(OsString::from("OMP_THREAD_LIMIT"), OsString::from("1"))];
        self.in_child(&args, &env, input, timeout, max_output, true)
    }

    /// Runs `mailroom __extract-text ARGS…` with `bytes` on its standard input, under the
    /// semaphore, the deadline and the output cap. `program`: the child becomes a program whose
    /// failing exit status means the input could not be read.
    fn in_child(
        &self,
        args: &[String],
        env: &[(OsString, OsString)],
        bytes: &[u8],
        timeout: Duration,
        max_output: usize,
        program: bool,
    ) -> Result<Vec<u8>, TextError> {
        let exe = self.program.as_ref().ok_or(TextError::NoExtractor)?;
        let _slot = SLOTS.take(program);
        let mut child = Command::new(exe)
            .arg(SUBCOMMAND)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TextError::Spawn { program: exe.display().to_string(), error: e.to_string() })?;
        let deadline = Instant::now() + timeout;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TextError::Crashed("no pipes to the child".into()));
        };
        std::thread::scope(|scope| {
            // The document goes in on one thread while the text comes out on another: a child
            // that prints before it has read everything must not deadlock on full pipes.
            scope.spawn(move || {
                let _ = stdin.write_all(bytes);
            });
            let (tx, rx) = mpsc::channel();
            scope.spawn(move || {
                let mut out = Vec::new();
                let result = stdout.take(max_output as u64 + 1).read_to_end(&mut out);
                let _ = tx.send(result.map(|_| out));
            });
            let errors = scope.spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_STDERR_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                kept
            });
            let stop = |child: &mut std::process::Child| {
                let _ = child.kill();
                let _ = child.wait();
            };
            let out = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => {
                    stop(&mut child);
                    return Err(TextError::Crashed(format!("reading its output: {e}")));
                }
                Err(_) => {
                    stop(&mut child);
                    return Err(TextError::Timeout(timeout));
                }
            };
            if out.len() > max_output {
                // Enough text to judge by; the rest is not worth waiting for.
                stop(&mut child);
                let mut out = out;
                out.truncate(max_output);
                return Ok(out);
            }
            // The child's output ends as it exits, a moment before it can be reaped: a first
            // pause of 5 ms here was 5 ms more on an application's way to its acknowledgement
            // whenever the exit was not quite done, so the pauses start short and grow.
            let mut pause = Duration::from_micros(50);
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status,
                    Ok(None) if Instant::now() >= deadline => {
                        stop(&mut child);
                        return Err(TextError::Timeout(timeout));
                    }
                    Ok(None) => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(5));
                    }
                    Err(e) => {
                        stop(&mut child);
                        return Err(TextError::Crashed(e.to_string()));
                    }
                }
            };
            let stderr = errors.join().unwrap_or_default();
            if status.success() {
                return Ok(out);
            }
            let said = first_words(&String::from_utf8_lossy(&stderr));
            match status.code() {
                Some(2) => Err(TextError::Unreadable(said)),
                Some(code) if program && code != i32::from(EXEC_FAILED) => Err(TextError::Unreadable(format!(
                    "{} (exit code {code})",
                    program_said(&String::from_utf8_lossy(&stderr))
                ))),
                Some(code) => Err(TextError::Crashed(format!("exit code {code}{}", colon(&said)))),
                None => Err(TextError::Crashed(format!("{}{}", signal_of(&status), colon(&said)))),
            }
        })
    }
}

fn cpu_seconds(timeout: Duration) -> String {
    timeout.as_secs().max(1).to_string()
}

/// The line of an OCR program's complaint that says what went wrong (Tesseract and Leptonica
/// print a chain of them, and chatter about the resolution first).
fn program_said(stderr: &str) -> String {
    let noise = ["Estimating resolution", "Warning", "Detected ", "Tesseract Open Source", "Page "];
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !noise.iter().any(|n| l.starts_with(n)))
        .unwrap_or("no reason given");
    let mut line: String = line.chars().filter(|c| !c.is_control()).take(160).collect();
    if line.chars().count() == 160 {
        line.push('…');
    }
    line
}

fn colon(s: &str) -> String {
    if s.is_empty() { String::new() } else { format!(": {s}") }
}

/// One line of what the child said, for a reason in metadata.json.
fn first_words(stderr: &str) -> String {
    let line: String = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note:") && !l.starts_with("stack backtrace"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut line: String = line.chars().filter(|c| !c.is_control()).take(200).collect();
    if line.len() < stderr.trim().len() && line.chars().count() == 200 {
        line.push('…');
    }
    line
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "killed (SIGKILL)".into(),
        Some(6) => "aborted (SIGABRT, out of memory?)".into(),
        Some(24) => "killed for using too much CPU time (SIGXCPU)".into(),
        Some(25) => "killed for writing a file (SIGXFSZ)".into(),
        Some(n) => format!("killed by signal {n}"),
        None => "ended without a status".into(),
    }
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> String {
    "ended without a status".into()
}

/// Formats read in-process.
fn extract_here(format: Format, bytes: &[u8]) -> Result<String, String> {
    match format {
        Format::Docx => text::docx_text(bytes).map_err(|e| e.to_string()),
        Format::Odt => text::odt_text(bytes).map_err(|e| e.to_string()),
        Format::Text => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Format::Pdf => pdf_text(bytes),
    }
}

fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    if !bytes.starts_with(b"%PDF-") && !bytes.get(..1024).unwrap_or(bytes).windows(5).any(|w| w == b"%PDF-") {
        return Err("not a PDF file".into());
    }
    pdf_extract::extract_text_from_mem(bytes).map_err(|e| format!("not a readable PDF: {e}"))
}

/// The child: `mailroom __extract-text FORMAT MAX_MEMORY CPU_SECONDS`, document on stdin, text
/// on stdout. Exit 0 with the text, 2 when the document is unreadable; a panic or a kill is
/// the parent's to report. `mailroom __extract-text exec MAX_MEMORY CPU_SECONDS PROGRAM ARGS…`
/// cages itself the same way and becomes PROGRAM.
pub fn child_main(args: &[String]) -> ExitCode {
    if args.first().is_some_and(|m| m == EXEC_MODE) {
        return exec_main(&args[1..]);
    }
    let format = args.first().and_then(|f| Format::parse(f));
    let max_memory = args.get(1).and_then(|m| m.parse::<u64>().ok()).unwrap_or(CHILD_MEMORY);
    let cpu_seconds = args.get(2).and_then(|c| c.parse::<u64>().ok()).unwrap_or(15);
    let Some(format) = format else {
        eprintln!("usage: mailroom {SUBCOMMAND} pdf|docx|odt|txt [MAX_MEMORY] [CPU_SECONDS]");
        return ExitCode::from(64);
    };
    if let Err(e) = restrict(max_memory, cpu_seconds, 3) {
        eprintln!("cannot restrict the extractor: {e}");
        return ExitCode::from(EXEC_FAILED);
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_INPUT_BYTES).read_to_end(&mut input) {
        eprintln!("cannot read the document: {e}");
        return ExitCode::from(2);
    }
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = std::env::var_os(FAULT_ENV) {
        fault_for_tests(&fault.to_string_lossy());
    }
    match extract_here(format, &input) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                // The parent stopped reading (it had enough): not an error of the document.
                Err(_) => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The `exec` mode: the cage, then the program in this very process (its standard input, output
/// and error are the child's), so the parent's deadline and kill reach the program itself.
fn exec_main(args: &[String]) -> ExitCode {
    let max_memory = args.first().and_then(|m| m.parse::<u64>().ok());
    let cpu_seconds = args.get(1).and_then(|c| c.parse::<u64>().ok());
    let (Some(max_memory), Some(cpu_seconds), Some(program)) = (max_memory, cpu_seconds, args.get(2)) else {
        eprintln!("usage: mailroom {SUBCOMMAND} {EXEC_MODE} MAX_MEMORY CPU_SECONDS PROGRAM [ARGS…]");
        return ExitCode::from(64);
    };
    if let Err(e) = restrict(max_memory, cpu_seconds, PROGRAM_MAX_FILES) {
        eprintln!("cannot restrict the program: {e}");
        return ExitCode::from(EXEC_FAILED);
    }
    #[cfg(feature = "fault-injection")]
    if let Some(fault) = std::env::var_os(FAULT_ENV) {
        fault_for_tests(&fault.to_string_lossy());
    }
    exec(program, &args[3..])
}

#[cfg(unix)]
fn exec(program: &str, args: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    // Returns only when the program could not be started.
    let err = Command::new(program).args(args).exec();
    eprintln!("cannot start {program}: {err}");
    ExitCode::from(EXEC_FAILED)
}

#[cfg(not(unix))]
fn exec(program: &str, _: &[String]) -> ExitCode {
    eprintln!("cannot start {program}: OCR needs a Unix system");
    ExitCode::from(EXEC_FAILED)
}

/// The child's own cage, set before it looks at the document. Without unsafe code it cannot be
/// set between fork and exec by the parent; setting it first thing in the child is equivalent,
/// since no untrusted byte has been read yet. `max_files` is 3 for the reader (standard input,
/// output and error: no file can be opened or created) and [`PROGRAM_MAX_FILES`] for an OCR
/// program, which opens its libraries and language data but still cannot write a byte to a file.
#[cfg(target_os = "linux")]
fn restrict(max_memory: u64, cpu_seconds: u64, max_files: u64) -> std::io::Result<()> {
    use rlimit::Resource;
    // prlimit64, not setrlimit: the systemd unit's `SystemCallFilter=~@resources` kills a
    // process that calls setrlimit, while @system-service allows prlimit64.
    let lower = |resource: Resource, value: u64| -> std::io::Result<()> {
        let (mut soft, mut hard) = (0, 0);
        rlimit::prlimit(0, resource, None, Some((&mut soft, &mut hard)))?;
        let value = value.min(hard);
        rlimit::prlimit(0, resource, Some((value, value)), None)
    };
    // Standard input, output and error are descriptors 0–2: with a limit of 3 no file can be
    // opened or created. The others are belts to those braces. (NPROC 0 also forbids threads to
    // an unprivileged user: the programs run single-threaded, see OMP_THREAD_LIMIT.)
    lower(Resource::NOFILE, max_files)?;
    lower(Resource::FSIZE, 0)?;
    lower(Resource::CORE, 0)?;
    lower(Resource::NPROC, 0)?;
    lower(Resource::AS, max_memory)?;
    lower(Resource::CPU, cpu_seconds)?;
    Ok(())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn restrict(max_memory: u64, cpu_seconds: u64, max_files: u64) -> std::io::Result<()> {
    use rlimit::Resource;
    let lower = |resource: Resource, value: u64| -> std::io::Result<()> {
        let (_, hard) = resource.get()?;
        resource.set(value.min(hard), value.min(hard))
    };
    lower(Resource::NOFILE, max_files)?;
    lower(Resource::FSIZE, 0)?;
    lower(Resource::CORE, 0)?;
    lower(Resource::AS, max_memory)?;
    lower(Resource::CPU, cpu_seconds)
}

#[cfg(not(unix))]
fn restrict(_: u64, _: u64, _: u64) -> std::io::Result<()> {
    Ok(())
}

/// Misbehaviours on demand, so tests can show what a bad PDF costs.
#[cfg(feature = "fault-injection")]
fn fault_for_tests(fault: &str) {
    match fault {
        "panic" => panic!("simulated extractor panic (pdf-extract #153)"),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        "spin" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "flood" => {
            let chunk = "Formation Expérience ".repeat(1000);
            let mut out = std::io::stdout().lock();
            while out.write_all(chunk.as_bytes()).is_ok() {}
            std::process::exit(0);
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 64 << 20]);
            }
        }
        other => {
            if let Some(path) = other.strip_prefix("write:") {
                let outcome = match std::fs::write(path, b"escaped") {
                    Ok(()) => "wrote the file".to_owned(),
                    Err(e) => format!("refused: {e}"),
                };
                print!("{outcome}");
                std::process::exit(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_program_costs_only_pdfs() {
        let reader = TextReader::with_program(None);
        assert_eq!(reader.read(Format::Pdf, b"%PDF-1.4"), Err(TextError::NoExtractor));
        assert_eq!(reader.read(Format::Text, "Formation".as_bytes()).unwrap(), "Formation");
        assert!(matches!(reader.read(Format::Docx, b"not a zip"), Err(TextError::Unreadable(_))));
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let reader = TextReader::with_program(Some("/nonexistent/mailroom".into()));
        let err = reader.read(Format::Pdf, b"%PDF-1.4").unwrap_err();
        assert!(matches!(err, TextError::Spawn { .. }), "{err}");
    }

    #[test]
    fn stderr_becomes_one_short_line() {
        let said = "\nthread 'main' panicked at src/x.rs:1:1:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(first_words(said), "thread 'main' panicked at src/x.rs:1:1: boom");
        assert!(first_words(&"x".repeat(5000)).chars().count() <= 201);
    }
}
