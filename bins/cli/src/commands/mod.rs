//! One module per command family; `crate::execute` dispatches to them.

pub mod account;
pub mod cluster;
pub mod mfa;
