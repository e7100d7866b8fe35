//! # auth-sdk
//!
//! An authentication SDK for Rust services: argon2id passwords, JWT access tokens,
//! rotating refresh tokens with theft detection, lockout, and a pluggable storage
//! backend (in memory, or Raft-replicated in `auth-raft`).
//!
//! This crate is the facade: add `auth-sdk` and reach everything through it.
//!
//! | module | crate | feature | what |
//! |---|---|---|---|
//! | [`auth_core`] | `auth-core` | | [`Auth`], [`Config`], [`AuthError`], [`AuthApi`] |
//! | [`storage`] | `auth-storage` | | the [`Storage`] trait and [`MemoryStorage`] |
//! | [`proto`] | `auth-proto` | | the protobuf records and gRPC API types |
//! | `web` | `auth-web` | `web` (default) | the web site: `router`, `serve`, `WebConfig`; `web::protect` guards your own axum routes |
//! | `grpc` | `auth-backend` | `grpc` | the gRPC server and the failover client `RemoteAuth` |
//! | [`Verifier`] | `auth-core` | `jwks-url` for `Verifier::from_url` | checks access tokens from public keys (a JWKS), no storage |
//! | `raft` | `auth-raft` | `raft` | `RaftNode`, `RaftConfig`, `RaftStorage`, `ReadConsistency`, TLS and certificates for the peer listener |
//!
//! ```
//! use auth_sdk::{Auth, AuthApi, Config, HashParams, MemoryStorage};
//! use auth_sdk::api::{LoginRequest, RegisterRequest, VerifyRequest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), auth_sdk::AuthError> {
//! let mut config = Config::default();
//! config.hash = HashParams::insecure_fast(); // for the example only: use the default cost
//! let auth = Auth::new(config, MemoryStorage::new())?;
//! auth.register(RegisterRequest { username: "alice".into(), password: "correct horse".into(), client: None }).await?;
//! let tokens = auth
//!     .login(LoginRequest { username: "alice".into(), password: "correct horse".into(), client: None })
//!     .await?
//!     .into_tokens()?;
//! let me = auth.verify(VerifyRequest { access_token: tokens.access_token }).await?;
//! assert_eq!(me.username, "alice");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use auth_core;
pub use auth_proto as proto;
pub use auth_storage as storage;

/// The gRPC server and the failover client (feature `grpc`).
#[cfg(feature = "grpc")]
pub use auth_backend as grpc;
/// The Raft-replicated storage (feature `raft`): run a [`RaftNode`], serve its peer
/// listener, and give its [`RaftStorage`] to [`Auth::new`].
#[cfg(feature = "raft")]
pub use auth_raft as raft;
#[cfg(feature = "raft")]
pub use auth_raft::{RaftConfig, RaftNode, RaftStorage, ReadConsistency};
/// The web site (feature `web`).
#[cfg(feature = "web")]
pub use auth_web as web;

pub use auth_core::{
    Algorithm, Auth, AuthApi, AuthError, Claims, Clock, Config, HashParams, HashPriority,
    HashQueue, Jwk, Jwks, KeyRing, LockoutPolicy, ManualClock, PasswordPolicy, Rate, SessionCheck,
    SigningKey, SystemClock, ThrottlePolicy, UsernamePolicy, Verifier, api,
};
pub use auth_storage::{Storage, StorageError, memory::MemoryStorage};

/// The audit trail: [`audit::AuditEvent`], sinks, and the [`audit::Audit`] of a
/// [`Config`].
pub use auth_core::audit;

/// Metrics: the core's metric names and [`metrics::MetricsSink`], and with the `web`
/// feature the Prometheus recorder and `/metrics` endpoint the binaries use.
pub mod metrics {
    pub use auth_core::metrics::*;
    #[cfg(feature = "web")]
    pub use auth_web::prometheus::{Endpoint, GrpcMetricsLayer, install};
}
