//! `auth-web`: the auth-sdk web site.
//!
//! ```text
//! auth-web --listen 127.0.0.1:8080 --backend http://127.0.0.1:50051,http://127.0.0.1:50052
//! auth-web --embedded          # auth core and in-memory storage in this process
//! ```
//!
//! Every flag can also be set by environment variable (`AUTH_WEB_LISTEN`,
//! `AUTH_WEB_BACKEND`, ...). Logs go to stderr, filtered by `RUST_LOG` (default
//! `info`). SIGINT or SIGTERM stops it gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::{Auth, AuthApi, Config};
use auth_storage::memory::MemoryStorage;
use auth_web::{WebConfig, router, serve};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The auth-sdk web site: sign-up, login and account pages plus a JSON API.
#[derive(Debug, Parser)]
#[command(name = "auth-web", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "AUTH_WEB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// auth-backend endpoints, comma-separated (`host:port` or `http://host:port`);
    /// requests fail over between them.
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

    /// Mark cookies `Secure` with the `__Host-` prefix: use when served over HTTPS.
    #[arg(long, env = "AUTH_WEB_SECURE_COOKIES")]
    secure_cookies: bool,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "AUTH_WEB_MAX_BODY_BYTES", default_value_t = auth_web::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut embedded = None;
    let api: Arc<dyn AuthApi> = if args.embedded {
        let auth = Auth::new(Config::default(), MemoryStorage::new())?;
        auth.start()?;
        tracing::warn!("embedded mode: accounts are kept in memory and lost on exit");
        embedded = Some(auth.clone());
        Arc::new(auth)
    } else {
        tracing::info!(backends = ?args.backend, "using auth-backend");
        Arc::new(RemoteAuth::new(&args.backend, RemoteOptions::default())?)
    };

    let config = WebConfig {
        secure_cookies: args.secure_cookies,
        max_body_bytes: args.max_body_bytes,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "auth-web listening");
    serve(listener, router(api, config), shutdown_signal()).await?;

    if let Some(auth) = embedded {
        auth.stop().await;
    }
    tracing::info!("auth-web stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
