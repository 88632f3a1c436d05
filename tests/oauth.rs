//! OAuth2 on the real stack: mailroom against the stack's Dovecot (IMAP) and Postfix
//! (submission, SASL through Dovecot), which accept XOAUTH2 and OAUTHBEARER with a JWT they check
//! themselves, and against a test identity provider on loopback (`common::idp`) that mints those
//! JWTs and implements client credentials, refresh with rotation, the authorization code with
//! PKCE, the device code, `invalid_grant`, 5xx and slow answers.
//!
//! Each flow logs in to IMAP and SMTP and an application goes through and is acknowledged; a
//! token that expires during IDLE is renewed without losing a message; a rotated refresh token
//! survives kill -9; `invalid_grant` shows in status, notify and the digest and is retried with
//! backoff; no token or secret is found in logs or state. Run through `scripts/test` (SKIPPED
//! without a stack; a failure under CI=true).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::idp::{Idp, Misbehave, all_files, browser_get};
use common::{Daemon, Stack, application_eml, mailroom, pdf, status_json, wait_for, write_config};

const DEADLINE: Duration = Duration::from_secs(45);

fn unique_id(tag: &str) -> String {
    format!("{tag}.{}.{}@example.test", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap())
}

/// `[imap]` lines logging in with a token (IMAPS), for `user`'s `folder`.
fn imap_oauth(stack: &Stack, user: &str, folder: &str, extra: &str) -> String {
    format!(
        "host = \"localhost\"\nport = {}\ntls = \"implicit\"\nusername = \"{user}\"\nauth = \"oauth2\"\nca_file = \"{}\"\nfolder = \"{folder}\"\n{extra}",
        stack.port("MAILSTACK_IMAPS_PORT"),
        stack.ca()
    )
}

/// `[smtp]` lines logging in with a token (submission, STARTTLS).
fn smtp_oauth(stack: &Stack, user: &str) -> String {
    format!(
        "host = \"localhost\"\nport = {}\ntls = \"starttls\"\nusername = \"{user}\"\nauth = \"oauth2\"\nca_file = \"{}\"",
        stack.port("MAILSTACK_SUBMISSION_PORT"),
        stack.ca()
    )
}

/// A config for `user`'s fresh folder, both sides with tokens from `idp`'s `flow`.
fn oauth_config(
    stack: &Stack,
    idp: &Idp,
    dir: &Path,
    user: &str,
    flow: &str,
    imap_extra: &str,
    oauth_extra: &str,
) -> (String, PathBuf) {
    let folder = stack.fresh_folder(user, "oauth");
    let section = idp.oauth2_section(dir, flow, Some(stack.ca()), oauth_extra);
    let config = write_config(dir, &imap_oauth(stack, user, &folder, imap_extra), &smtp_oauth(stack, user), &section);
    (folder, config)
}

fn application(from: &str, name: &str, to: &str, id: &str) -> Vec<u8> {
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

/// A candidate applies to `user+folder@`; returns the Message-ID once it is in the folder.
fn apply(stack: &Stack, user: &str, folder: &str, candidate: &str) -> String {
    let id = unique_id("oauth");
    let (local, domain) = user.split_once('@').unwrap();
    let to = format!("{local}+{folder}@{domain}");
    let before = stack.count(user, folder);
    stack.submit(candidate, &[&to], &application(candidate, "Dora Lemaire", &to, &id));
    wait_for("delivery into the watched folder", DEADLINE, || (stack.count(user, folder) > before).then_some(()));
    id
}

fn acked(stack: &Stack, candidate: &str, id: &str) -> usize {
    stack.messages_with(candidate, "INBOX", "In-Reply-To", id).len()
}

fn once(config: &Path) -> String {
    let out = mailroom(&["once", "--config", config.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mailroom once failed: {}\n{text}", out.status);
    text
}

/// The whole job once: a first pass on the empty folder, an application, a pass that files and
/// acknowledges it. Returns everything the runs printed.
fn application_goes_through(stack: &Stack, config: &Path, user: &str, folder: &str, candidate: &str) -> String {
    let mut printed = once(config);
    let id = apply(stack, user, folder, candidate);
    let summary = once(config);
    assert!(summary.contains("fetched 1, filed 1"), "{summary}");
    assert!(summary.contains("sent 1"), "{summary}");
    wait_for("the acknowledgement in the candidate's mailbox", DEADLINE, || {
        (acked(stack, candidate, &id) == 1).then_some(())
    });
    printed.push_str(&summary);
    printed
}

/// `mailroom auth login` as a child: its standard output line by line, its standard input.
struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Login {
    fn start(config: &Path) -> Login {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["auth", "login", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mailroom auth login starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Login { child, lines, seen: Vec::new() }
    }

    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.seen.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = DEADLINE.checked_sub(start.elapsed()).unwrap_or_else(|| panic!("no {what} in {:#?}", self.seen));
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {what} in {:#?}", self.seen),
            }
        }
    }

    fn paste(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the exit; returns everything it printed.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = wait_for("mailroom auth login to exit", DEADLINE, || self.child.try_wait().unwrap());
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(l);
        }
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err);
        (status, format!("{}\n{err}", self.seen.join("\n")))
    }
}

/// Signs in with the authorization code, the redirect address pasted as on a headless server.
fn login_by_paste(idp: &Idp, config: &Path, ca: Option<&str>) -> String {
    let mut login = Login::start(config);
    let url = login.wait_line("the authorization URL", |l| l.starts_with(&format!("{}/authorize?", idp.base)));
    let (status, location, body) = browser_get(&url, ca);
    assert_eq!(status, 302, "the identity provider sends the browser back: {body}");
    let location = location.expect("a Location");
    // An address of another sign-in is not taken.
    login.paste("http://localhost/?code=forged&state=not-this-one");
    login.wait_line("the refusal of a foreign address", |l| l.contains("not the answer to this sign-in"));
    login.paste(&location);
    let (status, printed) = login.finish();
    assert!(status.success(), "auth login: {status}\n{printed}");
    assert!(printed.contains("Signed in"), "{printed}");
    printed
}

fn token_file(config: &Path) -> PathBuf {
    config.with_file_name("state").join("oauth2-tokens.json")
}

fn stored(config: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(token_file(config)).unwrap()).unwrap()
}

/// No token the identity provider ever issued, nor the client secret, in any log, any state
/// file (the SQLite database and its WAL), the data, or what the commands printed. The token
/// file is the one place tokens are kept (0600); even there the client secret is not.
fn assert_no_secrets(idp: &Idp, dir: &Path, printed: &[&str]) {
    let secret = idp.client_secret();
    let issued = idp.issued();
    assert!(!issued.is_empty(), "the identity provider issued nothing: the grep would prove nothing");
    let token_file = dir.join("state").join("oauth2-tokens.json");
    let mut looked = 0;
    for file in all_files(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        if file == token_file {
            assert!(!text.contains(&secret), "the client secret is in {}", file.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
            continue;
        }
        if file.file_name().is_some_and(|n| n == "client-secret") {
            continue;
        }
        looked += 1;
        assert!(!text.contains(&secret), "the client secret is in {}", file.display());
        for t in &issued {
            // The JWT's signature part is enough to identify it; a refresh token whole.
            let needle = t.rsplit('.').next().unwrap_or(t);
            assert!(!text.contains(needle), "an issued token is in {}", file.display());
        }
    }
    assert!(looked >= 2, "nothing was grepped in {}", dir.display());
    for p in printed {
        assert!(!p.contains(&secret), "the client secret was printed:\n{p}");
        for t in &issued {
            assert!(!p.contains(t.rsplit('.').next().unwrap_or(t)), "a token was printed:\n{p}");
        }
    }
}

fn notifications(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

fn wait_ready(config: &Path) {
    wait_for("the daemon's first pass", DEADLINE, || {
        if !config.with_file_name("state").join("mailroom.sqlite3").exists() {
            return None;
        }
        let s = status_json(config);
        s["mailboxes"].as_array().filter(|m| !m.is_empty() && !m[0]["last_contact"].is_null()).map(|_| ())
    });
}

fn grants_ok(idp: &Idp) -> usize {
    idp.events().iter().filter(|e| e.outcome == "ok").count()
}

// ------------------------------------------------------------------ flows ---

#[test]
fn client_credentials_flow_logs_in_to_imap_and_smtp_and_an_application_is_acknowledged() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "contact@example.test";
    let idp = Idp::start(&stack, user);
    let (folder, config) = oauth_config(&stack, &idp, dir.path(), user, "client_credentials", "", "");
    let printed = application_goes_through(&stack, &config, user, &folder, "alice@example.test");
    let events = idp.events();
    assert!(events.iter().all(|e| e.grant == "client_credentials" && e.outcome == "ok"), "{events:?}");
    // Two processes, two or three tokens at most: a token is reused while it is fresh.
    assert!((1..=3).contains(&events.len()), "{events:?}");
    let s = status_json(&config);
    assert_eq!(s["auth"]["state"], "ok", "{s}");
    let parts = s["auth"]["parts"].as_array().unwrap();
    let detail = |p: &str| parts.iter().find(|r| r["part"] == p).map(|r| r["detail"].as_str().unwrap_or("").to_owned());
    assert_eq!(detail("imap").as_deref(), Some("OAUTHBEARER"), "{s}");
    assert_eq!(detail("smtp").as_deref(), Some("XOAUTH2"), "{s}");
    assert_eq!(detail("provider").as_deref(), Some("custom client_credentials"), "{s}");
    let status_text =
        String::from_utf8_lossy(&mailroom(&["status", "--config", config.to_str().unwrap()]).stdout).into_owned();
    assert!(status_text.contains("auth             ok"), "{status_text}");
    assert_no_secrets(&idp, dir.path(), &[&printed, &status_text]);
}

#[test]
fn authorization_code_flow_by_pasted_address_logs_in_with_xoauth2_and_an_application_is_acknowledged() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "contact@example.test";
    let idp = Idp::start(&stack, user);
    let (folder, config) =
        oauth_config(&stack, &idp, dir.path(), user, "authorization_code", "", "mechanism = \"xoauth2\"\n");
    let printed_login = login_by_paste(&idp, &config, Some(stack.ca()));
    assert!(stored(&config)["refresh_token"].is_string());
    let printed = application_goes_through(&stack, &config, user, &folder, "bob@example.test");
    let s = status_json(&config);
    let imap = s["auth"]["parts"].as_array().unwrap().iter().find(|r| r["part"] == "imap").cloned().unwrap();
    assert_eq!(imap["detail"], "XOAUTH2", "{s}");
    assert_no_secrets(&idp, dir.path(), &[&printed, &printed_login]);
}

#[test]
fn device_code_flow_logs_in_and_an_application_is_acknowledged() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "contact@example.test";
    let idp = Idp::start(&stack, user);
    let (folder, config) = oauth_config(&stack, &idp, dir.path(), user, "device_code", "", "");
    let mut login = Login::start(&config);
    login.wait_line("the code to type", |l| l.contains("WDJB-MJHT"));
    idp.approve_devices();
    let (status, printed_login) = login.finish();
    assert!(status.success(), "{printed_login}");
    let printed = application_goes_through(&stack, &config, user, &folder, "erin@example.test");
    let grants: Vec<String> = idp.events().iter().map(|e| e.grant.clone()).collect();
    assert!(grants.iter().any(|g| g.ends_with("device_code")), "{grants:?}");
    assert_no_secrets(&idp, dir.path(), &[&printed, &printed_login]);
}

/// No stack needed: the browser comes back to the loopback listener of `mailroom auth login`.
#[test]
fn auth_login_takes_the_browser_back_on_its_loopback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start_plain("contact@example.test");
    let section = idp.oauth2_section(dir.path(), "authorization_code", None, "");
    let imap = "host = \"imap.example.test\"\nusername = \"contact@example.test\"\nauth = \"oauth2\"";
    let smtp = "host = \"smtp.example.test\"\nusername = \"contact@example.test\"\nauth = \"oauth2\"";
    let config = write_config(dir.path(), imap, smtp, &section);
    let mut login = Login::start(&config);
    let url = login.wait_line("the authorization URL", |l| l.starts_with(&format!("{}/authorize?", idp.base)));
    assert!(url.contains("code_challenge_method=S256") && url.contains("state="), "{url}");
    let (_, location, _) = browser_get(&url, None);
    let location = location.expect("redirected");
    assert!(location.starts_with("http://localhost:"), "{location}");
    let (status, _, page) = browser_get(&location, None);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("signed in"), "{page}");
    let (status, printed) = login.finish();
    assert!(status.success(), "{printed}");
    let file = token_file(&config);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(stored(&config)["refresh_token"].as_str(), idp.valid_refresh_tokens().first().map(String::as_str));
    assert_no_secrets(&idp, dir.path(), &[&printed]);
}

// --------------------------------------------------------- while running ---

/// Tokens that live 3 s: the daemon renews its IMAP session before each expires (and the
/// server dropping the session, as Exchange does at expiry, is survived too); every message
/// delivered meanwhile is filed and acknowledged exactly once.
#[test]
fn a_token_expiring_during_idle_is_renewed_and_no_message_is_lost() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A user no other test logs in as (nor writes as: the personal-data check of the logs is
    // shared by the tests of this file): `doveadm kick` below ends only this test's sessions.
    let user = "carol@example.test";
    let idp = Idp::start(&stack, user);
    idp.settings.lock().unwrap().lifetime_secs = 3;
    let (folder, config) =
        oauth_config(&stack, &idp, dir.path(), user, "client_credentials", "poll_interval_secs = 3600\n", "");
    let mut daemon = Daemon::start(&config);
    wait_ready(&config);
    let first = apply(&stack, user, &folder, "dave@example.test");
    wait_for("the first acknowledgement", DEADLINE, || (acked(&stack, "dave@example.test", &first) == 1).then_some(()));

    // Two renewals while IDLE: new tokens, new logins, no refusal.
    let logins = |d: &Daemon| d.log_text().matches("IMAP logged in").count();
    let (tokens0, logins0) = (grants_ok(&idp), logins(&daemon));
    wait_for("two renewals during IDLE", DEADLINE, || {
        (grants_ok(&idp) >= tokens0 + 2 && logins(&daemon) >= logins0 + 2).then_some(())
    });
    // A message that arrives just as a token is renewed.
    let tokens1 = grants_ok(&idp);
    wait_for("the next renewal", DEADLINE, || (grants_ok(&idp) > tokens1).then_some(()));
    // (Three candidates: an address is acknowledged at most once a day.)
    let second = apply(&stack, user, &folder, "erin@example.test");
    // The server ends the session (Exchange Online does when the token expires). doveadm exits
    // 68 when there was no session to end (the daemon between two sessions): try again.
    wait_for("the daemon's session to be kicked", DEADLINE, || {
        let out = Command::new("doveadm")
            .args(["-c", stack.var("MAILSTACK_DOVECOT_CONF"), "kick", user])
            .output()
            .expect("doveadm runs");
        out.status.success().then_some(())
    });
    let third = apply(&stack, user, &folder, "frank@example.test");
    for (candidate, id) in [("erin@example.test", &second), ("frank@example.test", &third)] {
        let start = Instant::now();
        while acked(&stack, candidate, id) != 1 {
            assert!(start.elapsed() < DEADLINE, "no acknowledgement after renewals; log:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let log = daemon.log_text();
    assert!(!log.contains("refused the access token"), "a token was used after it expired:\n{log}");
    assert!(!log.contains("authentication failing"), "{log}");
    let s = status_json(&config);
    assert_eq!(s["totals"]["filed"].as_u64(), Some(3), "{s}");
    assert_eq!(s["totals"]["duplicates"].as_u64(), Some(0), "{s}");
    assert_eq!(s["totals"]["outbox_sent"].as_u64(), Some(3), "{s}");
    for (candidate, id) in
        [("dave@example.test", &first), ("erin@example.test", &second), ("frank@example.test", &third)]
    {
        assert_eq!(acked(&stack, candidate, id), 1, "acknowledged once: {id}");
    }
    assert_no_secrets(&idp, dir.path(), &[]);
}

/// The refresh token rotates at every refresh; the daemon is killed with SIGKILL the moment it
/// says it has the new one (saved, and not yet used). The next start refreshes with the new
/// token, which the identity provider accepts (the old one it would refuse).
#[test]
fn a_rotated_refresh_token_survives_kill_9_right_after_rotation() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "contact@example.test";
    let idp = Idp::start(&stack, user);
    idp.settings.lock().unwrap().lifetime_secs = 3;
    let (folder, config) =
        oauth_config(&stack, &idp, dir.path(), user, "authorization_code", "poll_interval_secs = 3600\n", "");
    login_by_paste(&idp, &config, Some(stack.ca()));
    let first_refresh = stored(&config)["refresh_token"].as_str().unwrap().to_owned();

    let mut daemon = Daemon::start(&config);
    wait_for("a rotation, saved", DEADLINE, || {
        daemon
            .log_text()
            .lines()
            .any(|l| l.contains("access token obtained") && l.contains("rotated=true"))
            .then_some(())
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let kept = stored(&config)["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(kept, first_refresh, "the rotated refresh token was not saved before the kill");
    assert_eq!(idp.valid_refresh_tokens(), vec![kept.clone()], "the file holds the one token the provider accepts");

    let before = idp.events().len();
    let mut daemon = Daemon::start(&config);
    wait_ready(&config);
    let id = apply(&stack, user, &folder, "erin@example.test");
    wait_for("the acknowledgement after the restart", DEADLINE, || {
        (acked(&stack, "erin@example.test", &id) == 1).then_some(())
    });
    // The first refresh after the restart presents the saved token, and it is accepted.
    let after = wait_for("a refresh by the restarted daemon", DEADLINE, || {
        let after: Vec<_> = idp.events()[before..].to_vec();
        (!after.is_empty()).then_some(after)
    });
    assert_eq!(after[0].refresh_presented.as_deref(), Some(kept.as_str()), "{after:?}");
    assert!(after.iter().all(|e| e.outcome == "ok"), "{after:?}");
    daemon.terminate(Duration::from_secs(15));
    assert_no_secrets(&idp, dir.path(), &[]);
}

/// The refresh token is revoked: status, the notify status line and the digest say so with the
/// provider's code; the daemon retries with growing pauses, logs the failure once, and takes a
/// new sign-in at once.
#[test]
fn invalid_grant_shows_in_status_notify_and_digest_and_is_retried_with_backoff() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "contact@example.test";
    let idp = Idp::start(&stack, user);
    let (_folder, config) =
        oauth_config(&stack, &idp, dir.path(), user, "authorization_code", "poll_interval_secs = 3600\n", "");
    login_by_paste(&idp, &config, Some(stack.ca()));
    // The access token on disk has expired, and the refresh token is no longer accepted.
    let mut tokens = stored(&config);
    tokens["access_expires_at"] = "2020-01-01T00:00:00Z".into();
    tokens["access_obtained_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(token_file(&config), serde_json::to_vec(&tokens).unwrap()).unwrap();
    idp.misbehave(Some(Misbehave::InvalidGrant));

    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut daemon = Daemon::start_with_env(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    wait_for("status to say the provider refuses", DEADLINE, || {
        if !config.with_file_name("state").join("mailroom.sqlite3").exists() {
            return None;
        }
        let s = status_json(&config);
        (s["auth"]["state"] == "failing").then_some(s)
    });
    let mut seen = Vec::new();
    wait_for("STATUS= with invalid_grant", DEADLINE, || {
        seen.extend(notifications(&socket));
        seen.iter()
            .any(|m| {
                m.contains("STATUS=auth failing since") && m.contains("invalid_grant") && m.contains("AADSTS700082")
            })
            .then_some(())
    });
    let text =
        String::from_utf8_lossy(&mailroom(&["status", "--config", config.to_str().unwrap()]).stdout).into_owned();
    assert!(text.contains("auth             failing since"), "{text}");
    assert!(text.contains("invalid_grant") && text.contains("mailroom auth login"), "{text}");
    let digest = mailroom(&["digest", "--dry-run", "--config", config.to_str().unwrap()]);
    let digest = String::from_utf8_lossy(&digest.stdout).into_owned();
    assert!(digest.contains("À traiter") && digest.contains("Authentification"), "{digest}");
    assert!(digest.contains("invalid_grant"), "{digest}");

    // Retried with growing pauses, not hammered.
    let attempts = wait_for("four refused refreshes", DEADLINE, || {
        let refused: Vec<Instant> =
            idp.events().iter().filter(|e| e.outcome == "invalid_grant").map(|e| e.at).collect();
        (refused.len() >= 4).then_some(refused)
    });
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] > gaps[0], "the pauses grow: {gaps:?}");
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(400)), "no hammering: {gaps:?}");
    let early = attempts.iter().filter(|t| **t < attempts[0] + Duration::from_secs(3)).count();
    assert!(early <= 4, "at most four tries in the first three seconds: {gaps:?}");
    let log = daemon.log_text();
    assert_eq!(
        log.lines().filter(|l| l.contains("authentication failing") && l.contains("part=\"provider\"")).count(),
        1,
        "logged once per change, not per try:\n{log}"
    );
    assert!(log.contains("AADSTS700082"), "{log}");

    // A person signs in again: taken at once, without waiting out the backoff.
    idp.misbehave(None);
    let printed = login_by_paste(&idp, &config, Some(stack.ca()));
    wait_for("status to say auth ok again", DEADLINE, || (status_json(&config)["auth"]["state"] == "ok").then_some(()));
    assert!(daemon.log_text().contains("authentication works again"));
    daemon.terminate(Duration::from_secs(15));
    assert_no_secrets(&idp, dir.path(), &[&text, &digest, &printed, &seen.join("\n")]);
}

/// 5xx answers are transient: the daemon waits them out, then works.
#[test]
fn a_failing_identity_provider_is_waited_out() {
    let Some(stack) = Stack::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "contact@example.test";
    let idp = Idp::start(&stack, user);
    idp.misbehave(Some(Misbehave::Status(503)));
    let (folder, config) =
        oauth_config(&stack, &idp, dir.path(), user, "client_credentials", "poll_interval_secs = 3600\n", "");
    let mut daemon = Daemon::start(&config);
    wait_for("two 503 answers", DEADLINE, || {
        (idp.events().iter().filter(|e| e.outcome == "http_503").count() >= 2).then_some(())
    });
    let s = status_json(&config);
    let provider = s["auth"]["parts"].as_array().unwrap().iter().find(|r| r["part"] == "provider").cloned().unwrap();
    assert_eq!(provider["code"], "http_503", "{s}");
    idp.misbehave(None);
    wait_ready(&config);
    let id = apply(&stack, user, &folder, "frank@example.test");
    wait_for("the acknowledgement", DEADLINE, || (acked(&stack, "frank@example.test", &id) == 1).then_some(()));
    assert_eq!(status_json(&config)["auth"]["state"], "ok");
    daemon.terminate(Duration::from_secs(15));
}

// ------------------------------------------------------------ the check ---

fn check(config: &Path) -> (bool, String) {
    let out = mailroom(&["check-config", "--connect", "--config", config.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => (true, text),
        Some(1) => (false, text),
        other => panic!("check-config --connect exits 0 or 1, not {other:?}:\n{text}"),
    }
}

#[test]
fn check_config_connect_says_what_works_and_what_does_not() {
    let Some(stack) = Stack::get() else { return };
    let user = "contact@example.test";

    // Passwords: right, then a wrong IMAP password.
    let dir = tempfile::tempdir().unwrap();
    let (_, _, config) = stack.contact_folder_config(dir.path(), "check", "");
    let (ok, text) = check(&config);
    assert!(ok, "{text}");
    assert!(text.contains("IMAP               ok") && text.contains("SMTP               ok"), "{text}");
    let wrong = std::fs::read_to_string(&config).unwrap().replacen(stack.password(), "wrong-password", 1);
    std::fs::write(&config, wrong).unwrap();
    let (ok, text) = check(&config);
    assert!(!ok, "{text}");
    assert!(
        text.contains("IMAP               FAIL") && text.contains("check imap.username and imap.password_file"),
        "{text}"
    );
    assert!(text.contains("SMTP               ok"), "{text}");
    assert!(!text.contains(stack.password()), "{text}");

    // Tokens: good ones.
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(&stack, user);
    let (_, config) = oauth_config(&stack, &idp, dir.path(), user, "client_credentials", "", "timeout_secs = 1\n");
    let (ok, good) = check(&config);
    assert!(ok, "{good}");
    assert!(
        good.contains("identity provider  ok") && good.contains("OAUTHBEARER") && good.contains("XOAUTH2"),
        "{good}"
    );

    // Tokens the identity provider calls good for an hour, which have in fact expired: the
    // servers refuse them, with their error challenge.
    idp.settings.lock().unwrap().exp_skew_secs = -7200;
    std::fs::remove_file(token_file(&config)).unwrap();
    let (ok, expired) = check(&config);
    assert!(!ok, "{expired}");
    assert!(expired.contains("IMAP               FAIL") && expired.contains("refused the access token"), "{expired}");
    assert!(expired.contains("invalid_token"), "the server's error challenge is reported: {expired}");
    assert!(expired.contains("SMTP               FAIL"), "{expired}");
    idp.settings.lock().unwrap().exp_skew_secs = 0;
    std::fs::remove_file(token_file(&config)).unwrap();

    // A wrong client secret, a provider down, a provider too slow.
    std::fs::write(dir.path().join("client-secret"), "not-the-secret\n").unwrap();
    let (ok, bad_secret) = check(&config);
    assert!(
        !ok && bad_secret.contains("identity provider  FAIL") && bad_secret.contains("invalid_client"),
        "{bad_secret}"
    );
    std::fs::write(dir.path().join("client-secret"), format!("{}\n", idp.client_secret())).unwrap();
    idp.misbehave(Some(Misbehave::Status(503)));
    let (ok, down) = check(&config);
    assert!(!ok && down.contains("HTTP 503"), "{down}");
    idp.misbehave(Some(Misbehave::Slow(Duration::from_secs(3))));
    let (ok, slow) = check(&config);
    assert!(!ok && slow.contains("no answer from") && slow.contains("within 1 s"), "{slow}");
    idp.misbehave(None);
    assert_no_secrets(&idp, dir.path(), &[&good, &expired, &bad_secret, &down, &slow]);
}
