//! `auth_backend::serve` in process, on an ephemeral loopback port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use auth_backend::server::ServerTls;
use auth_backend::{ServerOptions, serve};
use auth_core::AuthApi;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{FIXTURE_DEADLINE, TestCa};

type ServeResult = Result<(), tonic::transport::Error>;

/// How to start a [`GrpcServer`]: where, with which [`ServerOptions`], with or without
/// TLS, and on which runtime.
#[derive(Debug)]
#[must_use = "a builder does nothing until started"]
pub struct GrpcServerBuilder {
    addr: SocketAddr,
    options: ServerOptions,
    tls: Option<(ServerTls, String)>,
}

impl Default for GrpcServerBuilder {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            options: ServerOptions::default(),
            tls: None,
        }
    }
}

impl GrpcServerBuilder {
    /// Listen on `addr` instead of `127.0.0.1:0`: to bring a stopped server back on its
    /// old port (the socket is bound with `SO_REUSEADDR`).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Serve with these options (default: [`ServerOptions::default`]).
    /// [`GrpcServerBuilder::tls`] takes precedence over their `tls`.
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Serve over TLS with a server certificate from `ca` (for 127.0.0.1/localhost);
    /// clients trust [`GrpcServer::ca_pem`].
    pub fn tls(mut self, ca: &TestCa) -> Self {
        self.tls = Some((ca.server_tls(), ca.cert_pem().to_owned()));
        self
    }

    /// Serves `api` on the current tokio runtime.
    pub async fn start(self, api: impl AuthApi) -> GrpcServer {
        self.spawn(&tokio::runtime::Handle::current(), async { api }, None)
    }

    /// Serves the API that `api` resolves to on a runtime of the server's own, built
    /// here; `api` runs on that runtime too (an `Auth` started there spawns its sweeper
    /// there). For synchronous tests, and for [`GrpcServer::kill`].
    pub fn start_on_own_runtime<A, F>(self, api: F) -> GrpcServer
    where
        A: AuthApi,
        F: Future<Output = A> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        self.spawn(&runtime.handle().clone(), api, Some(runtime))
    }

    /// Binds the listener and spawns the server on `runtime` (`owned`, if the server
    /// owns it).
    fn spawn<A, F>(
        self,
        runtime: &tokio::runtime::Handle,
        api: F,
        owned: Option<Runtime>,
    ) -> GrpcServer
    where
        A: AuthApi,
        F: Future<Output = A> + Send + 'static,
    {
        let (addr, options, ca_pem) = self.into_parts();
        let https = options.tls.is_some();
        let listener = {
            let _in_runtime = runtime.enter();
            listen(addr)
        };
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let api: Arc<dyn AuthApi> = Arc::new(api.await);
            serve(listener, api, options, async move {
                let _ = stopped.await;
            })
            .await
        });
        GrpcServer {
            addr,
            https,
            ca_pem,
            stop: Some(stop),
            task: Some(task),
            runtime: owned,
        }
    }

    fn into_parts(self) -> (SocketAddr, ServerOptions, Option<String>) {
        let mut options = self.options;
        let ca_pem = self.tls.map(|(tls, ca_pem)| {
            options.tls = Some(tls);
            ca_pem
        });
        (self.addr, options, ca_pem)
    }
}

/// A listener on `addr` that can be re-bound right after the previous server on that
/// port went away.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket.listen(128).expect("listen")
}

/// `AuthService` (with health and reflection, as `auth-backend serve` has them) served
/// in process by [`auth_backend::serve`].
///
/// Shut down gracefully by [`GrpcServer::stop`] (which waits, bounded, and checks that
/// the server returned `Ok`) or by dropping it. A server on its own runtime dropped
/// outside any runtime is waited for and checked the same way; dropped inside one, its
/// runtime is shut down at once.
#[derive(Debug)]
pub struct GrpcServer {
    addr: SocketAddr,
    https: bool,
    ca_pem: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ServeResult>>,
    runtime: Option<Runtime>,
}

impl GrpcServer {
    /// How to start one with other options, TLS, a fixed address or its own runtime.
    pub fn builder() -> GrpcServerBuilder {
        GrpcServerBuilder::default()
    }

    /// Serves `api` in plaintext on `127.0.0.1:0` with the default options, on the
    /// current runtime.
    pub async fn start(api: impl AuthApi) -> GrpcServer {
        Self::builder().start(api).await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as an endpoint without a scheme.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The certificate of the CA that issued the server's certificate, when it was
    /// started with [`GrpcServerBuilder::tls`].
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Triggers graceful shutdown without waiting for it (see [`GrpcServer::join`]).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and waits (bounded) until the server has returned `Ok`.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        self.join_task().await.expect("gRPC server result");
    }

    /// Waits (bounded) for the server to return after [`GrpcServer::begin_shutdown`],
    /// and returns what it returned.
    pub async fn join(mut self) -> Result<(), tonic::transport::Error> {
        self.join_task().await
    }

    async fn join_task(&mut self) -> ServeResult {
        let task = self.task.take().expect("the server task is joined once");
        let result = tokio::time::timeout(FIXTURE_DEADLINE, task)
            .await
            .expect("gRPC server did not shut down within the deadline")
            .expect("gRPC server task");
        if let Some(runtime) = self.runtime.take() {
            // The server is gone; what is left (an `Auth`'s sweeper) goes with it.
            runtime.shutdown_background();
        }
        result
    }

    /// Drops every task of the server at once, connections and requests in flight
    /// included, as when its process dies, and waits until they are gone, so the port
    /// is free again.
    ///
    /// # Panics
    ///
    /// Unless the server was started with [`GrpcServerBuilder::start_on_own_runtime`]:
    /// on the caller's runtime its connections would outlive it.
    pub async fn kill(mut self) {
        let runtime = self
            .runtime
            .take()
            .expect("kill() needs a server started with start_on_own_runtime");
        tokio::task::spawn_blocking(move || runtime.shutdown_timeout(FIXTURE_DEADLINE))
            .await
            .expect("server runtime shutdown");
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        match self.task.take() {
            Some(task) if tokio::runtime::Handle::try_current().is_err() => {
                let joined =
                    runtime.block_on(async { tokio::time::timeout(FIXTURE_DEADLINE, task).await });
                if !std::thread::panicking() {
                    assert!(
                        matches!(joined, Ok(Ok(Ok(())))),
                        "gRPC server did not shut down cleanly: {joined:?}"
                    );
                }
            }
            _ => runtime.shutdown_background(),
        }
    }
}
