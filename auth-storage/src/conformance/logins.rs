//! Failed-login accounting: reservations, settlement, locks and their expiry.

use super::*;

// Failed-login accounting.
// ---------------------------------------------------------------------------------------

/// A reservation for `key` at `now` under a policy of 3 failures, 30 s doubling to
/// 4 min, forgotten after 1 h.
fn reserve_req(key: &str, now: i64) -> ReserveLogin {
    ReserveLogin {
        username_key: key.to_owned(),
        now_ms: now,
        max_failures: 3,
        base_delay_ms: 30 * SECOND,
        max_delay_ms: 4 * MINUTE,
        forget_after_ms: HOUR,
    }
}

async fn reserve<S: Storage>(s: &S, key: &str, now: i64) -> Reservation {
    s.reserve_login(reserve_req(key, now))
        .await
        .unwrap_or_else(|e| panic!("reserve_login({key}, {now}) failed: {e}"))
}

async fn settle<S: Storage>(s: &S, key: &str, ticket: u32) {
    s.settle_login(SettleLogin {
        username_key: key.to_owned(),
        ticket,
    })
    .await
    .unwrap_or_else(|e| panic!("settle_login({key}, {ticket}) failed: {e}"));
}

/// `reserve_login` charges every granted check before it runs, locks once
/// `max_failures` are charged (for `base_delay`, doubling per later failure up to
/// `max_delay`), refuses while locked without charging, and works for names no user
/// has.
pub async fn reserve_login_charges_then_locks<S: Storage>(s: &S) {
    let key = format!("nobody-{}", unique_hex());
    assert_eq!(
        s.get_login_attempts(&key)
            .await
            .expect("get_login_attempts"),
        None
    );
    for want in 1..=2 {
        assert_eq!(
            reserve(s, &key, NOW).await,
            Reservation::Granted { ticket: want }
        );
    }
    // The third charge reaches the threshold: granted, and the lock starts now.
    assert_eq!(
        reserve(s, &key, NOW).await,
        Reservation::Granted { ticket: 3 }
    );
    let rec = s
        .get_login_attempts(&key)
        .await
        .expect("get_login_attempts")
        .expect("a record after charges");
    assert_eq!(rec.failures, 3);
    assert_eq!(rec.locked_until_ms, NOW + 30 * SECOND);
    assert_eq!(rec.expires_at_ms, NOW + HOUR);
    // Locked: refused, nothing charged.
    for at in [NOW, NOW + 29 * SECOND] {
        assert_eq!(
            reserve(s, &key, at).await,
            Reservation::Locked {
                until_ms: NOW + 30 * SECOND
            }
        );
    }
    assert_eq!(
        s.get_login_attempts(&key)
            .await
            .ok()
            .flatten()
            .map(|r| r.failures),
        Some(3),
        "a refused reservation must not charge"
    );
    // After the lock: one more check, and the lock doubles.
    let t = NOW + 30 * SECOND;
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Granted { ticket: 4 }
    );
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Locked {
            until_ms: t + MINUTE
        }
    );
    // Capped at max_delay.
    let mut t = t + MINUTE;
    for ticket in 5..=8 {
        assert_eq!(reserve(s, &key, t).await, Reservation::Granted { ticket });
        let Reservation::Locked { until_ms } = reserve(s, &key, t).await else {
            panic!("charge {ticket} must lock");
        };
        assert!(until_ms - t <= 4 * MINUTE, "lock longer than max_delay");
        t = until_ms;
    }
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Granted { ticket: 9 }
    );
    assert_eq!(
        reserve(s, &key, t).await,
        Reservation::Locked {
            until_ms: t + 4 * MINUTE
        }
    );
    let empty = s.reserve_login(reserve_req("", NOW)).await;
    assert!(
        matches!(empty, Err(StorageError::Invalid(_))),
        "an empty username key must be invalid, got {empty:?}"
    );
}

/// With `max_failures = 0` nothing ever locks, but checks are still counted; a record
/// quiet for `forget_after` starts over.
pub async fn reserve_login_unlimited_and_forgetting<S: Storage>(s: &S) {
    let key = format!("free-{}", unique_hex());
    let mut req = reserve_req(&key, NOW);
    req.max_failures = 0;
    for ticket in 1..=10 {
        assert_eq!(
            s.reserve_login(req.clone()).await,
            Ok(Reservation::Granted { ticket })
        );
    }
    // Three charges lock under the normal policy...
    let key = format!("forget-{}", unique_hex());
    for _ in 0..3 {
        reserve(s, &key, NOW).await;
    }
    // ...but an hour after the last charge (and after the lock) the record is forgotten.
    assert_eq!(
        reserve(s, &key, NOW + HOUR).await,
        Reservation::Granted { ticket: 1 },
        "an expired record must start over"
    );
}

/// A success settles its own charge: with nothing charged since, the record goes (and
/// so does a lock its own charge started); otherwise only its charge is refunded and a
/// lock set meanwhile stays.
pub async fn settle_login_refunds_only_its_own_charge<S: Storage>(s: &S) {
    // Alone: the record is deleted.
    let key = format!("alone-{}", unique_hex());
    reserve(s, &key, NOW).await;
    let Reservation::Granted { ticket } = reserve(s, &key, NOW).await else {
        panic!("second charge must be granted");
    };
    settle(s, &key, ticket).await;
    assert_eq!(s.get_login_attempts(&key).await, Ok(None));

    // The success's own charge started the lock: it is lifted.
    let key = format!("own-lock-{}", unique_hex());
    reserve(s, &key, NOW).await;
    reserve(s, &key, NOW).await;
    assert_eq!(
        reserve(s, &key, NOW).await,
        Reservation::Granted { ticket: 3 }
    );
    settle(s, &key, 3).await;
    assert_eq!(
        reserve(s, &key, NOW).await,
        Reservation::Granted { ticket: 1 },
        "a success must reset the count and lift its own lock"
    );

    // Others charged while the success ran and locked the account: the lock stays.
    let key = format!("meanwhile-{}", unique_hex());
    let Reservation::Granted { ticket: mine } = reserve(s, &key, NOW).await else {
        panic!("first charge must be granted");
    };
    reserve(s, &key, NOW).await;
    reserve(s, &key, NOW).await; // the third charge locks
    settle(s, &key, mine).await;
    let rec = s
        .get_login_attempts(&key)
        .await
        .expect("get_login_attempts")
        .expect("the record must survive a success that others overtook");
    assert_eq!(rec.failures, 2, "only the success's own charge is refunded");
    assert_eq!(
        rec.locked_until_ms,
        NOW + 30 * SECOND,
        "a success must never clear a lock set meanwhile"
    );
    assert!(matches!(
        reserve(s, &key, NOW).await,
        Reservation::Locked { .. }
    ));

    // Settling a record that is gone, or was reset meanwhile, changes nothing.
    let key = format!("gone-{}", unique_hex());
    settle(s, &key, 1).await;
    assert_eq!(s.get_login_attempts(&key).await, Ok(None));
}

/// Many reservations at once for one name: exactly `max_failures` are granted (tickets
/// 1..=max_failures, each once) and every other one sees the lock.
pub async fn concurrent_reserve_login_grants_at_most_threshold<S: Storage>(s: &Arc<S>) {
    const CALLERS: usize = 64;
    let key = format!("storm-{}", unique_hex());
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (s, key) = (Arc::clone(s), key.clone());
        tasks.push(tokio::spawn(async move {
            s.reserve_login(reserve_req(&key, NOW)).await
        }));
    }
    let mut tickets = Vec::new();
    let mut locked = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(Reservation::Granted { ticket }) => tickets.push(ticket),
            Ok(Reservation::Locked { until_ms }) => {
                assert_eq!(until_ms, NOW + 30 * SECOND);
                locked += 1;
            }
            Err(e) => panic!("reserve_login failed under concurrency: {e}"),
        }
    }
    tickets.sort_unstable();
    assert_eq!(
        tickets,
        vec![1, 2, 3],
        "exactly the threshold may be granted"
    );
    assert_eq!(locked, CALLERS - 3);
}

/// Failed-login records expire: `delete_expired_sessions` removes those whose expiry
/// has passed (and counts them), and leaves a record under a lock in force.
///
/// Uses the reserved sweeper time range and lock (see the module docs).
pub async fn login_attempts_expire_and_are_swept<S: Storage>(s: &S) {
    let _serialised = SWEEP_LOCK.lock().await;
    s.delete_expired_sessions(SWEEP_CEILING, usize::MAX)
        .await
        .expect("delete_expired_sessions (clearing the reserved range)");
    let b = SWEEP_BASE;
    let quiet = format!("quiet-{}", unique_hex());
    let locked = format!("locked-{}", unique_hex());
    let mut req = reserve_req(&quiet, b);
    req.forget_after_ms = MINUTE;
    s.reserve_login(req).await.expect("reserve");
    for _ in 0..3 {
        let mut req = reserve_req(&locked, b);
        req.forget_after_ms = MINUTE;
        req.base_delay_ms = 2 * HOUR;
        req.max_delay_ms = 2 * HOUR;
        s.reserve_login(req).await.expect("reserve");
    }
    assert_eq!(
        s.delete_expired_sessions(b + MINUTE - 1, usize::MAX).await,
        Ok(0),
        "nothing has expired a millisecond early"
    );
    assert_eq!(
        s.delete_expired_sessions(b + MINUTE, usize::MAX).await,
        Ok(1),
        "the quiet record expires; the locked one stays"
    );
    assert_eq!(s.get_login_attempts(&quiet).await, Ok(None));
    assert!(s.get_login_attempts(&locked).await.ok().flatten().is_some());
    assert_eq!(
        s.delete_expired_sessions(b + 2 * HOUR, usize::MAX).await,
        Ok(1),
        "the locked record goes when its lock ends"
    );
    assert_eq!(s.get_login_attempts(&locked).await, Ok(None));
}

// ---------------------------------------------------------------------------------------
