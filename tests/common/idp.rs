//! A test identity provider: an OAuth2 authorization server on loopback that mints the JWTs the
//! mail stack's Dovecot accepts (HS256 with `MAILSTACK_OAUTH2_KEY_FILE`, the claims the README's
//! "Mail stack" section lists).
//!
//! It speaks what mailroom's flows need: client credentials, refresh (rotating the refresh token
//! and refusing a spent one with `invalid_grant`), the authorization code with PKCE (S256), and
//! the device code; and it can be told to misbehave: answer `invalid_grant`, a 5xx, or slowly.
//! Every request is recorded (when, which grant, what it answered), and every token it ever
//! issued is kept, so a test can grep logs and state for them.
//!
//! HTTPS with the stack's own server certificate when a stack is there (`Idp::start`), plain
//! HTTP on loopback otherwise (`Idp::start_plain`, which mailroom allows on loopback only).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Stack;

/// How the token endpoint misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Misbehave {
    /// `{"error":"invalid_grant", …}` with a Microsoft-style description.
    InvalidGrant,
    /// An HTML error page with this status.
    Status(u16),
    /// Answers correctly, after this long.
    Slow(Duration),
}

/// One request to the token endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub at: Instant,
    pub grant: String,
    /// `ok`, `invalid_grant`, `invalid_client`, `http_503`, `authorization_pending`, …
    pub outcome: String,
    /// The refresh token presented, for a refresh.
    pub refresh_presented: Option<String>,
    /// Whether a new refresh token was issued in place of the presented one.
    pub rotated: bool,
}

/// What the provider's tokens say and how it behaves.
#[derive(Debug, Clone)]
pub(crate) struct IdpSettings {
    pub key: Vec<u8>,
    pub kid: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    pub username_claim: String,
    /// Whose mailbox its tokens open.
    pub user: String,
    /// `expires_in` of access tokens.
    pub lifetime_secs: i64,
    /// Added to the JWT's `exp` (negative: a token Dovecot refuses while `expires_in` says it is good).
    pub exp_skew_secs: i64,
    pub rotate: bool,
}

#[derive(Default)]
struct State {
    misbehave: Option<Misbehave>,
    events: Vec<Event>,
    issued: Vec<String>,
    /// Valid refresh tokens.
    refresh: Vec<String>,
    /// code → (PKCE challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    /// device_code → approved
    devices: HashMap<String, bool>,
    seq: u64,
}

pub(crate) struct Idp {
    pub base: String,
    pub settings: Arc<Mutex<IdpSettings>>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Idp {
    /// Over HTTPS with the stack's certificate (its leaf key sits beside the CA file).
    pub(crate) fn start(stack: &Stack, user: &str) -> Idp {
        let ca_dir = Path::new(stack.ca()).parent().unwrap().to_owned();
        let tls = server_tls(&ca_dir.join("server.pem"), &ca_dir.join("server.key"));
        Self::spawn(settings_for(stack, user), Some(tls))
    }

    /// Over plain HTTP on loopback, with a key of its own (no Dovecot will check its tokens).
    pub(crate) fn start_plain(user: &str) -> Idp {
        let settings = IdpSettings {
            key: b"a test key that no server checks".to_vec(),
            kid: "test-1".into(),
            issuer: "https://idp.example.test".into(),
            client_id: "mailroom".into(),
            client_secret: format!("client-secret-{}", unique()),
            scope: "mail".into(),
            username_claim: "email".into(),
            user: user.into(),
            lifetime_secs: 3600,
            exp_skew_secs: 0,
            rotate: true,
        };
        Self::spawn(settings, None)
    }

    fn spawn(settings: IdpSettings, tls: Option<Arc<rustls::ServerConfig>>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let idp = Idp {
            base: format!("{scheme}://localhost:{port}"),
            settings: Arc::new(Mutex::new(settings)),
            state: Arc::new(Mutex::new(State::default())),
            stop: Arc::new(AtomicBool::new(false)),
            port,
        };
        let (settings, state, stop) = (Arc::clone(&idp.settings), Arc::clone(&idp.state), Arc::clone(&idp.stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = conn else { continue };
                let (settings, state, tls) = (Arc::clone(&settings), Arc::clone(&state), tls.clone());
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                    match tls {
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                            let mut stream = rustls::StreamOwned::new(conn, tcp);
                            serve(&mut stream, &settings, &state);
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                        }
                        None => {
                            let mut tcp = tcp;
                            serve(&mut tcp, &settings, &state);
                        }
                    }
                });
            }
        });
        idp
    }

    pub(crate) fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    pub(crate) fn misbehave(&self, how: Option<Misbehave>) {
        self.state.lock().unwrap().misbehave = how;
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.state.lock().unwrap().events.clone()
    }

    /// Every token and code it ever handed out.
    pub(crate) fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// The refresh tokens it would still accept.
    pub(crate) fn valid_refresh_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().refresh.clone()
    }

    /// Revokes every refresh token: the next refresh gets `invalid_grant`.
    pub(crate) fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh.clear();
    }

    /// The person typed the code and signed in.
    pub(crate) fn approve_devices(&self) {
        for approved in self.state.lock().unwrap().devices.values_mut() {
            *approved = true;
        }
    }

    pub(crate) fn client_secret(&self) -> String {
        self.settings.lock().unwrap().client_secret.clone()
    }

    /// Writes the client secret into `dir` and returns the `[oauth2]` section for `flow`.
    pub(crate) fn oauth2_section(&self, dir: &Path, flow: &str, ca: Option<&str>, extra: &str) -> String {
        let s = self.settings.lock().unwrap();
        let secret = dir.join("client-secret");
        std::fs::write(&secret, format!("{}\n", s.client_secret)).unwrap();
        let ca = ca.map(|c| format!("ca_file = \"{c}\"\n")).unwrap_or_default();
        format!(
            "[oauth2]\nprovider = \"custom\"\nflow = \"{flow}\"\nclient_id = \"{}\"\nclient_secret_file = \"{}\"\n\
             token_url = \"{}/token\"\nauthorization_url = \"{}/authorize\"\ndevice_authorization_url = \"{}/device\"\n\
             scopes = [\"{}\"]\n{ca}{extra}\n",
            s.client_id,
            secret.display(),
            self.base,
            self.base,
            self.base,
            s.scope
        )
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn settings_for(stack: &Stack, user: &str) -> IdpSettings {
    assert_eq!(stack.var("MAILSTACK_OAUTH2_ALG"), "HS256");
    IdpSettings {
        key: std::fs::read(stack.var("MAILSTACK_OAUTH2_KEY_FILE")).unwrap(),
        kid: stack.var("MAILSTACK_OAUTH2_KID").into(),
        issuer: stack.var("MAILSTACK_OAUTH2_ISSUER").into(),
        client_id: stack.var("MAILSTACK_OAUTH2_CLIENT_ID").into(),
        client_secret: format!("client-secret-{}", unique()),
        scope: stack.var("MAILSTACK_OAUTH2_SCOPE").into(),
        username_claim: stack.var("MAILSTACK_OAUTH2_USERNAME_CLAIM").into(),
        user: user.into(),
        lifetime_secs: 3600,
        exp_skew_secs: 0,
        rotate: true,
    }
}

fn server_tls(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap_or_else(|e| panic!("the stack's certificate {}: {e}", cert.display()))
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("the stack's key {}: {e}", key.display()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

pub(crate) fn unique() -> String {
    format!("{}{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos())
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let v =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for j in 0..=chunk.len() {
            out.push(T[(v >> (18 - 6 * j) & 63) as usize] as char);
        }
    }
    out
}

fn b64_std_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        _ => 63,
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

/// An HS256 JWT that the stack's Dovecot accepts for `user` until `exp`.
fn mint(s: &IdpSettings, seq: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let exp = now + s.lifetime_secs + s.exp_skew_secs;
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": s.kid});
    let mut claims = serde_json::json!({
        "iss": s.issuer, "sub": s.user, "azp": s.client_id, "scope": s.scope,
        "iat": now.min(exp), "exp": exp, "jti": format!("{}-{seq}", unique()),
    });
    claims[s.username_claim.as_str()] = s.user.clone().into();
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &s.key), input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

struct Request {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut first = line.split_whitespace();
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, target, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn respond(stream: &mut impl Write, status: &str, headers: &[(&str, String)], body: &str) {
    let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}

fn json(stream: &mut impl Write, status: &str, value: serde_json::Value) {
    respond(stream, status, &[("Content-Type", "application/json".into())], &value.to_string());
}

fn serve<S: Read + Write>(stream: &mut S, settings: &Mutex<IdpSettings>, state: &Mutex<State>) {
    let Some(req) = read_request(stream) else { return };
    let (path, query) = req.target.split_once('?').unwrap_or((req.target.as_str(), ""));
    match (req.method.as_str(), path) {
        ("GET", "/authorize") => authorize(stream, &form(query), settings, state),
        ("POST", "/device") => device(stream, &req, settings, state),
        ("POST", "/token") => token(stream, &req, settings, state),
        _ => respond(stream, "404 Not Found", &[], "not here"),
    }
}

fn authorize<S: Write>(
    stream: &mut S,
    q: &HashMap<String, String>,
    settings: &Mutex<IdpSettings>,
    state: &Mutex<State>,
) {
    let s = settings.lock().unwrap().clone();
    let bad = |stream: &mut S, why: &str| respond(stream, "400 Bad Request", &[], why);
    if q.get("client_id") != Some(&s.client_id) || q.get("response_type").map(String::as_str) != Some("code") {
        return bad(stream, "unknown client or response type");
    }
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return bad(stream, "PKCE S256 required");
    }
    let (Some(challenge), Some(redirect), Some(st)) = (q.get("code_challenge"), q.get("redirect_uri"), q.get("state"))
    else {
        return bad(stream, "missing parameter");
    };
    let code = format!("code-{}", unique());
    {
        let mut state = state.lock().unwrap();
        state.codes.insert(code.clone(), (challenge.clone(), redirect.clone()));
        state.issued.push(code.clone());
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!(
        "{redirect}{sep}code={code}&state={}",
        url::form_urlencoded::byte_serialize(st.as_bytes()).collect::<String>()
    );
    respond(stream, "302 Found", &[("Location", location)], "");
}

fn device(stream: &mut impl Write, req: &Request, settings: &Mutex<IdpSettings>, state: &Mutex<State>) {
    let s = settings.lock().unwrap().clone();
    let (id, _) = client_of(req, &form(&req.body));
    if id.as_deref() != Some(s.client_id.as_str()) {
        return json(stream, "400 Bad Request", serde_json::json!({"error": "invalid_client"}));
    }
    let device_code = format!("device-{}", unique());
    {
        let mut state = state.lock().unwrap();
        state.devices.insert(device_code.clone(), false);
        state.issued.push(device_code.clone());
    }
    json(
        stream,
        "200 OK",
        serde_json::json!({
            "device_code": device_code, "user_code": "WDJB-MJHT", "verification_uri": "https://idp.example.test/device",
            "expires_in": 600, "interval": 1,
        }),
    );
}

/// The client's id and secret: HTTP Basic or the form (RFC 6749 §2.3.1).
fn client_of(req: &Request, f: &HashMap<String, String>) -> (Option<String>, Option<String>) {
    match req.headers.get("authorization").and_then(|a| a.strip_prefix("Basic ")) {
        Some(b) => {
            let text = String::from_utf8(b64_std_decode(b)).unwrap_or_default();
            let (i, p) = text.split_once(':').unwrap_or_default();
            let dec =
                |v: &str| url::form_urlencoded::parse(format!("x={v}").as_bytes()).next().map(|(_, v)| v.into_owned());
            (dec(i), dec(p))
        }
        None => (f.get("client_id").cloned(), f.get("client_secret").cloned()),
    }
}

fn token<S: Write>(stream: &mut S, req: &Request, settings: &Mutex<IdpSettings>, state: &Mutex<State>) {
    let s = settings.lock().unwrap().clone();
    let f = form(&req.body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    let misbehave = state.lock().unwrap().misbehave.clone();
    let record = |outcome: &str, presented: Option<String>, rotated: bool| {
        state.lock().unwrap().events.push(Event {
            at: Instant::now(),
            grant: grant.clone(),
            outcome: outcome.into(),
            refresh_presented: presented,
            rotated,
        });
    };
    match misbehave {
        Some(Misbehave::Status(code)) => {
            record(&format!("http_{code}"), f.get("refresh_token").cloned(), false);
            let body = "<html><body><h1>Service Unavailable</h1></body></html>";
            return respond(
                stream,
                &format!("{code} Service Unavailable"),
                &[("Content-Type", "text/html".into())],
                body,
            );
        }
        Some(Misbehave::InvalidGrant) => {
            record("invalid_grant", f.get("refresh_token").cloned(), false);
            return json(
                stream,
                "400 Bad Request",
                serde_json::json!({"error": "invalid_grant", "error_description":
                    "AADSTS700082: The refresh token has expired due to inactivity. Trace ID: 1234 Correlation ID: 5678 Timestamp: 2026-01-01 00:00:00Z"}),
            );
        }
        Some(Misbehave::Slow(d)) => std::thread::sleep(d),
        None => {}
    }
    let (id, secret) = client_of(req, &f);
    if id.as_deref() != Some(s.client_id.as_str()) {
        record("invalid_client", None, false);
        return json(
            stream,
            "401 Unauthorized",
            serde_json::json!({"error": "invalid_client", "error_description": "unknown client"}),
        );
    }
    let secret_ok = secret.as_deref() == Some(s.client_secret.as_str());
    let mut st = state.lock().unwrap();
    st.seq += 1;
    let seq = st.seq;
    let mut refresh_presented = None;
    let mut rotated = false;
    let outcome: Result<bool, &str> = match grant.as_str() {
        "client_credentials" if secret_ok => Ok(false),
        "client_credentials" => Err("invalid_client"),
        "refresh_token" => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            refresh_presented = Some(rt.clone());
            match st.refresh.iter().position(|r| *r == rt) {
                Some(i) => {
                    if s.rotate {
                        st.refresh.remove(i);
                        rotated = true;
                        Ok(true)
                    } else {
                        Ok(false)
                    }
                }
                None => Err("invalid_grant"),
            }
        }
        "authorization_code" => {
            let code = f.get("code").cloned().unwrap_or_default();
            match st.codes.remove(&code) {
                Some((challenge, redirect)) => {
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    let computed = b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
                    if computed != challenge || f.get("redirect_uri") != Some(&redirect) {
                        Err("invalid_grant")
                    } else {
                        Ok(true)
                    }
                }
                None => Err("invalid_grant"),
            }
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            match st.devices.get(f.get("device_code").map(String::as_str).unwrap_or_default()) {
                Some(true) => Ok(true),
                Some(false) => Err("authorization_pending"),
                None => Err("invalid_grant"),
            }
        }
        _ => Err("unsupported_grant_type"),
    };
    match outcome {
        Ok(with_refresh) => {
            let access = mint(&s, seq);
            st.issued.push(access.clone());
            let mut answer = serde_json::json!({
                "access_token": access, "token_type": "Bearer", "expires_in": s.lifetime_secs, "scope": s.scope,
            });
            if with_refresh {
                let rt = format!("refresh-{}-{seq}", unique());
                st.refresh.push(rt.clone());
                st.issued.push(rt.clone());
                answer["refresh_token"] = rt.into();
            }
            drop(st);
            record("ok", refresh_presented, rotated);
            json(stream, "200 OK", answer);
        }
        Err(error) => {
            drop(st);
            record(error, refresh_presented, false);
            json(
                stream,
                "400 Bad Request",
                serde_json::json!({"error": error, "error_description": format!("test idp: {error}")}),
            );
        }
    }
}

/// What a browser does with an address: GET it (over TLS trusting `ca`, or plain on loopback),
/// and return the status and the `Location` it answers with.
pub(crate) fn browser_get(address: &str, ca: Option<&str>) -> (u16, Option<String>, String) {
    let url = url::Url::parse(address).unwrap();
    let host = url.host_str().unwrap().to_owned();
    let port = url.port_or_known_default().unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    let tcp = TcpStream::connect((host.as_str(), port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut response = Vec::new();
    if url.scheme() == "https" {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca.expect("a CA for https")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(host).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(request.as_bytes()).unwrap();
        let _ = s.read_to_end(&mut response);
    } else {
        let mut s = tcp;
        s.write_all(request.as_bytes()).unwrap();
        let _ = s.read_to_end(&mut response);
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .map(|l| l.trim().to_owned());
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, location, body)
}

/// Every file below `root` (for the grep of state and logs).
pub(crate) fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
