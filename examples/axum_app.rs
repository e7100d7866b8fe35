//! Your own axum application, protected by auth-sdk: public routes, a `/private` page
//! for signed-in users, a JSON route that refuses anonymous callers, and the sign-up,
//! login and account pages mounted under `/auth`. `Auth` runs in this process over
//! in-memory storage or a one-node Raft cluster (data in a temporary directory, or
//! `--data-dir`).
//!
//! ```text
//! cargo run --example axum_app                                  # memory
//! cargo run --example axum_app --features raft -- --storage raft
//! ```
//!
//! Open <http://localhost:3000>, follow "Sign up", then visit `/private`. Or with a
//! bearer token:
//!
//! ```text
//! curl -s -X POST localhost:3000/auth/api/v1/register -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"correct horse battery"}'
//! TOKEN=$(curl -s -X POST localhost:3000/auth/api/v1/login -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"correct horse battery"}' | jq -r .access_token)
//! curl -s localhost:3000/api/whoami -H "authorization: Bearer $TOKEN"
//! ```

use std::sync::Arc;

use auth_sdk::web::protect::{AuthUser, Authenticator};
use auth_sdk::web::{WebConfig, serve};
use auth_sdk::{Auth, AuthApi, Config, KeyRing, MemoryStorage, SigningKey};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where accounts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In this process's memory.
    Memory,
    /// A one-node Raft cluster (feature `raft`).
    Raft,
}

/// The running auth service behind the app; [`Backend::stop`] shuts it down.
pub struct Backend {
    api: Arc<dyn AuthApi>,
    stop: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>,
}

impl Backend {
    /// Stops `Auth` (and the Raft node).
    pub async fn stop(self) {
        (self.stop)().await;
    }
}

/// Starts `Auth` over `storage`, with `config` (its signing keys, lifetimes, clock).
/// Raft data goes to `data_dir`.
pub async fn start_backend(
    storage: Storage,
    config: Config,
    data_dir: &std::path::Path,
) -> Result<Backend, Error> {
    match storage {
        Storage::Memory => {
            let auth = Auth::new(config, MemoryStorage::new())?;
            auth.start()?;
            let stopping = auth.clone();
            Ok(Backend {
                api: Arc::new(auth),
                stop: Box::new(move || Box::pin(async move { stopping.stop().await })),
            })
        }
        #[cfg(feature = "raft")]
        Storage::Raft => raft::start(config, data_dir).await,
        #[cfg(not(feature = "raft"))]
        Storage::Raft => {
            let _ = data_dir;
            Err("this build has no Raft: run with `--features raft`".into())
        }
    }
}

#[cfg(feature = "raft")]
mod raft {
    //! A one-node Raft cluster with its own CA: the smallest cluster there is. Add
    //! nodes with `authctl cluster add-learner` / `promote`, or see `examples/raft.rs`.

    use std::time::Duration;

    use auth_sdk::raft::net::ListenerLimits;
    use auth_sdk::raft::pki::{CertAuthority, CertRequest};
    use auth_sdk::raft::tls::{PeerIdentity, PeerTls};
    use auth_sdk::{Auth, Config, RaftConfig, RaftNode};

    use super::{Backend, Error};

    pub(super) async fn start(
        config: Config,
        data_dir: &std::path::Path,
    ) -> Result<Backend, Error> {
        let ca = CertAuthority::generate("axum_app CA", Duration::from_secs(24 * 3600))?;
        let me = PeerIdentity::Node(1);
        let cert = ca.issue(&CertRequest::new(me.clone(), ["127.0.0.1"]))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let mut raft = RaftConfig::new(1, &addr, data_dir.join("node-1"));
        raft.cluster_id = "axum-app".into();
        raft.initial_members = [(1, addr)].into();
        raft.tls = Some(PeerTls::from_pem(
            ca.cert_pem(),
            &cert.cert_pem,
            &cert.key_pem,
            Some(&me),
        )?);
        let node = RaftNode::start(raft).await?;
        let (stop_peer, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(node.serve_peer(listener, ListenerLimits::default(), async {
            let _ = stopped.await;
        })?);
        node.wait_for_leader(Duration::from_secs(10))
            .await
            .ok_or("the Raft node did not become leader within 10 s")?;
        let auth = Auth::new(config, node.storage())?;
        auth.start()?;
        let stopping = auth.clone();
        Ok(Backend {
            api: std::sync::Arc::new(auth),
            stop: Box::new(move || {
                Box::pin(async move {
                    stopping.stop().await;
                    let _ = stop_peer.send(());
                    node.shutdown().await;
                    let _ = server.await;
                })
            }),
        })
    }
}

/// The application: its own routes, guarded by `authenticator`, and the auth site
/// under `/auth`.
pub fn app(backend: &Backend, config: &WebConfig) -> Router {
    let authenticator = Authenticator::new(backend.api.clone(), config);
    // Every route under this one needs a signed-in caller: anonymous calls get a 401
    // before any handler runs.
    let api = Router::new()
        .route("/api/whoami", get(whoami))
        .layer(authenticator.require());
    Router::new()
        .route("/", get(home))
        .route("/private", get(private))
        .merge(api)
        .nest(
            "/auth",
            auth_sdk::web::router(backend.api.clone(), config.clone()),
        )
        .layer(authenticator.layer())
}

/// Public: greets whoever it is.
async fn home(user: Option<AuthUser>) -> Html<String> {
    let body = match user {
        Some(user) => format!(
            "<p>Hello, {}. See <a href=\"/private\">your private page</a> or \
             <a href=\"/auth/account\">your account</a>.</p>",
            escape(&user.username)
        ),
        None => "<p>Hello, stranger. <a href=\"/auth/signup\">Sign up</a> or \
                 <a href=\"/auth/login\">log in</a>.</p>"
            .into(),
    };
    Html(format!("<!doctype html><title>axum_app</title>{body}"))
}

/// Signed-in users only: the extractor refuses anyone else with a 401.
async fn private(user: AuthUser) -> Html<String> {
    Html(format!(
        "<!doctype html><title>Private</title><p>Private page of {}.</p>",
        escape(&user.username)
    ))
}

/// Behind `Authenticator::require`: the user is known by the time it runs.
async fn whoami(user: AuthUser) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user_id": user.user_id,
        "username": user.username,
        "session_id": user.session_id,
    }))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `[--listen ADDR] [--storage memory|raft] [--data-dir DIR]`.
fn args() -> Result<(String, Storage, Option<std::path::PathBuf>), Error> {
    let usage = "usage: axum_app [--listen ADDR] [--storage memory|raft] [--data-dir DIR]";
    let (mut listen, mut storage, mut data_dir) =
        ("127.0.0.1:3000".to_owned(), Storage::Memory, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match (flag.as_str(), value.as_str()) {
            ("--listen", _) => listen = value,
            ("--storage", "memory") => storage = Storage::Memory,
            ("--storage", "raft") => storage = Storage::Raft,
            ("--data-dir", _) => data_dir = Some(value.into()),
            _ => return Err(usage.into()),
        }
    }
    Ok((listen, storage, data_dir))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (listen, storage, data_dir) = args()?;
    let temp = tempfile::tempdir()?;
    let data_dir = data_dir.unwrap_or_else(|| temp.path().to_owned());

    // Ed25519 tokens: other services can check them from /auth/.well-known/jwks.json.
    let mut config = Config::default();
    config.keys = Some(KeyRing::new(SigningKey::generate_ed25519()));
    let backend = start_backend(storage, config, &data_dir).await?;

    let web = WebConfig::default();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("http://{} ({storage:?} storage)", listener.local_addr()?);
    serve(listener, app(&backend, &web), &web, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    backend.stop().await;
    Ok(())
}
