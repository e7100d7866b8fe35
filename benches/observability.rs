//! What metrics and the audit trail cost, as a ratio against both off, in one run.
//!
//! Group `observability_login`: `Auth::login` with the production argon2 parameters
//! and with the fast test hash (the bookkeeping at its most visible), audit off versus
//! on as the binaries run it: the `auth::audit` tracing target formatted by a
//! subscriber (into a sink), a JSON-lines file, and the Prometheus counters.
//!
//! Group `observability_verify`: a verify through the real servers, which carry the
//! metrics layers: gRPC (`RemoteAuth` → `AuthService` on loopback) and HTTP (the
//! auth-web router's `GET /api/v1/me`), each without a metrics recorder and then with
//! the Prometheus recorder installed. (The recorder is process-wide and cannot be
//! removed: the "off" runs come first.)

use std::hint::black_box;
use std::sync::Arc;

use auth_sdk::api::{LoginRequest, RegisterRequest, VerifyRequest};
use auth_sdk::audit::{Audit, AuditSink, JsonLinesSink, Rotation, Tee, TracingSink};
use auth_sdk::metrics::MetricsSink;
use auth_sdk::web::WebConfig;
use auth_sdk::{Auth, AuthApi, Config, HashParams, MemoryStorage};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt as _;

const PW: &str = "correct horse battery";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn auth(audit: Audit) -> Auth<MemoryStorage> {
    auth_hashing(audit, HashParams::insecure_fast())
}

fn auth_hashing(audit: Audit, hash: HashParams) -> Auth<MemoryStorage> {
    let mut config = Config::default();
    config.hash = hash;
    config.throttle = auth_sdk::ThrottlePolicy::disabled();
    config.audit = audit;
    Auth::new(config, MemoryStorage::new()).expect("auth")
}

fn login_req() -> LoginRequest {
    LoginRequest {
        username: "bench".into(),
        password: PW.into(),
        client: None,
    }
}

async fn signed_up(auth: &Auth<MemoryStorage>) -> String {
    auth.register(RegisterRequest {
        username: "bench".into(),
        password: PW.into(),
        client: None,
    })
    .await
    .expect("register");
    auth.login(login_req())
        .await
        .expect("login")
        .tokens
        .expect("tokens")
        .access_token
}

/// Audit as the binaries run it: the tracing target, a JSON-lines file, counters.
fn audit_on(dir: &std::path::Path) -> Audit {
    let file: Arc<dyn AuditSink> = Arc::new(
        JsonLinesSink::open(dir.join("audit.jsonl"), Rotation::default()).expect("audit file"),
    );
    Audit {
        sink: Arc::new(Tee(vec![
            Arc::new(TracingSink),
            file,
            Arc::new(MetricsSink::default()),
        ])),
        node: "bench".into(),
        recent: Some(Arc::new(auth_sdk::audit::RecentEvents::new(500))),
    }
}

/// A login with the fast test hash (the bookkeeping at its most visible) and with the
/// production argon2 parameters (what a login really costs).
fn bench_login(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, audit: &Audit) {
    let mut g = c.benchmark_group("observability_login");
    g.throughput(Throughput::Elements(1));
    for (hash_name, hash) in [
        ("fast_hash", HashParams::insecure_fast()),
        ("argon2_default", HashParams::default()),
    ] {
        let auth = auth_hashing(audit.clone(), hash);
        rt.block_on(signed_up(&auth));
        g.bench_function(format!("{hash_name}/{name}"), |b| {
            b.to_async(rt)
                .iter(|| async { black_box(auth.login(login_req()).await.expect("login")) });
        });
    }
    g.finish();
}

/// The verify paths: gRPC through a served `AuthService`, HTTP through the site.
struct Servers {
    remote: auth_sdk::grpc::RemoteAuth,
    token: String,
    app: axum::Router,
    _grpc: auth_testing::GrpcServer,
}

fn servers(rt: &tokio::runtime::Runtime) -> Servers {
    rt.block_on(async {
        let auth = auth(Audit::off());
        let token = signed_up(&auth).await;
        let grpc = auth_testing::GrpcServer::start(auth.clone()).await;
        let remote =
            auth_sdk::grpc::RemoteAuth::new([grpc.url()], Default::default()).expect("client");
        let app = auth_sdk::web::router(Arc::new(auth), WebConfig::default());
        Servers {
            remote,
            token,
            app,
            _grpc: grpc,
        }
    })
}

fn verify_round(c: &mut Criterion, rt: &tokio::runtime::Runtime, s: &Servers, label: &str) {
    let mut g = c.benchmark_group("observability_verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("grpc/{label}"), |b| {
        b.to_async(rt).iter(|| async {
            black_box(
                s.remote
                    .verify(VerifyRequest {
                        access_token: s.token.clone(),
                    })
                    .await
                    .expect("verify"),
            )
        });
    });
    g.bench_function(format!("http/{label}"), |b| {
        b.to_async(rt).iter(|| async {
            let req = axum::http::Request::get("/api/v1/me")
                .header("authorization", format!("Bearer {}", s.token))
                .body(axum::body::Body::empty())
                .expect("request");
            let resp = s.app.clone().oneshot(req).await.expect("response");
            assert!(resp.status().is_success());
            black_box(resp)
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    // Audit lines are formatted as the binaries do, written nowhere.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .try_init();
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = servers(&rt);
    verify_round(c, &rt, &s, "no_recorder");
    drop(s);
    bench_login(c, &rt, "off", &Audit::off());
    // From here on the Prometheus recorder is installed, for the rest of the process;
    // servers built now take their metric handles from it.
    auth_sdk::metrics::install().expect("recorder");
    let s = servers(&rt);
    verify_round(c, &rt, &s, "prometheus");
    bench_login(c, &rt, "audit_and_metrics", &audit_on(dir.path()));
}

criterion_group!(group, benches);
criterion_main!(group);
