//! `auth-backend bootstrap-admin NAME`: the first administrator of a running cluster.
//!
//! The account is built here (the username normalised and the password hashed with
//! the cluster's argon2 parameters, which `--argon2-*` name as `serve` does) and handed
//! to the cluster through a node's peer listener, whose `CreateUser` admin call needs
//! an admin certificate, the operator's credential, like `authctl cluster`. The
//! cluster stores it only if the name is free, so nobody who registered the name first
//! becomes an administrator. A single-process backend takes `serve
//! --bootstrap-admin` instead (it has no peer listener).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use auth_core::admin::new_admin_record;
use auth_raft::ClusterAdmin;
use auth_raft::tls::{PeerTls, TlsFiles};
use clap::Args;
use zeroize::Zeroizing;

use crate::config::Argon2Settings;
use crate::duration::parse_duration;

/// `auth-backend bootstrap-admin …`
#[derive(Debug, Clone, Args)]
pub struct BootstrapArgs {
    /// The administrator's username.
    pub name: String,

    /// The nodes' peer listeners (`host:port`, comma-separated).
    #[arg(
        long,
        env = "AUTH_BACKEND_PEER_ENDPOINTS",
        value_delimiter = ',',
        value_name = "LIST",
        required = true
    )]
    pub peer_endpoints: Vec<String>,

    /// The cluster CA (PEM); with --cert and --key, an admin certificate. Without it
    /// the call is plaintext, which only nodes started with `--insecure` accept.
    #[arg(long, value_name = "FILE", requires_all = ["cert", "key"])]
    pub cacert: Option<PathBuf>,

    /// The admin certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "cacert")]
    pub cert: Option<PathBuf>,

    /// The admin certificate's private key (PEM, mode 0600).
    #[arg(long, value_name = "FILE", requires = "cacert")]
    pub key: Option<PathBuf>,

    /// Time allowed for the call on each node.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// The cluster's password hashing (as its `serve` flags or `[argon2]`), so the
    /// stored hash needs no upgrade at the first sign-in.
    #[command(flatten)]
    pub argon2: Argon2Settings,
}

/// The password: prompted for (twice) on a terminal, else the first line of stdin.
fn read_password() -> Result<Zeroizing<String>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first =
            Zeroizing::new(rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?);
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat password: ").map_err(|e| e.to_string())?,
        );
        if first != again {
            return Err("passwords do not match".into());
        }
        return Ok(first);
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("no password on stdin: pipe it in as one line".into());
    }
    Ok(Zeroizing::new(password.to_owned()))
}

async fn run(args: &BootstrapArgs, password: &str) -> Result<String, (u8, String)> {
    let usage = |m: String| (2, m);
    let mut config = auth_core::Config::default();
    if let Some(m) = args.argon2.memory_kib {
        config.hash.memory_kib = m;
    }
    if let Some(t) = args.argon2.iterations {
        config.hash.iterations = t;
    }
    if let Some(p) = args.argon2.parallelism {
        config.hash.parallelism = p;
    }
    let user = new_admin_record(&config, &args.name, password)
        .await
        .map_err(|e| (1, format!("{e} [{}]", e.code())))?;
    let endpoints: Vec<String> = args
        .peer_endpoints
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(usage("no --peer-endpoints given".into()));
    }
    let mut admin = ClusterAdmin::new(endpoints, args.timeout);
    if let (Some(ca), Some(cert), Some(key)) = (&args.cacert, &args.cert, &args.key) {
        let files = TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        };
        let tls = PeerTls::load(&files, None).map_err(|e| usage(e.to_string()))?;
        admin = admin.with_tls(&tls);
    }
    match admin.create_user(user).await {
        Ok(user) => Ok(format!(
            "created administrator {} (user {})",
            user.username, user.id
        )),
        Err(e) => Err((
            match e {
                auth_raft::AdminError::Unavailable(_) => 3,
                auth_raft::AdminError::InvalidConfig(_) => 2,
                _ => 1,
            },
            format!("{e} [{}]", e.code()),
        )),
    }
}

/// Runs `auth-backend bootstrap-admin`: exit 0 when the account was created, 1 when
/// the cluster refused it (the name is taken: `already_exists`; a weak password), 2
/// on a usage error, 3 when no node could be reached.
pub fn main_bootstrap(args: &BootstrapArgs) -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("auth-backend bootstrap-admin: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("auth-backend bootstrap-admin: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args, &password)) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => {
            eprintln!("auth-backend bootstrap-admin: {e}");
            ExitCode::from(code)
        }
    }
}
