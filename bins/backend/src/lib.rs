//! The auth-sdk gRPC backend.
//!
//! - [`server`]: `AuthService` (from `auth.proto`) served over any [`AuthApi`], with gRPC
//!   health and reflection, request size limits and graceful shutdown.
//! - [`client::RemoteAuth`]: an [`AuthApi`] that talks to one or more backends and fails
//!   over between them, so a front end is written once for in-process and remote use.
//! - [`status`]: the single mapping between `AuthError` and `tonic::Status`.
//! - [`config`] and [`app`]: the `auth-backend` binary (flags, TOML file, logging,
//!   signals), as testable library code; [`cluster`] and [`certs`], its other commands.
//! - [`signal`]: the SIGINT/SIGTERM future both binaries stop on (any features).
//!
//! Features: `client` (`RemoteAuth` only: what a front end such as `auth-web` or
//! `authctl` needs; it does not compile openraft or redb) and `server` (everything
//! else); both by default.
//!
//! [`AuthApi`]: auth_core::AuthApi
#![warn(missing_docs)]

#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
pub mod bootstrap;
#[cfg(feature = "server")]
pub mod certs;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod config;
pub mod duration;
#[cfg(feature = "server")]
pub mod keys;
pub mod limits;
#[cfg(feature = "server")]
pub mod members;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod restore;
#[cfg(feature = "server")]
pub mod server;
pub mod signal;
pub mod status;

#[cfg(feature = "client")]
pub use client::{ClientTls, RemoteAuth, RemoteOptions};
#[cfg(feature = "server")]
pub use server::{ServerOptions, serve};
