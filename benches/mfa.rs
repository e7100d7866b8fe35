//! The cost of a second factor beside the password login it follows, in one run.
//!
//! Group `mfa`:
//! - `password_login`: `Auth::login` with the default argon2id (m=19456, t=2, p=1): the
//!   baseline, what the first step costs.
//! - `second_step_totp`: `Auth::login_mfa` with a TOTP code: the ticket taken, the code
//!   checked against the sealed secret (opened with XChaCha20-Poly1305), the step moved
//!   by compare-and-set under lockout accounting, a session opened, tokens signed.
//! - `second_step_passkey`: `Auth::passkey_login_finish` with a WebAuthn assertion:
//!   ceremony and ticket taken, the ES256 signature verified by webauthn-rs, the counter
//!   moved by compare-and-set, a session opened, tokens signed.
//! - `totp_verify`: `TotpSecret::verify` alone (three HMAC-SHA1 codes compared).
//! - `webauthn_verify`: webauthn-rs `finish_passkey_authentication` alone.
//!
//! Setup work (the password step that mints each ticket, the authenticator signing
//! each assertion) is excluded with `iter_batched`. Memory storage, a manual clock
//! moved one TOTP step per iteration (a code is accepted once per step).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use auth_sdk::api::*;
use auth_sdk::auth_core::PasskeyConfig;
use auth_sdk::auth_core::mfa::TotpSecret;
use auth_sdk::{Auth, AuthApi, Clock, Config, HashParams, ManualClock, MemoryStorage};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RequestChallengeResponse, Url, WebauthnBuilder,
};

const PASSWORD: &str = "correct horse battery staple";
const ORIGIN: &str = "http://localhost:8080";

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// Default argon2: the baseline.
    auth: Auth<MemoryStorage>,
    /// The same configuration with a cheap hash: its password steps only mint tickets
    /// (the second step hashes nothing).
    fast: Auth<MemoryStorage>,
    clock: Arc<ManualClock>,
    secret: TotpSecret,
    key: WebauthnAuthenticator<SoftPasskey>,
}

fn config(clock: &Arc<ManualClock>) -> Config {
    let mut c = Config::default();
    c.clock = clock.clone();
    c.throttle = auth_sdk::ThrottlePolicy::disabled();
    c.mfa.passkeys = Some(PasskeyConfig::new("localhost", ORIGIN));
    c
}

fn register(rt: &tokio::runtime::Runtime, auth: &Auth<MemoryStorage>, name: &str) -> TokenPair {
    rt.block_on(async {
        auth.register(RegisterRequest {
            username: name.into(),
            password: PASSWORD.into(),
            client: None,
        })
        .await
        .expect("register");
        auth.login(login(name))
            .await
            .expect("login")
            .into_tokens()
            .expect("tokens")
    })
}

fn login(name: &str) -> LoginRequest {
    LoginRequest {
        username: name.into(),
        password: PASSWORD.into(),
        client: None,
    }
}

fn setup() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let auth = Auth::new(config(&clock), MemoryStorage::new()).expect("auth");
    register(&rt, &auth, "baseline");
    let mut cheap = config(&clock);
    cheap.hash = HashParams::insecure_fast();
    let fast = Auth::new(cheap, MemoryStorage::new()).expect("auth");
    let auth_ = auth;
    let auth = &fast;
    let totp_tokens = register(&rt, auth, "totp");
    let secret = rt.block_on(async {
        let started = auth
            .totp_enroll(TotpEnrollRequest {
                access_token: totp_tokens.access_token.clone(),
            })
            .await
            .expect("enroll");
        let secret = TotpSecret::from_base32(&started.secret).expect("secret");
        let step = step_of(clock.now_ms());
        auth.totp_confirm(TotpConfirmRequest {
            access_token: totp_tokens.access_token,
            code: secret.code_at_step(step),
            client: None,
        })
        .await
        .expect("confirm");
        secret
    });
    let passkey_tokens = register(&rt, auth, "passkey");
    let mut key = WebauthnAuthenticator::new(SoftPasskey::new(true));
    rt.block_on(async {
        let c = auth
            .passkey_register_start(PasskeyRegisterStartRequest {
                access_token: passkey_tokens.access_token.clone(),
                name: "bench".into(),
            })
            .await
            .expect("start");
        let options: CreationChallengeResponse =
            serde_json::from_str(&c.options_json).expect("options");
        let att = key
            .do_registration(Url::parse(ORIGIN).expect("url"), options)
            .expect("register");
        auth.passkey_register_finish(PasskeyRegisterFinishRequest {
            access_token: passkey_tokens.access_token,
            ceremony_id: c.ceremony_id,
            credential_json: serde_json::to_string(&att).expect("json"),
            client: None,
        })
        .await
        .expect("finish");
    });
    Fixture {
        rt,
        auth: auth_,
        fast,
        clock,
        secret,
        key,
    }
}

fn step_of(now_ms: i64) -> u64 {
    u64::try_from(now_ms / 1000).expect("positive") / 30
}

fn bench_mfa(c: &mut Criterion) {
    let mut f = setup();
    let mut g = c.benchmark_group("mfa");
    g.sample_size(20).measurement_time(Duration::from_secs(8));

    g.bench_function("password_login", |b| {
        b.iter(|| {
            black_box(
                f.rt.block_on(f.auth.login(login("baseline")))
                    .expect("login"),
            )
        })
    });

    let (auth, clock, secret, rt) = (&f.fast, &f.clock, &f.secret, &f.rt);
    g.bench_function("second_step_totp", |b| {
        b.iter_batched(
            || {
                clock.advance(Duration::from_secs(30));
                let ticket = rt.block_on(auth.login(login("totp"))).expect("ticket");
                (
                    ticket.mfa_ticket,
                    secret.code_at_step(step_of(clock.now_ms())),
                )
            },
            |(mfa_ticket, code)| {
                let r = rt.block_on(auth.login_mfa(LoginMfaRequest {
                    mfa_ticket,
                    code,
                    client: None,
                }));
                black_box(r.expect("second step"))
            },
            BatchSize::PerIteration,
        )
    });

    let key = &mut f.key;
    g.bench_function("second_step_passkey", |b| {
        b.iter_batched(
            || {
                let ticket = rt.block_on(auth.login(login("passkey"))).expect("ticket");
                let started = rt
                    .block_on(auth.passkey_login_start(PasskeyLoginStartRequest {
                        mfa_ticket: ticket.mfa_ticket.clone(),
                        client: None,
                    }))
                    .expect("start");
                let options: RequestChallengeResponse =
                    serde_json::from_str(&started.options_json).expect("options");
                let assertion = key
                    .do_authentication(Url::parse(ORIGIN).expect("url"), options)
                    .expect("assert");
                PasskeyLoginFinishRequest {
                    ceremony_id: started.ceremony_id,
                    credential_json: serde_json::to_string(&assertion).expect("json"),
                    mfa_ticket: ticket.mfa_ticket,
                    client: None,
                }
            },
            |req| black_box(rt.block_on(auth.passkey_login_finish(req)).expect("finish")),
            BatchSize::PerIteration,
        )
    });

    g.bench_function("totp_verify", |b| {
        let now = clock.now_ms();
        let code = secret.code_at_step(step_of(now));
        b.iter(|| black_box(secret.verify(black_box(&code), now, None).expect("valid")))
    });

    // webauthn-rs alone: its own relying party and a registered software passkey.
    let origin = Url::parse(ORIGIN).expect("url");
    let rp = WebauthnBuilder::new("localhost", &origin)
        .expect("rp")
        .build()
        .expect("rp");
    let mut soft = WebauthnAuthenticator::new(SoftPasskey::new(true));
    let (ccr, reg) = rp
        .start_passkey_registration(webauthn_rs::prelude::Uuid::nil(), "b", "b", None)
        .expect("start");
    let att = soft.do_registration(origin.clone(), ccr).expect("register");
    let passkey = rp.finish_passkey_registration(&att, &reg).expect("finish");
    g.bench_function("webauthn_verify", |b| {
        b.iter_batched(
            || {
                let (rcr, state) = rp
                    .start_passkey_authentication(std::slice::from_ref(&passkey))
                    .expect("start");
                let a: PublicKeyCredential =
                    soft.do_authentication(origin.clone(), rcr).expect("assert");
                (a, state)
            },
            |(a, state)| black_box(rp.finish_passkey_authentication(&a, &state).expect("ok")),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_mfa);
criterion_main!(benches);
