//! `authctl mfa …` and `authctl login` with a second factor: the real binary against an
//! in-process backend, codes computed from the secret it printed.

mod common;

use auth_core::mfa::TotpSecret;
use common::*;

#[test]
fn totp_enrol_confirm_login_and_disable() {
    let b = backend();
    let ep = b.endpoint();
    ok(ctl(&ep, &["register", "tess"], &format!("{PW}\n")));
    let v = ok(ctl(&ep, &["--json", "login", "tess"], &format!("{PW}\n"))).json();
    let access = v["tokens"]["access_token"].as_str().unwrap().to_owned();

    // Enrol: text output has a terminal QR code, the secret and the URI.
    let out = ok(ctl(
        &ep,
        &["mfa", "totp", "enroll", "--access-token", &access],
        "",
    ));
    assert!(
        out.stdout.contains('█') || out.stdout.contains('▀'),
        "{}",
        out.stdout
    );
    let secret = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("secret line")
        .to_owned();
    assert!(out.stdout.contains("uri:    otpauth://totp/auth-sdk:tess?"));
    let totp = TotpSecret::from_base32(&secret).unwrap();

    // Confirm: the token from stdin, then the code; codes are never argv.
    let bad = ctl(
        &ep,
        &["mfa", "totp", "confirm", "--access-token", "-"],
        &format!("{access}\n000000\n"),
    );
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("invalid_code"), "{}", bad.stderr);
    let missing = ctl(
        &ep,
        &["mfa", "totp", "confirm", "--access-token", &access],
        "",
    );
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no code on stdin"),
        "{}",
        missing.stderr
    );
    let v = ok(ctl(
        &ep,
        &[
            "--json",
            "mfa",
            "totp",
            "confirm",
            "--access-token",
            &access,
        ],
        &format!("{}\n", totp.code_at_step(auth_testing::totp_step_now())),
    ))
    .json();
    let recovery: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let status = ok(ctl(
        &ep,
        &["--json", "mfa", "status", "--access-token", &access],
        "",
    ))
    .json();
    assert_eq!(status["totp_enabled"], true);
    assert_eq!(status["recovery_codes_left"], 10);

    // Login asks for the code after the password.
    let out = ctl(&ep, &["login", "tess"], &format!("{PW}\n"));
    assert_eq!(out.code, 2, "no code given");
    let out = ok(ctl(
        &ep,
        &["--json", "login", "tess"],
        &format!(
            "{PW}\n{}\n",
            totp.code_at_step(auth_testing::totp_step_now() + 1)
        ),
    ));
    let access2 = out.json()["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = ok(ctl(&ep, &["--json", "verify", &access2], "")).json();
    assert_eq!(me["username"], "tess");
    let out = ok(ctl(
        &ep,
        &["login", "tess"],
        &format!("{PW}\n{}\n", recovery[0]),
    ));
    assert!(
        out.stdout.starts_with("logged in as tess"),
        "{}",
        out.stdout
    );
    let out = ctl(&ep, &["login", "tess"], &format!("{PW}\n{}\n", recovery[0]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid_code"), "{}", out.stderr);

    // New recovery codes, then off with one of them.
    let v = ok(ctl(
        &ep,
        &["--json", "mfa", "recovery-codes", "--access-token", &access],
        &format!("{}\n", recovery[1]),
    ))
    .json();
    let fresh = v["recovery_codes"].as_array().unwrap();
    assert_eq!(fresh.len(), 10);
    let out = ok(ctl(
        &ep,
        &["mfa", "totp", "disable", "--access-token", &access],
        &format!("{}\n", fresh[0].as_str().unwrap()),
    ));
    assert_eq!(out.stdout, "totp disabled\n");
    let out = ok(ctl(&ep, &["login", "tess"], &format!("{PW}\n")));
    assert!(
        out.stdout.starts_with("logged in as tess"),
        "{}",
        out.stdout
    );
}

#[test]
fn passkeys_are_listed_renamed_and_removed() {
    use auth_backend::RemoteAuth;
    use auth_core::AuthApi;
    use auth_core::api::{PasskeyRegisterFinishRequest, PasskeyRegisterStartRequest};
    use auth_testing::{GrpcServer, fast_config};
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;
    use webauthn_rs::prelude::{CreationChallengeResponse, Url};

    const ORIGIN: &str = "http://localhost:8080";
    let b = GrpcServer::builder().start_on_own_runtime(async {
        let mut config = fast_config();
        config.mfa.passkeys = Some(auth_core::PasskeyConfig::new("localhost", ORIGIN));
        let auth =
            auth_core::Auth::new(config, auth_storage::memory::MemoryStorage::new()).expect("auth");
        auth.start().expect("start");
        auth
    });
    let ep = b.endpoint();
    ok(ctl(&ep, &["register", "vera"], &format!("{PW}\n")));
    let v = ok(ctl(&ep, &["--json", "login", "vera"], &format!("{PW}\n"))).json();
    let access = v["tokens"]["access_token"].as_str().unwrap().to_owned();
    let out = ok(ctl(
        &ep,
        &["mfa", "passkey", "list", "--access-token", &access],
        "",
    ));
    assert_eq!(out.stdout, "no passkeys\n");

    // A passkey registered by a (software) authenticator through the API.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let codes: Vec<String> = rt.block_on(async {
        let api = RemoteAuth::new([b.url()], Default::default()).unwrap();
        let c = api
            .passkey_register_start(PasskeyRegisterStartRequest {
                access_token: access.clone(),
                name: "yubikey".into(),
            })
            .await
            .unwrap();
        let options: CreationChallengeResponse = serde_json::from_str(&c.options_json).unwrap();
        let mut key = WebauthnAuthenticator::new(SoftPasskey::new(true));
        let att = key
            .do_registration(Url::parse(ORIGIN).unwrap(), options)
            .unwrap();
        api.passkey_register_finish(PasskeyRegisterFinishRequest {
            access_token: access.clone(),
            ceremony_id: c.ceremony_id,
            credential_json: serde_json::to_string(&att).unwrap(),
            client: None,
        })
        .await
        .unwrap()
        .recovery_codes
    });
    let v = ok(ctl(
        &ep,
        &[
            "--json",
            "mfa",
            "passkey",
            "list",
            "--access-token",
            &access,
        ],
        "",
    ))
    .json();
    assert_eq!(v["passkeys"][0]["name"], "yubikey");
    let id = v["passkeys"][0]["credential_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // This session was opened before the passkey, but renaming needs no second factor.
    ok(ctl(
        &ep,
        &[
            "mfa",
            "passkey",
            "rename",
            "--access-token",
            &access,
            &id,
            "old key",
        ],
        "",
    ));
    let out = ok(ctl(
        &ep,
        &["mfa", "passkey", "list", "--access-token", &access],
        "",
    ));
    assert!(out.stdout.contains("old key"), "{}", out.stdout);
    // The last factor: a recovery code is asked for (here, the next stdin line).
    let out = ctl(
        &ep,
        &["mfa", "passkey", "remove", "--access-token", &access, &id],
        "not-a-code\n",
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid_code"), "{}", out.stderr);
    let out = ok(ctl(
        &ep,
        &["mfa", "passkey", "remove", "--access-token", &access, &id],
        &format!("{}\n", codes[0]),
    ));
    assert_eq!(out.stdout, "passkey removed\n");
    let out = ok(ctl(
        &ep,
        &["mfa", "passkey", "list", "--access-token", &access],
        "",
    ));
    assert_eq!(out.stdout, "no passkeys\n");
}
