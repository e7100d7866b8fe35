//! What one request-response hop between two processes costs on this machine.
//!
//! `grpc-hop [SECONDS] [ROUNDS]` starts a copy of itself as the server (a tonic server
//! on a multi-threaded runtime, as an `auth-backend` node runs, plus a raw TCP echo),
//! then, for ROUNDS rounds in a rotating order, sends 300-byte messages one at a time
//! for SECONDS each way:
//!
//! - `raw`: a length-less 304-byte echo over one TCP connection (the floor);
//! - `unary`: a tonic unary call per message over one channel (how every client call
//!   goes, and how AppendEntries and forwards went between nodes before they moved to
//!   streams);
//! - `stream`: one message each way on a long-lived tonic bidi stream (how they go
//!   now);
//!
//! each from a client on a multi-threaded runtime (`-mt`) and on a current-thread one
//! (`-ct`). It prints each variant's round-trip p50/p99 and the CPU each side spent per
//! round trip (from `/proc/<pid>/stat`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status, Streaming};

mod pb {
    tonic::include_proto!("hop");
}
use pb::Msg;
use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PAYLOAD: usize = 300;

struct Server;

#[tonic::async_trait]
impl Echo for Server {
    async fn unary(&self, r: Request<Msg>) -> Result<Response<Msg>, Status> {
        Ok(Response::new(r.into_inner()))
    }

    type StreamStream = tokio_stream::wrappers::ReceiverStream<Result<Msg, Status>>;

    async fn stream(
        &self,
        r: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = r.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if tx.send(Ok(m)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

/// Ticks of user + system CPU of process `pid` (or this one).
fn cpu_ticks(pid: Option<u32>) -> Result<u64, BoxError> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path)?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |i: usize| -> Result<u64, BoxError> {
        Ok(fields.get(i).ok_or("short /proc stat")?.parse()?)
    };
    Ok(field(11)? + field(12)?)
}

/// Serves gRPC and the raw echo on ephemeral ports; prints `ports GRPC RAW`.
async fn serve() -> Result<(), BoxError> {
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let raw = TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "ports {} {}",
        grpc.local_addr()?.port(),
        raw.local_addr()?.port()
    );
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(EchoServer::new(Server))
        .serve_with_incoming(futures::StreamExt::map(incoming, |s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        }));
    let raw = async move {
        loop {
            let (mut s, _) = raw.accept().await?;
            s.set_nodelay(true)?;
            tokio::spawn(async move {
                let mut b = vec![0u8; PAYLOAD + 4];
                while s.read_exact(&mut b).await.is_ok() && s.write_all(&b).await.is_ok() {}
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), BoxError>(())
    };
    tokio::select! {
        r = grpc => r?,
        r = raw => r?,
    }
    Ok(())
}

/// Round trips of `variant` for `secs` seconds against the server's ports.
async fn drive(variant: &str, grpc: u16, raw: u16, secs: u64) -> Result<Vec<Duration>, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut took = Vec::new();
    let msg = Msg {
        data: vec![7; PAYLOAD],
    };
    if variant == "raw" {
        let mut s = TcpStream::connect(("127.0.0.1", raw)).await?;
        s.set_nodelay(true)?;
        let mut b = vec![7u8; PAYLOAD + 4];
        while Instant::now() < deadline {
            let t = Instant::now();
            s.write_all(&b).await?;
            s.read_exact(&mut b).await?;
            took.push(t.elapsed());
        }
        return Ok(took);
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = EchoClient::new(channel);
    if variant == "unary" {
        while Instant::now() < deadline {
            let t = Instant::now();
            client.unary(msg.clone()).await?;
            took.push(t.elapsed());
        }
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut replies = client
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        while Instant::now() < deadline {
            let t = Instant::now();
            tx.send(msg.clone()).await?;
            replies.message().await?.ok_or("stream ended")?;
            took.push(t.elapsed());
        }
    }
    Ok(took)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        return tokio::runtime::Runtime::new()?.block_on(serve());
    }
    let secs: u64 = args.get(1).map_or(Ok(5), |s| s.parse())?;
    if secs == 0 {
        return Err("SECONDS must be at least 1".into());
    }
    let rounds: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let mut server = std::process::Command::new(std::env::current_exe()?)
        .arg("server")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let server_pid = server.id();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().ok_or("no stdout")?),
        &mut line,
    )?;
    let ports: Vec<u16> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let (grpc, raw) = (
        *ports.first().ok_or("no port")?,
        *ports.get(1).ok_or("no port")?,
    );
    let variants = [
        "raw-mt",
        "unary-mt",
        "stream-mt",
        "raw-ct",
        "unary-ct",
        "stream-ct",
    ];
    println!(
        "variant    round trips  p50 µs  p99 µs  client CPU µs  server CPU µs  (per round trip)"
    );
    let outcome = (|| -> Result<(), BoxError> {
        for round in 0..rounds {
            for i in 0..variants.len() {
                let v = variants[(i + round) % variants.len()];
                let (kind, flavour) = v.split_once('-').ok_or("variant")?;
                let rt = if flavour == "ct" {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()?
                };
                let (c0, s0) = (cpu_ticks(None)?, cpu_ticks(Some(server_pid))?);
                let mut took = rt.block_on(drive(kind, grpc, raw, secs))?;
                let (c1, s1) = (cpu_ticks(None)?, cpu_ticks(Some(server_pid))?);
                drop(rt);
                took.sort();
                let n = took.len().max(1);
                // Ticks are 10 ms: µs per round trip = ticks * 10 000 / n.
                let per = |t: u64| t as f64 * 10_000.0 / n as f64;
                println!(
                    "{v:<10} {n:>11}  {:>6.0}  {:>6.0}  {:>13.1}  {:>13.1}",
                    took[n / 2].as_secs_f64() * 1e6,
                    took[n * 99 / 100].as_secs_f64() * 1e6,
                    per(c1 - c0),
                    per(s1 - s0),
                );
            }
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    outcome
}
