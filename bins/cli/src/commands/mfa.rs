//! `authctl mfa …`: the caller's second factors (status, TOTP enrolment, confirmation
//! and removal, new recovery codes), and the code a login's second step asks for.
//!
//! Codes are read like passwords: prompted for on a terminal, else the next line of
//! stdin (after the password or token lines a command reads first). Never from the
//! command line, where they would land in shell history.

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use clap::Subcommand;
use serde_json::json;

use crate::Failure;
use crate::io::{Io, emit, read_line, token_arg};

/// `authctl mfa …`
#[derive(Debug, Clone, Subcommand)]
pub enum MfaCmd {
    /// Show the caller's second factors.
    Status {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
    /// TOTP: codes from an authenticator app.
    #[command(subcommand)]
    Totp(TotpCmd),
    /// Passkeys: list, rename, remove (registering one needs a browser or an
    /// authenticator, not a terminal).
    #[command(subcommand)]
    Passkey(PasskeyCmd),
    /// Replace the recovery codes; a current TOTP or recovery code is asked for.
    RecoveryCodes {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
}

/// `authctl mfa totp …`
#[derive(Debug, Clone, Subcommand)]
pub enum TotpCmd {
    /// Start enrolment: print the secret, its otpauth:// URI and a QR code to scan.
    Enroll {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
    /// Confirm enrolment with a first code from the app; prints the recovery codes.
    Confirm {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
    /// Turn TOTP off; a current TOTP or recovery code is asked for.
    Disable {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
}

/// `authctl mfa passkey …`
#[derive(Debug, Clone, Subcommand)]
pub enum PasskeyCmd {
    /// List the caller's passkeys: id, name, added, last used.
    List {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
    },
    /// Rename a passkey.
    Rename {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
        /// The passkey's credential id (from `list`). Base64url, so it may start
        /// with `-`; one that starts with `--` goes after a `--`.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// The new name.
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Remove a passkey. The account's last second factor needs a recovery code,
    /// asked for when the server wants one.
    Remove {
        /// The caller's access token (`-` reads it from stdin).
        #[arg(long, value_name = "TOKEN")]
        access_token: String,
        /// The passkey's credential id (from `list`). Base64url, so it may start
        /// with `-`; one that starts with `--` goes after a `--`.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

/// A second-factor code: prompted for on a terminal (on stderr), else the next line of
/// stdin.
pub(crate) fn read_code(io: &mut Io<'_>, prompt: &str) -> Result<String, Failure> {
    if io.stdin_is_tty {
        let _ = write!(io.err, "{prompt}: ");
        let _ = io.err.flush();
    }
    match read_line(io)? {
        Some(c) if !c.trim().is_empty() => Ok(c.trim().to_owned()),
        _ => Err(Failure::Usage(format!(
            "no code on stdin: {prompt} (one line; codes are never taken from the command line)"
        ))),
    }
}

/// The QR code of `uri` in Unicode half blocks, for a terminal.
fn qr_text(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        Err(_) => String::new(),
    }
}

fn codes_text(codes: &[String]) -> String {
    let mut s = String::from(
        "recovery codes (each logs in once; store them safely, they are not shown again):\n",
    );
    for c in codes {
        s.push_str(&format!("  {c}\n"));
    }
    s
}

/// Runs an `mfa` subcommand.
pub(crate) async fn execute(
    cmd: MfaCmd,
    api: &RemoteAuth,
    json: bool,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    match cmd {
        MfaCmd::Status { access_token } => {
            let access_token = token_arg(io, access_token)?;
            let s = api.mfa_status(MfaStatusRequest { access_token }).await?;
            let passkeys: Vec<_> = s
                .passkeys
                .iter()
                .map(|p| json!({"credential_id": p.credential_id, "name": p.name}))
                .collect();
            let value = json!({
                "totp_enabled": s.totp_enabled,
                "totp_pending": s.totp_pending,
                "recovery_codes_left": s.recovery_codes_left,
                "passkeys": passkeys,
            });
            emit(io, json, value, || {
                let totp = match (s.totp_enabled, s.totp_pending) {
                    (true, _) => "on",
                    (false, true) => "enrolment pending confirmation",
                    (false, false) => "off",
                };
                format!(
                    "totp: {totp}\nrecovery codes left: {}\npasskeys: {}\n",
                    s.recovery_codes_left,
                    s.passkeys.len()
                )
            })
        }
        MfaCmd::Totp(TotpCmd::Enroll { access_token }) => {
            let access_token = token_arg(io, access_token)?;
            let r = api.totp_enroll(TotpEnrollRequest { access_token }).await?;
            let value = json!({"secret": r.secret, "otpauth_uri": r.otpauth_uri});
            emit(io, json, value, || {
                format!(
                    "{}\nsecret: {}\nuri:    {}\nscan it, then run `authctl mfa totp confirm` with a code from the app\n",
                    qr_text(&r.otpauth_uri),
                    r.secret,
                    r.otpauth_uri
                )
            })
        }
        MfaCmd::Totp(TotpCmd::Confirm { access_token }) => {
            let access_token = token_arg(io, access_token)?;
            let code = read_code(io, "Code from the app")?;
            let r = api
                .totp_confirm(TotpConfirmRequest {
                    access_token,
                    code,
                    client: None,
                })
                .await?;
            let value = json!({"recovery_codes": r.recovery_codes});
            emit(io, json, value, || {
                format!("totp enabled\n{}", codes_text(&r.recovery_codes))
            })
        }
        MfaCmd::Totp(TotpCmd::Disable { access_token }) => {
            let access_token = token_arg(io, access_token)?;
            let code = read_code(io, "Current code (or a recovery code)")?;
            api.totp_disable(TotpDisableRequest {
                access_token,
                code,
                client: None,
            })
            .await?;
            emit(io, json, json!({"totp_enabled": false}), || {
                "totp disabled\n".to_owned()
            })
        }
        MfaCmd::Passkey(PasskeyCmd::List { access_token }) => {
            let access_token = token_arg(io, access_token)?;
            let s = api.mfa_status(MfaStatusRequest { access_token }).await?;
            let list: Vec<_> = s
                .passkeys
                .iter()
                .map(|p| {
                    json!({
                        "credential_id": p.credential_id,
                        "name": p.name,
                        "created_at_ms": p.created_at_ms,
                        "last_used_at_ms": p.last_used_at_ms,
                    })
                })
                .collect();
            emit(io, json, json!({ "passkeys": list }), || {
                let mut out = String::new();
                for p in &s.passkeys {
                    out.push_str(&format!(
                        "{}  {}  added {}  last used {}\n",
                        p.credential_id,
                        p.name,
                        crate::render::timestamp(p.created_at_ms),
                        crate::render::timestamp(p.last_used_at_ms)
                    ));
                }
                if out.is_empty() {
                    out.push_str("no passkeys\n");
                }
                out
            })
        }
        MfaCmd::Passkey(PasskeyCmd::Rename {
            access_token,
            id,
            name,
        }) => {
            let access_token = token_arg(io, access_token)?;
            api.passkey_rename(PasskeyRenameRequest {
                access_token,
                credential_id: id,
                name,
            })
            .await?;
            emit(io, json, json!({ "renamed": true }), || {
                "passkey renamed\n".to_owned()
            })
        }
        MfaCmd::Passkey(PasskeyCmd::Remove { access_token, id }) => {
            let access_token = token_arg(io, access_token)?;
            let mut req = PasskeyRemoveRequest {
                access_token,
                credential_id: id,
                code: String::new(),
                client: None,
            };
            if let Err(e) = api.passkey_remove(req.clone()).await {
                if e.code() != "invalid_code" {
                    return Err(e.into());
                }
                // The last factor: the server wants a recovery code.
                req.code = read_code(io, "Recovery code (this is your last second factor)")?;
                api.passkey_remove(req).await?;
            }
            emit(io, json, json!({ "removed": true }), || {
                "passkey removed\n".to_owned()
            })
        }
        MfaCmd::RecoveryCodes { access_token } => {
            let access_token = token_arg(io, access_token)?;
            let code = read_code(io, "Current code (or a recovery code)")?;
            let r = api
                .regenerate_recovery_codes(RegenerateRecoveryCodesRequest {
                    access_token,
                    code,
                    client: None,
                })
                .await?;
            let value = json!({"recovery_codes": r.recovery_codes});
            emit(io, json, value, || codes_text(&r.recovery_codes))
        }
    }
}
