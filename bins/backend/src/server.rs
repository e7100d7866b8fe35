//! The tonic `AuthService` over any [`AuthApi`], plus gRPC health and reflection.

use std::future::Future;
use std::sync::Arc;

use auth_core::AuthApi;
use auth_proto::v1::auth_service_server::{AuthService, AuthServiceServer};
use std::path::Path;

use auth_proto::v1::*;
use auth_raft::net::{ListenerLimits, limited_incoming};
use tokio::net::TcpListener;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::status::to_status;

/// Largest request a client may send by default (64 KiB: credentials and tokens are
/// small; anything bigger is an attack or a bug).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Serving options.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest accepted request message, in bytes.
    pub max_request_bytes: usize,
    /// Concurrent requests per connection.
    pub concurrency_per_connection: usize,
    /// Open connections and HTTP/2 streams per connection.
    pub limits: ListenerLimits,
    /// TLS: the server's certificate and key. Default: none (plaintext).
    pub tls: Option<ServerTls>,
    /// Callers trusted to state the end user's address in `ClientInfo`.
    pub frontends: FrontendTrust,
    /// Longest a call may run on the server before it fails with `unavailable` (a
    /// typed status, so clients do not take the server for dead). Default 5 seconds,
    /// half of `RemoteOptions::request_timeout`'s default: a healthy server always
    /// answers before its clients give up on it.
    pub request_timeout: std::time::Duration,
    /// Where a stop has got to (see [`Drain`]). Default: none (the server serves
    /// until its shutdown future resolves).
    pub draining: Option<tokio::sync::watch::Receiver<Drain>>,
}

/// The stages of a graceful stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Drain {
    /// Business as usual.
    #[default]
    Serving,
    /// gRPC health answers NOT_SERVING (for the whole server and for
    /// `AuthService`); calls are still served (a leader hands over meanwhile).
    Draining,
    /// New calls are refused at once with `unavailable` and
    /// [`NOT_PROCESSED_KEY`](crate::status::NOT_PROCESSED_KEY)
    /// (nothing was done, so any client may send them elsewhere); calls in progress
    /// finish.
    Refusing,
}

/// Who may say where a request really comes from.
///
/// Throttling keys on `ClientInfo.ip`. A front end (auth-web) serving many users fills
/// it with each user's address; anyone else could fill it with a random address per
/// request and never be throttled. So the server keeps a caller's `ClientInfo.ip` only
/// when the caller is a trusted front end: its connection comes from one of `addrs`, or
/// it presented a client certificate (from the CA given with
/// [`ServerTls::with_client_ca`]) naming `spiffe://auth-sdk/client/<name>` with `name`
/// in `names`. For everyone else the address is the connection's.
#[derive(Debug, Clone, Default)]
pub struct FrontendTrust {
    /// Source addresses of trusted front ends.
    pub addrs: Vec<std::net::IpAddr>,
    /// Client certificate names of trusted front ends.
    pub names: Vec<String>,
}

impl FrontendTrust {
    fn trusts<T>(&self, req: &Request<T>) -> bool {
        if req
            .remote_addr()
            .is_some_and(|a| self.addrs.contains(&a.ip()))
        {
            return true;
        }
        if self.names.is_empty() {
            return false;
        }
        req.peer_certs().is_some_and(|certs| {
            certs.first().is_some_and(|c| {
                matches!(
                    auth_raft::tls::identity_of(c.as_ref()),
                    Ok(auth_raft::tls::PeerIdentity::Client(name)) if self.names.contains(&name)
                )
            })
        })
    }

    /// `client` as the handler may use it: kept from a trusted front end that stated an
    /// address, otherwise with the connection's address (the user agent is kept: it is
    /// only shown to the user).
    /// Sets the request's `client` to [`FrontendTrust::client_info`] of it.
    fn source<T: WithClient>(&self, req: &mut Request<T>) {
        let client = req.get_mut().client_mut().take();
        *req.get_mut().client_mut() = self.client_info(req, client);
    }

    fn client_info<T>(&self, req: &Request<T>, client: Option<ClientInfo>) -> Option<ClientInfo> {
        let mut client = client.unwrap_or_default();
        if client.ip.is_empty() || !self.trusts(req) {
            client.ip = req
                .remote_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
        }
        Some(client)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            concurrency_per_connection: 128,
            limits: ListenerLimits::default(),
            tls: None,
            frontends: FrontendTrust::default(),
            request_timeout: std::time::Duration::from_secs(5),
            draining: None,
        }
    }
}

/// A server certificate and its private key, PEM. `Debug` hides the key.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: String,
    key_pem: Zeroizing<String>,
    client_ca_pem: Option<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM texts.
    pub fn from_pem(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem: Zeroizing::new(key_pem.into()),
            client_ca_pem: None,
        }
    }

    /// Also asks clients for a certificate from this CA (optional: callers without one
    /// are still served). Used to recognise trusted front ends ([`FrontendTrust`]).
    pub fn with_client_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }

    /// Reads `--tls-cert` and `--tls-key`, refusing a key readable by group or others.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, String> {
        auth_raft::tls::check_private_file(key).map_err(|e| e.to_string())?;
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let cert_pem = read(cert)?;
        let key_pem = Zeroizing::new(read(key)?);
        if !cert_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("{} contains no PEM certificate", cert.display()));
        }
        if !key_pem.contains("PRIVATE KEY-----") {
            return Err(format!("{} contains no PEM private key", key.display()));
        }
        Ok(Self {
            cert_pem,
            key_pem,
            client_ca_pem: None,
        })
    }

    fn config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, self.key_pem.as_bytes()))
            .timeout(std::time::Duration::from_secs(5));
        match &self.client_ca_pem {
            Some(ca) => config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true),
            None => config,
        }
    }
}

/// `AuthService` implemented by forwarding each RPC to an [`AuthApi`].
#[derive(Clone)]
pub struct AuthGrpc {
    api: Arc<dyn AuthApi>,
    frontends: Arc<FrontendTrust>,
    request_timeout: std::time::Duration,
}

impl AuthGrpc {
    /// Serves `api` over gRPC, trusting no caller's `ClientInfo.ip`.
    pub fn new(api: Arc<dyn AuthApi>) -> Self {
        Self::with_frontends(api, FrontendTrust::default())
    }

    /// Serves `api` over gRPC, keeping `ClientInfo.ip` from these front ends.
    pub fn with_frontends(api: Arc<dyn AuthApi>, frontends: FrontendTrust) -> Self {
        Self {
            api,
            frontends: Arc::new(frontends),
            request_timeout: ServerOptions::default().request_timeout,
        }
    }

    /// Calls that run longer than `timeout` fail with `unavailable`.
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Runs one call under the server's deadline and maps its result.
    async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, auth_core::AuthError>>,
    ) -> Reply<T> {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(r) => reply(r),
            Err(_) => reply(Err(auth_core::AuthError::Unavailable(
                "the call did not finish within the server's request timeout".into(),
            ))),
        }
    }
}

/// Requests that name their client (for sessions, throttling and the audit trail).
trait WithClient {
    fn client_mut(&mut self) -> &mut Option<ClientInfo>;
}

macro_rules! with_client {
    ($($t:ty),*) => {$(
        impl WithClient for $t {
            fn client_mut(&mut self) -> &mut Option<ClientInfo> {
                &mut self.client
            }
        }
    )*};
}

with_client!(
    RegisterRequest,
    LoginRequest,
    RefreshRequest,
    LogoutRequest,
    LogoutAllRequest,
    ChangePasswordRequest,
    DeleteUserRequest,
    RevokeSessionRequest,
    LoginMfaRequest,
    TotpConfirmRequest,
    TotpDisableRequest,
    RegenerateRecoveryCodesRequest,
    PasskeyRegisterFinishRequest,
    PasskeyLoginStartRequest,
    PasskeyLoginFinishRequest,
    PasskeyRemoveRequest,
    AdminUserRequest,
    AdminRoleRequest
);

/// Requests that act for a signed-in user.
trait WithAccessToken {
    fn access_token_mut(&mut self) -> &mut String;
}

macro_rules! with_access_token {
    ($($t:ty),*) => {$(
        impl WithAccessToken for $t {
            fn access_token_mut(&mut self) -> &mut String {
                &mut self.access_token
            }
        }
    )*};
}

with_access_token!(
    VerifyRequest,
    LogoutRequest,
    LogoutAllRequest,
    ChangePasswordRequest,
    DeleteUserRequest,
    ListSessionsRequest,
    RevokeSessionRequest,
    MfaStatusRequest,
    TotpEnrollRequest,
    TotpConfirmRequest,
    TotpDisableRequest,
    RegenerateRecoveryCodesRequest,
    PasskeyRegisterStartRequest,
    PasskeyRegisterFinishRequest,
    PasskeyRenameRequest,
    PasskeyRemoveRequest,
    AdminListUsersRequest,
    AdminUserRequest,
    AdminRoleRequest,
    AdminClusterRequest,
    AdminRecentEventsRequest
);

/// The request, with an empty `access_token` filled from `authorization: Bearer` metadata.
fn authed<T: WithAccessToken>(req: Request<T>) -> T {
    let token = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let mut inner = req.into_inner();
    if let Some(token) = token {
        let field = inner.access_token_mut();
        if field.is_empty() {
            *field = token;
        }
    }
    inner
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(r: Result<T, auth_core::AuthError>) -> Reply<T> {
    r.map(Response::new).map_err(|e| to_status(&e))
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn register(&self, mut req: Request<RegisterRequest>) -> Reply<RegisterResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.register(req.into_inner())).await
    }

    async fn login(&self, mut req: Request<LoginRequest>) -> Reply<LoginResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.login(req.into_inner())).await
    }

    async fn verify(&self, req: Request<VerifyRequest>) -> Reply<VerifyResponse> {
        self.run(self.api.verify(authed(req))).await
    }

    async fn refresh(&self, mut req: Request<RefreshRequest>) -> Reply<RefreshResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.refresh(req.into_inner())).await
    }

    async fn logout(&self, mut req: Request<LogoutRequest>) -> Reply<LogoutResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.logout(authed(req))).await
    }

    async fn logout_all(&self, mut req: Request<LogoutAllRequest>) -> Reply<LogoutAllResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.logout_all(authed(req))).await
    }

    async fn change_password(
        &self,
        mut req: Request<ChangePasswordRequest>,
    ) -> Reply<ChangePasswordResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.change_password(authed(req))).await
    }

    async fn delete_user(&self, mut req: Request<DeleteUserRequest>) -> Reply<DeleteUserResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.delete_user(authed(req))).await
    }

    async fn list_sessions(
        &self,
        req: Request<ListSessionsRequest>,
    ) -> Reply<ListSessionsResponse> {
        self.run(self.api.list_sessions(authed(req))).await
    }

    async fn revoke_session(
        &self,
        mut req: Request<RevokeSessionRequest>,
    ) -> Reply<RevokeSessionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.revoke_session(authed(req))).await
    }

    async fn keys(&self, req: Request<KeysRequest>) -> Reply<KeysResponse> {
        self.run(self.api.keys(req.into_inner())).await
    }

    async fn login_mfa(&self, mut req: Request<LoginMfaRequest>) -> Reply<LoginResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.login_mfa(req.into_inner())).await
    }

    async fn mfa_status(&self, req: Request<MfaStatusRequest>) -> Reply<MfaStatusResponse> {
        self.run(self.api.mfa_status(authed(req))).await
    }

    async fn totp_enroll(&self, req: Request<TotpEnrollRequest>) -> Reply<TotpEnrollResponse> {
        self.run(self.api.totp_enroll(authed(req))).await
    }

    async fn totp_confirm(
        &self,
        mut req: Request<TotpConfirmRequest>,
    ) -> Reply<TotpConfirmResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.totp_confirm(authed(req))).await
    }

    async fn totp_disable(
        &self,
        mut req: Request<TotpDisableRequest>,
    ) -> Reply<TotpDisableResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.totp_disable(authed(req))).await
    }

    async fn regenerate_recovery_codes(
        &self,
        mut req: Request<RegenerateRecoveryCodesRequest>,
    ) -> Reply<RegenerateRecoveryCodesResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.regenerate_recovery_codes(authed(req)))
            .await
    }

    async fn passkey_register_start(
        &self,
        req: Request<PasskeyRegisterStartRequest>,
    ) -> Reply<PasskeyCeremony> {
        self.run(self.api.passkey_register_start(authed(req))).await
    }

    async fn passkey_register_finish(
        &self,
        mut req: Request<PasskeyRegisterFinishRequest>,
    ) -> Reply<PasskeyRegisterFinishResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.passkey_register_finish(authed(req)))
            .await
    }

    async fn passkey_login_start(
        &self,
        mut req: Request<PasskeyLoginStartRequest>,
    ) -> Reply<PasskeyCeremony> {
        self.frontends.source(&mut req);
        self.run(self.api.passkey_login_start(req.into_inner()))
            .await
    }

    async fn passkey_login_finish(
        &self,
        mut req: Request<PasskeyLoginFinishRequest>,
    ) -> Reply<LoginResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.passkey_login_finish(req.into_inner()))
            .await
    }

    async fn passkey_rename(
        &self,
        req: Request<PasskeyRenameRequest>,
    ) -> Reply<PasskeyRenameResponse> {
        self.run(self.api.passkey_rename(authed(req))).await
    }

    async fn passkey_remove(
        &self,
        mut req: Request<PasskeyRemoveRequest>,
    ) -> Reply<PasskeyRemoveResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.passkey_remove(authed(req))).await
    }

    async fn admin_list_users(
        &self,
        req: Request<AdminListUsersRequest>,
    ) -> Reply<AdminListUsersResponse> {
        self.run(self.api.admin_list_users(authed(req))).await
    }

    async fn admin_get_user(&self, req: Request<AdminUserRequest>) -> Reply<AdminGetUserResponse> {
        self.run(self.api.admin_get_user(authed(req))).await
    }

    async fn admin_lock_user(
        &self,
        mut req: Request<AdminUserRequest>,
    ) -> Reply<AdminUserActionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.admin_lock_user(authed(req))).await
    }

    async fn admin_unlock_user(
        &self,
        mut req: Request<AdminUserRequest>,
    ) -> Reply<AdminUserActionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.admin_unlock_user(authed(req))).await
    }

    async fn admin_logout_user(
        &self,
        mut req: Request<AdminUserRequest>,
    ) -> Reply<AdminUserActionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.admin_logout_user(authed(req))).await
    }

    async fn admin_delete_user(
        &self,
        mut req: Request<AdminUserRequest>,
    ) -> Reply<AdminUserActionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.admin_delete_user(authed(req))).await
    }

    async fn admin_grant_role(
        &self,
        mut req: Request<AdminRoleRequest>,
    ) -> Reply<AdminUserActionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.admin_grant_role(authed(req))).await
    }

    async fn admin_revoke_role(
        &self,
        mut req: Request<AdminRoleRequest>,
    ) -> Reply<AdminUserActionResponse> {
        self.frontends.source(&mut req);
        self.run(self.api.admin_revoke_role(authed(req))).await
    }

    async fn admin_cluster(
        &self,
        req: Request<AdminClusterRequest>,
    ) -> Reply<AdminClusterResponse> {
        self.run(self.api.admin_cluster(authed(req))).await
    }

    async fn admin_recent_events(
        &self,
        req: Request<AdminRecentEventsRequest>,
    ) -> Reply<AdminRecentEventsResponse> {
        self.run(self.api.admin_recent_events(authed(req))).await
    }
}

/// Answers every call with a not-processed `unavailable` once the stop reaches
/// [`Drain::Refusing`].
#[derive(Clone)]
struct RefuseWhenDraining(Option<tokio::sync::watch::Receiver<Drain>>);

impl<S> tower::Layer<S> for RefuseWhenDraining {
    type Service = Refusing<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Refusing {
            inner,
            drain: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Refusing<S> {
    inner: S,
    drain: Option<tokio::sync::watch::Receiver<Drain>>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Refusing<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send + 'static>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self
            .drain
            .as_ref()
            .is_some_and(|d| *d.borrow() == Drain::Refusing)
        {
            let mut status = Status::unavailable("this backend is stopping; nothing was done");
            let md = status.metadata_mut();
            md.insert(
                crate::status::CODE_KEY,
                tonic::metadata::MetadataValue::from_static("unavailable"),
            );
            md.insert(
                crate::status::NOT_PROCESSED_KEY,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            let resp = status.into_http::<R>();
            return Box::pin(async move { Ok(resp) });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Serves `AuthService`, gRPC health (`grpc.health.v1`) and reflection on `listener`
/// until `shutdown` resolves; then stops accepting and lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    api: Arc<dyn AuthApi>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_client(listener, api, options, shutdown).await
}

/// Serves `AuthService` with health and reflection on the client listener. Raft and
/// admin RPCs are never served here: they live on the peer listener
/// ([`auth_raft::RaftNode::serve_peer`]).
pub async fn serve_client(
    listener: TcpListener,
    api: Arc<dyn AuthApi>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthServiceServer<AuthGrpc>>()
        .await;
    let drain_watch = options.draining.clone().map(|mut draining| {
        let reporter = health_reporter.clone();
        tokio::spawn(async move {
            if draining.wait_for(|d| *d != Drain::Serving).await.is_ok() {
                reporter
                    .set_not_serving::<AuthServiceServer<AuthGrpc>>()
                    .await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        })
    });
    // Reflection describes AuthService and health only: the descriptor set that also
    // holds the Raft and admin services is not registered.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(auth_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("auth.v1.AuthService")
        .with_service_name("grpc.health.v1.Health")
        .build_v1();
    let grpc = AuthGrpc::with_frontends(api, options.frontends.clone())
        .with_request_timeout(options.request_timeout);
    let auth = AuthServiceServer::new(grpc).max_decoding_message_size(options.max_request_bytes);
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(options.concurrency_per_connection)
        .max_concurrent_streams(options.limits.max_concurrent_streams)
        .tcp_nodelay(true)
        .layer(crate::metrics::GrpcMetricsLayer::default())
        .layer(RefuseWhenDraining(options.draining.clone()));
    if let Some(tls) = &options.tls {
        builder = builder.tls_config(tls.config())?;
    }
    let router = builder.add_service(health).add_service(auth);
    let router = match reflection {
        Ok(r) => router.add_service(r),
        Err(e) => {
            tracing::warn!(error = %e, "gRPC reflection disabled");
            router
        }
    };
    let served = router
        .serve_with_incoming_shutdown(
            limited_incoming(listener, options.limits.max_connections),
            shutdown,
        )
        .await;
    if let Some(w) = drain_watch {
        w.abort();
    }
    served
}
