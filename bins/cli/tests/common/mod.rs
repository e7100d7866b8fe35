//! Shared helpers of the authctl tests: an in-process backend (plaintext or TLS, from
//! `auth-testing`) on an ephemeral port, and the real binary run with piped stdin,
//! bounded in time.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use auth_testing::{GrpcServer, TestCa, fast_auth, unused_addr};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_authctl");
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const PW: &str = "correct horse battery";

/// Every variable authctl reads, removed so that the caller's environment cannot leak
/// into a test.
pub const AUTHCTL_ENV: [&str; 7] = [
    "AUTHCTL_ACCESS_TOKEN",
    "AUTHCTL_ENDPOINTS",
    "AUTHCTL_TIMEOUT",
    "AUTHCTL_CACERT",
    "AUTHCTL_CERT",
    "AUTHCTL_KEY",
    "AUTHCTL_PEER_ENDPOINTS",
];

/// A backend over a fast `Auth`, on a runtime of its own (these tests are synchronous);
/// dropping it stops it and checks that it stopped cleanly.
pub fn backend() -> GrpcServer {
    GrpcServer::builder().start_on_own_runtime(async { fast_auth() })
}

/// [`backend`] with an administrator `root` (password [`PW`]).
pub fn admin_backend() -> GrpcServer {
    GrpcServer::builder().start_on_own_runtime(async {
        let auth = fast_auth();
        auth.bootstrap_admin("root", PW).await.expect("bootstrap");
        auth
    })
}

/// [`backend`] over TLS, with a server certificate from `ca`.
pub fn tls_backend(ca: &TestCa) -> GrpcServer {
    GrpcServer::builder()
        .tls(ca)
        .start_on_own_runtime(async { fast_auth() })
}

/// A backend whose `Auth` is stopped before it is served: every call is answered
/// `stopped` (UNAVAILABLE).
pub fn stopped_backend() -> GrpcServer {
    GrpcServer::builder().start_on_own_runtime(async {
        let auth = fast_auth();
        auth.stop().await;
        auth
    })
}

/// An address nothing listens on.
pub fn dead_endpoint() -> String {
    unused_addr().to_string()
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// `authctl` with a clean environment and piped stdio.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for var in AUTHCTL_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `authctl --endpoints EP ARGS` with `stdin` piped in; bounded by [`DEADLINE`].
pub fn ctl(endpoints: &str, args: &[&str], stdin: &str) -> Out {
    let mut cmd = command();
    if !endpoints.is_empty() {
        cmd.args(["--endpoints", endpoints]);
    }
    cmd.args(args);
    run(cmd, stdin)
}

pub fn run(mut cmd: Command, stdin: &str) -> Out {
    let mut child = cmd.spawn().expect("spawn authctl");
    let pid = child.id();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let err_thread = std::thread::spawn(move || {
            let _ = err_pipe.read_to_string(&mut stderr);
            stderr
        });
        let _ = out_pipe.read_to_string(&mut stdout);
        let stderr = err_thread.join().unwrap_or_default();
        let status = child.wait();
        let _ = tx.send((status, stdout, stderr));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok((status, stdout, stderr)) => Out {
            code: status.expect("wait").code().unwrap_or(-1),
            stdout,
            stderr,
        },
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("authctl did not finish within {DEADLINE:?}");
        }
    }
}

pub fn ok(out: Out) -> Out {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out
}
