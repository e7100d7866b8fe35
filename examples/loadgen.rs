//! A small closed-loop load generator for auth-sdk servers (and, to compare, etcd).
//!
//! `cargo run --release --example loadgen -- --endpoints 127.0.0.1:50051 --op verify -c 64 -d 10`
//! (add `--cacert ca.pem` for TLS backends)
//!
//! Ops: `register` (a new user per call), `refresh` (each worker rotates its own
//! session's refresh token: a write with no password hash), `login`, `verify` (gRPC, one token),
//! `health` (gRPC health check: the transport baseline), `me` (HTTP `GET /api/v1/me`
//! against `--url`) and `healthz` (HTTP `GET /healthz`: the HTTP baseline). Each of `-c` workers sends its next
//! request as soon as the previous answers, round-robin over the endpoints, for `-d`
//! seconds. Prints throughput, latency percentiles, errors and the longest gap between
//! two successful calls (the failover gap when a node is killed during the run) on one
//! stdout line; on stderr, the failed calls counted by kind (gRPC code and message).
//!
//! `--target etcd` (built with `--features etcd-bench`) sends the same kind of load to an
//! etcd v3 cluster; `--endpoints` are then its client URLs (`host:port` or
//! `http://host:port`). Ops: `put` (a new key per call, with a 300-byte value: about one
//! of our user records), `get` (a linearizable read, etcd's default, of a key put at
//! setup) and `get-serializable` (the same read answered by the member alone). The output
//! line has the same format for both targets; `benches/compare-etcd.sh` runs them side
//! by side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_sdk::proto::v1::auth_service_client::AuthServiceClient;
use auth_sdk::proto::v1::{
    LoginRequest, RefreshRequest, RegisterRequest, TokenPair, VerifyRequest,
};
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
    /// What the endpoints are: our backend, or etcd v3 (needs the `etcd-bench` feature).
    #[arg(long, value_enum, default_value_t = Target::Auth)]
    target: Target,
    /// auth: register | refresh | login | verify | health | healthz | me (refresh:
    /// each worker rotates its own session's refresh token, a write without a
    /// password hash);
    /// etcd: put | get | get-serializable
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

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Auth,
    Etcd,
}

const AUTH_OPS: &[&str] = &[
    "register", "refresh", "login", "verify", "health", "healthz", "me",
];
const ETCD_OPS: &[&str] = &["put", "get", "get-serializable"];

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    errors: u64,
    /// Failed calls by kind (gRPC code and message, `timeout`, ...), printed to stderr.
    error_kinds: BTreeMap<String, u64>,
    successes_at: Vec<Instant>,
}

/// What a failed call counts as: its gRPC code and message.
fn status_kind(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
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
    let ops = match args.target {
        Target::Auth => AUTH_OPS,
        Target::Etcd => ETCD_OPS,
    };
    if !ops.contains(&args.op.as_str()) {
        eprintln!(
            "unknown op {:?} for --target {}; one of: {}",
            args.op,
            format!("{:?}", args.target).to_lowercase(),
            ops.join(", ")
        );
        std::process::exit(2);
    }
    let run_id = std::process::id();
    let workers: Vec<Worker> = match args.target {
        Target::Auth => auth_workers(&args, run_id)
            .await
            .into_iter()
            .map(Worker::Auth)
            .collect(),
        #[cfg(feature = "etcd-bench")]
        Target::Etcd => etcd::workers(&args, run_id)
            .await
            .into_iter()
            .map(Worker::Etcd)
            .collect(),
        #[cfg(not(feature = "etcd-bench"))]
        Target::Etcd => {
            eprintln!(
                "--target etcd needs the example built with `--features etcd-bench` \
                 (and PROTOC set: see benches/compare-etcd.sh)"
            );
            std::process::exit(2);
        }
    };
    let stats = Arc::new(Mutex::new(Stats::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut tasks = Vec::new();
    for mut worker in workers {
        let stats = Arc::clone(&stats);
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut local = Stats::default();
            while Instant::now() < end {
                let t = Instant::now();
                let result = tokio::time::timeout(timeout, worker.call(i))
                    .await
                    .unwrap_or_else(|_| Err("timeout".into()));
                match result {
                    Ok(()) => {
                        local.latencies_us.push(t.elapsed().as_micros() as u64);
                        local.successes_at.push(Instant::now());
                    }
                    Err(kind) => {
                        local.errors += 1;
                        *local.error_kinds.entry(kind).or_default() += 1;
                    }
                }
                i += 1;
            }
            let mut s = stats.lock();
            s.latencies_us.extend(local.latencies_us);
            s.successes_at.extend(local.successes_at);
            s.errors += local.errors;
            for (kind, n) in local.error_kinds {
                *s.error_kinds.entry(kind).or_default() += n;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
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
    let mean_ms = if s.latencies_us.is_empty() {
        f64::NAN
    } else {
        s.latencies_us.iter().sum::<u64>() as f64 / s.latencies_us.len() as f64 / 1000.0
    };
    let mut gap = Duration::ZERO;
    for w in s.successes_at.windows(2) {
        gap = gap.max(w[1] - w[0]);
    }
    println!(
        "op={} c={} ok={} err={} rate={:.0}/s mean={:.2}ms p50={:.2}ms p99={:.2}ms max={:.2}ms longest_gap={:.0}ms",
        args.op,
        args.concurrency,
        s.latencies_us.len(),
        s.errors,
        s.latencies_us.len() as f64 / elapsed,
        mean_ms,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        gap.as_secs_f64() * 1000.0
    );
    // Why calls failed, on stderr: stdout keeps the one line scripts parse.
    for (kind, n) in &s.error_kinds {
        eprintln!("  errors: {n} × {kind}");
    }
}

/// One closed-loop worker: owns its clients and sends its `i`-th request on endpoint
/// `(w + i) % endpoints`, so every worker round-robins over all of them.
enum Worker {
    Auth(AuthWorker),
    #[cfg(feature = "etcd-bench")]
    Etcd(etcd::Worker),
}

impl Worker {
    /// Sends the `i`-th request; on failure, what kind of failure.
    async fn call(&mut self, i: usize) -> Result<(), String> {
        match self {
            Worker::Auth(a) => a.call(i).await,
            #[cfg(feature = "etcd-bench")]
            Worker::Etcd(e) => e.call(i).await,
        }
    }
}

struct AuthWorker {
    w: usize,
    run_id: u32,
    op: String,
    channels: Vec<Channel>,
    user: String,
    token: String,
    /// This worker's current refresh token (`refresh`).
    refresh: String,
    http: reqwest::Client,
    url: String,
}

/// Registers `user` (already there from an earlier run is fine).
async fn setup_account(channel: &Channel, user: &str) {
    let _ = AuthServiceClient::new(channel.clone())
        .register(RegisterRequest {
            username: user.into(),
            password: PASSWORD.into(),
            client: None,
        })
        .await;
}

/// Logs `user` in: the new session's tokens.
async fn login(channel: &Channel, user: &str) -> Result<TokenPair, String> {
    AuthServiceClient::new(channel.clone())
        .login(LoginRequest {
            username: user.into(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .map_err(|s| status_kind(&s))?
        .into_inner()
        .tokens
        .ok_or_else(|| "login without tokens".to_string())
}

/// One channel per endpoint, shared by the workers; one account and one token for
/// login, verify and me; for refresh, an account and a session per worker.
async fn auth_workers(args: &Args, run_id: u32) -> Vec<AuthWorker> {
    let ca_pem = args
        .cacert
        .as_ref()
        .map(|p| std::fs::read_to_string(p).expect("read --cacert"));
    let channels: Vec<Channel> = args
        .endpoints
        .iter()
        .map(|e| channel(e, ca_pem.as_deref()))
        .collect();
    let user = format!("lg{run_id}");
    setup_account(&channels[0], &user).await;
    let mut token = String::new();
    if !["register", "refresh", "health", "healthz"].contains(&args.op.as_str()) {
        token = login(&channels[0], &user)
            .await
            .expect("login for setup")
            .access_token;
    }
    let http = reqwest::Client::builder().build().expect("http client");
    let mut workers: Vec<AuthWorker> = (0..args.concurrency)
        .map(|w| AuthWorker {
            w,
            run_id,
            op: args.op.clone(),
            channels: channels.clone(),
            user: user.clone(),
            token: token.clone(),
            refresh: String::new(),
            http: http.clone(),
            url: args.url.clone(),
        })
        .collect();
    if args.op == "refresh" {
        // An account and a session of its own per worker: rotations of one session
        // are sequential, and no account nears its cap on sessions.
        for w in &mut workers {
            w.user = format!("lg{run_id}r{}", w.w);
            setup_account(&channels[0], &w.user).await;
            w.refresh = w.login().await.expect("login for setup");
        }
    }
    workers
}

impl AuthWorker {
    /// Logs in (on the first endpoint) and returns the session's refresh token.
    async fn login(&self) -> Result<String, String> {
        Ok(login(&self.channels[0], &self.user).await?.refresh_token)
    }

    async fn call(&mut self, i: usize) -> Result<(), String> {
        let channel = self.channels[(self.w + i) % self.channels.len()].clone();
        let mut c = AuthServiceClient::new(channel.clone());
        let http_result = |r: reqwest::Result<reqwest::Response>| match r {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(format!("HTTP: {e}")),
        };
        match self.op.as_str() {
            "register" => c
                .register(RegisterRequest {
                    username: format!("r{}x{}x{i}", self.run_id, self.w),
                    password: PASSWORD.into(),
                    client: None,
                })
                .await
                .map(drop)
                .map_err(|s| status_kind(&s)),
            "refresh" => {
                let rotated = c
                    .refresh(RefreshRequest {
                        refresh_token: self.refresh.clone(),
                        client: None,
                    })
                    .await;
                match rotated {
                    Ok(r) => {
                        let next = r.into_inner().tokens.map(|t| t.refresh_token);
                        self.refresh = next.ok_or("refresh without tokens")?;
                        Ok(())
                    }
                    Err(s) => {
                        // Refused as unauthenticated (the session is gone): start a new
                        // one. Otherwise (unavailable, a timeout) the token is retried:
                        // if it was spent meanwhile, the grace period answers a replay
                        // with the current token.
                        if s.code() == tonic::Code::Unauthenticated {
                            self.refresh = self.login().await?;
                        }
                        Err(status_kind(&s))
                    }
                }
            }
            "login" => c
                .login(LoginRequest {
                    username: self.user.clone(),
                    password: PASSWORD.into(),
                    client: None,
                })
                .await
                .map(drop)
                .map_err(|s| status_kind(&s)),
            "verify" => c
                .verify(VerifyRequest {
                    access_token: self.token.clone(),
                })
                .await
                .map(drop)
                .map_err(|s| status_kind(&s)),
            "health" => tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(drop)
                .map_err(|s| status_kind(&s)),
            "healthz" => http_result(self.http.get(format!("{}/healthz", self.url)).send().await),
            "me" => http_result(
                self.http
                    .get(format!("{}/api/v1/me", self.url))
                    .bearer_auth(&self.token)
                    .send()
                    .await,
            ),
            other => unreachable!("op {other} was checked in main"),
        }
    }
}

/// `--target etcd`: the same closed loop against etcd v3 through `etcd-client`.
#[cfg(feature = "etcd-bench")]
mod etcd {
    use std::time::Duration;

    use etcd_client::{Client, ConnectOptions, Error, GetOptions, KvClient};

    use super::Args;

    /// Bytes per value: about one of our user records (name, argon2 PHC string, flags,
    /// timestamps), so `put` moves as much data as a registration.
    const VALUE_LEN: usize = 300;

    pub struct Worker {
        w: usize,
        run_id: u32,
        op: String,
        /// One per endpoint; clones of the per-endpoint clients' KV clients, so the
        /// workers share one HTTP/2 connection per endpoint, as on the auth side.
        kvs: Vec<KvClient>,
        /// Kept so the per-endpoint channels outlive every worker.
        _clients: Vec<Client>,
        /// The key `get` reads (put at setup).
        key: String,
        value: Vec<u8>,
    }

    /// One etcd client per endpoint (as the auth side's one channel per endpoint) and, for
    /// the reads, one key put at setup.
    pub async fn workers(args: &Args, run_id: u32) -> Vec<Worker> {
        let options = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
        let mut clients = Vec::with_capacity(args.endpoints.len());
        for e in &args.endpoints {
            // Connects lazily: nothing fails here while the member is down.
            let client = Client::connect([e.as_str()], Some(options.clone()))
                .await
                .expect("etcd endpoint");
            clients.push(client);
        }
        let key = format!("lg{run_id}");
        let value = vec![b'v'; VALUE_LEN];
        if args.op != "put" {
            clients[0]
                .kv_client()
                .put(key.clone(), value.clone(), None)
                .await
                .expect("put the key to read (setup)");
        }
        (0..args.concurrency)
            .map(|w| Worker {
                w,
                run_id,
                op: args.op.clone(),
                kvs: clients.iter().map(Client::kv_client).collect(),
                _clients: clients.clone(),
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    impl Worker {
        pub async fn call(&mut self, i: usize) -> Result<(), String> {
            let n = self.kvs.len();
            let kv = &mut self.kvs[(self.w + i) % n];
            let read = match self.op.as_str() {
                "put" => {
                    return kv
                        .put(
                            format!("r{}x{}x{i}", self.run_id, self.w),
                            self.value.clone(),
                            None,
                        )
                        .await
                        .map(drop)
                        .map_err(kind);
                }
                // Linearizable (etcd's default): a read index round through the leader.
                "get" => kv.get(self.key.as_str(), None).await,
                "get-serializable" => {
                    kv.get(
                        self.key.as_str(),
                        Some(GetOptions::new().with_serializable()),
                    )
                    .await
                }
                other => unreachable!("op {other} was checked in main"),
            };
            match read {
                Ok(r) if r.kvs().len() == 1 => Ok(()),
                Ok(_) => Err("key missing".into()),
                Err(e) => Err(kind(e)),
            }
        }
    }

    fn kind(e: Error) -> String {
        match e {
            Error::GRpcStatus(s) => super::status_kind(&s),
            e => e.to_string(),
        }
    }
}
