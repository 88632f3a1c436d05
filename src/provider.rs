//! The mail providers mailroom knows by name, and the OAuth2 flows it speaks: the facts an
//! admin would otherwise copy from each provider's documentation (hosts, ports, TLS, endpoints,
//! scopes, how long a refresh token lives), so `provider = "microsoft365"` is enough.
//!
//! Data only. The configuration fills unset keys from these presets; the `auth` module uses the
//! endpoints and scopes. Anything an admin writes wins over a preset.

use serde::{Deserialize, Serialize};

/// Who runs the mailbox and its identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Exchange Online (Microsoft 365), Microsoft Entra ID as identity provider.
    Microsoft365,
    /// Google Workspace and Gmail.
    Google,
    /// Any standards-compliant identity provider (Keycloak, Authentik, Zitadel, …): endpoints
    /// and scopes come from the configuration.
    Custom,
}

/// How mailroom obtains its tokens, named as the providers name the grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// App-only: the application signs in as itself with its client secret (RFC 6749 §4.4).
    /// Microsoft 365's way for a shared mailbox. No person, no refresh token.
    ClientCredentials,
    /// Delegated: a person signs in once in a browser (`mailroom auth login`), mailroom keeps the
    /// refresh token (RFC 6749 §4.1, with PKCE).
    AuthorizationCode,
    /// Delegated, for a machine without a browser: the person types a code on another device
    /// (RFC 8628). Many Microsoft tenants block it by conditional access.
    DeviceCode,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::ClientCredentials => "client_credentials",
            Flow::AuthorizationCode => "authorization_code",
            Flow::DeviceCode => "device_code",
        }
    }

    /// Whether the flow leaves a refresh token to keep (and so needs `mailroom auth login`).
    pub fn delegated(self) -> bool {
        !matches!(self, Flow::ClientCredentials)
    }
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft365 => "microsoft365",
            Provider::Google => "google",
            Provider::Custom => "custom",
        }
    }
}

/// A server as the configuration writes it: host, port, and `implicit` or `starttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub host: &'static str,
    pub port: u16,
    pub tls: &'static str,
}

/// The identity provider's endpoints, for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub device_authorization: Option<String>,
}

/// What is known of a refresh token's life when the token response does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshLife {
    /// It expires after this many days without use; every refresh starts the count again
    /// (Microsoft: 90 days; Google: six months).
    UnusedDays(u32),
    /// Nothing is known.
    Unknown,
}

/// Microsoft's app-only scope for Exchange Online IMAP and SMTP (the permissions themselves,
/// IMAP.AccessAsApp and SMTP.SendAsApp, are granted on the app registration).
pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// Microsoft's delegated scopes: IMAP, SMTP, and `offline_access` for a refresh token.
pub const MICROSOFT_DELEGATED_SCOPES: &[&str] =
    &["https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send", "offline_access"];
/// Google's one scope for IMAP and SMTP.
pub const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";

impl Provider {
    /// Where its IMAP server is.
    pub fn imap(self) -> Option<Server> {
        match self {
            Provider::Microsoft365 => Some(Server { host: "outlook.office365.com", port: 993, tls: "implicit" }),
            Provider::Google => Some(Server { host: "imap.gmail.com", port: 993, tls: "implicit" }),
            Provider::Custom => None,
        }
    }

    /// Where its submission server is. Microsoft's offers STARTTLS on 587 only.
    pub fn smtp(self) -> Option<Server> {
        match self {
            Provider::Microsoft365 => Some(Server { host: "smtp.office365.com", port: 587, tls: "starttls" }),
            Provider::Google => Some(Server { host: "smtp.gmail.com", port: 465, tls: "implicit" }),
            Provider::Custom => None,
        }
    }

    /// The endpoints, for a Microsoft tenant (a domain such as `example.org`, or the directory's
    /// id). `None` for `custom`, whose endpoints the configuration gives.
    pub fn endpoints(self, tenant: &str) -> Option<Endpoints> {
        match self {
            Provider::Microsoft365 => {
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                Some(Endpoints {
                    authorization: Some(format!("{base}/authorize")),
                    token: Some(format!("{base}/token")),
                    device_authorization: Some(format!("{base}/devicecode")),
                })
            }
            Provider::Google => Some(Endpoints {
                authorization: Some("https://accounts.google.com/o/oauth2/v2/auth".into()),
                token: Some("https://oauth2.googleapis.com/token".into()),
                device_authorization: Some("https://oauth2.googleapis.com/device/code".into()),
            }),
            Provider::Custom => None,
        }
    }

    /// The scopes a flow asks for.
    pub fn scopes(self, flow: Flow) -> Vec<String> {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect();
        match (self, flow) {
            (Provider::Microsoft365, Flow::ClientCredentials) => v(&[MICROSOFT_APP_SCOPE]),
            (Provider::Microsoft365, _) => v(MICROSOFT_DELEGATED_SCOPES),
            (Provider::Google, _) => v(&[GOOGLE_MAIL_SCOPE]),
            (Provider::Custom, _) => Vec::new(),
        }
    }

    /// Extra parameters of the authorization request: Google hands out a refresh token only
    /// with `access_type=offline`, and a second time only with `prompt=consent`.
    pub fn authorization_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Provider::Google => &[("access_type", "offline"), ("prompt", "consent")],
            Provider::Microsoft365 | Provider::Custom => &[],
        }
    }

    /// The provider's published rule for refresh tokens, used when a token response does not
    /// say (`refresh_token_expires_in`, which Google sends for apps in "Testing": 7 days).
    pub fn refresh_life(self) -> RefreshLife {
        match self {
            Provider::Microsoft365 => RefreshLife::UnusedDays(90),
            Provider::Google => RefreshLife::UnusedDays(182),
            Provider::Custom => RefreshLife::Unknown,
        }
    }

    /// Why this provider cannot use this flow, if it cannot.
    pub fn refuses(self, flow: Flow) -> Option<&'static str> {
        match (self, flow) {
            (Provider::Google, Flow::ClientCredentials) => Some(
                "Google has no client-credentials grant for Gmail (it uses service accounts with domain-wide \
                 delegation, which mailroom does not support); use flow = \"authorization_code\", or an app \
                 password with auth = \"password\"",
            ),
            (Provider::Google, Flow::DeviceCode) => Some(
                "Google does not allow the Gmail scope (https://mail.google.com/) in the device flow; \
                 use flow = \"authorization_code\" (it works on a headless server: paste the redirect URL)",
            ),
            _ => None,
        }
    }

    /// Whether the token endpoint wants the client secret in the form body (both presets
    /// document it so) rather than in HTTP Basic, which RFC 6749 makes the default.
    pub fn secret_in_body(self) -> bool {
        !matches!(self, Provider::Custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_the_published_endpoints() {
        let e = Provider::Microsoft365.endpoints("example.org").unwrap();
        assert_eq!(e.token.as_deref(), Some("https://login.microsoftonline.com/example.org/oauth2/v2.0/token"));
        assert_eq!(Provider::Microsoft365.scopes(Flow::ClientCredentials), vec![MICROSOFT_APP_SCOPE]);
        assert!(Provider::Microsoft365.scopes(Flow::AuthorizationCode).contains(&"offline_access".to_owned()));
        assert_eq!(Provider::Microsoft365.smtp().unwrap().port, 587);
        assert!(Provider::Google.refuses(Flow::DeviceCode).is_some());
        assert!(Provider::Custom.endpoints("x").is_none());
    }
}
