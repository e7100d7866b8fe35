//! Mutual TLS between nodes, and who a certificate says its holder is.
//!
//! Every certificate of a cluster is issued by the cluster CA ([`crate::pki`]) and names
//! its holder in a URI subject alternative name:
//!
//! | holder | URI | may call |
//! |---|---|---|
//! | node 3 | `spiffe://auth-sdk/node/3` | Raft RPCs (as itself), `Forward`, `ForwardStream`, `ReadIndex` |
//! | an operator | `spiffe://auth-sdk/admin/NAME` | `ClusterAdmin` |
//! | a client | `spiffe://auth-sdk/client/NAME` | nothing on the peer listener |
//!
//! The peer listener requires a client certificate from the cluster CA (the TLS stack
//! checks the chain, the validity period and the key usage); the Raft service then binds
//! the certificate's identity to the message (see `service.rs`).
//!
//! [`PeerTls::load`] checks a node's files before anything listens, so a wrong CA, an
//! expired certificate, a key that does not belong to its certificate or a certificate of
//! another node is a start-up error naming the file, not a stream of handshake failures.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::NodeId;

/// The URI prefix of every identity this crate issues and accepts.
pub const IDENTITY_PREFIX: &str = "spiffe://auth-sdk/";

/// Who a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A cluster node.
    Node(NodeId),
    /// An operator: may call the cluster admin RPCs.
    Admin(String),
    /// A client of the client listener; no rights on the peer listener.
    Client(String),
}

impl PeerIdentity {
    /// The URI this identity is written as in a certificate.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::Node(id) => format!("{IDENTITY_PREFIX}node/{id}"),
            PeerIdentity::Admin(n) => format!("{IDENTITY_PREFIX}admin/{n}"),
            PeerIdentity::Client(n) => format!("{IDENTITY_PREFIX}client/{n}"),
        }
    }

    /// Parses an identity URI; `None` for anything else.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(IDENTITY_PREFIX)?;
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        match kind {
            "node" => match name.parse::<NodeId>() {
                Ok(id) if id != 0 && name == id.to_string() => Some(PeerIdentity::Node(id)),
                _ => None,
            },
            "admin" => Some(PeerIdentity::Admin(name.to_owned())),
            "client" => Some(PeerIdentity::Client(name.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Node(id) => write!(f, "node {id}"),
            PeerIdentity::Admin(n) => write!(f, "admin {n:?}"),
            PeerIdentity::Client(n) => write!(f, "client {n:?}"),
        }
    }
}

/// The identity named by a DER certificate: exactly one identity URI, or an error.
pub fn identity_of(cert_der: &[u8]) -> Result<PeerIdentity, String> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| format!("not a certificate: {e}"))?;
    identity_in(&cert)
}

fn identity_in(cert: &X509Certificate<'_>) -> Result<PeerIdentity, String> {
    let mut found = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && uri.starts_with(IDENTITY_PREFIX)
            {
                found.push(
                    PeerIdentity::from_uri(uri)
                        .ok_or_else(|| format!("malformed identity URI {uri:?}"))?,
                );
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("names no {IDENTITY_PREFIX}… identity")),
        _ => Err("names more than one identity".into()),
    }
}

/// Why TLS material cannot be used. Every variant names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {file}: {reason}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        reason: String,
    },
    /// A private key file is readable by group or others.
    #[error(
        "{file} is readable by group or others (mode {mode:o}); run `chmod 600 {file}` and start again"
    )]
    Permissions {
        /// The file.
        file: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a PEM certificate or key.
    #[error("{file}: {reason}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("the key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// The certificate was not issued by the CA.
    #[error("{cert} was not issued by the CA in {ca}")]
    WrongCa {
        /// The certificate file.
        cert: String,
        /// The CA file.
        ca: String,
    },
    /// The certificate is outside its validity period.
    #[error("{file} is {what}")]
    NotValidNow {
        /// The file.
        file: String,
        /// "expired since …" or "not valid before …".
        what: String,
    },
    /// The certificate names another holder than expected.
    #[error("{file} is a certificate for {found}, not for {expected}")]
    WrongIdentity {
        /// The certificate file.
        file: String,
        /// Who it names.
        found: String,
        /// Who was expected.
        expected: String,
    },
}

/// Fails unless `path` is readable by its owner only (mode `0600` or stricter) — for
/// private keys, signing keys and other secrets.
pub fn check_private_file(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| TlsError::Read {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsError::Permissions {
                file: path.display().to_string(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes a secret (a private key) to `path`, readable by the owner only, replacing any
/// file there.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    // The mode applies only when the file is created; tighten an existing one too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut f, contents)?;
    f.sync_all()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The DER of the first certificate in a PEM text.
fn parse<'a>(file: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, TlsError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| TlsError::Malformed {
            file: file.to_owned(),
            reason: format!("not an X.509 certificate: {e}"),
        })
}

fn cert_der(file: &str, pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    let bad = |reason: String| TlsError::Malformed {
        file: file.to_owned(),
        reason,
    };
    for item in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| bad(format!("not PEM: {e}")))?;
        if item.label == "CERTIFICATE" {
            return Ok(item.contents);
        }
    }
    Err(bad("contains no CERTIFICATE block".into()))
}

/// One party's TLS material: the cluster CA, a certificate it issued and the matching
/// private key, checked for consistency. Cloning is cheap; `Debug` shows only the
/// identity.
#[derive(Clone)]
pub struct PeerTls {
    ca_pem: Arc<str>,
    cert_pem: Arc<str>,
    key_pem: Arc<Zeroizing<String>>,
    identity: PeerIdentity,
    not_after: i64,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTls")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// The three files of a [`PeerTls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// This party's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8), mode 0600.
    pub key: PathBuf,
}

impl PeerTls {
    /// Reads and checks the files: the key is private to its owner and matches the
    /// certificate, which the CA issued, which is valid now, and which names `expect`
    /// (if given). Errors name the file at fault.
    pub fn load(files: &TlsFiles, expect: Option<&PeerIdentity>) -> Result<Self, TlsError> {
        check_private_file(&files.key)?;
        let ca = read(&files.ca)?;
        let cert = read(&files.cert)?;
        let key = Zeroizing::new(read(&files.key)?);
        Self::check(
            (&files.ca.display().to_string(), &ca),
            (&files.cert.display().to_string(), &cert),
            (&files.key.display().to_string(), &key),
            expect,
        )
    }

    /// Like [`PeerTls::load`] from PEM texts already in memory (no permission check).
    pub fn from_pem(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        expect: Option<&PeerIdentity>,
    ) -> Result<Self, TlsError> {
        Self::check(
            ("CA certificate", ca_pem.as_bytes()),
            ("certificate", cert_pem.as_bytes()),
            ("key", key_pem.as_bytes()),
            expect,
        )
    }

    fn check(
        (ca_file, ca): (&str, &[u8]),
        (cert_file, cert): (&str, &[u8]),
        (key_file, key): (&str, &[u8]),
        expect: Option<&PeerIdentity>,
    ) -> Result<Self, TlsError> {
        let text = |file: &str, b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| TlsError::Malformed {
                    file: file.to_owned(),
                    reason: "not UTF-8 PEM text".into(),
                })
        };
        let ca_der = cert_der(ca_file, ca)?;
        let cert_der_bytes = cert_der(cert_file, cert)?;
        let ca_cert = parse(ca_file, &ca_der)?;
        let leaf = parse(cert_file, &cert_der_bytes)?;
        if !ca_cert.is_ca() {
            return Err(TlsError::Malformed {
                file: ca_file.to_owned(),
                reason: "is not a CA certificate".into(),
            });
        }
        if leaf.issuer() != ca_cert.subject()
            || leaf.verify_signature(Some(ca_cert.public_key())).is_err()
        {
            return Err(TlsError::WrongCa {
                cert: cert_file.to_owned(),
                ca: ca_file.to_owned(),
            });
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (file, c) in [(ca_file, &ca_cert), (cert_file, &leaf)] {
            let v = c.validity();
            if now > v.not_after.timestamp() {
                return Err(TlsError::NotValidNow {
                    file: file.to_owned(),
                    what: format!("expired since {}", v.not_after),
                });
            }
            if now < v.not_before.timestamp() {
                return Err(TlsError::NotValidNow {
                    file: file.to_owned(),
                    what: format!("not valid before {}", v.not_before),
                });
            }
        }
        let key_text = Zeroizing::new(text(key_file, key)?);
        let pair = rcgen::KeyPair::from_pem(&key_text).map_err(|e| TlsError::Malformed {
            file: key_file.to_owned(),
            reason: format!("not a PKCS#8 private key: {e}"),
        })?;
        if rcgen::PublicKeyData::subject_public_key_info(&pair) != leaf.public_key().raw {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.to_owned(),
                key: key_file.to_owned(),
            });
        }
        let identity = identity_in(&leaf).map_err(|reason| TlsError::Malformed {
            file: cert_file.to_owned(),
            reason,
        })?;
        if let Some(want) = expect
            && *want != identity
        {
            return Err(TlsError::WrongIdentity {
                file: cert_file.to_owned(),
                found: identity.to_string(),
                expected: want.to_string(),
            });
        }
        Ok(Self {
            ca_pem: text(ca_file, ca)?.into(),
            cert_pem: text(cert_file, cert)?.into(),
            key_pem: Arc::new(key_text),
            identity,
            not_after: leaf.validity().not_after.timestamp(),
        })
    }

    /// Who this certificate names.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// When the certificate expires (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Server side: present this certificate, require a client certificate from the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(
                self.cert_pem.as_bytes(),
                self.key_pem.as_bytes(),
            ))
            .client_ca_root(Certificate::from_pem(self.ca_pem.as_bytes()))
            .timeout(std::time::Duration::from_secs(5))
    }

    /// Client side: trust only the CA, present this certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca_pem.as_bytes()))
            .identity(Identity::from_pem(
                self.cert_pem.as_bytes(),
                self.key_pem.as_bytes(),
            ))
    }
}

/// A lazily connecting channel to a peer listener: `https://` with the given TLS
/// client configuration, `http://` without.
pub(crate) fn peer_channel(
    addr: &str,
    connect_timeout: std::time::Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<Channel, String> {
    let bare = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let url = match tls {
        Some(_) => format!("https://{bare}"),
        None => format!("http://{bare}"),
    };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| format!("bad node address {addr:?}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS for {addr:?}: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_round_trip_and_reject_look_alikes() {
        for id in [
            PeerIdentity::Node(3),
            PeerIdentity::Admin("ops".into()),
            PeerIdentity::Client("web".into()),
        ] {
            assert_eq!(PeerIdentity::from_uri(&id.uri()), Some(id));
        }
        for bad in [
            "spiffe://auth-sdk/node/0",
            "spiffe://auth-sdk/node/03",
            "spiffe://auth-sdk/node/+3",
            "spiffe://auth-sdk/node/x",
            "spiffe://auth-sdk/node/",
            "spiffe://auth-sdk/admin/a/b",
            "spiffe://auth-sdk/root/a",
            "spiffe://other/node/1",
        ] {
            assert_eq!(PeerIdentity::from_uri(bad), None, "{bad}");
        }
    }
}
