//! `--cacert`, `--cert`, `--key` (etcdctl's names): TLS to the backends' client
//! listeners and to the nodes' peer listeners.
//!
//! - AuthService calls: `--cacert` turns TLS on (the CA that issued the backends'
//!   certificates); `--cert`/`--key` add a client certificate.
//! - Cluster commands: with `--cacert`, mutual TLS with an admin certificate
//!   (`--cert`/`--key`, issued by the cluster CA for `spiffe://auth-sdk/admin/NAME`);
//!   without it, plaintext, for clusters started with `--insecure`.
//!
//! Every unusable file is a usage error (exit 2) naming the file.

use std::path::{Path, PathBuf};

use auth_backend::ClientTls;
use auth_core::AuthError;
use auth_raft::tls::{PeerIdentity, PeerTls, TlsFiles, check_private_file};

use crate::Failure;

/// The TLS flags, global to every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) that issued the servers' certificates. With it, calls use
    /// TLS (`host:port` endpoints become `https://`); without it, plaintext.
    #[arg(long, global = true, env = "AUTHCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM) to present; needs --key. Cluster commands need one
    /// issued for an admin.
    #[arg(
        long,
        global = true,
        env = "AUTHCTL_CERT",
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM, PKCS#8) of --cert, readable by its owner only (mode 0600).
    #[arg(
        long,
        global = true,
        env = "AUTHCTL_KEY",
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

/// `ClientTls` reports unusable files as `InvalidConfig`: a usage error here.
fn config_usage(e: AuthError) -> Failure {
    match e {
        AuthError::InvalidConfig(m) => Failure::Usage(m),
        other => Failure::Auth(other),
    }
}

impl TlsArgs {
    /// The client certificate and key, if given (both or neither).
    fn identity(&self) -> Result<Option<(&Path, &Path)>, Failure> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(usage("--cert needs --key (the certificate's private key)")),
            (None, Some(_)) => Err(usage("--key needs --cert (the key's certificate)")),
        }
    }

    /// The CA file, or `None` for plaintext (then no client certificate either).
    fn ca(&self) -> Result<Option<&Path>, Failure> {
        let identity = self.identity()?;
        match (&self.cacert, identity) {
            (Some(ca), _) => Ok(Some(ca)),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(usage(
                "--cert and --key need --cacert (the CA that issued the servers' certificates)",
            )),
        }
    }

    /// TLS for AuthService calls (`RemoteOptions::tls`); `None` without `--cacert`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, Failure> {
        let Some(ca) = self.ca()? else {
            return Ok(None);
        };
        let mut tls = ClientTls::from_ca_file(ca).map_err(config_usage)?;
        if let Some((cert, key)) = self.identity()? {
            check_private_file(key).map_err(|e| usage(e.to_string()))?;
            tls = tls.with_identity_files(cert, key).map_err(config_usage)?;
        }
        Ok(Some(tls))
    }

    /// TLS for cluster commands: the admin certificate, checked against the CA; `None`
    /// (plaintext) without `--cacert`.
    pub fn admin_tls(&self) -> Result<Option<PeerTls>, Failure> {
        let Some(ca) = self.ca()? else {
            return Ok(None);
        };
        let Some((cert, key)) = self.identity()? else {
            return Err(usage(
                "cluster commands over TLS need an admin certificate: --cert FILE --key FILE",
            ));
        };
        let files = TlsFiles {
            ca: ca.to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        let tls = PeerTls::load(&files, None).map_err(|e| usage(e.to_string()))?;
        match tls.identity() {
            PeerIdentity::Admin(_) => Ok(Some(tls)),
            other => Err(usage(format!(
                "{} is not an admin certificate (it names {other}); cluster commands need \
                 a certificate issued for an admin",
                cert.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsArgs {
        TlsArgs {
            cacert: ca.map(PathBuf::from),
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
        }
    }

    fn usage_message(r: Result<impl std::fmt::Debug, Failure>) -> String {
        match r {
            Err(Failure::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn no_flags_is_plaintext() {
        assert!(args(None, None, None).client_tls().unwrap().is_none());
        assert!(args(None, None, None).admin_tls().unwrap().is_none());
    }

    #[test]
    fn half_an_identity_or_an_identity_without_a_ca_is_a_usage_error() {
        let m = usage_message(args(Some("ca"), Some("c"), None).client_tls());
        assert!(m.contains("--cert needs --key"), "{m}");
        let m = usage_message(args(Some("ca"), None, Some("k")).admin_tls());
        assert!(m.contains("--key needs --cert"), "{m}");
        let m = usage_message(args(None, Some("c"), Some("k")).client_tls());
        assert!(m.contains("need --cacert"), "{m}");
        let m = usage_message(args(Some("ca"), None, None).admin_tls());
        assert!(m.contains("need an admin certificate"), "{m}");
    }

    #[test]
    fn missing_files_are_named() {
        let m = usage_message(args(Some("/nonexistent/ca.pem"), None, None).client_tls());
        assert!(m.contains("/nonexistent/ca.pem"), "{m}");
        let m = usage_message(
            args(
                Some("/nonexistent/ca.pem"),
                Some("/nonexistent/a.pem"),
                Some("/nonexistent/a.key"),
            )
            .admin_tls(),
        );
        assert!(m.contains("/nonexistent/a.key"), "{m}");
    }
}
