//! Fuzzing every decoder that takes network input, through the public API: access tokens
//! (`Auth::verify_token`, `verify`), refresh tokens (`refresh`, `logout`), stored PHC
//! password hashes (`PasswordHasher::verify`), and usernames and passwords (`register`,
//! `login`).
//!
//! Each target mixes arbitrary strings with structure-aware inputs: a genuine token or
//! hash mutated byte by byte and segment by segment, and tokens forged from generated
//! headers and claims, signed with the right key, a wrong one, or none. Every case must
//! end in a typed error with a code from [`AuthError::CODES`] (a panic fails the case),
//! and anything accepted must really be valid.
//!
//! Reproducible by default: every target starts from [`DEFAULT_SEED`] and runs
//! [`DEFAULT_CASES`] cases. `PROPTEST_CASES` and `PROPTEST_RNG_SEED` override both; a
//! failure prints the seed and count to rerun it with, and proptest also saves the
//! failing case's seed under `proptest-regressions/`.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use auth_core::api::*;
use auth_core::password::PasswordHasher;
use auth_core::{
    AuthApi, AuthError, Claims, HashParams, KeyRing, PasswordPolicy, SigningKey, UsernamePolicy,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use common::*;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, RngAlgorithm, RngSeed, TestCaseResult,
    TestRunner, contextualize_config,
};
use serde_json::{Value, json};

/// Cases per target unless `PROPTEST_CASES` says otherwise. On two idle cores the file
/// takes about 40 s in a debug build; the stored-hash and register/login targets cost
/// most, since every case there runs argon2, which is unoptimised in a debug build.
const DEFAULT_CASES: u32 = 10_000;
/// The seed every target starts from unless `PROPTEST_RNG_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x5eed_0008_a17e_5dc0;
/// The cheapest argon2id there is (8 KiB, one pass): these targets fuzz the decoders in
/// front of the hash, and argon2 is unoptimised in a debug build.
const TINY_HASH: HashParams = HashParams {
    memory_kib: 8,
    iterations: 1,
    parallelism: 1,
};

// ---------------------------------------------------------------------------------------
// Runner

/// Runs `test` on `cases` values of `strategy` from the fixed seed (both overridable by
/// the `PROPTEST_*` variables); a failure panics with what is needed to replay it.
fn fuzz<S: Strategy>(
    target: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let config = contextualize_config(ProptestConfig {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(DEFAULT_SEED),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        source_file: Some(file!()),
        // Shrinking re-runs async cases; a minute is plenty to get a small input.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    });
    let (seed, cases) = (config.rng_seed, config.cases);
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!(
            "fuzz target {target} failed: {e}\n\
             replay with PROPTEST_RNG_SEED={seed} PROPTEST_CASES={cases}"
        );
    }
    eprintln!(
        "{target}: {cases} cases (seed {seed}) in {:?}",
        started.elapsed()
    );
}

/// A current-thread runtime that does not wait for stray blocking tasks when dropped,
/// so a hash that hangs fails its case instead of hanging the test process.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.0.as_ref().expect("runtime is live").block_on(f)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn runtime() -> Runtime {
    Runtime(Some(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
    ))
}

/// Passes if `r` is an error whose code is one of `allowed` (all of which must be
/// documented codes).
fn expect_err<T: std::fmt::Debug>(r: Result<T, AuthError>, allowed: &[&str]) -> TestCaseResult {
    match r {
        Ok(v) => Err(TestCaseError::fail(format!("accepted: {v:?}"))),
        Err(e) => {
            prop_assert!(
                AuthError::CODES.contains(&e.code()),
                "undocumented code {}",
                e.code()
            );
            prop_assert!(allowed.contains(&e.code()), "unexpected error {e:?}");
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mutations of a genuine input

/// One edit of a byte string. Positions are `Index`es, so they fit any length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index, usize),
    Truncate(Index),
    Duplicate(Index, usize),
    /// Swap two segments (split on the separator).
    SwapSegments(Index, Index),
    DropSegment(Index),
    /// Replace a segment with the base64url of these bytes.
    ReplaceSegment(Index, Vec<u8>),
}

/// Bytes an inserted byte is drawn from: separators and alphabet edges are more
/// interesting than uniform noise.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        prop::sample::select(b".$=,-_+/ 0129AZaz\"{}:\\\0\xff".to_vec()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Edit::Flip(i, m)),
        2 => (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapSegments(a, b)),
        1 => any::<Index>().prop_map(Edit::DropSegment),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(i, b)| Edit::ReplaceSegment(i, b)),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..4)
}

fn segments(b: &[u8], sep: u8) -> Vec<Vec<u8>> {
    b.split(|c| *c == sep).map(<[u8]>::to_vec).collect()
}

/// Applies `edits` to `input`, whose segments are separated by `sep`. The result is
/// made UTF-8 the way a front end would (lossily), since the API takes strings.
fn mutate(input: &str, sep: u8, edits: &[Edit]) -> String {
    let mut b = input.as_bytes().to_vec();
    for e in edits {
        match e {
            Edit::Flip(i, m) if !b.is_empty() => {
                let at = i.index(b.len());
                b[at] ^= m;
            }
            Edit::Insert(i, byte) => {
                let at = i.index(b.len() + 1);
                b.insert(at, *byte);
            }
            Edit::Delete(i, n) if !b.is_empty() => {
                let at = i.index(b.len());
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Edit::Truncate(i) => {
                let at = i.index(b.len() + 1);
                b.truncate(at);
            }
            Edit::Duplicate(i, n) if !b.is_empty() => {
                let at = i.index(b.len());
                let end = (at + n).min(b.len());
                let copy = b[at..end].to_vec();
                b.splice(end..end, copy);
            }
            Edit::SwapSegments(x, y) => {
                let mut parts = segments(&b, sep);
                let (x, y) = (x.index(parts.len()), y.index(parts.len()));
                parts.swap(x, y);
                b = parts.join(&sep);
            }
            Edit::DropSegment(i) => {
                let mut parts = segments(&b, sep);
                parts.remove(i.index(parts.len()));
                b = parts.join(&sep);
            }
            Edit::ReplaceSegment(i, with) => {
                let mut parts = segments(&b, sep);
                let at = i.index(parts.len());
                parts[at] = URL_SAFE_NO_PAD.encode(with).into_bytes();
                b = parts.join(&sep);
            }
            // An edit that needs a byte to work on, of an empty input.
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Arbitrary strings of three kinds: any Unicode, raw bytes made UTF-8, and very long.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => (prop::sample::select(vec!['a', '.', '$', '\u{0}', 'é']), 0usize..20_000)
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

// ---------------------------------------------------------------------------------------
// Access tokens

const HS_KID: &str = "fuzz-hs";
const HS_SECRET: [u8; 32] = [0x5a; 32];
const ED_KID: &str = "fuzz-ed";
const ED_SEED: [u8; 32] = [7; 32];

fn ed25519_der() -> Vec<u8> {
    ed25519_dalek::SigningKey::from_bytes(&ED_SEED)
        .to_pkcs8_der()
        .expect("pkcs8")
        .as_bytes()
        .to_vec()
}

/// Current HS256 key plus a previous Ed25519 one, so the rotation path is fuzzed too.
fn fuzz_keys() -> KeyRing {
    KeyRing::new(SigningKey::hs256(HS_KID, &HS_SECRET).expect("hs256"))
        .with_previous(SigningKey::ed25519_pkcs8_der(ED_KID, &ed25519_der()).expect("ed25519"))
        .expect("ring")
}

/// Who signs a forged token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signer {
    /// Empty signature segment.
    Unsigned,
    /// Random bytes as the signature.
    Garbage,
    /// The current HS256 secret.
    Current,
    /// Another HS256 secret.
    WrongSecret,
    /// The previous Ed25519 key.
    Previous,
    /// HMAC keyed with the Ed25519 public key (algorithm confusion).
    PublicKeyAsHmac,
}

/// A header field or claim: the right value, absent, or something else.
#[derive(Debug, Clone)]
enum Field {
    Right,
    Absent,
    Other(Value),
}

impl Field {
    fn put(&self, into: &mut serde_json::Map<String, Value>, name: &str, right: Value) {
        match self {
            Field::Right => {
                into.insert(name.into(), right);
            }
            Field::Absent => {}
            Field::Other(v) => {
                into.insert(name.into(), v.clone());
            }
        }
    }
}

/// An access token built from generated parts.
#[derive(Debug, Clone)]
struct Forged {
    alg: Field,
    kid: Field,
    extra_header: Option<(String, Value)>,
    claims: Vec<(&'static str, Field)>,
    /// Replaces the whole payload with arbitrary JSON.
    payload_override: Option<Value>,
    signer: Signer,
    garbage: Vec<u8>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| { serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number) }),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field(others: impl Strategy<Value = Value>) -> impl Strategy<Value = Field> {
    prop_oneof![
        6 => Just(Field::Right),
        1 => Just(Field::Absent),
        2 => others.prop_map(Field::Other),
    ]
}

/// Times near the edges of validity, and values no clock should accept.
fn time_value() -> impl Strategy<Value = Value> {
    let now = T0_MS / 1000;
    prop_oneof![
        (-100i64..100).prop_map(move |d| json!(now + d)),
        (-100i64..100).prop_map(move |d| json!(now + 900 + d)),
        prop::sample::select(vec![i64::MIN, i64::MAX, -1, 0, now - 31, now + 31])
            .prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(now as f64 + 0.5)),
        Just(json!(now.to_string())),
        json_value(),
    ]
}

fn string_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,40}".prop_map(Value::from),
        Just(json!("auth-sdk ")),
        Just(json!(["auth-sdk"])),
        json_value(),
    ]
}

fn forged() -> impl Strategy<Value = Forged> {
    let alg = prop::sample::select(vec![
        "HS256", "HS384", "HS512", "EdDSA", "none", "None", "RS256", "ES256", "PS256", "", "hs256",
    ]);
    let kid = prop::sample::select(vec![
        HS_KID,
        ED_KID,
        "unknown",
        "",
        "fuzz-hs ",
        "../fuzz-hs",
    ]);
    let claims = (
        field(string_value()),
        field(string_value()),
        field(string_value()),
        field(string_value()),
        field(string_value()),
        field(time_value()),
        field(time_value()),
        field(time_value()),
        field(string_value()),
    )
        .prop_map(|(iss, aud, sub, sid, name, iat, nbf, exp, jti)| {
            vec![
                ("iss", iss),
                ("aud", aud),
                ("sub", sub),
                ("sid", sid),
                ("name", name),
                ("iat", iat),
                ("nbf", nbf),
                ("exp", exp),
                ("jti", jti),
            ]
        });
    let signer = prop::sample::select(vec![
        Signer::Unsigned,
        Signer::Garbage,
        Signer::Current,
        Signer::Current,
        Signer::Current,
        Signer::WrongSecret,
        Signer::Previous,
        Signer::Previous,
        Signer::PublicKeyAsHmac,
    ]);
    (
        field(prop_oneof![alg.prop_map(Value::from), json_value()]),
        field(prop_oneof![kid.prop_map(Value::from), json_value()]),
        prop::option::weighted(0.2, ("[a-z]{1,5}", json_value())),
        claims,
        prop::option::weighted(0.1, json_value()),
        signer,
        prop::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(
            |(alg, kid, extra_header, claims, payload_override, signer, garbage)| Forged {
                alg,
                kid,
                extra_header,
                claims,
                payload_override,
                signer,
                garbage,
            },
        )
}

/// The session the forged tokens may name.
struct Genuine {
    user_id: String,
    session_id: String,
}

impl Forged {
    fn encode(&self, genuine: &Genuine) -> String {
        let (right_alg, right_kid) = match self.signer {
            Signer::Previous => ("EdDSA", ED_KID),
            _ => ("HS256", HS_KID),
        };
        let mut header = serde_json::Map::new();
        self.alg.put(&mut header, "alg", json!(right_alg));
        self.kid.put(&mut header, "kid", json!(right_kid));
        if let Some((k, v)) = &self.extra_header {
            header.insert(k.clone(), v.clone());
        }
        let payload = match &self.payload_override {
            Some(v) => v.clone(),
            None => {
                let now = T0_MS / 1000;
                let mut p = serde_json::Map::new();
                for (name, value) in &self.claims {
                    let right = match *name {
                        "iss" | "aud" => json!("auth-sdk"),
                        "sub" => json!(genuine.user_id),
                        "sid" => json!(genuine.session_id),
                        "name" => json!("alice"),
                        "iat" | "nbf" => json!(now),
                        "exp" => json!(now + 900),
                        _ => json!("jti-1"),
                    };
                    value.put(&mut p, name, right);
                }
                Value::Object(p)
            }
        };
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
        let input = format!("{}.{}", b64(&Value::Object(header)), b64(&payload));
        let sign = |key: &EncodingKey, alg| {
            jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign")
        };
        let sig = match self.signer {
            Signer::Unsigned => String::new(),
            Signer::Garbage => URL_SAFE_NO_PAD.encode(&self.garbage),
            Signer::Current => sign(&EncodingKey::from_secret(&HS_SECRET), Algorithm::HS256),
            Signer::WrongSecret => sign(&EncodingKey::from_secret(&[0xa5; 32]), Algorithm::HS256),
            Signer::Previous => sign(&EncodingKey::from_ed_der(&ed25519_der()), Algorithm::EdDSA),
            Signer::PublicKeyAsHmac => {
                let public = ed25519_dalek::SigningKey::from_bytes(&ED_SEED).verifying_key();
                sign(
                    &EncodingKey::from_secret(public.as_bytes()),
                    Algorithm::HS256,
                )
            }
        };
        format!("{input}.{sig}")
    }

    /// Whether this token is right in every respect, so it must verify.
    fn all_right(&self) -> bool {
        matches!(self.signer, Signer::Current | Signer::Previous)
            && matches!(self.alg, Field::Right)
            && matches!(self.kid, Field::Right)
            && self.extra_header.is_none()
            && self.payload_override.is_none()
            && self.claims.iter().all(|(_, v)| matches!(v, Field::Right))
    }
}

/// What a verifier may accept: signed by a key of the ring, claims of the genuine
/// session, valid now.
fn check_accepted(claims: &Claims, genuine: &Genuine, f: &Forged) -> TestCaseResult {
    let now = T0_MS / 1000;
    prop_assert!(
        matches!(f.signer, Signer::Current | Signer::Previous),
        "signer {:?} accepted",
        f.signer
    );
    prop_assert_eq!(&claims.iss, "auth-sdk");
    prop_assert_eq!(&claims.aud, "auth-sdk");
    prop_assert_eq!(&claims.sub, &genuine.user_id);
    prop_assert_eq!(&claims.sid, &genuine.session_id);
    prop_assert!(
        claims.nbf <= now + 30 && claims.iat <= now + 30,
        "not yet valid: {claims:?}"
    );
    prop_assert!(claims.exp > now - 30, "expired: {claims:?}");
    Ok(())
}

/// A signed-in user on the fuzz key ring.
fn signed_in(rt: &Runtime) -> (Harness, TokenPair, Genuine) {
    let h = harness_with(|c| c.keys = Some(fuzz_keys()));
    let (user, tokens) = rt.block_on(h.signup("alice"));
    let genuine = Genuine {
        user_id: user.id,
        session_id: tokens.session_id.clone(),
    };
    (h, tokens, genuine)
}

#[derive(Debug)]
enum TokenInput {
    Junk(String),
    Mutated(Vec<Edit>),
    Forged(Box<Forged>),
}

#[test]
fn fuzz_access_tokens() {
    let rt = runtime();
    let (h, tokens, genuine) = signed_in(&rt);
    let token = tokens.access_token.clone();
    rt.block_on(h.verify(&token))
        .expect("the genuine token verifies");
    let accepted = Cell::new(0u32);

    let input = prop_oneof![
        2 => junk().prop_map(TokenInput::Junk),
        1 => "eyJ[A-Za-z0-9_-]{0,80}\\.eyJ[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,90}"
            .prop_map(TokenInput::Junk),
        4 => edits().prop_map(TokenInput::Mutated),
        4 => forged().prop_map(|f| TokenInput::Forged(Box::new(f))),
    ];
    fuzz("access tokens", DEFAULT_CASES, input, |input| {
        let (candidate, forged) = match &input {
            TokenInput::Junk(s) => (s.clone(), None),
            TokenInput::Mutated(e) => (mutate(&token, b'.', e), None),
            TokenInput::Forged(f) => (f.encode(&genuine), Some(f)),
        };
        let (direct, api) = rt.block_on(async {
            (
                h.auth.verify_token(&candidate).await,
                h.verify(&candidate).await,
            )
        });
        // Both entry points agree.
        prop_assert_eq!(
            direct.as_ref().map(|c| c.jti.clone()),
            api.as_ref().map(|v| v.token_id.clone())
        );
        if candidate == token {
            prop_assert!(direct.is_ok(), "genuine token refused: {direct:?}");
            return Ok(());
        }
        match (forged, direct) {
            (None, r) => expect_err(r, &["invalid_token"])?,
            (Some(f), Ok(claims)) => {
                check_accepted(&claims, &genuine, f)?;
                accepted.set(accepted.get() + 1);
            }
            (Some(f), Err(e)) => {
                prop_assert!(!f.all_right(), "right forged token refused: {e:?}");
                expect_err::<()>(Err(e), &["invalid_token", "token_expired", "session_ended"])?;
            }
        }
        Ok(())
    });
    // The forger reached the accepting path, so the refusals above are not vacuous.
    assert!(accepted.get() > 0, "no forged token was ever accepted");
    rt.block_on(h.verify(&token)).expect("still verifies");
}

// ---------------------------------------------------------------------------------------
// Refresh tokens

#[test]
fn fuzz_refresh_tokens() {
    let rt = runtime();
    let (h, tokens, genuine) = signed_in(&rt);
    let token = tokens.refresh_token.clone();

    let input = prop_oneof![
        2 => junk(),
        2 => "[0-9a-f]{30,34}\\.[A-Za-z0-9_=+/-]{40,46}",
        5 => edits().prop_map(|e| mutate(&token, b'.', &e)),
    ];
    fuzz("refresh tokens", DEFAULT_CASES, input, |candidate| {
        // Presenting the genuine token would rotate it; every other string must not.
        if candidate == token {
            return Ok(());
        }
        let (refreshed, logged_out) = rt.block_on(async {
            let r = h.refresh(&candidate).await;
            let l = h
                .auth
                .logout(LogoutRequest {
                    access_token: String::new(),
                    refresh_token: candidate.clone(),
                    client: None,
                })
                .await;
            (r, l)
        });
        expect_err(refreshed, &["invalid_token"])?;
        // Logging out a well-formed token of no session is a no-op success.
        if let Err(e) = logged_out {
            let code: &str = if candidate.is_empty() {
                "invalid_argument"
            } else {
                "invalid_token"
            };
            expect_err::<()>(Err(e), &[code])?;
        }
        Ok(())
    });
    // No candidate rotated or ended the session.
    let session = rt.block_on(h.stored_session(&genuine.session_id));
    assert!(session.is_some(), "the session was ended");
    rt.block_on(h.refresh(&token))
        .expect("the genuine token still refreshes");
}

// ---------------------------------------------------------------------------------------
// Stored password hashes

/// A PHC parameter value: usually within `cheap` (so a valid one hashes fast), else one
/// that must be refused before any hashing.
fn phc_param(cheap: std::ops::Range<u64>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => cheap.prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec![
            "4294967295", "4294967296", "1048577", "16777216", "-1", "", "01", "1e3", "x",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Longer than any affordable case takes, even on a loaded machine.
const HASH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Argon2 work (KiB × passes) a case may cost: byte edits easily turn `t=1` into
/// `t=11111`, which the library rightly accepts but a debug build hashes for seconds.
const AFFORDABLE_WORK_KIB: u64 = 64;

/// The first decimal after `name=` in `phc`, saturating; `None` if there is none.
fn phc_number(phc: &str, name: &str) -> Option<u64> {
    let rest = &phc[phc.find(&format!("{name}="))? + name.len() + 1..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| digits.parse().unwrap_or(u64::MAX))
}

/// False for a hash whose parameters look valid but expensive (see
/// [`AFFORDABLE_WORK_KIB`]); huge ones stay in, since they must be refused unhashed.
fn affordable(phc: &str) -> bool {
    match (phc_number(phc, "m"), phc_number(phc, "t")) {
        (Some(m), Some(t)) => {
            let work = m.saturating_mul(t);
            work <= AFFORDABLE_WORK_KIB || m > 1 << 20 || work > 4 << 20
        }
        _ => true,
    }
}

#[test]
fn fuzz_stored_password_hashes() {
    let rt = runtime();
    let hasher = PasswordHasher::new(TINY_HASH, 1).expect("hasher");
    let phc = rt.block_on(hasher.hash(PASSWORD)).expect("hash");
    let check = rt.block_on(hasher.verify(PASSWORD, &phc)).expect("verify");
    assert!(check.matches && !check.needs_rehash);

    // Mostly well-formed around the parameters, so cases reach the hashing step.
    let b64 = |usual: std::ops::Range<usize>| {
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), usual),
            1 => prop::collection::vec(any::<u8>(), 0..80),
        ]
        .prop_map(|b| STANDARD_NO_PAD.encode(b))
    };
    let shaped = (
        prop_oneof![
            6 => Just("argon2id"),
            1 => prop::sample::select(vec!["argon2i", "argon2d", "scrypt", ""]),
        ],
        prop_oneof![
            4 => Just("v=19$"),
            1 => prop::sample::select(vec!["v=16$", "v=20$", "", "v=$"]),
        ],
        phc_param(8..20),
        phc_param(1..3),
        phc_param(1..2),
        b64(8..40),
        b64(4..64),
    )
        .prop_map(|(alg, v, m, t, p, salt, hash)| {
            format!("${alg}${v}m={m},t={t},p={p}${salt}${hash}")
        });
    let input = prop_oneof![
        2 => junk(),
        3 => shaped,
        5 => edits().prop_map(|e| mutate(&phc, b'$', &e)),
    ];
    let skipped = Cell::new(0u32);
    fuzz(
        "stored password hashes",
        DEFAULT_CASES,
        input,
        |candidate| {
            if !affordable(&candidate) {
                skipped.set(skipped.get() + 1);
                return Ok(());
            }
            // A match of another encoding of the same hash is no bypass: the stored record is
            // what it is. What matters is a typed error or an answer, never a panic or hang.
            // A hang fails the case instead of the whole run (the stray hash keeps a
            // blocking thread busy until the test process exits).
            let verified = rt.block_on(async {
                tokio::time::timeout(HASH_DEADLINE, hasher.verify(PASSWORD, &candidate)).await
            });
            match verified {
                Err(_) => {
                    return Err(TestCaseError::fail(format!(
                        "verify took over {HASH_DEADLINE:?}"
                    )));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => expect_err::<()>(Err(e), &["internal"])?,
            }
            Ok(())
        },
    );
    eprintln!(
        "stored password hashes: {} expensive cases skipped",
        skipped.get()
    );
}

// ---------------------------------------------------------------------------------------
// Usernames and passwords

#[test]
fn fuzz_register_and_login() {
    let rt = runtime();
    let h = harness_with(|c| {
        c.hash = TINY_HASH;
        // Lockout has its own tests; here it would make the model depend on history.
        c.lockout.max_failures = 0;
    });
    let (usernames, passwords) = (UsernamePolicy::default(), PasswordPolicy::default());
    // Username key → password of every account the fuzzer created.
    let accounts: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());

    let username = prop_oneof![
        3 => any::<String>(),
        3 => "[a-zA-Z0-9._\\-\u{430}-\u{44f}\u{3b1}-\u{3c9}\u{ff41}-\u{ff5a}\u{301}\u{200b} ]{0,12}",
        1 => prop::sample::select(vec![
            "admin", "ADMIN", "\u{ff41}dmin", "\u{430}dmin", "adrnin", "alice", "b0b", "bob",
        ])
        .prop_map(str::to_owned),
        1 => (0usize..400).prop_map(|n| "x".repeat(n)),
    ];
    let password = prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,16}",
        1 => Just(PASSWORD.to_owned()),
        1 => (1000usize..1100).prop_map(|n| "p".repeat(n)),
    ];
    fuzz(
        "register and login",
        DEFAULT_CASES,
        (username, password),
        |(name, pw)| {
            let normalized = usernames.normalize(&name);
            let expected = match (&normalized, passwords.check(&pw)) {
                (Err(_), _) => Some("invalid_username"),
                (Ok(_), Err(_)) => Some("invalid_password"),
                (Ok(n), Ok(())) if accounts.borrow().contains_key(&n.key) => Some("user_exists"),
                _ => None,
            };
            let registered = rt.block_on(h.auth.register(RegisterRequest {
                username: name.clone(),
                password: pw.clone(),
                client: None,
            }));
            match (expected, registered, &normalized) {
                (None, Ok(r), Ok(n)) => {
                    prop_assert_eq!(r.user.map(|u| u.username), Some(n.display.clone()));
                    accounts.borrow_mut().insert(n.key.clone(), pw.clone());
                }
                (None, r, _) => {
                    return Err(TestCaseError::fail(format!(
                        "valid registration refused: {r:?}"
                    )));
                }
                (Some(code), r, _) => expect_err(r, &[code])?,
            }
            let login = rt.block_on(h.login(&name, &pw));
            let owner_pw = normalized
                .ok()
                .and_then(|n| accounts.borrow().get(&n.key).cloned());
            if owner_pw.as_deref() == Some(pw.as_str()) {
                let tokens = login
                    .map_err(|e| TestCaseError::fail(format!("right password refused: {e:?}")))?;
                prop_assert!(tokens.tokens.is_some());
            } else {
                expect_err(login, &["invalid_credentials"])?;
            }
            Ok(())
        },
    );
    assert_eq!(h.storage.user_count(), accounts.borrow().len());
}
