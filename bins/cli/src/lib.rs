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

pub mod cluster;
pub mod mfa;
pub mod render;
pub mod tls;

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use auth_backend::duration::parse_duration;
use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::api::*;
use auth_core::{AuthApi, AuthError};
use auth_raft::AdminError;
use clap::{ArgGroup, Parser, Subcommand};
use serde_json::{Value, json};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The backend refused the request (auth error).
pub const EXIT_AUTH: u8 = 1;
/// The command line cannot be carried out as given.
pub const EXIT_USAGE: u8 = 2;
/// No backend could be reached (or none is serving).
pub const EXIT_UNREACHABLE: u8 = 3;

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
    /// Ask every endpoint whether it is serving.
    Health,
    /// Raft cluster status and membership (`status`, `add-learner`, `promote`,
    /// `remove`), through the nodes' peer listeners (--peer-endpoints).
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
}

/// Where a command reads and writes; the real process streams in `main`, buffers in
/// tests.
pub struct Io<'a> {
    /// Standard input (passwords, `-` tokens).
    pub stdin: &'a mut dyn BufRead,
    /// Whether stdin is a terminal: passwords are then prompted for without echo.
    pub stdin_is_tty: bool,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The command line cannot be carried out.
    Usage(String),
    /// The backend (or the client library) returned an error.
    Auth(AuthError),
    /// A cluster admin call failed.
    Admin(AdminError),
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
        }
    }

    /// The stable machine-readable code (`usage` or the auth error's code).
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Auth(e) => e.code(),
            Failure::Admin(e) => e.code(),
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Usage(m) => m.clone(),
            Failure::Auth(e) => e.to_string(),
            Failure::Admin(e) => e.to_string(),
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
    if let Cmd::Cluster(cmd) = &cli.command {
        let admin = cluster::admin(&cli.peer_endpoints, cli.timeout, &cli.tls)?;
        return cluster::execute(cmd.clone(), &admin, cli.json, io).await;
    }
    let api = remote(&cli)?;
    let json = cli.json;
    match cli.command {
        Cmd::Register { name } => {
            let password = read_password(io, true)?;
            let r = api
                .register(RegisterRequest {
                    username: name,
                    password,
                    client: None,
                })
                .await?;
            let user = r.user.unwrap_or_default();
            emit(
                io,
                json,
                json!({ "user": render::user_json(&user) }),
                || format!("registered {} (user {})\n", user.username, user.id),
            )
        }
        Cmd::Login {
            name,
            save,
            user_agent,
        } => {
            let password = read_password(io, false)?;
            let file = save.as_deref().map(SaveFile::open).transpose()?;
            let client = ClientInfo {
                user_agent: user_agent
                    .unwrap_or_else(|| format!("authctl/{}", env!("CARGO_PKG_VERSION"))),
                ip: String::new(),
            };
            let req = LoginRequest {
                username: name,
                password,
                client: Some(client),
            };
            let second_step = async |r: LoginResponse, io: &mut Io<'_>| {
                if !r.mfa_required {
                    return Ok(r);
                }
                let code = mfa::read_code(io, "Code (authenticator app or recovery code)")?;
                let req = LoginMfaRequest {
                    mfa_ticket: r.mfa_ticket,
                    code,
                    client: Some(ClientInfo {
                        user_agent: format!("authctl/{}", env!("CARGO_PKG_VERSION")),
                        ip: String::new(),
                    }),
                };
                api.login_mfa(req).await.map_err(Failure::from)
            };
            let r = match api.login(req).await.map_err(Failure::from) {
                Ok(r) => second_step(r, io).await,
                Err(e) => Err(e),
            };
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    if let Some(f) = file {
                        f.discard();
                    }
                    return Err(e);
                }
            };
            let tokens = r.tokens.unwrap_or_default();
            let value = render::login_json(r.user.as_ref(), &tokens);
            let saved = match file {
                Some(f) => Some(f.write(&value)?),
                None => None,
            };
            let user = r.user.unwrap_or_default();
            emit(io, json, value, || {
                let mut s = format!("logged in as {} (user {})\n", user.username, user.id);
                s.push_str(&render::tokens_text(&tokens, saved.is_none()));
                if let Some(p) = &saved {
                    s.push_str(&format!("tokens saved to {}\n", p.display()));
                }
                s
            })
        }
        Cmd::Verify { token } => {
            let access_token = token_arg(io, token)?;
            let v = api.verify(VerifyRequest { access_token }).await?;
            emit(io, json, render::verify_json(&v), || {
                render::verify_text(&v)
            })
        }
        Cmd::Refresh { token, save } => {
            let refresh_token = token_arg(io, token)?;
            let file = save.as_deref().map(SaveFile::open).transpose()?;
            let r = match api
                .refresh(RefreshRequest {
                    refresh_token,
                    client: None,
                })
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    if let Some(f) = file {
                        f.discard();
                    }
                    return Err(e.into());
                }
            };
            let tokens = r.tokens.unwrap_or_default();
            let value = render::login_json(None, &tokens);
            let saved = match file {
                Some(f) => Some(f.write(&value)?),
                None => None,
            };
            emit(io, json, value, || {
                let mut s = render::tokens_text(&tokens, saved.is_none());
                if let Some(p) = &saved {
                    s.push_str(&format!("tokens saved to {}\n", p.display()));
                }
                s
            })
        }
        Cmd::Logout {
            refresh_token,
            access_token,
        } => {
            let req = match (refresh_token, access_token) {
                (Some(t), _) => LogoutRequest {
                    refresh_token: token_arg(io, t)?,
                    access_token: String::new(),
                },
                (None, Some(t)) => LogoutRequest {
                    refresh_token: String::new(),
                    access_token: token_arg(io, t)?,
                },
                (None, None) => {
                    return Err(Failure::Usage(
                        "--refresh-token or --access-token is required".into(),
                    ));
                }
            };
            api.logout(req).await?;
            emit(io, json, json!({ "logged_out": true }), || {
                "logged out\n".to_owned()
            })
        }
        Cmd::Sessions { access_token } => {
            let access_token = token_arg(io, access_token)?;
            let r = api
                .list_sessions(ListSessionsRequest { access_token })
                .await?;
            emit(io, json, render::sessions_json(&r), || {
                render::sessions_text(&r)
            })
        }
        Cmd::Cluster(_) => Err(Failure::Usage("cluster commands are handled above".into())),
        Cmd::Mfa(cmd) => mfa::execute(cmd, &api, json, io).await,
        Cmd::Health => {
            let results = api.health().await;
            let all_serving = results.iter().all(|(_, r)| matches!(r, Ok(true)));
            let value = json!({
                "healthy": all_serving,
                "endpoints": results.iter().map(|(url, r)| match r {
                    Ok(serving) => json!({ "endpoint": url, "serving": serving }),
                    Err(e) => json!({
                        "endpoint": url,
                        "serving": false,
                        "error": { "code": e.code(), "message": e.to_string() },
                    }),
                }).collect::<Vec<_>>(),
            });
            let text = || {
                results
                    .iter()
                    .map(|(url, r)| match r {
                        Ok(true) => format!("{url}: serving\n"),
                        Ok(false) => format!("{url}: not serving\n"),
                        Err(e) => format!("{url}: unreachable: {e}\n"),
                    })
                    .collect::<String>()
            };
            emit(io, json, value, text)?;
            Ok(if all_serving {
                EXIT_OK
            } else {
                EXIT_UNREACHABLE
            })
        }
    }
}

/// Writes the JSON value or the text, and returns success.
pub(crate) fn emit(
    io: &mut Io<'_>,
    json: bool,
    value: Value,
    text: impl FnOnce() -> String,
) -> Result<u8, Failure> {
    // A closed stdout (`authctl ... | head -0`) is not worth a different exit status.
    let _ = if json {
        writeln!(io.out, "{value}")
    } else {
        io.out.write_all(text().as_bytes())
    };
    Ok(EXIT_OK)
}

/// Reads one line of stdin, without its line ending.
pub(crate) fn read_line(io: &mut Io<'_>) -> Result<Option<String>, Failure> {
    let mut line = String::new();
    let n = io
        .stdin
        .read_line(&mut line)
        .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

/// The password: prompted for without echo on a terminal (twice when `confirm`),
/// otherwise the first line of stdin. Never from the command line.
fn read_password(io: &mut Io<'_>, confirm: bool) -> Result<String, Failure> {
    if io.stdin_is_tty {
        let prompt_err = |e: std::io::Error| Failure::Usage(format!("cannot read password: {e}"));
        let password = rpassword::prompt_password("Password: ").map_err(prompt_err)?;
        if confirm {
            let again = rpassword::prompt_password("Repeat password: ").map_err(prompt_err)?;
            if again != password {
                return Err(Failure::Usage("passwords do not match".into()));
            }
        }
        return Ok(password);
    }
    read_line(io)?.ok_or_else(|| {
        Failure::Usage(
            "no password on stdin: pipe it in as one line (passwords are never taken from \
             the command line)"
                .into(),
        )
    })
}

/// A token argument; `-` means one line of stdin.
pub(crate) fn token_arg(io: &mut Io<'_>, arg: String) -> Result<String, Failure> {
    if arg != "-" {
        return Ok(arg);
    }
    match read_line(io)? {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => Err(Failure::Usage("no token on stdin".into())),
    }
}

/// A `--save` file, opened (mode 0600) before the request so that an unusable path
/// fails before a session is opened.
struct SaveFile {
    path: PathBuf,
    file: File,
    created: bool,
}

impl SaveFile {
    fn open(path: &Path) -> Result<Self, Failure> {
        let created = !path.exists();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(path)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // An existing file keeps its mode on open: tighten it before secrets go in.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Failure::Usage(format!("cannot protect {}: {e}", path.display())))?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            created,
        })
    }

    fn write(mut self, value: &Value) -> Result<PathBuf, Failure> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::Usage(format!("cannot encode tokens: {e}")))?;
        let io_err = |e: std::io::Error| {
            Failure::Usage(format!("cannot write {}: {e}", self.path.display()))
        };
        self.file.set_len(0).map_err(io_err)?;
        self.file
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| self.file.sync_all())
            .map_err(io_err)?;
        Ok(self.path)
    }

    /// Removes the file if this command created it.
    fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn with_stdin<R>(input: &str, tty: bool, f: impl FnOnce(&mut Io<'_>) -> R) -> R {
        let mut stdin = std::io::Cursor::new(input.as_bytes().to_vec());
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut io = Io {
            stdin: &mut stdin,
            stdin_is_tty: tty,
            out: &mut out,
            err: &mut err,
        };
        f(&mut io)
    }

    #[test]
    fn passwords_and_tokens_come_from_stdin_lines() {
        let pw = with_stdin("s3cret pass\r\nnext\n", false, |io| read_password(io, true));
        assert_eq!(pw.unwrap(), "s3cret pass");
        let pw = with_stdin("no newline", false, |io| read_password(io, false));
        assert_eq!(pw.unwrap(), "no newline");
        let e = with_stdin("", false, |io| read_password(io, false)).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        let t = with_stdin("  tok.en \n", false, |io| token_arg(io, "-".into()));
        assert_eq!(t.unwrap(), "tok.en");
        let t = with_stdin("", false, |io| token_arg(io, "abc".into()));
        assert_eq!(t.unwrap(), "abc");
        assert!(with_stdin("\n", false, |io| token_arg(io, "-".into())).is_err());
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
            let cli = parse(args).unwrap();
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
