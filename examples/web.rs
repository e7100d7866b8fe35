//! The whole auth-sdk web site in one process: the auth core on in-memory storage and
//! the auth-web pages and JSON API in front of it.
//!
//! Run it with `cargo run --example web` and open <http://localhost:8080>. Pick another
//! port with `cargo run --example web -- --port 3000` or `PORT=3000`. Ctrl-C stops it.

use std::sync::Arc;

use auth_sdk::web::{WebConfig, router, serve};
use auth_sdk::{Auth, Config, MemoryStorage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port()?;

    // Production defaults (argon2id, 15-minute access tokens); accounts live in memory.
    let auth = Auth::new(Config::default(), MemoryStorage::new())?;
    auth.start()?;

    let config = WebConfig::default();
    let app = router(Arc::new(auth.clone()), config.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("http://localhost:{port}");

    serve(listener, app, &config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    auth.stop().await;
    Ok(())
}

/// `--port N`, else `$PORT`, else 8080.
fn port() -> Result<u16, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match args.as_slice() {
        [flag, n] if flag == "--port" => n.clone(),
        [] => std::env::var("PORT").unwrap_or_else(|_| "8080".into()),
        _ => return Err("usage: web [--port N]".into()),
    };
    Ok(port.parse()?)
}
