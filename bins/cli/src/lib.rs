//! `authctl`: the command-line client of auth-sdk backends, in the spirit of `etcdctl`.
//!
//! ```text
//! authctl [--endpoints a,b,c] [--cacert FILE [--cert FILE --key FILE]] [--json]
//!         [--timeout 10s] <command>
//!
//!   register NAME                     create an account
//!   login NAME [--save FILE]          open a session, print (or save) the tokens
//!   verify TOKEN                      check an access token
//!   refresh TOKEN [--save FILE]       rotate a refresh token into a new pair
//!   logout --refresh-token T | --access-token T
//!   sessions --access-token T         list the caller's sessions
//!   mfa status|totp …|passkey …|recovery-codes   the caller's second factors
//!   admin --access-token T users|show|lock|unlock|logout|delete|grant|revoke
//!   health                            is every endpoint serving?
//!   cluster status|add-learner|promote|remove   (needs --peer-endpoints)
//! ```
//!
//! TLS uses etcdctl's flags ([`tls::TlsArgs`]): `--cacert` turns it on for AuthService
//! calls, `--cert`/`--key` add a client certificate. Cluster commands talk to the
//! nodes' peer listeners (`--peer-endpoints`), with mutual TLS and an admin certificate
//! when `--cacert` is given, in plaintext otherwise (clusters started `--insecure`).
//!
//! Passwords are never taken from the command line: they are prompted for (without
//! echo) when stdin is a terminal, else read as one line from stdin. A token argument
//! of `-` is read from stdin too, keeping it out of `ps`.
//!
//! Output is for people by default; `--json` prints one JSON document on stdout, for
//! errors too (`{"error": {"code": ..., "message": ...}}`). Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `health`: every endpoint serving) |
//! | 1 | the backend refused: auth error, its stable code printed |
//! | 2 | usage error (bad flags, no password on stdin, unusable `--save` or TLS file) |
//! | 3 | backend unreachable or unavailable (for `health`: some endpoint not serving) |
#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod io;
pub mod render;
pub mod tls;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::time::Duration;

use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::AuthError;
use auth_raft::AdminError;
use clap::Parser;
use serde_json::{Value, json};

pub use cli::{Cli, Cmd};
pub use io::Io;

use commands::{account, admin, cluster, mfa};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The backend refused the request (auth error).
pub const EXIT_AUTH: u8 = 1;
/// The command line cannot be carried out as given.
pub const EXIT_USAGE: u8 = 2;
/// No backend could be reached (or none is serving).
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The command line cannot be carried out.
    Usage(String),
    /// The backend (or the client library) returned an error.
    Auth(AuthError),
    /// A cluster admin call failed.
    Admin(AdminError),
    /// A backup file could not be written or is refused: the message, and the
    /// backup error's stable code.
    Backup(String, &'static str),
}

impl Failure {
    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Auth(e) => match e {
                AuthError::Unavailable(_) | AuthError::Stopped => EXIT_UNREACHABLE,
                AuthError::InvalidConfig(_) => EXIT_USAGE,
                _ => EXIT_AUTH,
            },
            Failure::Admin(e) => match e {
                AdminError::Unavailable(_) => EXIT_UNREACHABLE,
                AdminError::InvalidConfig(_) => EXIT_USAGE,
                _ => EXIT_AUTH,
            },
            Failure::Backup(..) => EXIT_AUTH,
        }
    }

    /// The stable machine-readable code (`usage` or the auth error's code).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Auth(e) => e.code(),
            Failure::Admin(e) => e.code(),
            Failure::Backup(_, code) => code,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Usage(m) => m.clone(),
            Failure::Auth(e) => e.to_string(),
            Failure::Admin(e) => e.to_string(),
            Failure::Backup(m, _) => m.clone(),
        }
    }

    fn to_json(&self) -> Value {
        let mut err = json!({ "code": self.code(), "message": self.message() });
        if let Failure::Auth(e) = self
            && let Some(d) = e.retry_after()
        {
            err["retry_after_ms"] = json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        json!({ "error": err })
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::Auth(e)
    }
}

/// Parses `args` (program name first), runs the command on the real stdin/stdout/
/// stderr and returns the exit status.
pub fn main_with<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authctl: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let stdin = std::io::stdin();
    let stdin_is_tty = stdin.is_terminal();
    let mut stdin = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut io = Io {
        stdin: &mut stdin,
        stdin_is_tty,
        out: &mut out,
        err: &mut err,
    };
    runtime.block_on(run(cli, &mut io))
}

/// Runs a parsed command and returns the exit status. Needs a tokio runtime.
pub async fn run(cli: Cli, io: &mut Io<'_>) -> u8 {
    let json = cli.json;
    let code = match execute(cli, io).await {
        Ok(code) => code,
        Err(f) => {
            if json {
                let _ = writeln!(io.out, "{}", f.to_json());
            } else {
                let _ = writeln!(io.err, "error: {} [{}]", f.message(), f.code());
            }
            f.exit_code()
        }
    };
    let _ = io.out.flush();
    let _ = io.err.flush();
    code
}

/// The non-blank entries of a comma-separated endpoint list.
pub(crate) fn endpoint_list(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn check_timeout(timeout: Duration) -> Result<(), Failure> {
    if timeout.is_zero() {
        return Err(Failure::Usage("--timeout must be above zero".into()));
    }
    Ok(())
}

fn remote(cli: &Cli) -> Result<RemoteAuth, Failure> {
    let endpoints = endpoint_list(&cli.endpoints);
    if endpoints.is_empty() {
        return Err(Failure::Usage("no endpoints given (--endpoints)".into()));
    }
    check_timeout(cli.timeout)?;
    let options = RemoteOptions {
        // The health probe waits twice the connect timeout: keep it within --timeout.
        connect_timeout: (cli.timeout / 2).max(Duration::from_millis(1)),
        request_timeout: cli.timeout,
        tls: cli.tls.client_tls()?,
        ..RemoteOptions::default()
    };
    RemoteAuth::new(endpoints, options).map_err(|e| Failure::Usage(e.to_string()))
}

async fn execute(cli: Cli, io: &mut Io<'_>) -> Result<u8, Failure> {
    if let Cmd::Cluster(cluster::ClusterCmd::Snapshot(cluster::SnapshotCmd::Status { file })) =
        &cli.command
    {
        return cluster::snapshot_status(file, cli.json, io);
    }
    if let Cmd::Cluster(cmd) = &cli.command {
        let admin = cluster::admin(&cli.peer_endpoints, cli.timeout, &cli.tls)?;
        return cluster::execute(cmd.clone(), &admin, cli.json, io).await;
    }
    let api = remote(&cli)?;
    let json = cli.json;
    match cli.command {
        Cmd::Register { name } => account::register(&api, name, json, io).await,
        Cmd::Login {
            name,
            save,
            user_agent,
        } => account::login(&api, name, save, user_agent, json, io).await,
        Cmd::Verify { token } => account::verify(&api, token, json, io).await,
        Cmd::Refresh { token, save } => account::refresh(&api, token, save, json, io).await,
        Cmd::Logout {
            refresh_token,
            access_token,
        } => account::logout(&api, refresh_token, access_token, json, io).await,
        Cmd::Sessions { access_token } => account::sessions(&api, access_token, json, io).await,
        Cmd::Mfa(cmd) => mfa::execute(cmd, &api, json, io).await,
        Cmd::Admin(args) => admin::execute(args, &api, json, io).await,
        Cmd::Health => account::health(&api, json, io).await,
        Cmd::Cluster(_) => Err(Failure::Usage("cluster commands are handled above".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_exit_codes() {
        assert_eq!(Failure::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(
            Failure::Auth(AuthError::InvalidCredentials).exit_code(),
            EXIT_AUTH
        );
        assert_eq!(Failure::Auth(AuthError::UserExists).exit_code(), EXIT_AUTH);
        assert_eq!(
            Failure::Auth(AuthError::Internal("x".into())).exit_code(),
            EXIT_AUTH
        );
        assert_eq!(
            Failure::Auth(AuthError::Unavailable("down".into())).exit_code(),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            Failure::Auth(AuthError::InvalidConfig("x".into())).exit_code(),
            EXIT_USAGE
        );
        let j = Failure::Auth(AuthError::Locked {
            retry_after: Duration::from_secs(3),
        })
        .to_json();
        assert_eq!(j["error"]["code"], "locked");
        assert_eq!(j["error"]["retry_after_ms"], 3000);
    }

    #[tokio::test]
    async fn bad_endpoints_are_usage_errors() {
        for args in [
            &["--endpoints", "", "health"][..],
            &["--endpoints", "http://bad host:1", "health"],
            &["--timeout", "0", "health"],
            &["--cacert", "/nonexistent/ca.pem", "health"],
            &["cluster", "status"],
            &["--peer-endpoints", " ", "cluster", "status"],
            &[
                "--peer-endpoints",
                "127.0.0.1:1",
                "--timeout",
                "0",
                "cluster",
                "status",
            ],
        ] {
            let cli = Cli::try_parse_from([&["authctl"], args].concat()).unwrap();
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdin = std::io::Cursor::new(Vec::new());
            let mut io = Io {
                stdin: &mut stdin,
                stdin_is_tty: false,
                out: &mut out,
                err: &mut err,
            };
            assert_eq!(run(cli, &mut io).await, EXIT_USAGE, "{args:?}");
            let err = String::from_utf8(err).unwrap();
            assert!(err.starts_with("error: "), "{err}");
        }
    }
}
