//! The `auth-backend` binary end to end: start it on an ephemeral port, talk gRPC to it,
//! stop it with a signal; configuration errors exit non-zero with a clear message.

mod common;

use common::{claimed, recorded_ip};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use auth_core::api::*;
use auth_proto::v1::auth_service_client::AuthServiceClient;

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const DEADLINE: Duration = Duration::from_secs(30);
const PW: &str = "correct horse battery";
const FAST: &[&str] = &["--argon2-memory-kib", "64", "--argon2-iterations", "1"];

/// A running `auth-backend`; killed on drop if it has not exited.
struct Backend {
    pid: u32,
    addr: String,
    exited: mpsc::Receiver<ExitStatus>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    done: bool,
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("AUTH_BACKEND_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Collects a pipe on a thread (so the child never blocks on a full pipe); lines are
/// sent as they come, the whole text once the pipe closes.
fn drain(
    pipe: impl Read + Send + 'static,
    lines: Option<mpsc::Sender<String>>,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            if let Some(l) = &lines {
                let _ = l.send(line.clone());
            }
            all.push_str(&line);
            line.clear();
        }
        let _ = tx.send(all);
    });
    rx
}

fn wait_thread(mut child: Child) -> mpsc::Receiver<ExitStatus> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(status);
        }
    });
    rx
}

impl Backend {
    /// Starts `auth-backend serve ARGS` and waits (bounded) for `listening on <addr>`.
    fn start(args: &[&str]) -> Self {
        Self::start_with(command(&[&["serve"], args].concat()))
    }

    fn start_with(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn auth-backend");
        let pid = child.id();
        let (line_tx, line_rx) = mpsc::channel();
        let stdout = drain(child.stdout.take().unwrap(), Some(line_tx));
        let stderr = drain(child.stderr.take().unwrap(), None);
        let exited = wait_thread(child);
        let mut backend = Self {
            pid,
            addr: String::new(),
            exited,
            stdout,
            stderr,
            done: false,
        };
        match line_rx.recv_timeout(DEADLINE) {
            Ok(line) => {
                let addr = line
                    .trim_end()
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"));
                backend.addr = addr.to_owned();
            }
            Err(_) => {
                let stderr = backend.stderr_after_exit();
                panic!("auth-backend did not report its address; stderr:\n{stderr}");
            }
        }
        backend
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        match self.exited.recv_timeout(DEADLINE) {
            Ok(status) => {
                self.done = true;
                status
            }
            Err(_) => panic!("auth-backend did not exit within {DEADLINE:?}"),
        }
    }

    /// Everything written to stderr (after the process exited).
    fn stderr_after_exit(&mut self) -> String {
        if !self.done {
            self.signal("KILL");
            let _ = self.wait();
        }
        self.stderr.recv_timeout(DEADLINE).unwrap_or_default()
    }

    fn stdout_after_exit(&self) -> String {
        self.stdout.recv_timeout(DEADLINE).unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if !self.done {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Runs the binary to completion (bounded) and returns (status, stdout, stderr).
fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = command(args).spawn().expect("spawn");
    let pid = child.id();
    let out = drain(child.stdout.take().unwrap(), None);
    let err = drain(child.stderr.take().unwrap(), None);
    let exited = wait_thread(child);
    let status = exited.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("auth-backend {args:?} did not exit");
    });
    (
        status,
        out.recv_timeout(DEADLINE).unwrap_or_default(),
        err.recv_timeout(DEADLINE).unwrap_or_default(),
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("auth-backend-bin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a file readable by its owner only (the backend refuses key files others can
/// read).
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    auth_raft::tls::write_private_file(&p, text.as_bytes()).unwrap();
    p
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Register + login + verify over gRPC; returns the access token.
fn register_and_login(url: &str, name: &str) -> String {
    runtime().block_on(async {
        let mut c = AuthServiceClient::connect(url.to_owned())
            .await
            .expect("connect");
        c.register(RegisterRequest {
            username: name.into(),
            password: PW.into(),
            client: None,
        })
        .await
        .expect("register");
        let t = c
            .login(LoginRequest {
                username: name.into(),
                password: PW.into(),
                client: None,
            })
            .await
            .expect("login")
            .into_inner()
            .tokens
            .expect("tokens");
        let v = c
            .verify(VerifyRequest {
                access_token: t.access_token.clone(),
            })
            .await
            .expect("verify")
            .into_inner();
        assert_eq!(v.username, name);
        t.access_token
    })
}

#[test]
fn serves_grpc_and_exits_zero_on_sigterm() {
    let mut b = Backend::start(&[&["--listen", "127.0.0.1:0"], FAST].concat());
    assert!(!b.addr.ends_with(":0"), "{}", b.addr);
    register_and_login(&b.url(), "alice");
    b.signal("TERM");
    let status = b.wait();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(b.stdout_after_exit(), format!("listening on {}\n", b.addr));
    let stderr = b.stderr_after_exit();
    assert!(
        stderr.contains("random key"),
        "no warning about the random key:\n{stderr}"
    );
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[test]
fn exits_zero_on_sigint_too() {
    let mut b = Backend::start(&[&["--listen", "127.0.0.1:0"], FAST].concat());
    b.signal("INT");
    assert!(b.wait().success());
}

#[test]
fn config_file_and_environment_are_used_and_flags_win() {
    let dir = temp_dir("cfg");
    // 32 bytes of 'A', base64.
    write(
        &dir,
        "hs.key",
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n",
    );
    let conf = write(
        &dir,
        "backend.toml",
        r#"
        listen = "256.0.0.1:1"        # invalid on purpose: the flag must win
        storage = "memory"
        log_format = "json"
        [tokens]
        access_token_ttl = "5m"
        issuer = "file-issuer"
        signing_key_file = "hs.key"
        signing_key_id = "file-kid"
        [argon2]
        memory_kib = 64
        iterations = 1
        "#,
    );
    let mut cmd = command(&["serve", "--listen", "127.0.0.1:0"]);
    cmd.env("AUTH_BACKEND_CONFIG", &conf)
        .env("AUTH_BACKEND_MAX_REQUEST_BYTES", "4096");
    let mut b = Backend::start_with(cmd);
    let token = register_and_login(&b.url(), "bob");

    // The token is signed with the configured key id and issuer, lives 5 minutes.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let header: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["kid"], "file-kid", "{header}");
    assert_eq!(claims["iss"], "file-issuer", "{claims}");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    // The environment's request limit applies.
    runtime().block_on(async {
        let mut c = AuthServiceClient::connect(b.url()).await.unwrap();
        let e = c
            .verify(VerifyRequest {
                access_token: "x".repeat(8192),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    });

    b.signal("TERM");
    assert!(b.wait().success());
    // Logs are JSON lines on stderr; no warning about a random signing key.
    let stderr = b.stderr_after_exit();
    assert!(!stderr.contains("no signing key configured"), "{stderr}");
    let mut lines = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 2, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_config_key_exits_non_zero_with_a_clear_message() {
    let dir = temp_dir("unknown");
    let conf = write(
        &dir,
        "bad.toml",
        "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    );
    let (status, stdout, stderr) = run_to_exit(&["serve", "--config", conf.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("unknown field `listen_adress`"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configurations_exit_non_zero() {
    let (status, _, stderr) = run_to_exit(&["serve", "--storage", "raft"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--storage raft needs --id"), "{stderr}");

    // A wrong --peers list: this node is not in it.
    let (status, _, stderr) = run_to_exit(&[
        "serve",
        "--storage",
        "raft",
        "--id",
        "3",
        "--data-dir",
        "/tmp/never-created",
        "--peers",
        "1=127.0.0.1:1,2=127.0.0.1:2",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("does not list this node"), "{stderr}");

    let (status, _, stderr) = run_to_exit(&["serve", "--config", "/nonexistent/backend.toml"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("/nonexistent/backend.toml"), "{stderr}");

    let (status, _, stderr) = run_to_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--signing-key-file",
        "/nonexistent/key",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("cannot read key file"), "{stderr}");

    let (status, _, stderr) = run_to_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--audit-log-file",
        "/nonexistent/dir/audit.jsonl",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("/nonexistent/dir/audit.jsonl"), "{stderr}");

    let (status, _, stderr) = run_to_exit(&["serve", "--log-format", "xml"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("xml"), "{stderr}");

    let (status, _, _) = run_to_exit(&["frobnicate"]);
    assert_eq!(status.code(), Some(2));

    let (status, stdout, _) = run_to_exit(&["serve", "--help"]);
    assert!(status.success());
    assert!(stdout.contains("--signing-key-file"), "{stdout}");
    assert!(stdout.contains("AUTH_BACKEND_LISTEN"), "{stdout}");
}

#[test]
fn a_busy_port_exits_with_a_runtime_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stdout, stderr) =
        run_to_exit(&[&["serve", "--listen", addr.as_str()], FAST].concat());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

/// 40 wrong logins, each claiming a different address; returns the error codes.
async fn spoofed_flood(c: &mut AuthServiceClient<tonic::transport::Channel>) -> Vec<String> {
    let mut codes = Vec::new();
    for i in 0..40 {
        let s = c
            .login(claimed(
                &format!("nobody{i}"),
                "wrong password",
                &format!("198.51.100.{i}"),
            ))
            .await
            .unwrap_err();
        let code = s
            .metadata()
            .get("auth-error-code")
            .and_then(|v| v.to_str().ok());
        if code == Some("rate_limited") {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted);
            assert!(s.metadata().get("auth-retry-after-ms").is_some());
        }
        codes.push(code.unwrap_or("none").to_owned());
    }
    codes
}

/// The attack: a new `ClientInfo.ip` on every request, to dodge throttling by source.
/// An untrusted caller's claim is replaced by its connection's address, so the flood is
/// throttled as one source, and the session records the real address.
#[test]
fn a_spoofed_client_address_neither_dodges_throttling_nor_reaches_the_session() {
    let b = Backend::start(&[&["--listen", "127.0.0.1:0"], FAST].concat());
    let url = format!("http://{}", b.addr);
    runtime().block_on(async {
        let mut c = AuthServiceClient::connect(url).await.expect("connect");
        let ip = recorded_ip(&mut c, "victim", PW, "203.0.113.1").await;
        assert_eq!(ip, "127.0.0.1", "the claim must not be recorded");
        // The login bucket holds 20 at once (the login above was one of them).
        let codes = spoofed_flood(&mut c).await;
        let throttled = codes.iter().filter(|c| *c == "rate_limited").count();
        assert!(
            throttled >= 20,
            "only {throttled} of 40 spoofed logins throttled"
        );
    });
}

/// A trusted front end (here by address) may state its users' addresses: each user is
/// throttled on their own, and the session records the address it gave.
#[test]
fn a_trusted_front_end_speaks_for_its_users() {
    let b = Backend::start(
        &[
            &[
                "--listen",
                "127.0.0.1:0",
                "--trusted-frontends",
                "127.0.0.1",
            ],
            FAST,
        ]
        .concat(),
    );
    let url = format!("http://{}", b.addr);
    runtime().block_on(async {
        let mut c = AuthServiceClient::connect(url).await.expect("connect");
        let codes = spoofed_flood(&mut c).await;
        assert!(
            codes.iter().all(|c| c == "invalid_credentials"),
            "40 users' addresses, none throttled: {codes:?}"
        );
        assert_eq!(
            recorded_ip(&mut c, "alice", PW, "203.0.113.5").await,
            "203.0.113.5"
        );
    });
}

/// The `kid` header of a JWT.
fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let head = token.split('.').next().unwrap_or("");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("base64url header");
    let header: serde_json::Value = serde_json::from_slice(&json).expect("JSON header");
    header["kid"].as_str().unwrap_or("").to_owned()
}

/// The JWKS the `Keys` RPC serves.
fn published_keys(url: &str) -> auth_core::Jwks {
    runtime().block_on(async {
        let mut c = AuthServiceClient::connect(url.to_owned())
            .await
            .expect("connect");
        let keys = c.keys(KeysRequest {}).await.expect("Keys").into_inner();
        auth_core::Jwks::from(keys)
    })
}

#[test]
fn signing_keys_rotate_through_a_key_directory() {
    let dir = temp_dir("keydir");
    let keys = dir.join("keys");
    let keys = keys.to_str().unwrap();
    for id in ["2026-01", "2026-02"] {
        let (status, out, err) = run_to_exit(&["keys", "generate", "--dir", keys, "--id", id]);
        assert!(status.success(), "{err}");
        assert!(out.contains(id) && out.contains("EdDSA"), "{out}");
    }
    let list = ["keys", "list", "--dir", keys, "--signing-key-id", "2026-02"];
    let (status, out, _) = run_to_exit(&list);
    assert!(status.success());
    let signs: Vec<&str> = out.lines().filter(|l| l.contains(" yes ")).collect();
    assert!(signs.len() == 1 && signs[0].starts_with("2026-02"), "{out}");
    // Unpinned, a directory of several keys does not start: no node may pick a key
    // the others do not have yet.
    let (status, _, err) = run_to_exit(&[&["serve"], FAST, &["--signing-key-dir", keys]].concat());
    assert!(
        !status.success() && err.contains("--signing-key-id"),
        "{err}"
    );

    // Step one of a rotation: the new key is published but the old one still signs.
    fn args<'a>(keys: &'a str, current: &'a str) -> Vec<&'a str> {
        let listen = ["--listen", "127.0.0.1:0", "--signing-key-dir", keys];
        [FAST, &listen, &["--signing-key-id", current]].concat()
    }
    let old = Backend::start(&args(keys, "2026-01"));
    let old_token = register_and_login(&old.url(), "rota");
    assert_eq!(kid_of(&old_token), "2026-01");
    let jwks = published_keys(&old.url());
    let mut kids: Vec<String> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
    kids.sort();
    assert_eq!(kids, ["2026-01", "2026-02"]);
    drop(old);

    // Step two: the new key signs; tokens of the old one still check out against the
    // published keys (a stateless verifier in another service).
    let new = Backend::start(&args(keys, "2026-02"));
    let new_token = register_and_login(&new.url(), "rota");
    assert_eq!(kid_of(&new_token), "2026-02");
    let verifier = auth_core::Verifier::from_jwks(&published_keys(&new.url())).unwrap();
    runtime().block_on(async {
        assert_eq!(verifier.verify(&old_token).await.unwrap().name, "rota");
        assert_eq!(verifier.verify(&new_token).await.unwrap().name, "rota");
    });

    // An HS256 backend publishes nothing.
    let hs =
        Backend::start(&[FAST, &["--listen", "127.0.0.1:0", "--signing-alg", "hs256"]].concat());
    assert!(published_keys(&hs.url()).keys.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_bootstraps_the_first_administrator_from_a_private_password_file() {
    let dir = temp_dir("bootstrap");
    let pw_file = write(&dir, "admin.pw", &format!("{PW}\nignored second line\n"));
    let b = Backend::start(&[
        "--listen",
        "127.0.0.1:0",
        "--bootstrap-admin",
        "root",
        "--bootstrap-admin-password-file",
        pw_file.to_str().unwrap(),
    ]);
    let url = b.url();
    // The account is created in the background as soon as storage takes writes:
    // wait (bounded) for the login to work.
    let roles = runtime().block_on(async {
        let mut c = AuthServiceClient::connect(url).await.expect("connect");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let tokens = loop {
            let r = c
                .login(LoginRequest {
                    username: "root".into(),
                    password: PW.into(),
                    client: None,
                })
                .await;
            match r {
                Ok(r) => break r.into_inner().tokens.expect("tokens"),
                Err(e) if std::time::Instant::now() < deadline => {
                    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the administrator never appeared: {e:?}"),
            }
        };
        c.verify(VerifyRequest {
            access_token: tokens.access_token,
        })
        .await
        .expect("verify")
        .into_inner()
        .roles
    });
    assert_eq!(roles, vec!["admin".to_owned()]);
    drop(b);

    // A password file others can read is refused at start, like a key file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (status, _, stderr) = run_to_exit(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bootstrap-admin",
            "root",
            "--bootstrap-admin-password-file",
            pw_file.to_str().unwrap(),
        ]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("admin.pw"), "{stderr}");
    }
    // One without the other is a usage error.
    let (status, _, stderr) = run_to_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--bootstrap-admin",
        "root",
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("go together"), "{stderr}");
}

/// A base port with `n` nodes' ports (`step` each) free right now: bound once and
/// released. The kernel hands out ephemeral ports at random, so a run in parallel is
/// unlikely to take one in between; the cluster would then fail loudly.
fn free_port_block(n: u16, step: u16) -> u16 {
    for _ in 0..200 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        let Some(last) = base.checked_add(step * n) else {
            continue;
        };
        let held: Vec<_> = (base..last)
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(step * n) {
            return base;
        }
    }
    panic!("no block of free ports");
}

/// The HTTP status of a GET of `url`'s `/metrics` (`host:port`), with `token` as bearer.
fn metrics_status(addr: &str, token: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

/// `auth-backend cluster` prints its table only once a leader is elected and every
/// node knows it: the first write through each node, at once, succeeds. With
/// `--metrics`, every node's `/metrics` wants the bearer token the cluster wrote to its
/// data dir: a scraper without it, or with another, gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_prints_its_table_once_every_node_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(3, 3).to_string();
    let mut cmd = command(&[
        "cluster",
        "--nodes",
        "3",
        "--base-port",
        &base,
        "--port-step",
        "3",
        "--metrics",
        "--insecure",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--",
        "--argon2-memory-kib",
        "64",
        "--argon2-iterations",
        "1",
    ]);
    let mut child = cmd.spawn().expect("spawn auth-backend cluster");
    let pid = child.id();
    let (line_tx, lines) = mpsc::channel();
    let _stdout = drain(child.stdout.take().unwrap(), Some(line_tx));
    let stderr = drain(child.stderr.take().unwrap(), None);
    let exited = wait_thread(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut endpoints = None;
    let mut seen = String::new();
    // The table, then the endpoints, the metrics addresses and the token's file.
    while endpoints.is_none() || !seen.contains("metrics bearer token: ") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                if let Some(e) = line.trim_end().strip_prefix("endpoints: ") {
                    endpoints = Some(e.split(',').map(str::to_owned).collect::<Vec<_>>());
                }
            }
            Err(_) => panic!(
                "no endpoints or metrics lines; stdout so far:\n{seen}\nstderr:\n{}",
                stderr
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default()
            ),
        }
    }
    assert!(seen.contains("leads and writes are accepted"), "{seen}");
    for (i, e) in endpoints.unwrap().iter().enumerate() {
        let mut c = AuthServiceClient::connect(format!("http://{e}"))
            .await
            .unwrap();
        let r = c
            .register(auth_proto::v1::RegisterRequest {
                username: format!("first{i}"),
                password: PW.into(),
                client: None,
            })
            .await;
        assert!(r.is_ok(), "the first write through {e} failed: {r:?}");
    }
    let token = std::fs::read_to_string(dir.path().join("metrics.token"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.len() >= 32, "{token:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("metrics.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let metrics: Vec<String> = seen
        .lines()
        .find_map(|l| l.strip_prefix("metrics: "))
        .expect("a metrics line")
        .split_whitespace()
        .map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_owned()
        })
        .collect();
    assert_eq!(metrics.len(), 3, "{seen}");
    let statuses = tokio::task::spawn_blocking(move || {
        metrics
            .iter()
            .map(|m| {
                (
                    metrics_status(m, None),
                    metrics_status(m, Some("another-token-of-a-plausible-length")),
                    metrics_status(m, Some(&token)),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(statuses, vec![(401, 401, 200); 3]);
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = exited
        .recv_timeout(DEADLINE)
        .expect("cluster stops on SIGTERM");
    assert!(status.success(), "{status}");
}
