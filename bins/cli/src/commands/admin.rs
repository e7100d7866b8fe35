//! `authctl admin …`: user administration with an administrator's access token
//! (`--access-token`, `-` for stdin, or `AUTHCTL_ACCESS_TOKEN`): list and search
//! users, show one with their sessions, lock, unlock, force logout, delete, grant and
//! revoke roles. The backend checks the `admin` role on the stored account, so a
//! token alone grants nothing once the role is revoked.

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::io::{Io, emit, token_arg};
use crate::render::{session_json, sessions_table, timestamp};
use crate::{EXIT_OK, Failure};

/// `authctl admin [--access-token T] …`
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// An administrator's access token (`-` reads it from stdin).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "AUTHCTL_ACCESS_TOKEN",
        hide_env_values = true
    )]
    pub access_token: String,
    /// What to do.
    #[command(subcommand)]
    pub cmd: AdminCmd,
}

/// The admin subcommands. USER is a user id or a username.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCmd {
    /// List users by username, a page at a time; `--all` follows every page.
    Users {
        /// Only usernames containing this text (or the user with this id).
        #[arg(long, value_name = "TEXT", default_value = "")]
        query: String,
        /// Users per page (at most 1000).
        #[arg(long, value_name = "N", default_value_t = 50)]
        page_size: u32,
        /// Start at this page (`next_page_token` of the previous one).
        #[arg(long, value_name = "TOKEN", default_value = "")]
        page_token: String,
        /// Follow every page to the end.
        #[arg(long)]
        all: bool,
    },
    /// Show a user with their live sessions.
    Show {
        /// The user's id or username.
        user: String,
    },
    /// Lock an account (no sign-in or refresh until unlocked); its sessions end.
    Lock {
        /// The user's id or username.
        user: String,
    },
    /// Unlock an account an administrator locked.
    Unlock {
        /// The user's id or username.
        user: String,
    },
    /// End every session of a user.
    Logout {
        /// The user's id or username.
        user: String,
    },
    /// Delete an account and its sessions.
    Delete {
        /// The user's id or username.
        user: String,
    },
    /// Grant a role (in the user's tokens from their next sign-in).
    Grant {
        /// The user's id or username.
        user: String,
        /// The role (`admin`, or an application's own; it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        role: String,
    },
    /// Revoke a role; the user's sessions end.
    Revoke {
        /// The user's id or username.
        user: String,
        /// The role.
        #[arg(allow_hyphen_values = true)]
        role: String,
    },
}

/// Most pages `users --all` follows: a million users at the largest page size.
const MAX_PAGES: usize = 1_000_000 / 1000 + 1;

/// An account as JSON.
pub(crate) fn admin_user_json(u: &AdminUserInfo) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "created_at_ms": u.created_at_ms,
        "updated_at_ms": u.updated_at_ms,
        "roles": u.roles,
        "locked": u.locked_at_ms != 0,
        "locked_at_ms": u.locked_at_ms,
        "totp": u.totp,
        "passkeys": u.passkeys,
    })
}

/// One line per user: username, id, roles, state.
fn users_text(users: &[AdminUserInfo]) -> String {
    let width = users
        .iter()
        .map(|u| u.username.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut s = format!(
        "{:width$}  {:32}  {:20}  STATE\n",
        "USERNAME", "ID", "ROLES"
    );
    for u in users {
        let roles = if u.roles.is_empty() {
            "-".to_owned()
        } else {
            u.roles.join(",")
        };
        let state = if u.locked_at_ms != 0 {
            format!("locked since {}", timestamp(u.locked_at_ms))
        } else {
            "active".to_owned()
        };
        s.push_str(&format!(
            "{:width$}  {:32}  {roles:20}  {state}\n",
            u.username, u.id
        ));
    }
    s
}

/// Runs `authctl admin …`.
pub(crate) async fn execute(
    args: AdminArgs,
    api: &RemoteAuth,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let access_token = token_arg(io, args.access_token)?;
    let target = |user: String| AdminUserRequest {
        access_token: access_token.clone(),
        user,
        client: None,
    };
    let role_req = |user: String, role: String| AdminRoleRequest {
        access_token: access_token.clone(),
        user,
        role,
        client: None,
    };
    let done = |io: &mut Io<'_>, what: &str, r: AdminUserActionResponse| {
        let mut value = json!({ "sessions_ended": r.sessions_ended });
        if let Some(u) = &r.user {
            value["user"] = admin_user_json(u);
        }
        emit(io, json, value, || match &r.user {
            Some(u) => format!(
                "{what} {} (user {}); sessions ended: {}\n",
                u.username, u.id, r.sessions_ended
            ),
            None => format!("{what}; sessions ended: {}\n", r.sessions_ended),
        })
    };
    match args.cmd {
        AdminCmd::Users {
            query,
            page_size,
            page_token,
            all,
        } => {
            let mut users = Vec::new();
            let mut token = page_token;
            for _ in 0..MAX_PAGES {
                let page = api
                    .admin_list_users(AdminListUsersRequest {
                        access_token: access_token.clone(),
                        query: query.clone(),
                        page_token: token,
                        page_size,
                    })
                    .await?;
                users.extend(page.users);
                token = page.next_page_token;
                if !all || token.is_empty() {
                    break;
                }
            }
            let value = json!({
                "users": users.iter().map(admin_user_json).collect::<Vec<_>>(),
                "next_page_token": token,
            });
            emit(io, json, value, || {
                let mut s = users_text(&users);
                if !token.is_empty() {
                    s.push_str(&format!("more: --page-token {token}\n"));
                }
                s
            })
        }
        AdminCmd::Show { user } => {
            let r = api.admin_get_user(target(user)).await?;
            let u = r.user.unwrap_or_default();
            let value = json!({
                "user": admin_user_json(&u),
                "sessions": r.sessions.iter().map(session_json).collect::<Vec<_>>(),
            });
            emit(io, json, value, || {
                let mut s = users_text(std::slice::from_ref(&u));
                s.push_str(&format!(
                    "created {}, second factors: {}{}\n",
                    timestamp(u.created_at_ms),
                    if u.totp { "totp " } else { "" },
                    match u.passkeys {
                        0 if !u.totp => "none".to_owned(),
                        0 => String::new(),
                        n => format!("{n} passkey(s)"),
                    }
                ));
                s.push_str(&sessions_table(&r.sessions));
                s
            })
        }
        AdminCmd::Lock { user } => {
            let r = api.admin_lock_user(target(user)).await?;
            done(io, "locked", r)
        }
        AdminCmd::Unlock { user } => {
            let r = api.admin_unlock_user(target(user)).await?;
            done(io, "unlocked", r)
        }
        AdminCmd::Logout { user } => {
            let r = api.admin_logout_user(target(user)).await?;
            done(io, "logged out", r)
        }
        AdminCmd::Delete { user } => {
            let r = api.admin_delete_user(target(user.clone())).await?;
            done(io, &format!("deleted {user}"), r)
        }
        AdminCmd::Grant { user, role } => {
            let r = api.admin_grant_role(role_req(user, role.clone())).await?;
            done(io, &format!("granted {role} to"), r)
        }
        AdminCmd::Revoke { user, role } => {
            let r = api.admin_revoke_role(role_req(user, role.clone())).await?;
            done(io, &format!("revoked {role} from"), r)
        }
    }
    .map(|_| EXIT_OK)
}
