//! Administration: roles, the `admin` role's operations on other accounts, and the
//! first administrator's bootstrap.
//!
//! Every operation authenticates the caller's access token against a live session
//! and then reads the caller's *stored* record: the `admin` role must be there now,
//! and the account must not be locked. A token minted before a revocation therefore
//! grants nothing, even while it has not expired.
//!
//! An administrator cannot lock or delete their own account, nor revoke their own
//! `admin` role: the last administrator cannot lock everyone out by mistake.

use auth_storage::{ListUsers, MAX_USERS_PAGE, Session, Storage, StorageError, User};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::api::*;
use crate::audit::AuditKind;
use crate::auth::{Auth, Inner};
use crate::config::Config;
use crate::error::AuthError;
use crate::password::PasswordHasher;
use crate::policy::Username;
use crate::tokens::{Claims, random_id};

/// The role that may call the admin operations.
pub const ADMIN_ROLE: &str = "admin";

/// Longest role name.
pub const MAX_ROLE_LEN: usize = 64;

/// Most roles one user may hold.
pub const MAX_ROLES: usize = 32;

/// Page size of [`AuthApi::admin_list_users`] when the request names none.
pub const DEFAULT_USERS_PAGE: usize = 50;

/// Longest search text of [`AuthApi::admin_list_users`].
const MAX_QUERY_BYTES: usize = 256;

/// Most events [`AuthApi::admin_recent_events`] returns.
pub const MAX_RECENT_EVENTS: usize = 1000;

/// Where [`AuthApi::admin_cluster`] learns about the cluster: set
/// [`Config::cluster`] to one in a replicated backend (the `auth-backend` binary does
/// for `--storage raft`).
#[async_trait::async_trait]
pub trait ClusterView: std::fmt::Debug + Send + Sync + 'static {
    /// Every member's state as this node sees it now, with `storage` set. Bounded in
    /// time: an unreachable member is reported as such, not waited for.
    async fn cluster(&self) -> AdminClusterResponse;
}

/// Checks a role name: 1 to [`MAX_ROLE_LEN`] characters of lowercase ASCII letters,
/// digits, `-`, `_`, `.` and `:`.
pub fn check_role(role: &str) -> Result<(), AuthError> {
    let ok = !role.is_empty()
        && role.len() <= MAX_ROLE_LEN
        && role.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b':')
        });
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidArgument(
            "a role is 1 to 64 characters: a-z, 0-9, '-', '_', '.', ':'".into(),
        ))
    }
}

/// An account as an administrator sees it.
pub(crate) fn admin_user_info(u: &User) -> AdminUserInfo {
    AdminUserInfo {
        id: u.id.clone(),
        username: u.username.clone(),
        created_at_ms: u.created_at_ms,
        updated_at_ms: u.updated_at_ms,
        roles: u.roles.clone(),
        locked_at_ms: u.admin_locked_at_ms,
        totp: u.totp_confirmed,
        passkeys: u32::try_from(u.passkeys.len()).unwrap_or(u32::MAX),
    }
}

/// A session as its owner or an administrator sees it.
pub(crate) fn session_info(s: Session, current_sid: &str) -> SessionInfo {
    SessionInfo {
        current: s.id == current_sid,
        id: s.id,
        created_at_ms: s.created_at_ms,
        last_used_at_ms: s.last_used_at_ms,
        expires_at_ms: s.expires_at_ms,
        user_agent: s.user_agent,
        ip: s.ip,
    }
}

/// Whether `s` has the shape of a user id (32 lowercase hex characters).
fn looks_like_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What an admin action did, for its answer.
fn action(user: Option<&User>, sessions_ended: u64) -> AdminUserActionResponse {
    AdminUserActionResponse {
        user: user.map(admin_user_info),
        sessions_ended,
    }
}

impl<S: Storage> Inner<S> {
    /// The caller, if their live session's stored user holds `admin` and is not
    /// locked; [`AuthError::PermissionDenied`] otherwise.
    pub(crate) async fn require_admin(&self, token: &str) -> Result<(Claims, User), AuthError> {
        let (claims, _) = self.authenticate(token).await?;
        let me = self.current_user(&claims.sub).await?;
        if me.admin_locked_at_ms != 0 || !me.roles.iter().any(|r| r == ADMIN_ROLE) {
            let refused = AuthError::PermissionDenied("the admin role is required".into());
            self.audit(
                self.event(AuditKind::AdminRefused)
                    .failed(refused.code())
                    .user(&claims.sub)
                    .session(&claims.sid),
            );
            return Err(refused);
        }
        Ok((claims, me))
    }

    /// The user `who` names: an id, else a username.
    pub(crate) async fn find_user(&self, who: &str) -> Result<User, AuthError> {
        let who = who.trim();
        if who.is_empty() {
            return Err(AuthError::InvalidArgument("user is required".into()));
        }
        let by_id = if looks_like_id(who) {
            self.storage.get_user(who).await?
        } else {
            None
        };
        let by_name = match self.config.username.normalize(who) {
            Ok(name) => self.storage.get_user_by_username(&name.key).await?,
            Err(_) => None,
        };
        match (by_id, by_name) {
            // A username may look like an id: one that names two accounts is refused
            // rather than guessed at (an attacker could register another user's id as
            // a name to draw an administrator's action onto themselves, or the reverse).
            (Some(a), Some(b)) if a.id != b.id => Err(AuthError::InvalidArgument(
                "this names one account by id and another by username; use the other \
                 account's id"
                    .into(),
            )),
            (Some(u), _) | (None, Some(u)) => Ok(u),
            (None, None) => Err(AuthError::NotFound),
        }
    }

    /// The calling administrator (see [`Inner::require_admin`]) and the user `who`
    /// names (see [`Inner::find_user`]).
    async fn admin_on(&self, token: &str, who: &str) -> Result<(User, User), AuthError> {
        let (_, admin) = self.require_admin(token).await?;
        Ok((admin, self.find_user(who).await?))
    }

    /// Applies `change` to the target by compare-and-set; a target deleted meanwhile is
    /// [`AuthError::NotFound`].
    async fn change_target(
        &self,
        target: User,
        change: impl FnMut(&mut User) -> Result<(), AuthError>,
    ) -> Result<User, AuthError> {
        let now = self.now_ms();
        let id = target.id.clone();
        match self.modify_user(target, now, change).await {
            Ok((user, ())) => Ok(user),
            Err(AuthError::SessionEnded) if self.storage.get_user(&id).await?.is_none() => {
                Err(AuthError::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    /// The event of an administrator's action on `user_id`.
    fn audit_admin(
        &self,
        kind: AuditKind,
        admin: &User,
        user_id: &str,
        client: &Option<ClientInfo>,
        detail: String,
    ) {
        self.audit(
            self.event(kind)
                .user(user_id)
                .actor(&admin.id)
                .source(client.as_ref())
                .detail(detail),
        );
    }

    /// The live sessions of `user_id`, as shown to people (`current_sid` marked).
    pub(crate) async fn session_infos(
        &self,
        user_id: &str,
        current_sid: &str,
        now: i64,
    ) -> Result<Vec<SessionInfo>, AuthError> {
        Ok(self
            .storage
            .list_user_sessions(user_id, now)
            .await?
            .into_iter()
            .map(|s| session_info(s, current_sid))
            .collect())
    }

    /// Refuses an action on the administrator's own account.
    fn not_self(me: &User, target: &User, what: &'static str) -> Result<(), AuthError> {
        if me.id == target.id {
            return Err(AuthError::PermissionDenied(what.into()));
        }
        Ok(())
    }
}

impl<S: Storage> Auth<S> {
    /// Creates the first administrator: a new account `username` with `password` and
    /// the `admin` role. Idempotent for its owner: if the account exists and the
    /// password is its password, nothing changes (`Ok` with `false`); with another
    /// password it is [`AuthError::UserExists`], so whoever registered the name first
    /// does not become an administrator. An existing account is never given the role
    /// here: a restart must not undo another administrator's revocation. The password
    /// must satisfy the password policy. Returns the user and whether it was created.
    pub async fn bootstrap_admin(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(User, bool), AuthError> {
        let me = &self.inner;
        me.ensure_open()?;
        let name = me.config.username.normalize(username)?;
        me.config.password.check(password)?;
        if let Some(user) = me.storage.get_user_by_username(&name.key).await? {
            let check = me.hasher.verify(password, &user.password_hash).await?;
            if !check.matches {
                return Err(AuthError::UserExists);
            }
            return Ok((user, false));
        }
        let password_hash = me.hasher.hash(password).await?;
        let user = me
            .storage
            .create_user(admin_record(name, password_hash, me.now_ms()))
            .await?;
        me.audit(
            me.event(AuditKind::AdminBootstrapped)
                .user(&user.id)
                .detail("created"),
        );
        Ok((user, true))
    }

    pub(crate) async fn admin_list_users_impl(
        &self,
        req: AdminListUsersRequest,
    ) -> Result<AdminListUsersResponse, AuthError> {
        let me = &self.inner;
        me.require_admin(&req.access_token).await?;
        let query = req.query.trim();
        if query.len() > MAX_QUERY_BYTES {
            return Err(AuthError::InvalidArgument("query is too long".into()));
        }
        let contains = if query.is_empty() || looks_like_id(query) {
            query.to_owned()
        } else {
            me.config.username.search_key(query)
        };
        let after = if req.page_token.is_empty() {
            String::new()
        } else {
            URL_SAFE_NO_PAD
                .decode(&req.page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AuthError::InvalidArgument("page_token is malformed".into()))?
        };
        let limit = match req.page_size {
            0 => DEFAULT_USERS_PAGE,
            n => usize::try_from(n)
                .unwrap_or(MAX_USERS_PAGE)
                .min(MAX_USERS_PAGE),
        };
        let page = me
            .storage
            .list_users(ListUsers {
                after,
                contains,
                limit,
            })
            .await?;
        Ok(AdminListUsersResponse {
            users: page.users.iter().map(admin_user_info).collect(),
            next_page_token: page
                .next
                .map(|k| URL_SAFE_NO_PAD.encode(k))
                .unwrap_or_default(),
        })
    }

    pub(crate) async fn admin_cluster_impl(
        &self,
        req: AdminClusterRequest,
    ) -> Result<AdminClusterResponse, AuthError> {
        let me = &self.inner;
        me.require_admin(&req.access_token).await?;
        Ok(match &me.config.cluster {
            Some(view) => view.cluster().await,
            None => AdminClusterResponse {
                storage: "memory".into(),
                ..AdminClusterResponse::default()
            },
        })
    }

    pub(crate) async fn admin_recent_events_impl(
        &self,
        req: AdminRecentEventsRequest,
    ) -> Result<AdminRecentEventsResponse, AuthError> {
        let me = &self.inner;
        me.require_admin(&req.access_token).await?;
        let limit = match req.limit as usize {
            0 => 100,
            n => n.min(MAX_RECENT_EVENTS),
        };
        let events = me
            .config
            .audit
            .recent
            .as_ref()
            .map(|r| r.snapshot())
            .unwrap_or_default();
        Ok(AdminRecentEventsResponse {
            events: events
                .iter()
                .rev()
                .take(limit)
                .map(|e| AuditEventInfo {
                    time_ms: e.time_ms,
                    kind: e.kind.as_str().into(),
                    outcome: match e.outcome {
                        crate::audit::Outcome::Success => "success".into(),
                        crate::audit::Outcome::Failure => "failure".into(),
                    },
                    reason: e.reason.clone(),
                    user_id: e.user_id.clone(),
                    session_id: e.session_id.clone(),
                    source: e.source.clone(),
                    node: e.node.clone(),
                    actor_id: e.actor_id.clone(),
                    detail: e.detail.clone(),
                })
                .collect(),
        })
    }

    pub(crate) async fn admin_get_user_impl(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminGetUserResponse, AuthError> {
        let me = &self.inner;
        let (claims, _) = me.require_admin(&req.access_token).await?;
        let user = me.find_user(&req.user).await?;
        let sessions = me.session_infos(&user.id, &claims.sid, me.now_ms()).await?;
        Ok(AdminGetUserResponse {
            user: Some(admin_user_info(&user)),
            sessions,
        })
    }

    pub(crate) async fn admin_lock_user_impl(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        let me = &self.inner;
        let (admin, target) = me.admin_on(&req.access_token, &req.user).await?;
        Inner::<S>::not_self(
            &admin,
            &target,
            "administrators cannot lock their own account",
        )?;
        let now = me.now_ms();
        let user = me
            .change_target(target, |u| {
                if u.admin_locked_at_ms == 0 {
                    u.admin_locked_at_ms = now;
                }
                Ok(())
            })
            .await?;
        // The lock is stored first: from now on no session can open (storage refuses
        // it atomically), so deleting the existing ones leaves none.
        let ended = me.storage.delete_user_sessions(&user.id, None).await?;
        me.audit_admin(
            AuditKind::Locked,
            &admin,
            &user.id,
            &req.client,
            "admin".into(),
        );
        Ok(action(Some(&user), ended))
    }

    pub(crate) async fn admin_unlock_user_impl(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        let me = &self.inner;
        let (admin, target) = me.admin_on(&req.access_token, &req.user).await?;
        let user = me
            .change_target(target, |u| {
                u.admin_locked_at_ms = 0;
                Ok(())
            })
            .await?;
        me.audit_admin(
            AuditKind::Unlocked,
            &admin,
            &user.id,
            &req.client,
            String::new(),
        );
        Ok(action(Some(&user), 0))
    }

    pub(crate) async fn admin_logout_user_impl(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        let me = &self.inner;
        let (admin, user) = me.admin_on(&req.access_token, &req.user).await?;
        let ended = me.storage.delete_user_sessions(&user.id, None).await?;
        me.audit_admin(
            AuditKind::LogoutAll,
            &admin,
            &user.id,
            &req.client,
            format!("{ended} sessions"),
        );
        Ok(action(Some(&user), ended))
    }

    pub(crate) async fn admin_delete_user_impl(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        let me = &self.inner;
        let (admin, target) = me.admin_on(&req.access_token, &req.user).await?;
        Inner::<S>::not_self(
            &admin,
            &target,
            "administrators cannot delete their own account here",
        )?;
        let ended = match me.storage.delete_user(&target.id).await {
            Ok(n) => n,
            Err(StorageError::NotFound) => return Err(AuthError::NotFound),
            Err(e) => return Err(e.into()),
        };
        me.audit_admin(
            AuditKind::AccountDeleted,
            &admin,
            &target.id,
            &req.client,
            String::new(),
        );
        Ok(action(None, ended))
    }

    pub(crate) async fn admin_grant_role_impl(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        let me = &self.inner;
        check_role(&req.role)?;
        let (admin, target) = me.admin_on(&req.access_token, &req.user).await?;
        let user = me.change_target(target, grant(&req.role)).await?;
        me.audit_admin(
            AuditKind::RoleGranted,
            &admin,
            &user.id,
            &req.client,
            req.role.clone(),
        );
        Ok(action(Some(&user), 0))
    }

    pub(crate) async fn admin_revoke_role_impl(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        let me = &self.inner;
        check_role(&req.role)?;
        let (admin, target) = me.admin_on(&req.access_token, &req.user).await?;
        if req.role == ADMIN_ROLE {
            Inner::<S>::not_self(
                &admin,
                &target,
                "administrators cannot revoke their own admin role",
            )?;
        }
        // Whether the role was held is decided on the record the change replaces (a
        // grant may land between the read and the write).
        let held = std::sync::atomic::AtomicBool::new(false);
        let user = me
            .change_target(target, |u| {
                held.store(
                    u.roles.contains(&req.role),
                    std::sync::atomic::Ordering::Relaxed,
                );
                u.roles.retain(|r| *r != req.role);
                Ok(())
            })
            .await?;
        let held = held.load(std::sync::atomic::Ordering::Relaxed);
        // Sessions carry the roles they opened with: end them, so no refreshed token
        // carries the revoked role. Sessions opening from now on take the new roles.
        let ended = if held {
            me.storage.delete_user_sessions(&user.id, None).await?
        } else {
            0
        };
        me.audit_admin(
            AuditKind::RoleRevoked,
            &admin,
            &user.id,
            &req.client,
            req.role.clone(),
        );
        Ok(action(Some(&user), ended))
    }
}

/// A new account holding the `admin` role.
fn admin_record(name: Username, password_hash: String, now: i64) -> User {
    User {
        id: random_id(),
        username: name.display,
        username_key: name.key,
        password_hash,
        created_at_ms: now,
        updated_at_ms: now,
        roles: vec![ADMIN_ROLE.to_owned()],
        ..User::default()
    }
}

/// A new account record holding the `admin` role, with `password` hashed under
/// `config`'s parameters and checked against its policies: what `auth-backend
/// bootstrap-admin` hands to a cluster (which stores it only if the name is free).
pub async fn new_admin_record(
    config: &Config,
    username: &str,
    password: &str,
) -> Result<User, AuthError> {
    config.validate()?;
    let name = config.username.normalize(username)?;
    config.password.check(password)?;
    let hash = PasswordHasher::new(config.hash, 1)?.hash(password).await?;
    Ok(admin_record(name, hash, config.clock.now_ms()))
}

/// A change adding `role` to a user's sorted role set.
fn grant(role: &str) -> impl FnMut(&mut User) -> Result<(), AuthError> + '_ {
    move |u: &mut User| {
        if let Err(i) = u.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            if u.roles.len() >= MAX_ROLES {
                return Err(AuthError::InvalidArgument(
                    "the user has too many roles".into(),
                ));
            }
            u.roles.insert(i, role.to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_checked() {
        for ok in ["admin", "support", "billing:read", "a.b-c_d", "x"] {
            assert!(check_role(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Admin", "has space", "é", &"r".repeat(65), "a/b"] {
            assert_eq!(
                check_role(bad).unwrap_err().code(),
                "invalid_argument",
                "{bad}"
            );
        }
    }

    #[test]
    fn granting_keeps_roles_sorted_unique_and_bounded() {
        let mut u = User::default();
        for r in ["support", "admin", "support", "billing"] {
            grant(r)(&mut u).unwrap();
        }
        assert_eq!(u.roles, vec!["admin", "billing", "support"]);
        u.roles = (0..MAX_ROLES).map(|i| format!("r{i:02}")).collect();
        u.roles.sort();
        assert_eq!(grant("zz")(&mut u).unwrap_err().code(), "invalid_argument");
        assert!(grant("r00")(&mut u).is_ok(), "a held role is no new role");
    }

    #[test]
    fn ids_are_told_from_names() {
        assert!(looks_like_id("0123456789abcdef0123456789abcdef"));
        assert!(!looks_like_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!looks_like_id("alice"));
    }
}
