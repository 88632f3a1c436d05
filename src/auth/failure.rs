//! Why authentication failed, in the provider's own code and in words an admin can act on.
//!
//! Logs, `mailroom status`, the sd_notify status line and the digest show the same text: the
//! OAuth2 error code (`invalid_grant`), the identity provider's own code when it gives one
//! (Microsoft's `AADSTS70008`), the first sentence of its description (never trace ids, never a
//! token), and what to do.

use crate::provider::Flow;

/// One failure to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// The OAuth2 error code (`invalid_grant`, `invalid_client`), or ours (`timeout`,
    /// `http_503`, `not_logged_in`, `refused`).
    pub code: String,
    /// The identity provider's own code, e.g. `AADSTS700082`.
    pub provider_code: Option<String>,
    /// What happened, for a person.
    pub message: String,
    /// What to do about it, when a person must act.
    pub advice: Option<String>,
    /// Whether waiting can fix it (a server away, an answer too slow); otherwise a person must act.
    pub transient: bool,
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(advice) = &self.advice {
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AuthFailure {}

impl AuthFailure {
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> AuthFailure {
        AuthFailure { code: code.into(), provider_code: None, message: message.into(), advice: None, transient: true }
    }

    pub fn needs_human(code: impl Into<String>, message: impl Into<String>, advice: impl Into<String>) -> AuthFailure {
        AuthFailure {
            code: code.into(),
            provider_code: None,
            message: message.into(),
            advice: Some(advice.into()),
            transient: false,
        }
    }

    /// `invalid_grant (AADSTS70008)`: what a change of state is judged by (descriptions carry
    /// trace ids and timestamps that change at every try).
    pub fn key(&self) -> String {
        match &self.provider_code {
            Some(p) => format!("{} ({p})", self.code),
            None => self.code.clone(),
        }
    }

    /// An error answer of the token endpoint (RFC 6749 §5.2).
    pub fn from_error_response(error: &str, description: Option<&str>, flow: Flow) -> AuthFailure {
        let provider_code = description.and_then(aadsts_code);
        let said = description.map(first_sentence).filter(|s| !s.is_empty());
        let message = match &said {
            Some(d) => format!("the identity provider refused: {error}: {d}"),
            None => format!("the identity provider refused: {error}"),
        };
        let login_again = "run `mailroom auth login` again (as the service's user)";
        let (advice, transient) = match (error, provider_code.as_deref()) {
            (_, Some("AADSTS7000215")) => {
                ("the client secret is wrong: copy the secret's Value (not its ID) into oauth2.client_secret_file".into(), false)
            }
            (_, Some("AADSTS7000222")) => (
                "the client secret has expired: make a new one under Certificates & secrets and put it in oauth2.client_secret_file".into(),
                false,
            ),
            (_, Some("AADSTS700016")) => (
                "no application with this oauth2.client_id in this tenant: check oauth2.client_id and oauth2.tenant".into(),
                false,
            ),
            (_, Some("AADSTS90002")) => ("no such tenant: check oauth2.tenant".into(), false),
            (_, Some("AADSTS65001")) => (
                "the permissions were not consented: have an administrator grant admin consent on the app registration".into(),
                false,
            ),
            (_, Some("AADSTS7000218")) => (
                "the app is not a public client: set oauth2.client_secret_file, or allow public client flows on the app registration".into(),
                false,
            ),
            (_, Some("AADSTS50173" | "AADSTS70008" | "AADSTS700082" | "AADSTS50076" | "AADSTS50079")) => {
                (format!("the sign-in is no longer valid: {login_again}"), false)
            }
            ("invalid_grant", _) if flow.delegated() => {
                (format!("the refresh token is no longer accepted (expired, revoked, or a password changed): {login_again}"), false)
            }
            ("invalid_grant", _) => ("check oauth2.client_id, oauth2.tenant and the app's permissions".into(), false),
            ("invalid_client", _) => {
                ("the client id or secret is wrong or expired: check oauth2.client_id and oauth2.client_secret_file".into(), false)
            }
            ("unauthorized_client", _) => (
                format!("this client may not use the {} flow: allow it on the app registration, or change oauth2.flow", flow.as_str()),
                false,
            ),
            ("invalid_scope", _) => ("check oauth2.scopes (empty: the provider's defaults)".into(), false),
            ("temporarily_unavailable" | "server_error", _) => (String::new(), true),
            _ => ("check the [oauth2] section against the app registration".into(), false),
        };
        AuthFailure {
            code: error.to_owned(),
            provider_code,
            message,
            advice: (!advice.is_empty()).then_some(advice),
            transient,
        }
    }
}

/// Microsoft's `AADSTS<digits>` code in an error description.
pub fn aadsts_code(description: &str) -> Option<String> {
    let at = description.find("AADSTS")?;
    let digits: String = description[at + 6..].chars().take_while(|c| c.is_ascii_digit()).collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

/// The first sentence of a description, on one line, without Microsoft's trace and
/// correlation ids and timestamps, and never longer than 300 characters.
pub(super) fn first_sentence(description: &str) -> String {
    let line = description.lines().next().unwrap_or_default();
    let cut = ["Trace ID:", "Correlation ID:", "Timestamp:"].iter().filter_map(|m| line.find(m)).min();
    let line = &line[..cut.unwrap_or(line.len())];
    let line = line.trim().trim_end_matches('.').trim();
    line.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_descriptions_give_their_code_and_lose_their_trace_ids() {
        let d = "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2026-01-01T00:00:00Z and was inactive for 90.00:00:00.\r\nTrace ID: 0000aaaa-11bb-cc22-dd33-444444eeeeee\r\nCorrelation ID: x\r\nTimestamp: 2026-04-01 00:00:00Z";
        let f = AuthFailure::from_error_response("invalid_grant", Some(d), Flow::AuthorizationCode);
        assert_eq!(f.provider_code.as_deref(), Some("AADSTS700082"));
        assert_eq!(f.key(), "invalid_grant (AADSTS700082)");
        assert!(!f.to_string().contains("Trace ID"), "{f}");
        assert!(f.to_string().contains("mailroom auth login"), "{f}");
        assert!(!f.transient);
    }

    #[test]
    fn a_wrong_secret_is_named() {
        let d = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID. Trace ID: x";
        let f = AuthFailure::from_error_response("invalid_client", Some(d), Flow::ClientCredentials);
        assert!(f.to_string().contains("Value (not its ID)"), "{f}");
    }
}
