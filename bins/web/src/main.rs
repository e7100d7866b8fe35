//! `auth-web`: the auth-sdk web site.
//!
//! ```text
//! auth-web --listen 127.0.0.1:8080 --backend http://127.0.0.1:50051,http://127.0.0.1:50052
//! auth-web --embedded          # auth core and in-memory storage in this process
//! auth-web --tls-cert site.pem --tls-key site.key \
//!          --backend node1:50051,node2:50051 --backend-cacert ca.pem
//! ```
//!
//! With `--tls-cert`/`--tls-key` it serves HTTPS only, with
//! `Strict-Transport-Security` on every response and `Secure` cookies. Behind a
//! reverse proxy, give `--public-url https://…` and `--trusted-proxy IP|CIDR` (the
//! proxies whose `X-Forwarded-For` names the client). With
//! `--backend-cacert` it reaches the backends over TLS (`host:port` then means
//! `https://`), presenting `--backend-cert`/`--backend-key` if given.
//!
//! Every flag can also be set by environment variable (`AUTH_WEB_LISTEN`,
//! `AUTH_WEB_BACKEND`, ...). Logs go to stderr, filtered by `RUST_LOG` (default
//! `info`). SIGINT or SIGTERM stops it gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use auth_backend::metrics::Endpoint;
use auth_backend::{ClientTls, RemoteAuth, RemoteOptions};
use auth_core::{Algorithm, Auth, AuthApi, Config, KeyRing, SigningKey};
use auth_storage::memory::MemoryStorage;
use auth_web::{CsrfKey, PublicUrl, TlsConfig, TrustedProxy, WebConfig, router, serve, serve_tls};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The auth-sdk web site: sign-up, login and account pages plus a JSON API.
#[derive(Debug, Parser)]
#[command(name = "auth-web", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "AUTH_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// auth-backend endpoints, comma-separated (`host:port`, or `http://`/`https://`
    /// URLs); requests fail over between them. With --backend-cacert, `host:port`
    /// means `https://`.
    #[arg(
        long,
        env = "AUTH_WEB_BACKEND",
        value_delimiter = ',',
        required_unless_present = "embedded",
        conflicts_with = "embedded"
    )]
    backend: Vec<String>,

    /// Run the auth core in this process on in-memory storage (accounts are lost on
    /// exit) instead of talking to a backend.
    #[arg(long, env = "AUTH_WEB_EMBEDDED")]
    embedded: bool,

    /// With --embedded: the algorithm access tokens are signed with. `eddsa` publishes
    /// the public key at `/.well-known/jwks.json`, so other services can verify tokens
    /// without calling us; `hs256` keys are secret and never published. (A backend
    /// chooses its own: `auth-backend serve --signing-alg`.)
    #[arg(
        long,
        env = "AUTH_WEB_SIGNING_ALG",
        value_name = "ALG",
        default_value = "eddsa",
        requires = "embedded"
    )]
    signing_alg: Algorithm,

    /// With --embedded: load the signing keys from this directory (`auth-backend keys
    /// generate`) instead of generating one; with several, --signing-key-id names the
    /// one that signs and the others verify.
    #[arg(
        long,
        env = "AUTH_WEB_SIGNING_KEY_DIR",
        value_name = "DIR",
        requires = "embedded"
    )]
    signing_key_dir: Option<PathBuf>,

    /// With --signing-key-dir: the key that signs (needed when it holds several).
    #[arg(
        long,
        env = "AUTH_WEB_SIGNING_KEY_ID",
        value_name = "KID",
        requires = "signing_key_dir"
    )]
    signing_key_id: Option<String>,

    /// Mark cookies `Secure` with the `__Host-` prefix: use when served over HTTPS
    /// by a proxy in front. Always on with --tls-cert or an https:// --public-url.
    #[arg(long, env = "AUTH_WEB_SECURE_COOKIES")]
    secure_cookies: bool,

    /// The URL browsers reach the site at (`https://login.example.com`): with
    /// https://, cookies are secure; form posts from any other origin are refused.
    #[arg(long, env = "AUTH_WEB_PUBLIC_URL", value_name = "URL")]
    public_url: Option<PublicUrl>,

    /// A reverse proxy (IP or CIDR network) whose X-Forwarded-For names the client;
    /// repeat or separate with commas. From other peers the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "AUTH_WEB_TRUSTED_PROXIES",
        value_name = "IP|CIDR",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<TrustedProxy>,

    /// File (mode 0600) holding the secret, at least 32 bytes, that CSRF tokens are
    /// derived with. Give every instance behind one load balancer the same file;
    /// without it each process draws a random key.
    #[arg(long, env = "AUTH_WEB_CSRF_KEY_FILE", value_name = "FILE")]
    csrf_key_file: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(
        long,
        env = "AUTH_WEB_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert, readable by its owner only (mode 0600).
    #[arg(
        long,
        env = "AUTH_WEB_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// CA certificate (PEM) that issued the backends' certificates: talk to them over
    /// TLS.
    #[arg(
        long,
        env = "AUTH_WEB_BACKEND_CACERT",
        value_name = "FILE",
        conflicts_with = "embedded"
    )]
    backend_cacert: Option<PathBuf>,

    /// Client certificate (PEM) to present to the backends; needs --backend-key and
    /// --backend-cacert.
    #[arg(
        long,
        env = "AUTH_WEB_BACKEND_CERT",
        value_name = "FILE",
        requires_all = ["backend_key", "backend_cacert"]
    )]
    backend_cert: Option<PathBuf>,

    /// Private key (PEM, mode 0600) of --backend-cert.
    #[arg(
        long,
        env = "AUTH_WEB_BACKEND_KEY",
        value_name = "FILE",
        requires = "backend_cert"
    )]
    backend_key: Option<PathBuf>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "AUTH_WEB_MAX_BODY_BYTES", default_value_t = auth_web::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Throttle logins, registrations and refreshes per client address here, before
    /// the backend is called (`false` for load tests from one machine).
    #[arg(long, env = "AUTH_WEB_THROTTLE", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    throttle: bool,

    /// Connections one client address (an IPv6 client's /64) may hold open; more are
    /// closed at accept. Trusted proxies are not bounded. 0 = unbounded.
    #[arg(long, env = "AUTH_WEB_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N", default_value_t = auth_web::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    max_connections_per_address: usize,

    /// How long a request refused by the throttle is held before its 429 is sent (at
    /// most its Retry-After): `1s`, `250ms`, `0` to answer at once.
    #[arg(long, env = "AUTH_WEB_REFUSAL_DELAY", value_name = "DURATION", default_value = "1s", value_parser = auth_backend::duration::parse_duration)]
    refusal_delay: std::time::Duration,

    /// Serve Prometheus metrics (`GET /metrics`) on this address, a listener of its
    /// own. Keep it on a private network, or set --metrics-token-file.
    #[arg(long, env = "AUTH_WEB_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// Require `Authorization: Bearer <token>` on `/metrics`: the first line of this
    /// file (mode 0600, at least 16 characters).
    #[arg(
        long,
        env = "AUTH_WEB_METRICS_TOKEN_FILE",
        value_name = "FILE",
        requires = "metrics_listen"
    )]
    metrics_token_file: Option<PathBuf>,
}

/// The `/metrics` endpoint of `--metrics-listen`, bound (a bad address fails the
/// start), or `None`.
async fn metrics_endpoint(
    args: &Args,
) -> Result<Option<(Endpoint, tokio::net::TcpListener)>, Box<dyn std::error::Error>> {
    let Some(addr) = args.metrics_listen else {
        return Ok(None);
    };
    let mut endpoint = Endpoint::new(auth_backend::metrics::install()?);
    if let Some(path) = &args.metrics_token_file {
        auth_raft::tls::check_private_file(path)?;
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        match text.lines().next().map(str::trim) {
            Some(t) if t.len() >= 16 => {
                endpoint = endpoint.token(zeroize::Zeroizing::new(t.to_owned()));
            }
            _ => {
                return Err(format!(
                    "{}: the token (first line) must have at least 16 characters",
                    path.display()
                )
                .into());
            }
        }
    }
    Ok(Some((endpoint, tokio::net::TcpListener::bind(addr).await?)))
}

/// With --embedded: the key ring access tokens are signed with.
fn embedded_keys(args: &Args) -> Result<KeyRing, Box<dyn std::error::Error>> {
    let ring = match &args.signing_key_dir {
        Some(dir) => auth_core::keys::KeyDir::new(dir).load(args.signing_key_id.as_deref())?,
        None => KeyRing::new(match args.signing_alg {
            Algorithm::EdDsa => SigningKey::generate_ed25519(),
            _ => SigningKey::generate_hs256(),
        }),
    };
    let signs_with = ring.current().algorithm();
    if signs_with != args.signing_alg && args.signing_key_dir.is_some() {
        return Err(format!(
            "--signing-alg is {} but the signing key of --signing-key-dir is {signs_with}",
            args.signing_alg
        )
        .into());
    }
    Ok(ring)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(limit) = auth_backend::limits::raise_open_files() {
        tracing::debug!(limit, "open-files limit");
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Display, not Debug: the message names the file at fault and the fix.
            eprintln!("auth-web: {e}");
            ExitCode::FAILURE
        }
    }
}

/// TLS to the backends: `None` without `--backend-cacert`.
fn backend_tls(args: &Args) -> Result<Option<ClientTls>, Box<dyn std::error::Error>> {
    let Some(ca) = &args.backend_cacert else {
        return Ok(None);
    };
    let mut tls = ClientTls::from_ca_file(ca)?;
    if let (Some(cert), Some(key)) = (&args.backend_cert, &args.backend_key) {
        auth_raft::tls::check_private_file(key)?;
        tls = tls.with_identity_files(cert, key)?;
    }
    Ok(Some(tls))
}

/// The CSRF key of `--csrf-key-file`, if given: its contents, surrounding whitespace
/// removed. The error names the file, never the key.
fn csrf_key(args: &Args) -> Result<Option<CsrfKey>, Box<dyn std::error::Error>> {
    let Some(path) = &args.csrf_key_file else {
        return Ok(None);
    };
    auth_raft::tls::check_private_file(path)?;
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let text = bytes.trim_ascii();
    let key = CsrfKey::from_bytes(text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(key))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Installed now, not when first polled: a SIGTERM that arrives while the files are
    // read or the backends dialled must stop us gracefully, not kill us.
    let shutdown = auth_backend::signal::shutdown_signal()?;
    // Every file is checked before anything listens or connects.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig::from_files(cert, key)?),
        _ => None,
    };
    let backend_tls = backend_tls(&args)?;
    let csrf_key = csrf_key(&args)?;
    let metrics = metrics_endpoint(&args).await?;

    let mut embedded = None;
    let api: Arc<dyn AuthApi> = if args.embedded {
        let mut config = Config::default();
        config.keys = Some(embedded_keys(&args)?);
        if metrics.is_some() {
            config.audit.sink = Arc::new(auth_core::audit::Tee(vec![
                config.audit.sink.clone(),
                Arc::new(auth_core::metrics::MetricsSink::default()),
            ]));
        }
        // Passkeys for the site's own origin: its public URL, else localhost.
        config.mfa.passkeys = match &args.public_url {
            Some(url) => url.passkeys(),
            None => Some(auth_web::localhost_passkeys(args.listen.port())),
        };
        let auth = Auth::new(config, MemoryStorage::new())?;
        auth.start()?;
        tracing::warn!("embedded mode: accounts are kept in memory and lost on exit");
        embedded = Some(auth.clone());
        Arc::new(auth)
    } else {
        tracing::info!(backends = ?args.backend, tls = backend_tls.is_some(), "using auth-backend");
        let options = RemoteOptions {
            tls: backend_tls,
            ..RemoteOptions::default()
        };
        Arc::new(RemoteAuth::new(&args.backend, options)?)
    };

    let config = WebConfig {
        // Cookies sent over HTTPS must never travel in clear.
        secure_cookies: args.secure_cookies || tls.is_some(),
        public_url: args.public_url,
        trusted_proxies: args.trusted_proxies,
        csrf_key,
        max_body_bytes: args.max_body_bytes,
        throttle: args.throttle.then(auth_core::ThrottlePolicy::default),
        max_connections_per_address: args.max_connections_per_address,
        refusal_delay: args.refusal_delay,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let metrics_server = metrics.map(|(endpoint, l)| {
        if let Ok(a) = l.local_addr() {
            tracing::info!(address = %a, "metrics listening");
        }
        tokio::spawn(endpoint.serve(l, std::future::pending()))
    });
    let app = router(api, config.clone());
    match tls {
        Some(tls) => {
            tracing::info!(address = %listener.local_addr()?, "auth-web listening (HTTPS)");
            serve_tls(listener, app, &config, tls, shutdown).await?;
        }
        None => {
            tracing::info!(address = %listener.local_addr()?, "auth-web listening");
            serve(listener, app, &config, shutdown).await?;
        }
    }

    if let Some(m) = metrics_server {
        m.abort();
    }
    if let Some(auth) = embedded {
        auth.stop().await;
    }
    tracing::info!("auth-web stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["auth-web", "--embedded"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("valid flags")
    }

    #[test]
    fn the_csrf_key_file_must_be_private_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("auth-web-csrf-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        let secret = "s3cret-s3cret-s3cret-s3cret-s3cret-42";
        auth_raft::tls::write_private_file(&good, format!("{secret}\n").as_bytes()).unwrap();
        let short = dir.join("short.key");
        auth_raft::tls::write_private_file(&short, b"tiny-secret").unwrap();
        let open = dir.join("open.key");
        std::fs::write(&open, secret).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        }

        assert!(csrf_key(&args(&[])).unwrap().is_none());
        let arg = |p: &std::path::Path| args(&["--csrf-key-file", p.to_str().unwrap()]);
        let key = csrf_key(&arg(&good)).unwrap().expect("a key");
        assert!(!format!("{key:?}").contains(secret));
        let e = csrf_key(&arg(&short)).unwrap_err().to_string();
        assert!(e.contains("short.key") && !e.contains("tiny-secret"), "{e}");
        #[cfg(unix)]
        {
            let e = csrf_key(&arg(&open)).unwrap_err().to_string();
            assert!(e.contains("open.key") && !e.contains(secret), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn proxy_and_public_url_flags_are_parsed() {
        let a = args(&[
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.7",
            "--trusted-proxy",
            "fd00::/8",
            "--public-url",
            "https://login.example.com",
        ]);
        assert_eq!(a.trusted_proxies.len(), 3);
        assert!(a.public_url.as_ref().is_some_and(PublicUrl::is_https));
        assert!(Args::try_parse_from(["auth-web", "--embedded", "--trusted-proxy", "x"]).is_err());
        assert!(
            Args::try_parse_from(["auth-web", "--embedded", "--public-url", "ftp://x"]).is_err()
        );
    }
}
