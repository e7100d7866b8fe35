//! `auth-backend certs`: the certificates of a cluster, modelled on `cockroach cert`.
//!
//! ```text
//! auth-backend certs create-ca     --certs-dir certs --ca-key safe/ca.key
//! auth-backend certs create-node 1 --addr 10.0.0.1,node1.internal --certs-dir certs --ca-key safe/ca.key
//! auth-backend certs create-client admin --admin --certs-dir certs --ca-key safe/ca.key
//! ```
//!
//! Files: `ca.pem`, `node-<ID>.pem` + `.key`, `<NAME>.pem` + `.key`; all are written
//! with mode 0600 and never overwritten without `--overwrite`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use auth_raft::pki::{CA_VALIDITY, CertAuthority, CertRequest, IssuedCert};
use auth_raft::tls::{PeerIdentity, check_private_file, write_private_file};
use clap::{Args, Subcommand};

use crate::config::parse_duration;

/// Where certificates go and which CA signs them.
#[derive(Debug, Clone, Args)]
pub struct CertDirs {
    /// Directory for `ca.pem` and the issued certificates and keys.
    #[arg(long, env = "AUTH_BACKEND_CERTS_DIR", value_name = "DIR")]
    pub certs_dir: PathBuf,
    /// The CA private key [default: CERTS_DIR/ca.key]. Keep it off the nodes.
    #[arg(long, env = "AUTH_BACKEND_CA_KEY", value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub overwrite: bool,
    /// How long the certificate is valid (e.g. `730d`) [default: 10 years for a CA,
    /// 2 years otherwise].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lifetime: Option<Duration>,
}

impl CertDirs {
    fn ca_key(&self) -> PathBuf {
        self.ca_key
            .clone()
            .unwrap_or_else(|| self.certs_dir.join("ca.key"))
    }

    fn ca_cert(&self) -> PathBuf {
        self.certs_dir.join("ca.pem")
    }
}

/// `auth-backend certs …`
#[derive(Debug, Clone, Subcommand)]
pub enum CertsCmd {
    /// Create the cluster CA: CERTS_DIR/ca.pem and its key (--ca-key).
    CreateCa {
        /// Where to write, and the CA.
        #[command(flatten)]
        dirs: CertDirs,
    },
    /// Create node ID's certificate (CERTS_DIR/node-ID.pem and .key) for the hosts it is
    /// reached at.
    CreateNode {
        /// The node id (non-zero).
        id: u64,
        /// Host names or IP addresses (a `:port` suffix is ignored), comma-separated or
        /// repeated.
        #[arg(long = "addr", value_delimiter = ',', required = true)]
        addrs: Vec<String>,
        /// Where to write, and the CA.
        #[command(flatten)]
        dirs: CertDirs,
    },
    /// Create a client certificate (CERTS_DIR/NAME.pem and .key); `--admin` makes it an
    /// admin certificate, which may call the cluster admin RPCs.
    CreateClient {
        /// The client's name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// Issue an admin certificate.
        #[arg(long)]
        admin: bool,
        /// Where to write, and the CA.
        #[command(flatten)]
        dirs: CertDirs,
    },
}

/// `host:port`, `[v6]:port` or a bare host → the host.
pub fn host_of(addr: &str) -> String {
    let a = addr.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => h.to_owned(),
        _ => a.to_owned(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.')
}

fn refuse_existing(paths: &[PathBuf], overwrite: bool) -> Result<(), String> {
    if overwrite {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(format!(
            "{} exists; pass --overwrite to replace it",
            p.display()
        )),
        None => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot protect {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Creates the CA in `dirs`.
pub fn create_ca(dirs: &CertDirs) -> Result<CertAuthority, String> {
    create_dir(&dirs.certs_dir)?;
    refuse_existing(&[dirs.ca_cert(), dirs.ca_key()], dirs.overwrite)?;
    let ca = CertAuthority::generate("auth-sdk cluster CA", dirs.lifetime.unwrap_or(CA_VALIDITY))
        .map_err(|e| e.to_string())?;
    if let Some(parent) = dirs.ca_key().parent() {
        create_dir(parent)?;
    }
    write_private_file(&dirs.ca_key(), ca.key_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", dirs.ca_key().display()))?;
    write_private_file(&dirs.ca_cert(), ca.cert_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", dirs.ca_cert().display()))?;
    Ok(ca)
}

/// Loads the CA of `dirs` (its key must be private to its owner).
pub fn load_ca(dirs: &CertDirs) -> Result<CertAuthority, String> {
    check_private_file(&dirs.ca_key()).map_err(|e| e.to_string())?;
    CertAuthority::load(&dirs.ca_cert(), &dirs.ca_key()).map_err(|e| e.to_string())
}

/// Issues a certificate for `identity` with `ca` and writes it as `CERTS_DIR/NAME.*`.
pub fn issue(
    ca: &CertAuthority,
    dirs: &CertDirs,
    identity: PeerIdentity,
    hosts: &[String],
    file_name: &str,
) -> Result<IssuedCert, String> {
    let pem = dirs.certs_dir.join(format!("{file_name}.pem"));
    let key = dirs.certs_dir.join(format!("{file_name}.key"));
    refuse_existing(&[pem, key], dirs.overwrite)?;
    let mut req = CertRequest::new(identity, hosts.iter().map(|h| host_of(h)));
    if let Some(l) = dirs.lifetime {
        req.not_after = SystemTime::now() + l;
    }
    let cert = ca.issue(&req).map_err(|e| e.to_string())?;
    cert.write(&dirs.certs_dir, file_name)
        .map_err(|e| e.to_string())?;
    Ok(cert)
}

fn run(cmd: &CertsCmd) -> Result<String, String> {
    match cmd {
        CertsCmd::CreateCa { dirs } => {
            create_ca(dirs)?;
            Ok(format!(
                "wrote {} and {}",
                dirs.ca_cert().display(),
                dirs.ca_key().display()
            ))
        }
        CertsCmd::CreateNode { id, addrs, dirs } => {
            if *id == 0 {
                return Err("node ids are non-zero".into());
            }
            let ca = load_ca(dirs)?;
            let name = format!("node-{id}");
            issue(&ca, dirs, PeerIdentity::Node(*id), addrs, &name)?;
            Ok(format!(
                "wrote {0}/{name}.pem and {0}/{name}.key",
                dirs.certs_dir.display()
            ))
        }
        CertsCmd::CreateClient { name, admin, dirs } => {
            if !valid_name(name) {
                return Err(format!(
                    "client name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
                ));
            }
            let ca = load_ca(dirs)?;
            let identity = if *admin {
                PeerIdentity::Admin(name.clone())
            } else {
                PeerIdentity::Client(name.clone())
            };
            issue(&ca, dirs, identity, &[], name)?;
            Ok(format!(
                "wrote {0}/{name}.pem and {0}/{name}.key",
                dirs.certs_dir.display()
            ))
        }
    }
}

/// `auth-backend certs …`: exit 0, or 2 with the reason on stderr.
pub fn main_certs(cmd: &CertsCmd) -> ExitCode {
    match run(cmd) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("auth-backend certs: {e}");
            ExitCode::from(crate::app::EXIT_CONFIG)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth_raft::tls::{PeerTls, TlsFiles};

    #[test]
    fn hosts_are_taken_from_addresses() {
        assert_eq!(host_of("127.0.0.1:50052"), "127.0.0.1");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("[::1]:7"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of(" node1.internal:9 "), "node1.internal");
    }

    #[test]
    fn ca_node_and_admin_certificates_check_out_and_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = CertDirs {
            certs_dir: dir.path().join("certs"),
            ca_key: Some(dir.path().join("safe").join("ca.key")),
            overwrite: false,
            lifetime: None,
        };
        run(&CertsCmd::CreateCa { dirs: dirs.clone() }).unwrap();
        let e = run(&CertsCmd::CreateCa { dirs: dirs.clone() }).unwrap_err();
        assert!(e.contains("--overwrite"), "{e}");
        run(&CertsCmd::CreateNode {
            id: 3,
            addrs: vec!["127.0.0.1:50052".into(), "localhost".into()],
            dirs: dirs.clone(),
        })
        .unwrap();
        run(&CertsCmd::CreateClient {
            name: "ops".into(),
            admin: true,
            dirs: dirs.clone(),
        })
        .unwrap();
        let certs = &dirs.certs_dir;
        let files = |name: &str| TlsFiles {
            ca: certs.join("ca.pem"),
            cert: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}.key")),
        };
        PeerTls::load(&files("node-3"), Some(&PeerIdentity::Node(3))).unwrap();
        PeerTls::load(&files("ops"), Some(&PeerIdentity::Admin("ops".into()))).unwrap();
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(
                run(&CertsCmd::CreateClient {
                    name: bad.into(),
                    admin: false,
                    dirs: dirs.clone(),
                })
                .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            run(&CertsCmd::CreateNode {
                id: 0,
                addrs: vec!["x".into()],
                dirs
            })
            .is_err()
        );
    }
}
