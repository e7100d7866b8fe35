//! A small closed-loop load generator for auth-sdk servers.
//!
//! `cargo run --release --example loadgen -- --endpoints 127.0.0.1:50051 --op verify -c 64 -d 10`
//! (add `--cacert ca.pem` for TLS backends)
//!
//! Ops: `register` (a new user per call), `login`, `verify` (gRPC, one token),
//! `health` (gRPC health check: the transport baseline), `me` (HTTP `GET /api/v1/me`
//! against `--url`) and `healthz` (HTTP `GET /healthz`: the HTTP baseline). Each of `-c` workers sends its next
//! request as soon as the previous answers, round-robin over the endpoints, for `-d`
//! seconds. Prints throughput, latency percentiles, errors and the longest gap between
//! two successful calls (the failover gap when a node is killed during the run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_sdk::proto::v1::auth_service_client::AuthServiceClient;
use auth_sdk::proto::v1::{LoginRequest, RegisterRequest, VerifyRequest};
use clap::Parser;
use parking_lot::Mutex;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

#[derive(Parser, Debug)]
struct Args {
    /// gRPC endpoints, comma-separated (host:port).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:50051")]
    endpoints: Vec<String>,
    /// Web base URL for `--op me`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// register | login | verify | me
    #[arg(long, default_value = "verify")]
    op: String,
    /// Concurrent workers.
    #[arg(short, long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(short, long, default_value_t = 10)]
    duration: u64,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// CA certificate (PEM) of TLS backends: endpoints are then `https://`.
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    errors: u64,
    successes_at: Vec<Instant>,
}

fn channel(addr: &str, ca_pem: Option<&str>) -> Channel {
    let scheme = if ca_pem.is_some() { "https" } else { "http" };
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    };
    let mut e = Endpoint::from_shared(url)
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500));
    if let Some(ca) = ca_pem {
        e = e
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .expect("tls");
    }
    e.connect_lazy()
}

const PASSWORD: &str = "loadgen-password";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let ca_pem = args
        .cacert
        .as_ref()
        .map(|p| std::fs::read_to_string(p).expect("read --cacert"));
    let channels: Vec<Channel> = args
        .endpoints
        .iter()
        .map(|e| channel(e, ca_pem.as_deref()))
        .collect();
    let run_id = std::process::id();
    // One account and one token for login/verify/me.
    let mut setup = AuthServiceClient::new(channels[0].clone());
    let user = format!("lg{run_id}");
    let _ = setup
        .register(RegisterRequest {
            username: user.clone(),
            password: PASSWORD.into(),
            client: None,
        })
        .await;
    let mut token = String::new();
    if !["register", "health", "healthz"].contains(&args.op.as_str()) {
        let tokens = setup
            .login(LoginRequest {
                username: user.clone(),
                password: PASSWORD.into(),
                client: None,
            })
            .await
            .expect("login for setup")
            .into_inner()
            .tokens
            .expect("tokens");
        token = tokens.access_token;
    }
    let http = reqwest::Client::builder().build().expect("http client");
    let stats = Arc::new(Mutex::new(Stats::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (channels, stats, op, token, user, http, url) = (
            channels.clone(),
            Arc::clone(&stats),
            args.op.clone(),
            token.clone(),
            user.clone(),
            http.clone(),
            args.url.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut local = Stats::default();
            while Instant::now() < end {
                let mut c = AuthServiceClient::new(channels[(w + i) % channels.len()].clone());
                let t = Instant::now();
                let ok = match op.as_str() {
                    "register" => tokio::time::timeout(
                        timeout,
                        c.register(RegisterRequest {
                            username: format!("r{run_id}x{w}x{i}"),
                            password: PASSWORD.into(),
                            client: None,
                        }),
                    )
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false),
                    "login" => tokio::time::timeout(
                        timeout,
                        c.login(LoginRequest {
                            username: user.clone(),
                            password: PASSWORD.into(),
                            client: None,
                        }),
                    )
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false),
                    "verify" => tokio::time::timeout(
                        timeout,
                        c.verify(VerifyRequest {
                            access_token: token.clone(),
                        }),
                    )
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false),
                    "health" => {
                        let mut h = tonic_health::pb::health_client::HealthClient::new(
                            channels[(w + i) % channels.len()].clone(),
                        );
                        tokio::time::timeout(
                            timeout,
                            h.check(tonic_health::pb::HealthCheckRequest {
                                service: String::new(),
                            }),
                        )
                        .await
                        .map(|r| r.is_ok())
                        .unwrap_or(false)
                    }
                    "healthz" => {
                        tokio::time::timeout(timeout, http.get(format!("{url}/healthz")).send())
                            .await
                            .map(|r| r.map(|r| r.status().is_success()).unwrap_or(false))
                            .unwrap_or(false)
                    }
                    "me" => tokio::time::timeout(
                        timeout,
                        http.get(format!("{url}/api/v1/me"))
                            .bearer_auth(&token)
                            .send(),
                    )
                    .await
                    .map(|r| r.map(|r| r.status().is_success()).unwrap_or(false))
                    .unwrap_or(false),
                    other => panic!("unknown op {other}"),
                };
                if ok {
                    local.latencies_us.push(t.elapsed().as_micros() as u64);
                    local.successes_at.push(Instant::now());
                } else {
                    local.errors += 1;
                }
                i += 1;
            }
            let mut s = stats.lock();
            s.latencies_us.extend(local.latencies_us);
            s.successes_at.extend(local.successes_at);
            s.errors += local.errors;
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut s = std::mem::take(&mut *stats.lock());
    s.latencies_us.sort_unstable();
    s.successes_at.sort_unstable();
    let pct = |p: f64| -> f64 {
        if s.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((s.latencies_us.len() - 1) as f64 * p).round() as usize;
        s.latencies_us[i] as f64 / 1000.0
    };
    let mut gap = Duration::ZERO;
    for w in s.successes_at.windows(2) {
        gap = gap.max(w[1] - w[0]);
    }
    println!(
        "op={} c={} ok={} err={} rate={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms longest_gap={:.0}ms",
        args.op,
        args.concurrency,
        s.latencies_us.len(),
        s.errors,
        s.latencies_us.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        gap.as_secs_f64() * 1000.0
    );
}
