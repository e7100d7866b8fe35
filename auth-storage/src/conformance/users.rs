//! Users: creation, lookup, compare-and-set updates, deletion.

use super::*;

// ---------------------------------------------------------------------------------------
// Users.
// ---------------------------------------------------------------------------------------

/// `create_user` stores the user with `version = 1` (whatever version the caller sent),
/// keeps every other field, and returns the stored record; both lookups then find it.
pub async fn create_user_sets_version_one<S: Storage>(s: &S) {
    let mut user = new_user();
    user.version = 42;
    user.failed_logins = 2;
    user.locked_until_ms = NOW + MINUTE;
    let stored = s
        .create_user(user.clone())
        .await
        .expect("create_user of a fresh user");
    assert_eq!(stored.version, 1, "a created user must have version 1");
    assert_eq!(
        stored,
        User {
            version: 1,
            ..user.clone()
        },
        "create_user must keep every field but the version"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&stored),
        "get_user must return the created user"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&stored),
        "get_user_by_username must return the created user"
    );
}

/// A second user with an id that is taken is refused with `UserExists`, even under a
/// fresh username, and the first user is left as it was.
pub async fn create_user_rejects_duplicate_id<S: Storage>(s: &S) {
    let first = stored_user(s).await;
    let mut dup = new_user();
    dup.id = first.id.clone();
    assert_eq!(
        s.create_user(dup.clone()).await,
        Err(StorageError::UserExists),
        "create_user with a taken id must fail with UserExists"
    );
    assert_eq!(
        get_user(s, &first.id).await.as_ref(),
        Some(&first),
        "the first user must be unchanged"
    );
    assert_eq!(
        get_user_by_username(s, &dup.username_key).await,
        None,
        "the refused user's username must not have been claimed"
    );
}

/// A second user with a `username_key` that is taken is refused with `UserExists`, and
/// nothing is stored under the second id.
pub async fn create_user_rejects_duplicate_username<S: Storage>(s: &S) {
    let first = stored_user(s).await;
    let mut dup = new_user();
    dup.username_key = first.username_key.clone();
    assert_eq!(
        s.create_user(dup.clone()).await,
        Err(StorageError::UserExists),
        "create_user with a taken username_key must fail with UserExists"
    );
    assert_eq!(
        get_user(s, &dup.id).await,
        None,
        "the refused user must not be stored"
    );
    assert_eq!(
        get_user_by_username(s, &first.username_key).await.as_ref(),
        Some(&first),
        "the username must still belong to the first user"
    );
}

/// The second-factor state of a user (sealed TOTP secret, confirmation, last accepted
/// step, recovery-code hashes) is stored by a compare-and-set update and read back as
/// written; spending a recovery code and moving the last step in one update leaves the
/// others intact, and an update made from the version before it conflicts (so one code
/// cannot be accepted twice by racing requests).
pub async fn update_user_keeps_second_factor_state<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut enrolled = user.clone();
    enrolled.totp_sealed = format!("sealed-{}", unique_hex());
    enrolled.totp_confirmed = true;
    enrolled.totp_last_step = 60_000_000;
    enrolled.recovery_code_hashes = (0..10).map(|i| format!("hash-{i}")).collect();
    enrolled.updated_at_ms = NOW;
    let stored = s
        .update_user(enrolled.clone())
        .await
        .expect("update_user with second-factor state");
    assert_eq!(stored.version, user.version + 1);
    let read = get_user(s, &user.id)
        .await
        .expect("the user is still there");
    assert_eq!(read.totp_sealed, enrolled.totp_sealed);
    assert!(read.totp_confirmed);
    assert_eq!(read.totp_last_step, 60_000_000);
    assert_eq!(read.recovery_code_hashes, enrolled.recovery_code_hashes);

    // One code accepted: the step moves and a recovery code is spent, in one update.
    let mut used = read.clone();
    used.totp_last_step += 1;
    used.recovery_code_hashes.remove(3);
    let after = s.update_user(used.clone()).await.expect("second update");
    // The same acceptance replayed from the older version is refused.
    let mut replay = read.clone();
    replay.totp_last_step += 1;
    assert_eq!(
        s.update_user(replay).await,
        Err(StorageError::Conflict),
        "an update from a stale version must conflict"
    );
    let read = get_user(s, &user.id)
        .await
        .expect("the user is still there");
    assert_eq!(read, after);
    assert_eq!(read.recovery_code_hashes.len(), 9);
    assert!(!read.recovery_code_hashes.contains(&"hash-3".to_owned()));
}

/// A user with an empty id is refused with `Invalid` and not stored.
pub async fn create_user_rejects_empty_id<S: Storage>(s: &S) {
    let mut user = new_user();
    user.id = String::new();
    let res = s.create_user(user.clone()).await;
    assert!(
        matches!(res, Err(StorageError::Invalid(_))),
        "create_user with an empty id must fail with Invalid, got {res:?}"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await,
        None,
        "the refused user must not be stored"
    );
}

/// `get_user` and `get_user_by_username` find an existing user and return `None` (not an
/// error) for an unknown id or username.
pub async fn get_user_found_and_missing<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "get_user of a stored user"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&user),
        "get_user_by_username of a stored user"
    );
    let unknown = new_user();
    assert_eq!(
        get_user(s, &unknown.id).await,
        None,
        "get_user of an unknown id"
    );
    assert_eq!(
        get_user_by_username(s, &unknown.username_key).await,
        None,
        "get_user_by_username of an unknown username_key"
    );
}

/// `username_taken_hint` is false for a name never created and, once a user exists,
/// becomes true (a replicated backend may answer from a lagging replica, so this waits
/// for it, with a deadline).
pub async fn username_taken_hint_follows_creation<S: Storage>(s: &S) {
    let unknown = new_user();
    assert!(
        !s.username_taken_hint(&unknown.username_key)
            .await
            .expect("hint"),
        "an unknown username looks taken"
    );
    let user = stored_user(s).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s
        .username_taken_hint(&user.username_key)
        .await
        .expect("hint")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a created username never looked taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `update_user` with the stored version replaces the record, increments the version
/// and returns what it stored; successive updates keep incrementing it.
pub async fn update_user_cas_bumps_version<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut change = user.clone();
    change.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into();
    change.failed_logins = 3;
    change.locked_until_ms = NOW + 5 * MINUTE;
    change.updated_at_ms = NOW;
    let updated = s
        .update_user(change.clone())
        .await
        .expect("update_user at the stored version");
    assert_eq!(updated.version, 2, "update_user must increment the version");
    assert_eq!(
        updated,
        User {
            version: 2,
            ..change
        },
        "update_user must store every mutable field as given"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&updated),
        "get_user must see the update"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&updated),
        "get_user_by_username must see the update"
    );

    let mut again = updated.clone();
    again.failed_logins = 0;
    let again = s
        .update_user(again)
        .await
        .expect("second update_user at the new version");
    assert_eq!(
        again.version, 3,
        "a second update must increment the version again"
    );
    assert_eq!(again.failed_logins, 0);
}

/// `update_user` with a version other than the stored one fails with `Conflict` and
/// changes nothing.
pub async fn update_user_stale_version_conflicts<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut first = user.clone();
    first.failed_logins = 1;
    let current = s
        .update_user(first)
        .await
        .expect("update_user at the stored version");

    let mut stale = user.clone(); // still version 1
    stale.failed_logins = 9;
    assert_eq!(
        s.update_user(stale).await,
        Err(StorageError::Conflict),
        "update_user with a stale version must fail with Conflict"
    );
    let mut ahead = current.clone();
    ahead.version += 5;
    ahead.failed_logins = 9;
    assert_eq!(
        s.update_user(ahead).await,
        Err(StorageError::Conflict),
        "update_user with a version ahead of the stored one must fail with Conflict"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&current),
        "a conflicting update must change nothing"
    );
}

/// `update_user` of a user that does not exist fails with `NotFound` and creates nothing.
pub async fn update_user_missing_not_found<S: Storage>(s: &S) {
    let mut ghost = new_user();
    ghost.version = 1;
    assert_eq!(
        s.update_user(ghost.clone()).await,
        Err(StorageError::NotFound),
        "update_user of an unknown user must fail with NotFound"
    );
    assert_eq!(
        get_user(s, &ghost.id).await,
        None,
        "update_user must not create a user"
    );
    assert_eq!(get_user_by_username(s, &ghost.username_key).await, None);
}

/// `update_user` that changes `username_key` fails with `Invalid`: the user, its old
/// username and the version are unchanged, and the new username is not claimed.
pub async fn update_user_rejects_username_key_change<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut change = user.clone();
    change.username_key = new_user().username_key;
    let res = s.update_user(change.clone()).await;
    assert!(
        matches!(res, Err(StorageError::Invalid(_))),
        "update_user changing username_key must fail with Invalid, got {res:?}"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must be unchanged"
    );
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&user),
        "the old username must still map to the user"
    );
    assert_eq!(
        get_user_by_username(s, &change.username_key).await,
        None,
        "the new username must not be claimed"
    );
}

/// `update_user` that changes `created_at_ms` fails with `Invalid` and changes nothing.
pub async fn update_user_rejects_created_at_change<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut change = user.clone();
    change.created_at_ms += 1;
    let res = s.update_user(change).await;
    assert!(
        matches!(res, Err(StorageError::Invalid(_))),
        "update_user changing created_at_ms must fail with Invalid, got {res:?}"
    );
    assert_eq!(
        get_user(s, &user.id).await.as_ref(),
        Some(&user),
        "the user must be unchanged"
    );
}

/// `delete_user` removes the user and every one of its sessions (expired ones included),
/// returns how many sessions went, and leaves other users' sessions alone.
pub async fn delete_user_removes_user_and_sessions<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let other = stored_user(s).await;
    let mine = [
        live_session(s, &user.id).await,
        live_session(s, &user.id).await,
        stored_session(s, new_session(&user.id, NOW - 2 * HOUR, NOW - HOUR)).await,
    ];
    let theirs = live_session(s, &other.id).await;

    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(3),
        "delete_user must return how many sessions (expired included) it deleted"
    );
    assert_eq!(get_user(s, &user.id).await, None, "the user must be gone");
    assert_eq!(
        get_user_by_username(s, &user.username_key).await,
        None,
        "the username must no longer resolve"
    );
    for session in &mine {
        assert_eq!(
            get_session(s, &session.id).await,
            None,
            "the user's session {:?} must be gone",
            session.id
        );
        assert!(!is_live(s, &session.id, &user.id, NOW).await);
    }
    assert!(
        list_ids(s, &user.id, NOW).await.is_empty(),
        "no sessions may be listed"
    );
    assert_eq!(
        get_session(s, &theirs.id).await.as_ref(),
        Some(&theirs),
        "another user's session must survive"
    );
    assert_eq!(
        get_user(s, &other.id).await.as_ref(),
        Some(&other),
        "another user must survive"
    );
}

/// After `delete_user` the username is free: a new user (new id) can take it.
pub async fn delete_user_frees_username<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    assert_eq!(
        s.delete_user(&user.id).await,
        Ok(0),
        "delete_user of a user without sessions"
    );
    let mut successor = new_user();
    successor.username_key = user.username_key.clone();
    successor.username = user.username.clone();
    let created = s
        .create_user(successor.clone())
        .await
        .expect("a deleted user's username must be free again");
    assert_eq!(created.version, 1);
    assert_eq!(
        get_user_by_username(s, &user.username_key).await.as_ref(),
        Some(&created),
        "the username must now resolve to the new user"
    );
    assert_eq!(
        get_user(s, &user.id).await,
        None,
        "the deleted user must stay deleted"
    );
}

/// `delete_user` of an unknown user (or one already deleted) fails with `NotFound`.
pub async fn delete_user_missing_not_found<S: Storage>(s: &S) {
    assert_eq!(
        s.delete_user(&new_user().id).await,
        Err(StorageError::NotFound),
        "delete_user of an unknown id must fail with NotFound"
    );
    let user = stored_user(s).await;
    assert_eq!(s.delete_user(&user.id).await, Ok(0));
    assert_eq!(
        s.delete_user(&user.id).await,
        Err(StorageError::NotFound),
        "deleting a user twice must fail with NotFound the second time"
    );
}

// ---------------------------------------------------------------------------------------

/// Roles and an administrator's lock are stored by a compare-and-set update, read back
/// as written, and cleared the same way.
pub async fn update_user_keeps_roles_and_admin_lock<S: Storage>(s: &S) {
    let user = stored_user(s).await;
    let mut admin = user.clone();
    admin.roles = vec!["admin".into(), "support".into()];
    admin.admin_locked_at_ms = NOW;
    let stored = s.update_user(admin.clone()).await.expect("update_user");
    let read = get_user(s, &user.id)
        .await
        .expect("the user is still there");
    assert_eq!(read, stored);
    assert_eq!(read.roles, admin.roles);
    assert_eq!(read.admin_locked_at_ms, NOW);
    let mut cleared = read.clone();
    cleared.roles.clear();
    cleared.admin_locked_at_ms = 0;
    s.update_user(cleared).await.expect("second update");
    let read = get_user(s, &user.id)
        .await
        .expect("the user is still there");
    assert!(read.roles.is_empty() && read.admin_locked_at_ms == 0);
}

/// `list_users` returns users in `username_key` order, a page at a time: `after`
/// starts past a key, `limit` bounds the page, `next` says where the following page
/// starts (`None` at the end), and `contains` keeps users whose key contains the text
/// or whose id equals it. Pages may be short (the scan is bounded), so the walk
/// follows `next` until it is `None`.
pub async fn list_users_pages_in_key_order_and_filters<S: Storage>(s: &S) {
    let tag = unique_hex();
    let mut users = Vec::new();
    // Created out of key order on purpose.
    for i in [3, 0, 4, 1, 2] {
        let mut u = new_user();
        u.username = format!("Listed-{tag}-{i}");
        u.username_key = format!("listed-{tag}-{i}");
        users.push(s.create_user(u).await.expect("create_user"));
    }
    users.sort_by(|a, b| a.username_key.cmp(&b.username_key));

    async fn walk<S: Storage>(s: &S, contains: &str, after: &str, limit: usize) -> Vec<User> {
        let mut req = ListUsers {
            after: after.to_owned(),
            contains: contains.to_owned(),
            limit,
        };
        let mut found = Vec::new();
        for _ in 0..100_000 {
            let page = s.list_users(req.clone()).await.expect("list_users");
            assert!(page.users.len() <= limit, "a page must respect the limit");
            if let (Some(next), Some(last)) = (&page.next, page.users.last()) {
                assert!(
                    next.as_str() >= last.username_key.as_str(),
                    "next must not go back before the page's last user"
                );
            }
            found.extend(page.users);
            match page.next {
                Some(next) => req.after = next,
                None => return found,
            }
        }
        panic!("list_users never reached the end");
    }

    assert_eq!(
        walk(s, &tag, "", 2).await,
        users,
        "every user whose key contains the text, in key order, across pages"
    );
    assert_eq!(
        walk(s, &tag, &users[2].username_key, 1000).await,
        users[3..].to_vec(),
        "after skips the key it names and everything before it"
    );
    assert_eq!(
        walk(s, &users[1].id, "", 10).await,
        vec![users[1].clone()],
        "an id finds its user"
    );
    assert!(
        walk(s, &format!("nobody-{}", unique_hex()), "", 10)
            .await
            .is_empty(),
        "text nobody's key contains finds nobody"
    );
    let everyone = walk(s, "", "", 1000).await;
    let keys: Vec<&str> = everyone.iter().map(|u| u.username_key.as_str()).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "without a filter every user comes once, in key order"
    );
    for u in &users {
        assert!(everyone.contains(u), "{} is listed", u.username_key);
    }
}
