//! The admin's tools for credentials: `mailroom check-config --connect` (a real login to the
//! identity provider, IMAP and SMTP, said in words an admin can act on) and `mailroom auth
//! login` (the one-time sign-in of a delegated OAuth2 flow).
//!
//! May: log in, select the configured folders (read-only: nothing is fetched or flagged), send
//! nothing; write the token file (`auth login`). Never prints a token, a secret or a password.

use std::io::Write;

use chrono::Utc;

use crate::auth::{Auth, AuthPart, Credential};
use crate::config::{AuthMethod, Config};
use crate::courier::SmtpCourier;
use crate::mailbox::{ImapMailbox, Mailbox, MailboxError};

/// One line of the report.
fn line(out: &mut impl Write, what: &str, ok: bool, text: &str, advice: Option<&str>) {
    let _ = writeln!(out, "{what:<18} {:<4} {text}", if ok { "ok" } else { "FAIL" });
    if let Some(a) = advice {
        let _ = writeln!(out, "{:<23} → {a}", "");
    }
}

/// Logs in everywhere the configuration says, and reports. True when IMAP and SMTP both work.
pub(crate) async fn check(cfg: &Config, auth: &Auth) -> bool {
    let mut out = std::io::stdout().lock();
    if let Some(idp) = auth.identity_provider() {
        let part = if cfg.imap.auth == AuthMethod::Oauth2 { AuthPart::Imap } else { AuthPart::Smtp };
        let what = format!("{} {}", idp.provider.as_str(), idp.flow.as_str());
        match auth.credential(part).await {
            Ok(Credential::Bearer(b)) => {
                let left = (b.expires_at - Utc::now()).num_minutes();
                let refresh = match auth.refresh_expires_at().await {
                    Some(t) => format!("; the refresh token expires in {} days", (t - Utc::now()).num_days()),
                    None => String::new(),
                };
                line(
                    &mut out,
                    "identity provider",
                    true,
                    &format!("{} gave an access token ({what}), valid {left} more minutes{refresh}", idp.host()),
                    None,
                );
            }
            Ok(Credential::Password { .. }) => {}
            Err(f) => line(
                &mut out,
                "identity provider",
                false,
                &format!("{}: {} [{}]", idp.host(), f.message, f.key()),
                f.advice.as_deref(),
            ),
        }
    }
    let mut imap_ok = true;
    for folder in cfg.folders() {
        let server = format!("{}:{}", cfg.imap.host, cfg.imap.port);
        match ImapMailbox::connect_with(cfg, &folder, auth).await {
            Ok(mut mailbox) => {
                let selected = mailbox.select().await;
                mailbox.logout().await;
                match selected {
                    Ok(s) => line(
                        &mut out,
                        "IMAP",
                        true,
                        &format!(
                            "{server}: logged in as {} ({}); folder {folder:?} holds {} messages",
                            cfg.imap.username,
                            imap_mechanism(auth, cfg),
                            s.exists
                        ),
                        None,
                    ),
                    Err(e) => {
                        imap_ok = false;
                        let (text, advice) = explain_imap(cfg, &e);
                        line(&mut out, "IMAP", false, &text, advice.as_deref());
                    }
                }
            }
            Err(e) => {
                imap_ok = false;
                let (text, advice) = explain_imap(cfg, &e);
                line(&mut out, "IMAP", false, &text, advice.as_deref());
                break;
            }
        }
    }
    let smtp_ok = match SmtpCourier::with_auth(cfg, auth.clone()) {
        Ok(courier) => match courier.check().await {
            Ok(how) => {
                line(
                    &mut out,
                    "SMTP",
                    true,
                    &format!("{}:{}: logged in as {} with {how}", cfg.smtp.host, cfg.smtp.port, cfg.smtp.username),
                    None,
                );
                true
            }
            Err(e) => {
                let advice = smtp_advice(cfg, &e.message);
                line(&mut out, "SMTP", false, &format!("{}:{}: {}", cfg.smtp.host, cfg.smtp.port, e.message), advice);
                false
            }
        },
        Err(e) => {
            line(&mut out, "SMTP", false, &e.to_string(), None);
            false
        }
    };
    let _ = out.flush();
    imap_ok && smtp_ok
}

fn imap_mechanism(auth: &Auth, cfg: &Config) -> String {
    auth.records()
        .into_iter()
        .find(|r| r.part == AuthPart::Imap)
        .and_then(|r| r.detail)
        .unwrap_or_else(|| format!("{:?}", cfg.imap.auth).to_lowercase())
}

/// What went wrong with IMAP, and what to do.
fn explain_imap(cfg: &Config, e: &MailboxError) -> (String, Option<String>) {
    let host = &cfg.imap.host;
    let advice = match e {
        MailboxError::Connect { .. } => {
            Some(format!("check imap.host and imap.port, and that this machine may reach {host} (DNS, firewall)"))
        }
        MailboxError::Tls { .. } => Some(
            "check imap.tls (\"implicit\" on 993, \"starttls\" on 143), or set imap.ca_file for a private CA".into(),
        ),
        MailboxError::Timeout { .. } => Some("the server did not answer in time: check imap.port and imap.tls".into()),
        MailboxError::Select { folder, .. } => {
            Some(format!("there is no folder {folder:?} in this mailbox: check imap.folder and imap.also_watch"))
        }
        MailboxError::Auth { .. } if cfg.imap.auth == AuthMethod::Password => {
            provider_hint(host).or_else(|| Some("check imap.username and imap.password_file".into()))
        }
        MailboxError::Auth { .. } | MailboxError::Credentials { .. } | MailboxError::Protocol { .. } => None,
    };
    (e.to_string(), advice)
}

/// Hosts whose password logins are known to be turned off.
fn provider_hint(host: &str) -> Option<String> {
    let h = host.to_ascii_lowercase();
    if h.ends_with("office365.com") || h.ends_with("outlook.com") {
        Some("Microsoft 365 turned off password IMAP: use auth = \"oauth2\" with provider = \"microsoft365\" (see the README)".into())
    } else if h.ends_with("gmail.com") || h.ends_with("googlemail.com") {
        Some("Google needs OAuth2, or an app password (2-step verification on): see the README".into())
    } else {
        None
    }
}

fn smtp_advice(cfg: &Config, message: &str) -> Option<&'static str> {
    if message.contains("SmtpClientAuthentication") {
        Some(
            "SMTP AUTH is turned off for this mailbox or tenant: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false",
        )
    } else if message.contains("refused the access token") {
        Some(
            "Microsoft 365 app-only: SMTP.SendAsApp granted with admin consent, and New-ServicePrincipal done; see the README",
        )
    } else if message.contains("refused the password") {
        None
    } else if cfg.smtp.tls == crate::config::TlsMode::Implicit && cfg.smtp.port == 587 {
        Some("port 587 speaks STARTTLS: set smtp.tls = \"starttls\"")
    } else {
        Some("check smtp.host, smtp.port and smtp.tls (\"implicit\" on 465, \"starttls\" on 587)")
    }
}

/// `mailroom auth login`: standard input feeds pasted addresses, standard output talks.
pub(crate) async fn login(cfg: &Config) -> Result<std::path::PathBuf, crate::auth::login::LoginError> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    // A plain thread: the runtime must not wait for it (a blocking read never ends by itself).
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut text = String::new();
        loop {
            text.clear();
            match stdin.read_line(&mut text) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.blocking_send(text.clone()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut out = std::io::stdout();
    crate::auth::login::login(cfg, &mut out, rx).await
}
