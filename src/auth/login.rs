//! `mailroom auth login`: the one-time sign-in of a delegated flow, made for a headless server.
//!
//! **Authorization code** (with PKCE): the URL is printed; the person opens it in any browser
//! and signs in. The identity provider then sends the browser to the redirect URI with a code.
//! Two ways bring it back, whichever comes first: the browser reaches our loopback listener
//! (when it runs on this machine, or through an SSH tunnel), or the person copies the address
//! the browser ended on (the page may fail to load; the address bar still holds the code) and
//! pastes it here. The `state` must match, so an old or foreign URL is refused.
//!
//! **Device code**: a code to type at the provider's page, on any device; we poll.
//!
//! **Client credentials** need no sign-in; the command checks that a token comes.
//!
//! The tokens are saved (0600, atomically, under the refresh lock) where the daemon reads them;
//! a running daemon picks them up at once.

use std::io::Write;
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::failure::AuthFailure;
use super::flows::{Granted, IdentityProvider};
use super::source::{merge, refresh_expiry};
use super::tokens::TokenFile;
use crate::config::{Config, ConfigError};
use crate::provider::Flow;

/// How long a person has to sign in.
const LOGIN_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// The default redirect URI: loopback, any free port (Microsoft and Google accept any port for
/// `http://localhost` on desktop/public clients).
pub const DEFAULT_REDIRECT: &str = "http://localhost";

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(#[from] AuthFailure),
    #[error("{0}")]
    Io(String),
}

/// Runs the configured flow's sign-in, talking to the person through `out` and the `pasted`
/// lines (standard input). Returns the path of the saved token file.
pub async fn login(
    cfg: &Config,
    out: &mut (dyn Write + Send),
    mut pasted: mpsc::Receiver<String>,
) -> Result<std::path::PathBuf, LoginError> {
    let o = cfg.oauth2.as_ref().ok_or_else(|| ConfigError::Invalid {
        key: "oauth2".into(),
        message: "missing: `mailroom auth login` signs in for the [oauth2] section".into(),
    })?;
    let idp = IdentityProvider::new(o, o.client_secret()?, Some(&cfg.imap.username))?;
    let file = TokenFile::new(&cfg.token_dir());
    let say = |out: &mut (dyn Write + Send), text: String| {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    let granted: Granted = match o.flow {
        Flow::ClientCredentials => {
            say(out, format!("{} uses app-only access: no sign-in needed. Asking for a token…", o.provider.as_str()));
            idp.client_credentials().await?
        }
        Flow::DeviceCode => {
            let device = idp.start_device_login().await?;
            say(
                out,
                format!(
                    "On any device, open {}\nand enter the code {} (within {} minutes), signed in as {}.\n{}Waiting…",
                    device.verification_uri,
                    device.user_code,
                    device.expires_in.as_secs() / 60,
                    cfg.imap.username,
                    device.verification_uri_complete.as_deref().map(|u| format!("(or open {u})\n")).unwrap_or_default()
                ),
            );
            idp.finish_device_login(&device).await?
        }
        Flow::AuthorizationCode => {
            let wanted = o.redirect_uri.clone().unwrap_or_else(|| DEFAULT_REDIRECT.into());
            let (listener, redirect_uri) = listen(&wanted, out).await;
            let started = idp.start_code_login(&redirect_uri)?;
            say(
                out,
                format!(
                    "Open this address in a browser and sign in as {}:\n\n{}\n\n\
                     The browser is then sent to {redirect_uri}…\n\
                     {}Or copy the whole address the browser ends on (even if the page does not load) and paste it here:",
                    cfg.imap.username,
                    started.url,
                    if listener.is_some() {
                        "If that browser runs on this machine (or reaches it through `ssh -L`), nothing more to do.\n"
                    } else {
                        ""
                    }
                ),
            );
            let expected_state = started.state.secret().clone();
            let code = tokio::time::timeout(LOGIN_DEADLINE, wait_for_code(listener, &mut pasted, &expected_state, out))
                .await
                .map_err(|_| {
                    LoginError::Io(format!("no sign-in within {} minutes", LOGIN_DEADLINE.as_secs() / 60))
                })??;
            say(out, "Got the code; asking for the tokens…".into());
            idp.finish_code_login(started, &code).await?
        }
    };
    let now = Utc::now();
    let got_refresh = granted.refresh_token.is_some();
    let tokens = merge(&idp, None, granted, now);
    let lock = file.lock(Duration::from_secs(60)).await.map_err(|e| LoginError::Io(e.to_string()))?;
    let saving = file.clone();
    let to_save = tokens.clone();
    tokio::task::spawn_blocking(move || saving.save(&to_save))
        .await
        .map_err(|e| LoginError::Io(e.to_string()))?
        .map_err(|e| LoginError::Io(e.to_string()))?;
    drop(lock);
    if o.flow.delegated() && !got_refresh {
        return Err(LoginError::Io(format!(
            "the identity provider gave no refresh token, so mailroom could not renew access by itself \
             (Microsoft: the scopes need offline_access; Google: remove the app's access in the account's \
             security settings and sign in again). Tokens saved in {} all the same.",
            file.path().display()
        )));
    }
    let expiry = refresh_expiry(&tokens, o.provider.refresh_life());
    say(
        out,
        format!(
            "Signed in. Tokens saved in {} (mode 0600).{}\nCheck the mailbox with: mailroom check-config --connect",
            file.path().display(),
            match (o.flow.delegated(), expiry) {
                (false, _) => String::new(),
                (true, Some(t)) => format!(
                    "\nThe refresh token expires {} unless it is used (mailroom uses it at least hourly).",
                    t.format("%Y-%m-%d")
                ),
                (true, None) => String::new(),
            }
        ),
    );
    Ok(file.path())
}

/// Listens on the redirect URI when it is a loopback `http://` address. Returns the listener
/// and the redirect URI to send (with the port chosen, when the configuration gave none).
async fn listen(wanted: &str, out: &mut (dyn Write + Send)) -> (Option<TcpListener>, String) {
    let Ok(url) = url::Url::parse(wanted) else { return (None, wanted.to_owned()) };
    if url.scheme() != "http" || !crate::config::is_loopback(&url) {
        return (None, wanted.to_owned());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        _ => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    let port = url.port().unwrap_or(0);
    match TcpListener::bind((ip, port)).await {
        Ok(listener) => {
            let mut redirect = url.clone();
            if port == 0 {
                let chosen = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                let _ = redirect.set_port(Some(chosen));
            }
            (Some(listener), redirect.to_string())
        }
        Err(e) => {
            let _ = writeln!(out, "(cannot listen on {wanted}: {e}; paste the address instead)");
            (None, wanted.to_owned())
        }
    }
}

/// Waits for the browser's return, on the listener or pasted; the first valid one wins.
async fn wait_for_code(
    listener: Option<TcpListener>,
    pasted: &mut mpsc::Receiver<String>,
    expected_state: &str,
    out: &mut (dyn Write + Send),
) -> Result<String, LoginError> {
    let mut stdin_open = true;
    loop {
        let answer = tokio::select! {
            line = pasted.recv(), if stdin_open => match line {
                Some(line) if line.trim().is_empty() => continue,
                Some(line) => Answer::Pasted(line.trim().to_owned()),
                None => {
                    stdin_open = false;
                    if listener.is_none() {
                        return Err(LoginError::Io("standard input closed before an address was pasted".into()));
                    }
                    continue;
                }
            },
            accepted = accept(listener.as_ref()) => accepted,
        };
        let (target, mut reply) = match answer {
            Answer::Pasted(line) => (line, None),
            Answer::Browser(target, stream) => (target, Some(stream)),
            Answer::Nothing => continue,
        };
        let verdict = judge(&target, expected_state);
        if let Some(stream) = reply.as_mut() {
            let page = match &verdict {
                Ok(_) => "mailroom: signed in. You can close this page.".to_owned(),
                Err(e) => format!("mailroom: {e}"),
            };
            let body =
                format!("<!doctype html><meta charset=utf-8><title>mailroom</title><p>{}</p>\n", html_escape(&page));
            let status = if verdict.is_ok() { "200 OK" } else { "400 Bad Request" };
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = stream.shutdown().await;
        }
        match verdict {
            Ok(code) => return Ok(code),
            Err(Verdict::Refused(e)) => return Err(LoginError::Failed(e)),
            Err(Verdict::NotIt(why)) => {
                let _ = writeln!(out, "{why}; waiting for the right address…");
                let _ = out.flush();
            }
        }
    }
}

enum Answer {
    Pasted(String),
    Browser(String, tokio::net::TcpStream),
    Nothing,
}

/// One request on the listener: its target (`/path?query`).
async fn accept(listener: Option<&TcpListener>) -> Answer {
    let Some(listener) = listener else { return std::future::pending().await };
    let Ok((mut stream, _)) = listener.accept().await else { return Answer::Nothing };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return Answer::Nothing;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut first = text.lines().next().unwrap_or_default().split_whitespace();
    match (first.next(), first.next()) {
        (Some("GET"), Some(target)) => Answer::Browser(format!("http://localhost{target}"), stream),
        _ => Answer::Nothing,
    }
}

enum Verdict {
    /// Not the answer we wait for (another page, an old state): keep waiting.
    NotIt(String),
    /// The identity provider said no.
    Refused(AuthFailure),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::NotIt(s) => f.write_str(s),
            Verdict::Refused(e) => write!(f, "{e}"),
        }
    }
}

/// The code in a redirect address, if it answers this login.
fn judge(address: &str, expected_state: &str) -> Result<String, Verdict> {
    let address = address.trim().trim_matches(['"', '\'', '<', '>']);
    let parsed = url::Url::parse(address)
        .or_else(|_| url::Url::parse(&format!("http://localhost/?{}", address.trim_start_matches('?'))))
        .map_err(|_| Verdict::NotIt("that is not an address".into()))?;
    let param = |name: &str| parsed.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    if let Some(error) = param("error") {
        let description = param("error_description");
        return Err(Verdict::Refused(AuthFailure::from_error_response(
            &error,
            description.as_deref(),
            Flow::AuthorizationCode,
        )));
    }
    let Some(code) = param("code") else {
        return Err(Verdict::NotIt("that address holds no code".into()));
    };
    if param("state").as_deref() != Some(expected_state) {
        return Err(Verdict::NotIt("that address is not the answer to this sign-in (its state differs)".into()));
    }
    Ok(code)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_address_gives_its_code_only_with_the_right_state() {
        assert_eq!(judge("http://localhost:8400/?code=abc&state=s1", "s1").ok(), Some("abc".into()));
        assert_eq!(judge(" 'code=abc&state=s1' ", "s1").ok(), Some("abc".into()));
        assert!(matches!(judge("http://localhost/?code=abc&state=old", "s1"), Err(Verdict::NotIt(_))));
        assert!(matches!(judge("http://localhost/favicon.ico", "s1"), Err(Verdict::NotIt(_))));
        let refused = judge(
            "http://localhost/?error=access_denied&error_description=AADSTS65004%3A+User+declined&state=s1",
            "s1",
        );
        match refused {
            Err(Verdict::Refused(f)) => assert_eq!(f.key(), "access_denied (AADSTS65004)"),
            _ => panic!("an error answer is a refusal"),
        }
    }
}
