//! `authctl mfa …` and `authctl login` with a second factor: the real binary against an
//! in-process backend, codes computed from the secret it printed.

mod common;

use auth_core::mfa::TotpSecret;
use common::*;

fn step_now() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    secs / 30
}

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
        &format!("{}\n", totp.code_at_step(step_now())),
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
        &format!("{PW}\n{}\n", totp.code_at_step(step_now() + 1)),
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
