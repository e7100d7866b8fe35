//! `auth_backend::serve` on an ephemeral port, driven by the generated tonic client:
//! every RPC, every status mapping, bearer metadata, health, reflection, the request
//! size limit and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth_backend::ServerOptions;
use auth_backend::status::{CODE_KEY, RETRY_AFTER_KEY};
use auth_core::api::*;
use auth_core::{AuthApi, AuthError, LockoutPolicy};
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_testing::{GrpcServer, fast_auth, fast_auth_with, fast_config};
use common::*;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PW: &str = "correct horse battery";

async fn channel(server: &GrpcServer) -> Channel {
    Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

async fn client(server: &GrpcServer) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel(server).await)
}

async fn start_fast() -> GrpcServer {
    GrpcServer::start(fast_auth()).await
}

/// The stable error code a status carries in metadata.
fn code_of(s: &Status) -> String {
    s.metadata()
        .get(CODE_KEY)
        .unwrap_or_else(|| panic!("no {CODE_KEY} metadata on {s:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn assert_status(s: &Status, code: Code, auth_code: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(code_of(s), auth_code, "{s:?}");
}

async fn login(c: &mut AuthServiceClient<Channel>, name: &str, pw: &str) -> TokenPair {
    c.login(login_req(name, pw))
        .await
        .expect("login")
        .into_inner()
        .tokens
        .expect("tokens")
}

fn bearer<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn serving(ch: Channel, service: &str) -> bool {
    let mut h = HealthClient::new(ch);
    match h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
    {
        Ok(r) => r.into_inner().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

#[tokio::test]
async fn every_rpc_round_trips() {
    let server = start_fast().await;
    let mut c = client(&server).await;

    // Register
    let user = c
        .register(register_req("alice", PW))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.username, "alice");
    assert!(!user.id.is_empty());

    // Login (with client info) + Verify
    let s1 = c
        .login(LoginRequest {
            username: "alice".into(),
            password: PW.into(),
            client: Some(ClientInfo {
                user_agent: "grpc-test/1".into(),
                ip: String::new(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s1.user.as_ref().unwrap().id, user.id);
    let t1 = s1.tokens.unwrap();
    let v = c
        .verify(VerifyRequest {
            access_token: t1.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.username, "alice");
    assert_eq!(v.user_id, user.id);
    assert_eq!(v.session_id, t1.session_id);
    assert!(v.expires_at_ms > v.issued_at_ms);

    // Refresh rotates the pair; the session stays.
    let t1b = c
        .refresh(RefreshRequest {
            refresh_token: t1.refresh_token.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(t1b.session_id, t1.session_id);
    assert_ne!(t1b.refresh_token, t1.refresh_token);

    // ListSessions: two sessions, the caller's marked current; the peer address was
    // filled in by the server.
    let t2 = login(&mut c, "alice", PW).await;
    let list = c
        .list_sessions(ListSessionsRequest {
            access_token: t2.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 2);
    let current: Vec<_> = list.sessions.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].id, t2.session_id);
    let first = list
        .sessions
        .iter()
        .find(|s| s.id == t1.session_id)
        .unwrap();
    assert_eq!(first.user_agent, "grpc-test/1");
    assert_eq!(first.ip, "127.0.0.1");

    // RevokeSession ends session 1.
    c.revoke_session(RevokeSessionRequest {
        access_token: t2.access_token.clone(),
        session_id: t1.session_id.clone(),
        client: None,
    })
    .await
    .unwrap();
    let e = c
        .verify(VerifyRequest {
            access_token: t1b.access_token.clone(),
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::Unauthenticated, "session_ended");

    // ChangePassword ends the other sessions, keeps the caller's.
    let t3 = login(&mut c, "alice", PW).await;
    let changed = c
        .change_password(ChangePasswordRequest {
            access_token: t2.access_token.clone(),
            current_password: PW.into(),
            new_password: "a brand new password".into(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.sessions_ended, 1);
    let e = c
        .verify(VerifyRequest {
            access_token: t3.access_token,
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::Unauthenticated, "session_ended");
    c.verify(VerifyRequest {
        access_token: t2.access_token.clone(),
    })
    .await
    .unwrap();

    // Logout by refresh token.
    c.logout(LogoutRequest {
        access_token: String::new(),
        refresh_token: t2.refresh_token.clone(),
        client: None,
    })
    .await
    .unwrap();
    let e = c
        .verify(VerifyRequest {
            access_token: t2.access_token,
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::Unauthenticated, "session_ended");

    // LogoutAll.
    let pw2 = "a brand new password";
    let t4 = login(&mut c, "alice", pw2).await;
    let _t5 = login(&mut c, "alice", pw2).await;
    let all = c
        .logout_all(LogoutAllRequest {
            access_token: t4.access_token.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.sessions_ended, 2);

    // Logout by access token.
    let t6 = login(&mut c, "alice", pw2).await;
    c.logout(LogoutRequest {
        access_token: t6.access_token.clone(),
        refresh_token: String::new(),
        client: None,
    })
    .await
    .unwrap();

    // DeleteUser.
    let t7 = login(&mut c, "alice", pw2).await;
    c.delete_user(DeleteUserRequest {
        access_token: t7.access_token,
        password: pw2.into(),
        client: None,
    })
    .await
    .unwrap();
    let e = c.login(login_req("alice", pw2)).await.unwrap_err();
    assert_status(&e, Code::Unauthenticated, "invalid_credentials");

    server.stop().await;
}

#[tokio::test]
async fn bearer_metadata_is_accepted() {
    let server = start_fast().await;
    let mut c = client(&server).await;
    c.register(register_req("bob", PW)).await.unwrap();
    let t = login(&mut c, "bob", PW).await;

    let v = c
        .verify(bearer(VerifyRequest::default(), &t.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.username, "bob");
    let list = c
        .list_sessions(bearer(ListSessionsRequest::default(), &t.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 1);
    // A token in the message wins over the header.
    let e = c
        .verify(bearer(
            VerifyRequest {
                access_token: "not-a-token".into(),
            },
            &t.access_token,
        ))
        .await
        .unwrap_err();
    assert_status(&e, Code::Unauthenticated, "invalid_token");
    c.logout(bearer(LogoutRequest::default(), &t.access_token))
        .await
        .unwrap();
    let e = c
        .verify(bearer(VerifyRequest::default(), &t.access_token))
        .await
        .unwrap_err();
    assert_status(&e, Code::Unauthenticated, "session_ended");
    server.stop().await;
}

#[tokio::test]
async fn every_error_maps_to_its_status_with_the_stable_code() {
    let mut config = fast_config();
    config.lockout = LockoutPolicy {
        max_failures: 2,
        base_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(600),
        ..LockoutPolicy::default()
    };
    let server = GrpcServer::start(fast_auth_with(config)).await;
    let mut c = client(&server).await;
    c.register(register_req("carol", PW)).await.unwrap();

    // ALREADY_EXISTS (case-insensitive).
    let e = c.register(register_req("Carol", PW)).await.unwrap_err();
    assert_status(&e, Code::AlreadyExists, "user_exists");

    // INVALID_ARGUMENT: username, password, missing field.
    let e = c.register(register_req("x", PW)).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "invalid_username");
    let e = c.register(register_req("dave", "short")).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "invalid_password");
    let e = c.logout(LogoutRequest::default()).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "invalid_argument");
    let t = login(&mut c, "carol", PW).await;
    let e = c
        .revoke_session(RevokeSessionRequest {
            access_token: t.access_token.clone(),
            session_id: String::new(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::InvalidArgument, "invalid_argument");

    // NOT_FOUND.
    let e = c
        .revoke_session(RevokeSessionRequest {
            access_token: t.access_token.clone(),
            session_id: "no-such-session".into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::NotFound, "not_found");

    // UNAUTHENTICATED: unknown user, bad token, reused refresh token.
    let e = c.login(login_req("nobody", PW)).await.unwrap_err();
    assert_status(&e, Code::Unauthenticated, "invalid_credentials");
    let e = c
        .verify(VerifyRequest {
            access_token: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::Unauthenticated, "invalid_token");
    let rotated = c
        .refresh(RefreshRequest {
            refresh_token: t.refresh_token.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_ne!(rotated.refresh_token, t.refresh_token);
    // (Grace window: the same old token replays the same successor, it is not theft.)
    let replay = c
        .refresh(RefreshRequest {
            refresh_token: t.refresh_token.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(replay.refresh_token, rotated.refresh_token);

    // RESOURCE_EXHAUSTED with the retry delay, after two wrong passwords.
    for _ in 0..2 {
        let e = c
            .login(login_req("carol", "wrong password"))
            .await
            .unwrap_err();
        assert_status(&e, Code::Unauthenticated, "invalid_credentials");
    }
    let e = c.login(login_req("carol", PW)).await.unwrap_err();
    assert_status(&e, Code::ResourceExhausted, "locked");
    let ms: u64 = e
        .metadata()
        .get(RETRY_AFTER_KEY)
        .expect("retry-after metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 50_000 && ms <= 60_000, "{ms}");
    assert_eq!(
        auth_backend::status::from_status(&e),
        AuthError::Locked {
            retry_after: Duration::from_millis(ms)
        }
    );
    server.stop().await;

    // UNAVAILABLE: an Auth that was stopped.
    let stopped = fast_auth();
    stopped.stop().await;
    let server = GrpcServer::start(stopped).await;
    let mut c = client(&server).await;
    let e = c.register(register_req("erin", PW)).await.unwrap_err();
    assert_status(&e, Code::Unavailable, "stopped");
    let e = c
        .verify(VerifyRequest {
            access_token: "x".into(),
        })
        .await
        .unwrap_err();
    assert_status(&e, Code::Unavailable, "stopped");
    server.stop().await;

    // UNAVAILABLE from storage, and INTERNAL (not reachable through a healthy Auth over
    // memory storage, so from a scripted AuthApi).
    for (err, code, auth_code) in [
        (
            AuthError::Unavailable("no quorum".into()),
            Code::Unavailable,
            "unavailable",
        ),
        (
            AuthError::Internal("corrupt record".into()),
            Code::Internal,
            "internal",
        ),
        (
            AuthError::RefreshTokenReused,
            Code::Unauthenticated,
            "refresh_token_reused",
        ),
        (
            AuthError::TokenExpired,
            Code::Unauthenticated,
            "token_expired",
        ),
    ] {
        let api = Scripted::new(Behaviour::Fail(err.clone()));
        let server = GrpcServer::start(api).await;
        let mut c = client(&server).await;
        let e = c.login(login_req("frank", PW)).await.unwrap_err();
        assert_status(&e, code, auth_code);
        assert_eq!(auth_backend::status::from_status(&e).code(), err.code());
        server.stop().await;
    }
}

#[tokio::test]
async fn health_reports_serving() {
    let server = start_fast().await;
    let ch = channel(&server).await;
    assert!(serving(ch.clone(), "").await);
    assert!(serving(ch.clone(), "auth.v1.AuthService").await);
    let mut h = HealthClient::new(ch);
    let e = h
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = start_fast().await;
    let mut r = ServerReflectionClient::new(channel(&server).await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection call")
        .into_inner();
    let resp = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("reflection answer in time")
        .expect("reflection stream")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response {resp:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"auth.v1.AuthService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    // The AuthService descriptor can be fetched too.
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "auth.v1.AuthService".into(),
        )),
    };
    let mut stream = r
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    match resp.message_response {
        Some(MessageResponse::FileDescriptorResponse(f)) => {
            assert!(!f.file_descriptor_proto.is_empty())
        }
        other => panic!("unexpected reflection response {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn oversized_requests_are_rejected_and_the_server_stays_healthy() {
    let api = Counting::new(Arc::new(fast_auth()));
    let options = ServerOptions {
        max_request_bytes: 4096,
        ..ServerOptions::default()
    };
    let server = GrpcServer::builder()
        .options(options)
        .start(api.clone())
        .await;
    let ch = channel(&server).await;
    let mut c = AuthServiceClient::new(ch.clone());

    let huge = "x".repeat(16 * 1024);
    let e = c.register(register_req("grace", &huge)).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    let e = c
        .verify(VerifyRequest {
            access_token: huge.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert_eq!(
        api.calls(),
        0,
        "oversized requests must not reach the AuthApi"
    );

    // Same connection still works, health is still SERVING.
    assert!(serving(ch.clone(), "").await);
    c.register(register_req("grace", PW)).await.unwrap();
    login(&mut c, "grace", PW).await;
    assert_eq!(api.calls(), 2);

    // The default limit (64 KiB) lets normal requests through and stops a 1 MiB one.
    let server2 = start_fast().await;
    let mut c2 = client(&server2).await;
    let e = c2
        .register(register_req("heidi", &"y".repeat(1 << 20)))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    c2.register(register_req("heidi", PW)).await.unwrap();

    server.stop().await;
    server2.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_calls() {
    let gate = Gate::default();
    let api = Counting::gated(Arc::new(fast_auth()), gate.clone());
    let mut server = GrpcServer::start(api.clone()).await;
    let mut c = client(&server).await;

    let call = tokio::spawn(async move { c.register(register_req("ivan", PW)).await });
    tokio::time::timeout(DEADLINE, gate.entered.notified())
        .await
        .expect("the call reached the AuthApi");

    server.begin_shutdown();
    // New connections are refused once shutdown has begun (bounded wait).
    let url = server.url();
    assert!(
        wait_until(DEADLINE, || {
            let url = url.clone();
            async move {
                let attempt = async {
                    let ch = Channel::from_shared(url).unwrap().connect().await.ok()?;
                    Some(serving(ch, "").await)
                };
                // A connection that is accepted but never served also counts as refused.
                !matches!(
                    tokio::time::timeout(Duration::from_millis(500), attempt).await,
                    Ok(Some(true))
                )
            }
        })
        .await,
        "server kept accepting after shutdown"
    );
    assert!(!call.is_finished());

    gate.release.notify_one();
    let reply = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("in-flight call finished")
        .expect("task");
    assert_eq!(
        reply
            .expect("in-flight call succeeded")
            .into_inner()
            .user
            .unwrap()
            .username,
        "ivan"
    );
    server.join().await.expect("clean shutdown");
}

#[tokio::test]
async fn remote_auth_sees_the_same_errors_as_in_process() {
    // The AuthApi contract holds across the wire: same codes in and out of process.
    let local = fast_auth();
    let server = GrpcServer::start(local.clone()).await;
    let remote = auth_backend::RemoteAuth::new([server.url()], Default::default()).unwrap();
    remote.register(register_req("judy", PW)).await.unwrap();
    for api in [&remote as &dyn AuthApi, &local as &dyn AuthApi] {
        assert_eq!(
            api.register(register_req("judy", PW)).await.unwrap_err(),
            AuthError::UserExists
        );
        assert_eq!(
            api.login(login_req("judy", "wrong password"))
                .await
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        assert_eq!(
            api.verify(VerifyRequest {
                access_token: "x".into()
            })
            .await
            .unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(
            api.register(register_req("jo", PW))
                .await
                .unwrap_err()
                .code(),
            "invalid_username"
        );
    }
    let t = remote
        .login(login_req("judy", PW))
        .await
        .unwrap()
        .tokens
        .unwrap();
    let v = local
        .verify(VerifyRequest {
            access_token: t.access_token,
        })
        .await
        .unwrap();
    assert_eq!(v.username, "judy");
    server.stop().await;
}
