//! The public pages: home, sign up, log in, log out, health, the stylesheet and the
//! 404 fallback. The account pages are in `account.rs`.

use askama::Template;
use auth_core::AuthError;
use auth_core::api::{
    LoginMfaRequest, LoginRequest, LogoutRequest, PasskeyLoginFinishRequest,
    PasskeyLoginStartRequest, RegisterRequest,
};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::csrf;
use crate::errors::{
    ApiError, PageError, WebError, auth_message, auth_status, is_session_error, with_retry_after,
};
use crate::extract::{CsrfForm, FormData};
use crate::session::{Browser, SetCookies, Visitor, resolve};
use crate::templates::{CredentialsPage, IndexPage, MfaLoginPage, Nav, notice_text, redirect};

/// How long the browser keeps an MFA ticket (the service's own expiry is what counts).
const MFA_TICKET_COOKIE_SECS: i64 = 10 * 60;

/// The stylesheet, compiled in.
const STYLE_CSS: &str = include_str!("../static/style.css");

pub(crate) type PageResult = Result<Response, PageError>;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/signup", get(signup_form).post(signup))
        .route("/login", get(login_form).post(login))
        .route("/login/mfa", get(mfa_form).post(mfa_submit))
        .route("/login/passkey/start", post(passkey_start))
        .route("/login/passkey", post(passkey_finish))
        .route("/logout", post(logout))
        .route("/healthz", get(healthz))
        .route("/static/style.css", get(stylesheet))
        .route("/static/passkeys.js", get(script))
}

/// Renders a template with a status.
pub(crate) fn html(status: StatusCode, page: &impl Template) -> Result<Response, WebError> {
    Ok((status, Html(page.render()?)).into_response())
}

/// The message for the `?notice=` of a redirect, if it is one we know.
pub(crate) fn notice(uri: &Uri) -> Option<&'static str> {
    let query = FormData::parse(uri.query()?.as_bytes()).ok()?;
    query.get("notice").and_then(notice_text)
}

async fn index(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    let mut cookies = SetCookies::default();
    let nav = match resolve(&state, &browser, &mut cookies).await? {
        Visitor::SignedIn(s) => Nav {
            csrf: csrf::for_session(&state, &s),
            user: Some(s.me.username),
            ..Nav::default()
        },
        Visitor::Anonymous => Nav::default(),
    };
    let page = IndexPage {
        title: "Home".into(),
        nav,
        notice: notice(&uri),
    };
    Ok((cookies, html(StatusCode::OK, &page)?).into_response())
}

/// What the sign-up and log-in pages show.
struct Credentials<'a> {
    signup: bool,
    username: &'a str,
    error: Option<String>,
    status: StatusCode,
    notice: Option<&'static str>,
}

/// Renders the sign-up or log-in form for an anonymous visitor.
fn credentials_page(
    state: &AppState,
    browser: &Browser,
    mut cookies: SetCookies,
    view: Credentials<'_>,
) -> PageResult {
    let page = CredentialsPage {
        title: if view.signup {
            "Create an account"
        } else {
            "Log in"
        }
        .into(),
        nav: Nav::default(),
        notice: view.notice,
        action: if view.signup { "/signup" } else { "/login" },
        csrf: csrf::for_anonymous(state, browser, &mut cookies),
        username: view.username.to_owned(),
        error: view.error,
        signup: view.signup,
    };
    Ok((cookies, html(view.status, &page)?).into_response())
}

/// `GET /signup` and `GET /login`: the form, or the account page for a visitor who is
/// already signed in. A failing auth service does not hide the form.
async fn credentials_form(state: AppState, browser: Browser, uri: Uri, signup: bool) -> PageResult {
    let mut cookies = SetCookies::default();
    match resolve(&state, &browser, &mut cookies).await {
        Ok(Visitor::SignedIn(_)) => return Ok((cookies, redirect("/account")).into_response()),
        Ok(Visitor::Anonymous) => {}
        Err(e) => tracing::debug!(code = e.code(), "sign-in state unknown; showing the form"),
    }
    let view = Credentials {
        signup,
        username: "",
        error: None,
        status: StatusCode::OK,
        notice: notice(&uri),
    };
    credentials_page(&state, &browser, cookies, view)
}

async fn signup_form(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    credentials_form(state, browser, uri, true).await
}

async fn login_form(State(state): State<AppState>, browser: Browser, uri: Uri) -> PageResult {
    credentials_form(state, browser, uri, false).await
}

/// Handles both credential forms: validates the fields, registers (for sign-up), logs
/// in, stores the tokens, ends the pre-session (so tokens minted before login stop
/// working) and goes to the account page. Problems the visitor can fix are shown on
/// the form; service failures get an error page. A visitor who is signed in already
/// goes to the account page, as with `GET`.
async fn submit_credentials(state: AppState, post: CsrfForm, signup: bool) -> PageResult {
    let CsrfForm {
        form,
        browser,
        visitor,
        mut cookies,
    } = post;
    if let Visitor::SignedIn(_) = visitor {
        return Ok((cookies, redirect("/account")).into_response());
    }
    let typed = form.get("username").unwrap_or("").trim();
    let fields = form
        .required("username", "Username")
        .and_then(|u| Ok((u.trim(), form.required("password", "Password")?)));
    let on_form = |error: String, status: StatusCode| {
        let view = Credentials {
            signup,
            username: typed,
            error: Some(error),
            status,
            notice: None,
        };
        credentials_page(&state, &browser, cookies.clone(), view)
    };
    let (username, password) = match fields {
        Ok(f) => f,
        Err(message) => return on_form(message, StatusCode::BAD_REQUEST),
    };
    let shown_on_form = |e: AuthError| -> PageResult {
        if auth_status(&e).is_client_error() {
            Ok(with_retry_after(
                on_form(auth_message(&e), auth_status(&e))?,
                e.retry_after(),
            ))
        } else {
            Err(e.into())
        }
    };
    if signup {
        let req = RegisterRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            client: Some(browser.client.info()),
        };
        if let Err(e) = state.api.register(req).await {
            return shown_on_form(e);
        }
    }
    let req = LoginRequest {
        username: username.to_owned(),
        password: password.to_owned(),
        client: Some(browser.client.info()),
    };
    let tokens = match state.api.login(req).await {
        Ok(resp) if resp.mfa_required => {
            // The password was right; the second step has its own page. The
            // pre-session stays: its CSRF token guards that page's form.
            cookies.mfa_ticket(&browser.names, &resp.mfa_ticket, MFA_TICKET_COOKIE_SECS);
            return Ok((cookies, redirect("/login/mfa")).into_response());
        }
        Ok(resp) => resp
            .tokens
            .ok_or_else(|| AuthError::Internal("login answered without tokens".into()))?,
        Err(e) => return shown_on_form(e),
    };
    cookies.tokens(&browser.names, &tokens);
    csrf::end_pre_session(&browser, &mut cookies);
    let to = if signup {
        "/account?notice=welcome"
    } else {
        "/account"
    };
    Ok((cookies, redirect(to)).into_response())
}

/// The second step's form: a code from the authenticator app or a recovery code.
fn mfa_page(
    state: &AppState,
    browser: &Browser,
    mut cookies: SetCookies,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let page = MfaLoginPage {
        title: "Two-step verification".into(),
        nav: Nav::default(),
        notice: None,
        csrf: csrf::for_anonymous(state, browser, &mut cookies),
        error,
    };
    Ok((cookies, html(status, &page)?).into_response())
}

/// `GET /login/mfa`: the form, if a login is waiting for its second step.
async fn mfa_form(State(state): State<AppState>, browser: Browser) -> PageResult {
    let mut cookies = SetCookies::default();
    match resolve(&state, &browser, &mut cookies).await {
        Ok(Visitor::SignedIn(_)) => return Ok((cookies, redirect("/account")).into_response()),
        Ok(Visitor::Anonymous) => {}
        Err(e) => tracing::debug!(code = e.code(), "sign-in state unknown; showing the form"),
    }
    if browser.cookie(browser.names.mfa_ticket).is_none() {
        return Ok((cookies, redirect("/login")).into_response());
    }
    mfa_page(&state, &browser, cookies, None, StatusCode::OK)
}

/// `POST /login/mfa`: completes the login with the ticket cookie and the code. A
/// wrong code is shown on the form (the ticket survives a few); an expired or used
/// ticket starts over at `/login`.
async fn mfa_submit(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let CsrfForm {
        form,
        browser,
        visitor,
        cookies,
    } = post;
    if let Visitor::SignedIn(_) = visitor {
        return Ok((cookies, redirect("/account")).into_response());
    }
    let Some(ticket) = browser.cookie(browser.names.mfa_ticket) else {
        return Ok((cookies, redirect("/login?notice=mfa_expired")).into_response());
    };
    let code = match form.required("code", "Code") {
        Ok(c) => c.to_owned(),
        Err(message) => {
            return mfa_page(
                &state,
                &browser,
                cookies,
                Some(message),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let req = LoginMfaRequest {
        mfa_ticket: ticket,
        code,
        client: Some(browser.client.info()),
    };
    match state.api.login_mfa(req).await {
        Ok(resp) => signed_in_now(&browser, cookies, resp, true),
        Err(AuthError::InvalidMfaTicket) => ticket_expired(&browser, cookies),
        Err(e) if auth_status(&e).is_client_error() => {
            let wait = e.retry_after();
            let page = mfa_page(
                &state,
                &browser,
                cookies,
                Some(auth_message(&e)),
                auth_status(&e),
            )?;
            Ok(with_retry_after(page, wait))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /login/passkey/start` (from the script): a passkey login ceremony, JSON. The
/// second step of a password login when the MFA ticket cookie is there, passwordless
/// otherwise.
async fn passkey_start(
    State(state): State<AppState>,
    post: CsrfForm,
) -> Result<Response, ApiError> {
    let browser = post.browser;
    let req = PasskeyLoginStartRequest {
        mfa_ticket: browser.cookie(browser.names.mfa_ticket).unwrap_or_default(),
        client: Some(browser.client.info()),
    };
    let started = state.api.passkey_login_start(req).await?;
    Ok((post.cookies, crate::api::ceremony_json(started)?).into_response())
}

/// `POST /login/passkey`: the authenticator's assertion; signs in and goes to the
/// account page. Refusals are shown on the form the visitor came from.
async fn passkey_finish(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    let CsrfForm {
        form,
        browser,
        visitor,
        cookies,
    } = post;
    if let Visitor::SignedIn(_) = visitor {
        return Ok((cookies, redirect("/account")).into_response());
    }
    let ticket = browser.cookie(browser.names.mfa_ticket);
    let req = PasskeyLoginFinishRequest {
        ceremony_id: form.get("ceremony_id").unwrap_or_default().to_owned(),
        credential_json: form.get("credential").unwrap_or_default().to_owned(),
        mfa_ticket: ticket.clone().unwrap_or_default(),
        client: Some(browser.client.info()),
    };
    if req.credential_json.is_empty() {
        let e = AuthError::InvalidArgument("passkeys need JavaScript in this browser".into());
        return passkey_refused(&state, &browser, cookies, ticket.is_some(), e);
    }
    match state.api.passkey_login_finish(req).await {
        Ok(resp) => signed_in_now(&browser, cookies, resp, ticket.is_some()),
        Err(AuthError::InvalidMfaTicket) => ticket_expired(&browser, cookies),
        Err(e) => passkey_refused(&state, &browser, cookies, ticket.is_some(), e),
    }
}

/// A completed login: the token cookies set, the MFA ticket cookie (if `had_ticket`)
/// and the pre-session ended, on to the account page.
fn signed_in_now(
    browser: &Browser,
    mut cookies: SetCookies,
    resp: auth_core::api::LoginResponse,
    had_ticket: bool,
) -> PageResult {
    let tokens = resp
        .tokens
        .ok_or_else(|| AuthError::Internal("login answered without tokens".into()))?;
    cookies.tokens(&browser.names, &tokens);
    if had_ticket {
        cookies.mfa_ticket(&browser.names, "", 0);
    }
    csrf::end_pre_session(browser, &mut cookies);
    Ok((cookies, redirect("/account")).into_response())
}

/// The login's ticket is gone (expired, used up): its cookie cleared, back to `/login`.
fn ticket_expired(browser: &Browser, mut cookies: SetCookies) -> PageResult {
    cookies.mfa_ticket(&browser.names, "", 0);
    Ok((cookies, redirect("/login?notice=mfa_expired")).into_response())
}

/// A refused passkey login, on the form it came from (the second step's, or the
/// log-in form).
fn passkey_refused(
    state: &AppState,
    browser: &Browser,
    cookies: SetCookies,
    second_step: bool,
    e: AuthError,
) -> PageResult {
    if !auth_status(&e).is_client_error() {
        return Err(e.into());
    }
    let (message, status, wait) = (auth_message(&e), auth_status(&e), e.retry_after());
    let page = if second_step {
        mfa_page(state, browser, cookies, Some(message), status)?
    } else {
        let view = Credentials {
            signup: false,
            username: "",
            error: Some(message),
            status,
            notice: None,
        };
        credentials_page(state, browser, cookies, view)?
    };
    Ok(with_retry_after(page, wait))
}

async fn signup(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    submit_credentials(state, post, true).await
}

async fn login(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    submit_credentials(state, post, false).await
}

/// Ends the browser's session (by the access token just verified) and clears the
/// cookies, pre-session included: the next form gets a token bound to a new one. A
/// session that is already gone is not an error.
async fn logout(State(state): State<AppState>, post: CsrfForm) -> PageResult {
    if let Visitor::SignedIn(me) = &post.visitor {
        let req = LogoutRequest {
            access_token: me.access_token.clone(),
            client: Some(post.browser.client.info()),
            ..LogoutRequest::default()
        };
        match state.api.logout(req).await {
            Ok(_) => {}
            Err(e) if is_session_error(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut cookies = SetCookies::default();
    cookies.clear_tokens(&post.browser.names);
    csrf::end_pre_session(&post.browser, &mut cookies);
    Ok((cookies, redirect("/?notice=signed_out")).into_response())
}

async fn healthz() -> &'static str {
    "ok"
}

/// The passkey script, compiled in.
const PASSKEYS_JS: &str = include_str!("../static/passkeys.js");

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PASSKEYS_JS,
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE_CSS,
    )
}

/// 404: JSON under `/api/`, a page elsewhere.
pub(crate) async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError(WebError::NotFound).into_response()
    } else {
        PageError(WebError::NotFound).into_response()
    }
}
