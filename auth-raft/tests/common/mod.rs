//! An in-process cluster on loopback: each node has its own data dir, its own peer
//! listener on an ephemeral port with mutual TLS (certificates from a `TestCa` made for
//! the cluster), and talks to the others over real gRPC.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use auth_raft::net::ListenerLimits;
use auth_raft::tls::PeerIdentity;
use auth_raft::{RaftConfig, RaftNode, RaftStorage, ReadConsistency};
use auth_testing::TestCa;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::{BoxFuture, Service, http};

pub struct Node {
    pub node: RaftNode,
    pub addr: String,
    pub cfg: RaftConfig,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: TempDir,
    pub cluster_id: String,
    pub ca: TestCa,
}

async fn serve(node: &RaftNode, listener: TcpListener) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let server = node
        .serve_peer(listener, ListenerLimits::default(), async {
            let _ = rx.await;
        })
        .unwrap();
    let handle = tokio::spawn(async move {
        let _ = server.await;
    });
    (tx, handle)
}

/// `RaftService` as a build from before the streams serves it: `AppendStream` and
/// `ForwardStream` are unknown.
#[derive(Clone)]
struct WithoutStreams<S>(S);

impl<S> tonic::server::NamedService for WithoutStreams<S> {
    const NAME: &'static str = "auth.v1.RaftService";
}

impl<S> Service<http::Request<tonic::body::Body>> for WithoutStreams<S>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path();
        if path == "/auth.v1.RaftService/AppendStream"
            || path == "/auth.v1.RaftService/ForwardStream"
        {
            Box::pin(async { Ok(tonic::Status::unimplemented("unknown method").into_http()) })
        } else {
            Box::pin(self.0.call(req))
        }
    }
}

/// Serves `node`'s peer listener as an older build would: without the streams.
async fn serve_without_streams(
    node: &RaftNode,
    cfg: &RaftConfig,
    listener: TcpListener,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        builder = builder.tls_config(tls.server_config()).unwrap();
    }
    let server = builder
        .add_service(WithoutStreams(node.grpc_service()))
        .add_service(node.admin_service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = rx.await;
            },
        );
    let handle = tokio::spawn(async move {
        let _ = server.await;
    });
    (tx, handle)
}

impl Cluster {
    /// Starts `n` nodes, waits for a leader.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes whose peer listeners do not know `AppendStream` and
    /// `ForwardStream` (as a build from before them), waits for a leader.
    pub async fn start_without_streams(n: u64) -> Cluster {
        Self::start_inner(n, |_| {}, true).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut RaftConfig)) -> Cluster {
        Self::start_inner(n, tweak, false).await
    }

    async fn start_inner(n: u64, tweak: impl Fn(&mut RaftConfig), old_peers: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            members.insert(id, l.local_addr().unwrap().to_string());
            listeners.push(l);
        }
        let cluster_id = format!("test-{}", std::process::id());
        let ca = TestCa::new("test cluster CA");
        let mut nodes = Vec::new();
        for (id, listener) in (1..=n).zip(listeners) {
            let addr = members[&id].clone();
            let mut cfg = RaftConfig::new(id, addr.clone(), dir.path().join(format!("n{id}")));
            cfg.cluster_id = cluster_id.clone();
            cfg.initial_members = members.clone();
            cfg.tls = Some(ca.peer_tls(PeerIdentity::Node(id)));
            tweak(&mut cfg);
            let node = RaftNode::start(cfg.clone()).await.unwrap();
            let (stop, server) = if old_peers {
                serve_without_streams(&node, &cfg, listener).await
            } else {
                serve(&node, listener).await
            };
            nodes.push(Node {
                node,
                addr,
                cfg,
                stop: Some(stop),
                server: Some(server),
            });
        }
        let c = Cluster {
            nodes,
            dir,
            cluster_id,
            ca,
        };
        c.leader(Duration::from_secs(10)).await;
        c
    }

    /// The id of the leader, waiting up to `timeout`.
    pub async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        for n in &self.nodes {
            if n.stop.is_none() {
                continue;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(l) = n.node.wait_for_leader(left).await {
                return l;
            }
        }
        panic!("no leader within {timeout:?}");
    }

    pub fn storage(&self, id: u64) -> RaftStorage {
        self.nodes[(id - 1) as usize].node.storage()
    }

    /// A node that is not the leader.
    pub async fn follower(&self) -> u64 {
        let leader = self.leader(Duration::from_secs(10)).await;
        (1..=self.nodes.len() as u64)
            .find(|id| *id != leader)
            .unwrap()
    }

    /// Stops a node's server and Raft (like a crash, minus the page cache).
    pub async fn stop(&mut self, id: u64) {
        let n = &mut self.nodes[(id - 1) as usize];
        if let Some(stop) = n.stop.take() {
            let _ = stop.send(());
        }
        n.node.shutdown().await;
        if let Some(s) = n.server.take() {
            let _ = s.await;
        }
    }

    /// Stops serving node `id`'s peer listener (gracefully: calls in flight finish)
    /// and leaves its Raft running; the server's task is returned.
    pub fn stop_serving(&mut self, id: u64) -> JoinHandle<()> {
        let n = &mut self.nodes[(id - 1) as usize];
        if let Some(stop) = n.stop.take() {
            let _ = stop.send(());
        }
        n.server.take().expect("node is serving")
    }

    /// Serves node `id`'s peer listener again (after [`Cluster::stop_serving`]), on its
    /// old address.
    pub async fn serve_again(&mut self, id: u64) {
        let n = &mut self.nodes[(id - 1) as usize];
        assert!(n.stop.is_none(), "node {id} is serving");
        let listener = TcpListener::bind(&n.addr).await.unwrap();
        let (stop, server) = serve(&n.node, listener).await;
        n.stop = Some(stop);
        n.server = Some(server);
    }

    /// Starts a stopped node again from its data dir, on its old address.
    pub async fn restart(&mut self, id: u64) {
        let n = &mut self.nodes[(id - 1) as usize];
        assert!(n.stop.is_none(), "node {id} is running");
        let listener = TcpListener::bind(&n.addr).await.unwrap();
        let node = RaftNode::start(n.cfg.clone()).await.unwrap();
        let (stop, server) = serve(&node, listener).await;
        n.node = node;
        n.stop = Some(stop);
        n.server = Some(server);
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].stop.is_some()
    }

    pub async fn shutdown(mut self) {
        for n in &mut self.nodes {
            if let Some(stop) = n.stop.take() {
                let _ = stop.send(());
            }
            n.node.shutdown().await;
            if let Some(s) = n.server.take() {
                let _ = s.await;
            }
        }
    }
}

pub fn local(cfg: &mut RaftConfig) {
    cfg.read_consistency = ReadConsistency::Local;
}
