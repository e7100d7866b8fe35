//! Listening with bounds: a cap on open connections per listener (on top of tonic's
//! per-connection stream limits), and the peer listener itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; further clients wait in the kernel's accept queue
    /// until one closes. Default 1 024.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls) per connection. Default 128.
    pub max_concurrent_streams: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_concurrent_streams: 128,
        }
    }
}

/// An accepted connection holding one of the listener's connection slots until dropped.
pub struct LimitedConn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for LimitedConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of `listener`, at most `max_connections` open at once, with
/// `TCP_NODELAY` set (without it, Nagle plus delayed ACKs add ~40 ms to responses).
/// The listener closes when the stream is dropped.
pub fn limited_incoming(
    listener: TcpListener,
    max_connections: usize,
) -> ReceiverStream<std::io::Result<LimitedConn>> {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                () = tx.closed() => return,
                s = Arc::clone(&slots).acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                () = tx.closed() => return,
                a = listener.accept() => a,
            };
            let item = accepted.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                LimitedConn {
                    stream,
                    _slot: slot,
                }
            });
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(feature = "node")]
impl crate::RaftNode {
    /// Serves this node's peer listener — `RaftService` and `ClusterAdmin`, with mutual
    /// TLS unless the node was configured without TLS — until `shutdown` resolves.
    ///
    /// ```no_run
    /// # async fn run(node: auth_raft::RaftNode) -> Result<(), Box<dyn std::error::Error>> {
    /// use auth_raft::net::ListenerLimits;
    ///
    /// let listener = tokio::net::TcpListener::bind("10.0.0.1:7001").await?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let serving = tokio::spawn(node.serve_peer(listener, ListenerLimits::default(), async {
    ///     let _ = stopped.await;
    /// })?);
    /// // ... later: stop serving, let calls in flight finish.
    /// let _ = stop.send(());
    /// serving.await??;
    /// # Ok(()) }
    /// ```
    pub fn serve_peer(
        &self,
        listener: TcpListener,
        limits: ListenerLimits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<
        impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
        String,
    > {
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .tcp_nodelay(true);
        if let Some(tls) = &self.shared.tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|e| format!("peer TLS: {e}"))?;
        }
        // A graceful stop waits for the calls in flight; a peer's request stream
        // lasts as long as that peer, so this server's streams end when it begins.
        let (closing, closed) = tokio::sync::watch::channel(false);
        let router = builder
            .add_service(self.grpc_service_until(Some(closed)))
            .add_service(self.admin_service());
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        Ok(router.serve_with_incoming_shutdown(
            limited_incoming(listener, limits.max_connections),
            shutdown,
        ))
    }
}
