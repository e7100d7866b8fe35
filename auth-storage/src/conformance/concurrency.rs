//! Concurrency: racing writers, of which exactly the right ones win.

use super::*;

// Concurrency.
// ---------------------------------------------------------------------------------------

/// 100 concurrent `create_user` calls with distinct ids and the same `username_key`:
/// exactly one succeeds, the other 99 get `UserExists`, and the username resolves to the
/// winner.
pub async fn concurrent_create_same_username<S: Storage>(s: &Arc<S>) {
    const TASKS: usize = 100;
    let key = new_user().username_key;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
        let mut user = new_user();
        user.username_key = key.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            (user.id.clone(), s.create_user(user).await)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for h in handles {
        let (id, res) = h.await.expect("create_user task panicked");
        match res {
            Ok(user) => winners.push(user),
            Err(StorageError::UserExists) => losers.push(id),
            Err(e) => panic!("concurrent create_user failed with {e:?}, expected UserExists"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent create_user may succeed"
    );
    assert_eq!(
        losers.len(),
        TASKS - 1,
        "every other one must get UserExists"
    );
    let winner = &winners[0];
    assert_eq!(winner.version, 1);
    assert_eq!(
        get_user_by_username(&**s, &key).await.as_ref(),
        Some(winner),
        "the username must resolve to the one winner"
    );
    for id in &losers {
        assert_eq!(
            get_user(&**s, id).await,
            None,
            "a losing user {id:?} must not be stored"
        );
    }
}

/// 20 concurrent `update_user` calls from the same read version: exactly one succeeds
/// (version 2), the other 19 get `Conflict`, and the stored user is the winner's.
pub async fn concurrent_update_user_cas<S: Storage>(s: &Arc<S>) {
    const TASKS: u32 = 20;
    let user = stored_user(&**s).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
        let mut change = user.clone();
        change.failed_logins = i + 1;
        change.updated_at_ms = NOW + i64::from(i);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            s.update_user(change).await
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        match h.await.expect("update_user task panicked") {
            Ok(u) => winners.push(u),
            Err(StorageError::Conflict) => conflicts += 1,
            Err(e) => panic!("concurrent update_user failed with {e:?}, expected Conflict"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one compare-and-set from version 1 may succeed"
    );
    assert_eq!(conflicts, TASKS - 1, "every other one must get Conflict");
    assert_eq!(winners[0].version, 2);
    assert_eq!(
        get_user(&**s, &user.id).await.as_ref(),
        Some(&winners[0]),
        "the stored user must be the winner's update"
    );
}

/// Two concurrent `rotate_refresh` calls presenting the same current token, each with
/// its own successor, inside a grace window (50 rounds, a fresh session each): one is
/// `Rotated`, the other `Replayed`, both callers end up with the same successor (current
/// hash and sealed successor), and `generation` went up by exactly one.
pub async fn concurrent_rotate_same_token<S: Storage>(s: &Arc<S>) {
    const ROUNDS: u64 = 50;
    let user = stored_user(&**s).await;
    for round in 0..ROUNDS {
        let session = live_session(&**s, &user.id).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let reqs = [0, 1].map(|_| rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND));
        let handles = reqs.clone().map(|req| {
            let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                s.rotate_refresh(req).await
            })
        });
        let mut outs = Vec::new();
        for h in handles {
            let out = h
                .await
                .expect("rotate_refresh task panicked")
                .unwrap_or_else(|e| panic!("round {round}: rotate_refresh failed: {e}"));
            outs.push(out);
        }
        let (winner, rotated, replayed) = match (&outs[0], &outs[1]) {
            (RotateOutcome::Rotated(r), RotateOutcome::Replayed(p)) => (0, r, p),
            (RotateOutcome::Replayed(p), RotateOutcome::Rotated(r)) => (1, r, p),
            (a, b) => panic!(
                "round {round}: two concurrent rotations of one token must give one Rotated and \
                 one Replayed, got {} and {}",
                outcome_name(a),
                outcome_name(b)
            ),
        };
        assert_eq!(
            rotated.refresh_hash, reqs[winner].new_hash,
            "round {round}: Rotated must make its own successor current"
        );
        assert_eq!(rotated.sealed_successor, reqs[winner].sealed_successor);
        assert_eq!(
            replayed.refresh_hash, rotated.refresh_hash,
            "round {round}: the Replayed caller must see the Rotated caller's successor"
        );
        assert_eq!(
            replayed.sealed_successor, rotated.sealed_successor,
            "round {round}: the Replayed caller must get the Rotated caller's sealed successor"
        );
        assert_eq!(
            rotated.generation,
            session.generation + 1,
            "round {round}: generation must go up by exactly one"
        );
        assert_eq!(replayed.generation, session.generation + 1);
        let stored = get_session(&**s, &session.id)
            .await
            .unwrap_or_else(|| panic!("round {round}: the session must survive"));
        assert_eq!(
            &stored, rotated,
            "round {round}: the stored session is the Rotated one"
        );
        assert_eq!(
            stored.retired_refresh_hashes,
            vec![session.refresh_hash.clone()]
        );
    }
    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(ROUNDS),
        "cleaning up: every round's session goes with the user"
    );
}

// ---------------------------------------------------------------------------------------
