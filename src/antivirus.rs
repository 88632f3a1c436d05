//! Optional antivirus: a client for ClamAV's daemon, clamd, and the [`Scanner`] role the
//! pipeline scans documents through before they are filed.
//!
//! The client speaks clamd's NUL-terminated commands (`zPING`, `zVERSION`, `zINSTREAM`) over
//! its unix socket or TCP, one connection per command. INSTREAM sends the file in chunks (a
//! 4-byte big-endian length, then the bytes; a zero length ends the stream); clamd answers
//! `stream: OK`, `stream: <signature> FOUND`, or `… ERROR` (for example when the stream
//! exceeds its `StreamMaxLength`, which it announces by closing the stream early).
//!
//! Every connect, write and read has a deadline. Errors say whether trying again can help:
//! clamd unreachable, refusing, or slow is transient (it restarts after each signature update);
//! an answer that is not clamd's is permanent. What the pipeline does with an unreachable clamd
//! is `antivirus.on_unreachable`'s to say: see [`decide`].

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::{AntivirusConfig, OnUnreachable};
pub use crate::config::{ClamdAddress, DEFAULT_MAX_STREAM_BYTES};
use crate::error::{Classified, Retry};

/// What clamd said about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    Infected {
        signature: String,
    },
    /// clamd could not scan this file (too large for its `StreamMaxLength`, a scan limit, …).
    Error {
        message: String,
    },
}

/// Scans a file's bytes. The pipeline holds a `dyn Scanner`: [`Clamd`] in production, a
/// closure in unit tests (any `Fn(&[u8]) -> Result<ScanResult, AvError>` is a scanner).
pub trait Scanner: Send + Sync {
    fn scan(&self, bytes: &[u8]) -> Result<ScanResult, AvError>;
}

impl<F> Scanner for F
where
    F: Fn(&[u8]) -> Result<ScanResult, AvError> + Send + Sync,
{
    fn scan(&self, bytes: &[u8]) -> Result<ScanResult, AvError> {
        self(bytes)
    }
}

/// Why a command to clamd failed.
#[derive(Debug, thiserror::Error)]
pub enum AvError {
    #[error("clamd at {address} is unreachable: {error}")]
    Unreachable { address: String, error: std::io::Error },
    #[error("clamd at {address} did not answer within {secs} s ({during})")]
    Timeout { address: String, secs: u64, during: &'static str },
    #[error("clamd at {address} closed the connection ({during}): {error}")]
    Connection { address: String, during: &'static str, error: std::io::Error },
    #[error("clamd at {address} answered something unexpected to {command}: {answer:?}")]
    Protocol { address: String, command: &'static str, answer: String },
}

impl Classified for AvError {
    fn retry(&self) -> Retry {
        match self {
            // clamd restarts (signature reloads, upgrades) and is busy at times: try again later.
            AvError::Unreachable { .. } | AvError::Timeout { .. } | AvError::Connection { .. } => Retry::Transient,
            AvError::Protocol { .. } => Retry::Permanent,
        }
    }
}

/// Bytes per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;
/// Longest answer read from clamd: a signature name is short.
const MAX_ANSWER: usize = 4096;

/// A clamd client. Cheap to clone; every command opens its own connection.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: ClamdAddress,
    timeout: Duration,
    max_stream_bytes: u64,
}

impl Clamd {
    pub fn new(address: ClamdAddress, timeout: Duration, max_stream_bytes: u64) -> Clamd {
        Clamd { address, timeout, max_stream_bytes }
    }

    /// The client for `[antivirus]`, or `None` when `clamd` is empty (scanning off).
    pub fn from_config(cfg: &AntivirusConfig) -> Option<Clamd> {
        let address = ClamdAddress::parse(&cfg.clamd).ok().flatten()?;
        Some(Clamd::new(address, Duration::from_secs(cfg.timeout_secs), cfg.max_stream_bytes))
    }

    pub fn address(&self) -> &ClamdAddress {
        &self.address
    }

    /// `zPING`: clamd is there and answers.
    pub fn ping(&self) -> Result<(), AvError> {
        let answer = self.command("zPING", b"zPING\0", &[])?;
        if answer == "PONG" { Ok(()) } else { Err(self.protocol("zPING", answer)) }
    }

    /// `zVERSION`: "ClamAV 1.4.6/27473/Tue Dec  1 08:33:15 2026" (engine/database version/date).
    pub fn version(&self) -> Result<String, AvError> {
        let answer = self.command("zVERSION", b"zVERSION\0", &[])?;
        if answer.starts_with("ClamAV ") { Ok(answer) } else { Err(self.protocol("zVERSION", answer)) }
    }

    fn protocol(&self, command: &'static str, answer: String) -> AvError {
        AvError::Protocol { address: self.address.to_string(), command, answer }
    }

    fn connect(&self) -> Result<Socket, AvError> {
        let address = self.address.to_string();
        let unreachable = |error| AvError::Unreachable { address: address.clone(), error };
        let targets: Vec<SockAddr> = match &self.address {
            ClamdAddress::Unix(path) => vec![SockAddr::unix(path).map_err(unreachable)?],
            ClamdAddress::Tcp { host, port } => {
                (host.as_str(), *port).to_socket_addrs().map_err(unreachable)?.map(SockAddr::from).collect()
            }
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for target in targets {
            let domain = if target.is_unix() { Domain::UNIX } else { Domain::for_address(target.as_socket().unwrap()) };
            let socket = Socket::new(domain, Type::STREAM.cloexec(), None).map_err(unreachable)?;
            match socket.connect_timeout(&target, self.timeout) {
                Ok(()) => {
                    socket.set_read_timeout(Some(self.timeout)).map_err(unreachable)?;
                    socket.set_write_timeout(Some(self.timeout)).map_err(unreachable)?;
                    return Ok(socket);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(AvError::Timeout { address, secs: self.timeout.as_secs(), during: "connecting" });
                }
                Err(e) => last = e,
            }
        }
        Err(unreachable(last))
    }

    fn io_error(&self, during: &'static str, error: std::io::Error) -> AvError {
        let address = self.address.to_string();
        match error.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                AvError::Timeout { address, secs: self.timeout.as_secs(), during }
            }
            _ => AvError::Connection { address, during, error },
        }
    }

    /// Sends a command (and a stream's chunks), reads the NUL-terminated answer.
    fn command(&self, name: &'static str, command: &[u8], stream: &[u8]) -> Result<String, AvError> {
        let mut socket = self.connect()?;
        let started = Instant::now();
        let sent = (|| {
            socket.write_all(command)?;
            if command.starts_with(b"zINSTREAM") {
                for chunk in stream.chunks(CHUNK) {
                    socket.write_all(&(chunk.len() as u32).to_be_bytes())?;
                    socket.write_all(chunk)?;
                }
                socket.write_all(&0u32.to_be_bytes())?;
            }
            socket.flush()
        })();
        // clamd answers and closes early when a stream is over its limit: read that answer
        // before reporting the broken write.
        let answer = self.read_answer(&mut socket, started);
        match (sent, answer) {
            (_, Ok(a)) if !a.is_empty() => Ok(a),
            (Err(e), _) => Err(self.io_error("sending", e)),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(_)) => Err(self.protocol(name, String::new())),
        }
    }

    fn read_answer(&self, socket: &mut Socket, started: Instant) -> Result<String, AvError> {
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            // Each read has the deadline; so does the whole answer (a trickling peer).
            if started.elapsed() > self.timeout * 2 {
                return Err(AvError::Timeout {
                    address: self.address.to_string(),
                    secs: self.timeout.as_secs(),
                    during: "reading the answer",
                });
            }
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if let Some(end) = answer.iter().position(|&b| b == 0) {
                        answer.truncate(end);
                        break;
                    }
                    if answer.len() > MAX_ANSWER {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error("reading the answer", e)),
            }
        }
        answer.truncate(MAX_ANSWER);
        Ok(String::from_utf8_lossy(&answer).trim_end_matches(['\n', '\0']).to_owned())
    }
}

impl Scanner for Clamd {
    /// `zINSTREAM`. A file over `max_stream_bytes` is not sent: it is an [`ScanResult::Error`],
    /// as clamd would answer.
    fn scan(&self, bytes: &[u8]) -> Result<ScanResult, AvError> {
        if bytes.len() as u64 > self.max_stream_bytes {
            return Ok(ScanResult::Error {
                message: format!(
                    "{} bytes, over antivirus.max_stream_bytes ({}): not scanned",
                    bytes.len(),
                    self.max_stream_bytes
                ),
            });
        }
        let answer = self.command("zINSTREAM", b"zINSTREAM\0", bytes)?;
        parse_scan_answer(&answer).ok_or_else(|| self.protocol("zINSTREAM", answer))
    }
}

/// `stream: OK`, `stream: Eicar-Signature FOUND`, `INSTREAM size limit exceeded. ERROR`.
fn parse_scan_answer(answer: &str) -> Option<ScanResult> {
    if let Some(message) = answer.strip_suffix(" ERROR") {
        let message = message.strip_prefix("stream: ").unwrap_or(message);
        let message = if message.contains("size limit exceeded") {
            format!("{message} (over clamd's StreamMaxLength)")
        } else {
            message.to_owned()
        };
        return Some(ScanResult::Error { message });
    }
    let verdict = answer.strip_prefix("stream: ")?;
    if verdict == "OK" {
        return Some(ScanResult::Clean);
    }
    let signature = verdict.strip_suffix(" FOUND")?.trim();
    (!signature.is_empty()).then(|| ScanResult::Infected { signature: signature.to_owned() })
}

/// What the pipeline does with a message after scanning its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every document is clean: file it.
    File,
    /// A document is infected: quarantine the message, no reply, a digest line.
    Infected { document: usize, signature: String },
    /// A document could not be scanned (too large, a scan limit): under `fail_closed` the
    /// message is quarantined for a person; under `fail_open` it is filed, marked unscanned.
    Unscannable { document: usize, message: String },
    /// clamd could not be asked, `fail_closed`: do not file; the message waits and is tried again.
    Wait { error: String, transient: bool },
    /// clamd could not be asked, `fail_open`: file it, marked (and reported) as not scanned.
    FileUnscanned { error: String },
}

/// Scans each document in turn and decides, under `policy`. Stops at the first infected file.
pub fn decide<'a>(
    scanner: &dyn Scanner,
    documents: impl IntoIterator<Item = &'a [u8]>,
    policy: OnUnreachable,
) -> Decision {
    let mut unscannable = None;
    for (i, bytes) in documents.into_iter().enumerate() {
        match scanner.scan(bytes) {
            Ok(ScanResult::Clean) => {}
            Ok(ScanResult::Infected { signature }) => return Decision::Infected { document: i, signature },
            Ok(ScanResult::Error { message }) => {
                unscannable.get_or_insert(Decision::Unscannable { document: i, message });
            }
            Err(e) => {
                return match policy {
                    OnUnreachable::FailClosed => Decision::Wait { error: e.to_string(), transient: e.is_transient() },
                    OnUnreachable::FailOpen => Decision::FileUnscanned { error: e.to_string() },
                };
            }
        }
    }
    unscannable.unwrap_or(Decision::File)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ClamdAddress::parse("").unwrap(), None);
        assert_eq!(ClamdAddress::parse("  ").unwrap(), None);
        assert_eq!(
            ClamdAddress::parse("/run/clamav/clamd.ctl").unwrap(),
            Some(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(
            ClamdAddress::parse("127.0.0.1:3310").unwrap(),
            Some(ClamdAddress::Tcp { host: "127.0.0.1".into(), port: 3310 })
        );
        assert_eq!(
            ClamdAddress::parse("[::1]:3310").unwrap(),
            Some(ClamdAddress::Tcp { host: "::1".into(), port: 3310 })
        );
        assert_eq!(
            ClamdAddress::parse("clamav.internal:3310").unwrap(),
            Some(ClamdAddress::Tcp { host: "clamav.internal".into(), port: 3310 })
        );
        for bad in ["clamd.ctl", "run/clamd.ctl", "localhost", "localhost:0", "localhost:99999", ":3310", "::1:3310"] {
            assert!(ClamdAddress::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ClamdAddress::parse("[::1]:3310").unwrap().unwrap().to_string(), "[::1]:3310");
    }

    #[test]
    fn answers() {
        assert_eq!(parse_scan_answer("stream: OK"), Some(ScanResult::Clean));
        assert_eq!(
            parse_scan_answer("stream: Win.Test.EICAR_HDB-1 FOUND"),
            Some(ScanResult::Infected { signature: "Win.Test.EICAR_HDB-1".into() })
        );
        assert!(matches!(
            parse_scan_answer("INSTREAM size limit exceeded. ERROR"),
            Some(ScanResult::Error { message }) if message.contains("StreamMaxLength")
        ));
        assert_eq!(parse_scan_answer("stream:  FOUND"), None);
        assert_eq!(parse_scan_answer("PONG"), None);
        assert_eq!(parse_scan_answer(""), None);
    }

    fn unreachable() -> AvError {
        AvError::Unreachable {
            address: "/nowhere".into(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
    }

    #[test]
    fn decisions_under_each_policy() {
        let clean = |_: &[u8]| Ok(ScanResult::Clean);
        let docs: [&[u8]; 2] = [b"cv", b"letter"];
        assert_eq!(decide(&clean, docs, OnUnreachable::FailClosed), Decision::File);
        let infected_letter = |b: &[u8]| {
            Ok(if b == b"letter" { ScanResult::Infected { signature: "X".into() } } else { ScanResult::Clean })
        };
        assert_eq!(
            decide(&infected_letter, docs, OnUnreachable::FailOpen),
            Decision::Infected { document: 1, signature: "X".into() }
        );
        let down = |_: &[u8]| Err(unreachable());
        assert!(matches!(decide(&down, docs, OnUnreachable::FailClosed), Decision::Wait { transient: true, .. }));
        assert!(matches!(decide(&down, docs, OnUnreachable::FailOpen), Decision::FileUnscanned { .. }));
        // Nothing to scan: nothing to wait for.
        assert_eq!(decide(&down, std::iter::empty(), OnUnreachable::FailClosed), Decision::File);
        let too_big = |b: &[u8]| {
            Ok(if b == b"cv" { ScanResult::Error { message: "too large".into() } } else { ScanResult::Clean })
        };
        assert_eq!(
            decide(&too_big, docs, OnUnreachable::FailClosed),
            Decision::Unscannable { document: 0, message: "too large".into() }
        );
    }

    #[test]
    fn errors_know_whether_to_retry() {
        assert!(unreachable().is_transient());
        let timeout = AvError::Timeout { address: "x".into(), secs: 1, during: "connecting" };
        assert!(timeout.is_transient());
        let garbage = AvError::Protocol { address: "x".into(), command: "zPING", answer: "HTTP/1.1 400".into() };
        assert!(!garbage.is_transient());
    }

    #[test]
    fn a_missing_socket_is_unreachable_and_transient() {
        let dir = tempfile::tempdir().unwrap();
        let clamd = Clamd::new(ClamdAddress::Unix(dir.path().join("clamd.ctl")), Duration::from_secs(2), 1 << 20);
        let err = clamd.ping().unwrap_err();
        assert!(matches!(err, AvError::Unreachable { .. }), "{err}");
        assert!(err.is_transient());
    }

    /// A TCP server for one connection: reads the command, then answers `reply`, or (`None`)
    /// holds the connection without a word until the client gives up.
    fn one_connection(reply: Option<&'static [u8]>) -> (Clamd, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            match reply {
                Some(r) => s.write_all(r).unwrap(),
                None => {
                    let _ = s.read(&mut buf);
                }
            }
        });
        let clamd =
            Clamd::new(ClamdAddress::Tcp { host: "127.0.0.1".into(), port }, Duration::from_millis(300), 1 << 20);
        (clamd, server)
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        // The read deadline ends the wait (without it this test would never end).
        let (clamd, server) = one_connection(None);
        let err = clamd.ping().unwrap_err();
        assert!(matches!(err, AvError::Timeout { .. }), "{err}");
        assert!(err.is_transient());
        server.join().unwrap();
    }

    #[test]
    fn a_server_speaking_another_protocol_is_a_permanent_error() {
        let (clamd, server) = one_connection(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
        let err = clamd.ping().unwrap_err();
        assert!(matches!(err, AvError::Protocol { .. }), "{err}");
        assert!(!err.is_transient());
        server.join().unwrap();
    }

    #[test]
    fn files_over_the_configured_limit_are_not_sent() {
        // Nothing listens: a file over the limit must not even connect.
        let clamd = Clamd::new(ClamdAddress::Unix("/nonexistent/clamd.ctl".into()), Duration::from_secs(1), 10);
        assert!(matches!(clamd.scan(&[0u8; 11]), Ok(ScanResult::Error { .. })));
        assert!(clamd.scan(&[0u8; 10]).is_err());
    }
}
