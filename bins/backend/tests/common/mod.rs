//! Helpers shared by the integration tests: wrapping `AuthApi`s that count or stall
//! calls, a port that drops connections, and deadline-bounded waiting. Servers, fast
//! configurations and certificates come from `auth-testing`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auth_core::api::*;
use auth_core::{AuthApi, AuthError};
pub use auth_testing::{Hook, Intercepted};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Generous upper bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds or `within` passes; returns whether it held.
pub async fn wait_until<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Holds calls until released: `entered` is notified when a call arrives, and the
/// call proceeds once `release` is notified (one permit per call).
#[derive(Clone, Default)]
pub struct Gate {
    pub entered: Arc<tokio::sync::Notify>,
    pub release: Arc<tokio::sync::Notify>,
}

/// An `AuthApi` that counts the calls it forwards (and optionally holds them at a gate).
pub struct Counting {
    inner: Arc<dyn AuthApi>,
    calls: AtomicUsize,
    gate: Option<Gate>,
    /// If set, the next call answers with this error instead of forwarding.
    pub fail_next: parking_lot::Mutex<Option<AuthError>>,
}

impl Counting {
    pub fn new(inner: Arc<dyn AuthApi>) -> Arc<Intercepted<Self>> {
        Intercepted::arc(Self {
            inner,
            calls: AtomicUsize::new(0),
            gate: None,
            fail_next: parking_lot::Mutex::new(None),
        })
    }

    pub fn gated(inner: Arc<dyn AuthApi>, gate: Gate) -> Arc<Intercepted<Self>> {
        Intercepted::arc(Self {
            inner,
            calls: AtomicUsize::new(0),
            gate: Some(gate),
            fail_next: parking_lot::Mutex::new(None),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn hit(&self) -> Result<(), AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(g) = &self.gate {
            g.entered.notify_one();
            g.release.notified().await;
        }
        match self.fail_next.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Hook for Counting {
    fn inner(&self) -> Option<&dyn AuthApi> {
        Some(self.inner.as_ref())
    }
    async fn before(&self, _: &'static str, _: Option<&ClientInfo>) -> Result<(), AuthError> {
        self.hit().await
    }
}

/// What a [`Scripted`] backend does with a call.
#[derive(Clone)]
pub enum Behaviour {
    /// Answer with this error.
    Fail(AuthError),
    /// Pass `gate`, then answer with this error.
    Stall { gate: Gate, then: AuthError },
}

/// An `AuthApi` whose every call follows one [`Behaviour`] (and counts).
pub struct Scripted {
    pub behaviour: Behaviour,
    calls: AtomicUsize,
}

impl Scripted {
    pub fn new(behaviour: Behaviour) -> Arc<Intercepted<Self>> {
        Intercepted::arc(Self {
            behaviour,
            calls: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn act(&self) -> Result<(), AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.behaviour {
            Behaviour::Fail(e) => Err(e.clone()),
            Behaviour::Stall { gate, then } => {
                gate.entered.notify_one();
                gate.release.notified().await;
                Err(then.clone())
            }
        }
    }
}

#[async_trait]
impl Hook for Scripted {
    fn inner(&self) -> Option<&dyn AuthApi> {
        None
    }
    async fn before(&self, _: &'static str, _: Option<&ClientInfo>) -> Result<(), AuthError> {
        self.act().await
    }
}

pub fn register_req(name: &str, password: &str) -> RegisterRequest {
    RegisterRequest {
        username: name.into(),
        password: password.into(),
        client: None,
    }
}

pub fn login_req(name: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: name.into(),
        password: password.into(),
        client: None,
    }
}

/// A port that accepts TCP connections, counts them and closes them at once: a
/// backend that is up at the TCP level but dead for gRPC.
pub struct BlackHole {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl BlackHole {
    pub async fn bind(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind black hole");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting and releases the port.
    pub async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A login that states the end user's address as `ip` (believed only from a trusted
/// front end).
pub fn claimed(name: &str, password: &str, ip: &str) -> LoginRequest {
    LoginRequest {
        username: name.into(),
        password: password.into(),
        client: Some(ClientInfo {
            user_agent: "test".into(),
            ip: ip.into(),
        }),
    }
}

/// Registers `name` with `password`, logs in with [`claimed`] `ip`, and returns the
/// address the new session recorded.
pub async fn recorded_ip(
    c: &mut auth_proto::v1::auth_service_client::AuthServiceClient<tonic::transport::Channel>,
    name: &str,
    password: &str,
    ip: &str,
) -> String {
    c.register(register_req(name, password))
        .await
        .expect("register");
    let tokens = c
        .login(claimed(name, password, ip))
        .await
        .expect("login")
        .into_inner()
        .tokens
        .expect("tokens");
    let sessions = c
        .list_sessions(ListSessionsRequest {
            access_token: tokens.access_token,
        })
        .await
        .expect("list")
        .into_inner()
        .sessions;
    sessions[0].ip.clone()
}
