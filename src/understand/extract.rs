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

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::text::{self, Format};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__extract-text";
/// Test hook read by the child (only ever set through [`TextReader::with_fault`]: the child's
/// environment is otherwise empty): `panic`, `hang`, `spin`, `flood`, `oom`, `write:PATH`.
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
        TextReader::with_program(program)
    }

    /// A reader running `program` (`None`: PDFs cannot be read; the other formats still can).
    pub fn with_program(program: Option<PathBuf>) -> TextReader {
        TextReader {
            program,
            timeout: Duration::from_secs(15),
            max_output: 4 << 20,
            max_memory: 1 << 30,
            env: Vec::new(),
        }
    }

    pub fn program(&self) -> Option<&Path> {
        self.program.as_deref()
    }

    /// Test hook: the child misbehaves as told instead of extracting (see `FAULT_ENV`).
    #[doc(hidden)]
    pub fn with_fault(mut self, fault: &str) -> TextReader {
        self.env.push((FAULT_ENV.into(), fault.into()));
        self
    }

    /// The text of a document. PDFs go through the child; DOCX, ODT and plain text are read here.
    pub fn read(&self, format: Format, bytes: &[u8]) -> Result<String, TextError> {
        match format {
            Format::Pdf => self.in_child(format, bytes),
            _ => extract_here(format, bytes).map_err(TextError::Unreadable),
        }
    }

    fn in_child(&self, format: Format, bytes: &[u8]) -> Result<String, TextError> {
        let program = self.program.as_ref().ok_or(TextError::NoExtractor)?;
        let mut child = Command::new(program)
            .arg(SUBCOMMAND)
            .arg(format.as_str())
            .arg(self.max_memory.to_string())
            .arg(self.timeout.as_secs().max(1).to_string())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TextError::Spawn { program: program.display().to_string(), error: e.to_string() })?;
        let deadline = Instant::now() + self.timeout;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TextError::Crashed("no pipes to the child".into()));
        };
        let max_output = self.max_output;
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
                    return Err(TextError::Timeout(self.timeout));
                }
            };
            if out.len() > max_output {
                // Enough text to judge by; the rest is not worth waiting for.
                stop(&mut child);
                let mut out = out;
                out.truncate(max_output);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status,
                    Ok(None) if Instant::now() >= deadline => {
                        stop(&mut child);
                        return Err(TextError::Timeout(self.timeout));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => {
                        stop(&mut child);
                        return Err(TextError::Crashed(e.to_string()));
                    }
                }
            };
            let stderr = errors.join().unwrap_or_default();
            if status.success() {
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            let said = first_words(&String::from_utf8_lossy(&stderr));
            match status.code() {
                Some(2) => Err(TextError::Unreadable(said)),
                Some(code) => Err(TextError::Crashed(format!("exit code {code}{}", colon(&said)))),
                None => Err(TextError::Crashed(format!("{}{}", signal_of(&status), colon(&said)))),
            }
        })
    }
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
/// the parent's to report.
pub fn child_main(args: &[String]) -> ExitCode {
    let format = args.first().and_then(|f| Format::parse(f));
    let max_memory = args.get(1).and_then(|m| m.parse::<u64>().ok()).unwrap_or(1 << 30);
    let cpu_seconds = args.get(2).and_then(|c| c.parse::<u64>().ok()).unwrap_or(15);
    let Some(format) = format else {
        eprintln!("usage: mailroom {SUBCOMMAND} pdf|docx|odt|txt [MAX_MEMORY] [CPU_SECONDS]");
        return ExitCode::from(64);
    };
    if let Err(e) = restrict(max_memory, cpu_seconds) {
        eprintln!("cannot restrict the extractor: {e}");
        return ExitCode::from(70);
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_INPUT_BYTES).read_to_end(&mut input) {
        eprintln!("cannot read the document: {e}");
        return ExitCode::from(2);
    }
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

/// The child's own cage, set before it looks at the document. Without unsafe code it cannot be
/// set between fork and exec by the parent; setting it first thing in the child is equivalent,
/// since no untrusted byte has been read yet.
#[cfg(target_os = "linux")]
fn restrict(max_memory: u64, cpu_seconds: u64) -> std::io::Result<()> {
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
    // opened or created. The others are belts to those braces.
    lower(Resource::NOFILE, 3)?;
    lower(Resource::FSIZE, 0)?;
    lower(Resource::CORE, 0)?;
    lower(Resource::NPROC, 0)?;
    lower(Resource::AS, max_memory)?;
    lower(Resource::CPU, cpu_seconds)?;
    Ok(())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn restrict(max_memory: u64, cpu_seconds: u64) -> std::io::Result<()> {
    use rlimit::Resource;
    let lower = |resource: Resource, value: u64| -> std::io::Result<()> {
        let (_, hard) = resource.get()?;
        resource.set(value.min(hard), value.min(hard))
    };
    lower(Resource::NOFILE, 3)?;
    lower(Resource::FSIZE, 0)?;
    lower(Resource::CORE, 0)?;
    lower(Resource::AS, max_memory)?;
    lower(Resource::CPU, cpu_seconds)
}

#[cfg(not(unix))]
fn restrict(_: u64, _: u64) -> std::io::Result<()> {
    Ok(())
}

/// Misbehaviours on demand, so tests can show what a bad PDF costs.
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
