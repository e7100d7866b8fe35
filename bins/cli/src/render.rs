//! How results look: JSON values for `--json`, lines of text for people.

use auth_core::api::{ListSessionsResponse, SessionInfo, TokenPair, UserInfo, VerifyResponse};
use serde_json::{Value, json};

/// A unix-milliseconds timestamp as RFC 3339 UTC (`2024-05-01T12:00:00Z`); `-` for 0.
pub fn timestamp(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A user as JSON.
pub fn user_json(u: &UserInfo) -> Value {
    json!({ "id": u.id, "username": u.username, "created_at_ms": u.created_at_ms })
}

/// A token pair as JSON (secrets included: that is what the caller asked for).
pub fn tokens_json(t: &TokenPair) -> Value {
    json!({
        "access_token": t.access_token,
        "access_expires_at_ms": t.access_expires_at_ms,
        "refresh_token": t.refresh_token,
        "refresh_expires_at_ms": t.refresh_expires_at_ms,
        "session_id": t.session_id,
    })
}

/// `{ "user": ..., "tokens": ... }`, the login result and the `--save` file format.
pub fn login_json(user: Option<&UserInfo>, tokens: &TokenPair) -> Value {
    let mut v = json!({ "tokens": tokens_json(tokens) });
    if let Some(u) = user {
        v["user"] = user_json(u);
    }
    v
}

/// A verified token as JSON.
pub fn verify_json(v: &VerifyResponse) -> Value {
    json!({
        "valid": true,
        "user_id": v.user_id,
        "username": v.username,
        "session_id": v.session_id,
        "issued_at_ms": v.issued_at_ms,
        "expires_at_ms": v.expires_at_ms,
        "token_id": v.token_id,
        "amr": v.amr,
        "acr": v.acr,
        "roles": v.roles,
    })
}

/// A session as JSON.
pub fn session_json(s: &SessionInfo) -> Value {
    json!({
        "id": s.id,
        "current": s.current,
        "created_at_ms": s.created_at_ms,
        "last_used_at_ms": s.last_used_at_ms,
        "expires_at_ms": s.expires_at_ms,
        "ip": s.ip,
        "user_agent": s.user_agent,
    })
}

/// A session list as JSON.
pub fn sessions_json(r: &ListSessionsResponse) -> Value {
    json!({
        "user": r.user.as_ref().map(user_json),
        "sessions": r.sessions.iter().map(session_json).collect::<Vec<_>>(),
    })
}

/// Token lines for people.
pub fn tokens_text(t: &TokenPair, show_secrets: bool) -> String {
    let mut s = format!("session:        {}\n", t.session_id);
    if show_secrets {
        s.push_str(&format!("access token:   {}\n", t.access_token));
    }
    s.push_str(&format!(
        "access expires: {}\n",
        timestamp(t.access_expires_at_ms)
    ));
    if show_secrets {
        s.push_str(&format!("refresh token:  {}\n", t.refresh_token));
    }
    s.push_str(&format!(
        "refresh expires: {}\n",
        timestamp(t.refresh_expires_at_ms)
    ));
    s
}

/// A verified token for people.
pub fn verify_text(v: &VerifyResponse) -> String {
    let mut s = format!(
        "valid token for {} (user {})\nsession: {}\nissued:  {}\nexpires: {}\n",
        v.username,
        v.user_id,
        v.session_id,
        timestamp(v.issued_at_ms),
        timestamp(v.expires_at_ms)
    );
    if !v.roles.is_empty() {
        s.push_str(&format!("roles:   {}\n", v.roles.join(", ")));
    }
    s
}

/// A session list for people: one line per session, `*` marks the caller's.
pub fn sessions_text(r: &ListSessionsResponse) -> String {
    let mut s = String::new();
    if let Some(u) = &r.user {
        s.push_str(&format!(
            "{} (user {}): {} session{}\n",
            u.username,
            u.id,
            r.sessions.len(),
            if r.sessions.len() == 1 { "" } else { "s" }
        ));
    }
    s.push_str(&sessions_table(&r.sessions));
    s
}

/// One line per session, `*` marks the caller's.
pub fn sessions_table(sessions: &[SessionInfo]) -> String {
    let mut s = String::new();
    for x in sessions {
        s.push_str(&format!(
            "{} {}  created {}  last used {}  expires {}  ip {}  agent {}\n",
            if x.current { "*" } else { " " },
            x.id,
            timestamp(x.created_at_ms),
            timestamp(x.last_used_at_ms),
            timestamp(x.expires_at_ms),
            if x.ip.is_empty() { "-" } else { &x.ip },
            if x.user_agent.is_empty() {
                "-".to_owned()
            } else {
                format!("{:?}", x.user_agent)
            },
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0), "-");
        assert_eq!(timestamp(1000), "1970-01-01T00:00:01Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(timestamp(4_102_444_799_000), "2099-12-31T23:59:59Z");
        // Absurd values do not panic.
        let _ = timestamp(i64::MAX);
    }

    #[test]
    fn secrets_are_hidden_when_asked() {
        let t = TokenPair {
            access_token: "AAA".into(),
            access_expires_at_ms: 1000,
            refresh_token: "RRR".into(),
            refresh_expires_at_ms: 2000,
            session_id: "s1".into(),
        };
        let shown = tokens_text(&t, true);
        assert!(shown.contains("AAA") && shown.contains("RRR"));
        let hidden = tokens_text(&t, false);
        assert!(!hidden.contains("AAA") && !hidden.contains("RRR"));
        assert!(hidden.contains("s1"));
        let j = login_json(None, &t);
        assert_eq!(j["tokens"]["refresh_token"], "RRR");
        assert!(j.get("user").is_none());
    }

    #[test]
    fn sessions_render_both_ways() {
        let r = ListSessionsResponse {
            user: Some(UserInfo {
                id: "u1".into(),
                username: "alice".into(),
                created_at_ms: 1,
            }),
            sessions: vec![
                SessionInfo {
                    id: "s1".into(),
                    current: true,
                    ip: "127.0.0.1".into(),
                    user_agent: "curl \"x\"".into(),
                    ..SessionInfo::default()
                },
                SessionInfo {
                    id: "s2".into(),
                    ..SessionInfo::default()
                },
            ],
        };
        let text = sessions_text(&r);
        assert!(text.starts_with("alice (user u1): 2 sessions\n"), "{text}");
        assert!(text.contains("* s1"));
        assert!(text.contains("  s2"));
        let j = sessions_json(&r);
        assert_eq!(j["sessions"][0]["current"], true);
        assert_eq!(j["user"]["username"], "alice");
    }
}
