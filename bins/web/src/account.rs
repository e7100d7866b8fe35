//! The account page and its forms: sessions (revoke one, sign out everywhere), change
//! password, delete account. Every form is CSRF-checked and needs a signed-in user.

use std::time::Duration;

use auth_core::AuthError;
use auth_core::api::{
    ChangePasswordRequest, DeleteUserRequest, ListSessionsRequest, LogoutAllRequest,
    RevokeSessionRequest,
};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::AppState;
use crate::csrf;
use crate::errors::{WebError, auth_message, auth_status, with_retry_after};
use crate::extract::{CsrfForm, FormData};
use crate::pages::{PageResult, html, notice};
use crate::session::{Browser, CookieNames, SetCookies, SignedIn, require, signed_in};
use crate::templates::{AccountForm, AccountPage, Nav, SessionRow, format_time, redirect};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(show))
        .route("/account/password", post(change_password))
        .route("/account/sessions/{id}/revoke", post(revoke_session))
        .route("/account/logout-all", post(logout_all))
        .route("/account/delete", post(delete_account))
}

/// A problem to show on one of the account page's forms.
struct Problem {
    form: AccountForm,
    status: StatusCode,
    message: String,
    /// For a lockout, how long until the next try (sent as `Retry-After`).
    wait: Option<Duration>,
}

impl Problem {
    fn invalid(form: AccountForm, message: String) -> Self {
        Self {
            form,
            status: StatusCode::BAD_REQUEST,
            message,
            wait: None,
        }
    }
}

/// True if the error means the caller's own session is gone.
fn session_gone(e: &AuthError) -> bool {
    matches!(
        e,
        AuthError::InvalidToken
            | AuthError::TokenExpired
            | AuthError::SessionEnded
            | AuthError::RefreshTokenReused
    )
}

/// Renders the account page for `me`, with `problem` shown on its form.
async fn render(
    state: &AppState,
    names: &CookieNames,
    mut cookies: SetCookies,
    me: &SignedIn,
    notice: Option<&'static str>,
    problem: Option<Problem>,
) -> PageResult {
    let req = ListSessionsRequest {
        access_token: me.access_token.clone(),
    };
    let list = match state.api.list_sessions(req).await {
        Ok(list) => list,
        Err(e) if session_gone(&e) => {
            cookies.clear_tokens(names);
            return Err(WebError::SignIn(cookies).into());
        }
        Err(e) => return Err(e.into()),
    };
    let user = list.user.unwrap_or_default();
    let mut infos = list.sessions;
    // This device first, then the most recently used.
    infos.sort_by_key(|s| (!s.current, std::cmp::Reverse(s.last_used_at_ms)));
    let sessions = infos.iter().map(SessionRow::from).collect();
    let mut status = StatusCode::OK;
    let (mut sessions_error, mut password_error, mut delete_error) = (None, None, None);
    let mut wait = None;
    if let Some(p) = problem {
        status = p.status;
        wait = p.wait;
        let slot = match p.form {
            AccountForm::Sessions => &mut sessions_error,
            AccountForm::Password => &mut password_error,
            AccountForm::Delete => &mut delete_error,
        };
        *slot = Some(p.message);
    }
    let csrf = csrf::for_session(state, me);
    let page = AccountPage {
        title: "Your account".into(),
        nav: Nav {
            user: Some(user.username.clone()),
            csrf: csrf.clone(),
            admin: me
                .me
                .roles
                .iter()
                .any(|r| r == auth_core::admin::ADMIN_ROLE),
            ..Nav::default()
        },
        notice,
        csrf,
        username: user.username,
        created: format_time(user.created_at_ms),
        sessions,
        sessions_error,
        password_error,
        delete_error,
    };
    let resp = (cookies, html(status, &page)?).into_response();
    Ok(with_retry_after(resp, wait))
}

/// The outcome of a failed account action: back to `/login` if the session itself is
/// gone, the problem on the form if the visitor can fix it, an error page otherwise.
async fn failed(
    state: &AppState,
    names: &CookieNames,
    mut cookies: SetCookies,
    me: &SignedIn,
    form: AccountForm,
    e: AuthError,
) -> PageResult {
    if session_gone(&e) {
        cookies.clear_tokens(names);
        return Err(WebError::SignIn(cookies).into());
    }
    if !auth_status(&e).is_client_error() {
        return Err(e.into());
    }
    let problem = Problem {
        form,
        status: auth_status(&e),
        message: auth_message(&e),
        wait: e.retry_after(),
    };
    render(state, names, cookies, me, None, Some(problem)).await
}

async fn show(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    let mut cookies = SetCookies::default();
    let me = require(&state, &browser, &mut cookies).await?;
    render(&state, &browser.names, cookies, &me, notice(&uri), None).await
}

/// The signed-in user behind a checked form, the cookie names of the request and the
/// cookies to send back.
fn signed_in_post(
    post: CsrfForm,
) -> Result<(SignedIn, FormData, CookieNames, SetCookies), WebError> {
    let mut cookies = post.cookies;
    let me = signed_in(post.visitor, &mut cookies)?;
    Ok((me, post.form, post.browser.names, cookies))
}

async fn change_password(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let (me, form, names, cookies) = signed_in_post(post)?;
    let fields = form
        .required("current_password", "Current password")
        .and_then(|c| Ok((c, form.required("new_password", "New password")?)));
    let (current, new) = match fields {
        Ok(f) => f,
        Err(message) => {
            let problem = Problem::invalid(AccountForm::Password, message);
            return render(&state, &names, cookies, &me, None, Some(problem)).await;
        }
    };
    let req = ChangePasswordRequest {
        access_token: me.access_token.clone(),
        current_password: current.to_owned(),
        new_password: new.to_owned(),
        client: Some(client),
    };
    match state.api.change_password(req).await {
        Ok(_) => Ok((cookies, redirect("/account?notice=password_changed")).into_response()),
        Err(e) => failed(&state, &names, cookies, &me, AccountForm::Password, e).await,
    }
}

async fn revoke_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> PageResult {
    let client = post.browser.client.info();
    let (me, _, names, mut cookies) = signed_in_post(post)?;
    let req = RevokeSessionRequest {
        access_token: me.access_token.clone(),
        session_id: id.clone(),
        client: Some(client),
    };
    match state.api.revoke_session(req).await {
        Ok(_) if id == me.me.session_id => {
            cookies.clear_tokens(&names);
            Ok((cookies, redirect("/login?notice=signed_out")).into_response())
        }
        Ok(_) => Ok((cookies, redirect("/account?notice=session_revoked")).into_response()),
        Err(AuthError::NotFound) => {
            let problem = Problem {
                status: StatusCode::NOT_FOUND,
                ..Problem::invalid(
                    AccountForm::Sessions,
                    "That session does not exist or has already ended.".into(),
                )
            };
            render(&state, &names, cookies, &me, None, Some(problem)).await
        }
        Err(e) => failed(&state, &names, cookies, &me, AccountForm::Sessions, e).await,
    }
}

async fn logout_all(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let (me, _, names, mut cookies) = signed_in_post(post)?;
    let req = LogoutAllRequest {
        access_token: me.access_token.clone(),
        client: Some(client),
    };
    match state.api.logout_all(req).await {
        Ok(_) => {
            cookies.clear_tokens(&names);
            let to = "/login?notice=signed_out_everywhere";
            Ok((cookies, redirect(to)).into_response())
        }
        Err(e) => failed(&state, &names, cookies, &me, AccountForm::Sessions, e).await,
    }
}

async fn delete_account(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let client = post.browser.client.info();
    let (me, form, names, mut cookies) = signed_in_post(post)?;
    let password = match form.required("password", "Password") {
        Ok(p) => p.to_owned(),
        Err(message) => {
            let problem = Problem::invalid(AccountForm::Delete, message);
            return render(&state, &names, cookies, &me, None, Some(problem)).await;
        }
    };
    let req = DeleteUserRequest {
        access_token: me.access_token.clone(),
        password,
        client: Some(client),
    };
    match state.api.delete_user(req).await {
        Ok(_) => {
            cookies.clear_tokens(&names);
            Ok((cookies, redirect("/?notice=account_deleted")).into_response())
        }
        Err(e) => failed(&state, &names, cookies, &me, AccountForm::Delete, e).await,
    }
}
