//! The admin pages, for users with the `admin` role: the user list with search, a
//! user's detail with actions (lock, unlock, sign out, delete, grant and revoke a
//! role), the cluster (members, roles, terms, applied indexes, lag as a
//! server-rendered SVG bar chart) and the recent audit events. No JavaScript.
//!
//! The pages hold no authority of their own: every one calls an `AuthApi` admin
//! operation with the visitor's access token, and the server checks the caller's
//! stored record. A visitor without the role gets the 403 page from that refusal.

use auth_core::AuthError;
use auth_core::api::{
    AdminClusterRequest, AdminListUsersRequest, AdminRecentEventsRequest, AdminRoleRequest,
    AdminUserRequest,
};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::AppState;
use crate::csrf;
use crate::errors::WebError;
use crate::extract::{CsrfForm, FormData};
use crate::pages::{PageResult, html, notice};
use crate::session::{Browser, CookieNames, SetCookies, SignedIn, require, signed_in};
use crate::templates::{
    AdminClusterPage, AdminEventsPage, AdminUserPage, AdminUsersPage, ClusterBar, EventRow, Nav,
    SessionRow, UserRow, format_time, redirect,
};

/// Users per page of the list.
const PAGE_SIZE: u32 = 25;
/// Events on the events page.
const EVENTS_SHOWN: u32 = 200;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { redirect("/admin/users") }))
        .route("/admin/users", get(users))
        .route("/admin/users/{user}", get(user))
        .route("/admin/users/{user}/{action}", post(act))
        .route("/admin/cluster", get(cluster))
        .route("/admin/events", get(events))
}

/// The header for an admin page.
fn nav(state: &AppState, me: &SignedIn) -> (Nav, String) {
    let csrf = csrf::for_session(state, me);
    let nav = Nav {
        user: Some(me.me.username.clone()),
        csrf: csrf.clone(),
        admin: true,
        ..Nav::default()
    };
    (nav, csrf)
}

/// A refused or failed admin call: back to `/login` if the visitor's own session is
/// gone, the error page (403 for a non-admin) otherwise.
fn failed(names: &CookieNames, mut cookies: SetCookies, e: AuthError) -> PageResult {
    if matches!(
        e,
        AuthError::InvalidToken | AuthError::TokenExpired | AuthError::SessionEnded
    ) {
        cookies.clear_tokens(names);
        return Err(WebError::SignIn(cookies).into());
    }
    Err(e.into())
}

fn query(uri: &Uri) -> Result<FormData, WebError> {
    FormData::parse(uri.query().unwrap_or_default().as_bytes())
}

async fn users(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    let mut cookies = SetCookies::default();
    let me = require(&state, &browser, &mut cookies).await?;
    let q = query(&uri)?;
    let search = q.get("q").unwrap_or_default().trim().to_owned();
    let page_token = q.get("page").unwrap_or_default().to_owned();
    let req = AdminListUsersRequest {
        access_token: me.access_token.clone(),
        query: search.clone(),
        page_token: page_token.clone(),
        page_size: PAGE_SIZE,
    };
    let list = match state.api.admin_list_users(req).await {
        Ok(list) => list,
        Err(e) => return failed(&browser.names, cookies, e),
    };
    let (nav, _) = nav(&state, &me);
    let page = AdminUsersPage {
        title: "Users".into(),
        nav,
        notice: notice(&uri),
        search,
        users: list.users.iter().map(UserRow::from).collect(),
        next_page: list.next_page_token,
        first_page: page_token.is_empty(),
    };
    Ok((cookies, html(StatusCode::OK, &page)?).into_response())
}

async fn user(
    State(state): State<AppState>,
    browser: Browser,
    Path(target): Path<String>,
    uri: Uri,
) -> PageResult {
    let mut cookies = SetCookies::default();
    let me = require(&state, &browser, &mut cookies).await?;
    let req = AdminUserRequest {
        access_token: me.access_token.clone(),
        user: target,
        client: Some(browser.client.info()),
    };
    let found = match state.api.admin_get_user(req).await {
        Ok(found) => found,
        Err(e) => return failed(&browser.names, cookies, e),
    };
    let info = found.user.unwrap_or_default();
    let (nav, csrf) = nav(&state, &me);
    let page = AdminUserPage {
        title: format!("User {}", info.username),
        nav,
        notice: notice(&uri),
        csrf,
        myself: info.id == me.me.user_id,
        user: UserRow::from(&info),
        sessions: found.sessions.iter().map(SessionRow::from).collect(),
    };
    Ok((cookies, html(StatusCode::OK, &page)?).into_response())
}

async fn act(
    State(state): State<AppState>,
    Path((target, action)): Path<(String, String)>,
    post: CsrfForm,
) -> PageResult {
    let client = Some(post.browser.client.info());
    let names = post.browser.names;
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    let form = post.form;
    let user_req = || AdminUserRequest {
        access_token: me.access_token.clone(),
        user: target.clone(),
        client: client.clone(),
    };
    let role_req = || -> Result<AdminRoleRequest, WebError> {
        let role = form
            .required("role", "Role")
            .map_err(|m| WebError::BadRequest(m.into()))?;
        Ok(AdminRoleRequest {
            access_token: me.access_token.clone(),
            user: target.clone(),
            role: role.trim().to_owned(),
            client: client.clone(),
        })
    };
    let api = &state.api;
    let (result, done) = match action.as_str() {
        "lock" => (api.admin_lock_user(user_req()).await, "user_locked"),
        "unlock" => (api.admin_unlock_user(user_req()).await, "user_unlocked"),
        "logout" => (api.admin_logout_user(user_req()).await, "user_signed_out"),
        "delete" => (api.admin_delete_user(user_req()).await, "user_deleted"),
        "grant" => (api.admin_grant_role(role_req()?).await, "role_granted"),
        "revoke" => (api.admin_revoke_role(role_req()?).await, "role_revoked"),
        _ => return Err(WebError::NotFound.into()),
    };
    match result {
        Ok(r) => {
            let to = match r.user {
                Some(u) => format!("/admin/users/{}?notice={done}", u.id),
                None => format!("/admin/users?notice={done}"),
            };
            Ok((cookies, redirect(&to)).into_response())
        }
        Err(e) => failed(&names, cookies, e),
    }
}

/// Width of the longest lag bar, in SVG units.
const BAR_WIDTH: u64 = 300;

async fn cluster(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    let mut cookies = SetCookies::default();
    let me = require(&state, &browser, &mut cookies).await?;
    let req = AdminClusterRequest {
        access_token: me.access_token.clone(),
    };
    let view = match state.api.admin_cluster(req).await {
        Ok(v) => v,
        Err(e) => return failed(&browser.names, cookies, e),
    };
    let most = view.nodes.iter().map(|n| n.lag).max().unwrap_or(0).max(1);
    let bars = view
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| ClusterBar {
            id: n.id,
            addr: n.addr.clone(),
            role: if n.reachable {
                n.role.clone()
            } else {
                "unreachable".into()
            },
            term: n.term,
            applied_index: n.applied_index,
            last_log_index: n.last_log_index,
            lag: n.lag,
            reachable: n.reachable,
            error: n.error.clone(),
            y: 10 + 30 * i as u64,
            width: n.lag.saturating_mul(BAR_WIDTH) / most,
        })
        .collect::<Vec<_>>();
    let (nav, _) = nav(&state, &me);
    let page = AdminClusterPage {
        title: "Cluster".into(),
        nav,
        notice: notice(&uri),
        storage: view.storage,
        cluster_id: view.cluster_id,
        serving_node: view.serving_node,
        chart_height: 20 + 30 * bars.len() as u64,
        bars,
    };
    Ok((cookies, html(StatusCode::OK, &page)?).into_response())
}

async fn events(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    let mut cookies = SetCookies::default();
    let me = require(&state, &browser, &mut cookies).await?;
    let req = AdminRecentEventsRequest {
        access_token: me.access_token.clone(),
        limit: EVENTS_SHOWN,
    };
    let list = match state.api.admin_recent_events(req).await {
        Ok(l) => l,
        Err(e) => return failed(&browser.names, cookies, e),
    };
    let (nav, _) = nav(&state, &me);
    let page = AdminEventsPage {
        title: "Audit events".into(),
        nav,
        notice: notice(&uri),
        events: list
            .events
            .iter()
            .map(|e| EventRow {
                time: format_time(e.time_ms),
                kind: e.kind.clone(),
                outcome: e.outcome.clone(),
                reason: e.reason.clone(),
                user_id: e.user_id.clone(),
                source: e.source.clone(),
                node: e.node.clone(),
                actor_id: e.actor_id.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
    };
    Ok((cookies, html(StatusCode::OK, &page)?).into_response())
}
