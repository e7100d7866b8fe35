//! Measures the write gap when the leader goes away: a local Raft cluster of release
//! `auth-backend` processes under steady register load; the leader gets `--signal`
//! (`kill`: SIGKILL, a crash; `term`: SIGTERM, a graceful stop that hands leadership
//! over) `--kills` times (restarted and caught up in between); prints each gap and the
//! median. `--signal both` alternates the two in one run, for a fair comparison.
//!
//! `cargo build --release -p auth-backend && cargo run --release --example failover -- --nodes 3 --kills 7 --signal both`
//!
//! The binary is `$AUTH_BACKEND_BIN`, else `target/release/auth-backend`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_sdk::proto::v1::RegisterRequest;
use auth_sdk::proto::v1::auth_service_client::AuthServiceClient;
use auth_testing::ProcCluster;
use clap::Parser;
use parking_lot::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Leader kills to measure.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How the leader goes: `kill` (SIGKILL), `term` (SIGTERM), `both` (alternating,
    /// `--kills` of each).
    #[arg(long, default_value = "kill", value_parser = ["kill", "term", "both"])]
    signal: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let bin =
        std::env::var("AUTH_BACKEND_BIN").unwrap_or_else(|_| "target/release/auth-backend".into());
    let mut cluster = ProcCluster::start(bin, args.nodes, &[]);
    cluster.leader(Duration::from_secs(10)).await;
    let endpoints = cluster.endpoints();
    let successes = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..args.clients {
        let (successes, stop) = (Arc::clone(&successes), Arc::clone(&stop));
        let clients: Vec<_> = endpoints
            .iter()
            .map(|e| AuthServiceClient::new(cluster.client_channel(e, Duration::from_millis(200))))
            .collect();
        workers.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = clients[(w + i) % clients.len()].clone();
                let r = tokio::time::timeout(
                    Duration::from_secs(2),
                    c.register(RegisterRequest {
                        username: format!("f{w}x{i}"),
                        password: "password-1".into(),
                        client: None,
                    }),
                )
                .await;
                if matches!(r, Ok(Ok(_))) {
                    successes.lock().push(Instant::now());
                }
                i += 1;
            }
        }));
    }
    let signals: Vec<&str> = match args.signal.as_str() {
        "both" => ["kill", "term"].repeat(args.kills),
        one => vec![one; args.kills],
    };
    let mut gaps: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    for (k, signal) in signals.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let killed_at = Instant::now();
        if signal == "kill" {
            cluster.kill(leader);
        } else {
            // SIGTERM and wait for the clean exit on this thread; the writers run on.
            tokio::task::block_in_place(|| cluster.stop(leader));
        }
        // Wait for writes to resume, give them a moment, then take the longest gap
        // between consecutive successful writes around the kill. (Writes committed just
        // before the kill can still answer just after it, so "first success after the
        // kill" would hide the gap.)
        let deadline = killed_at + Duration::from_secs(30);
        loop {
            let resumed = successes
                .lock()
                .iter()
                .any(|t| *t > killed_at + Duration::from_millis(50));
            if resumed {
                break;
            }
            assert!(Instant::now() < deadline, "writes did not resume");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut window: Vec<Instant> = successes
            .lock()
            .iter()
            .filter(|t| **t + Duration::from_millis(500) > killed_at)
            .copied()
            .collect();
        window.sort();
        let gap = window
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        println!(
            "round {} ({signal}): leader {leader}, gap between successful writes {:.0} ms",
            k + 1,
            gap.as_secs_f64() * 1000.0
        );
        gaps.entry(signal).or_default().push(gap);
        cluster.restart(leader);
        cluster.wait_caught_up(Duration::from_secs(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    for (signal, mut gaps) in gaps {
        gaps.sort();
        let ms: Vec<String> = gaps
            .iter()
            .map(|g| format!("{:.0}", g.as_secs_f64() * 1000.0))
            .collect();
        println!(
            "nodes={} signal={signal} rounds={} gaps_ms=[{}] median={:.0} ms max={:.0} ms",
            args.nodes,
            gaps.len(),
            ms.join(", "),
            gaps[gaps.len() / 2].as_secs_f64() * 1000.0,
            gaps.last().map_or(0.0, |g| g.as_secs_f64() * 1000.0)
        );
    }
}
