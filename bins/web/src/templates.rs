//! The askama templates (in `templates/`) and the small view helpers they need.
//! Output is HTML-escaped by askama.

use askama::Template;
use auth_core::api::SessionInfo;

tokio::task_local! {
    /// The path the site is mounted at (`""` at the root, `"/auth"` when nested there),
    /// set by [`with_mount_path`] around every request.
    static MOUNT_PATH: std::sync::Arc<str>;
}

/// Runs `request` (a request to the site) with `mount` as the path that links and
/// redirects start with.
pub(crate) async fn with_mount_path<F: std::future::Future>(mount: &str, request: F) -> F::Output {
    let mount = mount.trim_end_matches('/');
    MOUNT_PATH.scope(mount.into(), request).await
}

/// The path the site is mounted at: `""` at the root.
pub(crate) fn mount_path() -> String {
    MOUNT_PATH.try_with(|m| m.to_string()).unwrap_or_default()
}

/// A `303 See Other` to `path` (absolute within the site, e.g. `/account`), under the
/// path the site is mounted at.
pub(crate) fn redirect(path: &str) -> axum::response::Redirect {
    axum::response::Redirect::to(&format!("{}{path}", mount_path()))
}

/// The header's sign-in state, and the path the site's links start with.
#[derive(Debug)]
pub(crate) struct Nav {
    /// The signed-in username, if any.
    pub(crate) user: Option<String>,
    /// CSRF token for the header's log-out form (only set when signed in).
    pub(crate) csrf: String,
    /// Where the site is mounted (`""`, or e.g. `/auth`): every link starts with it.
    pub(crate) base: String,
    /// Whether the visitor holds the `admin` role (the header links the admin pages).
    pub(crate) admin: bool,
}

impl Default for Nav {
    fn default() -> Self {
        Self {
            user: None,
            csrf: String::new(),
            base: mount_path(),
            admin: false,
        }
    }
}

/// `GET /`.
#[derive(Template)]
#[template(path = "index.html")]
pub(crate) struct IndexPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
}

/// `GET|POST /signup` and `GET|POST /login`: one form, two uses.
#[derive(Template)]
#[template(path = "credentials.html")]
pub(crate) struct CredentialsPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    /// `/signup` or `/login`.
    pub(crate) action: &'static str,
    pub(crate) csrf: String,
    pub(crate) username: String,
    pub(crate) error: Option<String>,
    /// True on the sign-up page.
    pub(crate) signup: bool,
}

/// `GET|POST /login/mfa`: the second step of a login.
#[derive(Template)]
#[template(path = "mfa_login.html")]
pub(crate) struct MfaLoginPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) csrf: String,
    pub(crate) error: Option<String>,
}

/// One row of the session table.
#[derive(Debug)]
pub(crate) struct SessionRow {
    pub(crate) id: String,
    pub(crate) device: String,
    pub(crate) user_agent: String,
    pub(crate) ip: String,
    pub(crate) created: String,
    pub(crate) last_used: String,
    pub(crate) current: bool,
}

impl From<&SessionInfo> for SessionRow {
    fn from(s: &SessionInfo) -> Self {
        Self {
            id: s.id.clone(),
            device: describe_device(&s.user_agent),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            created: format_time(s.created_at_ms),
            last_used: format_time(s.last_used_at_ms),
            current: s.current,
        }
    }
}

/// Which form on the account page an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountForm {
    /// The session list (revoke, sign out everywhere).
    Sessions,
    /// Change password.
    Password,
    /// Delete account.
    Delete,
}

/// `GET /account`.
#[derive(Template)]
#[template(path = "account.html")]
pub(crate) struct AccountPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) csrf: String,
    pub(crate) username: String,
    pub(crate) created: String,
    pub(crate) sessions: Vec<SessionRow>,
    pub(crate) sessions_error: Option<String>,
    pub(crate) password_error: Option<String>,
    pub(crate) delete_error: Option<String>,
}

/// Any error.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) status: u16,
    pub(crate) message: String,
}

/// The text for a `?notice=` key set by a redirect after a successful action.
pub(crate) fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "welcome" => "Welcome! Your account is ready and you are signed in.",
        "signed_out" => "You have been signed out.",
        "signed_out_everywhere" => "You have been signed out on every device.",
        "password_changed" => {
            "Your password has been changed. Your other sessions were signed out."
        }
        "session_revoked" => "That session has been signed out.",
        "account_deleted" => "Your account has been deleted.",
        "mfa_expired" => "That sign-in has expired. Please log in again.",
        "totp_disabled" => "The authenticator app has been removed from your account.",
        "passkey_added" => "Your passkey has been added.",
        "totp_enabled" => {
            "Your authenticator app is set up. Your recovery codes stay as they were."
        }
        "passkey_removed" => "The passkey has been removed.",
        "user_locked" => "The account is locked and its sessions have ended.",
        "user_unlocked" => "The account is unlocked.",
        "user_signed_out" => "Every session of the account has ended.",
        "user_deleted" => "The account has been deleted.",
        "role_granted" => "The role is granted; it takes effect at the user's next sign-in.",
        "role_revoked" => "The role is revoked and the user's sessions have ended.",
        _ => return None,
    })
}

/// `2025-03-01 14:05 UTC` for unix milliseconds.
pub(crate) fn format_time(ms: i64) -> String {
    let t = auth_core::clock::UtcDateTime::from_unix_ms(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// "Firefox on Linux" from a user agent; the raw string is shown on hover.
pub(crate) fn describe_device(ua: &str) -> String {
    if ua.trim().is_empty() {
        return "Unknown device".into();
    }
    let has = |needle: &str| ua.contains(needle);
    let browser = if has("Edg/") {
        "Edge"
    } else if has("OPR/") {
        "Opera"
    } else if has("Firefox/") {
        "Firefox"
    } else if has("Chrome/") || has("Chromium/") || has("HeadlessChrome/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if has("curl/") {
        "curl"
    } else {
        return ua
            .split_whitespace()
            .next()
            .unwrap_or("Unknown")
            .chars()
            .take(40)
            .collect();
    };
    let os = if has("Android") {
        "Android"
    } else if has("iPhone") || has("iPad") {
        "iOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Linux") {
        "Linux"
    } else {
        return browser.into();
    };
    format!("{browser} on {os}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_740_837_900_000), "2025-03-01 14:05 UTC");
        assert_eq!(format_time(-1), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn devices_are_summarised() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36";
        assert_eq!(describe_device(chrome), "Chrome on Linux");
        assert_eq!(
            describe_device("Mozilla/5.0 (Windows NT 10.0; rv:120.0) Gecko/20100101 Firefox/120.0"),
            "Firefox on Windows"
        );
        assert_eq!(describe_device("reqwest/0.12"), "reqwest/0.12");
        assert_eq!(describe_device(""), "Unknown device");
    }

    #[test]
    fn unknown_notices_are_ignored() {
        assert!(notice_text("welcome").is_some());
        assert!(notice_text("<script>").is_none());
    }

    #[test]
    fn pages_escape_what_users_typed() {
        let page = CredentialsPage {
            title: "Log in".into(),
            nav: Nav::default(),
            notice: None,
            action: "/login",
            csrf: "t".into(),
            username: "<script>alert(1)</script>".into(),
            error: Some("bad & worse".into()),
            signup: false,
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"));
        assert!(
            html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
            "{html}"
        );
        assert!(html.contains("bad &amp; worse") || html.contains("bad &#38; worse"));
    }
}

/// A user in the admin pages.
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) created: String,
    pub(crate) roles: String,
    /// When an administrator locked the account, if they did.
    pub(crate) locked: Option<String>,
    pub(crate) totp: bool,
    pub(crate) passkeys: u32,
}

impl From<&auth_core::api::AdminUserInfo> for UserRow {
    fn from(u: &auth_core::api::AdminUserInfo) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            created: format_time(u.created_at_ms),
            roles: u.roles.join(", "),
            locked: (u.locked_at_ms > 0).then(|| format_time(u.locked_at_ms)),
            totp: u.totp,
            passkeys: u.passkeys,
        }
    }
}

/// `GET /admin/users`: the list with search.
#[derive(Template)]
#[template(path = "admin_users.html")]
pub(crate) struct AdminUsersPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) search: String,
    pub(crate) users: Vec<UserRow>,
    /// The next page's token; empty on the last page.
    pub(crate) next_page: String,
    pub(crate) first_page: bool,
}

/// `GET /admin/users/{user}`: one user, their sessions, and the actions.
#[derive(Template)]
#[template(path = "admin_user.html")]
pub(crate) struct AdminUserPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) csrf: String,
    /// The administrator is looking at their own account (no lock, delete, revoke).
    pub(crate) myself: bool,
    pub(crate) user: UserRow,
    pub(crate) sessions: Vec<SessionRow>,
}

/// A member on the cluster page, with its bar in the lag chart.
pub(crate) struct ClusterBar {
    pub(crate) id: u64,
    pub(crate) addr: String,
    pub(crate) role: String,
    pub(crate) term: u64,
    pub(crate) applied_index: u64,
    pub(crate) last_log_index: u64,
    pub(crate) lag: u64,
    pub(crate) reachable: bool,
    pub(crate) error: String,
    /// The bar's top, in SVG units.
    pub(crate) y: u64,
    /// The bar's length, in SVG units (the longest lag is the full width).
    pub(crate) width: u64,
}

/// `GET /admin/cluster`.
#[derive(Template)]
#[template(path = "admin_cluster.html")]
pub(crate) struct AdminClusterPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    /// `memory` or `raft`.
    pub(crate) storage: String,
    pub(crate) cluster_id: String,
    pub(crate) serving_node: u64,
    pub(crate) bars: Vec<ClusterBar>,
    pub(crate) chart_height: u64,
}

/// An audit event on the events page.
pub(crate) struct EventRow {
    pub(crate) time: String,
    pub(crate) kind: String,
    pub(crate) outcome: String,
    pub(crate) reason: String,
    pub(crate) user_id: String,
    pub(crate) source: String,
    pub(crate) node: String,
    pub(crate) actor_id: String,
    pub(crate) detail: String,
}

/// `GET /admin/events`.
#[derive(Template)]
#[template(path = "admin_events.html")]
pub(crate) struct AdminEventsPage {
    pub(crate) title: String,
    pub(crate) nav: Nav,
    pub(crate) notice: Option<&'static str>,
    pub(crate) events: Vec<EventRow>,
}
