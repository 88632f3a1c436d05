//! The rustls client configuration shared by the IMAP and SMTP transports: the system's roots,
//! plus an optional private CA (the usual setup for a test stack or an internal mail server).
//!
//! One configuration is shared by every user that trusts the same CA file: the system's roots,
//! parsed, hold about 100 kB of heap (measured: README, "Idle memory"), and an idle daemon (IMAP, SMTP, the OAuth client, WebDAV)
//! kept one copy per user. The sharing is weak: once no connection or client holds it, it is
//! gone, and the next one reads the roots again (a CA file replaced before a reload is read anew
//! too, since its contents are part of the key).

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    Empty { path: String },
    #[error("{path}: bad certificate: {message}")]
    Bad { path: String, message: String },
}

/// Reads every certificate of a PEM file.
pub(crate) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { path: shown.clone(), source })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Bad { path: shown.clone(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: shown });
    }
    Ok(certs)
}

/// The configurations in use, by the certificates of their CA file (none: the system's roots alone).
type Shared = Vec<(Vec<CertificateDer<'static>>, Weak<rustls::ClientConfig>)>;

static SHARED: Mutex<Shared> = Mutex::new(Vec::new());

/// A client configuration trusting the system roots and, if given, the certificates of `ca_file`:
/// the one already in use for the same certificates, if any.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let extra = match ca_file {
        Some(path) => load_ca_file(path)?,
        None => Vec::new(),
    };
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    shared.retain(|(_, config)| config.strong_count() > 0);
    if let Some(config) = shared.iter().find(|(certs, _)| *certs == extra).and_then(|(_, c)| c.upgrade()) {
        return Ok(config);
    }
    let config = build(ca_file, &extra)?;
    shared.push((extra, Arc::downgrade(&config)));
    Ok(config)
}

fn build(ca_file: Option<&Path>, extra: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    // A host without a CA bundle still works with an explicit ca_file, so a failure here is not fatal.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let shown = || ca_file.map(|p| p.display().to_string()).unwrap_or_default();
    for cert in extra {
        roots.add(cert.clone()).map_err(|e| TlsError::Bad { path: shown(), message: e.to_string() })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Bad { path: "(protocol versions)".into(), message: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    #[test]
    fn users_of_the_same_ca_file_share_one_configuration_while_it_is_held() {
        let ca = fixture("ca.pem");
        let a = client_config(Some(&ca)).unwrap();
        let b = client_config(Some(&ca)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the same CA file, one configuration");
        let other = client_config(Some(&fixture("cert.pem"))).unwrap();
        assert!(!Arc::ptr_eq(&a, &other), "another CA file, another configuration");
        let system = client_config(None).unwrap();
        assert!(!Arc::ptr_eq(&a, &system), "the system's roots alone are not the CA file's");

        // Once nobody holds it, it is gone: the next user builds it again (reading the file anew).
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
        let again = client_config(Some(&ca)).unwrap();
        assert_eq!(Arc::strong_count(&again), 1);
    }

    #[test]
    fn a_bad_ca_file_is_named_in_the_error() {
        let err = client_config(Some(&fixture("key.pem"))).unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
    }
}
