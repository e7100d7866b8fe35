//! The `auth-backend` command line and its optional TOML configuration file, as one
//! settings model: [`Settings`].
//!
//! Every setting can come from three places; the first one that has it wins:
//!
//! 1. a command-line flag (`--listen 0.0.0.0:50051`), or its environment variable
//!    (`AUTH_BACKEND_LISTEN`), which clap treats as the flag;
//! 2. the configuration file given with `--config FILE` (`AUTH_BACKEND_CONFIG`);
//! 3. the default of the library that uses it: [`auth_core::Config::default()`] for
//!    tokens, argon2 and lockout, [`auth_raft::RaftConfig::new`] for Raft,
//!    [`ServerOptions::default()`](crate::server::ServerOptions) for the gRPC server, and
//!    the constants of this module for the rest.
//!
//! [`Settings`] holds only what was given (every field is an `Option`), grouped as the
//! file is: the server settings are top-level keys, every other group is a table. A key
//! is its flag's name with underscores and without the table's name
//! (`--argon2-memory-kib` is `memory_kib` in `[argon2]`, `--tls-cert` is `cert` in
//! `[tls]`). Unknown keys and tables are rejected, so a typo cannot silently fall back to
//! a default. Relative paths are relative to the file's directory. Durations are an
//! integer number of seconds or a string with a unit (`"500ms"`, `"30s"`, `"15m"`,
//! `"12h"`, `"30d"`).
//!
//! ```toml
//! # Server (top-level keys).
//! listen = "0.0.0.0:50051"
//! storage = "raft"
//! max_request_bytes = 65536
//! max_connections = 10000           # per listener
//! max_concurrent_streams = 256      # per connection
//! metrics_listen = "10.0.0.1:9090"  # Prometheus, GET /metrics
//! metrics_token_file = "keys/metrics.token"   # bearer token, mode 0600
//! log_format = "json"
//! shutdown_timeout = "30s"
//!
//! [tokens]
//! access_token_ttl = "15m"          # or an integer number of seconds: 900
//! refresh_token_ttl = "30d"
//! session_max_lifetime = "90d"
//! max_sessions_per_user = 100       # one more sign-in ends the oldest; 0: no bound
//! issuer = "example.com"
//! audience = "example.com"
//! signing_key_file = "keys/current.pem"   # relative to this file
//! signing_key_id = "2024-06"
//!
//! [mfa]
//! mfa_key_file = "keys/mfa.key"     # seals TOTP secrets; the same on every node
//! totp_issuer = "Example"           # shown in authenticator apps
//! passkey_rp_id = "example.com"     # passkeys (WebAuthn): the relying party
//! passkey_origin = "https://login.example.com"
//!
//! [audit]
//! log_file = "audit/events.jsonl"  # JSON lines, rotated by size, mode 0600
//! max_bytes = 104857600
//! keep = 10
//! node_name = "eu-1"                # on every event [default: node-<id>]
//!
//! [admin]
//! bootstrap_admin = "root"          # created at start-up if the name is free
//! bootstrap_admin_password_file = "keys/root.pw"   # first line; mode 0600
//!
//! [argon2]
//! memory_kib = 19456
//! iterations = 2
//! parallelism = 1
//!
//! [lockout]
//! max_failures = 5
//!
//! [raft]                            # with storage = "raft"
//! id = 1
//! peers = "1=10.0.0.1:50052,2=10.0.0.2:50052,3=10.0.0.3:50052"   # peer listeners
//! data_dir = "data"                 # relative to this file
//! cluster_id = "example-prod"
//! read_consistency = "lease"
//! snapshot_every = 10000
//! logs_to_keep = 1000
//! peer_listen = "0.0.0.0:50052"
//! max_snapshot_bytes = 67108864
//!
//! [tls]
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//! peer_cert_file = "tls/peer.pem"
//! peer_key_file = "tls/peer.key"
//! peer_trusted_ca_file = "tls/ca.pem"
//! insecure = false
//! ```
//!
//! The program asks [`Settings`] for what it needs ([`Settings::auth_config`],
//! [`Settings::raft_config`], [`Settings::server_options`], [`Settings::listen`], ...);
//! [`Settings::check`] runs every validation that does not read the key file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use auth_core::AuthError;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

mod duration;
mod file;
mod resolve;
mod settings;
#[cfg(test)]
mod tests;

pub use duration::parse_duration;
pub use resolve::{KeySource, parse_peers};
pub use settings::{
    Argon2Settings, LockoutSettings, RaftSettings, Settings, SigningAlg, TlsSettings, TokenSettings,
};

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
    Serve(Settings),
    /// Start a local Raft cluster of `serve --storage raft` processes (default 5 nodes
    /// on client ports 50051, 50061, … and peer ports 50052, 50062, …), with TLS
    /// everywhere, and stop them all on Ctrl-C.
    Cluster(crate::cluster::ClusterArgs),
    /// Create the cluster CA and node, client and admin certificates.
    #[command(subcommand)]
    Certs(crate::certs::CertsCmd),
    /// Create the first administrator of a running cluster: a new account with the
    /// `admin` role, through the nodes' peer listeners with an admin certificate. The
    /// password is prompted for on a terminal, else read as one line of stdin.
    BootstrapAdmin(crate::bootstrap::BootstrapArgs),
    /// Generate and list the signing keys of a key directory (`--signing-key-dir`).
    #[command(subcommand)]
    Keys(crate::keys::KeysCmd),
    /// Seed one member of a new Raft cluster from a backup file (`authctl cluster
    /// snapshot save`): run it for every member with the same file and `--peers`, then
    /// start them with `serve --storage raft`.
    Restore(crate::restore::RestoreArgs),
}

/// Where accounts and sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// In this process's memory: lost on restart, not shared.
    #[default]
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

/// Raft read consistency, as a flag value; the default is the library's
/// ([`auth_raft::RaftConfig::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// Linearizable, the leader confirming leadership once per lease (the default;
    /// assumes members' clocks run at about the same rate). `linearizable` is accepted
    /// for it.
    #[value(alias = "linearizable")]
    #[serde(alias = "linearizable")]
    Lease,
    /// Linearizable, the leader confirming leadership with a quorum round for every
    /// batch of reads: no clock assumption.
    ReadIndex,
    /// Read the local replica as it is.
    Local,
}

impl From<ReadMode> for auth_raft::ReadConsistency {
    fn from(mode: ReadMode) -> Self {
        match mode {
            ReadMode::Lease => auth_raft::ReadConsistency::Lease,
            ReadMode::ReadIndex => auth_raft::ReadConsistency::ReadIndex,
            ReadMode::Local => auth_raft::ReadConsistency::Local,
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
