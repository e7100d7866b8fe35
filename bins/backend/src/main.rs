//! `auth-backend`: the auth-sdk gRPC server. See `auth-backend serve --help`.

use std::process::ExitCode;

use auth_backend::config::{Cli, Command};
use clap::Parser;

/// mimalloc rather than glibc's malloc: a 3-node cluster on 2 cores took 6 % more
/// registrations/s at 64 clients, 14 % more verifies/s and 14 % off a single write's
/// p50, same run, alternating (BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => auth_backend::app::main_serve(&args),
        Command::Cluster(args) => auth_backend::cluster::main_cluster(&args),
        Command::Certs(cmd) => auth_backend::certs::main_certs(&cmd),
        Command::Keys(cmd) => auth_backend::keys::main_keys(&cmd),
        Command::BootstrapAdmin(args) => auth_backend::bootstrap::main_bootstrap(&args),
        Command::Restore(args) => auth_backend::restore::main_restore(&args),
    }
}
