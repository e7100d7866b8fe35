//! The whole TOTP flow over the JSON API, driven by a client nobody here wrote: a
//! Python program using only the standard library for HTTP and `pyotp` for the codes,
//! which it computes from the `otpauth://` URI we hand out. It enrols, confirms, logs
//! in with a code, sees a replayed code refused, spends a recovery code once, and locks
//! the account with wrong codes.
//!
//! Without Python and pyotp (`pip install pyotp`) the test prints "skipped: no pyotp"
//! and passes; `.ci/run` installs it and sets `AUTH_TOTP_PYOTP_TEST=required`, which
//! makes it mandatory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth_core::{Auth, LockoutPolicy};
use auth_storage::memory::MemoryStorage;
use auth_web::WebConfig;
use common::*;

/// The client. `argv[1]` is the site's URL; it prints what it did and exits non-zero
/// on the first surprise.
const FLOW: &str = r#"
import json, sys, time, urllib.error, urllib.request
import pyotp

BASE = sys.argv[1]

def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

def expect(got, status, what):
    if got[0] != status:
        sys.exit(f"{what}: wanted {status}, got {got}")
    return got[1]

def error(got, status, code, what):
    body = expect(got, status, what)
    if body["error"]["code"] != code:
        sys.exit(f"{what}: wanted error {code}, got {body}")

creds = {"username": "pyotp-user", "password": "correct horse battery"}
expect(call("POST", "/api/v1/register", creds), 201, "register")
tokens = expect(call("POST", "/api/v1/login", creds), 200, "password login")
access = tokens["access_token"]

enrolled = expect(call("POST", "/api/v1/mfa/totp/enroll", token=access), 200, "enroll")
totp = pyotp.parse_uri(enrolled["otpauth_uri"])
assert isinstance(totp, pyotp.TOTP) and totp.digits == 6 and totp.interval == 30
assert totp.secret == enrolled["secret"], (totp.secret, enrolled["secret"])
assert totp.issuer == "auth-sdk" and totp.name == "pyotp-user", (totp.issuer, totp.name)

error(call("POST", "/api/v1/mfa/totp/confirm", {"code": "12345"}, access), 401,
      "invalid_code", "confirm with a malformed code")
confirmed = expect(call("POST", "/api/v1/mfa/totp/confirm", {"code": totp.now()}, access),
                   200, "confirm")
recovery = confirmed["recovery_codes"]
assert len(recovery) == 10 and len(set(recovery)) == 10, recovery
status = expect(call("GET", "/api/v1/mfa", token=access), 200, "status")
assert status["totp_enabled"] and status["recovery_codes_left"] == 10, status

def ticket():
    step = expect(call("POST", "/api/v1/login", creds), 200, "password step")
    assert step["mfa_required"] is True, step
    assert "access_token" not in step and "refresh_token" not in step, step
    assert step["mfa_methods"] == ["totp", "recovery_code"], step
    return step["mfa_ticket"]

# The next step's code (within the allowed drift, after the confirming code's step).
code = totp.at(time.time() + 30)
t = ticket()
pair = expect(call("POST", "/api/v1/login/mfa", {"mfa_ticket": t, "code": code}), 200,
              "second step with a TOTP code")
me = expect(call("GET", "/api/v1/me", token=pair["access_token"]), 200, "me")
assert me["amr"] == ["pwd", "otp"] and me["acr"] == "aal2", me
error(call("POST", "/api/v1/login/mfa", {"mfa_ticket": t, "code": code}), 401,
      "invalid_mfa_ticket", "a used ticket")
error(call("POST", "/api/v1/login/mfa", {"mfa_ticket": ticket(), "code": code}), 401,
      "invalid_code", "a replayed code")
print("totp login, replay refused")

t = ticket()
expect(call("POST", "/api/v1/login/mfa", {"mfa_ticket": t, "code": recovery[0]}), 200,
       "second step with a recovery code")
error(call("POST", "/api/v1/login/mfa", {"mfa_ticket": ticket(), "code": recovery[0]}), 401,
      "invalid_code", "a recovery code used twice")
status = expect(call("GET", "/api/v1/mfa", token=access), 200, "status")
assert status["recovery_codes_left"] == 9, status
print("recovery code used once")

# Wrong codes count towards the lockout (3 here): then even the right code is refused.
t = ticket()
for i in range(3):
    error(call("POST", "/api/v1/login/mfa", {"mfa_ticket": t, "code": "000000"}), 401,
          "invalid_code", f"wrong code {i}")
error(call("POST", "/api/v1/login/mfa", {"mfa_ticket": t, "code": totp.at(time.time() + 30)}),
      429, "locked", "the right code after the lock")
error(call("POST", "/api/v1/login", creds), 429, "locked", "the password after the lock")
print("wrong codes lock the account")
"#;

fn pyotp_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pyotp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("AUTH_TOTP_PYOTP_TEST").as_deref() == Ok("required") {
        panic!("AUTH_TOTP_PYOTP_TEST=required but python3 with pyotp is missing");
    }
    ok
}

#[tokio::test]
async fn pyotp_drives_the_totp_flow_over_the_json_api() {
    if !pyotp_available() {
        println!("skipped: no pyotp");
        return;
    }
    // The system clock: pyotp reads it too.
    let mut config = auth_testing::fast_config();
    config.lockout = LockoutPolicy {
        max_failures: 3,
        ..LockoutPolicy::default()
    };
    let auth = Auth::new(config, MemoryStorage::new()).unwrap();
    let web = WebServer::start(Arc::new(auth), WebConfig::default()).await;
    let run = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(FLOW)
        .arg(&web.url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within a minute")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    for step in [
        "totp login, replay refused",
        "recovery code used once",
        "wrong codes lock the account",
    ] {
        assert!(stdout.contains(step), "{stdout}");
    }
    web.stop().await;
}
