//! Administration over gRPC: every admin RPC answers a non-admin's token with
//! PERMISSION_DENIED (and the stable code `permission_denied`), an administrator's
//! token works in the request or in `authorization: Bearer` metadata, and a lock
//! refuses the locked user's sign-in with PERMISSION_DENIED (`account_disabled`).

mod common;

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_testing::{GrpcServer, fast_auth};
use common::*;
use tonic::Code;

const PW: &str = "correct horse battery";

async fn with_admin() -> (GrpcServer, RemoteAuth) {
    let auth = fast_auth();
    auth.bootstrap_admin("root", PW).await.unwrap();
    let server = GrpcServer::start(auth).await;
    let remote = RemoteAuth::new([server.url()], Default::default()).unwrap();
    (server, remote)
}

async fn token(remote: &RemoteAuth, name: &str) -> String {
    remote
        .login(login_req(name, PW))
        .await
        .unwrap()
        .into_tokens()
        .unwrap()
        .access_token
}

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn code_of<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected a refusal");
    let code = s
        .metadata()
        .get("auth-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (s.code(), code)
}

#[tokio::test]
async fn every_admin_rpc_refuses_a_non_admin() {
    let (server, remote) = with_admin().await;
    for name in ["alice", "bob"] {
        remote.register(register_req(name, PW)).await.unwrap();
    }
    let alice = token(&remote, "alice").await;
    let mut raw = AuthServiceClient::connect(server.url()).await.unwrap();
    let target = || AdminUserRequest {
        user: "bob".into(),
        ..Default::default()
    };
    let role = || AdminRoleRequest {
        user: "bob".into(),
        role: "admin".into(),
        ..Default::default()
    };
    let results = vec![
        code_of(
            raw.admin_list_users(bearer(AdminListUsersRequest::default(), &alice))
                .await,
        ),
        code_of(raw.admin_get_user(bearer(target(), &alice)).await),
        code_of(raw.admin_lock_user(bearer(target(), &alice)).await),
        code_of(raw.admin_unlock_user(bearer(target(), &alice)).await),
        code_of(raw.admin_logout_user(bearer(target(), &alice)).await),
        code_of(raw.admin_delete_user(bearer(target(), &alice)).await),
        code_of(raw.admin_grant_role(bearer(role(), &alice)).await),
        code_of(raw.admin_revoke_role(bearer(role(), &alice)).await),
        code_of(
            raw.admin_cluster(bearer(AdminClusterRequest::default(), &alice))
                .await,
        ),
        code_of(
            raw.admin_recent_events(bearer(AdminRecentEventsRequest::default(), &alice))
                .await,
        ),
    ];
    for (code, stable) in results {
        assert_eq!(code, Code::PermissionDenied);
        assert_eq!(stable, "permission_denied");
    }
    // Without any token: UNAUTHENTICATED, not a hint about roles.
    let (code, _) = code_of(raw.admin_list_users(AdminListUsersRequest::default()).await);
    assert_eq!(code, Code::Unauthenticated);
    // bob is untouched.
    token(&remote, "bob").await;
}

#[tokio::test]
async fn an_admin_token_works_in_metadata_and_a_lock_refuses_sign_in() {
    let (server, remote) = with_admin().await;
    remote.register(register_req("alice", PW)).await.unwrap();
    let root = token(&remote, "root").await;
    let mut raw = AuthServiceClient::connect(server.url()).await.unwrap();
    let page = raw
        .admin_list_users(bearer(
            AdminListUsersRequest {
                query: "ali".into(),
                ..Default::default()
            },
            &root,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.users.len(), 1);
    assert_eq!(page.users[0].username, "alice");
    let locked = remote
        .admin_lock_user(AdminUserRequest {
            access_token: root.clone(),
            user: page.users[0].id.clone(),
            client: None,
        })
        .await
        .unwrap();
    assert_ne!(locked.user.unwrap().locked_at_ms, 0);
    let mut raw_login = raw.clone();
    let (code, stable) = code_of(raw_login.login(login_req("alice", PW)).await);
    assert_eq!(
        (code, stable.as_str()),
        (Code::PermissionDenied, "account_disabled")
    );
    let err = remote.login(login_req("alice", PW)).await.unwrap_err();
    assert_eq!(err.code(), "account_disabled");
}
