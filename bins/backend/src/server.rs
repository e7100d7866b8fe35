//! The tonic `AuthService` over any [`AuthApi`], plus gRPC health and reflection.

use std::future::Future;
use std::sync::Arc;

use auth_core::AuthApi;
use auth_proto::v1::auth_service_server::{AuthService, AuthServiceServer};
use auth_proto::v1::raft_service_server::RaftServiceServer;
use auth_proto::v1::*;
use auth_raft::RaftGrpc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

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
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            concurrency_per_connection: 256,
        }
    }
}

/// `AuthService` implemented by forwarding each RPC to an [`AuthApi`].
#[derive(Clone)]
pub struct AuthGrpc {
    api: Arc<dyn AuthApi>,
}

impl AuthGrpc {
    /// Serves `api` over gRPC.
    pub fn new(api: Arc<dyn AuthApi>) -> Self {
        Self { api }
    }
}

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
    RevokeSessionRequest
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
    async fn register(&self, req: Request<RegisterRequest>) -> Reply<RegisterResponse> {
        reply(self.api.register(req.into_inner()).await)
    }

    async fn login(&self, req: Request<LoginRequest>) -> Reply<LoginResponse> {
        let peer = req.remote_addr();
        let mut inner = req.into_inner();
        let client = inner.client.get_or_insert_with(ClientInfo::default);
        if client.ip.is_empty()
            && let Some(peer) = peer
        {
            client.ip = peer.ip().to_string();
        }
        reply(self.api.login(inner).await)
    }

    async fn verify(&self, req: Request<VerifyRequest>) -> Reply<VerifyResponse> {
        reply(self.api.verify(authed(req)).await)
    }

    async fn refresh(&self, req: Request<RefreshRequest>) -> Reply<RefreshResponse> {
        reply(self.api.refresh(req.into_inner()).await)
    }

    async fn logout(&self, req: Request<LogoutRequest>) -> Reply<LogoutResponse> {
        reply(self.api.logout(authed(req)).await)
    }

    async fn logout_all(&self, req: Request<LogoutAllRequest>) -> Reply<LogoutAllResponse> {
        reply(self.api.logout_all(authed(req)).await)
    }

    async fn change_password(
        &self,
        req: Request<ChangePasswordRequest>,
    ) -> Reply<ChangePasswordResponse> {
        reply(self.api.change_password(authed(req)).await)
    }

    async fn delete_user(&self, req: Request<DeleteUserRequest>) -> Reply<DeleteUserResponse> {
        reply(self.api.delete_user(authed(req)).await)
    }

    async fn list_sessions(
        &self,
        req: Request<ListSessionsRequest>,
    ) -> Reply<ListSessionsResponse> {
        reply(self.api.list_sessions(authed(req)).await)
    }

    async fn revoke_session(
        &self,
        req: Request<RevokeSessionRequest>,
    ) -> Reply<RevokeSessionResponse> {
        reply(self.api.revoke_session(authed(req)).await)
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
    serve_with_raft(listener, api, None, options, shutdown).await
}

/// Like [`serve`], plus a Raft node's `RaftService` (peer RPCs, forwarded writes,
/// cluster admin) on the same port.
pub async fn serve_with_raft(
    listener: TcpListener,
    api: Arc<dyn AuthApi>,
    raft: Option<RaftServiceServer<RaftGrpc>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthServiceServer<AuthGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(auth_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let auth = AuthServiceServer::new(AuthGrpc::new(api))
        .max_decoding_message_size(options.max_request_bytes);
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(options.concurrency_per_connection)
        .tcp_nodelay(true);
    let router = builder
        .add_service(health)
        .add_service(auth)
        .add_optional_service(raft);
    let router = match reflection {
        Ok(r) => router.add_service(r),
        Err(e) => {
            tracing::warn!(error = %e, "gRPC reflection disabled");
            router
        }
    };
    router
        // `Server::tcp_nodelay` applies only to listeners tonic binds itself; without
        // it on accepted sockets, Nagle plus delayed ACKs add ~40 ms to responses.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
