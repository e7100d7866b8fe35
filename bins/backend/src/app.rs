//! What the `auth-backend` binary does, as library functions: logging set-up, signal
//! handling and [`run`], which serves until shut down. `main.rs` only parses flags and
//! calls [`main_serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use auth_core::{Auth, AuthApi, AuthError};
use auth_storage::memory::MemoryStorage;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zeroize::Zeroizing;

use auth_raft::RaftNode;

use crate::config::{ConfigError, LogFormat, Settings};
use crate::server::{Drain, ServerOptions, serve_client};

/// Exit status for a configuration or usage error (same as clap's).
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for a failure while running (cannot bind, server error).
pub const EXIT_RUNTIME: u8 = 1;

/// Why [`run`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration cannot be used (bad key file, ...).
    Config(ConfigError),
    /// The listen address cannot be bound.
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    Serve(String),
    /// The Raft node could not start (bad data directory, another cluster's data, ...).
    Raft(auth_raft::StartError),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            RunError::Serve(m) => write!(f, "server failed: {m}"),
            RunError::Raft(e) => write!(f, "raft node: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Config(e)
    }
}

/// Installs the global tracing subscriber: logs on stderr, level from `RUST_LOG`
/// (default `info`), as text or JSON lines. Does nothing if one is already installed.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub use crate::signal::shutdown_signal;

/// Builds the auth service, binds [`Settings::listen`], calls `on_listening` with the
/// bound address, and serves until `shutdown` resolves. Then it stops accepting, lets
/// in-flight calls finish (for at most [`Settings::shutdown_timeout`]) and stops the
/// service.
///
/// `settings` are used as they are: the `--config` file, if any, must already be applied
/// ([`Settings::load`], as [`main_serve`] does). They are checked here.
pub async fn run(
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), RunError> {
    settings.check()?;
    let mut core = settings.auth_config()?;
    core.audit = settings.audit(None)?;
    let metrics = match &settings.metrics_listen {
        Some(addr) => {
            let handle = crate::metrics::install().map_err(RunError::Serve)?;
            let mut endpoint = crate::metrics::Endpoint::new(handle);
            if let Some(token) = settings.metrics_token()? {
                endpoint = endpoint.token(token);
            }
            core.audit.sink = Arc::new(auth_core::audit::Tee(vec![
                core.audit.sink.clone(),
                Arc::new(auth_core::metrics::MetricsSink::default()),
            ]));
            Some((endpoint, bind(addr).await?))
        }
        None => None,
    };
    let raft = settings.raft_config()?;
    let mut options = settings.server_options();
    options.tls = settings.client_tls()?;
    if settings.signing_key()?.is_none() {
        tracing::warn!(
            "no signing key configured (--signing-key-file): using a random key; \
             access tokens will not survive a restart nor verify on other backends"
        );
    }
    if settings.mfa.mfa_key_file.is_none() {
        if raft.is_some() {
            tracing::warn!(
                "no MFA key configured (--mfa-key-file): TOTP enrolment is refused on this \
                 cluster; give every node the same key to offer it"
            );
        } else {
            tracing::warn!(
                "no MFA key configured (--mfa-key-file): using a random key; enrolled TOTP \
                 secrets will not survive a restart"
            );
        }
    }
    if options.tls.is_none() {
        tracing::warn!(
            "the client listener has no TLS (--tls-cert, --tls-key): passwords and tokens \
             cross the network in clear"
        );
    }
    let first_admin = settings.bootstrap_admin()?;
    let listener = bind(settings.listen()).await?;
    let result = match raft {
        None => {
            let auth = Auth::new(core, MemoryStorage::new()).map_err(ConfigError::from)?;
            auth.start().map_err(ConfigError::from)?;
            let bootstrap = spawn_bootstrap(&auth, first_admin);
            let api = Arc::new(auth.clone());
            let r = serve_on(
                listener,
                settings,
                options,
                api,
                Side {
                    peer: None,
                    metrics,
                },
                shutdown,
                on_listening,
            )
            .await;
            bootstrap.abort();
            auth.stop().await;
            r
        }
        Some(raft) => {
            let peer_addr = settings.raft.peer_listen.clone().unwrap_or_default();
            if raft.tls.is_none() {
                tracing::warn!(
                    peer_listen = %peer_addr,
                    "--insecure: the peer listener has no TLS; anyone who can reach it can \
                     act as any node or as an admin, read every password hash and take over \
                     the cluster. Never run a cluster like this outside a test"
                );
            }
            let peer_listener = bind(&peer_addr).await?;
            let node = RaftNode::start(raft).await.map_err(RunError::Raft)?;
            core.cluster = Some(Arc::new(crate::members::RaftClusterView::new(node.clone())));
            let auth = Auth::new(core, node.storage()).map_err(ConfigError::from)?;
            auth.start().map_err(ConfigError::from)?;
            let bootstrap = spawn_bootstrap(&auth, first_admin);
            let api = Arc::new(auth.clone());
            let peer = Some((node.clone(), peer_listener));
            let r = serve_on(
                listener,
                settings,
                options,
                api,
                Side { peer, metrics },
                shutdown,
                on_listening,
            )
            .await;
            bootstrap.abort();
            auth.stop().await;
            node.shutdown().await;
            r
        }
    };
    tracing::info!("stopped");
    result
}

/// Creates the `--bootstrap-admin` account in the background once storage takes
/// writes (a cluster may still be electing its leader): retried for up to a minute,
/// then given up with an error in the log. Idempotent (see `Auth::bootstrap_admin`).
fn spawn_bootstrap<S: auth_storage::Storage>(
    auth: &Auth<S>,
    admin: Option<(String, Zeroizing<String>)>,
) -> AbortOnDrop {
    let Some((name, password)) = admin else {
        return AbortOnDrop(None);
    };
    let auth = auth.clone();
    AbortOnDrop(Some(tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match auth.bootstrap_admin(&name, &password).await {
                Ok((user, created)) => {
                    tracing::info!(
                        user_id = %user.id,
                        created,
                        "bootstrap administrator ready"
                    );
                    return;
                }
                Err(e @ (AuthError::Unavailable(_) | AuthError::Overloaded { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(code = e.code(), "bootstrap administrator: retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    tracing::error!(
                        code = e.code(),
                        "cannot create the bootstrap administrator {name:?}: {e}"
                    );
                    return;
                }
            }
        }
    })))
}

/// A background task that ends with its owner.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    fn abort(&self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.abort();
    }
}

async fn bind(addr: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Serves any `api` the way the binary does: binds [`Settings::listen`], reports the
/// bound address to `on_listening`, serves with [`Settings::server_options`] (and the
/// client TLS settings) until `shutdown` resolves, then waits at most
/// [`Settings::shutdown_timeout`] for in-flight calls. Only the server settings are used.
pub async fn serve_until(
    settings: &Settings,
    api: Arc<dyn AuthApi>,
    shutdown: impl Future<Output = ()> + Send,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), RunError> {
    let mut options = settings.server_options();
    options.tls = settings.client_tls()?;
    let listener = bind(settings.listen()).await?;
    serve_on(
        listener,
        settings,
        options,
        api,
        Side::default(),
        shutdown,
        on_listening,
    )
    .await
}

/// How long a stopping server refuses new calls (as not done) before it closes its
/// listener.
const REFUSAL_GRACE: Duration = Duration::from_millis(300);

/// Longest a stopping leader tries to hand leadership over before it stops anyway.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);

/// The listeners beside the client one: a Raft node's peer listener, `/metrics`.
#[derive(Default)]
struct Side {
    peer: Option<(RaftNode, TcpListener)>,
    metrics: Option<(crate::metrics::Endpoint, TcpListener)>,
}

/// Serves the client listener and, for a Raft node, its peer listener. On shutdown the
/// client listener drains first; the peer listener stays up until then, because calls
/// in flight may still need Raft traffic to finish.
async fn serve_on(
    listener: TcpListener,
    settings: &Settings,
    options: ServerOptions,
    api: Arc<dyn AuthApi>,
    side: Side,
    shutdown: impl Future<Output = ()> + Send,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), RunError> {
    let Side { peer, metrics } = side;
    let raft_node = peer.as_ref().map(|(node, _)| node.clone());
    let (drain_tx, drain_rx) = watch::channel(Drain::Serving);
    let mut options = options;
    options.draining = Some(drain_rx);
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: settings.listen().to_owned(),
        source,
    })?;
    let shutdown_timeout = settings.shutdown_timeout();
    let (peer_stop_tx, mut peer_stop_rx) = watch::channel(false);
    let mut metrics_server = None;
    if let Some((mut endpoint, metrics_listener)) = metrics {
        if let Some((node, _)) = &peer {
            let node = node.clone();
            endpoint = endpoint.before_scrape(move || node.record_metrics());
        }
        let mut stop_rx = peer_stop_tx.subscribe();
        let stop = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        if let Ok(a) = metrics_listener.local_addr() {
            tracing::info!(metrics_addr = %a, "metrics listener up");
        }
        metrics_server = Some(tokio::spawn(endpoint.serve(metrics_listener, stop)));
    }
    let mut peer_server = None;
    if let Some((node, peer_listener)) = peer {
        let peer_addr = peer_listener
            .local_addr()
            .map_err(|source| RunError::Bind {
                addr: "peer listener".into(),
                source,
            })?;
        let stop = async move {
            let _ = peer_stop_rx.wait_for(|stop| *stop).await;
        };
        let server = node
            .serve_peer(peer_listener, settings.peer_limits(), stop)
            .map_err(RunError::Serve)?;
        tracing::info!(%peer_addr, "peer listener up");
        peer_server = Some(tokio::spawn(server));
    }
    tracing::info!(
        %addr,
        storage = %settings.storage(),
        tls = options.tls.is_some(),
        max_request_bytes = options.max_request_bytes,
        "auth-backend listening"
    );
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let graceful = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let mut server = tokio::spawn(serve_client(listener, api, options, graceful));
    on_listening(addr);
    let joined = tokio::select! {
        joined = &mut server => Some(joined),
        () = shutdown => {
            // Health says NOT_SERVING from the start of the drain; calls are still
            // served while a leader hands over (its writes wait for the next leader).
            let _ = drain_tx.send(Drain::Draining);
            if let Some(node) = &raft_node {
                let started = std::time::Instant::now();
                match node.hand_over(HAND_OVER_TIMEOUT).await {
                    Ok(Some(to)) => tracing::info!(
                        to,
                        took_ms = started.elapsed().as_millis() as u64,
                        "leadership handed over"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "leadership hand-over failed; the cluster will elect a leader"
                    ),
                }
            }
            // Then new calls are refused, marked as not done, so clients take them
            // elsewhere, for a moment before the listener closes: a call racing the
            // close of a connection cannot tell whether it was done.
            let _ = drain_tx.send(Drain::Refusing);
            tokio::time::sleep(REFUSAL_GRACE).await;
            tracing::info!("shutting down: no new calls, finishing in-flight ones");
            let _ = stop_tx.send(true);
            match tokio::time::timeout(shutdown_timeout, &mut server).await {
                Ok(joined) => Some(joined),
                Err(_) => {
                    tracing::warn!(
                        timeout = ?shutdown_timeout,
                        "in-flight calls did not finish in time; closing them"
                    );
                    server.abort();
                    None
                }
            }
        }
    };
    let _ = peer_stop_tx.send(true);
    if let Some(m) = metrics_server {
        m.abort();
    }
    if let Some(mut p) = peer_server
        && tokio::time::timeout(shutdown_timeout, &mut p)
            .await
            .is_err()
    {
        p.abort();
    }
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(RunError::Serve(e.to_string())),
        Some(Err(e)) => Err(RunError::Serve(e.to_string())),
    }
}

/// `auth-backend serve`: applies the configuration file under the flags, checks the
/// settings, sets up logging, serves until SIGINT/SIGTERM and returns the process exit
/// status (0 after a clean shutdown, [`EXIT_CONFIG`] for a configuration error,
/// [`EXIT_RUNTIME`] otherwise).
///
/// Prints exactly one line on stdout, `listening on <addr>`, once the port is bound.
pub fn main_serve(flags: &Settings) -> ExitCode {
    let settings = match flags.clone().load().and_then(|s| s.check().map(|()| s)) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("auth-backend: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(settings.log_format());
    if let Some(limit) = crate::limits::raise_open_files() {
        tracing::debug!(limit, "open-files limit");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("auth-backend: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown = shutdown_signal().map_err(|e| RunError::Serve(e.to_string()))?;
        run(&settings, shutdown, |addr| {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {addr}");
            let _ = out.flush();
        })
        .await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "auth-backend failed");
            eprintln!("auth-backend: {e}");
            match e {
                RunError::Config(_)
                | RunError::Raft(
                    auth_raft::StartError::Store(_) | auth_raft::StartError::Config(_),
                ) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::from(EXIT_RUNTIME),
            }
        }
    }
}
