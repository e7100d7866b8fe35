//! Sessions: creation, liveness, listing, refresh rotation, deletion and sweeping.

use super::*;

// Sessions.
// ---------------------------------------------------------------------------------------

/// `create_session` for a user that does not exist fails with `NotFound` and stores
/// nothing.
pub async fn create_session_for_missing_user_not_found<S: Storage>(s: &S) {
    let ghost = new_user();
    let session = new_session(&ghost.id, NOW - HOUR, NOW + HOUR);
    assert_eq!(
        s.create_session(session.clone(), 0).await,
        Err(StorageError::NotFound),
        "create_session for an unknown user must fail with NotFound"
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "the session must not be stored"
    );
}

/// `create_session` with an id that is taken fails with `SessionExists` (even for another
/// user) and leaves the existing session as it was.
pub async fn create_session_rejects_duplicate_id<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let first = live_session(s, &user.id).await;

    let mut dup = new_session(&user.id, NOW - MINUTE, NOW + 2 * HOUR);
    dup.id = first.id.clone();
    assert_eq!(
        s.create_session(dup.clone(), 0).await,
        Err(StorageError::SessionExists),
        "create_session with a taken id must fail with SessionExists"
    );
    dup.user_id = other.id.clone();
    assert_eq!(
        s.create_session(dup, 0).await,
        Err(StorageError::SessionExists),
        "create_session with a taken id for another user must fail with SessionExists"
    );
    assert_eq!(
        get_session(s, &first.id).await.as_ref(),
        Some(&first),
        "the existing session must be unchanged"
    );
    assert!(
        list_ids(s, &other.id, NOW).await.is_empty(),
        "the other user gained no session"
    );
}

/// `get_session` returns a stored session exactly as created, expired or not, and
/// `None` for an unknown id.
pub async fn get_session_found_and_missing<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let live = live_session(s, &user.id).await;
    let expired = stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW - HOUR)).await;
    assert_eq!(
        get_session(s, &live.id).await.as_ref(),
        Some(&live),
        "get_session of a session"
    );
    assert_eq!(
        get_session(s, &expired.id).await.as_ref(),
        Some(&expired),
        "get_session must return an expired (not yet swept) session too"
    );
    assert_eq!(
        get_session(s, &unique_hex()).await,
        None,
        "get_session of an unknown id"
    );
}

/// `is_session_live` is true only for an existing session of the named user whose idle
/// expiry is after `now` (a session expiring exactly at `now` is dead).
pub async fn is_session_live_cases<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let exp = session.expires_at_ms;

    assert!(
        is_live(s, &session.id, &user.id, NOW).await,
        "a live session must be live"
    );
    assert!(
        is_live(s, &session.id, &user.id, exp - 1).await,
        "a session must be live one millisecond before its expiry"
    );
    assert!(
        !is_live(s, &session.id, &user.id, exp).await,
        "a session must not be live at exactly its expiry"
    );
    assert!(
        !is_live(s, &session.id, &user.id, exp + HOUR).await,
        "a session must not be live after its expiry"
    );
    assert!(
        !is_live(s, &session.id, &other.id, NOW).await,
        "a session must not be live for a user who does not own it"
    );
    assert!(
        !is_live(s, &unique_hex(), &user.id, NOW).await,
        "an unknown session must not be live"
    );
    assert!(
        s.delete_session(&session.id, &user.id)
            .await
            .expect("delete_session"),
        "delete_session of an existing session"
    );
    assert!(
        !is_live(s, &session.id, &user.id, NOW).await,
        "a deleted session must not be live"
    );
}

/// `create_session` with a bound makes room in the same step: a user at the bound
/// loses first the sessions expired by the new one's `created_at_ms`, then the oldest
/// (by `created_at_ms`), and ends with the bound; other users keep theirs; 0 means no
/// bound.
pub async fn create_session_bounded_ends_expired_then_oldest<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let theirs = live_session(s, &other.id).await;
    let older = stored_session(s, new_session(&user.id, NOW - 3 * HOUR, NOW + HOUR)).await;
    let old = stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW + HOUR)).await;
    let expired = stored_session(s, new_session(&user.id, NOW - 4 * HOUR, NOW)).await;
    async fn bounded<S: Storage>(s: &S, user_id: &str, created: i64) -> Session {
        let session = new_session(user_id, created, created + HOUR);
        let stored = s
            .create_session(session.clone(), 3)
            .await
            .expect("create_session with a bound");
        assert_eq!(stored, session, "the new session is stored as given");
        stored
    }
    let first = bounded(s, &user.id, NOW).await;
    assert!(
        get_session(s, &expired.id).await.is_none(),
        "the expired session goes first"
    );
    let ids = |v: &[&Session]| {
        let mut v: Vec<String> = v.iter().map(|s| s.id.clone()).collect();
        v.sort();
        v
    };
    let mut stored_ids: Vec<String> = list_ids(s, &user.id, NOW - 1).await;
    stored_ids.sort();
    assert_eq!(stored_ids, ids(&[&older, &old, &first]));
    let second = bounded(s, &user.id, NOW + 1).await;
    assert!(
        get_session(s, &older.id).await.is_none(),
        "then the oldest live one"
    );
    let mut stored_ids: Vec<String> = list_ids(s, &user.id, NOW - 1).await;
    stored_ids.sort();
    assert_eq!(stored_ids, ids(&[&old, &first, &second]));
    let only = new_session(&user.id, NOW + 2, NOW + HOUR);
    s.create_session(only.clone(), 1)
        .await
        .expect("create_session with a bound of 1");
    assert_eq!(list_ids(s, &user.id, NOW).await, vec![only.id.clone()]);
    for _ in 0..3 {
        live_session(s, &user.id).await;
    }
    assert_eq!(
        list_ids(s, &user.id, NOW).await.len(),
        4,
        "0 means no bound"
    );
    assert!(
        get_session(s, &theirs.id).await.is_some(),
        "another user's session is untouched"
    );
}

/// A session takes its user's roles at creation, whatever the caller sent, and a user
/// an administrator locked gets no new session (`UserLocked`) until unlocked.
pub async fn create_session_takes_roles_and_refuses_locked_user<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut admin = user.clone();
    admin.roles = vec!["admin".into()];
    let admin = s.update_user(admin).await.expect("grant a role");
    let mut forged = new_session(&user.id, NOW - HOUR, NOW + HOUR);
    forged.roles = vec!["root".into()];
    let stored = s
        .create_session(forged.clone(), 0)
        .await
        .expect("create_session");
    assert_eq!(stored.roles, vec!["admin".to_owned()]);
    assert_eq!(
        get_session(s, &forged.id).await.map(|s| s.roles),
        Some(stored.roles)
    );

    let mut locked = admin.clone();
    locked.admin_locked_at_ms = NOW;
    let locked = s.update_user(locked).await.expect("lock");
    let refused = new_session(&user.id, NOW - HOUR, NOW + HOUR);
    assert_eq!(
        s.create_session(refused.clone(), 0).await,
        Err(StorageError::UserLocked),
        "a locked user gets no session"
    );
    assert!(get_session(s, &refused.id).await.is_none());
    let mut unlocked = locked;
    unlocked.admin_locked_at_ms = 0;
    s.update_user(unlocked).await.expect("unlock");
    s.create_session(refused, 0)
        .await
        .expect("an unlocked user gets sessions again");
}

/// `list_user_sessions` lists only that user's sessions that are live at `now`, oldest
/// (by `created_at_ms`) first, each as stored; an unknown user has none.
pub async fn list_user_sessions_live_oldest_first<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    // Created out of order on purpose.
    let middle = stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW + HOUR)).await;
    let newest = stored_session(s, new_session(&user.id, NOW - HOUR, NOW + 3 * HOUR)).await;
    let _expired = stored_session(s, new_session(&user.id, NOW - 4 * HOUR, NOW)).await;
    let oldest = stored_session(s, new_session(&user.id, NOW - 3 * HOUR, NOW + 2 * HOUR)).await;
    let _theirs = stored_session(s, new_session(&other.id, NOW - 5 * HOUR, NOW + HOUR)).await;

    let listed = s
        .list_user_sessions(&user.id, NOW)
        .await
        .expect("list_user_sessions");
    assert_eq!(
        listed,
        vec![oldest.clone(), middle.clone(), newest.clone()],
        "list_user_sessions must return the user's live sessions, oldest first, \
         without the one expiring exactly at now"
    );
    assert_eq!(
        list_ids(s, &user.id, NOW + HOUR).await,
        vec![oldest.id.clone(), newest.id.clone()],
        "sessions expired at a later now must drop out of the list"
    );
    assert!(
        list_ids(s, &new_user().id, NOW).await.is_empty(),
        "an unknown user has no sessions"
    );
}

/// Presenting the current refresh token rotates it: the new hash becomes current, the
/// old one is retired (most recent first), the successor is stored sealed, `generation`
/// goes up by one, `rotated_at_ms` is now and the idle expiry becomes `now + idle_ttl`;
/// the stored session equals the returned one and the next rotation chains on.
pub async fn rotate_refresh_rotates_current_token<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;

    let req = rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND);
    let rotated = expect_rotated(s, req.clone(), "presenting the current token").await;
    assert_eq!(
        rotated.refresh_hash, req.new_hash,
        "the new hash must be current"
    );
    assert_eq!(
        rotated.retired_refresh_hashes,
        vec![session.refresh_hash.clone()],
        "the presented hash must be retired"
    );
    assert_eq!(
        rotated.sealed_successor, req.sealed_successor,
        "the sealed successor is kept"
    );
    assert_eq!(
        rotated.generation,
        session.generation + 1,
        "generation goes up by one"
    );
    assert_eq!(
        rotated.rotated_at_ms, NOW,
        "rotated_at_ms must be the request's now"
    );
    assert_eq!(
        rotated.expires_at_ms,
        NOW + req.idle_ttl_ms,
        "the idle expiry must become now + idle_ttl when that is before the absolute expiry"
    );
    assert_eq!(rotated.id, session.id);
    assert_eq!(rotated.user_id, session.user_id);
    assert_eq!(
        rotated.created_at_ms, session.created_at_ms,
        "created_at_ms must not change"
    );
    assert_eq!(
        rotated.absolute_expires_at_ms, session.absolute_expires_at_ms,
        "the absolute expiry must never change"
    );
    assert_eq!(rotated.user_agent, session.user_agent);
    assert_eq!(rotated.ip, session.ip);
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&rotated),
        "the stored session must equal the returned one"
    );
    assert!(
        is_live(s, &session.id, &user.id, NOW + req.idle_ttl_ms - 1).await,
        "the rotated session must be live until its new idle expiry"
    );

    let req2 = rotate_req(&session.id, &req.new_hash, NOW + MINUTE, 10 * SECOND);
    let rotated2 = expect_rotated(s, req2.clone(), "presenting the successor token").await;
    assert_eq!(rotated2.refresh_hash, req2.new_hash);
    assert_eq!(
        rotated2.retired_refresh_hashes,
        vec![req.new_hash.clone(), session.refresh_hash.clone()],
        "retired hashes must be kept most recent first"
    );
    assert_eq!(rotated2.sealed_successor, req2.sealed_successor);
    assert_eq!(rotated2.generation, session.generation + 2);
    assert_eq!(rotated2.rotated_at_ms, NOW + MINUTE);
    assert_eq!(rotated2.expires_at_ms, NOW + MINUTE + req2.idle_ttl_ms);
}

/// A rotation never extends the idle expiry past the absolute expiry:
/// `expires_at = min(now + idle_ttl, absolute_expires_at)`.
pub async fn rotate_refresh_caps_expiry_at_absolute<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut session = new_session(&user.id, NOW - HOUR, NOW + 30 * MINUTE);
    session.absolute_expires_at_ms = NOW + HOUR;
    let session = stored_session(s, session).await;

    let mut req = rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND);
    req.idle_ttl_ms = DAY;
    let rotated = expect_rotated(s, req, "presenting the current token").await;
    assert_eq!(
        rotated.expires_at_ms,
        NOW + HOUR,
        "the idle expiry must be capped at the absolute expiry"
    );
    assert_eq!(
        rotated.absolute_expires_at_ms,
        NOW + HOUR,
        "the absolute expiry never moves"
    );
    assert!(
        !is_live(s, &session.id, &user.id, NOW + HOUR).await,
        "dead at the absolute expiry"
    );
}

/// Presenting the token that was just rotated away, within the grace window (inclusive),
/// yields `Replayed` with the session as the rotation left it (current hash and sealed
/// successor of that rotation), changes nothing, and does not block the successor.
pub async fn rotate_refresh_replay_within_grace<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let grace = 10 * SECOND;

    let req = rotate_req(&session.id, &session.refresh_hash, NOW, grace);
    let rotated = expect_rotated(s, req.clone(), "first rotation").await;

    for (at, what) in [
        (NOW, "at once"),
        (NOW + grace / 2, "mid-grace"),
        (NOW + grace, "at the end of grace"),
    ] {
        let replay = rotate_req(&session.id, &session.refresh_hash, at, grace);
        match rotate(s, replay.clone()).await {
            RotateOutcome::Replayed(seen) => {
                assert_eq!(
                    seen.refresh_hash, req.new_hash,
                    "Replayed ({what}) must report the successor the rotation stored"
                );
                assert_eq!(
                    seen.sealed_successor, req.sealed_successor,
                    "Replayed ({what}) must carry the sealed successor the rotation stored, \
                     not the replaying caller's"
                );
                assert_eq!(
                    seen, rotated,
                    "Replayed ({what}) must return the session unchanged"
                );
            }
            other => panic!(
                "presenting the just-rotated token {what} must be Replayed, got {}",
                outcome_name(&other)
            ),
        }
        assert_eq!(
            get_session(s, &session.id).await.as_ref(),
            Some(&rotated),
            "a replay ({what}) must not change the stored session"
        );
    }

    let next = rotate_req(&session.id, &req.new_hash, NOW + grace + SECOND, grace);
    let rotated2 = expect_rotated(s, next, "the successor after replays").await;
    assert_eq!(rotated2.generation, session.generation + 2);
}

/// Presenting the just-rotated token after the grace window is reuse: `Reused`, and the
/// whole session is deleted (its current token stops working too).
pub async fn rotate_refresh_reuse_after_grace<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let grace = 10 * SECOND;

    let req = rotate_req(&session.id, &session.refresh_hash, NOW, grace);
    expect_rotated(s, req.clone(), "first rotation").await;

    let late = rotate_req(&session.id, &session.refresh_hash, NOW + grace + 1, grace);
    let out = rotate(s, late).await;
    assert!(
        matches!(out, RotateOutcome::Reused),
        "presenting a rotated token after the grace window must be Reused, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "reuse must delete the session"
    );
    assert!(!is_live(s, &session.id, &user.id, NOW + grace + 2).await);
    let out = rotate(
        s,
        rotate_req(&session.id, &req.new_hash, NOW + grace + 2, grace),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "after reuse the successor token must be Invalid (session gone), got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "reuse keeps the user"
    );
}

/// Presenting a token retired two or more rotations ago is reuse even inside the grace
/// window of the latest rotation: `Reused`, and the session is deleted.
pub async fn rotate_refresh_older_token_reused<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let grace = 10 * SECOND;

    let first = rotate_req(&session.id, &session.refresh_hash, NOW, grace);
    expect_rotated(s, first.clone(), "first rotation").await;
    let second = rotate_req(&session.id, &first.new_hash, NOW + SECOND, grace);
    expect_rotated(s, second, "second rotation").await;

    let out = rotate(
        s,
        rotate_req(&session.id, &session.refresh_hash, NOW + 2 * SECOND, grace),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Reused),
        "presenting a token retired two rotations ago must be Reused, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "reuse must delete the session"
    );
}

/// A token matching none of the session's hashes is `Invalid` and leaves the session
/// untouched, both before and after a rotation.
pub async fn rotate_refresh_unknown_hash_invalid<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;

    let out = rotate(s, rotate_req(&session.id, &fresh_hash(), NOW, 10 * SECOND)).await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "an unknown token must be Invalid, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&session),
        "an Invalid rotation must leave the session untouched"
    );

    let rotated = expect_rotated(
        s,
        rotate_req(&session.id, &session.refresh_hash, NOW, 10 * SECOND),
        "rotation with the current token after an invalid attempt",
    )
    .await;
    let out = rotate(
        s,
        rotate_req(&session.id, &fresh_hash(), NOW + SECOND, 10 * SECOND),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "an unknown token for a rotated session must be Invalid, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&rotated),
        "an Invalid rotation must leave the rotated session untouched"
    );
}

/// Rotating a session whose idle expiry is at or before `now` is `Expired`, even with the
/// current token, and deletes the session.
pub async fn rotate_refresh_expired_session<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let at = session.expires_at_ms; // expiry is inclusive: dead at exactly this instant

    let out = rotate(
        s,
        rotate_req(&session.id, &session.refresh_hash, at, 10 * SECOND),
    )
    .await;
    assert!(
        matches!(out, RotateOutcome::Expired),
        "rotating at exactly the idle expiry must be Expired, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "Expired must delete the session"
    );
    assert!(
        list_ids(s, &user.id, NOW).await.is_empty(),
        "the expired session is not listed"
    );
}

/// Rotating a session id that does not exist is `Invalid` and creates nothing.
pub async fn rotate_refresh_unknown_session_invalid<S: Storage>(s: &S) {
    let id = unique_hex();
    let out = rotate(s, rotate_req(&id, &fresh_hash(), NOW, 10 * SECOND)).await;
    assert!(
        matches!(out, RotateOutcome::Invalid),
        "rotating an unknown session must be Invalid, got {}",
        outcome_name(&out)
    );
    assert_eq!(
        get_session(s, &id).await,
        None,
        "an Invalid rotation must create nothing"
    );
}

/// A session remembers the last [`RETIRED_HASHES_KEPT`]
/// retired hashes, most recent first; `generation` counts every rotation.
pub async fn rotate_refresh_keeps_bounded_retired_hashes<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let rounds = RETIRED_HASHES_KEPT + 4;

    let mut hashes = vec![session.refresh_hash.clone()];
    let mut last = session.clone();
    for i in 0..rounds {
        let req = rotate_req(
            &session.id,
            hashes.last().unwrap(),
            NOW + i as i64 * SECOND,
            0,
        );
        hashes.push(req.new_hash.clone());
        last = expect_rotated(s, req, &format!("rotation {i}")).await;
    }
    assert_eq!(
        last.generation,
        session.generation + rounds as u64,
        "one generation per rotation"
    );
    let mut expected: Vec<Vec<u8>> = hashes[..rounds].to_vec();
    expected.reverse();
    expected.truncate(RETIRED_HASHES_KEPT);
    assert_eq!(
        last.retired_refresh_hashes, expected,
        "the session must keep the {RETIRED_HASHES_KEPT} most recent retired hashes, \
         most recent first"
    );
    assert_eq!(
        last.refresh_hash, hashes[rounds],
        "the last successor is current"
    );
}

/// `delete_session` deletes only when the named user owns the session and returns
/// whether it deleted anything.
pub async fn delete_session_requires_owner<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let session = live_session(s, &user.id).await;
    let sibling = live_session(s, &user.id).await;

    assert_eq!(
        s.delete_session(&session.id, &other.id).await,
        Ok(false),
        "delete_session by a user who does not own the session must return false"
    );
    assert_eq!(
        get_session(s, &session.id).await.as_ref(),
        Some(&session),
        "a refused delete_session must leave the session alone"
    );
    assert_eq!(
        s.delete_session(&session.id, &user.id).await,
        Ok(true),
        "delete_session by the owner must return true"
    );
    assert_eq!(
        get_session(s, &session.id).await,
        None,
        "the session must be gone"
    );
    assert_eq!(
        s.delete_session(&session.id, &user.id).await,
        Ok(false),
        "deleting the same session again must return false"
    );
    assert_eq!(
        s.delete_session(&unique_hex(), &user.id).await,
        Ok(false),
        "delete_session of an unknown id must return false"
    );
    assert_eq!(
        list_ids(s, &user.id, NOW).await,
        vec![sibling.id.clone()],
        "the owner's other session must survive"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must survive"
    );
}

/// `delete_user_sessions` without `keep` deletes every session of the user (expired
/// ones included) and returns how many, leaving the user and other users' sessions.
pub async fn delete_user_sessions_all<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let mine = [
        live_session(s, &user.id).await,
        live_session(s, &user.id).await,
        stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW - HOUR)).await,
    ];
    let theirs = live_session(s, &other.id).await;

    assert_eq!(
        s.delete_user_sessions(&user.id, None).await,
        Ok(3),
        "delete_user_sessions must delete and count every session of the user"
    );
    for session in &mine {
        assert_eq!(
            get_session(s, &session.id).await,
            None,
            "session {:?} must be gone",
            session.id
        );
    }
    assert_eq!(
        get_session(s, &theirs.id).await.as_ref(),
        Some(&theirs),
        "another user's session must survive"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must survive"
    );
    assert_eq!(
        s.delete_user_sessions(&user.id, None).await,
        Ok(0),
        "a second delete_user_sessions finds nothing"
    );
    assert_eq!(
        s.delete_user_sessions(&new_user().id, None).await,
        Ok(0),
        "delete_user_sessions of an unknown user deletes nothing"
    );
}

/// `delete_user_sessions` with `keep` deletes every other session of the user and keeps
/// that one; a `keep` naming another user's session protects none of this user's and
/// does not touch the other user's.
pub async fn delete_user_sessions_keep<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let a = live_session(s, &user.id).await;
    let kept = live_session(s, &user.id).await;
    let c = live_session(s, &user.id).await;
    let theirs = live_session(s, &other.id).await;

    assert_eq!(
        s.delete_user_sessions(&user.id, Some(&kept.id)).await,
        Ok(2),
        "delete_user_sessions with keep must delete and count the others"
    );
    assert_eq!(get_session(s, &a.id).await, None);
    assert_eq!(get_session(s, &c.id).await, None);
    assert_eq!(
        get_session(s, &kept.id).await.as_ref(),
        Some(&kept),
        "the kept session must survive unchanged"
    );
    assert_eq!(
        s.delete_user_sessions(&user.id, Some(&kept.id)).await,
        Ok(0),
        "only the kept session is left"
    );
    assert_eq!(
        s.delete_user_sessions(&user.id, Some(&theirs.id)).await,
        Ok(1),
        "keep naming another user's session must not protect this user's session"
    );
    assert_eq!(get_session(s, &kept.id).await, None);
    assert_eq!(
        get_session(s, &theirs.id).await.as_ref(),
        Some(&theirs),
        "the other user's session must survive"
    );
}

/// `delete_expired_sessions` removes only sessions whose idle expiry is at or before
/// `now`, earliest first, at most `limit` per call, and returns how many; it goes by the
/// current idle expiry (as moved by a rotation).
///
/// Uses the reserved sweeper time range and a process-wide lock (see the module docs).
pub async fn delete_expired_sessions_sweeps_earliest_first<S: Storage>(s: &S) {
    let _serialised = SWEEP_LOCK.lock().await;
    // Clear leftovers in the reserved range (e.g. from an earlier run that panicked).
    s.delete_expired_sessions(SWEEP_CEILING, usize::MAX)
        .await
        .expect("delete_expired_sessions (clearing the reserved range)");

    let b = SWEEP_BASE;
    let user = stored_user(s).await;
    let mk = |expires: i64| {
        let mut x = new_session(&user.id, b - HOUR, expires);
        x.absolute_expires_at_ms = b + 2 * HOUR;
        x
    };
    // Created out of expiry order on purpose.
    let e3 = stored_session(s, mk(b + 300)).await;
    let e1 = stored_session(s, mk(b + 100)).await;
    let live = stored_session(s, mk(b + HOUR)).await;
    let moved = stored_session(s, mk(b + 150)).await;
    let e4 = stored_session(s, mk(b + 400)).await;
    let e2 = stored_session(s, mk(b + 200)).await;
    // Rotating `moved` pushes its idle expiry from b+150 to b+100+HOUR: the sweeper must
    // follow it.
    let mut req = rotate_req(&moved.id, &moved.refresh_hash, b + 100, 0);
    req.idle_ttl_ms = HOUR;
    let moved = expect_rotated(s, req, "rotating a session in the sweeper range").await;
    assert_eq!(moved.expires_at_ms, b + 100 + HOUR);

    let now = b + 400;
    let sweep = |at: i64, limit: usize| async move {
        s.delete_expired_sessions(at, limit)
            .await
            .unwrap_or_else(|e| panic!("delete_expired_sessions({at}, {limit}) failed: {e}"))
    };
    let present = |ids: Vec<String>| async move {
        let mut out = HashSet::new();
        for id in ids {
            if get_session(s, &id).await.is_some() {
                out.insert(id);
            }
        }
        out
    };
    let all: Vec<String> = [&e1, &e2, &e3, &e4, &live, &moved]
        .iter()
        .map(|x| x.id.clone())
        .collect();
    let set = |xs: &[&Session]| xs.iter().map(|x| x.id.clone()).collect::<HashSet<_>>();

    assert_eq!(
        sweep(b + 99, 10).await,
        0,
        "nothing is due before the earliest expiry"
    );
    assert_eq!(sweep(now, 0).await, 0, "a limit of 0 deletes nothing");
    assert_eq!(
        present(all.clone()).await.len(),
        6,
        "nothing may be deleted yet"
    );

    assert_eq!(sweep(now, 2).await, 2, "a sweep must honour its limit");
    assert_eq!(
        present(all.clone()).await,
        set(&[&e3, &e4, &live, &moved]),
        "the earliest-expiring sessions must go first"
    );

    assert_eq!(
        sweep(now, 10).await,
        2,
        "the rest of the due sessions (one expiring exactly at now) must go"
    );
    assert_eq!(
        present(all.clone()).await,
        set(&[&live, &moved]),
        "only sessions expiring after now (including the rotated one) may remain"
    );
    assert_eq!(sweep(now, 10).await, 0, "a repeated sweep finds nothing");

    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(2),
        "cleaning up: the two live sessions go with the user"
    );
}

// ---------------------------------------------------------------------------------------
