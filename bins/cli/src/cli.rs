//! The command line: clap's types for `authctl` and its subcommands.

use std::path::PathBuf;
use std::time::Duration;

use auth_backend::duration::parse_duration;
use clap::{ArgGroup, Parser, Subcommand};

use crate::commands::{admin, cluster, mfa};
use crate::tls;

/// Command-line client for auth-sdk backends.
#[derive(Debug, Parser)]
#[command(
    name = "authctl",
    version,
    about,
    long_about = None,
    after_help = "Passwords are prompted for on a terminal, else read as one line of stdin; \
                  never taken from arguments.\n\
                  Exit status: 0 ok, 1 auth error (stable code printed), 2 usage error, \
                  3 backend unreachable or not serving."
)]
pub struct Cli {
    /// Backend endpoints (client listeners), comma-separated (`host:port`, or
    /// `http://`/`https://` URLs); calls fail over between them. With --cacert,
    /// `host:port` means `https://`.
    #[arg(
        long,
        global = true,
        env = "AUTHCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub endpoints: Vec<String>,

    /// The nodes' peer listeners (`host:port`, comma-separated), for `cluster`
    /// commands.
    #[arg(
        long,
        global = true,
        env = "AUTHCTL_PEER_ENDPOINTS",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub peer_endpoints: Vec<String>,

    /// TLS (--cacert, --cert, --key).
    #[command(flatten)]
    pub tls: tls::TlsArgs,

    /// Print JSON (for scripts) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Time allowed for each request on each endpoint (e.g. `500ms`, `10s`).
    #[arg(long, global = true, env = "AUTHCTL_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create an account. The password is prompted for, or read as one line of stdin.
    Register {
        /// The username.
        name: String,
    },
    /// Log in and print the tokens. The password is prompted for, or read from stdin;
    /// for an account with a second factor, so is a TOTP or recovery code (the next
    /// line of stdin).
    Login {
        /// The username.
        name: String,
        /// Also write the result as JSON to FILE (mode 0600); text output then omits
        /// the tokens.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// User agent recorded with the session.
        #[arg(long, value_name = "TEXT")]
        user_agent: Option<String>,
    },
    /// Check an access token (`-` reads it from stdin).
    Verify {
        /// The access token.
        token: String,
    },
    /// Exchange a refresh token for a new token pair (`-` reads it from stdin).
    Refresh {
        /// The refresh token.
        token: String,
        /// Also write the new pair as JSON to FILE (mode 0600).
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
    /// End the session a token belongs to (`-` reads the token from stdin).
    #[command(group(ArgGroup::new("token").required(true).args(["refresh_token", "access_token"])))]
    Logout {
        /// The session's refresh token.
        #[arg(long, value_name = "TOKEN")]
        refresh_token: Option<String>,
        /// An access token of the session.
        #[arg(long, value_name = "TOKEN")]
        access_token: Option<String>,
    },
    /// List the caller's live sessions (`*` marks the one the token belongs to).
    Sessions {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
    /// Second factors: status, TOTP enrolment and removal, recovery codes.
    #[command(subcommand)]
    Mfa(mfa::MfaCmd),
    /// User administration with an administrator's access token: `users`, `show`,
    /// `lock`, `unlock`, `logout`, `delete`, `grant`, `revoke`.
    Admin(admin::AdminArgs),
    /// Ask every endpoint whether it is serving.
    Health,
    /// Raft cluster status and membership (`status`, `add-learner`, `promote`,
    /// `remove`), through the nodes' peer listeners (--peer-endpoints).
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["authctl"], args].concat())
    }

    #[test]
    fn global_flags_parse_anywhere() {
        let cli = parse(&["--endpoints", "a:1,b:2", "login", "alice", "--json"]).unwrap();
        assert_eq!(cli.endpoints, vec!["a:1", "b:2"]);
        assert!(cli.json);
        assert_eq!(cli.timeout, Duration::from_secs(10));
        let cli = parse(&["health", "--timeout", "250ms"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_millis(250));
        assert!(matches!(cli.command, Cmd::Health));
    }

    #[test]
    fn tls_and_peer_flags_parse_anywhere() {
        let cli = parse(&[
            "--cacert",
            "ca.pem",
            "health",
            "--cert",
            "me.pem",
            "--key",
            "me.key",
            "--peer-endpoints",
            "a:1,b:2",
        ])
        .unwrap();
        assert_eq!(cli.tls.cacert.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(cli.tls.cert.as_deref(), Some(Path::new("me.pem")));
        assert_eq!(cli.tls.key.as_deref(), Some(Path::new("me.key")));
        assert_eq!(cli.peer_endpoints, vec!["a:1", "b:2"]);
        let cli = parse(&["cluster", "add-learner", "4", "10.0.0.4:7001"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Cluster(cluster::ClusterCmd::AddLearner { id: 4, .. })
        ));
    }

    #[test]
    fn ids_roles_and_names_may_start_with_a_hyphen() {
        // Credential ids are base64url: one in 64 starts with `-`.
        let cli = parse(&[
            "mfa",
            "passkey",
            "rename",
            "--access-token",
            "t",
            "-oXk2",
            "old key",
        ])
        .unwrap();
        let Cmd::Mfa(mfa::MfaCmd::Passkey(mfa::PasskeyCmd::Rename { id, name, .. })) = cli.command
        else {
            panic!("not a rename");
        };
        assert_eq!((id.as_str(), name.as_str()), ("-oXk2", "old key"));
        let cli = parse(&["mfa", "passkey", "remove", "-oXk2", "--access-token", "t"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Mfa(mfa::MfaCmd::Passkey(mfa::PasskeyCmd::Remove { id, .. })) if id == "-oXk2"
        ));
        // One in 4096 starts with `--`: after a `--`, as any value would.
        let cli = parse(&[
            "mfa",
            "passkey",
            "remove",
            "--access-token",
            "t",
            "--",
            "--Xk2",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Mfa(mfa::MfaCmd::Passkey(mfa::PasskeyCmd::Remove { id, .. })) if id == "--Xk2"
        ));
        // Roles and passkey names may start with `-` too.
        let cli = parse(&["admin", "--access-token", "t", "grant", "ada", "-ops"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Admin(admin::AdminArgs { cmd: admin::AdminCmd::Grant { role, .. }, .. })
                if role == "-ops"
        ));
        let cli = parse(&[
            "mfa",
            "passkey",
            "rename",
            "--access-token",
            "t",
            "id1",
            "-spare",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Mfa(mfa::MfaCmd::Passkey(mfa::PasskeyCmd::Rename { name, .. })) if name == "-spare"
        ));
    }

    #[test]
    fn usage_errors_are_exit_code_2() {
        for bad in [
            &["register"][..],
            &["logout"],
            &["logout", "--access-token", "a", "--refresh-token", "b"],
            &["login", "alice", "--password", "x"],
            &["health", "--timeout", "soon"],
            &["frobnicate"],
            &["--cert", "me.pem", "health"],
            &["--cacert", "ca.pem", "--key", "me.key", "health"],
            &["cluster", "add-learner", "x", "a:1"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
