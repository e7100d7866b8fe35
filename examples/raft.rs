//! Three Raft nodes in one process, each with an [`Auth`] over its own replicated
//! storage: register on node 1, log in on node 2, log out on node 3, and the access
//! token stops verifying on every node at once.
//!
//! Each node has a data directory (in a temporary directory removed on exit) and a peer
//! listener on 127.0.0.1 with mutual TLS, its certificate issued by a cluster CA made
//! here. In a real deployment each node is its own process or machine, the CA and
//! certificates come from `auth-backend certs`, and every node's `Auth` has the same
//! signing keys (here: one generated Ed25519 key).
//!
//! Run it with `cargo run --example raft --features raft`.

use std::collections::BTreeMap;
use std::time::Duration;

use auth_sdk::api::{LoginRequest, LogoutRequest, RegisterRequest, VerifyRequest};
use auth_sdk::raft::net::ListenerLimits;
use auth_sdk::raft::pki::{CertAuthority, CertRequest};
use auth_sdk::raft::tls::{PeerIdentity, PeerTls};
use auth_sdk::{Auth, AuthApi, Config, KeyRing, RaftConfig, RaftNode, RaftStorage, SigningKey};

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let ca = CertAuthority::generate("example cluster CA", Duration::from_secs(3600))?;

    // Every node's peer address must be known to all: bind the listeners first.
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        members.insert(id, listener.local_addr()?.to_string());
        listeners.push((id, listener));
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (id, listener) in listeners {
        let me = PeerIdentity::Node(id);
        let cert = ca.issue(&CertRequest::new(me.clone(), ["127.0.0.1"]))?;
        let mut config = RaftConfig::new(id, &members[&id], dir.path().join(format!("node-{id}")));
        config.cluster_id = "raft-example".into();
        config.initial_members = members.clone();
        config.tls = Some(PeerTls::from_pem(
            ca.cert_pem(),
            &cert.cert_pem,
            &cert.key_pem,
            Some(&me),
        )?);
        let node = RaftNode::start(config).await?;
        let mut stopped = stopped.clone();
        let serve = node.serve_peer(listener, ListenerLimits::default(), async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })?;
        servers.push(tokio::spawn(serve));
        nodes.push(node);
    }
    let leader = nodes[0]
        .wait_for_leader(Duration::from_secs(10))
        .await
        .ok_or("no leader elected within 10 s")?;
    println!("3 nodes up, node {leader} leads");

    // One Auth per node, over that node's storage, all with the same signing key.
    let keys = KeyRing::new(SigningKey::generate_ed25519());
    let mut auths: Vec<Auth<RaftStorage>> = Vec::new();
    for node in &nodes {
        let mut config = Config::default();
        config.keys = Some(keys.clone());
        let auth = Auth::new(config, node.storage())?;
        auth.start()?;
        auths.push(auth);
    }

    let password = "correct horse battery staple";
    auths[0]
        .register(RegisterRequest {
            username: "alice".into(),
            password: password.into(),
            client: None,
        })
        .await?;
    println!("registered alice on node 1");

    let tokens = auths[1]
        .login(LoginRequest {
            username: "alice".into(),
            password: password.into(),
            client: None,
        })
        .await?
        .into_tokens()?;
    println!("logged in on node 2, session {}", tokens.session_id);

    let verify = || VerifyRequest {
        access_token: tokens.access_token.clone(),
    };
    for (i, auth) in auths.iter().enumerate() {
        let me = auth.verify(verify()).await?;
        println!("node {}: the token verifies as {}", i + 1, me.username);
    }

    auths[2]
        .logout(LogoutRequest {
            refresh_token: tokens.refresh_token.clone(),
            ..Default::default()
        })
        .await?;
    println!("logged out on node 3");

    // Reads are linearizable by default: the logout, acknowledged once a majority has
    // it, is seen by the very next read on any node.
    for (i, auth) in auths.iter().enumerate() {
        match auth.verify(verify()).await {
            Err(e) => println!("node {}: the token is refused ({})", i + 1, e.code()),
            Ok(_) => return Err(format!("node {} still accepts the token", i + 1).into()),
        }
    }

    for auth in &auths {
        auth.stop().await;
    }
    let _ = stop.send(true);
    for node in &nodes {
        node.shutdown().await;
    }
    for server in servers {
        server.await??;
    }
    Ok(())
}
