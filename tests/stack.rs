//! The private test stack itself (`scripts/mailstack`): the servers later tests rely on answer
//! as documented. clamd finds the stack's two signatures over its unix socket and its TCP port;
//! the WebDAV server takes authenticated writes over TLS with the stack's CA and refuses a wrong
//! password; Dovecot (IMAP) and Postfix (submission, through Dovecot SASL) accept an OAuth2
//! bearer token minted here with the exported key, and refuse an expired one with the SASL error
//! challenge.
//!
//! Run through `scripts/test`, which exports the `MAILSTACK_*` facts. Without them these tests
//! print SKIPPED; under `CI=true` a missing fact is a failure.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Stack, application_eml};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The stack, if it exports every fact in `keys` (older stacks lack the newer servers).
fn stack_with(keys: &[&str]) -> Option<Stack> {
    let stack = Stack::get()?;
    let missing: Vec<&str> = keys.iter().copied().filter(|k| !stack.vars.contains_key(*k)).collect();
    if missing.is_empty() {
        return Some(stack);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true but the mail stack does not export {missing:?}: run `scripts/mailstack down` and `up` again");
    }
    eprintln!("SKIPPED: the mail stack does not export {missing:?} (restart it: scripts/mailstack down; up)");
    None
}

fn b64(bytes: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let v =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for j in 0..=chunk.len() {
            out.push(table[(v >> (18 - 6 * j) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

fn b64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => panic!("not base64: {text:?}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::new();
    for group in digits.chunks(4) {
        let mut v = 0u32;
        for (i, d) in group.iter().enumerate() {
            v |= (*d as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&v.to_be_bytes()[1..group.len()]);
    }
    out
}

/// A TLS client connection trusting only the stack's CA (not the system roots).
fn tls(stack: &Stack, host: &str, port: u16) -> BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(stack.ca()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect((host, port)).unwrap_or_else(|e| panic!("connect {host}:{port}: {e}"));
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    BufReader::new(rustls::StreamOwned::new(conn, tcp))
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

// ------------------------------------------------------------------ clamd ---

/// The standard EICAR test string, assembled at run time so this file does not match it.
fn eicar() -> Vec<u8> {
    [&b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$"[..], b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"].concat()
}

fn clamd_reply(mut s: impl Read + Write) -> String {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    // z-commands answer one NUL-terminated line.
    while s.read(&mut byte).unwrap() == 1 && byte[0] != 0 {
        reply.push(byte[0]);
    }
    String::from_utf8(reply).unwrap()
}

fn clamd_ping(mut s: impl Read + Write) -> String {
    s.write_all(b"zPING\0").unwrap();
    clamd_reply(s)
}

/// INSTREAM: the data in length-prefixed chunks (two, to exercise the framing), then length 0.
fn clamd_scan(mut s: impl Read + Write, data: &[u8]) -> String {
    s.write_all(b"zINSTREAM\0").unwrap();
    let (a, b) = data.split_at(data.len() / 2);
    for chunk in [a, b, &[][..]] {
        s.write_all(&(chunk.len() as u32).to_be_bytes()).unwrap();
        s.write_all(chunk).unwrap();
    }
    clamd_reply(s)
}

enum Clamd {
    Socket(String),
    Tcp(String),
}

impl Clamd {
    fn all(stack: &Stack) -> [Clamd; 2] {
        [
            Clamd::Socket(stack.var("MAILSTACK_CLAMD_SOCKET").to_owned()),
            Clamd::Tcp(stack.var("MAILSTACK_CLAMD_TCP").to_owned()),
        ]
    }

    fn with<T>(&self, f: impl FnOnce(&mut dyn ReadWrite) -> T) -> T {
        match self {
            Clamd::Socket(path) => {
                let mut s = UnixStream::connect(path).unwrap_or_else(|e| panic!("clamd socket {path}: {e}"));
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                f(&mut s)
            }
            Clamd::Tcp(addr) => {
                let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("clamd tcp {addr}: {e}"));
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                f(&mut s)
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            Clamd::Socket(p) | Clamd::Tcp(p) => p,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

const CLAMD_VARS: &[&str] = &[
    "MAILSTACK_CLAMD_SOCKET",
    "MAILSTACK_CLAMD_TCP",
    "MAILSTACK_CLAMD_EICAR_SIGNATURE",
    "MAILSTACK_CLAMD_CUSTOM_SIGNATURE",
];

#[test]
fn clamd_answers_ping_on_its_socket_and_its_tcp_port() {
    let Some(stack) = stack_with(CLAMD_VARS) else { return };
    for clamd in Clamd::all(&stack) {
        assert_eq!(clamd.with(|s| clamd_ping(s)), "PONG", "{}", clamd.name());
    }
}

#[test]
fn clamd_finds_eicar_and_the_custom_signature_and_passes_a_clean_file() {
    let Some(stack) = stack_with(CLAMD_VARS) else { return };
    let eicar_sig = stack.var("MAILSTACK_CLAMD_EICAR_SIGNATURE");
    let custom_sig = stack.var("MAILSTACK_CLAMD_CUSTOM_SIGNATURE");
    assert!(eicar_sig.contains("Eicar"), "{eicar_sig}");
    assert!(custom_sig.starts_with("Mailroom.Test.Custom"), "{custom_sig}");
    // The documented marker, split so this file does not carry it whole.
    let marker = ["MAILROOM-TEST-", "VIRUS-7d1c5a"].concat();
    let custom = format!("%PDF-1.4\n% a CV that carries {marker} in the middle\n%%EOF\n").into_bytes();
    let clean = b"%PDF-1.4\n% a clean CV: MAILROOM-TEST-VIRUS (no tag)\n%%EOF\n".to_vec();
    // EICAR as a mail attachment (base64 in MIME): clamd decodes mail before matching.
    let mail = application_eml(
        "alice@example.test",
        "contact@example.test",
        "Candidature",
        "clamd-test@example.test",
        &[],
        "Bonjour",
        &[("cv.pdf", "application/pdf", &eicar())],
    );
    for clamd in Clamd::all(&stack) {
        let at = clamd.name().to_owned();
        assert_eq!(clamd.with(|s| clamd_scan(s, &eicar())), format!("stream: {eicar_sig} FOUND"), "{at}");
        assert_eq!(clamd.with(|s| clamd_scan(s, &custom)), format!("stream: {custom_sig} FOUND"), "{at}");
        assert_eq!(clamd.with(|s| clamd_scan(s, &clean)), "stream: OK", "{at}");
        assert_eq!(clamd.with(|s| clamd_scan(s, &mail)), format!("stream: {eicar_sig} FOUND"), "{at}");
    }
}

// ----------------------------------------------------------------- WebDAV ---

const WEBDAV_VARS: &[&str] =
    &["MAILSTACK_WEBDAV_URL", "MAILSTACK_WEBDAV_USER", "MAILSTACK_WEBDAV_PASSWORD", "MAILSTACK_WEBDAV_DIR"];

struct Dav {
    host: String,
    port: u16,
    /// The DAV root's path, with its trailing slash.
    root: String,
}

impl Dav {
    fn new(stack: &Stack) -> Dav {
        let url = stack.var("MAILSTACK_WEBDAV_URL");
        let rest = url.strip_prefix("https://").unwrap_or_else(|| panic!("not an https URL: {url}"));
        let (authority, path) = rest.split_at(rest.find('/').unwrap());
        let (host, port) = authority.rsplit_once(':').unwrap();
        assert!(path.ends_with('/'), "{url} lacks its trailing slash");
        Dav { host: host.to_owned(), port: port.parse().unwrap(), root: path.to_owned() }
    }

    /// One request (connection: close); the status code and the body.
    fn request(
        &self,
        stack: &Stack,
        method: &str,
        path: &str,
        auth: (&str, &str),
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut conn = tls(stack, &self.host, self.port);
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.root,
            self.host,
            self.port,
            b64(format!("{}:{}", auth.0, auth.1).as_bytes(), false),
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let stream = conn.get_mut();
        stream.write_all(req.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        stream.flush().unwrap();
        let mut response = Vec::new();
        // Apache may close without close_notify after a complete response.
        if let Err(e) = conn.read_to_end(&mut response) {
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{method} {path}: {e}");
        }
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{text:?}"));
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos())
}

#[test]
fn webdav_takes_put_mkcol_move_propfind_delete_over_tls_with_the_stack_ca() {
    let Some(stack) = stack_with(WEBDAV_VARS) else { return };
    let dav = Dav::new(&stack);
    let auth = (stack.var("MAILSTACK_WEBDAV_USER"), stack.var("MAILSTACK_WEBDAV_PASSWORD"));
    let dir = std::path::Path::new(stack.var("MAILSTACK_WEBDAV_DIR"));
    let folder = unique("stack-test");
    let content = b"%PDF-1.4\n% CV\n%%EOF\n";

    assert_eq!(dav.request(&stack, "PUT", "upload.part", auth, &[], content).0, 201, "PUT");
    assert_eq!(std::fs::read(dir.join("upload.part")).unwrap(), content, "PUT lands in MAILSTACK_WEBDAV_DIR");
    assert_eq!(dav.request(&stack, "MKCOL", &folder, auth, &[], b"").0, 201, "MKCOL");
    let destination = format!("https://{}:{}{}{folder}/cv.pdf", dav.host, dav.port, dav.root);
    let moved =
        dav.request(&stack, "MOVE", "upload.part", auth, &[("Destination", &destination), ("Overwrite", "T")], b"");
    assert_eq!(moved.0, 201, "MOVE");
    assert_eq!(std::fs::read(dir.join(&folder).join("cv.pdf")).unwrap(), content);
    assert!(!dir.join("upload.part").exists(), "MOVE removes the source");
    let (status, listing) = dav.request(&stack, "PROPFIND", &format!("{folder}/"), auth, &[("Depth", "1")], b"");
    assert_eq!(status, 207, "PROPFIND");
    assert!(listing.contains(&format!("{folder}/cv.pdf")), "{listing}");
    assert_eq!(dav.request(&stack, "DELETE", &format!("{folder}/"), auth, &[], b"").0, 204, "DELETE");
    assert!(!dir.join(&folder).exists());
}

#[test]
fn webdav_refuses_a_wrong_password() {
    let Some(stack) = stack_with(WEBDAV_VARS) else { return };
    let dav = Dav::new(&stack);
    let name = unique("refused");
    let (status, _) = dav.request(&stack, "PUT", &name, (stack.var("MAILSTACK_WEBDAV_USER"), "wrong"), &[], b"x");
    assert_eq!(status, 401);
    assert!(!std::path::Path::new(stack.var("MAILSTACK_WEBDAV_DIR")).join(&name).exists());
}

// ----------------------------------------------------------------- OAuth2 ---

const OAUTH2_VARS: &[&str] = &[
    "MAILSTACK_OAUTH2_KEY_FILE",
    "MAILSTACK_OAUTH2_ALG",
    "MAILSTACK_OAUTH2_KID",
    "MAILSTACK_OAUTH2_ISSUER",
    "MAILSTACK_OAUTH2_CLIENT_ID",
    "MAILSTACK_OAUTH2_SCOPE",
    "MAILSTACK_OAUTH2_USERNAME_CLAIM",
];

const USER: &str = "contact@example.test";

/// Plays the identity provider: an HS256 JWT for `user`, valid from now for `secs` seconds
/// (negative: expired that long ago).
fn mint(stack: &Stack, user: &str, secs: i64) -> String {
    assert_eq!(stack.var("MAILSTACK_OAUTH2_ALG"), "HS256");
    let key = std::fs::read(stack.var("MAILSTACK_OAUTH2_KEY_FILE")).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let exp = now + secs;
    let iat = now.min(exp);
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": stack.var("MAILSTACK_OAUTH2_KID")});
    let mut claims = serde_json::json!({
        "iss": stack.var("MAILSTACK_OAUTH2_ISSUER"),
        "sub": user,
        "azp": stack.var("MAILSTACK_OAUTH2_CLIENT_ID"),
        "scope": stack.var("MAILSTACK_OAUTH2_SCOPE"),
        "iat": iat,
        "exp": exp,
    });
    claims[stack.var("MAILSTACK_OAUTH2_USERNAME_CLAIM")] = user.into();
    let input = format!("{}.{}", b64(header.to_string().as_bytes(), true), b64(claims.to_string().as_bytes(), true));
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref(), true))
}

fn xoauth2(user: &str, token: &str) -> String {
    b64(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes(), false)
}

fn oauthbearer(user: &str, token: &str) -> String {
    b64(format!("n,a={user},\x01auth=Bearer {token}\x01\x01").as_bytes(), false)
}

/// IMAP AUTHENTICATE over implicit TLS: `Ok(())` on OK, `Err(the SASL error challenge)` on a
/// refusal (after answering it with the empty response, as RFC 7628 asks).
fn imap_auth(stack: &Stack, mechanism: &str, initial: &str) -> Result<(), String> {
    let mut c = tls(stack, "localhost", stack.port("MAILSTACK_IMAPS_PORT"));
    let greeting = read_line(&mut c);
    assert!(greeting.starts_with("* OK") && greeting.contains(&format!("AUTH={mechanism}")), "{greeting}");
    c.get_mut().write_all(format!("a AUTHENTICATE {mechanism} {initial}\r\n").as_bytes()).unwrap();
    let line = read_line(&mut c);
    if line.starts_with("a OK") {
        return Ok(());
    }
    let challenge = line.strip_prefix("+ ").unwrap_or_else(|| panic!("neither OK nor a challenge: {line}"));
    let challenge = String::from_utf8(b64_decode(challenge)).unwrap();
    c.get_mut().write_all(b"\r\n").unwrap();
    let end = read_line(&mut c);
    assert!(end.starts_with("a NO"), "{end}");
    Err(challenge)
}

/// SMTP AUTH on submissions (implicit TLS; Postfix asks Dovecot): as [`imap_auth`].
fn smtp_auth(stack: &Stack, mechanism: &str, initial: &str) -> Result<(), String> {
    let mut c = tls(stack, "localhost", stack.port("MAILSTACK_SUBMISSIONS_PORT"));
    assert!(read_line(&mut c).starts_with("220 "));
    c.get_mut().write_all(b"EHLO tests.example.test\r\n").unwrap();
    let mut auth_line = String::new();
    loop {
        let line = read_line(&mut c);
        assert!(line.starts_with("250"), "{line}");
        if line[4..].starts_with("AUTH ") {
            auth_line = line.clone();
        }
        if line.as_bytes()[3] == b' ' {
            break;
        }
    }
    assert!(auth_line.split_whitespace().any(|m| m == mechanism), "{mechanism} not offered: {auth_line:?}");
    c.get_mut().write_all(format!("AUTH {mechanism} {initial}\r\n").as_bytes()).unwrap();
    let line = read_line(&mut c);
    if line.starts_with("235 ") {
        return Ok(());
    }
    let challenge = line.strip_prefix("334 ").unwrap_or_else(|| panic!("neither 235 nor a challenge: {line}"));
    let challenge = String::from_utf8(b64_decode(challenge)).unwrap();
    c.get_mut().write_all(b"\r\n").unwrap();
    let end = read_line(&mut c);
    assert!(end.starts_with("535 "), "{end}");
    Err(challenge)
}

fn status_of(challenge: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(challenge).unwrap_or_else(|e| panic!("{challenge:?}: {e}"));
    v["status"].as_str().unwrap_or_else(|| panic!("no status in {challenge}")).to_owned()
}

#[test]
fn dovecot_takes_a_minted_token_over_imap_and_refuses_an_expired_one() {
    let Some(stack) = stack_with(OAUTH2_VARS) else { return };
    let valid = mint(&stack, USER, 600);
    let expired = mint(&stack, USER, -60);
    assert_eq!(imap_auth(&stack, "XOAUTH2", &xoauth2(USER, &valid)), Ok(()));
    assert_eq!(imap_auth(&stack, "OAUTHBEARER", &oauthbearer(USER, &valid)), Ok(()));

    let refused = imap_auth(&stack, "XOAUTH2", &xoauth2(USER, &expired)).unwrap_err();
    assert_eq!(status_of(&refused), "401", "{refused}");
    let refused = imap_auth(&stack, "OAUTHBEARER", &oauthbearer(USER, &expired)).unwrap_err();
    assert_eq!(status_of(&refused), "invalid_token", "{refused}");
    // A token names its user: it does not open another mailbox.
    assert!(imap_auth(&stack, "XOAUTH2", &xoauth2("team@example.test", &valid)).is_err());
    // Passwords keep working next to tokens.
    let plain = b64(format!("\0{USER}\0{}", stack.password()).as_bytes(), false);
    assert_eq!(imap_auth(&stack, "PLAIN", &plain), Ok(()));
}

#[test]
fn postfix_submission_takes_a_minted_token_and_refuses_an_expired_one() {
    let Some(stack) = stack_with(OAUTH2_VARS) else { return };
    let valid = mint(&stack, USER, 600);
    assert_eq!(smtp_auth(&stack, "XOAUTH2", &xoauth2(USER, &valid)), Ok(()));
    assert_eq!(smtp_auth(&stack, "OAUTHBEARER", &oauthbearer(USER, &valid)), Ok(()));
    let refused = smtp_auth(&stack, "XOAUTH2", &xoauth2(USER, &mint(&stack, USER, -60))).unwrap_err();
    assert_eq!(status_of(&refused), "401", "{refused}");
}

#[test]
fn mailstack_token_prints_a_token_dovecot_takes() {
    let Some(stack) = stack_with(OAUTH2_VARS) else { return };
    let run = |secs: &str| {
        let out =
            std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack"))
                .args(["token", "contact", secs])
                .env("MAILSTACK_DIR", stack.var("MAILSTACK_DIR"))
                .output()
                .expect("scripts/mailstack runs");
        assert!(out.status.success(), "mailstack token: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(imap_auth(&stack, "XOAUTH2", &xoauth2(USER, &run("300"))), Ok(()));
    assert!(imap_auth(&stack, "XOAUTH2", &xoauth2(USER, &run("-5"))).is_err());
}

// ------------------------------------------------------------ freeze/thaw ---

fn mailstack(stack: &Stack, args: &[&str]) -> std::process::Output {
    std::process::Command::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack"))
        .args(args)
        .env("MAILSTACK_DIR", stack.var("MAILSTACK_DIR"))
        .output()
        .expect("scripts/mailstack runs")
}

/// `freeze` leaves the port open but nobody answers (a hung server, not a dead one); `thaw` lets
/// the very same connection go on; `down` stops a frozen stack. On a stack of its own, since a
/// frozen Dovecot would stall the other tests.
#[test]
fn freeze_hangs_a_server_thaw_resumes_it_and_down_stops_a_frozen_stack() {
    let Some(stack) = Stack::own("freeze") else { return };
    let port = stack.port("MAILSTACK_IMAP_PORT");
    let out = mailstack(&stack, &["freeze", "dovecot"]);
    assert!(out.status.success(), "freeze: {}", String::from_utf8_lossy(&out.stderr));
    let status = mailstack(&stack, &["status"]);
    assert!(!status.status.success(), "status must fail while a server is frozen");
    assert!(String::from_utf8_lossy(&status.stderr).contains("dovecot: FROZEN"));

    let conn = TcpStream::connect(("127.0.0.1", port)).expect("the kernel still accepts the connection");
    // Proving an absence needs a bounded wait: no greeting within a second.
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut reader = BufReader::new(conn);
    let mut greeting = String::new();
    let err = reader.read_line(&mut greeting).expect_err("a frozen Dovecot sends no greeting");
    assert!(matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{err}");

    let out = mailstack(&stack, &["thaw", "dovecot"]);
    assert!(out.status.success(), "thaw: {}", String::from_utf8_lossy(&out.stderr));
    reader.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    greeting.clear();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting:?}");

    assert!(mailstack(&stack, &["freeze", "postfix"]).status.success());
    let down = mailstack(&stack, &["down"]);
    assert!(down.status.success(), "down of a frozen stack: {}", String::from_utf8_lossy(&down.stderr));
    for key in ["MAILSTACK_IMAP_PORT", "MAILSTACK_SMTP_PORT"] {
        assert!(TcpStream::connect(("127.0.0.1", stack.port(key))).is_err(), "{key} still listens after down");
    }
    let clamd = stack.var("MAILSTACK_CLAMD_TCP");
    assert!(TcpStream::connect(clamd).is_err(), "clamd {clamd} still listens after down");
}
