//! The `auth-backend` command line and its optional TOML configuration file.
//!
//! Every setting can come from three places; the first one that has it wins:
//!
//! 1. a command-line flag (`--listen 0.0.0.0:50051`), or its environment variable
//!    (`AUTH_BACKEND_LISTEN`), which clap treats as the flag;
//! 2. the configuration file given with `--config FILE` (`AUTH_BACKEND_CONFIG`);
//! 3. the built-in default.
//!
//! The file uses the flag names with underscores, argon2 settings in an `[argon2]` table.
//! Unknown keys are rejected, so a typo cannot silently fall back to a default:
//!
//! ```toml
//! listen = "0.0.0.0:50051"
//! storage = "memory"
//! access_token_ttl = "15m"      # or an integer number of seconds
//! refresh_token_ttl = "30d"
//! issuer = "example.com"
//! audience = "example.com"
//! signing_key_file = "keys/current.pem"   # relative to this file
//! signing_key_id = "2024-06"
//! max_request_bytes = 65536
//! log_format = "json"
//!
//! [argon2]
//! memory_kib = 19456
//! iterations = 2
//! parallelism = 1
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auth_core::{AuthError, Config, HashParams, KeyRing, SigningKey};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Deserializer};

use crate::server::{DEFAULT_MAX_REQUEST_BYTES, ServerOptions};

/// Address served when none is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Key id used for `--signing-key-file` when `--signing-key-id` is not given.
pub const DEFAULT_KEY_ID: &str = "default";
/// How long shutdown waits for in-flight calls by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// `auth-backend`: the auth-sdk gRPC server.
#[derive(Debug, Parser)]
#[command(name = "auth-backend", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the flags would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve AuthService (with gRPC health and reflection) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Start a local Raft cluster of `serve --storage raft` processes (default 5 nodes
    /// on ports 50051, 50061, …) and stop them all on Ctrl-C.
    Cluster(crate::cluster::ClusterArgs),
}

/// Flags of `auth-backend serve`. Every field is optional so that a flag which was not
/// given leaves the configuration file's value in place.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment variables override its values.
    #[arg(long, env = "AUTH_BACKEND_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:50051].
    #[arg(long, env = "AUTH_BACKEND_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Storage backend [default: memory].
    #[arg(long, env = "AUTH_BACKEND_STORAGE", value_enum)]
    pub storage: Option<StorageKind>,

    /// Access-token lifetime, e.g. `900`, `15m` [default: 15m].
    #[arg(long, env = "AUTH_BACKEND_ACCESS_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub access_token_ttl: Option<Duration>,

    /// Refresh-token (idle session) lifetime, e.g. `30d` [default: 30d].
    #[arg(long, env = "AUTH_BACKEND_REFRESH_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub refresh_token_ttl: Option<Duration>,

    /// Absolute session lifetime, however often it is refreshed [default: 90d].
    #[arg(long, env = "AUTH_BACKEND_SESSION_MAX_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    pub session_max_lifetime: Option<Duration>,

    /// argon2id memory cost in KiB [default: 19456].
    #[arg(long, env = "AUTH_BACKEND_ARGON2_MEMORY_KIB", value_name = "KIB")]
    pub argon2_memory_kib: Option<u32>,

    /// argon2id passes over memory [default: 2].
    #[arg(long, env = "AUTH_BACKEND_ARGON2_ITERATIONS", value_name = "N")]
    pub argon2_iterations: Option<u32>,

    /// argon2id lanes [default: 1].
    #[arg(long, env = "AUTH_BACKEND_ARGON2_PARALLELISM", value_name = "N")]
    pub argon2_parallelism: Option<u32>,

    /// `iss` claim of issued tokens [default: auth-sdk].
    #[arg(long, env = "AUTH_BACKEND_ISSUER")]
    pub issuer: Option<String>,

    /// `aud` claim of issued tokens [default: auth-sdk].
    #[arg(long, env = "AUTH_BACKEND_AUDIENCE")]
    pub audience: Option<String>,

    /// Access-token signing key: a PKCS#8 PEM Ed25519 private key or a base64 HS256
    /// secret (at least 32 bytes). Without it a random key is generated and tokens do
    /// not survive a restart.
    #[arg(long, env = "AUTH_BACKEND_SIGNING_KEY_FILE", value_name = "PATH")]
    pub signing_key_file: Option<PathBuf>,

    /// Key id (`kid`) of the signing key [default: default].
    #[arg(long, env = "AUTH_BACKEND_SIGNING_KEY_ID", value_name = "KID")]
    pub signing_key_id: Option<String>,

    /// Largest accepted request message in bytes [default: 65536].
    #[arg(long, env = "AUTH_BACKEND_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Log format on stderr; the level comes from RUST_LOG [default: text, level info].
    #[arg(long, env = "AUTH_BACKEND_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// How long shutdown waits for in-flight calls before giving up [default: 30s].
    #[arg(long, env = "AUTH_BACKEND_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Raft: this node's id (non-zero).
    #[arg(long, env = "AUTH_BACKEND_ID", value_name = "N")]
    pub id: Option<u64>,

    /// Raft: every initial member as `id=host:port`, comma-separated, this node
    /// included (e.g. `1=127.0.0.1:50051,2=127.0.0.1:50061,3=127.0.0.1:50071`).
    #[arg(long, env = "AUTH_BACKEND_PEERS", value_name = "LIST")]
    pub peers: Option<String>,

    /// Raft: directory for the log, vote and snapshots.
    #[arg(long, env = "AUTH_BACKEND_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Raft: cluster name; a node refuses data directories and peers of other
    /// clusters [default: auth-sdk].
    #[arg(long, env = "AUTH_BACKEND_CLUSTER_ID", value_name = "NAME")]
    pub cluster_id: Option<String>,

    /// Raft: `linearizable` reads (default) or `local` (faster, possibly stale: a token
    /// logged out a moment ago may still verify on a lagging node).
    #[arg(long, env = "AUTH_BACKEND_READ_CONSISTENCY", value_enum)]
    pub read_consistency: Option<ReadMode>,

    /// Raft: build a snapshot and compact the log every N entries [default: 10000].
    #[arg(long, env = "AUTH_BACKEND_SNAPSHOT_EVERY", value_name = "N")]
    pub snapshot_every: Option<u64>,

    /// Raft: log entries kept behind a snapshot for slightly lagging followers
    /// [default: 1000].
    #[arg(long, env = "AUTH_BACKEND_LOGS_TO_KEEP", value_name = "N")]
    pub logs_to_keep: Option<u64>,

    /// Consecutive failed logins before an account locks; 0 disables lockout
    /// [default: 5].
    #[arg(long, env = "AUTH_BACKEND_LOCKOUT_MAX_FAILURES", value_name = "N")]
    pub lockout_max_failures: Option<u32>,
}

/// Raft read consistency, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// Every read sees every write acknowledged before it started.
    #[default]
    Linearizable,
    /// Read the local replica as it is.
    Local,
}

/// The Raft settings of `serve --storage raft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// This node's id.
    pub id: u64,
    /// Initial members, id → address.
    pub peers: std::collections::BTreeMap<u64, String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Cluster name.
    pub cluster_id: String,
    /// Read consistency.
    pub read: ReadMode,
    /// Snapshot interval in log entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot.
    pub logs_to_keep: u64,
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut out = std::collections::BTreeMap::new();
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

/// Where accounts and sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// In this process's memory: lost on restart, not shared.
    Memory,
    /// Replicated with Raft across the `--peers` (needs `--id`, `--data-dir`).
    Raft,
}

impl fmt::Display for StorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageKind::Memory => "memory",
            StorageKind::Raft => "raft",
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration file. Every key is optional; unknown keys are an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--listen`.
    pub listen: Option<String>,
    /// See `--storage`.
    pub storage: Option<StorageKind>,
    /// See `--access-token-ttl`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub access_token_ttl: Option<Duration>,
    /// See `--refresh-token-ttl`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub refresh_token_ttl: Option<Duration>,
    /// See `--session-max-lifetime`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub session_max_lifetime: Option<Duration>,
    /// The `[argon2]` table.
    pub argon2: Option<Argon2File>,
    /// See `--issuer`.
    pub issuer: Option<String>,
    /// See `--audience`.
    pub audience: Option<String>,
    /// See `--signing-key-file`; a relative path is relative to the configuration file.
    pub signing_key_file: Option<PathBuf>,
    /// See `--signing-key-id`.
    pub signing_key_id: Option<String>,
    /// See `--max-request-bytes`.
    pub max_request_bytes: Option<usize>,
    /// See `--log-format`.
    pub log_format: Option<LogFormat>,
    /// See `--shutdown-timeout`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// See `--id`.
    pub id: Option<u64>,
    /// See `--peers`.
    pub peers: Option<String>,
    /// See `--data-dir`; relative to the configuration file.
    pub data_dir: Option<PathBuf>,
    /// See `--cluster-id`.
    pub cluster_id: Option<String>,
    /// See `--read-consistency`.
    pub read_consistency: Option<ReadMode>,
    /// See `--snapshot-every`.
    pub snapshot_every: Option<u64>,
    /// See `--logs-to-keep`.
    pub logs_to_keep: Option<u64>,
    /// See `--lockout-max-failures`.
    pub lockout_max_failures: Option<u32>,
}

/// The `[argon2]` table of the configuration file.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2File {
    /// Memory cost in KiB.
    pub memory_kib: Option<u32>,
    /// Passes over memory.
    pub iterations: Option<u32>,
    /// Lanes.
    pub parallelism: Option<u32>,
}

impl FileConfig {
    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Reads and parses a configuration file. Relative paths inside it are made
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut file = Self::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_owned(),
            reason,
        })?;
        if let (Some(key), Some(dir)) = (&file.signing_key_file, path.parent())
            && key.is_relative()
        {
            file.signing_key_file = Some(dir.join(key));
        }
        if let (Some(data), Some(dir)) = (&file.data_dir, path.parent())
            && data.is_relative()
        {
            file.data_dir = Some(dir.join(data));
        }
        Ok(file)
    }
}

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// The key file.
    pub path: PathBuf,
    /// The key id.
    pub kid: String,
}

/// The resolved settings of `auth-backend serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: String,
    /// Storage backend (only [`StorageKind::Memory`] today).
    pub storage: StorageKind,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh-token (idle session) lifetime.
    pub refresh_token_ttl: Duration,
    /// Absolute session lifetime.
    pub session_max_lifetime: Duration,
    /// argon2id parameters.
    pub hash: HashParams,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim.
    pub audience: String,
    /// The signing key; `None` generates a random key at start-up.
    pub signing_key: Option<KeySource>,
    /// Largest accepted request message in bytes.
    pub max_request_bytes: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_timeout: Duration,
    /// Raft settings, with `storage = raft`.
    pub raft: Option<RaftSettings>,
    /// Failed logins before lockout (0 = never lock).
    pub lockout_max_failures: u32,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let core = Config::default();
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            storage: StorageKind::Memory,
            access_token_ttl: core.access_token_ttl,
            refresh_token_ttl: core.refresh_token_ttl,
            session_max_lifetime: core.session_max_lifetime,
            hash: core.hash,
            issuer: core.issuer,
            audience: core.audience,
            signing_key: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            log_format: LogFormat::Text,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            raft: None,
            lockout_max_failures: core.lockout.max_failures,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The configuration file is not valid TOML or has an unknown key or a bad value.
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column.
        reason: String,
    },
    /// A storage backend this build cannot serve.
    UnsupportedStorage(StorageKind),
    /// A setting is out of range or settings contradict each other.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            ConfigError::Parse { path, reason } => {
                write!(f, "invalid config file {}: {reason}", path.display())
            }
            ConfigError::UnsupportedStorage(kind) => write!(
                f,
                "storage {kind:?} cannot be used with these settings",
                kind = kind.to_string()
            ),
            ConfigError::Invalid(m) => write!(f, "invalid configuration: {m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<AuthError> for ConfigError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidConfig(m) => ConfigError::Invalid(m),
            other => ConfigError::Invalid(other.to_string()),
        }
    }
}

impl ServeArgs {
    /// Reads the configuration file, if any, and applies flags over it and defaults
    /// under it.
    pub fn resolve(&self) -> Result<ServeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        self.resolve_with(file)
    }

    /// Like [`ServeArgs::resolve`] with an already parsed file.
    pub fn resolve_with(&self, file: FileConfig) -> Result<ServeConfig, ConfigError> {
        let d = ServeConfig::default();
        let argon2 = file.argon2.unwrap_or_default();
        let key_file = self.signing_key_file.clone().or(file.signing_key_file);
        let key_id = self.signing_key_id.clone().or(file.signing_key_id);
        let signing_key = match (key_file, key_id) {
            (Some(path), kid) => Some(KeySource {
                path,
                kid: kid.unwrap_or_else(|| DEFAULT_KEY_ID.to_owned()),
            }),
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "signing_key_id is set but signing_key_file is not".into(),
                ));
            }
            (None, None) => None,
        };
        let storage = pick(self.storage, file.storage, d.storage);
        let id = self.id.or(file.id);
        let peers = self.peers.clone().or(file.peers);
        let data_dir = self.data_dir.clone().or(file.data_dir);
        let raft = match storage {
            StorageKind::Raft => {
                let missing = |f: &str| ConfigError::Invalid(format!("--storage raft needs --{f}"));
                let id = id.ok_or_else(|| missing("id"))?;
                let peers = parse_peers(&peers.ok_or_else(|| missing("peers"))?)
                    .map_err(|e| ConfigError::Invalid(format!("--peers: {e}")))?;
                Some(RaftSettings {
                    id,
                    peers,
                    data_dir: data_dir.ok_or_else(|| missing("data-dir"))?,
                    cluster_id: self
                        .cluster_id
                        .clone()
                        .or(file.cluster_id)
                        .unwrap_or_else(|| "auth-sdk".into()),
                    read: self
                        .read_consistency
                        .or(file.read_consistency)
                        .unwrap_or_default(),
                    snapshot_every: self
                        .snapshot_every
                        .or(file.snapshot_every)
                        .unwrap_or(10_000),
                    logs_to_keep: self.logs_to_keep.or(file.logs_to_keep).unwrap_or(1_000),
                })
            }
            StorageKind::Memory => {
                if id.is_some() || peers.is_some() || data_dir.is_some() {
                    return Err(ConfigError::Invalid(
                        "--id, --peers and --data-dir only apply to --storage raft".into(),
                    ));
                }
                None
            }
        };
        let cfg = ServeConfig {
            raft,
            lockout_max_failures: pick(
                self.lockout_max_failures,
                file.lockout_max_failures,
                d.lockout_max_failures,
            ),
            listen: pick(self.listen.clone(), file.listen, d.listen),
            storage,
            access_token_ttl: pick(
                self.access_token_ttl,
                file.access_token_ttl,
                d.access_token_ttl,
            ),
            refresh_token_ttl: pick(
                self.refresh_token_ttl,
                file.refresh_token_ttl,
                d.refresh_token_ttl,
            ),
            session_max_lifetime: pick(
                self.session_max_lifetime,
                file.session_max_lifetime,
                d.session_max_lifetime,
            ),
            hash: HashParams {
                memory_kib: pick(self.argon2_memory_kib, argon2.memory_kib, d.hash.memory_kib),
                iterations: pick(self.argon2_iterations, argon2.iterations, d.hash.iterations),
                parallelism: pick(
                    self.argon2_parallelism,
                    argon2.parallelism,
                    d.hash.parallelism,
                ),
            },
            issuer: pick(self.issuer.clone(), file.issuer, d.issuer),
            audience: pick(self.audience.clone(), file.audience, d.audience),
            signing_key,
            max_request_bytes: pick(
                self.max_request_bytes,
                file.max_request_bytes,
                d.max_request_bytes,
            ),
            log_format: pick(self.log_format, file.log_format, d.log_format),
            shutdown_timeout: pick(
                self.shutdown_timeout,
                file.shutdown_timeout,
                d.shutdown_timeout,
            ),
        };
        cfg.check()?;
        Ok(cfg)
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

fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

impl ServeConfig {
    /// Checks what can be checked without touching the key file.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(r) = &self.raft {
            if r.id == 0 {
                return Err(ConfigError::Invalid("--id must be non-zero".into()));
            }
            match r.peers.get(&r.id) {
                None => {
                    return Err(ConfigError::Invalid(format!(
                        "--peers does not list this node (id {})",
                        r.id
                    )));
                }
                Some(a) if !listen_matches(&self.listen, a) => {
                    return Err(ConfigError::Invalid(format!(
                        "--peers lists node {} at {a} but it listens on {}",
                        r.id, self.listen
                    )));
                }
                Some(_) => {}
            }
        } else if self.storage == StorageKind::Raft {
            return Err(ConfigError::UnsupportedStorage(self.storage));
        }
        if self.listen.trim().is_empty() {
            return Err(ConfigError::Invalid("listen address is empty".into()));
        }
        if self.max_request_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_request_bytes must be at least 1024".into(),
            ));
        }
        if u32::try_from(self.max_request_bytes).is_err() {
            return Err(ConfigError::Invalid(
                "max_request_bytes must be below 4 GiB".into(),
            ));
        }
        self.core_config_without_keys().validate()?;
        Ok(())
    }

    fn core_config_without_keys(&self) -> Config {
        Config {
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            session_max_lifetime: self.session_max_lifetime,
            hash: self.hash,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            lockout: auth_core::LockoutPolicy {
                max_failures: self.lockout_max_failures,
                ..auth_core::LockoutPolicy::default()
            },
            ..Config::default()
        }
    }

    /// The `auth_core::Config`, with the signing key loaded from its file.
    pub fn auth_config(&self) -> Result<Config, ConfigError> {
        let mut config = self.core_config_without_keys();
        if let Some(src) = &self.signing_key {
            let key = SigningKey::from_file(src.kid.clone(), &src.path)?;
            config.keys = Some(KeyRing::new(key));
        }
        config.validate()?;
        Ok(config)
    }

    /// The gRPC server options.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            max_request_bytes: self.max_request_bytes,
            ..ServerOptions::default()
        }
    }
}

/// Parses a duration: an integer number of seconds (`900`) or an integer with a unit,
/// `ms`, `s`, `m`, `h` or `d` (`15m`, `30d`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad =
        || format!("invalid duration {text:?}: expected e.g. 900, 30s, 15m, 12h, 30d or 500ms");
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs_per = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Secs(s)) => Ok(Some(Duration::from_secs(s))),
        Some(Raw::Text(t)) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServeArgs {
        let mut argv = vec!["auth-backend", "serve"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
            Command::Cluster(_) => unreachable!("serve was parsed"),
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "m",
            "-5s",
            "1.5h",
            "10y",
            "99999999999999999999",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let cfg = args(&[]).resolve().unwrap();
        assert_eq!(cfg, ServeConfig::default());
        assert_eq!(cfg.listen, "127.0.0.1:50051");
        assert_eq!(cfg.hash, HashParams::default());
        assert_eq!(cfg.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file = FileConfig::parse(
            r#"
            listen = "0.0.0.0:7000"
            access_token_ttl = "5m"
            refresh_token_ttl = 3600
            issuer = "file-iss"
            max_request_bytes = 2048
            log_format = "json"
            [argon2]
            memory_kib = 128
            iterations = 3
            "#,
        )
        .unwrap();
        let a = args(&[
            "--listen",
            "127.0.0.1:0",
            "--argon2-iterations",
            "1",
            "--audience",
            "flag-aud",
        ]);
        let cfg = a.resolve_with(file).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:0");
        assert_eq!(cfg.access_token_ttl, Duration::from_secs(300));
        assert_eq!(cfg.refresh_token_ttl, Duration::from_secs(3600));
        assert_eq!(cfg.issuer, "file-iss");
        assert_eq!(cfg.audience, "flag-aud");
        assert_eq!(cfg.max_request_bytes, 2048);
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(
            cfg.hash,
            HashParams {
                memory_kib: 128,
                iterations: 1,
                parallelism: 1
            }
        );
        assert_eq!(cfg.server_options().max_request_bytes, 2048);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = FileConfig::parse("listen = \"x:1\"\nlisten_addr = \"y:2\"\n").unwrap_err();
        assert!(e.contains("listen_addr"), "{e}");
        let e = FileConfig::parse("[argon2]\nmemory = 5\n").unwrap_err();
        assert!(e.contains("memory"), "{e}");
        let e = FileConfig::parse("access_token_ttl = \"soon\"\n").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        let e = FileConfig::parse("storage = \"disk\"\n").unwrap_err();
        assert!(e.contains("disk"), "{e}");
    }

    #[test]
    fn raft_storage_needs_id_peers_and_data_dir() {
        let e = args(&["--storage", "raft"]).resolve().unwrap_err();
        assert!(e.to_string().contains("--id"), "{e}");
        let e = args(&["--storage", "raft", "--id", "1", "--data-dir", "/tmp/x"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--peers"), "{e}");
        // A flag can override the file's choice.
        let file = FileConfig::parse("storage = \"raft\"").unwrap();
        assert!(args(&["--storage", "memory"]).resolve_with(file).is_ok());
        let ok = args(&[
            "--storage",
            "raft",
            "--id",
            "2",
            "--listen",
            "127.0.0.1:50061",
            "--data-dir",
            "/tmp/x",
            "--peers",
            "1=127.0.0.1:50051,2=127.0.0.1:50061,3=127.0.0.1:50071",
        ])
        .resolve()
        .unwrap();
        let r = ok.raft.unwrap();
        assert_eq!(r.id, 2);
        assert_eq!(r.peers.len(), 3);
        assert_eq!(r.read, ReadMode::Linearizable);
    }

    #[test]
    fn wrong_peer_lists_are_rejected() {
        let base = [
            "--storage",
            "raft",
            "--id",
            "2",
            "--listen",
            "127.0.0.1:50061",
            "--data-dir",
            "/tmp/x",
        ];
        for (peers, why) in [
            (
                "1=127.0.0.1:50051,3=127.0.0.1:50071",
                "does not list this node",
            ),
            ("1=127.0.0.1:50051,2=127.0.0.1:59999", "listens on"),
            ("1=127.0.0.1:50051,1=127.0.0.1:50061", "twice"),
            ("0=127.0.0.1:50061,2=127.0.0.1:50061", "non-zero"),
            ("x=127.0.0.1:50061", "not a number"),
            ("2=nowhere", "host:port"),
            ("1=127.0.0.1:50061,2=127.0.0.1:50061", "share an address"),
            ("", "empty"),
        ] {
            let mut a: Vec<&str> = base.to_vec();
            a.extend(["--peers", peers]);
            let e = args(&a).resolve().unwrap_err();
            assert!(e.to_string().contains(why), "{peers}: {e}");
        }
        let e = args(&["--id", "1"]).resolve().unwrap_err();
        assert!(
            e.to_string().contains("only apply to --storage raft"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["auth-backend", "serve", "--storage", "disk"]).is_err());
        assert!(Cli::try_parse_from(["auth-backend", "serve", "--access-token-ttl", "x"]).is_err());
        for bad in [
            &["--access-token-ttl", "0"][..],
            &["--argon2-memory-kib", "1"],
            &["--argon2-parallelism", "0"],
            &["--issuer", ""],
            &["--max-request-bytes", "10"],
            &["--signing-key-id", "k1"],
        ] {
            let e = args(bad).resolve().unwrap_err();
            assert!(matches!(e, ConfigError::Invalid(_)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let e = args(&["--config", "/nonexistent/auth-backend.toml"])
            .resolve()
            .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/auth-backend.toml"),
            "{e}"
        );
    }

    #[test]
    fn signing_key_is_loaded_with_its_id_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("auth-backend-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hs.key"),
            "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
        )
        .unwrap();
        let conf = dir.join("backend.toml");
        std::fs::write(
            &conf,
            "signing_key_file = \"hs.key\"\nsigning_key_id = \"k-2024\"\n",
        )
        .unwrap();
        let cfg = args(&["--config", conf.to_str().unwrap()])
            .resolve()
            .unwrap();
        let src = cfg.signing_key.clone().unwrap();
        assert_eq!(src.path, dir.join("hs.key"));
        assert_eq!(src.kid, "k-2024");
        let core = cfg.auth_config().unwrap();
        assert_eq!(core.keys.unwrap().current().kid(), "k-2024");

        // Without an id, the default id; a bad file is a configuration error.
        let cfg = args(&["--signing-key-file", dir.join("hs.key").to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(cfg.signing_key.as_ref().unwrap().kid, DEFAULT_KEY_ID);
        assert!(cfg.auth_config().is_ok());
        std::fs::write(dir.join("short.key"), "c2hvcnQ=").unwrap();
        let cfg = args(&[
            "--signing-key-file",
            dir.join("short.key").to_str().unwrap(),
        ])
        .resolve()
        .unwrap();
        assert!(matches!(cfg.auth_config(), Err(ConfigError::Invalid(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_signing_key_means_none() {
        let cfg = args(&[]).resolve().unwrap();
        assert!(cfg.auth_config().unwrap().keys.is_none());
    }
}
