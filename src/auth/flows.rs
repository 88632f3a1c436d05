//! The OAuth2 grants, through the `oauth2` crate over our [`HttpClient`]: client credentials,
//! refresh, the authorization code with PKCE, and the device code.
//!
//! Every answer becomes a [`Granted`] or an [`AuthFailure`]; nothing here keeps or writes a
//! token, and no error carries a token endpoint's body (a malformed success could hold one).

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::failure::AuthFailure;
use super::http::{HttpClient, HttpError};
use super::tokens::Token;
use crate::config::{ConfigError, OAuth2Config, Secret};
use crate::provider::{Flow, Provider};

/// What the token endpoint may say besides RFC 6749's fields: Google states how long a
/// refresh token lives for apps in "Testing" (7 days).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RefreshExpiry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
}

impl ExtraTokenFields for RefreshExpiry {}

type Answer = StandardTokenResponse<RefreshExpiry, BasicTokenType>;

type OClient = oauth2::Client<
    BasicErrorResponse,
    Answer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What a successful grant gave.
#[derive(Debug, Clone)]
pub struct Granted {
    pub access_token: Token,
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<Token>,
    pub refresh_expires_in: Option<Duration>,
    pub scope: Option<String>,
}

/// A started device-code login: what the person must do.
#[derive(Debug)]
pub struct DeviceLogin {
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub user_code: String,
    pub expires_in: Duration,
    details: StandardDeviceAuthorizationResponse,
}

/// A started authorization-code login: the URL to open, and what checks the answer.
#[derive(Debug)]
pub struct CodeLogin {
    pub url: url::Url,
    pub state: CsrfToken,
    pub verifier: PkceCodeVerifier,
    pub redirect_uri: String,
}

/// One identity provider, as the configuration describes it.
pub struct IdentityProvider {
    client: OClient,
    http: HttpClient,
    scopes: Vec<String>,
    pub provider: Provider,
    pub flow: Flow,
    pub token_url: String,
    pub client_id: String,
    login_hint: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("provider", &self.provider)
            .field("flow", &self.flow)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

impl IdentityProvider {
    /// From a validated `[oauth2]` section. `login_hint`: the mailbox, so the sign-in page
    /// proposes the right account.
    pub fn new(cfg: &OAuth2Config, secret: Option<Secret>, login_hint: Option<&str>) -> Result<Self, ConfigError> {
        let invalid = |key: &str, m: String| ConfigError::Invalid { key: key.into(), message: m };
        let endpoints = cfg.endpoints();
        let token_url = endpoints.token.clone().ok_or_else(|| invalid("oauth2.token_url", "missing".into()))?;
        let mut client = oauth2::Client::new(ClientId::new(cfg.client_id.clone()))
            .set_auth_uri_option(
                endpoints
                    .authorization
                    .map(AuthUrl::new)
                    .transpose()
                    .map_err(|e| invalid("oauth2.authorization_url", e.to_string()))?,
            )
            .set_device_authorization_url_option(
                endpoints
                    .device_authorization
                    .map(DeviceAuthorizationUrl::new)
                    .transpose()
                    .map_err(|e| invalid("oauth2.device_authorization_url", e.to_string()))?,
            )
            .set_token_uri(TokenUrl::new(token_url.clone()).map_err(|e| invalid("oauth2.token_url", e.to_string()))?)
            .set_auth_type(if cfg.secret_in_body() { AuthType::RequestBody } else { AuthType::BasicAuth });
        if let Some(secret) = secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        let http = HttpClient::new(cfg.ca_file.as_deref(), Duration::from_secs(cfg.timeout_secs))
            .map_err(|m| invalid("oauth2.ca_file", m))?;
        Ok(IdentityProvider {
            client,
            http,
            scopes: cfg.scopes(),
            provider: cfg.provider,
            flow: cfg.flow,
            token_url,
            client_id: cfg.client_id.clone(),
            login_hint: login_hint.map(str::to_owned),
            timeout: Duration::from_secs(cfg.timeout_secs),
        })
    }

    /// The deadline of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn scopes(&self) -> Vec<Scope> {
        self.scopes.iter().cloned().map(Scope::new).collect()
    }

    /// The host of the token endpoint, for messages.
    pub fn host(&self) -> String {
        url::Url::parse(&self.token_url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
    }

    /// App-only: the application's own token.
    pub async fn client_credentials(&self) -> Result<Granted, AuthFailure> {
        let answer =
            self.client.exchange_client_credentials().add_scopes(self.scopes()).request_async(&self.http).await;
        self.granted(answer)
    }

    /// A new access token (and, where the provider rotates them, a new refresh token).
    pub async fn refresh(&self, refresh_token: &Token) -> Result<Granted, AuthFailure> {
        let rt = RefreshToken::new(refresh_token.expose().to_owned());
        let answer = self.client.exchange_refresh_token(&rt).add_scopes(self.scopes()).request_async(&self.http).await;
        self.granted(answer)
    }

    /// The authorization URL for a person to open, with PKCE (S256) and a fresh `state`.
    pub fn start_code_login(&self, redirect_uri: &str) -> Result<CodeLogin, AuthFailure> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| {
            AuthFailure::needs_human("config", format!("oauth2.redirect_uri {redirect_uri:?}: {e}"), "fix it")
        })?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(CsrfToken::new_random)
            .map_err(|e| AuthFailure::needs_human("config", e.to_string(), "set oauth2.authorization_url"))?
            .add_scopes(self.scopes())
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect));
        for (k, v) in self.provider.authorization_params() {
            request = request.add_extra_param(*k, *v);
        }
        if let Some(hint) = &self.login_hint {
            request = request.add_extra_param("login_hint", hint.clone());
        }
        let (url, state) = request.url();
        Ok(CodeLogin { url, state, verifier, redirect_uri: redirect_uri.to_owned() })
    }

    /// Trades the code the browser brought back for tokens.
    pub async fn finish_code_login(&self, login: CodeLogin, code: &str) -> Result<Granted, AuthFailure> {
        let redirect = RedirectUrl::new(login.redirect_uri.clone())
            .map_err(|e| AuthFailure::needs_human("config", e.to_string(), "fix oauth2.redirect_uri"))?;
        let answer = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(login.verifier)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .request_async(&self.http)
            .await;
        self.granted(answer)
    }

    /// Asks for a device code: what the person must type, and where.
    pub async fn start_device_login(&self) -> Result<DeviceLogin, AuthFailure> {
        let request = self
            .client
            .exchange_device_code()
            .map_err(|e| AuthFailure::needs_human("config", e.to_string(), "set oauth2.device_authorization_url"))?
            .add_scopes(self.scopes());
        let details: StandardDeviceAuthorizationResponse =
            request.request_async(&self.http).await.map_err(|e| self.failure(e))?;
        Ok(DeviceLogin {
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details.verification_uri_complete().map(|u| u.secret().to_owned()),
            user_code: details.user_code().secret().to_owned(),
            expires_in: details.expires_in(),
            details,
        })
    }

    /// Polls the token endpoint (at the interval it asks for) until the person has signed in,
    /// refused, or the code expired.
    pub async fn finish_device_login(&self, login: &DeviceLogin) -> Result<Granted, AuthFailure> {
        let answer = self
            .client
            .exchange_device_access_token(&login.details)
            .request_async(&self.http, tokio::time::sleep, None)
            .await;
        match answer {
            Ok(a) => Ok(self.to_granted(a)),
            Err(RequestTokenError::ServerResponse(e)) => {
                let v = serde_json::to_value(&e).unwrap_or_default();
                Err(AuthFailure::from_error_response(
                    v["error"].as_str().unwrap_or("error"),
                    v["error_description"].as_str(),
                    self.flow,
                ))
            }
            Err(other) => Err(self.failure(other)),
        }
    }

    fn granted(
        &self,
        answer: Result<Answer, RequestTokenError<HttpError, BasicErrorResponse>>,
    ) -> Result<Granted, AuthFailure> {
        answer.map(|a| self.to_granted(a)).map_err(|e| self.failure(e))
    }

    fn to_granted(&self, a: Answer) -> Granted {
        Granted {
            access_token: Token::new(a.access_token().secret().clone()),
            expires_in: a.expires_in(),
            refresh_token: a.refresh_token().map(|r| Token::new(r.secret().clone())),
            refresh_expires_in: a.extra_fields().refresh_token_expires_in.map(Duration::from_secs),
            scope: a.scopes().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        }
    }

    fn failure<E: oauth2::ErrorResponse>(&self, e: RequestTokenError<HttpError, E>) -> AuthFailure {
        match e {
            RequestTokenError::ServerResponse(err) => {
                let v = serde_json::to_value(&err).unwrap_or_default();
                AuthFailure::from_error_response(
                    v["error"].as_str().unwrap_or("error"),
                    v["error_description"].as_str(),
                    self.flow,
                )
            }
            RequestTokenError::Request(http) => {
                let transient = !matches!(http, HttpError::Tls { .. } | HttpError::Redirect { .. });
                let mut f = AuthFailure::transient(http.code(), format!("the identity provider: {http}"));
                if !transient {
                    f.transient = false;
                    f.advice = Some(match http {
                        HttpError::Tls { .. } => {
                            "check the endpoint's host name, or set oauth2.ca_file for a private CA".into()
                        }
                        _ => "check oauth2.token_url".into(),
                    });
                }
                f
            }
            // Not the body: a malformed success could hold a token.
            RequestTokenError::Parse(err, _body) => AuthFailure::needs_human(
                "unreadable_answer",
                format!("the identity provider's answer is not an OAuth2 answer (at {})", err.path()),
                "check oauth2.token_url: it must be the token endpoint",
            ),
            RequestTokenError::Other(m) => AuthFailure::transient("error", format!("the identity provider: {m}")),
        }
    }
}
