//! The whole auth-sdk web site in one process: the auth core on in-memory storage and
//! the auth-web pages and JSON API in front of it.
//!
//! Run it with `cargo run --example web` and open <http://localhost:8080>. Pick another
//! port with `cargo run --example web -- --port 3000` or `PORT=3000`. Access tokens are
//! signed with a fresh Ed25519 key whose public half is served at
//! <http://localhost:8080/.well-known/jwks.json>; `--signing-alg hs256` signs with a
//! secret instead (and publishes nothing). Second factors are on: an authenticator app
//! (TOTP) and passkeys, registered on the account's Security page (passkeys need the
//! site opened as `localhost`, not `127.0.0.1`). With `--metrics-listen 127.0.0.1:9100`
//! it also serves Prometheus metrics at `/metrics` there. With `--admin NAME` and the
//! password in `AUTH_WEB_ADMIN_PASSWORD`, it creates that administrator at start-up,
//! who sees the admin pages at <http://localhost:8080/admin>. Ctrl-C stops it.

use std::sync::Arc;

use auth_sdk::audit::Tee;
use auth_sdk::metrics::{Endpoint, MetricsSink, install};
use auth_sdk::web::{WebConfig, router, serve};
use auth_sdk::{Algorithm, Auth, Config, KeyRing, MemoryStorage, SigningKey};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (port, alg, metrics_listen, admin) = args()?;

    // Production defaults (argon2id, 15-minute access tokens); accounts live in memory.
    let mut config = Config::default();
    config.keys = Some(KeyRing::new(match alg {
        Algorithm::Hs256 => SigningKey::generate_hs256(),
        _ => SigningKey::generate_ed25519(),
    }));
    // Passkeys (WebAuthn) for this origin: browsers allow them on http://localhost.
    config.mfa.passkeys = Some(auth_sdk::web::localhost_passkeys(port));
    let metrics = match metrics_listen {
        Some(addr) => {
            let endpoint = Endpoint::new(install()?);
            config.audit.sink = Arc::new(Tee(vec![
                config.audit.sink.clone(),
                Arc::new(MetricsSink::default()),
            ]));
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("metrics: http://{addr}/metrics");
            Some(tokio::spawn(
                endpoint.serve(listener, std::future::pending()),
            ))
        }
        None => None,
    };
    let auth = Auth::new(config, MemoryStorage::new())?;
    auth.start()?;
    if let Some(name) = admin {
        let password = std::env::var("AUTH_WEB_ADMIN_PASSWORD")
            .map_err(|_| "--admin needs the password in AUTH_WEB_ADMIN_PASSWORD")?;
        auth.bootstrap_admin(&name, &password).await?;
        println!("administrator: {name}");
    }

    let config = WebConfig::default();
    let app = router(Arc::new(auth.clone()), config.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("http://localhost:{port}");

    serve(listener, app, &config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    if let Some(m) = metrics {
        m.abort();
    }
    auth.stop().await;
    Ok(())
}

/// The command line: port, signing algorithm, metrics address, administrator.
type Args = (u16, Algorithm, Option<std::net::SocketAddr>, Option<String>);

/// `[--port N] [--signing-alg eddsa|hs256] [--metrics-listen ADDR] [--admin NAME]`; the
/// port defaults to `$PORT`, else 8080.
fn args() -> Result<Args, Box<dyn std::error::Error>> {
    let usage = "usage: web [--port N] [--signing-alg eddsa|hs256] [--metrics-listen ADDR] \
                 [--admin NAME (password in AUTH_WEB_ADMIN_PASSWORD)]";
    let mut port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let mut alg = Algorithm::EdDsa;
    let mut metrics = None;
    let mut admin = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--port" => port = value,
            "--signing-alg" => alg = value.parse()?,
            "--metrics-listen" => metrics = Some(value.parse()?),
            "--admin" => admin = Some(value),
            _ => return Err(usage.into()),
        }
    }
    Ok((port.parse()?, alg, metrics, admin))
}
