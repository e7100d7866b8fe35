//! `MemoryStorage` against a bare `parking_lot::RwLock<HashMap>` doing the same work.
//!
//! - get: look a user up by id and clone it out.
//! - create: insert a new user (the bare map checks id uniqueness; MemoryStorage also
//!   checks and indexes the username).
//! - concurrent mixed: 2 threads, 90% gets / 10% compare-and-set updates.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sdk::proto::v1::User;
use auth_sdk::{MemoryStorage, Storage};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use parking_lot::RwLock;

mod common;
use common::ready;

const USERS: usize = 100_000;
const THREADS: usize = 2;

fn user(i: usize) -> User {
    User {
        id: format!("{i:032x}"),
        username: format!("user{i}"),
        username_key: format!("user{i}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
            .into(),
        created_at_ms: 1,
        updated_at_ms: 1,
        ..User::default()
    }
}

type Bare = RwLock<HashMap<String, User>>;

fn filled() -> (Arc<MemoryStorage>, Arc<Bare>) {
    let mem = Arc::new(MemoryStorage::new());
    let mut bare = HashMap::new();
    for i in 0..USERS {
        let u = ready(mem.create_user(user(i))).expect("create");
        bare.insert(u.id.clone(), u);
    }
    (mem, Arc::new(RwLock::new(bare)))
}

fn bare_update(map: &Bare, mut u: User) -> bool {
    let mut m = map.write();
    match m.get_mut(&u.id) {
        Some(stored) if stored.version == u.version => {
            u.version += 1;
            *stored = u;
            true
        }
        _ => false,
    }
}

fn bench_storage(c: &mut Criterion) {
    let (mem, bare) = filled();
    let ids: Vec<String> = (0..USERS).map(|i| format!("{i:032x}")).collect();

    let mut g = c.benchmark_group("storage_get");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("bare_rwlock_hashmap", |b| {
        b.iter(|| {
            i = (i + 7919) % USERS;
            black_box(bare.read().get(&ids[i]).cloned())
        })
    });
    g.bench_function("memory_storage", |b| {
        b.iter(|| {
            i = (i + 7919) % USERS;
            black_box(ready(mem.get_user(&ids[i])).expect("get"))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("storage_create");
    g.throughput(Throughput::Elements(1));
    let next = AtomicU64::new(USERS as u64);
    g.bench_function("bare_rwlock_hashmap", |b| {
        b.iter_batched(
            || user(next.fetch_add(1, Ordering::Relaxed) as usize),
            |u| {
                let mut m = bare.write();
                if !m.contains_key(&u.id) {
                    m.insert(u.id.clone(), u);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("memory_storage", |b| {
        b.iter_batched(
            || user(next.fetch_add(1, Ordering::Relaxed) as usize),
            |u| ready(mem.create_user(u)).expect("create"),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("storage_concurrent_mixed");
    g.throughput(Throughput::Elements(THREADS as u64));
    g.bench_function("bare_rwlock_hashmap", |b| {
        b.iter_custom(|iters| {
            run_threads(iters, |i| {
                let id = &ids[(i * 7919) % USERS];
                if i.is_multiple_of(10) {
                    // Read, release the lock, then compare-and-set, as MemoryStorage does.
                    let read = bare.read().get(id).cloned();
                    if let Some(u) = read {
                        black_box(bare_update(&bare, u));
                    }
                } else {
                    black_box(bare.read().get(id).cloned());
                }
            })
        })
    });
    g.bench_function("memory_storage", |b| {
        b.iter_custom(|iters| {
            run_threads(iters, |i| {
                let id = &ids[(i * 7919) % USERS];
                ready(async {
                    if i.is_multiple_of(10) {
                        if let Some(u) = mem.get_user(id).await.expect("get") {
                            let _ = black_box(mem.update_user(u).await);
                        }
                    } else {
                        black_box(mem.get_user(id).await.expect("get"));
                    }
                })
            })
        })
    });
    g.finish();
}

/// Runs `op` `iters` times on each of `THREADS` threads; returns the wall time.
fn run_threads(iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let op = &op;
            s.spawn(move || {
                for i in 0..iters as usize {
                    op(i * THREADS + t);
                }
            });
        }
    });
    start.elapsed()
}

criterion_group!(benches, bench_storage);
criterion_main!(benches);
