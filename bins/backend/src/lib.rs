//! The auth-sdk gRPC backend.
//!
//! - [`server`]: `AuthService` (from `auth.proto`) served over any [`AuthApi`], with gRPC
//!   health and reflection, request size limits and graceful shutdown.
//! - [`client::RemoteAuth`]: an [`AuthApi`] that talks to one or more backends and fails
//!   over between them, so a front end is written once for in-process and remote use.
//! - [`status`]: the single mapping between `AuthError` and `tonic::Status`.
//! - [`config`] and [`app`]: the `auth-backend` binary (flags, TOML file, logging,
//!   signals), as testable library code.
//!
//! [`AuthApi`]: auth_core::AuthApi
#![warn(missing_docs)]

pub use auth_raft::admin;
pub mod app;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod config;
pub mod server;
pub mod status;

pub use client::{ClientTls, RemoteAuth, RemoteOptions};
pub use server::{ServerOptions, serve};
