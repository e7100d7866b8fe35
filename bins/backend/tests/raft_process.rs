//! Process-level fault tests of the Raft backend: real `auth-backend serve --storage
//! raft` processes on loopback, killed with SIGKILL, paused with SIGSTOP, restarted.
//! Every wait has a deadline; every load is bounded in time.

#[path = "cluster/history.rs"]
mod history;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_backend::{RemoteAuth, RemoteOptions};
use auth_core::AuthApi;
use auth_core::api::*;
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_testing::ProcCluster;
use history::{Event, Op, Outcome};
use parking_lot::Mutex;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");

fn remote(c: &ProcCluster) -> RemoteAuth {
    RemoteAuth::new(
        c.endpoints(),
        RemoteOptions {
            request_timeout: Duration::from_secs(5),
            probe_interval: Duration::from_millis(100),
            ..c.remote_options()
        },
    )
    .unwrap()
}

/// Retries a call until it succeeds or `deadline` passes (a write issued during an
/// election may fail with `unavailable`; clients retry).
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, auth_core::AuthError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline && e.code() == "unavailable" => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{what}: {e} ({})", e.code()),
        }
    }
}

async fn full_flow(api: &RemoteAuth, name: &str) {
    let t = Duration::from_secs(15);
    // A register that failed `unavailable` may still have been applied (its outcome
    // was unknown): then the retry answers `user_exists`, which means it is done.
    let unknown_outcome = std::sync::atomic::AtomicBool::new(false);
    eventually("register", t, || async {
        match api
            .register(RegisterRequest {
                username: name.into(),
                password: "password-1".into(),
                client: None,
            })
            .await
        {
            Err(e) if e.code() == "unavailable" => {
                unknown_outcome.store(true, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
            Err(e)
                if e.code() == "user_exists"
                    && unknown_outcome.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    })
    .await;
    let tokens = eventually("login", t, || {
        api.login(LoginRequest {
            username: name.into(),
            password: "password-1".into(),
            client: None,
        })
    })
    .await
    .tokens
    .unwrap();
    let refreshed = eventually("refresh", t, || {
        api.refresh(RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
            client: None,
        })
    })
    .await
    .tokens
    .unwrap();
    let me = eventually("verify", t, || {
        api.verify(VerifyRequest {
            access_token: refreshed.access_token.clone(),
        })
    })
    .await;
    assert_eq!(me.username, name);
    eventually("logout", t, || {
        api.logout(LogoutRequest {
            refresh_token: refreshed.refresh_token.clone(),
            ..Default::default()
        })
    })
    .await;
    let e = api
        .verify(VerifyRequest {
            access_token: refreshed.access_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "session_ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_two_of_five_may_die_including_the_leader() {
    let mut c = ProcCluster::start(BIN, 5, &[]);
    let api = remote(&c);
    full_flow(&api, "before").await;
    let leader = c.leader(Duration::from_secs(10)).await;
    let other = (1..=5).find(|id| *id != leader).unwrap();
    c.kill(leader);
    c.kill(other);
    for i in 0..3 {
        full_flow(&api, &format!("after{i}")).await;
    }
    let new_leader = c.leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    // The killed nodes come back and catch up with everything.
    c.restart(leader);
    c.restart(other);
    c.wait_caught_up(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_resume_after_the_leader_is_killed_under_load() {
    let mut c = ProcCluster::start(BIN, 3, &[]);
    let api = Arc::new(remote(&c));
    let successes = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop_at = Instant::now() + Duration::from_secs(6);
    let mut workers = Vec::new();
    for w in 0..8 {
        let (api, successes) = (Arc::clone(&api), Arc::clone(&successes));
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < stop_at {
                let r = api
                    .register(RegisterRequest {
                        username: format!("load{w}x{i}"),
                        password: "password-1".into(),
                        client: None,
                    })
                    .await;
                if r.is_ok() {
                    successes.lock().push(Instant::now());
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = c.leader(Duration::from_secs(5)).await;
    let killed_at = Instant::now();
    c.kill(leader);
    for w in workers {
        w.await.unwrap();
    }
    let mut s = successes.lock().clone();
    s.sort();
    let after_kill: Vec<&Instant> = s.iter().filter(|t| **t > killed_at).collect();
    assert!(
        !after_kill.is_empty(),
        "no write succeeded after the leader died"
    );
    let gap = s.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    println!(
        "leader kill: {} writes, {} after the kill, longest gap between successful writes {:?}",
        s.len(),
        after_kill.len(),
        gap
    );
    // A generous bound: the figure itself goes to BENCHMARKS.md.
    assert!(gap < Duration::from_secs(5), "writes stalled for {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_nodes_catch_up_by_snapshot_and_a_full_restart_loses_nothing() {
    let mut c = ProcCluster::start(BIN, 5, &["--snapshot-every", "40", "--logs-to-keep", "0"]);
    let api = remote(&c);
    let leader = c.leader(Duration::from_secs(10)).await;
    let down: Vec<u64> = (1..=5).filter(|id| *id != leader).take(2).collect();
    let before = c.statuses().await;
    for id in &down {
        c.kill(*id);
    }
    let mut sessions = Vec::new();
    for i in 0..120 {
        let name = format!("user{i}");
        eventually("register", Duration::from_secs(10), || {
            api.register(RegisterRequest {
                username: name.clone(),
                password: "password-1".into(),
                client: None,
            })
        })
        .await;
        if i % 10 == 0 {
            let t = eventually("login", Duration::from_secs(10), || {
                api.login(LoginRequest {
                    username: name.clone(),
                    password: "password-1".into(),
                    client: None,
                })
            })
            .await;
            sessions.push(t.tokens.unwrap());
        }
    }
    let leader_status = c
        .statuses()
        .await
        .into_iter()
        .find(|s| s.role == "leader")
        .unwrap();
    let behind = before
        .iter()
        .filter(|s| down.contains(&s.id))
        .map(|s| s.last_log_index)
        .max()
        .unwrap();
    assert!(
        leader_status.purged_index > behind,
        "the log the killed nodes need should be compacted away: {leader_status:?}"
    );
    for id in &down {
        c.restart(*id);
    }
    c.wait_caught_up(Duration::from_secs(30)).await;
    let st = c.statuses().await;
    for id in &down {
        let s = st.iter().find(|s| s.id == *id).unwrap();
        assert!(
            s.snapshot_index > behind,
            "node {id} caught up without a snapshot: {s:?}"
        );
    }
    // Stop all five, start them again: every acknowledged user and session is there.
    for id in 1..=5 {
        c.stop(id);
    }
    for id in 1..=5 {
        c.restart(id);
    }
    c.leader(Duration::from_secs(15)).await;
    let api = remote(&c);
    for i in (0..120).step_by(7) {
        let e = eventually("register again", Duration::from_secs(10), || async {
            match api
                .register(RegisterRequest {
                    username: format!("user{i}"),
                    password: "password-1".into(),
                    client: None,
                })
                .await
            {
                Err(e) if e.code() == "user_exists" => Ok(()),
                Err(e) => Err(e),
                Ok(_) => panic!("user{i} was lost"),
            }
        })
        .await;
        let _: () = e;
    }
    for t in &sessions {
        let me = eventually("verify", Duration::from_secs(10), || {
            api.verify(VerifyRequest {
                access_token: t.access_token.clone(),
            })
        })
        .await;
        assert!(me.username.starts_with("user"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_cannot_acknowledge_writes() {
    let mut c = ProcCluster::start(BIN, 5, &[]);
    let leader = c.leader(Duration::from_secs(10)).await;
    // Pause the leader and two more: the two left are a minority.
    let mut paused = vec![leader];
    paused.extend((1..=5).filter(|id| *id != leader).take(2));
    for id in &paused {
        c.pause(*id);
    }
    let minority: Vec<String> = (1..=5u64)
        .filter(|id| !paused.contains(id))
        .map(|id| c.nodes[(id - 1) as usize].addr.clone())
        .collect();
    let api = RemoteAuth::new(
        minority,
        RemoteOptions {
            request_timeout: Duration::from_secs(8),
            ..c.remote_options()
        },
    )
    .unwrap();
    let started = Instant::now();
    let e = api
        .register(RegisterRequest {
            username: "nobody".into(),
            password: "password-1".into(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    for id in &paused {
        c.resume(*id);
    }
    let api = remote(&c);
    full_flow(&api, "healed").await;
    // The write the minority refused may or may not have been applied later (its
    // outcome was unknown to the client), but nothing the minority acknowledged exists.
}

/// The attack on leader leases: freeze the leader (SIGSTOP) right after it served a
/// read under its lease, let the others elect and acknowledge a registration, then
/// wake it and read at once through it. Woken, it still believes it leads (it has not
/// yet heard of the new term); its lease has run out, so it must ask a quorum, learn
/// that it was deposed, and answer from the new leader's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_woken_from_a_pause_serves_no_stale_read() {
    let mut c = ProcCluster::start(BIN, 3, &[]);
    let old = c.leader(Duration::from_secs(10)).await;
    let old_addr = c.nodes[(old - 1) as usize].addr.clone();
    let mut through_old = client(&c, &old_addr);
    let login = |name: &str| LoginRequest {
        username: name.into(),
        password: "password-1".into(),
        client: None,
    };
    let api = remote(&c);
    eventually("register before", Duration::from_secs(15), || {
        api.register(RegisterRequest {
            username: "before".into(),
            password: "password-1".into(),
            client: None,
        })
    })
    .await;
    // A read through the old leader: it holds a lease now.
    through_old.login(login("before")).await.unwrap();
    c.pause(old);
    let others: Vec<String> = (1..=3u64)
        .filter(|id| *id != old)
        .map(|id| c.nodes[(id - 1) as usize].addr.clone())
        .collect();
    let majority = RemoteAuth::new(
        others,
        RemoteOptions {
            request_timeout: Duration::from_secs(5),
            ..c.remote_options()
        },
    )
    .unwrap();
    let paused_at = Instant::now();
    eventually("register after", Duration::from_secs(20), || async {
        match majority
            .register(RegisterRequest {
                username: "after".into(),
                password: "password-1".into(),
                client: None,
            })
            .await
        {
            // An earlier attempt that timed out may have been applied.
            Err(e) if e.code() == "user_exists" => Ok(()),
            r => r.map(|_| ()),
        }
    })
    .await;
    assert!(
        paused_at.elapsed() > Duration::from_millis(100),
        "within one lease"
    );
    c.resume(old);
    let r = through_old.login(login("after")).await;
    assert!(
        r.is_ok(),
        "the woken leader did not answer from the new leader's state: {:?}",
        r.err().map(|s| s.message().to_owned())
    );
    // And the deposed leader knows it now.
    let leader = c.leader(Duration::from_secs(10)).await;
    assert_ne!(leader, old);
}

// ---------------------------------------------------------------------------------
// History test: clients and a nemesis at the same time; then every invariant.
// ---------------------------------------------------------------------------------

/// A client of one node (its connection reconnects by itself after the node restarts).
fn client(c: &ProcCluster, addr: &str) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(c.client_channel(addr, Duration::from_millis(300)))
}

fn outcome<T>(
    r: &Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
) -> (Outcome, &'static str) {
    match r {
        Ok(Ok(_)) => (Outcome::Ok, "ok"),
        Ok(Err(s)) => match s
            .metadata()
            .get(auth_backend::status::CODE_KEY)
            .and_then(|v| v.to_str().ok())
        {
            Some("user_exists") => (Outcome::Rejected, "user_exists"),
            Some("invalid_credentials") => (Outcome::Rejected, "invalid_credentials"),
            Some("session_ended") => (Outcome::Rejected, "session_ended"),
            Some("refresh_token_reused") => (Outcome::Rejected, "refresh_token_reused"),
            _ => (Outcome::Unknown, "unknown"),
        },
        Err(_) => (Outcome::Unknown, "timeout"),
    }
}

struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    /// presented refresh token → successors returned by successful refreshes.
    refreshes: Mutex<HashMap<String, Vec<String>>>,
    registered_ok: Mutex<BTreeMap<String, u32>>,
}

impl Recorder {
    fn us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
    fn acknowledged(&self) -> usize {
        self.events
            .lock()
            .iter()
            .filter(|e| e.outcome == Outcome::Ok)
            .count()
    }
    fn record(&self, key: &str, op: Op, outcome: Outcome, invoke_us: u64) {
        let complete_us = if outcome == Outcome::Unknown {
            u64::MAX
        } else {
            self.us()
        };
        self.events.lock().push(Event {
            key: key.into(),
            op,
            outcome,
            invoke_us,
            complete_us,
        });
    }
}

const KEYS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_node_failures_are_linearizable_and_lose_nothing() {
    // The default read mode: leader leases.
    history_under_faults("lease").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_node_failures_are_linearizable_with_read_index_reads() {
    history_under_faults("read-index").await;
}

/// Clients and a nemesis (kills, and pauses of the leader: what a lease must survive)
/// against 5 nodes reading in `read_mode`; then every invariant, and the history's
/// linearizability.
async fn history_under_faults(read_mode: &str) {
    let mut c = ProcCluster::start(
        BIN,
        5,
        &[
            "--lockout-max-failures",
            "0",
            "--read-consistency",
            read_mode,
        ],
    );
    c.leader(Duration::from_secs(10)).await;
    let addrs = c.endpoints();
    let rec = Arc::new(Recorder {
        start: Instant::now(),
        events: Mutex::new(Vec::new()),
        refreshes: Mutex::new(HashMap::new()),
        registered_ok: Mutex::new(BTreeMap::new()),
    });
    // What clients believe each user's password is (they may be wrong; that is fine).
    let known: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
    // The nemesis works for 11 s. Clients go on past that (nodes healed) until enough
    // was acknowledged to mean something, at most 40 s: a loaded machine is slow.
    let stop_at = Instant::now() + Duration::from_secs(11);
    let hard_stop = Instant::now() + Duration::from_secs(40);
    const ENOUGH: usize = 40;
    let op_timeout = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let (rec, known, addrs) = (Arc::clone(&rec), Arc::clone(&known), addrs.clone());
        let clients: Vec<AuthServiceClient<Channel>> =
            addrs.iter().map(|a| client(&c, a)).collect();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            let mut my_refresh: Option<String> = None;
            while Instant::now() < stop_at
                || (Instant::now() < hard_stop && rec.acknowledged() < ENOUGH)
            {
                n += 1;
                let key = format!("user{}", (n * 7 + w * 3) % KEYS);
                let mut c = clients[(n + w) % clients.len()].clone();
                let choice = (n * 31 + w * 17) % 10;
                if choice < 2 {
                    let pw = format!("pw-{key}-init");
                    let t0 = rec.us();
                    let r = tokio::time::timeout(
                        op_timeout,
                        c.register(RegisterRequest {
                            username: key.clone(),
                            password: pw.clone(),
                            client: None,
                        }),
                    )
                    .await;
                    let (o, _) = outcome(&r);
                    rec.record(&key, Op::Register(pw.clone()), o, t0);
                    if o == Outcome::Ok {
                        *rec.registered_ok.lock().entry(key.clone()).or_default() += 1;
                        known.lock().insert(key.clone(), pw);
                    } else if o == Outcome::Rejected {
                        known.lock().entry(key.clone()).or_insert(pw);
                    }
                } else if choice < 8 {
                    let Some(pw) = known.lock().get(&key).cloned() else {
                        continue;
                    };
                    let t0 = rec.us();
                    let r = tokio::time::timeout(
                        op_timeout,
                        c.login(LoginRequest {
                            username: key.clone(),
                            password: pw.clone(),
                            client: None,
                        }),
                    )
                    .await;
                    let (o, _) = outcome(&r);
                    rec.record(&key, Op::Login(pw.clone()), o, t0);
                    let Ok(Ok(resp)) = r else { continue };
                    let tokens = resp.into_inner().tokens.unwrap_or_default();
                    if choice >= 6 {
                        // Change the password with this session.
                        let new = format!("pw-{key}-{w}-{n}");
                        let t0 = rec.us();
                        let r = tokio::time::timeout(
                            op_timeout,
                            c.change_password(ChangePasswordRequest {
                                access_token: tokens.access_token.clone(),
                                current_password: pw.clone(),
                                new_password: new.clone(),
                                client: None,
                            }),
                        )
                        .await;
                        let (o, code) = outcome(&r);
                        // A session ended by another client's change proves nothing.
                        if code != "session_ended" {
                            rec.record(&key, Op::ChangePassword(pw, new.clone()), o, t0);
                        }
                        if o == Outcome::Ok {
                            known.lock().insert(key.clone(), new);
                        }
                    } else {
                        my_refresh = Some(tokens.refresh_token);
                    }
                } else if let Some(token) = my_refresh.clone() {
                    // Refresh, and now and then present the same token again.
                    let r = tokio::time::timeout(
                        op_timeout,
                        c.refresh(RefreshRequest {
                            refresh_token: token.clone(),
                            client: None,
                        }),
                    )
                    .await;
                    if let Ok(Ok(resp)) = r {
                        let next = resp.into_inner().tokens.unwrap_or_default().refresh_token;
                        rec.refreshes
                            .lock()
                            .entry(token.clone())
                            .or_default()
                            .push(next.clone());
                        if !n.is_multiple_of(3) {
                            my_refresh = Some(next);
                        }
                    }
                }
            }
        }));
    }
    // The nemesis: at most two nodes down at a time; kills include the leader.
    let mut rng_state = 0x2545f4914f6cdd1du64;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut kills = 0;
    let mut pauses = 0;
    let mut round = 0;
    while Instant::now() + Duration::from_millis(1500) < stop_at {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        round += 1;
        let down: Vec<u64> = (1..=5).filter(|id| !c.is_up(*id)).collect();
        if round == 1 || (down.is_empty() && round == 5) {
            // Freeze the leader past its lease and an election: the others elect and
            // write on; woken, it still believes it leads until it hears otherwise,
            // and must not answer reads from its stale state.
            let leader = c.leader(Duration::from_secs(5)).await;
            c.pause(leader);
            tokio::time::sleep(Duration::from_millis(700)).await;
            c.resume(leader);
            pauses += 1;
        } else if down.len() < 2 && next() % 3 != 0 {
            let victim = if next() % 2 == 0 {
                c.leader(Duration::from_secs(5)).await
            } else {
                let up: Vec<u64> = (1..=5).filter(|id| c.is_up(*id)).collect();
                up[(next() as usize) % up.len()]
            };
            c.kill(victim);
            kills += 1;
        } else if let Some(id) = down.first() {
            c.restart(*id);
        }
    }
    for id in 1..=5 {
        if !c.is_up(id) {
            c.restart(id);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.wait_caught_up(Duration::from_secs(30)).await;

    // Final reads, recorded like any other operation.
    let api = remote(&c);
    let passwords: HashMap<String, Vec<String>> = {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for e in rec.events.lock().iter() {
            let p = match &e.op {
                Op::Register(p) | Op::Login(p) => p.clone(),
                Op::ChangePassword(_, p) => p.clone(),
            };
            m.entry(e.key.clone()).or_default().push(p);
        }
        m
    };
    for (key, pws) in &passwords {
        let mut pws = pws.clone();
        pws.sort();
        pws.dedup();
        for pw in pws {
            let t0 = rec.us();
            let r = api
                .login(LoginRequest {
                    username: key.clone(),
                    password: pw.clone(),
                    client: None,
                })
                .await;
            let o = match &r {
                Ok(_) => Outcome::Ok,
                Err(e) if e.code() == "invalid_credentials" => Outcome::Rejected,
                Err(e) => panic!("final read of {key}: {e}"),
            };
            rec.record(key, Op::Login(pw), o, t0);
        }
    }

    let events = rec.events.lock().clone();
    let acked = events.iter().filter(|e| e.outcome == Outcome::Ok).count();
    println!(
        "history ({read_mode} reads): {} operations ({acked} acknowledged), {kills} node kills, {pauses} leader pauses",
        events.len()
    );
    assert!(kills >= 2, "the nemesis did not get to work");
    assert!(pauses >= 1, "the nemesis paused no leader");
    assert!(
        acked >= ENOUGH,
        "too little succeeded to mean anything: {acked}"
    );
    // No username granted twice.
    for (k, n) in rec.registered_ok.lock().iter() {
        assert!(*n <= 1, "{k} was registered {n} times");
    }
    // No acknowledged registration lost.
    let registered: Vec<String> = rec.registered_ok.lock().keys().cloned().collect();
    for k in &registered {
        let e = api
            .register(RegisterRequest {
                username: k.clone(),
                password: "password-x".into(),
                client: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "user_exists", "acknowledged user {k} is gone");
    }
    // No rotated refresh token accepted into two different successors.
    for (token, successors) in rec.refreshes.lock().iter() {
        assert!(
            successors.windows(2).all(|w| w[0] == w[1]),
            "refresh token {}… forked into {successors:?}",
            &token[..8]
        );
    }
    // Per-key linearizability (with the final reads included).
    history::check(&events).unwrap();
}
