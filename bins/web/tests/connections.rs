//! The attack: one address opens connection after connection to hog the server. The
//! `auth-web` binary bounds the connections one client address holds open
//! (`--max-connections-per-address`): over the bound a connection is held unanswered
//! for the refusal delay and then reset, other addresses are served, and a closed
//! connection gives its place back.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{auth_web, listening_address};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const LIMIT: Duration = Duration::from_secs(30);

/// The `auth-web` binary, embedded core, on an ephemeral port: its address once it
/// listens, and the child (killed on drop).
async fn start(extra: &[&str]) -> (SocketAddr, tokio::process::Child) {
    let mut child = auth_web()
        .args(["--embedded", "--listen", "127.0.0.1:0"])
        .args(extra)
        .spawn()
        .expect("spawn auth-web");
    let (addr, _drain) = listening_address(&mut child, "auth-web listening", LIMIT).await;
    (addr.parse().expect("a socket address in the log"), child)
}

/// A TCP connection to `server` from the loopback address `from`, or the error if the
/// server reset it before the handshake was seen through (a refused connection).
async fn try_connect_from(from: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the source address");
    tokio::time::timeout(LIMIT, socket.connect(server))
        .await
        .expect("connect within the limit")
}

async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    try_connect_from(from, server).await.expect("connect")
}

/// `GET /healthz` on a new connection from `from`: the status line, or `None` if the
/// connection was reset or closed unanswered.
async fn health_from(from: [u8; 4], server: SocketAddr) -> Option<String> {
    let mut c = try_connect_from(from, server).await.ok()?;
    health(&mut c).await
}

/// Sends `GET /healthz` on a kept-alive connection and returns the status line, or
/// `None` if the server closed the connection without answering.
async fn health(stream: &mut TcpStream) -> Option<String> {
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return None;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            // The whole (small) response: headers and the body of `Content-Length`.
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return head.lines().next().map(str::to_owned);
                }
            }
        }
    })
    .await
    .expect("an answer or a close within the limit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_connections_than_its_bound() {
    let hold = Duration::from_millis(200);
    let (addr, _child) = start(&[
        "--max-connections-per-address",
        "4",
        "--refusal-delay",
        "200ms",
    ])
    .await;
    let ok = Some("HTTP/1.1 200 OK".to_owned());

    // Four kept-alive connections from 127.0.0.1, each answered (and so admitted).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from([127, 0, 0, 1], addr).await;
        assert_eq!(health(&mut c).await, ok);
        held.push(c);
    }

    // The fifth from the same address is held, then reset unanswered, however often
    // it tries.
    for _ in 0..3 {
        let sent = std::time::Instant::now();
        assert_eq!(
            health_from([127, 0, 0, 1], addr).await,
            None,
            "a fifth connection was served"
        );
        assert!(sent.elapsed() >= hold, "refused without being held");
    }

    // Another address is not affected.
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(health(&mut other).await, ok);

    // The held connections still work; closing one gives its place back (once the
    // server has seen the close: retried until a deadline).
    assert_eq!(health(&mut held[0]).await, ok);
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if health_from([127, 0, 0, 1], addr).await == ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed connection's place was not given back"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_leaves_connections_unbounded_and_trusted_proxies_are_not_bounded() {
    for flags in [
        &["--max-connections-per-address", "0"][..],
        &[
            "--max-connections-per-address",
            "2",
            "--trusted-proxy",
            "127.0.0.1",
        ][..],
    ] {
        let (addr, _child) = start(flags).await;
        let mut held = Vec::new();
        for i in 0..10 {
            let mut c = connect_from([127, 0, 0, 1], addr).await;
            assert_eq!(
                health(&mut c).await.as_deref(),
                Some("HTTP/1.1 200 OK"),
                "connection {i} with {flags:?}"
            );
            held.push(c);
        }
    }
}
