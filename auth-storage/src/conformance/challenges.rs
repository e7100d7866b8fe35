//! Sign-in challenges: MFA tickets and WebAuthn ceremony state, taken once.

use super::*;

/// A fresh, not yet stored challenge of `kind` for `user_id` (empty: no user), created
/// at [`NOW`] and expiring `ttl_ms` later.
fn new_challenge(kind: &str, user_id: &str, ttl_ms: i64) -> Challenge {
    Challenge {
        id: format!("challenge-{}", unique_hex()),
        kind: kind.to_owned(),
        user_id: user_id.to_owned(),
        created_at_ms: NOW,
        expires_at_ms: NOW + ttl_ms,
        state: format!("state:{}", unique_hex()).into_bytes(),
        attempts: 0,
    }
}

/// A put at [`NOW`] within generous bounds.
fn put_req(challenge: Challenge) -> PutChallenge {
    PutChallenge {
        challenge,
        now_ms: NOW,
        max_per_user: 8,
        max_total: 1_000_000,
    }
}

async fn put<S: Storage>(s: &S, c: &Challenge) {
    s.put_challenge(put_req(c.clone()))
        .await
        .unwrap_or_else(|e| panic!("put_challenge {:?} failed: {e}", c.id));
}

async fn take<S: Storage>(s: &S, id: &str, kind: &str, now_ms: i64) -> Option<Challenge> {
    s.take_challenge(id, kind, now_ms)
        .await
        .unwrap_or_else(|e| panic!("take_challenge({id}, {kind}, {now_ms}) failed: {e}"))
}

/// A stored challenge comes back from `take_challenge` exactly as stored, once; a
/// second put with the same id is refused with `ChallengeExists`, and a challenge may
/// have no user (passwordless login).
pub async fn challenge_is_taken_once<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let c = new_challenge("mfa", &user.id, 5 * MINUTE);
    put(s, &c).await;
    assert_eq!(
        s.put_challenge(put_req(c.clone())).await,
        Err(StorageError::ChallengeExists),
        "a challenge id is created once"
    );
    assert_eq!(take(s, &c.id, "mfa", NOW + MINUTE).await, Some(c.clone()));
    assert_eq!(
        take(s, &c.id, "mfa", NOW + MINUTE).await,
        None,
        "a challenge is taken at most once"
    );
    // Taken, its id may be stored again (a ticket put back after a wrong code).
    let mut again = c.clone();
    again.attempts = 1;
    put(s, &again).await;
    assert_eq!(take(s, &c.id, "mfa", NOW).await, Some(again));

    let anonymous = new_challenge("passkey_login", "", 2 * MINUTE);
    put(s, &anonymous).await;
    assert_eq!(
        take(s, &anonymous.id, "passkey_login", NOW).await,
        Some(anonymous)
    );
    assert_eq!(take(s, "challenge-never-stored", "mfa", NOW).await, None);
}

/// `take_challenge` returns nothing for another kind or once the challenge expired, and
/// removes it either way.
pub async fn take_challenge_checks_kind_and_expiry<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let c = new_challenge("mfa", &user.id, 5 * MINUTE);
    put(s, &c).await;
    assert_eq!(
        take(s, &c.id, "passkey_login", NOW).await,
        None,
        "a challenge of another kind is not handed out"
    );
    assert_eq!(
        take(s, &c.id, "mfa", NOW).await,
        None,
        "a challenge taken with the wrong kind is gone all the same"
    );

    let c = new_challenge("mfa", &user.id, MINUTE);
    put(s, &c).await;
    assert_eq!(
        take(s, &c.id, "mfa", NOW + MINUTE).await,
        None,
        "a challenge cannot be taken at its expiry"
    );
    assert_eq!(take(s, &c.id, "mfa", NOW).await, None, "and is gone after");

    let c = new_challenge("mfa", &user.id, MINUTE);
    put(s, &c).await;
    assert_eq!(
        take(s, &c.id, "mfa", NOW + MINUTE - 1).await,
        Some(c),
        "a millisecond before its expiry it is still good"
    );
}

/// `put_challenge` refuses malformed records (`Invalid`), a user that does not exist
/// (`NotFound`) and anything beyond `max_total` (`Unavailable`; without a user, beyond
/// half of it); beyond `max_per_user`
/// it drops that user's oldest challenge, and never one of another user or without one.
pub async fn put_challenge_validates_and_bounds<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let base = new_challenge("mfa", &user.id, MINUTE);
    let invalid = [
        (
            "empty id",
            Challenge {
                id: String::new(),
                ..base.clone()
            },
        ),
        (
            "empty kind",
            Challenge {
                kind: String::new(),
                ..base.clone()
            },
        ),
        (
            "expired",
            Challenge {
                expires_at_ms: NOW,
                ..base.clone()
            },
        ),
        (
            "oversized state",
            Challenge {
                state: vec![7; MAX_CHALLENGE_STATE + 1],
                ..base.clone()
            },
        ),
    ];
    for (what, c) in invalid {
        match s.put_challenge(put_req(c)).await {
            Err(StorageError::Invalid(_)) => {}
            other => panic!("put_challenge with {what} must be Invalid, got {other:?}"),
        }
    }
    let orphan = new_challenge("mfa", &unique_hex(), MINUTE);
    assert_eq!(
        s.put_challenge(put_req(orphan)).await,
        Err(StorageError::NotFound),
        "a challenge of a user that does not exist"
    );
    let mut full = put_req(new_challenge("passkey_login", "", MINUTE));
    full.max_total = 0;
    match s.put_challenge(full).await {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("put_challenge beyond max_total must be Unavailable, got {other:?}"),
    }
    // Without a user, half of max_total is the bound (here 0 of 1).
    let mut anonymous_full = put_req(new_challenge("passkey_login", "", MINUTE));
    anonymous_full.max_total = 1;
    match s.put_challenge(anonymous_full).await {
        Err(StorageError::Unavailable(_)) => {}
        other => {
            panic!("an anonymous challenge beyond max_total / 2 must be Unavailable, got {other:?}")
        }
    }

    let other = stored_user(s).await;
    let theirs = new_challenge("mfa", &other.id, HOUR);
    put(s, &theirs).await;
    let anonymous = new_challenge("passkey_login", "", HOUR);
    put(s, &anonymous).await;
    // Three for one user under a bound of two: the earliest-expiring goes.
    let mine: Vec<Challenge> = (1..=3)
        .map(|i| new_challenge("mfa", &user.id, i * MINUTE))
        .collect();
    for c in &mine {
        let mut req = put_req(c.clone());
        req.max_per_user = 2;
        s.put_challenge(req)
            .await
            .unwrap_or_else(|e| panic!("put_challenge within max_per_user failed: {e}"));
    }
    assert_eq!(
        take(s, &mine[0].id, "mfa", NOW).await,
        None,
        "the user's oldest challenge was dropped"
    );
    for c in &mine[1..] {
        assert_eq!(take(s, &c.id, "mfa", NOW).await, Some(c.clone()));
    }
    assert_eq!(take(s, &theirs.id, "mfa", NOW).await, Some(theirs));
    assert_eq!(
        take(s, &anonymous.id, "passkey_login", NOW).await,
        Some(anonymous)
    );
}

/// However many callers take one challenge at once, exactly one gets it.
pub async fn concurrent_take_challenge_has_one_winner<S: Storage>(s: &Arc<S>) {
    const CALLERS: usize = 16;
    let user = stored_user(s.as_ref()).await;
    let c = new_challenge("mfa", &user.id, 5 * MINUTE);
    put(s.as_ref(), &c).await;
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let (s, id) = (Arc::clone(s), c.id.clone());
        tasks.push(tokio::spawn(async move {
            s.take_challenge(&id, "mfa", NOW).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(Some(got)) => {
                assert_eq!(got, c);
                winners += 1;
            }
            Ok(None) => {}
            Err(e) => panic!("take_challenge failed under concurrency: {e}"),
        }
    }
    assert_eq!(winners, 1, "a challenge is taken exactly once");
}

/// Expired challenges are swept by `delete_expired_sessions` (and counted), and a
/// user's challenges go with the user.
///
/// Uses the reserved sweeper time range and lock (see the module docs).
pub async fn challenges_are_swept_and_go_with_their_user<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let c = new_challenge("mfa", &user.id, HOUR);
    put(s, &c).await;
    s.delete_user(&user.id).await.expect("delete_user");
    assert_eq!(
        take(s, &c.id, "mfa", NOW).await,
        None,
        "a deleted user's challenges are gone"
    );

    let _serialised = SWEEP_LOCK.lock().await;
    s.delete_expired_sessions(SWEEP_CEILING, usize::MAX)
        .await
        .expect("delete_expired_sessions (clearing the reserved range)");
    let b = SWEEP_BASE;
    let c = Challenge {
        created_at_ms: b,
        expires_at_ms: b + MINUTE,
        ..new_challenge("passkey_login", "", 0)
    };
    let mut req = put_req(c.clone());
    req.now_ms = b;
    s.put_challenge(req).await.expect("put_challenge");
    assert_eq!(
        s.delete_expired_sessions(b + MINUTE - 1, usize::MAX).await,
        Ok(0),
        "nothing has expired a millisecond early"
    );
    assert_eq!(
        s.delete_expired_sessions(b + MINUTE, usize::MAX).await,
        Ok(1),
        "the expired challenge is swept and counted"
    );
    assert_eq!(take(s, &c.id, "passkey_login", b).await, None);
}
