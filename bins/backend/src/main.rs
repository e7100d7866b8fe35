//! `auth-backend`: the auth-sdk gRPC server. See `auth-backend serve --help`.

use std::process::ExitCode;

use auth_backend::config::{Cli, Command};
use clap::Parser;

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
