//! [`Settings`]: every setting of `auth-backend serve`, as given (flags, environment,
//! file), grouped the way the configuration file is.

use std::path::PathBuf;
use std::time::Duration;

use auth_core::HashParams;
use clap::Args;
use serde::Deserialize;

use super::duration::{de_opt_duration, parse_duration};
use super::{LogFormat, ReadMode, StorageKind};

/// The settings of `auth-backend serve`: flags (and their `AUTH_BACKEND_*` environment
/// variables) with clap, the configuration file with serde. Every field is optional:
/// what is not given is taken from the layer below ([`Settings::merge`]) and finally
/// from the libraries' defaults (see the methods in [`crate::config`]).
///
/// The fields of this struct are the server settings (top-level keys in the file); the
/// other groups are tables of the file (`[tokens]`, `[mfa]`, `[audit]`, `[admin]`, `[argon2]`, `[lockout]`,
/// `[raft]`, `[tls]`). `Settings { listen: Some(..), ..Settings::default() }` is a valid value.
#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file; flags and environment variables override its values.
    #[arg(long, env = "AUTH_BACKEND_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:50051].
    #[arg(long, env = "AUTH_BACKEND_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Storage backend [default: memory].
    #[arg(long, env = "AUTH_BACKEND_STORAGE", value_enum)]
    pub storage: Option<StorageKind>,

    /// Largest accepted request message in bytes [default: 65536].
    #[arg(long, env = "AUTH_BACKEND_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Most client connections served at once (not enforced yet).
    #[arg(long, env = "AUTH_BACKEND_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most concurrent HTTP/2 streams (calls) per client connection (not enforced yet).
    #[arg(long, env = "AUTH_BACKEND_MAX_CONCURRENT_STREAMS", value_name = "N")]
    pub max_concurrent_streams: Option<u32>,

    /// Serve Prometheus metrics (`GET /metrics`) on this address, a listener of its
    /// own [default: none]. Keep it on a private network, or set
    /// --metrics-token-file.
    #[arg(long, env = "AUTH_BACKEND_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Require `Authorization: Bearer <token>` on `/metrics`: the token is the first
    /// line of this file (mode 0600), as Prometheus's `authorization.credentials_file`.
    #[arg(long, env = "AUTH_BACKEND_METRICS_TOKEN_FILE", value_name = "PATH")]
    pub metrics_token_file: Option<PathBuf>,

    /// Log format on stderr; the level comes from RUST_LOG [default: text, level info].
    #[arg(long, env = "AUTH_BACKEND_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// How long shutdown waits for in-flight calls before giving up [default: 30s].
    #[arg(long, env = "AUTH_BACKEND_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub shutdown_timeout: Option<Duration>,

    /// Tokens: lifetimes, claims and the signing key (`[tokens]`).
    #[command(flatten)]
    #[serde(default)]
    pub tokens: TokenSettings,

    /// Second factors (`[mfa]`).
    #[command(flatten)]
    #[serde(default)]
    pub mfa: MfaSettings,

    /// The audit trail (`[audit]`).
    #[command(flatten)]
    #[serde(default)]
    pub audit: AuditSettings,

    /// Administration: the first administrator (`[admin]`).
    #[command(flatten)]
    #[serde(default)]
    pub admin: AdminSettings,

    /// Password hashing (`[argon2]`).
    #[command(flatten)]
    #[serde(default)]
    pub argon2: Argon2Settings,

    /// Failed-login lockout (`[lockout]`).
    #[command(flatten)]
    #[serde(default)]
    pub lockout: LockoutSettings,

    /// Raft replication, with `--storage raft` (`[raft]`).
    #[command(flatten)]
    #[serde(default)]
    pub raft: RaftSettings,

    /// TLS for clients and peers (`[tls]`).
    #[command(flatten)]
    #[serde(default)]
    pub tls: TlsSettings,
}

/// Token settings: the `[tokens]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Tokens")]
pub struct TokenSettings {
    /// Access-token lifetime, e.g. `900`, `15m` [default: 15m].
    #[arg(long, env = "AUTH_BACKEND_ACCESS_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub access_token_ttl: Option<Duration>,

    /// Refresh-token (idle session) lifetime, e.g. `30d` [default: 30d].
    #[arg(long, env = "AUTH_BACKEND_REFRESH_TOKEN_TTL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub refresh_token_ttl: Option<Duration>,

    /// Absolute session lifetime, however often it is refreshed [default: 90d].
    #[arg(long, env = "AUTH_BACKEND_SESSION_MAX_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub session_max_lifetime: Option<Duration>,

    /// Most sessions one user may have; signing in once more ends their oldest
    /// (0: no bound) [default: 100].
    #[arg(long, env = "AUTH_BACKEND_MAX_SESSIONS_PER_USER", value_name = "N")]
    pub max_sessions_per_user: Option<u32>,

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

    /// Key id (`kid`) of the signing key [default: default]. With
    /// --signing-key-dir, which key of the directory signs [default: the greatest id].
    #[arg(long, env = "AUTH_BACKEND_SIGNING_KEY_ID", value_name = "KID")]
    pub signing_key_id: Option<String>,

    /// Directory of signing keys (`<kid>.pem` Ed25519, `<kid>.key` HS256; made by
    /// `auth-backend keys generate`): one signs (--signing-key-id), the others still
    /// verify. How keys rotate without downtime.
    #[arg(
        long,
        env = "AUTH_BACKEND_SIGNING_KEY_DIR",
        value_name = "DIR",
        conflicts_with = "signing_key_file"
    )]
    pub signing_key_dir: Option<PathBuf>,

    /// Algorithm of the key generated when no key is configured [default: hs256]. With
    /// a key file or directory, the signing key must be of this algorithm.
    #[arg(long, env = "AUTH_BACKEND_SIGNING_ALG", value_name = "ALG")]
    pub signing_alg: Option<SigningAlg>,
}

/// The JWS algorithm of access tokens, as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningAlg {
    /// Ed25519 signatures: services can verify tokens from the public keys (JWKS).
    Eddsa,
    /// HMAC-SHA256: only holders of the secret can verify tokens.
    Hs256,
}

impl From<SigningAlg> for auth_core::Algorithm {
    fn from(alg: SigningAlg) -> Self {
        match alg {
            SigningAlg::Eddsa => auth_core::Algorithm::EdDsa,
            SigningAlg::Hs256 => auth_core::Algorithm::Hs256,
        }
    }
}

/// The audit trail: the `[audit]` table. Events always go to the `auth::audit` log
/// target; with `--audit-log-file` also to a JSON-lines file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Audit")]
pub struct AuditSettings {
    /// Also append audit events to this file, one JSON object per line (mode 0600).
    #[arg(
        long = "audit-log-file",
        env = "AUTH_BACKEND_AUDIT_LOG_FILE",
        value_name = "PATH"
    )]
    pub log_file: Option<PathBuf>,

    /// Rotate the audit file once it passes this many bytes [default: 100 MiB].
    #[arg(
        long = "audit-max-bytes",
        env = "AUTH_BACKEND_AUDIT_MAX_BYTES",
        value_name = "BYTES"
    )]
    pub max_bytes: Option<usize>,

    /// Rotated audit files kept (`FILE.1` … `FILE.N`) [default: 10].
    #[arg(long = "audit-keep", env = "AUTH_BACKEND_AUDIT_KEEP", value_name = "N")]
    pub keep: Option<usize>,

    /// This node's name on its audit events [default: `node-<id>` in a cluster, the
    /// listen address otherwise].
    #[arg(
        long = "audit-node-name",
        env = "AUTH_BACKEND_AUDIT_NODE_NAME",
        value_name = "NAME"
    )]
    pub node_name: Option<String>,
}

/// Administration: the `[admin]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Administration")]
pub struct AdminSettings {
    /// Create this administrator at start-up if the name is free (with
    /// --bootstrap-admin-password-file). Harmless on a restart or on every node of a
    /// cluster: an existing account is left as it is, never promoted (a restart must
    /// not undo a revocation); one with another password is logged as a conflict.
    #[arg(long, env = "AUTH_BACKEND_BOOTSTRAP_ADMIN", value_name = "NAME")]
    pub bootstrap_admin: Option<String>,

    /// The first administrator's password: the first line of this file, mode 0600.
    #[arg(
        long,
        env = "AUTH_BACKEND_BOOTSTRAP_ADMIN_PASSWORD_FILE",
        value_name = "PATH"
    )]
    pub bootstrap_admin_password_file: Option<PathBuf>,
}

/// Second factors: the `[mfa]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Second factors")]
pub struct MfaSettings {
    /// Key that seals TOTP secrets at rest: 32 random bytes, base64, mode 0600 (e.g.
    /// `head -c 32 /dev/urandom | base64 > mfa.key`), the same on every node and
    /// separate from the signing key. Without it a memory backend draws a random one;
    /// a Raft cluster refuses TOTP enrolment.
    #[arg(long, env = "AUTH_BACKEND_MFA_KEY_FILE", value_name = "PATH")]
    pub mfa_key_file: Option<PathBuf>,

    /// The issuer authenticator apps show next to the account [default: auth-sdk].
    #[arg(long, env = "AUTH_BACKEND_TOTP_ISSUER", value_name = "NAME")]
    pub totp_issuer: Option<String>,

    /// Passkeys: the WebAuthn relying party id, the site's domain (`example.com`;
    /// `localhost` in development). With --passkey-origin; without both, no passkeys.
    #[arg(long, env = "AUTH_BACKEND_PASSKEY_RP_ID", value_name = "DOMAIN")]
    pub passkey_rp_id: Option<String>,

    /// Passkeys: the origin of the pages that run the ceremonies
    /// (`https://login.example.com`).
    #[arg(long, env = "AUTH_BACKEND_PASSKEY_ORIGIN", value_name = "URL")]
    pub passkey_origin: Option<String>,
}

/// argon2id parameters: the `[argon2]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Password hashing")]
pub struct Argon2Settings {
    /// argon2id memory cost in KiB [default: 19456].
    #[arg(
        long = "argon2-memory-kib",
        env = "AUTH_BACKEND_ARGON2_MEMORY_KIB",
        value_name = "KIB"
    )]
    pub memory_kib: Option<u32>,

    /// argon2id passes over memory [default: 2].
    #[arg(
        long = "argon2-iterations",
        env = "AUTH_BACKEND_ARGON2_ITERATIONS",
        value_name = "N"
    )]
    pub iterations: Option<u32>,

    /// argon2id lanes [default: 1].
    #[arg(
        long = "argon2-parallelism",
        env = "AUTH_BACKEND_ARGON2_PARALLELISM",
        value_name = "N"
    )]
    pub parallelism: Option<u32>,
}

impl From<HashParams> for Argon2Settings {
    /// All three parameters set (e.g. `HashParams::insecure_fast().into()` in tests).
    fn from(p: HashParams) -> Self {
        Self {
            memory_kib: Some(p.memory_kib),
            iterations: Some(p.iterations),
            parallelism: Some(p.parallelism),
        }
    }
}

/// Failed-login lockout: the `[lockout]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Lockout and throttling")]
pub struct LockoutSettings {
    /// Failed password checks of one name (from all sources) before it locks; 0
    /// disables the account-wide lock [default: 20].
    #[arg(
        long = "lockout-max-failures",
        env = "AUTH_BACKEND_LOCKOUT_MAX_FAILURES",
        value_name = "N"
    )]
    pub max_failures: Option<u32>,

    /// Throttle by source address and per (account, source) (`false` turns it off,
    /// e.g. for a load test from one address) [default: true].
    #[arg(long = "throttle", env = "AUTH_BACKEND_THROTTLE", value_name = "BOOL")]
    pub throttle: Option<bool>,

    /// Front ends trusted to state the end user's address (`ClientInfo.ip`):
    /// comma-separated IP addresses and/or client certificate names (certificates of
    /// `auth-backend certs create-client NAME`, checked against
    /// `--peer-trusted-ca-file`). Everyone else is throttled by connection address.
    #[arg(
        long = "trusted-frontends",
        env = "AUTH_BACKEND_TRUSTED_FRONTENDS",
        value_name = "LIST"
    )]
    pub trusted_frontends: Option<String>,
}

/// Raft replication: the `[raft]` table. `id`, `peers`, `data_dir` and `peer_listen` are
/// required with `--storage raft` and refused without it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Raft (--storage raft)")]
pub struct RaftSettings {
    /// Raft: this node's id (non-zero).
    #[arg(long, env = "AUTH_BACKEND_ID", value_name = "N")]
    pub id: Option<u64>,

    /// Raft: every initial member as `id=host:port` of its peer listener,
    /// comma-separated, this node included (e.g.
    /// `1=127.0.0.1:50052,2=127.0.0.1:50062,3=127.0.0.1:50072`).
    #[arg(long, env = "AUTH_BACKEND_PEERS", value_name = "LIST")]
    pub peers: Option<String>,

    /// Raft: directory for the log, vote and snapshots.
    #[arg(long, env = "AUTH_BACKEND_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Raft: cluster name; a node refuses data directories and peers of other
    /// clusters [default: auth-sdk].
    #[arg(long, env = "AUTH_BACKEND_CLUSTER_ID", value_name = "NAME")]
    pub cluster_id: Option<String>,

    /// Raft: `lease` (default) or `read-index`, both linearizable, or `local` (faster,
    /// possibly stale: a token logged out a moment ago may still verify on a lagging
    /// node). `lease` confirms leadership once per lease and assumes the members'
    /// clocks run at about the same rate; `read-index` runs a quorum round for every
    /// batch of reads and assumes nothing about clocks.
    #[arg(long, env = "AUTH_BACKEND_READ_CONSISTENCY", value_enum)]
    pub read_consistency: Option<ReadMode>,

    /// Raft: build a snapshot and compact the log every N entries [default: 10000].
    #[arg(long, env = "AUTH_BACKEND_SNAPSHOT_EVERY", value_name = "N")]
    pub snapshot_every: Option<u64>,

    /// Raft: log entries kept behind a snapshot for slightly lagging followers
    /// [default: 1000].
    #[arg(long, env = "AUTH_BACKEND_LOGS_TO_KEEP", value_name = "N")]
    pub logs_to_keep: Option<u64>,

    /// Raft: address of the peer listener (Raft RPCs, forwarded writes, cluster admin;
    /// mutual TLS). Required with `--storage raft`; must differ from `--listen`.
    #[arg(long, env = "AUTH_BACKEND_PEER_LISTEN", value_name = "ADDR")]
    pub peer_listen: Option<String>,

    /// Raft: largest snapshot accepted from a leader, in bytes [default: 1 GiB].
    #[arg(long, env = "AUTH_BACKEND_MAX_SNAPSHOT_BYTES", value_name = "BYTES")]
    pub max_snapshot_bytes: Option<u64>,

    /// Raft: how far a proposing node's clock may differ from the leader's before its
    /// timed writes are refused; `0` turns the bound off [default: 2s].
    #[arg(long, env = "AUTH_BACKEND_MAX_CLOCK_SKEW", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_clock_skew: Option<Duration>,
}

/// TLS for the client listener and for peer traffic: the `[tls]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "TLS")]
pub struct TlsSettings {
    /// Certificate chain (PEM) of the client listener.
    #[arg(long = "tls-cert", env = "AUTH_BACKEND_TLS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of the client listener.
    #[arg(long = "tls-key", env = "AUTH_BACKEND_TLS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Certificate chain (PEM) this node presents to its Raft peers.
    #[arg(long, env = "AUTH_BACKEND_PEER_CERT_FILE", value_name = "FILE")]
    pub peer_cert_file: Option<PathBuf>,

    /// Private key (PEM) of `--peer-cert-file`.
    #[arg(long, env = "AUTH_BACKEND_PEER_KEY_FILE", value_name = "FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// CA certificates (PEM) that peer certificates must chain to.
    #[arg(long, env = "AUTH_BACKEND_PEER_TRUSTED_CA_FILE", value_name = "FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Run Raft without TLS on the peer listener, where anyone who reaches it can act as
    /// a node or an admin: for local testing only (a warning is logged on every start).
    /// `--insecure` alone means true; `--insecure=false` overrides a file's `true`.
    #[arg(
        long,
        env = "AUTH_BACKEND_INSECURE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub insecure: Option<bool>,
}

/// Layering: `upper.over(lower)` keeps every setting `upper` has and takes the others
/// from `lower`.
pub(super) trait Layer {
    fn over(self, lower: Self) -> Self;
}

impl<T> Layer for Option<T> {
    fn over(self, lower: Self) -> Self {
        self.or(lower)
    }
}

/// Implements [`Layer`] field by field. The field list must be complete: the struct is
/// destructured and rebuilt without `..`, so a forgotten field does not compile.
macro_rules! layer_fields {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {$(
        impl Layer for $ty {
            fn over(self, lower: Self) -> Self {
                let Self { $($field),* } = self;
                Self { $($field: Layer::over($field, lower.$field)),* }
            }
        }
    )*};
}

layer_fields! {
    Settings {
        config, listen, storage, max_request_bytes, max_connections,
        max_concurrent_streams, metrics_listen, metrics_token_file, log_format, shutdown_timeout,
        tokens, mfa, audit, admin, argon2, lockout, raft, tls,
    }
    AuditSettings { log_file, max_bytes, keep, node_name }
    MfaSettings { mfa_key_file, totp_issuer, passkey_rp_id, passkey_origin }
    AdminSettings { bootstrap_admin, bootstrap_admin_password_file }
    TokenSettings {
        access_token_ttl, refresh_token_ttl, session_max_lifetime, max_sessions_per_user,
        issuer, audience, signing_key_file, signing_key_id, signing_key_dir, signing_alg,
    }
    Argon2Settings { memory_kib, iterations, parallelism }
    LockoutSettings { max_failures, throttle, trusted_frontends }
    RaftSettings {
        id, peers, data_dir, cluster_id, read_consistency, snapshot_every, logs_to_keep,
        peer_listen, max_snapshot_bytes, max_clock_skew,
    }
    TlsSettings { cert, key, peer_cert_file, peer_key_file, peer_trusted_ca_file, insecure }
}
