//! The account commands: `register`, `login`, `verify`, `refresh`, `logout`,
//! `sessions`, and `health`.

use std::path::PathBuf;

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use serde_json::json;

use crate::commands::mfa;
use crate::io::{Io, SaveFile, emit, read_password, token_arg};
use crate::{EXIT_OK, EXIT_UNREACHABLE, Failure, render};

/// `authctl register NAME`
pub(crate) async fn register(
    api: &RemoteAuth,
    name: String,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let password = read_password(io, true)?;
    let r = api
        .register(RegisterRequest {
            username: name,
            password,
            client: None,
        })
        .await?;
    let user = r.user.unwrap_or_default();
    emit(
        io,
        json,
        json!({ "user": render::user_json(&user) }),
        || format!("registered {} (user {})\n", user.username, user.id),
    )
}

/// `authctl login NAME [--save FILE] [--user-agent TEXT]`
pub(crate) async fn login(
    api: &RemoteAuth,
    name: String,
    save: Option<PathBuf>,
    user_agent: Option<String>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let password = read_password(io, false)?;
    let file = save.as_deref().map(SaveFile::open).transpose()?;
    let client = ClientInfo {
        user_agent: user_agent.unwrap_or_else(|| format!("authctl/{}", env!("CARGO_PKG_VERSION"))),
        ip: String::new(),
    };
    let req = LoginRequest {
        username: name,
        password,
        client: Some(client),
    };
    let second_step = async |r: LoginResponse, io: &mut Io<'_>| {
        if !r.mfa_required {
            return Ok(r);
        }
        let code = mfa::read_code(io, "Code (authenticator app or recovery code)")?;
        let req = LoginMfaRequest {
            mfa_ticket: r.mfa_ticket,
            code,
            client: Some(ClientInfo {
                user_agent: format!("authctl/{}", env!("CARGO_PKG_VERSION")),
                ip: String::new(),
            }),
        };
        api.login_mfa(req).await.map_err(Failure::from)
    };
    let r = match api.login(req).await.map_err(Failure::from) {
        Ok(r) => second_step(r, io).await,
        Err(e) => Err(e),
    };
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            if let Some(f) = file {
                f.discard();
            }
            return Err(e);
        }
    };
    let tokens = r.tokens.unwrap_or_default();
    let value = render::login_json(r.user.as_ref(), &tokens);
    let saved = match file {
        Some(f) => Some(f.write(&value)?),
        None => None,
    };
    let user = r.user.unwrap_or_default();
    emit(io, json, value, || {
        let mut s = format!("logged in as {} (user {})\n", user.username, user.id);
        s.push_str(&render::tokens_text(&tokens, saved.is_none()));
        if let Some(p) = &saved {
            s.push_str(&format!("tokens saved to {}\n", p.display()));
        }
        s
    })
}

/// `authctl verify TOKEN`
pub(crate) async fn verify(
    api: &RemoteAuth,
    token: String,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let access_token = token_arg(io, token)?;
    let v = api.verify(VerifyRequest { access_token }).await?;
    emit(io, json, render::verify_json(&v), || {
        render::verify_text(&v)
    })
}

/// `authctl refresh TOKEN [--save FILE]`
pub(crate) async fn refresh(
    api: &RemoteAuth,
    token: String,
    save: Option<PathBuf>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let refresh_token = token_arg(io, token)?;
    let file = save.as_deref().map(SaveFile::open).transpose()?;
    let r = match api
        .refresh(RefreshRequest {
            refresh_token,
            client: None,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            if let Some(f) = file {
                f.discard();
            }
            return Err(e.into());
        }
    };
    let tokens = r.tokens.unwrap_or_default();
    let value = render::login_json(None, &tokens);
    let saved = match file {
        Some(f) => Some(f.write(&value)?),
        None => None,
    };
    emit(io, json, value, || {
        let mut s = render::tokens_text(&tokens, saved.is_none());
        if let Some(p) = &saved {
            s.push_str(&format!("tokens saved to {}\n", p.display()));
        }
        s
    })
}

/// `authctl logout --refresh-token T | --access-token T`
pub(crate) async fn logout(
    api: &RemoteAuth,
    refresh_token: Option<String>,
    access_token: Option<String>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let req = match (refresh_token, access_token) {
        (Some(t), _) => LogoutRequest {
            refresh_token: token_arg(io, t)?,
            access_token: String::new(),
            client: None,
        },
        (None, Some(t)) => LogoutRequest {
            refresh_token: String::new(),
            access_token: token_arg(io, t)?,
            client: None,
        },
        (None, None) => {
            return Err(Failure::Usage(
                "--refresh-token or --access-token is required".into(),
            ));
        }
    };
    api.logout(req).await?;
    emit(io, json, json!({ "logged_out": true }), || {
        "logged out\n".to_owned()
    })
}

/// `authctl sessions --access-token T`
pub(crate) async fn sessions(
    api: &RemoteAuth,
    access_token: String,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let access_token = token_arg(io, access_token)?;
    let r = api
        .list_sessions(ListSessionsRequest { access_token })
        .await?;
    emit(io, json, render::sessions_json(&r), || {
        render::sessions_text(&r)
    })
}

/// `authctl health`
pub(crate) async fn health(api: &RemoteAuth, json: bool, io: &mut Io<'_>) -> Result<u8, Failure> {
    let results = api.health().await;
    let all_serving = results.iter().all(|(_, r)| matches!(r, Ok(true)));
    let value = json!({
        "healthy": all_serving,
        "endpoints": results.iter().map(|(url, r)| match r {
            Ok(serving) => json!({ "endpoint": url, "serving": serving }),
            Err(e) => json!({
                "endpoint": url,
                "serving": false,
                "error": { "code": e.code(), "message": e.to_string() },
            }),
        }).collect::<Vec<_>>(),
    });
    let text = || {
        results
            .iter()
            .map(|(url, r)| match r {
                Ok(true) => format!("{url}: serving\n"),
                Ok(false) => format!("{url}: not serving\n"),
                Err(e) => format!("{url}: unreachable: {e}\n"),
            })
            .collect::<String>()
    };
    emit(io, json, value, text)?;
    Ok(if all_serving {
        EXIT_OK
    } else {
        EXIT_UNREACHABLE
    })
}
