//! Helpers shared by the integration tests: building application emails, configs, and (for the
//! end-to-end tier) talking to the local mail stack started by `scripts/mailstack`.
#![allow(dead_code)]

pub(crate) mod idp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An attachment: file name, content type, bytes.
pub(crate) type Attachment<'a> = (&'a str, &'a str, &'a [u8]);

/// Base64 in lines of 76, as mail clients write attachments.
pub(crate) fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let n = chunk.len();
        let v =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for j in 0..4 {
            if j <= n {
                out.push(T[(v >> (18 - 6 * j) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a fake mailbox holds: UID → (INTERNALDATE, raw message).
pub(crate) type FakeMessages = std::collections::BTreeMap<u32, (chrono::DateTime<chrono::Utc>, Vec<u8>)>;

/// A fake mailbox's `list_after`: the envelopes above `after`.
pub(crate) fn envelopes_after(messages: &FakeMessages, after: u32) -> Vec<mailroom::mailbox::Envelope> {
    messages
        .range(after + 1..)
        .map(|(uid, (at, m))| mailroom::mailbox::Envelope { uid: *uid, size: m.len() as u64, internal_date: Some(*at) })
        .collect()
}

/// A fake mailbox's `fetch`: the messages of `uids` it holds.
pub(crate) fn raw_messages(messages: &FakeMessages, uids: &[u32]) -> Vec<mailroom::mailbox::RawMessage> {
    uids.iter()
        .filter_map(|u| {
            messages.get(u).map(|(at, m)| mailroom::mailbox::RawMessage {
                uid: *u,
                internal_date: Some(*at),
                raw: m.clone(),
            })
        })
        .collect()
}

/// A Tesseract stand-in, `<dir>/held-bin/tesseract`: it answers `--list-langs` as the real one
/// does (French and English, so a daemon finds it on its PATH), and reads a page (as a CV) only
/// once the test creates the file it returns second. "The scan is still being read" is then a
/// state the test holds, not a guess about timing. Run through mailroom's caged child like the
/// real one. Returns (the program, the release file).
pub(crate) fn held_tesseract(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("held-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let release = dir.join("release-ocr");
    let script = format!(
        "#!/usr/bin/python3\nimport os, sys, time\n\
         if '--list-langs' in sys.argv:\n    print('List of available languages (2):')\n    print('eng')\n    print('fra')\n    sys.exit(0)\n\
         sys.stdin.buffer.read()\n\
         while not os.path.exists({release:?}):\n    time.sleep(0.02)\n\
         print('Curriculum vitae Experience professionnelle Formation Competences Langues Centres d interet')\n",
        release = release.display().to_string()
    );
    let program = bin.join("tesseract");
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (program, release)
}

/// OCR programs for a [`mailroom::understand::extract::TextReader`]: this Tesseract (no pdftoppm).
pub(crate) fn ocr_tools(tesseract: PathBuf) -> mailroom::understand::ocr::OcrTools {
    mailroom::understand::ocr::OcrTools {
        tesseract,
        pdftoppm: None,
        languages: "fra".into(),
        env: None,
        page_timeout: Duration::from_secs(120),
    }
}

/// A Message-ID no other test run uses (the process id and the clock).
pub(crate) fn unique_id(tag: &str) -> String {
    format!("{tag}.{}.{}@example.test", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap())
}

/// A complete application (a CV and a letter, both PDFs; the CV's text is the Message-ID, so each
/// one is a different file).
pub(crate) fn complete_application(from: &str, name: &str, to: &str, id: &str) -> Vec<u8> {
    application_eml(
        &format!("{name} <{from}>"),
        to,
        "Candidature stage",
        id,
        &[],
        "Bonjour, voici mon CV et ma lettre.",
        &[("CV.pdf", "application/pdf", &pdf(id)), ("Lettre de motivation.pdf", "application/pdf", &pdf("lm"))],
    )
}

/// A MIME application as a mail client writes it (multipart/mixed, base64 attachments, RFC 2231 names).
pub(crate) fn application_eml(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
    attachments: &[Attachment],
) -> Vec<u8> {
    register_personal(from);
    let mut m = String::new();
    m.push_str(&format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"));
    m.push_str("Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n");
    for (n, v) in extra_headers {
        m.push_str(&format!("{n}: {v}\r\n"));
    }
    m.push_str("Content-Type: multipart/mixed; boundary=\"=-boundary-42\"\r\n\r\n");
    m.push_str("--=-boundary-42\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    m.push_str(body);
    m.push_str("\r\n");
    for (name, ctype, bytes) in attachments {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        m.push_str(&format!(
            "--=-boundary-42\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename*=utf-8''{encoded}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(bytes)
        ));
    }
    m.push_str("--=-boundary-42--\r\n");
    m.into_bytes()
}

/// A ZIP of stored (uncompressed) members `(path, bytes, encrypted flag)`: an archive a
/// candidate attaches, a DOCX, or (with the flag) one whose members are password-protected.
pub(crate) fn stored_zip(members: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (path, data, encrypted) in members {
        let crc = crc32fast::hash(data);
        let flags: u16 = if *encrypted { 1 } else { 0 };
        let offset = out.len() as u32;
        let sizes: Vec<u8> = [crc, data.len() as u32, data.len() as u32].iter().flat_map(|v| v.to_le_bytes()).collect();
        out.extend_from_slice(b"PK\x03\x04\x14\0");
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0x21, 0]);
        out.extend_from_slice(&sizes);
        out.extend_from_slice(&(path.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02\x14\0\x14\0");
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0x21, 0]);
        central.extend_from_slice(&sizes);
        central.extend_from_slice(&(path.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(path.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A small but real PDF, so filed documents look like what candidates send.
pub(crate) fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n% {text}\ntrailer << /Root 1 0 R >>\n%%EOF\n").into_bytes()
}

/// A config file in `dir`, with the given [imap]/[smtp] connection lines.
pub(crate) fn write_config(dir: &Path, imap: &str, smtp: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[imap]
{imap}
timeout_secs = 20

[smtp]
{smtp}

[identity]
from = "contact@example.test"
organisation = "La 27e Région (test)"
team = ["team@example.test"]

[storage]
data_dir = "data"
state_path = "state/mailroom.sqlite3"

{extra}

[[postings]]
slug = "stage-gestion-projet"
title = "Stage – Assistant·e gestion de projet"
language = "fr"
subject_keywords = ["stage", "candidature"]
default = true

[[postings]]
slug = "design-internship"
title = "Service design internship"
language = "en"
subject_keywords = ["design internship"]
"#
    );
    let path = dir.join("mailroom.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits for `condition` with a deadline, polling; never a fixed sleep.
pub(crate) fn wait_for<T>(what: &str, deadline: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = condition() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The local mail stack's connection facts, from the `MAILSTACK_*` environment that
/// `scripts/test` exports (see `scripts/mailstack env`).
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    pub vars: HashMap<String, String>,
}

impl Stack {
    /// The stack, or `None` outside `scripts/test`. Under CI (`CI=true`) a missing stack is a
    /// failure, never a silent skip.
    pub(crate) fn get() -> Option<Stack> {
        let vars: HashMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("MAILSTACK_")).collect();
        if vars.contains_key("MAILSTACK_IMAPS_PORT") {
            return Some(Stack { vars });
        }
        if in_ci() {
            panic!("CI=true but no mail stack: MAILSTACK_* is not set. Run the tests through scripts/test.");
        }
        eprintln!("SKIPPED: no mail stack (MAILSTACK_* unset); run scripts/test to include the end-to-end tier");
        None
    }

    pub(crate) fn var(&self, k: &str) -> &str {
        self.vars.get(k).unwrap_or_else(|| panic!("{k} missing from the mail stack environment"))
    }

    pub(crate) fn port(&self, k: &str) -> u16 {
        self.var(k).parse().unwrap()
    }

    pub(crate) fn password(&self) -> &str {
        self.var("MAILSTACK_PASSWORD")
    }

    pub(crate) fn ca(&self) -> &str {
        self.var("MAILSTACK_CA_FILE")
    }

    /// `[imap]` lines for a user and folder; `starttls` picks the port and mode.
    pub(crate) fn imap_lines(&self, user: &str, folder: &str, starttls: bool) -> String {
        let (port, tls) = if starttls {
            (self.port("MAILSTACK_IMAP_PORT"), "starttls")
        } else {
            (self.port("MAILSTACK_IMAPS_PORT"), "implicit")
        };
        format!(
            "host = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nusername = \"{user}\"\npassword = \"{}\"\nca_file = \"{}\"\nfolder = \"{folder}\"",
            self.password(),
            self.ca()
        )
    }

    pub(crate) fn smtp_lines(&self, user: &str, starttls: bool) -> String {
        let (port, tls) = if starttls {
            (self.port("MAILSTACK_SUBMISSION_PORT"), "starttls")
        } else {
            (self.port("MAILSTACK_SUBMISSIONS_PORT"), "implicit")
        };
        format!(
            "host = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nusername = \"{user}\"\npassword = \"{}\"\nca_file = \"{}\"",
            self.password(),
            self.ca()
        )
    }

    /// Sends a raw message through authenticated submission, as the candidate's mail client does.
    pub(crate) fn submit(&self, user: &str, recipients: &[&str], raw: &[u8]) {
        let status = std::process::Command::new("swaks")
            .args(["--server", &format!("localhost:{}", self.port("MAILSTACK_SUBMISSION_PORT"))])
            .args(["--tls", "--tls-ca-path", self.ca(), "--tls-verify"])
            .args(["--auth", "PLAIN", "--auth-user", user, "--auth-password", self.password()])
            .args(["--from", user])
            .args(["--to", &recipients.join(",")])
            .args(["--data", "-", "--silent", "2"])
            .stdin_bytes(raw)
            .status_checked();
        assert!(status, "swaks submission as {user} failed");
    }

    /// Hands a message to Postfix's inbound port (no authentication), as another mail server on
    /// the Internet would; works while Dovecot (and so SASL) is down. An empty `from` is the null
    /// sender of bounces.
    pub(crate) fn inject(&self, from: &str, recipients: &[&str], raw: &[u8]) {
        let status = std::process::Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", self.port("MAILSTACK_SMTP_PORT"))])
            .args(["--from", if from.is_empty() { "<>" } else { from }, "--to", &recipients.join(",")])
            .args(["--data", "-", "--silent", "2"])
            .stdin_bytes(raw)
            .status_checked();
        assert!(status, "swaks injection from {from} failed");
    }

    /// Runs doveadm against the stack's Dovecot.
    pub(crate) fn doveadm(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("doveadm")
            .args(["-c", self.var("MAILSTACK_DOVECOT_CONF")])
            .args(args)
            .output()
            .expect("doveadm runs");
        assert!(out.status.success(), "doveadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a fresh folder in a user's mailbox; mail to `user+folder@` lands there.
    pub(crate) fn fresh_folder(&self, user: &str, prefix: &str) -> String {
        let folder = format!("{prefix}{}{:04x}", std::process::id(), rand16());
        self.doveadm(&["mailbox", "create", "-u", user, &folder]);
        folder
    }

    /// Full raw messages in a user's folder whose header matches `header: value`.
    pub(crate) fn messages_with(&self, user: &str, folder: &str, header: &str, value: &str) -> Vec<String> {
        let guids = self.doveadm(&["-f", "flow", "search", "-u", user, "mailbox", folder, "HEADER", header, value]);
        guids
            .lines()
            .filter_map(|l| {
                let uid = l.split_whitespace().last()?;
                let text = self.doveadm(&["-f", "flow", "fetch", "-u", user, "text", "mailbox", folder, "uid", uid]);
                Some(text.strip_prefix("text=").unwrap_or(&text).to_owned())
            })
            .collect()
    }

    pub(crate) fn count(&self, user: &str, folder: &str) -> usize {
        self.doveadm(&["-f", "flow", "search", "-u", user, "mailbox", folder, "ALL"]).lines().count()
    }

    /// True when Postfix has nothing left to deliver.
    pub(crate) fn postfix_queue_empty(&self) -> bool {
        let out = std::process::Command::new("postqueue")
            .args(["-c", self.var("MAILSTACK_POSTFIX_DIR"), "-j"])
            .output()
            .expect("postqueue runs");
        out.status.success() && out.stdout.iter().all(|b| b.is_ascii_whitespace())
    }
}

fn rand16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish() as u16
}

trait StdinBytes {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> StdinRun<'_>;
}

pub(crate) struct StdinRun<'a> {
    cmd: &'a mut std::process::Command,
    bytes: Vec<u8>,
}

impl StdinBytes for std::process::Command {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> StdinRun<'_> {
        StdinRun { cmd: self, bytes: bytes.to_vec() }
    }
}

impl StdinRun<'_> {
    fn status_checked(self) -> bool {
        use std::io::Write;
        let mut child = self
            .cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("swaks is installed (scripts/mailstack up installs it)");
        child.stdin.take().unwrap().write_all(&self.bytes).unwrap();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

/// Runs the mailroom binary, logging everything of its own (`mailroom=trace`) to its standard
/// error, and checks that no log line carries a candidate's name or address.
pub(crate) fn mailroom(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(args)
        .env("RUST_LOG", TRACE)
        .output()
        .expect("mailroom runs");
    assert_no_personal_data(&String::from_utf8_lossy(&out.stderr), &format!("mailroom {}", args.join(" ")));
    out
}

/// The log filter of every mailroom the tests start: all of mailroom's own lines, at every level.
pub(crate) const TRACE: &str = "mailroom=trace";

/// Names and addresses of the candidates the tests wrote mail as (see [`application_eml`]).
static PERSONAL: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Remembers the name and the address of a `From` a test wrote (`Name <addr>` or `addr`): they
/// must never appear in a log. Names are also remembered word by word (a folder is
/// `Family-Given`), except words that logs use for themselves.
pub(crate) fn register_personal(from: &str) {
    const OURS: &[&str] = &["contact@example.test", "team@example.test"];
    const WORDS: &[&str] = &["Candidate", "Person", "Jobs", "Digest", "board", "Test"];
    let (name, addr) = match from.rsplit_once('<') {
        Some((n, a)) => (n.trim().trim_matches('"').trim(), a.trim_end_matches('>').trim()),
        None => ("", from.trim()),
    };
    let mut set = PERSONAL.lock().unwrap_or_else(|p| p.into_inner());
    if addr.contains('@') && !OURS.contains(&addr.to_ascii_lowercase().as_str()) {
        set.insert(addr.to_owned());
    }
    if name.chars().count() >= 4 && !name.starts_with("=?") {
        set.insert(name.to_owned());
        for word in name.split(|c: char| !c.is_alphanumeric()) {
            if word.chars().count() >= 4 && word.starts_with(char::is_uppercase) && !WORDS.contains(&word) {
                set.insert(word.to_owned());
            }
        }
    }
}

/// Fails if `log` holds any name or address registered by [`register_personal`].
pub(crate) fn assert_no_personal_data(log: &str, what: &str) {
    let set = PERSONAL.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for line in log.lines() {
        if let Some(found) = set.iter().find(|p| line.contains(p.as_str())) {
            panic!("{what}: a log line carries personal data ({found:?}):\n{line}");
        }
    }
}

impl Stack {
    /// A stack of this test's own (its own state folder and ports), for tests that stop servers
    /// and must not disturb the others. Stopped when dropped. `None` as for [`Stack::get`].
    pub(crate) fn own(name: &str) -> Option<OwnStack> {
        Stack::get()?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(format!("mailstack-{name}"));
        let out = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack"))
            .arg("up")
            .env("MAILSTACK_DIR", &dir)
            .output()
            .expect("scripts/mailstack runs");
        assert!(out.status.success(), "mailstack up: {}", String::from_utf8_lossy(&out.stderr));
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Some(OwnStack { stack: Stack { vars }, dir })
    }

    /// `scripts/mailstack stop|start dovecot|postfix` for this stack.
    pub(crate) fn service(&self, action: &str, which: &str) {
        let out = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack"))
            .args([action, which])
            .env("MAILSTACK_DIR", self.var("MAILSTACK_DIR"))
            .output()
            .expect("scripts/mailstack runs");
        assert!(out.status.success(), "mailstack {action} {which}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Delivers messages straight into Dovecot over LMTP, as the MTA does: fast, for backlogs.
    pub(crate) fn lmtp_deliver(&self, rcpt: &str, messages: &[Vec<u8>]) {
        use std::io::{BufRead, BufReader, Write};
        let stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port("MAILSTACK_LMTP_PORT"))).expect("LMTP connects");
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let mut line = String::new();
        let mut expect = |reader: &mut BufReader<std::net::TcpStream>, code: &str| loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "LMTP: expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        };
        expect(&mut reader, "220");
        w.write_all(b"LHLO tests.example.test\r\n").unwrap();
        expect(&mut reader, "250");
        for raw in messages {
            w.write_all(b"MAIL FROM:<sender@example.test>\r\n").unwrap();
            expect(&mut reader, "250");
            w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).unwrap();
            expect(&mut reader, "250");
            w.write_all(b"DATA\r\n").unwrap();
            expect(&mut reader, "354");
            let mut data = Vec::with_capacity(raw.len() + 64);
            data.extend_from_slice(b"Return-Path: <sender@example.test>\r\n");
            for l in raw.split_inclusive(|b| *b == b'\n') {
                if l.starts_with(b".") {
                    data.push(b'.');
                }
                data.extend_from_slice(l);
            }
            if !data.ends_with(b"\r\n") {
                data.extend_from_slice(b"\r\n");
            }
            data.extend_from_slice(b".\r\n");
            w.write_all(&data).unwrap();
            expect(&mut reader, "250");
        }
        w.write_all(b"QUIT\r\n").unwrap();
    }
}

/// A stack started by one test; `down` when dropped.
pub(crate) struct OwnStack {
    pub stack: Stack,
    dir: PathBuf,
}

impl std::ops::Deref for OwnStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack"))
            .arg("down")
            .env("MAILSTACK_DIR", &self.dir)
            .output();
    }
}

/// A `mailroom run` child process, killed when dropped.
pub(crate) struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    pub(crate) fn start(config: &Path) -> Daemon {
        Self::start_with_env(config, &[])
    }

    pub(crate) fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = config.with_file_name("daemon.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", TRACE)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("mailroom run starts");
        Daemon { child, log }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (with a deadline) for the exit status; then checks the whole log
    /// for personal data.
    pub(crate) fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success();
        assert!(ok, "kill -TERM {pid}");
        let status = wait_for("mailroom to exit after SIGTERM", deadline, || self.child.try_wait().unwrap());
        assert_no_personal_data(&self.log_text(), "mailroom run");
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mailroom status --json` for a config.
pub(crate) fn status_json(config: &Path) -> serde_json::Value {
    let out = mailroom(&["status", "--json", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file below `root`, relative and sorted.
pub(crate) fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

impl Stack {
    /// A fresh folder of contact@ and a config (implicit TLS on both sides) watching it:
    /// `(folder, the address that delivers into it, config path)`.
    pub(crate) fn contact_folder_config(&self, dir: &Path, prefix: &str, extra: &str) -> (String, String, PathBuf) {
        let folder = self.fresh_folder("contact@example.test", prefix);
        let to = format!("contact+{folder}@example.test");
        let config = write_config(
            dir,
            &self.imap_lines("contact@example.test", &folder, false),
            &self.smtp_lines("contact@example.test", false),
            extra,
        );
        (folder, to, config)
    }
}

/// Under CI (`CI=true`), a test that cannot reach what it needs fails instead of skipping.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A mount made by a test (tmpfs, or a read-only bind), unmounted when dropped. The tests run as
/// root, as `scripts/test` does; elsewhere they say SKIPPED, and under CI they fail.
pub(crate) struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("mount").args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    /// `None` (SKIPPED) when this machine does not let us mount; a failure under CI.
    fn or_skip(result: Result<(), String>, at: &Path) -> Option<Mount> {
        match result {
            Ok(()) => Some(Mount(at.to_owned())),
            Err(e) if in_ci() => panic!("CI=true but the test cannot mount at {}: {e}", at.display()),
            Err(e) => {
                eprintln!("SKIPPED: cannot mount (run as root, as scripts/test does): {e}");
                None
            }
        }
    }

    pub(crate) fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        Self::or_skip(
            Self::run(&["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs", at.to_str().unwrap()]),
            at,
        )
    }

    pub(crate) fn read_only_bind(at: &Path) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let p = at.to_str().unwrap();
        Self::or_skip(Self::run(&["--bind", p, p]).and_then(|()| Self::run(&["-o", "remount,bind,ro", p])), at)
    }

    pub(crate) fn resize(&self, size: &str) {
        Self::run(&["-o", &format!("remount,size={size}"), self.0.to_str().unwrap()]).unwrap();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
