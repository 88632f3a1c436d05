//! The SASL mechanisms that carry a bearer token: XOAUTH2 (Google's, which Microsoft also
//! speaks) and OAUTHBEARER (RFC 7628), and the IMAP authenticator that sends them.
//!
//! A server that refuses the token answers with an *error challenge* (a JSON object, e.g.
//! `{"status":"401","schemes":"bearer","scope":"mail"}`) before the final `NO`. RFC 7628 §3.2.3
//! and Google ask the client to answer it with an empty response; the token is sent once and
//! never again in the same exchange. The challenge is kept, so the refusal can be reported in
//! the server's own words.

use std::sync::{Arc, Mutex};

/// A bearer-token SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// `user=<user>^Aauth=Bearer <token>^A^A`.
pub fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// `n,a=<user>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A` (RFC 7628 §3.1; the
/// authorization identity escaped as RFC 5801 asks).
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> Vec<u8> {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// Sends the initial response once; answers any further challenge (the server's error
/// challenge) with an empty response, and keeps that challenge for the report.
pub struct BearerAuthenticator {
    initial: Option<Vec<u8>>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl BearerAuthenticator {
    /// The authenticator, and where the server's error challenge will be found after a refusal.
    pub fn new(initial: Vec<u8>) -> (BearerAuthenticator, Arc<Mutex<Option<String>>>) {
        let refusal = Arc::new(Mutex::new(None));
        (BearerAuthenticator { initial: Some(initial), refusal: Arc::clone(&refusal) }, refusal)
    }
}

impl std::fmt::Debug for BearerAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthenticator").field("sent", &self.initial.is_none()).finish_non_exhaustive()
    }
}

impl async_imap::Authenticator for BearerAuthenticator {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        match self.initial.take() {
            Some(first) => first,
            None => {
                let text = String::from_utf8_lossy(challenge).chars().filter(|c| !c.is_control()).take(500).collect();
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
                Vec::new()
            }
        }
    }
}

/// The `status` of an error challenge (`401`, `invalid_token`), when it is the JSON it should be.
pub fn challenge_status(challenge: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(challenge).ok()?;
    v.get("status").and_then(|s| s.as_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator;

    #[test]
    fn the_token_goes_once_and_an_error_challenge_gets_an_empty_answer() {
        let (mut a, refusal) = BearerAuthenticator::new(xoauth2("contact@example.test", "tok"));
        assert_eq!(a.process(b""), b"user=contact@example.test\x01auth=Bearer tok\x01\x01".to_vec());
        let challenge = br#"{"status":"401","schemes":"bearer","scope":"mail"}"#;
        assert_eq!(a.process(challenge), Vec::<u8>::new());
        assert_eq!(a.process(challenge), Vec::<u8>::new(), "never the token again");
        let kept = refusal.lock().unwrap().clone().unwrap();
        assert_eq!(challenge_status(&kept).as_deref(), Some("401"));
    }

    #[test]
    fn oauthbearer_escapes_the_authorization_identity() {
        let m = oauthbearer("a,b=c@example.test", "imap.example.test", 993, "tok");
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "n,a=a=2Cb=3Dc@example.test,\x01host=imap.example.test\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }
}
