//! Issuing the certificates of a cluster: a CA, one certificate per node, client and
//! admin certificates (what `auth-backend certs` does), with rcgen.
//!
//! Keys are ECDSA P-256. A node certificate is valid for TLS server and client use and
//! names the hosts the node is reached at; client and admin certificates are for TLS
//! client use only. Identities are URI SANs ([`PeerIdentity::uri`]).
//!
//! ```
//! use std::time::Duration;
//! use auth_raft::pki::{CertAuthority, CertRequest};
//! use auth_raft::tls::{PeerIdentity, PeerTls};
//!
//! let ca = CertAuthority::generate("example cluster CA", Duration::from_secs(86_400)).unwrap();
//! let node = ca
//!     .issue(&CertRequest::new(PeerIdentity::Node(1), ["127.0.0.1", "localhost"]))
//!     .unwrap();
//! let tls = PeerTls::from_pem(ca.cert_pem(), &node.cert_pem, &node.key_pem,
//!     Some(&PeerIdentity::Node(1))).unwrap();
//! assert_eq!(tls.identity(), &PeerIdentity::Node(1));
//! ```

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use zeroize::Zeroizing;

use crate::tls::{PeerIdentity, write_private_file};

/// Default lifetime of a CA certificate: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Default lifetime of node, client and admin certificates: two years.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(String);

fn pki_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError(format!("{what}: {e}"))
}

/// A certificate and its private key, PEM. `Debug` hides the key.
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `NAME.pem` and `NAME.key` into `dir`, both mode 0600.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), PkiError> {
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| PkiError(format!("cannot write {p}: {e}"))
        };
        let key = dir.join(format!("{name}.key"));
        write_private_file(&key, self.key_pem.as_bytes()).map_err(io(&key))?;
        let cert = dir.join(format!("{name}.pem"));
        write_private_file(&cert, self.cert_pem.as_bytes()).map_err(io(&cert))?;
        Ok(())
    }
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Who the holder is.
    pub identity: PeerIdentity,
    /// Host names and IP addresses the holder serves at (nodes only).
    pub hosts: Vec<String>,
    /// Start of validity. Default: now, less a minute of clock skew.
    pub not_before: SystemTime,
    /// End of validity. Default: [`LEAF_VALIDITY`] from now.
    pub not_after: SystemTime,
}

impl CertRequest {
    /// A request with the default validity.
    pub fn new<I, S>(identity: PeerIdentity, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let now = SystemTime::now();
        Self {
            identity,
            hosts: hosts.into_iter().map(Into::into).collect(),
            not_before: now - Duration::from_secs(60),
            not_after: now + LEAF_VALIDITY,
        }
    }
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut b);
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

/// A cluster certificate authority.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// A new self-signed CA valid from now for `valid_for`.
    pub fn generate(common_name: &str, valid_for: Duration) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(pki_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "auth-sdk");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + valid_for).into();
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(pki_err("CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and key, PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(pki_err("CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(pki_err("CA certificate"))?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// Reads a CA from `ca.pem` / `ca.key`-style files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(Zeroizing::new)
                .map_err(|e| PkiError(format!("cannot read {}: {e}", p.display())))
        };
        Self::from_pem(&read(cert)?, &read(key)?)
    }

    /// The CA certificate, PEM (public: give it to every node and client).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM. Keep it off the nodes.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.issuer.key().serialize_pem())
    }

    /// Issues a certificate for `req` with a fresh key.
    pub fn issue(&self, req: &CertRequest) -> Result<IssuedCert, PkiError> {
        if PeerIdentity::from_uri(&req.identity.uri()).as_ref() != Some(&req.identity) {
            return Err(PkiError(format!(
                "{} cannot be named in a certificate",
                req.identity
            )));
        }
        let key = KeyPair::generate().map_err(pki_err("key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cn = match &req.identity {
            PeerIdentity::Node(id) => format!("node {id}"),
            PeerIdentity::Admin(n) => format!("admin {n}"),
            PeerIdentity::Client(n) => format!("client {n}"),
        };
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "auth-sdk");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match req.identity {
            PeerIdentity::Node(_) => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        for host in &req.hosts {
            let host = host.trim();
            let san = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.to_owned()
                        .try_into()
                        .map_err(|_| PkiError(format!("{host:?} is not a valid host name")))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.subject_alt_names.push(SanType::URI(
            req.identity
                .uri()
                .try_into()
                .map_err(|_| PkiError(format!("{} cannot be named in a URI", req.identity)))?,
        ));
        params.not_before = req.not_before.into();
        params.not_after = req.not_after.into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki_err("certificate"))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{PeerTls, TlsError};

    fn ca() -> CertAuthority {
        CertAuthority::generate("test CA", Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn issued_certificates_check_out_and_name_their_holder() {
        let ca = ca();
        for id in [
            PeerIdentity::Node(7),
            PeerIdentity::Admin("root".into()),
            PeerIdentity::Client("web".into()),
        ] {
            let c = ca
                .issue(&CertRequest::new(id.clone(), ["127.0.0.1", "localhost"]))
                .unwrap();
            let tls = PeerTls::from_pem(ca.cert_pem(), &c.cert_pem, &c.key_pem, Some(&id)).unwrap();
            assert_eq!(tls.identity(), &id);
            assert!(!format!("{tls:?}").contains("PRIVATE"));
            assert!(!format!("{c:?}").contains("PRIVATE"));
        }
        // Reloaded from PEM, the CA issues certificates that still chain to it.
        let again = CertAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let c = again
            .issue(&CertRequest::new(PeerIdentity::Node(1), ["localhost"]))
            .unwrap();
        PeerTls::from_pem(ca.cert_pem(), &c.cert_pem, &c.key_pem, None).unwrap();
    }

    #[test]
    fn bad_material_is_refused_with_the_reason() {
        let ca = ca();
        let other = CertAuthority::generate("other CA", Duration::from_secs(3600)).unwrap();
        let node = ca
            .issue(&CertRequest::new(PeerIdentity::Node(2), ["127.0.0.1"]))
            .unwrap();
        let node3 = ca
            .issue(&CertRequest::new(PeerIdentity::Node(3), ["127.0.0.1"]))
            .unwrap();
        let id2 = PeerIdentity::Node(2);

        let e = PeerTls::from_pem(other.cert_pem(), &node.cert_pem, &node.key_pem, None);
        assert!(matches!(e, Err(TlsError::WrongCa { .. })), "{e:?}");
        let e = PeerTls::from_pem(ca.cert_pem(), &node.cert_pem, &node3.key_pem, None);
        assert!(matches!(e, Err(TlsError::KeyMismatch { .. })), "{e:?}");
        let e = PeerTls::from_pem(ca.cert_pem(), &node3.cert_pem, &node3.key_pem, Some(&id2));
        assert!(matches!(e, Err(TlsError::WrongIdentity { .. })), "{e:?}");

        let mut req = CertRequest::new(id2.clone(), ["127.0.0.1"]);
        req.not_before = SystemTime::now() - Duration::from_secs(7200);
        req.not_after = SystemTime::now() - Duration::from_secs(3600);
        let expired = ca.issue(&req).unwrap();
        let e = PeerTls::from_pem(ca.cert_pem(), &expired.cert_pem, &expired.key_pem, None)
            .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");

        let e = PeerTls::from_pem(ca.cert_pem(), "junk", &node.key_pem, None).unwrap_err();
        assert!(matches!(e, TlsError::Malformed { .. }), "{e:?}");
        // A leaf is not a CA.
        let e = PeerTls::from_pem(&node3.cert_pem, &node.cert_pem, &node.key_pem, None);
        assert!(matches!(e, Err(TlsError::Malformed { .. })), "{e:?}");
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_written_private_and_loose_keys_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let c = ca
            .issue(&CertRequest::new(PeerIdentity::Node(1), ["127.0.0.1"]))
            .unwrap();
        c.write(dir.path(), "node-1").unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let key = dir.path().join("node-1.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let files = crate::tls::TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("node-1.pem"),
            key: key.clone(),
        };
        PeerTls::load(&files, Some(&PeerIdentity::Node(1))).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PeerTls::load(&files, None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("chmod 600") && msg.contains("node-1.key"),
            "{msg}"
        );
        // Errors name the file.
        let e = PeerTls::load(
            &crate::tls::TlsFiles {
                ca: dir.path().join("missing.pem"),
                ..files.clone()
            },
            None,
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e2 = PeerTls::load(
            &crate::tls::TlsFiles {
                ca: dir.path().join("missing.pem"),
                ..files
            },
            None,
        )
        .unwrap_err();
        assert!(e.is_err());
        assert!(e2.to_string().contains("missing.pem"), "{e2}");
    }
}
