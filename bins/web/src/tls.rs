//! HTTPS for the site: [`TlsConfig`] (a certificate chain and its key, checked) and what
//! [`crate::serve_tls`] adds to every response.

use std::path::Path;
use std::sync::Arc;

use auth_raft::tls::{TlsError, check_private_file};
use axum::http::HeaderValue;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The `Strict-Transport-Security` value sent on every HTTPS response: two years,
/// subdomains included (no `preload`: that is a decision for the site's owner).
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

pub(crate) fn hsts_value() -> HeaderValue {
    HeaderValue::from_static(HSTS)
}

/// Request extension set by [`crate::serve_tls`]: the request came over HTTPS, so its
/// cookies are `Secure` and `__Host-` prefixed whatever the `WebConfig` says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServedOverTls;

/// The site's TLS server configuration: a certificate chain and its private key, on
/// rustls with the *ring* provider, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
/// `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads `--tls-cert` (the certificate chain, leaf first) and `--tls-key` (PKCS#8,
    /// PKCS#1 or SEC1 PEM). Refuses a key file readable by group or others, naming the
    /// file and the `chmod 600` to run; every other error names its file too.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        check_private_file(key)?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError::Read {
                file: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = zeroize::Zeroizing::new(read(key)?);
        Self::build(
            (&cert.display().to_string(), &cert_pem),
            (&key.display().to_string(), &key_pem),
        )
    }

    /// From PEM texts in memory (no file permission check).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::build(("certificate", cert_pem), ("key", key_pem))
    }

    fn build(
        (cert_file, cert_pem): (&str, &[u8]),
        (key_file, key_pem): (&str, &[u8]),
    ) -> Result<Self, TlsError> {
        let malformed = |file: &str, reason: String| TlsError::Malformed {
            file: file.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| malformed(cert_file, format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(malformed(cert_file, "contains no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| malformed(key_file, format!("no PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| malformed(cert_file, format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert: cert_file.to_owned(),
                    key: key_file.to_owned(),
                },
                other => malformed(key_file, format!("unusable key or certificate: {other}")),
            })?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            server: Arc::new(server),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_the_file_named() {
        let e = TlsConfig::from_pem(b"nothing here", b"nor here").unwrap_err();
        assert!(
            matches!(&e, TlsError::Malformed { file, .. } if file == "certificate"),
            "{e:?}"
        );
        let e = TlsConfig::from_files(Path::new("/nonexistent/c.pem"), Path::new("/nonexistent/k"))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/k"), "{e}");
    }
}
