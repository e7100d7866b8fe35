//! The audit trail through `Auth`: a scripted workload produces exactly the expected
//! sequence of events (kind, outcome, reason, user, session, source, actor, detail),
//! each once, stamped with the node, and none carries a secret.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth_core::api::*;
use auth_core::audit::{Audit, AuditEvent, AuditKind, Outcome, RecentEvents};
use auth_core::mfa::TotpSecret;
use auth_core::{AuthApi, LockoutPolicy};
use common::*;

const IP: &str = "198.51.100.7";
const ADMIN_PW: &str = "the administrator's password";

fn client() -> Option<ClientInfo> {
    Some(ClientInfo {
        user_agent: "audit-test".into(),
        ip: IP.into(),
    })
}

async fn login(
    h: &Harness,
    name: &str,
    password: &str,
) -> Result<LoginResponse, auth_core::AuthError> {
    h.auth
        .login(LoginRequest {
            username: name.into(),
            password: password.into(),
            client: client(),
        })
        .await
}

async fn register(h: &Harness, name: &str) -> String {
    h.auth
        .register(RegisterRequest {
            username: name.into(),
            password: PASSWORD.into(),
            client: client(),
        })
        .await
        .unwrap()
        .user
        .unwrap()
        .id
}

/// An event reduced to what the test compares: users and sessions by label.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: AuditKind,
    outcome: Outcome,
    reason: String,
    user: String,
    actor: String,
    detail: String,
    has_session: bool,
}

fn seen(e: &AuditEvent, names: &[(&str, &str)]) -> Seen {
    let label = |id: &str| {
        names
            .iter()
            .find(|(_, i)| *i == id)
            .map_or(id.to_owned(), |(n, _)| (*n).to_owned())
    };
    Seen {
        kind: e.kind,
        outcome: e.outcome,
        reason: e.reason.clone(),
        user: label(&e.user_id),
        actor: label(&e.actor_id),
        detail: e.detail.clone(),
        has_session: !e.session_id.is_empty(),
    }
}

fn ok(kind: AuditKind, user: &str, detail: &str, has_session: bool) -> Seen {
    Seen {
        kind,
        outcome: Outcome::Success,
        reason: String::new(),
        user: user.into(),
        actor: String::new(),
        detail: detail.into(),
        has_session,
    }
}

fn failed(kind: AuditKind, user: &str, reason: &str) -> Seen {
    Seen {
        kind,
        outcome: Outcome::Failure,
        reason: reason.into(),
        user: user.into(),
        actor: String::new(),
        detail: String::new(),
        has_session: false,
    }
}

fn by_admin(kind: AuditKind, user: &str, detail: &str) -> Seen {
    Seen {
        actor: "root".into(),
        ..ok(kind, user, detail, false)
    }
}

#[tokio::test]
async fn a_workload_produces_exactly_the_expected_events() {
    let recent = Arc::new(RecentEvents::new(1000));
    let h = harness_with(|c| {
        c.audit = Audit {
            sink: recent.clone(),
            node: "node-7".into(),
            recent: None,
        };
        c.refresh_grace = Duration::ZERO;
        // Throttling by source is tested elsewhere; this workload comes from one.
        c.throttle = auth_core::ThrottlePolicy::disabled();
        c.lockout = LockoutPolicy {
            max_failures: 3,
            ..LockoutPolicy::default()
        };
    });
    use AuditKind::*;
    let mut want = Vec::new();

    // Registration and sign-ins.
    let alice = h
        .auth
        .register(RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            client: client(),
        })
        .await
        .unwrap()
        .user
        .unwrap();
    want.push(ok(Registered, "alice", "", false));
    assert!(login(&h, "alice", "a wrong password here").await.is_err());
    want.push(failed(LoginFailed, "alice", "invalid_credentials"));
    assert!(login(&h, "nobody", PASSWORD).await.is_err());
    want.push(failed(LoginFailed, "", "invalid_credentials"));
    let t1 = login(&h, "alice", PASSWORD).await.unwrap().tokens.unwrap();
    want.push(ok(LoginSucceeded, "alice", "pwd", true));

    // A refresh, then the rotated token again: reuse.
    let t1b = h.refresh(&t1.refresh_token).await.unwrap();
    let reuse = h
        .auth
        .refresh(RefreshRequest {
            refresh_token: t1.refresh_token.clone(),
            client: client(),
        })
        .await;
    assert_eq!(err_code(reuse), "refresh_token_reused");
    want.push(Seen {
        has_session: true,
        ..failed(RefreshReuseDetected, "alice", "refresh_token_reused")
    });
    assert!(h.verify(&t1b.access_token).await.is_err());

    // Password change (one wrong, one right), logout, logout-all, session revoked.
    let t2 = login(&h, "alice", PASSWORD).await.unwrap().tokens.unwrap();
    want.push(ok(LoginSucceeded, "alice", "pwd", true));
    let change = |current: &str| {
        h.auth.change_password(ChangePasswordRequest {
            access_token: t2.access_token.clone(),
            current_password: current.into(),
            new_password: "a brand new password".into(),
            client: client(),
        })
    };
    assert!(change("not the password at all").await.is_err());
    want.push(Seen {
        has_session: true,
        ..failed(PasswordChanged, "alice", "invalid_credentials")
    });
    change(PASSWORD).await.unwrap();
    want.push(ok(PasswordChanged, "alice", "", true));
    h.auth
        .logout(LogoutRequest {
            access_token: t2.access_token.clone(),
            client: client(),
            ..Default::default()
        })
        .await
        .unwrap();
    want.push(ok(Logout, "alice", "", true));
    let t3 = login(&h, "alice", "a brand new password")
        .await
        .unwrap()
        .tokens
        .unwrap();
    want.push(ok(LoginSucceeded, "alice", "pwd", true));
    let t4 = login(&h, "alice", "a brand new password")
        .await
        .unwrap()
        .tokens
        .unwrap();
    want.push(ok(LoginSucceeded, "alice", "pwd", true));
    h.auth
        .revoke_session(RevokeSessionRequest {
            access_token: t3.access_token.clone(),
            session_id: t4.session_id.clone(),
            client: client(),
        })
        .await
        .unwrap();
    want.push(ok(SessionRevoked, "alice", "", true));
    h.auth
        .logout_all(LogoutAllRequest {
            access_token: t3.access_token.clone(),
            client: client(),
        })
        .await
        .unwrap();
    want.push(ok(LogoutAll, "alice", "1 sessions", true));

    // Lockout: the third wrong password locks; the fourth try is refused as locked.
    let bob = register(&h, "bob").await;
    want.push(ok(Registered, "bob", "", false));
    for _ in 0..3 {
        assert!(login(&h, "bob", "a wrong password here").await.is_err());
        want.push(failed(LoginFailed, "bob", "invalid_credentials"));
    }
    // The lock is recorded as the third failure charges it, before that failure's
    // own event.
    let third = want.pop().unwrap();
    want.push(Seen {
        detail: "lockout".into(),
        ..failed(Locked, "bob", "")
    });
    want.last_mut().unwrap().outcome = Outcome::Success;
    want.push(third);
    assert_eq!(err_code(login(&h, "bob", PASSWORD).await), "locked");
    want.push(failed(LoginFailed, "bob", "locked"));

    // TOTP: enrolment, the second step (a wrong code, a right one, a recovery code).
    let carol = register(&h, "carol").await;
    want.push(ok(Registered, "carol", "", false));
    let carol_tokens = login(&h, "carol", PASSWORD).await.unwrap().tokens.unwrap();
    want.push(ok(LoginSucceeded, "carol", "pwd", true));
    let started = h
        .auth
        .totp_enroll(TotpEnrollRequest {
            access_token: carol_tokens.access_token.clone(),
        })
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(&started.secret).unwrap();
    let step = |h: &Harness| u64::try_from(h.now_ms() / 1000).unwrap() / 30;
    let codes = h
        .auth
        .totp_confirm(TotpConfirmRequest {
            access_token: carol_tokens.access_token.clone(),
            code: secret.code_at_step(step(&h)),
            client: client(),
        })
        .await
        .unwrap()
        .recovery_codes;
    want.push(ok(SecondFactorAdded, "carol", "totp", true));
    let ticket = login(&h, "carol", PASSWORD).await.unwrap().mfa_ticket;
    want.push(ok(SecondFactorRequired, "carol", "", false));
    let second = |ticket: String, code: String| {
        h.auth.login_mfa(LoginMfaRequest {
            mfa_ticket: ticket,
            code,
            client: client(),
        })
    };
    assert!(second(ticket.clone(), "000000".into()).await.is_err());
    want.push(failed(LoginFailed, "carol", "invalid_code"));
    h.advance(Duration::from_secs(30));
    second(ticket, secret.code_at_step(step(&h))).await.unwrap();
    want.push(ok(LoginSucceeded, "carol", "pwd,otp", true));
    let ticket = login(&h, "carol", PASSWORD).await.unwrap().mfa_ticket;
    want.push(ok(SecondFactorRequired, "carol", "", false));
    second(ticket, codes[0].clone()).await.unwrap();
    want.push(ok(RecoveryCodeUsed, "carol", "9 left", false));
    want.push(ok(LoginSucceeded, "carol", "pwd,otp", true));

    // Administration.
    let (root, _) = h.auth.bootstrap_admin("root", ADMIN_PW).await.unwrap();
    want.push(ok(AdminBootstrapped, "root", "created", false));
    let admin = login(&h, "root", ADMIN_PW).await.unwrap().tokens.unwrap();
    want.push(ok(LoginSucceeded, "root", "pwd", true));
    let target = |user: &str| AdminUserRequest {
        access_token: admin.access_token.clone(),
        user: user.into(),
        client: client(),
    };
    let role = |role: &str| AdminRoleRequest {
        access_token: admin.access_token.clone(),
        user: "bob".into(),
        role: role.into(),
        client: client(),
    };
    h.auth.admin_lock_user(target("bob")).await.unwrap();
    want.push(by_admin(Locked, "bob", "admin"));
    h.auth.admin_unlock_user(target("bob")).await.unwrap();
    want.push(by_admin(Unlocked, "bob", ""));
    h.auth.admin_grant_role(role("support")).await.unwrap();
    want.push(by_admin(RoleGranted, "bob", "support"));
    h.auth.admin_revoke_role(role("support")).await.unwrap();
    want.push(by_admin(RoleRevoked, "bob", "support"));
    h.auth.admin_logout_user(target("carol")).await.unwrap();
    want.push(by_admin(LogoutAll, "carol", "3 sessions"));
    h.auth.admin_delete_user(target("bob")).await.unwrap();
    want.push(by_admin(AccountDeleted, "bob", ""));
    // A non-admin's attempt is refused and changes nothing: no admin event.
    let refused = h
        .auth
        .admin_lock_user(AdminUserRequest {
            access_token: t3.access_token.clone(),
            user: "carol".into(),
            client: client(),
        })
        .await;
    assert!(refused.is_err());

    let events = recent.snapshot();
    let names = [
        ("alice", alice.id.as_str()),
        ("bob", bob.as_str()),
        ("carol", carol.as_str()),
        ("root", root.id.as_str()),
    ];
    let got: Vec<Seen> = events.iter().map(|e| seen(e, &names)).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "event {i}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for e in &events {
        assert_eq!(e.node, "node-7");
        if e.kind != AdminBootstrapped {
            assert_eq!(e.source, IP, "{e:?}");
        }
    }
    // No secret in any event.
    let all = serde_json::to_string(&events).unwrap();
    for secret in [
        PASSWORD,
        "a brand new password",
        ADMIN_PW,
        "a wrong password here",
        &t1.refresh_token,
        &t1.access_token,
        &started.secret,
        &codes[0],
    ] {
        assert!(
            !all.contains(secret),
            "a secret leaked into the audit trail"
        );
    }
}
