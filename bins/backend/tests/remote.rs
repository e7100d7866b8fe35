//! `RemoteAuth`: failover, mark-down, recovery, fast failure when every backend is down,
//! and no retry of non-idempotent calls that may have reached a server.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_backend::{RemoteAuth, RemoteOptions, ServerOptions};
use auth_core::api::*;
use auth_core::{AuthApi, AuthError};
use auth_testing::{GrpcServer, fast_auth, unused_addr};
use common::*;

const PW: &str = "correct horse battery";

fn options(probe_interval: Duration) -> RemoteOptions {
    RemoteOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        probe_interval,
        ..RemoteOptions::default()
    }
}

fn up(remote: &RemoteAuth) -> Vec<bool> {
    remote.endpoints().iter().map(|e| e.up).collect()
}

async fn verify(remote: &RemoteAuth, token: &str) -> Result<VerifyResponse, AuthError> {
    remote
        .verify(VerifyRequest {
            access_token: token.into(),
        })
        .await
}

#[tokio::test]
async fn fails_over_and_stops_sending_to_a_dead_endpoint() {
    // Two backends over one shared Auth (as a replicated cluster would be).
    let auth = Arc::new(fast_auth());
    let a = Counting::new(auth.clone());
    let b = Counting::new(auth.clone());
    let server_a = GrpcServer::start(a.clone()).await;
    let server_b = GrpcServer::start(b.clone()).await;
    let addr_a = server_a.addr();
    // No probe during this test: a marked-down endpoint must get no traffic at all.
    let remote = RemoteAuth::new(
        [server_a.url(), server_b.url()],
        options(Duration::from_secs(3600)),
    )
    .unwrap();

    remote.register(register_req("alice", PW)).await.unwrap();
    let t = remote
        .login(login_req("alice", PW))
        .await
        .unwrap()
        .tokens
        .unwrap();
    assert_eq!(
        (a.calls(), b.calls()),
        (2, 0),
        "calls start at the first endpoint"
    );

    // A dies; its port now accepts TCP connections and drops them (counted).
    server_a.stop().await;
    let hole = BlackHole::bind(addr_a).await;

    for _ in 0..20 {
        let v = verify(&remote, &t.access_token).await.expect("failover");
        assert_eq!(v.username, "alice");
    }
    assert_eq!(b.calls(), 20, "every call answered by B exactly once");
    assert_eq!(a.calls(), 2);
    assert_eq!(up(&remote), vec![false, true], "A is marked down");
    let attempts_after_failover = hole.accepted();
    assert!(attempts_after_failover <= 1, "{attempts_after_failover}");

    // Even when B answers "unavailable" to a retryable call, the marked-down A is
    // skipped rather than tried again.
    *b.fail_next.lock() = Some(AuthError::Unavailable("no quorum".into()));
    let e = verify(&remote, &t.access_token).await.unwrap_err();
    assert_eq!(e.code(), "unavailable");
    assert_eq!(hole.accepted(), attempts_after_failover, "A got traffic");
    assert_eq!(
        up(&remote),
        vec![false, true],
        "an application error keeps B up"
    );

    // Non-idempotent calls work too while A is down.
    remote.register(register_req("bob", PW)).await.unwrap();
    remote.login(login_req("bob", PW)).await.unwrap();
    assert_eq!(hole.accepted(), attempts_after_failover);
    hole.close().await;
    server_b.stop().await;
}

#[tokio::test]
async fn a_recovered_endpoint_is_probed_back_up() {
    let auth = Arc::new(fast_auth());
    let a = Counting::new(auth.clone());
    let b = Counting::new(auth.clone());
    let server_a = GrpcServer::start(a.clone()).await;
    let server_b = GrpcServer::start(b.clone()).await;
    let addr_a = server_a.addr();
    let remote = RemoteAuth::new(
        [server_a.url(), server_b.url()],
        options(Duration::from_millis(50)),
    )
    .unwrap();
    remote.register(register_req("carol", PW)).await.unwrap();
    let t = remote
        .login(login_req("carol", PW))
        .await
        .unwrap()
        .tokens
        .unwrap();

    server_a.stop().await;
    verify(&remote, &t.access_token).await.unwrap();
    assert_eq!(up(&remote), vec![false, true]);
    // Still down while nothing listens there.
    assert!(
        !wait_until(Duration::from_millis(300), || async { up(&remote)[0] }).await,
        "a dead endpoint was marked up"
    );

    // A comes back on the same port: the probe marks it up.
    let server_a = GrpcServer::builder().addr(addr_a).start(a.clone()).await;
    assert!(
        wait_until(DEADLINE, || async { up(&remote) == vec![true, true] }).await,
        "A was not probed back up: {:?}",
        remote.endpoints()
    );

    // B dies: traffic goes back to A.
    let before = a.calls();
    server_b.stop().await;
    for _ in 0..5 {
        verify(&remote, &t.access_token).await.expect("served by A");
    }
    assert_eq!(a.calls(), before + 5);
    assert_eq!(up(&remote), vec![true, false]);

    // Health reports each endpoint as the backend sees itself.
    let health = remote.health().await;
    assert_eq!(health.len(), 2);
    assert_eq!(health[0].1, Ok(true));
    assert_eq!(health[1].1.as_ref().unwrap_err().code(), "unavailable");
    server_a.stop().await;
}

#[tokio::test]
async fn all_endpoints_down_fails_fast_with_unavailable() {
    let refused = unused_addr();
    // A port that accepts connections but never speaks HTTP/2: bounded by the timeouts.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let remote = RemoteAuth::new(
        [refused.to_string(), silent_addr.to_string()],
        RemoteOptions {
            connect_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(500),
            probe_interval: Duration::from_secs(3600),
            ..RemoteOptions::default()
        },
    )
    .unwrap();

    let started = Instant::now();
    let e = verify(&remote, "x").await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up(&remote), vec![false, false]);

    // With every endpoint marked down, calls fail without touching the network.
    let started = Instant::now();
    for _ in 0..100 {
        let e = remote.register(register_req("dave", PW)).await.unwrap_err();
        assert!(matches!(e, AuthError::Unavailable(_)), "{e}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn non_idempotent_calls_are_not_retried_once_they_may_have_arrived() {
    let auth = Arc::new(fast_auth());
    let b = Counting::new(auth.clone());
    let server_b = GrpcServer::start(b.clone()).await;

    // 1. A receives the call and then goes silent (timeout): a register may have been
    //    applied, so it must not be sent to B.
    let gate = Gate::default();
    let a = Scripted::new(Behaviour::Stall {
        gate: gate.clone(),
        then: AuthError::Internal("late".into()),
    });
    let server_a = GrpcServer::start(a.clone()).await;
    let remote = RemoteAuth::new(
        [server_a.url(), server_b.url()],
        RemoteOptions {
            request_timeout: Duration::from_millis(300),
            probe_interval: Duration::from_secs(3600),
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    let e = remote.register(register_req("erin", PW)).await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    assert_eq!((a.calls(), b.calls()), (1, 0), "register was retried on B");
    gate.release.notify_one();

    // 2. A answers "unavailable" itself (e.g. storage without quorum): the same rule for
    //    login; but an idempotent verify moves on to B.
    let a2 = Scripted::new(Behaviour::Fail(AuthError::Unavailable("no quorum".into())));
    let server_a2 = GrpcServer::start(a2.clone()).await;
    let remote = RemoteAuth::new(
        [server_a2.url(), server_b.url()],
        options(Duration::from_secs(3600)),
    )
    .unwrap();
    remote.register(register_req("erin", PW)).await.unwrap_err();
    remote.login(login_req("erin", PW)).await.unwrap_err();
    remote
        .change_password(ChangePasswordRequest::default())
        .await
        .unwrap_err();
    remote
        .delete_user(DeleteUserRequest::default())
        .await
        .unwrap_err();
    assert_eq!((a2.calls(), b.calls()), (4, 0));
    let e = verify(&remote, "garbage").await.unwrap_err();
    assert_eq!(e, AuthError::InvalidToken, "verify was answered by B");
    assert_eq!((a2.calls(), b.calls()), (5, 1));
    assert_eq!(
        up(&remote),
        vec![true, true],
        "an answering backend stays up"
    );

    // 3. A refuses the connection: the call cannot have arrived, so even a register
    //    moves on to B.
    let remote = RemoteAuth::new(
        [unused_addr().to_string(), server_b.url()],
        options(Duration::from_secs(3600)),
    )
    .unwrap();
    remote.register(register_req("frank", PW)).await.unwrap();
    assert_eq!(b.calls(), 2);
    assert_eq!(up(&remote), vec![false, true]);

    server_a.stop().await;
    server_a2.stop().await;
    server_b.stop().await;
}

#[tokio::test]
async fn a_rejected_oversized_request_does_not_mark_the_backend_down() {
    // The server rejects it itself (OUT_OF_RANGE, no auth metadata): an answer, not a
    // transport failure, so it must neither mark endpoints down nor be retried.
    let a = Counting::new(Arc::new(fast_auth()));
    let b = Counting::new(Arc::new(fast_auth()));
    let small = ServerOptions {
        max_request_bytes: 4096,
        ..ServerOptions::default()
    };
    let server_a = GrpcServer::builder()
        .options(small.clone())
        .start(a.clone())
        .await;
    let server_b = GrpcServer::builder().options(small).start(b.clone()).await;
    let remote = RemoteAuth::new(
        [server_a.url(), server_b.url()],
        options(Duration::from_secs(3600)),
    )
    .unwrap();
    let huge = "x".repeat(16 * 1024);
    for _ in 0..3 {
        let e = verify(&remote, &huge).await.unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
    }
    assert_eq!(up(&remote), vec![true, true]);
    assert_eq!((a.calls(), b.calls()), (0, 0));
    remote.register(register_req("grace", PW)).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (1, 0));
    server_a.stop().await;
    server_b.stop().await;
}

#[tokio::test]
async fn remote_auth_rejects_bad_endpoint_lists() {
    assert_eq!(
        RemoteAuth::new(Vec::<String>::new(), RemoteOptions::default())
            .unwrap_err()
            .code(),
        "invalid_config"
    );
    assert_eq!(
        RemoteAuth::new(["http://bad host:1"], RemoteOptions::default())
            .unwrap_err()
            .code(),
        "invalid_config"
    );
}

/// Overload is not death: a backend that sheds a call (`overloaded`) or times it out
/// itself (its request timeout, shorter than the client's) answers with a typed status
/// and stays up, so verify and refresh keep their endpoints while logins are shed. Only
/// transport failures (and silence past the client's own deadline) mark an endpoint
/// down.
#[tokio::test]
async fn slow_or_overloaded_backends_are_not_marked_down() {
    let shedding = Scripted::new(Behaviour::Fail(AuthError::Overloaded {
        retry_after: Duration::from_millis(750),
    }));
    let server = GrpcServer::start(shedding.clone()).await;
    let remote = RemoteAuth::new([server.url()], options(Duration::from_secs(3600))).unwrap();
    for _ in 0..5 {
        let e = remote.login(login_req("erin", PW)).await.unwrap_err();
        assert_eq!(
            e,
            AuthError::Overloaded {
                retry_after: Duration::from_millis(750)
            }
        );
    }
    assert_eq!(shedding.calls(), 5, "every call reached the backend");
    assert_eq!(up(&remote), vec![true], "a shedding backend stays up");

    // A backend stuck on a call times it out itself, well before the client would.
    let gate = Gate::default();
    let slow = Scripted::new(Behaviour::Stall {
        gate: gate.clone(),
        then: AuthError::NotFound,
    });
    let slow_server = GrpcServer::builder()
        .options(ServerOptions {
            request_timeout: Duration::from_millis(200),
            ..ServerOptions::default()
        })
        .start(slow.clone())
        .await;
    let remote = RemoteAuth::new(
        [slow_server.url()],
        RemoteOptions {
            request_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(3600),
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let e = remote.register(register_req("erin", PW)).await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let e = verify(&remote, "garbage").await.unwrap_err();
    assert_eq!(e.code(), "unavailable");
    assert_eq!(up(&remote), vec![true], "a slow backend is not marked down");
    gate.release.notify_waiters();
}
