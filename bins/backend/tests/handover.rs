//! Graceful stop: gRPC health turns NOT_SERVING as the drain begins while calls are
//! still served, and a stopping leader (SIGTERM to a real `auth-backend` of a 3-node
//! cluster) hands leadership over in one election, with no write failing meanwhile.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use auth_backend::server::{Drain, ServerOptions};
use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::AuthApi;
use auth_testing::{GrpcServer, ProcCluster, fast_auth};
use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const PW: &str = "password-1";

async fn health(url: &str, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = HealthClient::new(channel);
    let r = c
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    r.into_inner().status()
}

#[tokio::test]
async fn health_turns_not_serving_when_the_drain_begins_and_calls_still_work() {
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(Drain::Serving);
    let server = GrpcServer::builder()
        .options(ServerOptions {
            draining: Some(drain_rx),
            ..ServerOptions::default()
        })
        .start(fast_auth())
        .await;
    let url = server.url();
    assert_eq!(health(&url, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&url, "auth.v1.AuthService").await,
        ServingStatus::Serving
    );
    drain_tx.send(Drain::Draining).unwrap();
    let turned = wait_until(Duration::from_secs(10), || async {
        health(&url, "").await == ServingStatus::NotServing
            && health(&url, "auth.v1.AuthService").await == ServingStatus::NotServing
    })
    .await;
    assert!(turned, "health never said NOT_SERVING");
    // Still serving calls while draining.
    let api = RemoteAuth::new([url.clone()], Default::default()).unwrap();
    api.register(register_req("drained", PW)).await.unwrap();
    // Then refusing them, marked as not done: a client may send them elsewhere.
    drain_tx.send(Drain::Refusing).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = auth_proto::v1::auth_service_client::AuthServiceClient::new(channel);
    let refused = raw.register(register_req("late", PW)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.metadata().get("auth-not-processed").is_some());
    // And nothing was done: the name is still free once serving again.
    drain_tx.send(Drain::Serving).unwrap();
    raw.register(register_req("late", PW)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_leader_hands_over_and_no_write_fails() {
    let mut c = ProcCluster::start(BIN, 3, &[]);
    c.leader(Duration::from_secs(30)).await;
    // Writers through every node, the leader's included, with failover.
    let api = Arc::new(
        RemoteAuth::new(
            c.endpoints(),
            RemoteOptions {
                request_timeout: Duration::from_secs(5),
                ..c.remote_options()
            },
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (api, stop, ok, failed) = (api.clone(), stop.clone(), ok.clone(), failed.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 10_000 {
                match api.register(register_req(&format!("w{w}n{i}"), PW)).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("write failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        }));
    }
    let writing = wait_until(Duration::from_secs(10), || async {
        ok.load(Ordering::Relaxed) >= 20
    })
    .await;
    assert!(writing, "writes never got going");
    // The leader and term as the signal goes: on a loaded machine the first TLS
    // handshakes can cost a start-up election, which is not the hand-over's.
    let leader = c.leader(Duration::from_secs(10)).await;
    let term_before = c
        .statuses()
        .await
        .into_iter()
        .find(|s| s.id == leader)
        .unwrap()
        .term;

    // SIGTERM: the leader hands over, finishes its calls, exits cleanly.
    tokio::task::block_in_place(|| c.stop(leader));
    let next = c.leader(Duration::from_secs(10)).await;
    assert_ne!(next, leader);
    let term_after = c
        .statuses()
        .await
        .into_iter()
        .find(|s| s.id == next)
        .unwrap()
        .term;
    assert_eq!(
        term_after,
        term_before + 1,
        "one election: the hand-over's, not a timeout's; the old leader logged:\n{}",
        c.log(leader)
    );
    assert!(
        c.log(leader).contains("leadership handed over"),
        "the old leader logged:\n{}",
        c.log(leader)
    );
    let before = ok.load(Ordering::Relaxed);
    let resumed = wait_until(Duration::from_secs(10), || async {
        ok.load(Ordering::Relaxed) >= before + 20
    })
    .await;
    assert!(resumed, "writes did not go on");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no write failed");
}
