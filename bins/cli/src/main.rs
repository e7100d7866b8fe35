//! `authctl`: command-line client for auth-sdk backends. See `authctl --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(authctl::main_with(std::env::args_os()))
}
