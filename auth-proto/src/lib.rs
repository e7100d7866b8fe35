//! Protobuf data model and gRPC API of auth-sdk.
//!
//! Everything here is generated from `proto/auth/v1/*.proto` by `build.rs` (prost + tonic,
//! with a vendored `protoc`, so no system package is needed). Two files matter:
//!
//! - `models.proto`: the records a storage backend keeps ([`v1::User`], [`v1::Session`]).
//! - `auth.proto`: the public API (`AuthService`) and its request/response messages.
//!
//! Timestamps are `int64` unix milliseconds throughout. Messages that carry a secret
//! (a password, a token, a password hash) have a hand-written `Debug` that redacts it,
//! so logging a request can never leak one.
#![warn(missing_docs)]

/// Version 1 of the `auth.v1` protobuf package.
pub mod v1 {
    #![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]
    tonic::include_proto!("auth.v1");
}

mod access;
mod redact;

pub use access::MissingField;

/// The encoded `FileDescriptorSet` of every proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("auth_descriptor");

pub use prost;
pub use tonic;
