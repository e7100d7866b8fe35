//! One module per command family; `crate::execute` dispatches to them.

pub mod account;
pub mod admin;
pub mod cluster;
pub mod mfa;
