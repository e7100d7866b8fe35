//! Embeds auth-sdk in a program with in-memory storage and walks one user through
//! register → login → verify → refresh → logout, showing that the token is refused
//! afterwards.
//!
//! Run it with `cargo run --example embed`.

use auth_sdk::api::{LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest, VerifyRequest};
use auth_sdk::{Auth, AuthApi, Config, MemoryStorage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Production defaults: argon2id m=19456 KiB, t=2, p=1; 15-minute access tokens.
    let auth = Auth::new(Config::default(), MemoryStorage::new())?;
    auth.start()?;

    let user = auth
        .register(RegisterRequest {
            username: "alice".into(),
            password: "correct horse battery staple".into(),
            client: None,
        })
        .await?
        .into_user()?;
    println!("registered   {} (id {})", user.username, user.id);

    let tokens = auth
        .login(LoginRequest {
            username: "Alice".into(), // usernames are case-insensitive
            password: "correct horse battery staple".into(),
            client: None,
        })
        .await?
        .into_tokens()?;
    println!("logged in    session {}", tokens.session_id);

    let me = auth
        .verify(VerifyRequest {
            access_token: tokens.access_token.clone(),
        })
        .await?;
    println!("verified     user {} ({})", me.username, me.user_id);

    let refreshed = auth
        .refresh(RefreshRequest {
            refresh_token: tokens.refresh_token.clone(),
            client: None,
        })
        .await?
        .into_tokens()?;
    println!(
        "refreshed    new refresh token issued: {}",
        refreshed.refresh_token != tokens.refresh_token
    );

    auth.logout(LogoutRequest {
        refresh_token: refreshed.refresh_token.clone(),
        ..Default::default()
    })
    .await?;
    println!("logged out");

    match auth
        .verify(VerifyRequest {
            access_token: refreshed.access_token,
        })
        .await
    {
        Err(e) => println!("verify after logout rejected: {} ({})", e.code(), e),
        Ok(_) => return Err("token still accepted after logout".into()),
    }

    auth.stop().await;
    Ok(())
}
