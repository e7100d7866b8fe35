//! [`RemoteAuth`]: [`AuthApi`] over gRPC with endpoint failover.
//!
//! Given several backend endpoints, a call goes to the last endpoint that worked. When
//! an endpoint fails at the transport level it is marked down and the call moves on to
//! the next one, if the call is safe to send again. A marked-down endpoint receives no
//! traffic until the background health probe sees it serving again, so a dead node costs
//! one failed call, not one per request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use auth_core::{AuthApi, AuthError};
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_proto::v1::*;
use std::path::Path;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use zeroize::Zeroizing;

use crate::status::{CODE_KEY, NOT_PROCESSED_KEY, from_status};

/// Client tuning.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Time allowed to open a connection. Default 1 s.
    pub connect_timeout: Duration,
    /// Time allowed for one call on one endpoint. Default 10 s (a login waits for a
    /// password hash, which may queue under load).
    pub request_timeout: Duration,
    /// How often marked-down endpoints are probed. Default 500 ms.
    pub probe_interval: Duration,
    /// Largest response accepted. Default 4 MiB.
    pub max_response_bytes: usize,
    /// TLS to the backends. With it, endpoints without a scheme are `https://`; an
    /// `https://` endpoint needs it. Default: none (plaintext `http://`).
    pub tls: Option<ClientTls>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_millis(500),
            max_response_bytes: 4 * 1024 * 1024,
            tls: None,
        }
    }
}

/// TLS settings of a backend client: the CA that issued the backends' certificates
/// and, optionally, a client certificate to present. `Debug` hides the key.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: String,
    identity: Option<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trust the CA certificate(s) in `ca_pem`.
    pub fn from_ca_pem(ca_pem: impl Into<String>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Reads the CA file (`--cacert`).
    pub fn from_ca_file(path: &Path) -> Result<Self, AuthError> {
        let pem = read_pem(path)?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(AuthError::InvalidConfig(format!(
                "{} contains no PEM certificate",
                path.display()
            )));
        }
        Ok(Self::from_ca_pem(pem))
    }

    /// Also present the client certificate and key in these files (`--cert`, `--key`).
    pub fn with_identity_files(mut self, cert: &Path, key: &Path) -> Result<Self, AuthError> {
        let cert_pem = read_pem(cert)?;
        let key_pem = Zeroizing::new(read_pem(key)?);
        self.identity = Some((cert_pem, key_pem));
        Ok(self)
    }

    fn config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key.as_bytes()));
        }
        c
    }
}

fn read_pem(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthError::InvalidConfig(format!("cannot read {}: {e}", path.display())))
}

/// Whether a call may be sent again after it may have reached a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Idempotent: repeating it changes nothing (verify, logout, refresh within the
    /// grace window, ...).
    Safe,
    /// Not idempotent: only retried when the connection was never made.
    IfNotSent,
}

struct Node {
    url: String,
    client: AuthServiceClient<Channel>,
    health: HealthClient<Channel>,
    up: AtomicBool,
}

struct Inner {
    nodes: Vec<Node>,
    /// The endpoint that answered last; calls start there.
    preferred: AtomicUsize,
    options: RemoteOptions,
}

/// The health of one endpoint as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    /// The endpoint URL.
    pub url: String,
    /// False while marked down (no traffic until a probe succeeds).
    pub up: bool,
}

/// [`AuthApi`] over gRPC to one or more `auth-backend` endpoints, with failover.
#[derive(Clone)]
pub struct RemoteAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuth")
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

/// `host:port` gets an `https://` scheme with TLS and `http://` without; URLs pass
/// through.
fn normalize(endpoint: &str, tls: bool) -> String {
    let e = endpoint.trim();
    if e.contains("://") {
        e.to_owned()
    } else if tls {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    }
}

impl RemoteAuth {
    /// A client for these endpoints (`host:port` or `http://host:port`). Connections
    /// are opened lazily. Must be called inside a tokio runtime (it starts the probe).
    pub fn new<I, E>(endpoints: I, options: RemoteOptions) -> Result<Self, AuthError>
    where
        I: IntoIterator<Item = E>,
        E: AsRef<str>,
    {
        let mut nodes = Vec::new();
        for e in endpoints {
            let url = normalize(e.as_ref(), options.tls.is_some());
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|_| AuthError::InvalidConfig(format!("bad endpoint {url:?}")))?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true);
            match (&options.tls, url.starts_with("https://")) {
                (Some(tls), true) => {
                    endpoint = endpoint
                        .tls_config(tls.config())
                        .map_err(|e| AuthError::InvalidConfig(format!("TLS for {url}: {e}")))?;
                }
                (None, true) => {
                    return Err(AuthError::InvalidConfig(format!(
                        "{url} needs the CA certificate that issued the backend's certificate \
                         (authctl --cacert, auth-web --backend-cacert, RemoteOptions::tls)"
                    )));
                }
                (Some(_), false) => {
                    return Err(AuthError::InvalidConfig(format!(
                        "{url} is plaintext but TLS is configured: use https://"
                    )));
                }
                (None, false) => {}
            }
            let channel = endpoint.connect_lazy();
            nodes.push(Node {
                url,
                client: AuthServiceClient::new(channel.clone())
                    .max_decoding_message_size(options.max_response_bytes),
                health: HealthClient::new(channel),
                up: AtomicBool::new(true),
            });
        }
        if nodes.is_empty() {
            return Err(AuthError::InvalidConfig(
                "no backend endpoints given".into(),
            ));
        }
        let inner = Arc::new(Inner {
            nodes,
            preferred: AtomicUsize::new(0),
            options,
        });
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| AuthError::InvalidConfig("RemoteAuth needs a tokio runtime".into()))?;
        runtime.spawn(probe_loop(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Every endpoint and whether it is in use.
    pub fn endpoints(&self) -> Vec<EndpointState> {
        self.inner
            .nodes
            .iter()
            .map(|n| EndpointState {
                url: n.url.clone(),
                up: n.up.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Asks every endpoint's health service whether it is serving, now.
    pub async fn health(&self) -> Vec<(String, Result<bool, AuthError>)> {
        let mut out = Vec::new();
        for n in &self.inner.nodes {
            out.push((n.url.clone(), probe(n, &self.inner.options).await));
        }
        out
    }

    async fn call<T, F, Fut>(&self, retry: Retry, f: F) -> Result<T, AuthError>
    where
        F: Fn(AuthServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let nodes = &self.inner.nodes;
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..nodes.len() {
            let i = (start + k) % nodes.len();
            let node = &nodes[i];
            if !node.up.load(Ordering::SeqCst) {
                continue;
            }
            let outcome =
                tokio::time::timeout(self.inner.options.request_timeout, f(node.client.clone()))
                    .await;
            let status = match outcome {
                Ok(Ok(resp)) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Ok(resp.into_inner());
                }
                Ok(Err(status)) => status,
                // No answer at all within the deadline. A healthy backend always answers
                // before it: it sheds hash work after `HashQueue::max_wait` (1 s) and
                // times calls out itself after `ServerOptions::request_timeout` (5 s),
                // both with typed statuses that never mark an endpoint down. Silence
                // until here is a hung or black-holed endpoint.
                Err(_) => Status::deadline_exceeded("request timed out"),
            };
            let answered = status.metadata().get(CODE_KEY).is_some();
            // A stopping backend refused the call without doing anything: send it
            // elsewhere, and send nothing more there until a probe sees it back.
            let refused = status.metadata().get(NOT_PROCESSED_KEY).is_some();
            if answered && status.code() != Code::Unavailable {
                // The backend answered: an application error, final.
                return Err(from_status(&status));
            }
            if !answered && !transport_failure(status.code()) {
                // A server (or proxy) answered without our metadata, e.g. tonic's
                // OUT_OF_RANGE for an oversized request: final, and the endpoint is
                // healthy. Marking it down here would let one bad request take every
                // endpoint out of service.
                return Err(from_status(&status));
            }
            // The backend's own answer keeps its code; a broken connection is
            // `unavailable` whatever status tonic reports for it.
            let error = if answered {
                from_status(&status)
            } else {
                AuthError::Unavailable(format!("backend {}: {}", node.url, status.message()))
            };
            if !answered || refused {
                // Transport failure: stop sending here until a probe sees it back.
                node.up.store(false, Ordering::SeqCst);
                tracing::warn!(endpoint = %node.url, error = %status.message(), "backend endpoint marked down");
            }
            let not_sent = refused || (!answered && never_connected(&status));
            if retry == Retry::IfNotSent && !not_sent {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last
            .unwrap_or_else(|| AuthError::Unavailable("no backend endpoint is reachable".into())))
    }
}

/// True for the codes a broken or unreachable connection produces (as opposed to a
/// status some server chose to send), for statuses without our metadata only: any
/// status a backend answers with (`overloaded`, `rate_limited`, a server-side timeout,
/// an application error) carries `auth-error-code` and never marks an endpoint down.
fn transport_failure(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
    )
}

/// True if the status says the connection was never established, so the request
/// cannot have reached a server.
fn never_connected(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = e.source();
    }
    false
}

async fn probe(node: &Node, options: &RemoteOptions) -> Result<bool, AuthError> {
    let mut health = node.health.clone();
    let req = HealthCheckRequest {
        service: String::new(),
    };
    match tokio::time::timeout(options.connect_timeout * 2, health.check(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().status == ServingStatus::Serving as i32),
        Ok(Err(s)) => Err(from_status(&s)),
        Err(_) => Err(AuthError::Unavailable("health check timed out".into())),
    }
}

async fn probe_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let interval = inner.options.probe_interval;
        for node in inner.nodes.iter().filter(|n| !n.up.load(Ordering::SeqCst)) {
            if let Ok(true) = probe(node, &inner.options).await {
                node.up.store(true, Ordering::SeqCst);
                tracing::info!(endpoint = %node.url, "backend endpoint is back");
            }
        }
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

/// `AuthApi` for `RemoteAuth`: each method is one RPC, retried on another endpoint as
/// its [`Retry`] allows.
macro_rules! remote_methods {
    ($($name:ident($req:ty) -> $resp:ty, $retry:ident;)*) => {
        #[async_trait]
        impl AuthApi for RemoteAuth {
            $(
                async fn $name(&self, req: $req) -> Result<$resp, AuthError> {
                    self.call(Retry::$retry, |mut c| {
                        let req = req.clone();
                        async move { c.$name(req).await }
                    })
                    .await
                }
            )*
        }
    };
}

remote_methods! {
    register(RegisterRequest) -> RegisterResponse, IfNotSent;
    login(LoginRequest) -> LoginResponse, IfNotSent;
    verify(VerifyRequest) -> VerifyResponse, Safe;
    // Safe: a repeat inside the grace window returns the same successor.
    refresh(RefreshRequest) -> RefreshResponse, Safe;
    logout(LogoutRequest) -> LogoutResponse, Safe;
    logout_all(LogoutAllRequest) -> LogoutAllResponse, Safe;
    change_password(ChangePasswordRequest) -> ChangePasswordResponse, IfNotSent;
    delete_user(DeleteUserRequest) -> DeleteUserResponse, IfNotSent;
    list_sessions(ListSessionsRequest) -> ListSessionsResponse, Safe;
    revoke_session(RevokeSessionRequest) -> RevokeSessionResponse, Safe;
    keys(KeysRequest) -> KeysResponse, Safe;
    // A retried second step would meet its own spent code (invalid_code).
    login_mfa(LoginMfaRequest) -> LoginResponse, IfNotSent;
    mfa_status(MfaStatusRequest) -> MfaStatusResponse, Safe;
    totp_enroll(TotpEnrollRequest) -> TotpEnrollResponse, IfNotSent;
    totp_confirm(TotpConfirmRequest) -> TotpConfirmResponse, IfNotSent;
    totp_disable(TotpDisableRequest) -> TotpDisableResponse, IfNotSent;
    regenerate_recovery_codes(RegenerateRecoveryCodesRequest)
        -> RegenerateRecoveryCodesResponse, IfNotSent;
    passkey_register_start(PasskeyRegisterStartRequest) -> PasskeyCeremony, IfNotSent;
    passkey_register_finish(PasskeyRegisterFinishRequest)
        -> PasskeyRegisterFinishResponse, IfNotSent;
    passkey_login_start(PasskeyLoginStartRequest) -> PasskeyCeremony, IfNotSent;
    passkey_login_finish(PasskeyLoginFinishRequest) -> LoginResponse, IfNotSent;
    passkey_rename(PasskeyRenameRequest) -> PasskeyRenameResponse, Safe;
    passkey_remove(PasskeyRemoveRequest) -> PasskeyRemoveResponse, IfNotSent;
    admin_list_users(AdminListUsersRequest) -> AdminListUsersResponse, Safe;
    admin_get_user(AdminUserRequest) -> AdminGetUserResponse, Safe;
    // Lock, unlock, logout and role changes converge: a repeat finds them done.
    admin_lock_user(AdminUserRequest) -> AdminUserActionResponse, Safe;
    admin_unlock_user(AdminUserRequest) -> AdminUserActionResponse, Safe;
    admin_logout_user(AdminUserRequest) -> AdminUserActionResponse, Safe;
    // A repeat would answer not_found for a delete that happened.
    admin_delete_user(AdminUserRequest) -> AdminUserActionResponse, IfNotSent;
    admin_grant_role(AdminRoleRequest) -> AdminUserActionResponse, Safe;
    admin_revoke_role(AdminRoleRequest) -> AdminUserActionResponse, Safe;
    admin_cluster(AdminClusterRequest) -> AdminClusterResponse, Safe;
    admin_recent_events(AdminRecentEventsRequest) -> AdminRecentEventsResponse, Safe;
}
