//! Abuse figures, measured from the outside (HTTP against the real web site in front of
//! the gRPC backend, as deployed; production argon2 parameters), for `BENCHMARKS.md`
//! "Abuse":
//!
//! 1. password checks caused by 200 concurrent wrong guesses for one account (a check
//!    answers 401 `invalid_credentials`; `locked` and `rate_limited` answer 429 and
//!    `overloaded` 503 without hashing), with the default configuration (one address:
//!    the per-(account, source) bucket) and with throttling off (the account-wide
//!    lock alone);
//! 2. `GET /api/v1/me` latency of a signed-in user (127.0.0.1) alone, and during a
//!    flood of 2 500 logins for unknown names from another address (127.0.0.2), 300 at
//!    a time, with the default
//!    configuration and, as the baseline of what the defences buy, with throttling off,
//!    connections per address unbounded and an effectively unbounded hash queue (the
//!    behaviour before issue 8);
//! 3. how the flood was answered (checked, throttled, shed), how long it lasted and the
//!    CPU it cost on either side.
//!
//! The flood is a separate process (this example with `--flood URL`), at nice 19 (its
//! own CPU hardly competes: as if it ran on another machine) or, in one configuration,
//! at normal priority. Configurations alternate over `ABUSE_ROUNDS` rounds (default
//! 3) and the samples are also pooled.
//!
//! `cargo build --release --example abuse && target/release/examples/abuse` (numbers
//! from a debug build mean little).

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_sdk::grpc::server::FrontendTrust;
use auth_sdk::grpc::{RemoteAuth, RemoteOptions, ServerOptions};
use auth_sdk::web::{WebConfig, router, serve};
use auth_sdk::{Auth, Config, MemoryStorage};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
/// Logins in the flood, and how many are in flight at once.
const FLOOD_LOGINS: usize = 2_500;
const FLOOD_CONCURRENCY: usize = 300;

/// The deployed shape, in one process: auth-web (over `RemoteAuth`) → gRPC →
/// auth-backend's `AuthService` → `Auth` on memory storage. The backend trusts the web
/// site (127.0.0.1) to state each user's address. The servers run on a runtime of their
/// own (as a separate process would), so the load generator's tasks do not share their
/// worker threads.
struct Site {
    url: String,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Site {
    async fn start(config: Config, web: WebConfig) -> Result<Site, Box<dyn std::error::Error>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (backend_stop, backend_rx) = tokio::sync::oneshot::channel::<()>();
        let (web_stop, web_rx) = tokio::sync::oneshot::channel::<()>();
        let url = runtime
            .spawn(async move {
                let auth = Auth::new(config, MemoryStorage::new())?;
                auth.start()?;
                let backend_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let backend_url = format!("http://{}", backend_listener.local_addr()?);
                let options = ServerOptions {
                    frontends: FrontendTrust {
                        addrs: vec!["127.0.0.1".parse()?],
                        names: Vec::new(),
                    },
                    ..ServerOptions::default()
                };
                tokio::spawn(async move {
                    let _ =
                        auth_sdk::grpc::serve(backend_listener, Arc::new(auth), options, async {
                            let _ = backend_rx.await;
                        })
                        .await;
                });
                let remote = RemoteAuth::new([backend_url], RemoteOptions::default())?;
                let app = router(Arc::new(remote), web.clone());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let url = format!("http://{}", listener.local_addr()?);
                tokio::spawn(async move {
                    let _ = serve(listener, app, &web, async {
                        let _ = web_rx.await;
                    })
                    .await;
                });
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(url)
            })
            .await?
            .map_err(|e| e.to_string())?;
        Ok(Site {
            url,
            stops: vec![web_stop, backend_stop],
            runtime,
        })
    }

    fn stop(self) {
        for tx in self.stops {
            let _ = tx.send(());
        }
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// The signed-in user's address; the flood comes from [`ATTACKER`].
const USER: [u8; 4] = [127, 0, 0, 1];
const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn client() -> reqwest::Client {
    client_from(USER)
}

/// A client whose connections leave from the loopback address `from`.
fn client_from(from: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// POSTs JSON; returns the status and the error code, if any.
async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, String) {
    match c.post(url).json(body).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let code = v["error"]["code"].as_str().unwrap_or("").to_owned();
            (status, code)
        }
        Err(_) => (0, "transport".into()),
    }
}

async fn signed_in(c: &reqwest::Client, site: &Site, name: &str) -> String {
    let creds = json!({"username": name, "password": PASSWORD});
    post(c, &format!("{}/api/v1/register", site.url), &creds).await;
    let r = c
        .post(format!("{}/api/v1/login", site.url))
        .json(&creds)
        .send()
        .await
        .expect("login");
    let v: Value = r.json().await.expect("login body");
    v["access_token"].as_str().expect("access token").to_owned()
}

/// Part 1: checks caused by 200 concurrent wrong guesses.
async fn guesses(config: Config, web: WebConfig) -> Vec<(String, usize)> {
    let site = Site::start(config, web).await.expect("site");
    let c = client();
    signed_in(&c, &site, "victim").await;
    let url = format!("{}/api/v1/login", site.url);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                let body = json!({"username": "victim", "password": format!("guess {i}")});
                post(&c, &url, &body).await
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        if let Ok((status, code)) = t.await {
            *counts.entry(format!("{status} {code}")).or_default() += 1;
        }
    }
    tokio::task::block_in_place(|| site.stop());
    counts.into_iter().collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The signed-in user, as another machine would be: a thread and a runtime of its own,
/// sending `GET /api/v1/me` one after another until [`STOP`]; returns the latencies.
fn spawn_watcher(site_url: String, token: String) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        rt.block_on(async move {
            let c = client();
            let url = format!("{site_url}/api/v1/me");
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            while !STOP.load(std::sync::atomic::Ordering::SeqCst)
                && out.len() < 1_000_000
                && Instant::now() < deadline
            {
                let t0 = Instant::now();
                if let Ok(r) = c.get(&url).bearer_auth(&token).send().await
                    && r.status().is_success()
                {
                    out.push(t0.elapsed());
                }
            }
            out
        })
    })
}

struct Flood {
    alone: Vec<Duration>,
    during: Vec<Duration>,
    answers: Vec<(String, usize)>,
    took: Duration,
    /// CPU time used meanwhile by this process (the servers, and the watcher) and by
    /// the flooding process.
    servers_cpu: Duration,
    attacker_cpu: Duration,
}

/// CPU time (user + system) of this process, or of its waited-for children.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// How the flooding process is scheduled.
#[derive(Clone, Copy)]
enum Attacker {
    /// At nice 19: its own CPU hardly competes with the servers, as if it ran on
    /// another machine (what the servers do for its requests still counts in full).
    Elsewhere,
    /// At normal priority, sharing the two cores with the servers.
    SameMachine,
}

/// Parts 2 and 3: `/me` alone, then during 300 concurrent logins for unknown names
/// sent by a child process (this example re-run with `--flood URL`).
async fn flood(config: Config, web: WebConfig, attacker: Attacker) -> Flood {
    let site = Site::start(config, web).await.expect("site");
    let c = client();
    let token = signed_in(&c, &site, "reader").await;
    let alone = spawn_watcher(site.url.clone(), token.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut alone = tokio::task::block_in_place(|| alone.join()).unwrap_or_default();
    STOP.store(false, std::sync::atomic::Ordering::SeqCst);
    alone.sort();
    let url = format!("{}/api/v1/login", site.url);
    let exe = std::env::current_exe().expect("this example's path");
    let mut cmd = match attacker {
        Attacker::Elsewhere => {
            let mut c = tokio::process::Command::new("nice");
            c.args(["-n", "19"]).arg(exe);
            c
        }
        Attacker::SameMachine => tokio::process::Command::new(exe),
    };
    cmd.args(["--flood", &url])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let (servers_before, attacker_before) =
        (cpu_time(libc::RUSAGE_SELF), cpu_time(libc::RUSAGE_CHILDREN));
    let child = cmd.spawn().expect("start the flood");
    let watcher = spawn_watcher(site.url.clone(), token.clone());
    let out = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("the flood ends within 10 minutes")
        .expect("the flood's output");
    let took = started.elapsed();
    let servers_cpu = cpu_time(libc::RUSAGE_SELF).saturating_sub(servers_before);
    let attacker_cpu = cpu_time(libc::RUSAGE_CHILDREN).saturating_sub(attacker_before);
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut during = tokio::task::block_in_place(|| watcher.join()).unwrap_or_default();
    STOP.store(false, std::sync::atomic::Ordering::SeqCst);
    during.sort();
    tokio::task::block_in_place(|| site.stop());
    let answers: std::collections::BTreeMap<String, usize> =
        serde_json::from_slice(&out.stdout).unwrap_or_default();
    Flood {
        alone,
        during,
        answers: answers.into_iter().collect(),
        took,
        servers_cpu,
        attacker_cpu,
    }
}

/// The flooding process: 2 500 logins for unknown names to `url`, 300 at a time, from
/// [`ATTACKER`]'s address; prints how they were answered (JSON) on stdout.
async fn run_flood(url: String) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD_CONCURRENCY)
        .map(|_| {
            let (c, url, next) = (client_from(ATTACKER), url.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= FLOOD_LOGINS {
                        break answers;
                    }
                    let body =
                        json!({"username": format!("nobody{i}"), "password": "wrong password"});
                    answers.push(post(&c, &url, &body).await);
                }
            })
        })
        .collect();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for t in flood {
        for (status, code) in t.await.unwrap_or_default() {
            *answers.entry(format!("{status} {code}")).or_default() += 1;
        }
    }
    println!("{}", serde_json::to_string(&answers).unwrap_or_default());
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn unthrottled_web() -> WebConfig {
    WebConfig {
        throttle: None,
        max_connections_per_address: 0,
        ..WebConfig::default()
    }
}

fn undefended() -> Config {
    let mut config = Config::default();
    config.throttle = auth_sdk::ThrottlePolicy::disabled();
    config.hash_queue = auth_sdk::HashQueue {
        max_waiting: 1_000_000,
        max_wait: Duration::from_secs(3600),
        priority: auth_sdk::HashPriority::Normal,
    };
    config
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, url] = args.as_slice()
        && flag == "--flood"
    {
        return run_flood(url.clone()).await;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("## 200 concurrent wrong guesses for one account (one address, {cores} cores)\n");
    println!("| configuration | answers | password checks |");
    println!("|---|---|---|");
    let mut no_throttle = Config::default();
    no_throttle.throttle = auth_sdk::ThrottlePolicy::disabled();
    for (name, config, web) in [
        ("default", Config::default(), WebConfig::default()),
        (
            "throttling off (account lock alone, threshold 20)",
            no_throttle,
            unthrottled_web(),
        ),
    ] {
        let counts = guesses(config, web).await;
        let checked: usize = counts
            .iter()
            .filter(|(k, _)| k.ends_with("invalid_credentials"))
            .map(|(_, n)| n)
            .sum();
        let list: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("| {name} | {} | {checked} |", list.join(", "));
    }

    println!(
        "\n## GET /api/v1/me during a flood of {FLOOD_LOGINS} logins from one address (another process, 127.0.0.2), {FLOOD_CONCURRENCY} at a time\n"
    );
    println!(
        "| configuration | round | /me alone p50 / p99 ms | during the flood p50 / p99 / p99.9 ms | p99 ratio | flood answers | flood took | CPU: servers + watcher / attacker |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let configurations = [
        (
            "default",
            Config::default(),
            WebConfig::default(),
            Attacker::Elsewhere,
        ),
        (
            "undefended (no throttle, unbounded hash queue, hashing at normal priority)",
            undefended(),
            unthrottled_web(),
            Attacker::Elsewhere,
        ),
        (
            "default, the attacker's CPU shared (flood at normal priority)",
            Config::default(),
            WebConfig::default(),
            Attacker::SameMachine,
        ),
        (
            "default but connections per address unbounded",
            Config::default(),
            WebConfig {
                max_connections_per_address: 0,
                ..WebConfig::default()
            },
            Attacker::Elsewhere,
        ),
    ];
    let rounds: usize = std::env::var("ABUSE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    // Rounds alternate the configurations; every sample is also pooled per configuration.
    let mut pooled: Vec<(Vec<Duration>, Vec<Duration>)> =
        vec![(Vec::new(), Vec::new()); configurations.len()];
    for round in 1..=rounds {
        for (i, (name, config, web, attacker)) in configurations.iter().enumerate() {
            let f = flood(config.clone(), web.clone(), *attacker).await;
            let list: Vec<String> = f.answers.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!(
                "| {name} | {round} | {} | {} | {:.2} s | {:.2} s / {:.2} s |",
                latencies(&f.alone, &f.during),
                list.join(", "),
                f.took.as_secs_f64(),
                f.servers_cpu.as_secs_f64(),
                f.attacker_cpu.as_secs_f64()
            );
            pooled[i].0.extend(f.alone);
            pooled[i].1.extend(f.during);
        }
    }
    println!("\nAll rounds pooled:\n");
    println!(
        "| configuration | /me alone p50 / p99 ms | during the flood p50 / p99 / p99.9 ms | p99 ratio |"
    );
    println!("|---|---|---|---|");
    for ((name, ..), (mut alone, mut during)) in configurations.iter().zip(pooled) {
        alone.sort();
        during.sort();
        println!("| {name} | {} |", latencies(&alone, &during));
    }
}

/// "alone p50 / p99 | during p50 / p99 / p99.9 (n) | p99 ratio" of sorted samples.
fn latencies(alone: &[Duration], during: &[Duration]) -> String {
    let (a50, a99) = (percentile(alone, 0.5), percentile(alone, 0.99));
    let (d50, d99, d999) = (
        percentile(during, 0.5),
        percentile(during, 0.99),
        percentile(during, 0.999),
    );
    let ratio = d99.as_secs_f64() / a99.as_secs_f64().max(1e-9);
    format!(
        "{} / {} | {} / {} / {} (n={}) | {ratio:.1}×",
        ms(a50),
        ms(a99),
        ms(d50),
        ms(d99),
        ms(d999),
        during.len()
    )
}
