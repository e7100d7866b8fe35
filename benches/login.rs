//! Login throughput against the bare `argon2` crate at the same parameters, and
//! `verify` latency while logins saturate the CPU.
//!
//! - `login/bare_argon2/N`: `Argon2::hash_password` (argon2id, m=19456, t=2, p=1) on N
//!   threads, allocating its memory per hash as the crate does by default.
//! - `login/auth_login/N`: N concurrent `Auth::login` calls (default `Config`: the same
//!   parameters) on a 2-worker tokio runtime.
//! - After criterion: `verify` p50/p99 on an idle runtime (baseline) and on a runtime
//!   where logins run flat out, printed as a table.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use auth_sdk::api::{LoginRequest, RegisterRequest};
use auth_sdk::{Auth, AuthApi, Config, MemoryStorage};
use criterion::{Criterion, Throughput, criterion_group};

const PASSWORD: &str = "correct horse battery staple";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn setup(rt: &tokio::runtime::Runtime) -> Auth<MemoryStorage> {
    let auth = Auth::new(Config::default(), MemoryStorage::new()).expect("auth");
    rt.block_on(auth.register(RegisterRequest {
        username: "bench".into(),
        password: PASSWORD.into(),
        client: None,
    }))
    .expect("register");
    auth
}

fn login_req() -> LoginRequest {
    LoginRequest {
        username: "bench".into(),
        password: PASSWORD.into(),
        client: None,
    }
}

fn bench_login(c: &mut Criterion) {
    let rt = runtime();
    let auth = setup(&rt);
    let argon = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19_456, 2, 1, Some(32)).expect("params"),
    );
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");

    let mut g = c.benchmark_group("login");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for threads in [1u64, 2] {
        g.throughput(Throughput::Elements(threads));
        g.bench_function(format!("bare_argon2/{threads}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..iters {
                                black_box(
                                    argon
                                        .hash_password(PASSWORD.as_bytes(), &salt)
                                        .expect("hash"),
                                );
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        g.bench_function(format!("auth_login/{threads}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..threads)
                        .map(|_| {
                            let auth = auth.clone();
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    auth.login(login_req()).await.expect("login");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// Verify latencies (ns) for `window` on `rt`, with `logins` concurrent login loops.
fn verify_latencies(logins: usize, window: Duration) -> (Vec<u64>, u64) {
    let rt = runtime();
    let auth = setup(&rt);
    let token = rt
        .block_on(auth.login(login_req()))
        .expect("login")
        .tokens
        .expect("tokens")
        .access_token;
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..logins)
        .map(|_| {
            let (auth, stop) = (auth.clone(), Arc::clone(&stop));
            rt.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    auth.login(login_req()).await.expect("login");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let samples = rt.block_on({
        let auth = auth.clone();
        async move {
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(1 << 20);
                let end = Instant::now() + window;
                while Instant::now() < end && out.len() < (1 << 22) {
                    let t = Instant::now();
                    auth.verify_token(&token).await.expect("verify");
                    out.push(t.elapsed().as_nanos() as u64);
                    tokio::task::yield_now().await;
                }
                out
            })
            .await
            .expect("verify task")
        }
    });
    stop.store(true, Ordering::Relaxed);
    let logins_done = rt.block_on(async {
        let mut n = 0;
        for l in loaders {
            n += l.await.expect("loader");
        }
        n
    });
    (samples, logins_done)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn verify_under_load(window: Duration) {
    println!(
        "\nverify latency (µs), {:?} window each, 2-worker runtime",
        window
    );
    println!("| load | verifies | logins/s | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|---|");
    for logins in [0usize, 2, 4] {
        let (mut s, done) = verify_latencies(logins, window);
        s.sort_unstable();
        println!(
            "| {logins} concurrent logins | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.len(),
            done as f64 / window.as_secs_f64(),
            pct(&s, 0.5),
            pct(&s, 0.99),
            pct(&s, 0.999),
            pct(&s, 1.0)
        );
    }
}

criterion_group!(benches, bench_login);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench -- --test` (smoke run) gets a short window.
    let quick = std::env::args().any(|a| a == "--test");
    verify_under_load(if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    });
}
