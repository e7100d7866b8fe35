//! `verify` against a bare `jsonwebtoken` decode of the same token.
//!
//! Baseline: `jsonwebtoken::decode` with the same key and an equivalent `Validation`.
//! Measured: `Auth::verify_token` stateless (decode + header/kid lookup + clock checks)
//! and with the session check on `MemoryStorage` (the default).

use std::hint::black_box;

use auth_sdk::api::{LoginRequest, RegisterRequest};
use auth_sdk::{
    Auth, AuthApi, Config, HashParams, KeyRing, MemoryStorage, SessionCheck, SigningKey,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

mod common;
use common::ready;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn auth(check: SessionCheck) -> Auth<MemoryStorage> {
    let keys = KeyRing::new(SigningKey::hs256("bench", SECRET).expect("key"));
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

criterion_group!(benches, bench_verify);
criterion_main!(benches);
