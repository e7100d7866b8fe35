//! Our TOTP against a client nobody here wrote: Python's `pyotp` reads the
//! `otpauth://` URI we issue and computes codes that `TotpSecret::verify` accepts (and
//! the codes we compute are the ones it expects).
//!
//! Without Python and pyotp (`pip install pyotp`) the test prints "skipped: no pyotp"
//! and passes; `.ci/run` installs it and sets `AUTH_TOTP_PYOTP_TEST=required`, which
//! makes it mandatory.

use std::process::Command;

use auth_core::mfa::{TOTP_STEP_SECS, TotpSecret};

/// Parses the URI as an authenticator app would and prints the codes of three
/// instants (unix seconds in argv[2..]), one per line.
const PYOTP_CODES: &str = r#"
import sys, pyotp
totp = pyotp.parse_uri(sys.argv[1])
assert isinstance(totp, pyotp.TOTP), type(totp)
assert totp.digits == 6 and totp.interval == 30, (totp.digits, totp.interval)
for t in sys.argv[2:]:
    print(totp.at(int(t)))
"#;

fn pyotp_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pyotp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("AUTH_TOTP_PYOTP_TEST").as_deref() == Ok("required") {
        panic!("AUTH_TOTP_PYOTP_TEST=required but python3 with pyotp is missing");
    }
    ok
}

#[test]
fn pyotp_reads_our_uri_and_its_codes_verify() {
    if !pyotp_available() {
        println!("skipped: no pyotp");
        return;
    }
    let secret = TotpSecret::generate();
    let uri = secret.otpauth_uri("auth-sdk", "alice").unwrap();
    let now_s: i64 = 1_800_000_015;
    let times = [now_s - 30, now_s, now_s + 30];
    let args: Vec<String> = times.iter().map(i64::to_string).collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYOTP_CODES)
        .arg(&uri)
        .args(&args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: Vec<&str> = stdout.lines().collect();
    assert_eq!(codes.len(), 3, "{stdout}");

    let step = u64::try_from(now_s).unwrap() / TOTP_STEP_SECS;
    let now_ms = now_s * 1000;
    for (code, expected_step) in codes.iter().zip([step - 1, step, step + 1]) {
        // The same code from both implementations...
        assert_eq!(*code, secret.code_at_step(expected_step));
        // ...accepted within one step of drift.
        assert_eq!(secret.verify(code, now_ms, None), Ok(expected_step));
    }
    // Replay: the code of a step already used is refused.
    assert!(secret.verify(codes[1], now_ms, Some(step)).is_err());
}
