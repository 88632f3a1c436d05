//! OAuth2 without a network: the `[oauth2]` section is validated at start with every error naming
//! its key, presets fill the servers, the example configuration's OAuth2 block is valid and says
//! the real defaults, no secret shows in `check-config`, and a stored auth state shows in
//! `mailroom status` and the digest (a failure, and a refresh token about to expire).

mod common;

use std::path::Path;

use chrono::{Duration, Utc};
use mailroom::auth::{AuthPart, AuthRecord};
use mailroom::config::{AuthMethod, ClientAuth, Config, SaslMechanism, TlsMode};
use mailroom::store::{AuthStore, Store};

use common::{mailroom, write_config};

const BASE: &str = r#"
[identity]
from = "contact@example.org"
organisation = "Example"
team = ["team@example.org"]
"#;

fn load(dir: &Path, text: &str) -> Result<Config, String> {
    std::fs::write(dir.join("secret"), "s3cret-value\n").unwrap();
    let path = dir.join("mailroom.toml");
    std::fs::write(&path, format!("{text}\n{BASE}")).unwrap();
    Config::load_with_env(&path, std::iter::empty()).map_err(|e| e.to_string())
}

const M365: &str = r#"
[imap]
username = "contact@example.org"
auth = "oauth2"
[smtp]
username = "contact@example.org"
auth = "oauth2"
[oauth2]
provider = "microsoft365"
flow = "client_credentials"
tenant = "example.org"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"
"#;

#[test]
fn a_preset_fills_hosts_ports_tls_endpoints_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(dir.path(), M365).unwrap();
    assert_eq!((c.imap.host.as_str(), c.imap.port, c.imap.tls), ("outlook.office365.com", 993, TlsMode::Implicit));
    assert_eq!((c.smtp.host.as_str(), c.smtp.port, c.smtp.tls), ("smtp.office365.com", 587, TlsMode::Starttls));
    let o = c.oauth2.as_ref().unwrap();
    assert_eq!(o.endpoints().token.as_deref(), Some("https://login.microsoftonline.com/example.org/oauth2/v2.0/token"));
    assert_eq!(o.scopes(), vec!["https://outlook.office365.com/.default"]);
    assert!(o.secret_in_body());
    assert_eq!(c.imap.auth, AuthMethod::Oauth2);
    // What the admin writes wins over the preset.
    let c = load(dir.path(), &M365.replace("[smtp]\n", "[smtp]\nport = 25\nhost = \"relay.example.org\"\n")).unwrap();
    assert_eq!((c.smtp.host.as_str(), c.smtp.port), ("relay.example.org", 25));
    let google = M365
        .replace("microsoft365", "google")
        .replace("tenant = \"example.org\"\n", "")
        .replace("client_credentials", "authorization_code");
    let c = load(dir.path(), &google).unwrap();
    assert_eq!((c.imap.host.as_str(), c.smtp.host.as_str(), c.smtp.port), ("imap.gmail.com", "smtp.gmail.com", 465));
    assert_eq!(c.oauth2.unwrap().scopes(), vec!["https://mail.google.com/"]);
}

#[test]
fn every_oauth2_mistake_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = |text: &str| load(dir.path(), text).unwrap_err();
    let custom = M365
        .replace("provider = \"microsoft365\"", "provider = \"custom\"")
        .replace("tenant = \"example.org\"\n", "")
        .replace("[imap]\n", "[imap]\nhost = \"imap.example.org\"\n")
        .replace("[smtp]\n", "[smtp]\nhost = \"smtp.example.org\"\n");
    let cases: Vec<(String, &str)> = vec![
        (M365.replace("tenant = \"example.org\"\n", ""), "oauth2.tenant:"),
        (M365.replace("tenant = \"example.org\"", "tenant = \"example.org/x\""), "oauth2.tenant:"),
        (M365.replace("client_secret_file = \"secret\"\n", ""), "oauth2.client_secret_file:"),
        (
            M365.replace("client_secret_file = \"secret\"", "client_secret_file = \"missing\""),
            "oauth2.client_secret_file:",
        ),
        (M365.replace("client_id = \"11111111-2222-3333-4444-555555555555\"", "client_id = \"\""), "oauth2.client_id:"),
        (M365.replace("microsoft365", "google").replace("tenant = \"example.org\"\n", ""), "oauth2.flow:"),
        (
            M365.replace("microsoft365", "google")
                .replace("tenant = \"example.org\"\n", "")
                .replace("client_credentials", "device_code"),
            "oauth2.flow:",
        ),
        (custom.clone(), "oauth2.token_url:"),
        (custom.replace("[oauth2]", "[oauth2]\ntoken_url = \"http://idp.example.org/token\""), "oauth2.token_url:"),
        (
            custom
                .replace("[oauth2]", "[oauth2]\ntoken_url = \"https://idp.example.org/token\"")
                .replace("client_credentials", "authorization_code"),
            "oauth2.authorization_url:",
        ),
        (M365.replace("[oauth2]", "[oauth2]\ntimeout_secs = 0"), "oauth2.timeout_secs:"),
        (M365.replace("[oauth2]", "[oauth2]\nscopes = [\"a b\"]"), "oauth2.scopes:"),
        (M365.replace("[oauth2]", "[oauth2]\nredirect_uri = \"not a url\""), "oauth2.redirect_uri:"),
        (M365.replace("auth = \"oauth2\"\n[smtp]", "auth = \"oauth2\"\npassword = \"x\"\n[smtp]"), "imap.password:"),
    ];
    for (text, key) in cases {
        let e = err(&text);
        assert!(e.starts_with(key), "expected {key} first:\n{e}");
    }
    // imap.auth = "oauth2" without an [oauth2] section, and an unknown key in it.
    let without = M365
        .split("[oauth2]")
        .next()
        .unwrap()
        .replace("[imap]", "[imap]\nhost = \"h\"")
        .replace("[smtp]", "[smtp]\nhost = \"h\"");
    assert!(err(&without).starts_with("oauth2: missing"), "{}", err(&without));
    let e = err(&M365.replace("[oauth2]", "[oauth2]\nclient_secert = \"x\""));
    assert!(e.contains("client_secert"), "{e}");
}

#[test]
fn check_config_never_prints_the_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let text = M365.replace("client_secret_file = \"secret\"", "client_secret = \"inline-s3cret-value\"");
    let path = dir.path().join("mailroom.toml");
    std::fs::write(&path, format!("{text}\n{BASE}")).unwrap();
    let out = mailroom(&["check-config", "--config", path.to_str().unwrap()]);
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("client_secret: Some(\n                \"[redacted]\""), "{printed}");
    assert!(!printed.contains("inline-s3cret-value"), "{printed}");
}

/// The example's `[oauth2]` block, uncommented, is a valid section and states the defaults.
#[test]
fn the_example_oauth2_block_is_valid_and_states_the_defaults() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/mailroom.example.toml")).unwrap();
    let keys = [
        "provider",
        "flow",
        "tenant",
        "client_id",
        "client_secret_file",
        "scopes",
        "redirect_uri",
        "mechanism",
        "client_auth",
        "token_dir",
        "refresh_warning_days",
        "timeout_secs",
    ];
    let mut in_block = false;
    let mut found = Vec::new();
    let text: String = example
        .lines()
        .map(|l| {
            if l == "# [oauth2]" {
                in_block = true;
                return "[oauth2]".to_owned();
            }
            if in_block && l.starts_with('[') {
                in_block = false;
            }
            if in_block
                && let Some(rest) = l.strip_prefix("# ")
                && let Some((k, _)) = rest.split_once(" = ")
                && keys.contains(&k)
            {
                found.push(k.to_owned());
                return rest.to_owned();
            }
            l.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(found.len(), keys.len(), "the example lists every [oauth2] key: {found:?}");
    let dir = tempfile::tempdir().unwrap();
    for f in ["imap-password", "smtp-password", "oauth2-client-secret"] {
        std::fs::write(dir.path().join(f), "secret\n").unwrap();
    }
    let path = dir.path().join("mailroom.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load_with_env(&path, std::iter::empty()).expect("the example's oauth2 block is valid");
    let o = cfg.oauth2.clone().unwrap();
    assert_eq!(o.mechanism, SaslMechanism::Auto);
    assert_eq!(o.client_auth, ClientAuth::Auto);
    assert_eq!((o.refresh_warning_days, o.timeout_secs), (14, 30));
    assert!(o.scopes.is_empty());
    assert_eq!(Some(cfg.token_dir()), cfg.storage.state_path.parent().map(Path::to_path_buf));
    assert_eq!(o.redirect_uri.as_deref(), Some(mailroom::auth::login::DEFAULT_REDIRECT));
    assert_eq!((cfg.imap.auth, cfg.smtp.auth), (AuthMethod::Password, AuthMethod::Password));
}

/// What the daemon stored is what status and the digest say: a failure with its code, and a
/// refresh token close to its end.
#[test]
fn status_and_the_digest_show_the_stored_auth_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "host = \"imap.example.test\"\nusername = \"contact@example.test\"\npassword = \"x\"",
        "host = \"smtp.example.test\"\nusername = \"contact@example.test\"\npassword = \"x\"",
        "",
    );
    let store = Store::open(&dir.path().join("state/mailroom.sqlite3")).unwrap();
    let now = Utc::now();
    store
        .save_auth_record(&AuthRecord {
            part: AuthPart::Provider,
            ok: true,
            since: now,
            code: None,
            reason: None,
            detail: Some("microsoft365 authorization_code".into()),
            refresh_expires_at: Some(now + Duration::days(5) + Duration::hours(1)),
            updated_at: now,
        })
        .unwrap();
    store
        .save_auth_record(&AuthRecord {
            part: AuthPart::Smtp,
            ok: false,
            since: now - Duration::hours(2),
            code: Some("refused".into()),
            reason: Some("the server refused the access token for contact@example.test (535 5.7.3)".into()),
            detail: Some("XOAUTH2".into()),
            refresh_expires_at: None,
            updated_at: now,
        })
        .unwrap();
    drop(store);
    let status = mailroom(&["status", "--config", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(text.contains("auth             failing since"), "{text}");
    assert!(text.contains("SMTP login") && text.contains("535 5.7.3"), "{text}");
    assert!(text.contains("refresh token  expires in 5 days") && text.contains("mailroom auth login"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&mailroom(&["status", "--json", "--config", config.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(json["auth"]["state"], "failing");
    assert_eq!(json["auth"]["refresh_token_days_left"], 5);
    let digest = mailroom(&["digest", "--dry-run", "--config", config.to_str().unwrap()]);
    let digest = String::from_utf8_lossy(&digest.stdout).into_owned();
    assert!(digest.contains("Authentification – connexion SMTP : en échec depuis le"), "{digest}");
    assert!(digest.contains("jeton de renouvellement OAuth2") && digest.contains("dans 5 jours"), "{digest}");
}
