//! A certificate authority made for one test, with its files in a temporary directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use auth_backend::ClientTls;
use auth_backend::server::ServerTls;
use auth_raft::pki::{CertAuthority, CertRequest, IssuedCert};
use auth_raft::tls::{PeerIdentity, PeerTls};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The names every certificate a [`TestCa`] issues is valid for.
const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// How long a test CA is valid.
const VALIDITY: Duration = Duration::from_secs(3600);

/// A certificate authority for one test: `ca.pem` in a temporary directory (removed on
/// drop), and certificates for `127.0.0.1`/`localhost` on request.
///
/// Servers ([`TestCa::server_tls`]) present a node certificate, as the nodes of a
/// cluster do. A second `TestCa` is "another CA": its certificates are refused by
/// anyone who trusts only the first.
#[derive(Debug)]
pub struct TestCa {
    authority: CertAuthority,
    dir: TempDir,
}

impl TestCa {
    /// A new CA named `common_name`, valid for an hour, with `ca.pem` written into a new
    /// temporary directory.
    pub fn new(common_name: &str) -> Self {
        let authority = CertAuthority::generate(common_name, VALIDITY).expect("test CA");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), authority.cert_pem()).expect("write ca.pem");
        Self { authority, dir }
    }

    /// The authority itself, to issue certificates with other validity or hosts.
    pub fn authority(&self) -> &CertAuthority {
        &self.authority
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        self.authority.cert_pem()
    }

    /// The temporary directory holding `ca.pem` and the certificates written so far.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `NAME` in [`TestCa::dir`] (whether or not it exists).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate file, `ca.pem`.
    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A certificate for `who`, valid for 127.0.0.1 and localhost.
    pub fn issue(&self, who: PeerIdentity) -> IssuedCert {
        self.authority
            .issue(&CertRequest::new(who, HOSTS))
            .expect("issue test certificate")
    }

    /// [`TestCa::issue`], also written as `NAME.pem` and `NAME.key` (mode 0600) into
    /// [`TestCa::dir`].
    pub fn issue_files(&self, who: PeerIdentity, name: &str) -> IssuedCert {
        let cert = self.issue(who);
        cert.write(self.dir(), name)
            .unwrap_or_else(|e| panic!("write {name}.pem/{name}.key: {e}"));
        cert
    }

    /// A server certificate for the client listener of `auth-backend` (a node
    /// certificate, for 127.0.0.1/localhost).
    pub fn server_tls(&self) -> ServerTls {
        let cert = self.issue(PeerIdentity::Node(1));
        ServerTls::from_pem(cert.cert_pem, cert.key_pem.as_str())
    }

    /// The TLS material of a party on the peer listener: this CA, and a certificate
    /// it issued to `who`.
    pub fn peer_tls(&self, who: PeerIdentity) -> PeerTls {
        let cert = self.issue(who.clone());
        PeerTls::from_pem(self.cert_pem(), &cert.cert_pem, &cert.key_pem, Some(&who))
            .expect("peer TLS")
    }

    /// A tonic client identity: a certificate this CA issued to `who`, and its key.
    pub fn identity(&self, who: PeerIdentity) -> Identity {
        let cert = self.issue(who);
        Identity::from_pem(&cert.cert_pem, cert.key_pem.as_bytes())
    }

    /// `RemoteAuth`'s TLS settings: trust this CA, present no certificate.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::from_ca_pem(self.cert_pem())
    }

    /// A tonic client TLS configuration that trusts this CA and presents no
    /// certificate.
    pub fn client_tls_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.cert_pem()))
    }

    /// [`TestCa::client_tls_config`], presenting a certificate this CA issued to `who`.
    pub fn client_tls_config_as(&self, who: PeerIdentity) -> ClientTlsConfig {
        self.client_tls_config().identity(self.identity(who))
    }

    /// A lazily connecting channel to `https://ADDR`, trusting this CA. It reconnects
    /// by itself after the server comes back.
    pub fn channel(&self, addr: &str, connect_timeout: Duration) -> Channel {
        Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .connect_timeout(connect_timeout)
            .tls_config(self.client_tls_config())
            .expect("client TLS")
            .connect_lazy()
    }
}
