//! The HTTPS client the OAuth2 flows use to talk to the identity provider: hyper's HTTP/1.1
//! over a rustls connection built from the same configuration as IMAP and SMTP (system roots,
//! plus `oauth2.ca_file`).
//!
//! One connection per request (a token is fetched at most every few minutes), a deadline over
//! the whole exchange, a bounded answer, no redirects (a token endpoint that redirects is
//! misconfigured, and following it could hand the client secret to another host). A 5xx or 429
//! answer is an error here, so the flows see it as the transient failure it is rather than as
//! an unreadable OAuth2 error body.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The largest answer read from an endpoint: token answers are a few kilobytes.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    #[error("cannot connect to {server}: {message}")]
    Connect { server: String, message: String },
    #[error("TLS with {server}: {message}")]
    Tls { server: String, message: String },
    #[error("no answer from {server} within {seconds} s")]
    Timeout { server: String, seconds: u64 },
    #[error("{server} answered HTTP {status}")]
    Status { server: String, status: u16 },
    #[error("{server} redirects (HTTP {status}) instead of answering: check the endpoint's URL")]
    Redirect { server: String, status: u16 },
    #[error("HTTP with {server}: {message}")]
    Protocol { server: String, message: String },
}

impl HttpError {
    /// The short code logs and the auth state carry (`timeout`, `http_503`, …).
    pub(super) fn code(&self) -> String {
        match self {
            HttpError::Connect { .. } => "connect".into(),
            HttpError::Tls { .. } => "tls".into(),
            HttpError::Timeout { .. } => "timeout".into(),
            HttpError::Status { status, .. } | HttpError::Redirect { status, .. } => format!("http_{status}"),
            HttpError::Protocol { .. } => "http".into(),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An HTTPS client for one identity provider.
#[derive(Clone)]
pub(super) struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl HttpClient {
    pub(super) fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<HttpClient, String> {
        let tls = crate::tls::client_config(ca_file).map_err(|e| e.to_string())?;
        Ok(HttpClient { tls, timeout })
    }

    /// Sends one request and reads the whole answer, within the deadline.
    pub(super) async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError> {
        let server = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        match tokio::time::timeout(self.timeout, self.exchange(request, &server)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout { server, seconds: self.timeout.as_secs() }),
        }
    }

    async fn exchange(
        &self,
        request: http::Request<Vec<u8>>,
        server: &str,
    ) -> Result<http::Response<Vec<u8>>, HttpError> {
        let protocol = |message: String| HttpError::Protocol { server: server.to_owned(), message };
        let (mut parts, body) = request.into_parts();
        let https = match parts.uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(protocol(format!("unsupported scheme {other:?}"))),
        };
        let host = parts.uri.host().ok_or_else(|| protocol("no host in the URL".into()))?.to_owned();
        let port = parts.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // HTTP/1.1 wants the path in the request line and the authority in Host.
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        parts.uri = path.parse().map_err(|e: http::uri::InvalidUri| protocol(e.to_string()))?;
        let host_header = if port == if https { 443 } else { 80 } { host.clone() } else { format!("{host}:{port}") };
        parts.headers.insert(http::header::HOST, host_header.parse().map_err(|_| protocol("bad host name".into()))?);
        parts.headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect { server: server.to_owned(), message: e.to_string() })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if https {
            let name = rustls_pki_types::ServerName::try_from(bare.clone())
                .map_err(|e| HttpError::Tls { server: server.to_owned(), message: e.to_string() })?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls { server: server.to_owned(), message: e.to_string() })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| protocol(e.to_string()))?;
        // The connection is driven beside the request; it ends with the exchange (Connection: close).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let response = sender
            .send_request(http::Request::from_parts(parts, Full::new(Bytes::from(body))))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(HttpError::Redirect { server: server.to_owned(), status: status.as_u16() });
        }
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(HttpError::Status { server: server.to_owned(), status: status.as_u16() });
        }
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, bytes.to_vec()))
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
