//! Test support for the auth-sdk workspace: the one place the crates' integration tests
//! (and `examples/failover.rs`) take their fixtures from.
//!
//! The model: a test builds what it exercises from four pieces, each cheap and each
//! cleaned up when dropped.
//!
//! - **Configuration**: [`fast_config`] is `Config::default()` with argon2 parameters
//!   that hash in microseconds; [`fast_auth`] is a started `Auth` on memory storage.
//! - **Certificates**: a [`TestCa`] is a certificate authority made for one test, with
//!   its `ca.pem` in a temporary directory. It issues node, admin and client
//!   certificates valid for `127.0.0.1` and `localhost`, writes them next to `ca.pem`,
//!   and turns them into the TLS settings of tonic, `auth-backend` and `auth-raft`.
//! - **An in-process backend**: a [`GrpcServer`] serves `AuthService` (the real
//!   `auth_backend::serve`) for any `AuthApi` on `127.0.0.1:0`, in plaintext or over TLS
//!   with a [`TestCa`]'s certificate, and shuts down gracefully on drop or
//!   [`GrpcServer::stop`]. It runs on the test's runtime, or on a runtime of its own
//!   (for synchronous tests, and to be killed outright like a crashed process).
//! - **A cluster of processes**: a [`ProcCluster`] runs real `auth-backend serve
//!   --storage raft` processes on loopback with mutual TLS between them, to be killed,
//!   paused and restarted.
//!
//! Every wait here is bounded; a fixture that cannot come up or shut down in time
//! panics, naming what it waited for.
//!
//! ```
//! use auth_testing::{GrpcServer, TestCa, fast_auth};
//! use auth_backend::{RemoteAuth, RemoteOptions};
//! use auth_core::AuthApi;
//! use auth_core::api::RegisterRequest;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ca = TestCa::new("doc CA");
//! let server = GrpcServer::builder().tls(&ca).start(fast_auth()).await;
//! assert!(server.url().starts_with("https://127.0.0.1:"));
//!
//! let options = RemoteOptions { tls: Some(ca.client_tls()), ..RemoteOptions::default() };
//! let remote = RemoteAuth::new([server.url()], options).unwrap();
//! let registered = remote
//!     .register(RegisterRequest { username: "ada".into(), password: "correct horse".into(), client: None })
//!     .await
//!     .unwrap();
//! assert_eq!(registered.user.unwrap().username, "ada");
//! server.stop().await;
//! # }
//! ```
#![warn(missing_docs)]

mod ca;
pub mod fuzz;
mod grpc;
mod intercept;
mod procs;
pub mod prometheus;
mod raw;

use std::net::SocketAddr;
use std::time::Duration;

use auth_core::{Auth, Config, HashParams};
use auth_storage::memory::MemoryStorage;

pub use ca::TestCa;
pub use grpc::{GrpcServer, GrpcServerBuilder};
pub use intercept::{Hook, Intercepted};
pub use procs::{ProcCluster, ProcNode, SeedTarget, write_signing_key};
pub use raw::{RawCodec, raw_stream, replies};

/// The current TOTP step (unix seconds / 30) on the system clock, which servers under
/// test read: the code of this step, or of the next, is accepted.
pub fn totp_step_now() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs / 30
}

/// How long a fixture waits for a server to come up or shut down before it panics.
pub const FIXTURE_DEADLINE: Duration = Duration::from_secs(30);

/// A test configuration: cheap argon2 ([`HashParams::insecure_fast`]) and no
/// throttling by source (tests drive many calls from 127.0.0.1; throttling has its own
/// tests, which set [`ThrottlePolicy`](auth_core::ThrottlePolicy) themselves), everything
/// else default.
pub fn fast_config() -> Config {
    let mut config = Config::default();
    config.hash = HashParams::insecure_fast();
    config.throttle = auth_core::ThrottlePolicy::disabled();
    config
}

/// A started `Auth` over memory storage with [`fast_config`]. Call it inside a tokio
/// runtime: the session sweeper is spawned there.
pub fn fast_auth() -> Auth<MemoryStorage> {
    fast_auth_with(fast_config())
}

/// A started `Auth` over memory storage with this configuration.
pub fn fast_auth_with(config: Config) -> Auth<MemoryStorage> {
    let auth = Auth::new(config, MemoryStorage::new()).expect("valid test config");
    auth.start().expect("start auth");
    auth
}

/// A loopback address nothing listens on (connections to it are refused): the port
/// was free a moment ago and is released again.
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// A loopback port for a child process to listen on, chosen below Linux's ephemeral
/// range (32768–60999). A port from `bind(…:0)` is released before the child binds it,
/// and in that gap any outgoing connection of a parallel test may take it as its local
/// port; ports below the range are never handed out that way. Each call in a process
/// returns a different port (a counter from a per-process offset), checked free.
pub fn child_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}
