//! `verify` against a bare `jsonwebtoken` decode of the same token.
//!
//! Group `verify` (HS256). Baseline: `jsonwebtoken::decode` with the same key and an
//! equivalent `Validation`. Measured: `Auth::verify_token` stateless (decode +
//! header/kid lookup + clock checks) and with the session check on `MemoryStorage`
//! (the default).
//!
//! Group `verify_eddsa` (Ed25519, what other services verify from the JWKS). Baseline:
//! `jsonwebtoken::decode` with the public key. Measured: `Verifier::verify_cached` and
//! `Verifier::verify` (built from the issuer's JWKS), and the axum extractor's whole
//! verify path: a request with `Authorization: Bearer` through `Authenticator::layer`
//! into a handler that takes `AuthUser`, stateless (a `Verifier`) and through the
//! `AuthApi` (signature + session check on `MemoryStorage`).

use std::hint::black_box;

use auth_sdk::api::{LoginRequest, RegisterRequest};
use std::sync::Arc;

use auth_sdk::web::WebConfig;
use auth_sdk::web::protect::{AuthUser, Authenticator};
use auth_sdk::{
    Auth, AuthApi, Config, HashParams, KeyRing, MemoryStorage, SessionCheck, SigningKey, Verifier,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

mod common;
use common::ready;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn auth(check: SessionCheck) -> Auth<MemoryStorage> {
    auth_with(
        check,
        KeyRing::new(SigningKey::hs256("bench", SECRET).expect("key")),
    )
}

fn auth_with(check: SessionCheck, keys: KeyRing) -> Auth<MemoryStorage> {
    let mut config = Config::default();
    config.hash = HashParams::insecure_fast();
    config.keys = Some(keys);
    config.session_check = check;
    Auth::new(config, MemoryStorage::new()).expect("auth")
}

fn token(rt: &tokio::runtime::Runtime, auth: &Auth<MemoryStorage>) -> String {
    rt.block_on(async {
        auth.register(RegisterRequest {
            username: "bench".into(),
            password: "bench-password".into(),
            client: None,
        })
        .await
        .expect("register");
        // Fill storage so the session lookup is not into a near-empty map.
        for i in 0..10_000 {
            let _ = auth
                .register(RegisterRequest {
                    username: format!("filler{i}"),
                    password: "bench-password".into(),
                    client: None,
                })
                .await;
        }
        auth.login(LoginRequest {
            username: "bench".into(),
            password: "bench-password".into(),
            client: None,
        })
        .await
        .expect("login")
        .tokens
        .expect("tokens")
        .access_token
    })
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct BareClaims {
    sub: String,
    sid: String,
    name: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

fn bench_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let with_session = auth(SessionCheck::Always);
    let stateless = auth(SessionCheck::Stateless);
    let t1 = token(&rt, &with_session);
    let t2 = token(&rt, &stateless);

    let key = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["auth-sdk"]);
    validation.set_audience(&["auth-sdk"]);

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<BareClaims>(black_box(&t1), &key, &validation).expect("decode")
        })
    });
    g.bench_function("auth_verify_stateless", |b| {
        b.iter(|| ready(stateless.verify_token(black_box(&t2))).expect("verify"))
    });
    g.bench_function("auth_verify_session_check", |b| {
        b.iter(|| ready(with_session.verify_token(black_box(&t1))).expect("verify"))
    });
    g.finish();
}

/// Ratios to the first entry, measured interleaved: 100 rounds, each timing 100 calls
/// of every entry in turn, so that the machine's drift (a shared, noisy VM) hits all of
/// them alike. Prints the median per-call time of each and its ratio to the first.
fn interleaved(entries: &mut [(&str, &mut dyn FnMut())]) {
    const ROUNDS: usize = 100;
    const CALLS: u32 = 100;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); entries.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in entries.iter_mut().enumerate() {
            let start = std::time::Instant::now();
            for _ in 0..CALLS {
                f();
            }
            times[i].push(start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!(
        "interleaved ({ROUNDS} rounds x {CALLS} calls), median µs per call, ratio to the first:"
    );
    for ((name, _), m) in entries.iter().zip(&medians) {
        println!("  {name:<36} {m:8.2} µs  {:5.1} %", 100.0 * medians[0] / m);
    }
}

/// A service that runs the `AuthUser` extractor under `authenticator`'s layer, as an
/// axum handler would, and answers with the username.
fn guarded(
    authenticator: Authenticator,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    use axum::extract::FromRequestParts as _;
    use axum::response::IntoResponse as _;
    let handler = tower::service_fn(|req: axum::extract::Request| async move {
        let (mut parts, _) = req.into_parts();
        let resp = match AuthUser::from_request_parts(&mut parts, &()).await {
            Ok(user) => user.username.into_response(),
            Err(rejection) => rejection.into_response(),
        };
        Ok::<_, std::convert::Infallible>(resp)
    });
    tower::Layer::layer(&authenticator.layer(), handler)
}

fn bench_verify_eddsa(c: &mut Criterion) {
    use tower::Service as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ring = KeyRing::new(SigningKey::generate_ed25519());
    let issuer = auth_with(SessionCheck::Always, ring.clone());
    let t = token(&rt, &issuer);
    let jwks = issuer.jwks();

    let key = DecodingKey::from_ed_components(&jwks.keys[0].x).expect("public key");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["auth-sdk"]);
    validation.set_audience(&["auth-sdk"]);
    let verifier = Verifier::from_jwks(&jwks).expect("verifier");
    let web = WebConfig::default();
    let mut stateless = guarded(Authenticator::stateless(verifier.clone(), &web));
    let api: Arc<dyn AuthApi> = Arc::new(issuer.clone());
    let mut through_api = guarded(Authenticator::new(api, &web));
    let request = || {
        axum::http::Request::builder()
            .uri("/private")
            .header("authorization", format!("Bearer {t}"))
            .body(axum::body::Body::empty())
            .expect("request")
    };
    // Both accept the token (a 401 would measure the refusal path instead).
    assert_eq!(
        ready(stateless.call(request()))
            .expect("infallible")
            .status(),
        200
    );
    assert_eq!(
        ready(through_api.call(request()))
            .expect("infallible")
            .status(),
        200
    );

    interleaved(&mut [
        ("bare_jsonwebtoken_decode", &mut || {
            jsonwebtoken::decode::<BareClaims>(black_box(&t), &key, &validation).expect("decode");
        }),
        ("verifier_verify_cached", &mut || {
            verifier.verify_cached(black_box(&t)).expect("verify");
        }),
        ("verifier_verify", &mut || {
            ready(verifier.verify(black_box(&t))).expect("verify");
        }),
        ("extractor_stateless", &mut || {
            ready(stateless.call(request())).expect("infallible");
        }),
        ("extractor_auth_api_session_check", &mut || {
            ready(through_api.call(request())).expect("infallible");
        }),
        // What the two extractor rows spend building their request (not the SDK's).
        ("request_construction_only", &mut || {
            drop(black_box(request()));
        }),
        ("bare_jsonwebtoken_decode (again)", &mut || {
            jsonwebtoken::decode::<BareClaims>(black_box(&t), &key, &validation).expect("decode");
        }),
    ]);

    let mut g = c.benchmark_group("verify_eddsa");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<BareClaims>(black_box(&t), &key, &validation).expect("decode")
        })
    });
    g.bench_function("verifier_verify_cached", |b| {
        b.iter(|| verifier.verify_cached(black_box(&t)).expect("verify"))
    });
    g.bench_function("verifier_verify", |b| {
        b.iter(|| ready(verifier.verify(black_box(&t))).expect("verify"))
    });
    g.bench_function("extractor_stateless", |b| {
        b.iter_batched(
            request,
            |req| ready(stateless.call(req)).expect("infallible"),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("extractor_auth_api_session_check", |b| {
        b.iter_batched(
            request,
            |req| ready(through_api.call(req)).expect("infallible"),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_verify, bench_verify_eddsa);
criterion_main!(benches);
