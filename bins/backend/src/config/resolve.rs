//! What the program asks [`Settings`] for: each value is the setting if given, else the
//! default of the library that uses it; [`Settings::check`] validates them all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auth_core::{Config, KeyRing, SigningKey};
use auth_raft::RaftConfig;
use auth_raft::net::ListenerLimits;
use auth_raft::tls::{PeerIdentity, PeerTls, TlsFiles, check_private_file};
use zeroize::Zeroizing;

use super::{
    ConfigError, DEFAULT_KEY_ID, DEFAULT_LISTEN, DEFAULT_SHUTDOWN_TIMEOUT, LogFormat, Settings,
    StorageKind,
};
use crate::server::{FrontendTrust, ServerOptions, ServerTls};

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// One key file (`--signing-key-file`).
    File {
        /// The key file.
        path: PathBuf,
        /// The key id.
        kid: String,
    },
    /// A directory of keys (`--signing-key-dir`), see [`auth_core::keys::KeyDir`].
    Dir {
        /// The directory.
        path: PathBuf,
        /// The id of the key that signs; `None`: the greatest id.
        current: Option<String>,
    },
}

impl KeySource {
    /// Loads the key ring, refusing key files that others can read.
    pub fn load(&self) -> Result<KeyRing, ConfigError> {
        let loose = |e: auth_raft::tls::TlsError| ConfigError::Invalid(e.to_string());
        match self {
            KeySource::File { path, kid } => {
                let key = SigningKey::from_file(kid.clone(), path)?;
                check_private_file(path).map_err(loose)?;
                Ok(KeyRing::new(key))
            }
            KeySource::Dir { path, current } => {
                Ok(auth_core::keys::KeyDir::new(path).load(current.as_deref())?)
            }
        }
    }
}

/// Overwrites `slot` with `value` if it is set.
fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *slot = v.clone();
    }
}

impl Settings {
    /// Address to listen on; [`DEFAULT_LISTEN`] if not set.
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or(DEFAULT_LISTEN)
    }

    /// Storage backend; [`StorageKind::Memory`] if not set.
    pub fn storage(&self) -> StorageKind {
        self.storage.unwrap_or_default()
    }

    /// Log format; [`LogFormat::Text`] if not set.
    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or_default()
    }

    /// How long shutdown waits for in-flight calls; [`DEFAULT_SHUTDOWN_TIMEOUT`] if not
    /// set.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// The gRPC server options: [`ServerOptions::default()`] with what is set here,
    /// without TLS (see [`Settings::client_tls`]).
    pub fn server_options(&self) -> ServerOptions {
        let mut options = ServerOptions::default();
        set(&mut options.max_request_bytes, &self.max_request_bytes);
        set(&mut options.limits.max_connections, &self.max_connections);
        set(
            &mut options.limits.max_concurrent_streams,
            &self.max_concurrent_streams,
        );
        options.frontends = self.frontend_trust();
        options
    }

    /// `--trusted-frontends`: IP addresses and client certificate names.
    pub fn frontend_trust(&self) -> FrontendTrust {
        let mut trust = FrontendTrust::default();
        for item in self
            .lockout
            .trusted_frontends
            .iter()
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match item.parse() {
                Ok(ip) => trust.addrs.push(ip),
                Err(_) => trust.names.push(item.to_owned()),
            }
        }
        trust
    }

    /// The limits of the peer listener: the same as the client listener's.
    pub fn peer_limits(&self) -> ListenerLimits {
        self.server_options().limits
    }

    /// TLS of the client listener (`--tls-cert` and `--tls-key`, both or neither),
    /// read from its files; the key must be private to its owner.
    pub fn client_tls(&self) -> Result<Option<ServerTls>, ConfigError> {
        match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => {
                let tls = ServerTls::from_files(cert, key).map_err(ConfigError::Invalid)?;
                // Front ends named by certificate present one from the cluster CA.
                match (
                    &self.tls.peer_trusted_ca_file,
                    self.frontend_trust().names.is_empty(),
                ) {
                    (Some(ca), false) => {
                        let pem = std::fs::read_to_string(ca).map_err(|e| {
                            ConfigError::Invalid(format!("cannot read {}: {e}", ca.display()))
                        })?;
                        Ok(Some(tls.with_client_ca(pem)))
                    }
                    (None, false) => Err(ConfigError::Invalid(
                        "--trusted-frontends names certificates: give --peer-trusted-ca-file"
                            .into(),
                    )),
                    _ => Ok(Some(tls)),
                }
            }
            (None, None) => Ok(None),
            _ => Err(ConfigError::Invalid(
                "--tls-cert and --tls-key go together".into(),
            )),
        }
    }

    /// True when Raft runs without TLS on its peer listener (`--insecure`).
    pub fn insecure(&self) -> bool {
        self.tls.insecure.unwrap_or(false)
    }

    /// Where the signing keys come from, if a key file or directory is set (a file's
    /// id defaults to [`DEFAULT_KEY_ID`]). An id without a file or directory, or both,
    /// is an error.
    pub fn signing_key(&self) -> Result<Option<KeySource>, ConfigError> {
        let t = &self.tokens;
        match (&t.signing_key_file, &t.signing_key_dir, &t.signing_key_id) {
            (Some(_), Some(_), _) => Err(ConfigError::Invalid(
                "signing_key_file and signing_key_dir are alternatives: give one".into(),
            )),
            (Some(path), None, kid) => Ok(Some(KeySource::File {
                path: path.clone(),
                kid: kid.clone().unwrap_or_else(|| DEFAULT_KEY_ID.to_owned()),
            })),
            (None, Some(path), current) => Ok(Some(KeySource::Dir {
                path: path.clone(),
                current: current.clone(),
            })),
            (None, None, Some(_)) => Err(ConfigError::Invalid(
                "signing_key_id is set but neither signing_key_file nor signing_key_dir".into(),
            )),
            (None, None, None) => Ok(None),
        }
    }

    /// [`Config::default()`] with the token, argon2 and lockout settings applied; no
    /// keys.
    fn core_config_without_keys(&self) -> Config {
        let mut c = Config::default();
        let t = &self.tokens;
        set(&mut c.access_token_ttl, &t.access_token_ttl);
        set(&mut c.refresh_token_ttl, &t.refresh_token_ttl);
        set(&mut c.session_max_lifetime, &t.session_max_lifetime);
        set(&mut c.max_sessions_per_user, &t.max_sessions_per_user);
        set(&mut c.issuer, &t.issuer);
        set(&mut c.audience, &t.audience);
        let a = &self.argon2;
        set(&mut c.hash.memory_kib, &a.memory_kib);
        set(&mut c.hash.iterations, &a.iterations);
        set(&mut c.hash.parallelism, &a.parallelism);
        set(&mut c.lockout.max_failures, &self.lockout.max_failures);
        set(&mut c.mfa.totp_issuer, &self.mfa.totp_issuer);
        if let (Some(rp_id), Some(origin)) = (&self.mfa.passkey_rp_id, &self.mfa.passkey_origin) {
            c.mfa.passkeys = Some(auth_core::PasskeyConfig::new(rp_id, origin));
        }
        if self.lockout.throttle == Some(false) {
            c.throttle = auth_core::ThrottlePolicy::disabled();
        }
        c
    }

    /// The `auth_core::Config`: [`Config::default()`] with these settings, and the
    /// signing keys loaded from their file or directory (none: a random key of
    /// `--signing-alg`, HS256 by default, at start-up).
    pub fn auth_config(&self) -> Result<Config, ConfigError> {
        let mut config = self.core_config_without_keys();
        let alg = self.tokens.signing_alg.map(auth_core::Algorithm::from);
        let ring = match self.signing_key()? {
            Some(src) => src.load()?,
            None => KeyRing::new(match alg {
                Some(auth_core::Algorithm::EdDsa) => SigningKey::generate_ed25519(),
                _ => SigningKey::generate_hs256(),
            }),
        };
        let signs_with = ring.current().algorithm();
        if alg.is_some_and(|alg| alg != signs_with) {
            return Err(ConfigError::Invalid(format!(
                "--signing-alg says {} but the signing key {:?} is {signs_with}",
                alg.map(|a| a.as_str()).unwrap_or_default(),
                ring.current().kid()
            )));
        }
        config.keys = Some(ring);
        match &self.mfa.mfa_key_file {
            Some(path) => {
                check_private_file(path).map_err(|e| ConfigError::Invalid(e.to_string()))?;
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                config.mfa.key = Some(
                    auth_core::mfa::MfaKey::from_base64(text.trim())
                        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?,
                );
            }
            // A key drawn per node would seal secrets the other nodes cannot open.
            None if self.storage() == StorageKind::Raft => config.mfa.totp_enabled = false,
            None => {}
        }
        config.validate()?;
        Ok(config)
    }

    /// The audit configuration: the `auth::audit` log target, plus the JSON-lines
    /// file of `--audit-log-file` (opened here, so a bad path fails the start), plus
    /// `recent` when given (what the admin page shows); stamped with the node name.
    pub fn audit(
        &self,
        recent: Option<Arc<auth_core::audit::RecentEvents>>,
    ) -> Result<auth_core::audit::Audit, ConfigError> {
        use auth_core::audit::{Audit, AuditSink, JsonLinesSink, Rotation, Tee, TracingSink};
        let mut sinks: Vec<Arc<dyn AuditSink>> = vec![Arc::new(TracingSink)];
        if let Some(path) = &self.audit.log_file {
            let defaults = Rotation::default();
            let rotation = Rotation {
                max_bytes: self.audit.max_bytes.unwrap_or(defaults.max_bytes),
                keep: self.audit.keep.unwrap_or(defaults.keep),
            };
            let file = JsonLinesSink::open(path, rotation).map_err(|e| ConfigError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            sinks.push(Arc::new(file));
        }

        let node = match (&self.audit.node_name, self.storage(), self.raft.id) {
            (Some(name), _, _) => name.clone(),
            (None, StorageKind::Raft, Some(id)) => format!("node-{id}"),
            (None, _, _) => self.listen().to_owned(),
        };
        Ok(Audit {
            sink: Arc::new(Tee(sinks)),
            node,
            recent: Some(recent.unwrap_or_else(|| {
                Arc::new(auth_core::audit::RecentEvents::new(
                    auth_core::audit::DEFAULT_RECENT_EVENTS,
                ))
            })),
        })
    }

    /// The `/metrics` bearer token (`--metrics-token-file`), if any: the file's first
    /// line; the file must be private, like a key file.
    pub fn metrics_token(&self) -> Result<Option<Zeroizing<String>>, ConfigError> {
        let Some(path) = &self.metrics_token_file else {
            return Ok(None);
        };
        check_private_file(path).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            );
        match text.lines().next().map(str::trim) {
            Some(t) if t.len() >= 16 => Ok(Some(Zeroizing::new(t.to_owned()))),
            _ => Err(ConfigError::Invalid(format!(
                "{}: the token (first line) must have at least 16 characters",
                path.display()
            ))),
        }
    }

    /// The administrator to create at start-up (`--bootstrap-admin`), with the first
    /// line of its password file (which must be private, like a key file).
    pub fn bootstrap_admin(&self) -> Result<Option<(String, Zeroizing<String>)>, ConfigError> {
        let (Some(name), Some(path)) = (
            &self.admin.bootstrap_admin,
            &self.admin.bootstrap_admin_password_file,
        ) else {
            return Ok(None);
        };
        check_private_file(path).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            );
        let password = text.lines().next().unwrap_or_default();
        if password.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{}: the first line (the password) is empty",
                path.display()
            )));
        }
        Ok(Some((name.clone(), Zeroizing::new(password.to_owned()))))
    }

    /// The Raft node configuration with `--storage raft` ([`RaftConfig::new`] with these
    /// settings), `None` with memory storage. Checks that `--id`, `--peers`,
    /// `--data-dir` and `--peer-listen` are given exactly when Raft is used, that the
    /// peer list is well formed and lists this node at the address its peer listener
    /// binds, and loads the peer TLS files (mutual TLS unless `--insecure`).
    pub fn raft_config(&self) -> Result<Option<RaftConfig>, ConfigError> {
        let r = &self.raft;
        let t = &self.tls;
        if self.storage() != StorageKind::Raft {
            if r.id.is_some() || r.peers.is_some() || r.data_dir.is_some() {
                return Err(ConfigError::Invalid(
                    "--id, --peers and --data-dir only apply to --storage raft".into(),
                ));
            }
            if r.peer_listen.is_some()
                || t.peer_cert_file.is_some()
                || t.peer_key_file.is_some()
                || t.peer_trusted_ca_file.is_some()
                || t.insecure.is_some()
            {
                return Err(ConfigError::Invalid(
                    "--peer-listen, the --peer-* TLS files and --insecure only apply to \
                     --storage raft"
                        .into(),
                ));
            }
            return Ok(None);
        }
        let missing = |f: &str| ConfigError::Invalid(format!("--storage raft needs --{f}"));
        let id = r.id.ok_or_else(|| missing("id"))?;
        let peers = parse_peers(r.peers.as_deref().ok_or_else(|| missing("peers"))?)
            .map_err(|e| ConfigError::Invalid(format!("--peers: {e}")))?;
        let data_dir = r.data_dir.clone().ok_or_else(|| missing("data-dir"))?;
        if id == 0 {
            return Err(ConfigError::Invalid("--id must be non-zero".into()));
        }
        if !peers.contains_key(&id) {
            return Err(ConfigError::Invalid(format!(
                "--peers does not list this node (id {id})"
            )));
        }
        let listen = r
            .peer_listen
            .as_deref()
            .ok_or_else(|| missing("peer-listen"))?;
        let addr = match peers.get(&id) {
            None => {
                return Err(ConfigError::Invalid(format!(
                    "--peers does not list this node (id {id})"
                )));
            }
            Some(a) if !listen_matches(listen, a) => {
                return Err(ConfigError::Invalid(format!(
                    "--peers lists node {id} at {a} but its peer listener is {listen}"
                )));
            }
            Some(a) => a.clone(),
        };
        if listen_matches(self.listen(), listen) || listen_matches(listen, self.listen()) {
            return Err(ConfigError::Invalid(format!(
                "--peer-listen {listen} must differ from --listen {}",
                self.listen()
            )));
        }
        let mut rc = RaftConfig::new(id, addr, data_dir);
        rc.initial_members = peers;
        set(&mut rc.max_snapshot_bytes, &r.max_snapshot_bytes);
        if let Some(skew) = r.max_clock_skew {
            rc.max_clock_skew = (!skew.is_zero()).then_some(skew);
        }
        rc.tls = match (
            self.insecure(),
            &t.peer_cert_file,
            &t.peer_key_file,
            &t.peer_trusted_ca_file,
        ) {
            (true, None, None, None) => None,
            (true, ..) => {
                return Err(ConfigError::Invalid(
                    "--insecure contradicts the --peer-* TLS files".into(),
                ));
            }
            (false, Some(cert), Some(key), Some(ca)) => {
                let files = TlsFiles {
                    ca: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                };
                Some(
                    PeerTls::load(&files, Some(&PeerIdentity::Node(id)))
                        .map_err(|e| ConfigError::Invalid(format!("peer TLS: {e}")))?,
                )
            }
            (false, ..) => {
                return Err(ConfigError::Invalid(
                    "--storage raft needs --peer-cert-file, --peer-key-file and \
                     --peer-trusted-ca-file (mutual TLS between nodes); --insecure runs \
                     without, for tests only"
                        .into(),
                ));
            }
        };
        set(&mut rc.cluster_id, &r.cluster_id);
        set(&mut rc.snapshot_every, &r.snapshot_every);
        set(&mut rc.logs_to_keep, &r.logs_to_keep);
        set(
            &mut rc.read_consistency,
            &r.read_consistency.map(Into::into),
        );
        Ok(Some(rc))
    }

    /// Checks everything that can be checked without reading the key file: the signing
    /// key settings, the Raft settings, the listen address, the request size limit and
    /// the `auth_core::Config` (lifetimes, claims, argon2 parameters).
    pub fn check(&self) -> Result<(), ConfigError> {
        let key = self.signing_key()?;
        self.raft_config()?;
        if self.storage() == StorageKind::Raft && key.is_none() {
            return Err(ConfigError::Invalid(
                "--storage raft needs a signing key shared by every node \
                 (--signing-key-file); `auth-backend cluster` generates one"
                    .into(),
            ));
        }
        self.client_tls()?;
        if self.listen().trim().is_empty() {
            return Err(ConfigError::Invalid("listen address is empty".into()));
        }
        let max_request_bytes = self.server_options().max_request_bytes;
        if max_request_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_request_bytes must be at least 1024".into(),
            ));
        }
        if u32::try_from(max_request_bytes).is_err() {
            return Err(ConfigError::Invalid(
                "max_request_bytes must be below 4 GiB".into(),
            ));
        }
        if self.admin.bootstrap_admin.is_some()
            != self.admin.bootstrap_admin_password_file.is_some()
        {
            return Err(ConfigError::Invalid(
                "--bootstrap-admin and --bootstrap-admin-password-file go together".into(),
            ));
        }
        if self.mfa.passkey_rp_id.is_some() != self.mfa.passkey_origin.is_some() {
            return Err(ConfigError::Invalid(
                "--passkey-rp-id and --passkey-origin go together".into(),
            ));
        }
        self.core_config_without_keys().validate()?;
        Ok(())
    }
}

/// True if a node listening on `listen` is reachable at `advertised` (same port; a
/// wildcard listen address matches any host).
fn listen_matches(listen: &str, advertised: &str) -> bool {
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_owned());
    let host = |a: &str| a.rsplit_once(':').map(|(h, _)| h.to_owned());
    port(listen) == port(advertised)
        && (host(listen) == host(advertised)
            || matches!(host(listen).as_deref(), Some("0.0.0.0" | "[::]")))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        let addr = addr.trim();
        if id == 0 {
            return Err("peer ids must be non-zero".into());
        }
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("peer {id} address {addr:?} is not host:port"));
        }
        if out.insert(id, addr.to_owned()).is_some() {
            return Err(format!("peer id {id} appears twice"));
        }
    }
    if out.is_empty() {
        return Err("the peer list is empty".into());
    }
    let mut addrs: Vec<&String> = out.values().collect();
    addrs.sort();
    addrs.dedup();
    if addrs.len() != out.len() {
        return Err("two peers share an address".into());
    }
    Ok(out)
}
