//! Second factors on [`Inner`]: TOTP enrolment, recovery codes, and the second step of
//! a login. [`AuthApi`](crate::AuthApi) methods in `service.rs` call these.
//!
//! Every change to a user's factors is one compare-and-set of the user record that
//! re-checks the code against the record it replaces: two requests racing with one
//! code cannot both be accepted, on any backend and any node.

use auth_storage::{Challenge, PutChallenge, Storage, StorageError, User};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::*;
use crate::audit::AuditKind;
use crate::auth::{CAS_RETRIES, Inner};
use crate::clock::duration_ms;
use crate::error::AuthError;
use crate::mfa::{RecoveryCodes, TotpSecret, find_recovery_code};
use crate::service::{Attempt, source, user_info};
use crate::throttle::Action;

/// The challenge kind of an MFA ticket.
pub(crate) const MFA_TICKET: &str = "mfa";
/// Longest MFA ticket accepted (ours are 43 characters).
const MAX_TICKET_BYTES: usize = 128;
/// Longest code accepted (a recovery code with generous spacing).
const MAX_CODE_BYTES: usize = 64;

/// `amr` of a password login.
pub(crate) fn amr_password() -> Vec<String> {
    vec!["pwd".into()]
}

/// Whether logins of this user need a second step.
pub(crate) fn has_second_factor(user: &User) -> bool {
    user.totp_confirmed || !user.passkeys.is_empty()
}

/// The second factors a login of this user can be completed with.
fn methods(user: &User) -> Vec<String> {
    let mut out = Vec::new();
    if user.totp_confirmed {
        out.push("totp".to_owned());
    }
    if !user.recovery_code_hashes.is_empty() {
        out.push("recovery_code".to_owned());
    }
    if !user.passkeys.is_empty() {
        out.push("webauthn".to_owned());
    }
    out
}

/// The storage key of a ticket: its SHA-256, so storage never holds the ticket.
pub(crate) fn challenge_id(handle: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(handle.as_bytes()))
}

/// A fresh 256-bit handle (a ticket), unpadded base64url.
pub(crate) fn random_handle() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Which factor a code turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    Totp,
    RecoveryCode,
}

fn conflict(text: &'static str) -> AuthError {
    AuthError::MfaConflict(text.into())
}

impl<S: Storage> Inner<S> {
    /// The caller's user record, for a token whose session is live.
    pub(crate) async fn current_user(&self, user_id: &str) -> Result<User, AuthError> {
        self.storage
            .get_user(user_id)
            .await?
            .ok_or(AuthError::SessionEnded)
    }

    /// Compare-and-set `change` onto `user`, re-reading and re-applying it on a
    /// conflict: `change` sees the latest record every time, so what it checks (a TOTP
    /// step, a recovery code) is checked against what it replaces.
    pub(crate) async fn modify_user<T>(
        &self,
        mut user: User,
        now: i64,
        mut change: impl FnMut(&mut User) -> Result<T, AuthError>,
    ) -> Result<(User, T), AuthError> {
        for _ in 0..CAS_RETRIES {
            let mut next = user.clone();
            let out = change(&mut next)?;
            next.updated_at_ms = now;
            match self.storage.update_user(next).await {
                Ok(stored) => return Ok((stored, out)),
                Err(StorageError::Conflict) => user = self.current_user(&user.id).await?,
                Err(StorageError::NotFound) => return Err(AuthError::SessionEnded),
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Unavailable("user record is contended".into()))
    }

    /// Accepts `code` for `user` (in the record about to be stored): a TOTP code of a
    /// step after the last accepted one moves that step; a recovery code is spent.
    fn accept_code(&self, user: &mut User, code: &str, now: i64) -> Result<Factor, AuthError> {
        let code = code.trim();
        if code.len() > MAX_CODE_BYTES {
            return Err(AuthError::InvalidCode);
        }
        if user.totp_confirmed && code.len() == crate::mfa::TOTP_DIGITS {
            let secret = self.mfa_key.open(&user.totp_sealed, &user.id)?;
            let last = (user.totp_last_step > 0).then_some(user.totp_last_step);
            if let Ok(step) = secret.verify(code, now, last) {
                user.totp_last_step = step;
                return Ok(Factor::Totp);
            }
            return Err(AuthError::InvalidCode);
        }
        match find_recovery_code(&user.recovery_code_hashes, code) {
            Some(i) => {
                user.recovery_code_hashes.remove(i);
                Ok(Factor::RecoveryCode)
            }
            None => Err(AuthError::InvalidCode),
        }
    }

    /// Checks a second-factor code under lockout and stores what accepting it changes,
    /// plus `then` applied to the same record, in one compare-and-set.
    pub(crate) async fn check_code_and<T>(
        &self,
        user: User,
        code: &str,
        from: Option<&str>,
        now: i64,
        mut then: impl FnMut(&mut User) -> Result<T, AuthError>,
    ) -> Result<(User, T), AuthError> {
        let key = user.username_key.clone();
        let id = user.id.clone();
        let (user, (factor, out)) = self
            .guarded_code(
                &key,
                &id,
                from,
                now,
                self.modify_user(user, now, |u| {
                    let factor = self.accept_code(u, code, now)?;
                    Ok((factor, then(u)?))
                }),
            )
            .await?;
        if factor == Factor::RecoveryCode {
            let mut e = self
                .event(AuditKind::RecoveryCodeUsed)
                .user(&user.id)
                .detail(format!("{} left", user.recovery_code_hashes.len()));
            e.source = from.unwrap_or_default().to_owned();
            self.audit(e);
        }
        Ok((user, out))
    }

    /// After a correct password: the `mfa_required` answer with a fresh ticket.
    pub(crate) async fn mfa_step(&self, user: &User, now: i64) -> Result<LoginResponse, AuthError> {
        let ticket = random_handle();
        let policy = &self.config.mfa;
        let challenge = Challenge {
            id: challenge_id(&ticket),
            kind: MFA_TICKET.to_owned(),
            user_id: user.id.clone(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(duration_ms(policy.ticket_ttl)),
            ..Challenge::default()
        };
        match self.put_challenge(challenge, now).await {
            Ok(()) => {}
            Err(AuthError::NotFound) => return Err(AuthError::InvalidCredentials),
            Err(e) => return Err(e),
        }
        Ok(LoginResponse {
            user: Some(user_info(user)),
            tokens: None,
            mfa_required: true,
            mfa_ticket: ticket,
            mfa_methods: methods(user),
        })
    }

    /// Stores a sign-in challenge under the configured bounds.
    pub(crate) async fn put_challenge(&self, c: Challenge, now: i64) -> Result<(), AuthError> {
        let policy = &self.config.mfa;
        self.storage
            .put_challenge(PutChallenge {
                challenge: c,
                now_ms: now,
                max_per_user: policy.max_pending_per_user,
                max_total: policy.max_pending_total,
            })
            .await
            .map_err(AuthError::from)
    }

    /// The second step of a login: the ticket, then a TOTP or recovery code.
    pub(crate) async fn login_mfa(
        &self,
        req: LoginMfaRequest,
        attempt: &mut Attempt,
    ) -> Result<LoginResponse, AuthError> {
        self.ensure_open()?;
        let from = source(&req.client);
        self.throttle.check(Action::Login, from)?;
        if req.mfa_ticket.is_empty() || req.mfa_ticket.len() > MAX_TICKET_BYTES {
            return Err(AuthError::InvalidMfaTicket);
        }
        let now = self.now_ms();
        let Some(ticket) = self
            .storage
            .take_challenge(&challenge_id(&req.mfa_ticket), MFA_TICKET, now)
            .await?
        else {
            return Err(AuthError::InvalidMfaTicket);
        };
        let Some(user) = self.storage.get_user(&ticket.user_id).await? else {
            return Err(AuthError::InvalidMfaTicket);
        };
        attempt.user_id.clone_from(&user.id);
        match self
            .check_code_and(user, &req.code, from, now, |_| Ok(()))
            .await
        {
            Ok((user, ())) => {
                attempt.amr = vec!["pwd".to_owned(), "otp".to_owned()];
                let tokens = self
                    .open_session(&user, req.client, attempt.amr.clone(), now)
                    .await?;
                Ok(LoginResponse {
                    user: Some(user_info(&user)),
                    tokens: Some(tokens),
                    ..LoginResponse::default()
                })
            }
            Err(e) => {
                self.return_ticket(ticket, &e, now).await;
                Err(e)
            }
        }
    }

    /// After a failed second step: the ticket goes back for another try, unless the
    /// failure was its last allowed wrong code. A ticket that cannot be stored again
    /// is simply gone (the user logs in again).
    pub(crate) async fn return_ticket(&self, mut ticket: Challenge, e: &AuthError, now: i64) {
        match e {
            // A wrong code, or a refused passkey assertion.
            AuthError::InvalidCode | AuthError::InvalidCredentials => {
                ticket.attempts = ticket.attempts.saturating_add(1)
            }
            AuthError::RateLimited { .. }
            | AuthError::Locked { .. }
            | AuthError::Overloaded { .. }
            | AuthError::Unavailable(_) => {}
            _ => return,
        }
        if ticket.attempts >= self.config.mfa.ticket_attempts || ticket.expires_at_ms <= now {
            return;
        }
        if let Err(err) = self.put_challenge(ticket, now).await {
            tracing::debug!(
                code = err.code(),
                "MFA ticket not returned after a failed try"
            );
        }
    }

    pub(crate) async fn mfa_status(&self, user: &User) -> MfaStatusResponse {
        MfaStatusResponse {
            totp_enabled: user.totp_confirmed,
            totp_pending: !user.totp_confirmed && !user.totp_sealed.is_empty(),
            recovery_codes_left: u32::try_from(user.recovery_code_hashes.len()).unwrap_or(0),
            passkeys: user
                .passkeys
                .iter()
                .map(|p| PasskeyInfo {
                    credential_id: p.credential_id.clone(),
                    name: p.name.clone(),
                    created_at_ms: p.created_at_ms,
                    last_used_at_ms: p.last_used_at_ms,
                })
                .collect(),
        }
    }

    /// Starts (or restarts) TOTP enrolment for `user`.
    pub(crate) async fn totp_enroll(
        &self,
        user: User,
        acr: &str,
        now: i64,
    ) -> Result<TotpEnrollResponse, AuthError> {
        if !self.config.mfa.totp_enabled {
            return Err(conflict(
                "TOTP is not offered by this server (it needs a shared MFA key)",
            ));
        }
        if user.totp_confirmed {
            return Err(conflict("TOTP is already enabled; disable it first"));
        }
        self.require_multi_factor(&user, acr)?;
        let secret = TotpSecret::generate();
        let sealed = self.mfa_key.seal(&secret, &user.id)?;
        let uri = secret.otpauth_uri(&self.config.mfa.totp_issuer, &user.username)?;
        self.modify_user(user, now, |u| {
            if u.totp_confirmed {
                return Err(conflict("TOTP is already enabled; disable it first"));
            }
            u.totp_sealed = sealed.clone();
            u.totp_last_step = 0;
            Ok(())
        })
        .await?;
        Ok(TotpEnrollResponse {
            secret: secret.to_base32(),
            otpauth_uri: uri,
        })
    }

    /// Confirms the pending enrolment with a first code; issues recovery codes.
    pub(crate) async fn totp_confirm(
        &self,
        user: User,
        acr: &str,
        code: &str,
        from: Option<&str>,
        now: i64,
    ) -> Result<TotpConfirmResponse, AuthError> {
        let pending = |u: &User| -> Result<(), AuthError> {
            if u.totp_confirmed {
                return Err(conflict("TOTP is already enabled"));
            }
            if u.totp_sealed.is_empty() {
                return Err(conflict("no TOTP enrolment to confirm; enrol first"));
            }
            Ok(())
        };
        pending(&user)?;
        let code = code.trim();
        if code.len() > MAX_CODE_BYTES {
            return Err(AuthError::InvalidCode);
        }
        let codes = RecoveryCodes::generate();
        let key = user.username_key.clone();
        let id = user.id.clone();
        let (user, issued) = self
            .guarded_code(
                &key,
                &id,
                from,
                now,
                self.modify_user(user, now, |u| {
                    pending(u)?;
                    // Checked again on the record confirmed: a factor added since the
                    // enrolment started makes this session too weak to add another.
                    self.require_multi_factor(u, acr)?;
                    let secret = self.mfa_key.open(&u.totp_sealed, &u.id)?;
                    u.totp_last_step = secret.verify(code, now, None)?;
                    u.totp_confirmed = true;
                    // The first factor brings recovery codes; codes the user holds
                    // already (from a passkey) stay valid.
                    let issue = u.recovery_code_hashes.is_empty();
                    if issue {
                        u.recovery_code_hashes = codes.hashes.clone();
                    }
                    Ok(issue)
                }),
            )
            .await?;
        tracing::debug!(user_id = %user.id, "TOTP enabled");
        Ok(TotpConfirmResponse {
            recovery_codes: if issued {
                codes.codes.iter().map(|c| c.to_string()).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Removes TOTP; a confirmed one only with a current TOTP or recovery code.
    pub(crate) async fn totp_disable(
        &self,
        user: User,
        code: &str,
        from: Option<&str>,
        now: i64,
    ) -> Result<(), AuthError> {
        let clear = |u: &mut User| {
            u.totp_sealed.clear();
            u.totp_confirmed = false;
            u.totp_last_step = 0;
            if u.passkeys.is_empty() {
                // No second factor left: recovery codes would recover nothing.
                u.recovery_code_hashes.clear();
            }
        };
        if !user.totp_confirmed {
            if user.totp_sealed.is_empty() {
                return Err(conflict("TOTP is not enabled"));
            }
            // A pending enrolment is no factor yet: cancelling it needs no code.
            self.modify_user(user, now, |u| {
                if u.totp_confirmed {
                    return Err(conflict("TOTP was enabled meanwhile; try again"));
                }
                clear(u);
                Ok(())
            })
            .await?;
            return Ok(());
        }
        let (user, ()) = self
            .check_code_and(user, code, from, now, |u| {
                clear(u);
                Ok(())
            })
            .await?;
        tracing::debug!(user_id = %user.id, "TOTP disabled");
        Ok(())
    }

    /// New recovery codes, with a current TOTP or recovery code.
    pub(crate) async fn regenerate_recovery_codes(
        &self,
        user: User,
        code: &str,
        from: Option<&str>,
        now: i64,
    ) -> Result<RegenerateRecoveryCodesResponse, AuthError> {
        if !has_second_factor(&user) {
            return Err(conflict("no second factor is enabled"));
        }
        let codes = RecoveryCodes::generate();
        let (user, ()) = self
            .check_code_and(user, code, from, now, |u| {
                u.recovery_code_hashes = codes.hashes.clone();
                Ok(())
            })
            .await?;
        tracing::debug!(user_id = %user.id, "recovery codes regenerated");
        Ok(RegenerateRecoveryCodesResponse {
            recovery_codes: codes.codes.iter().map(|c| c.to_string()).collect(),
        })
    }
}
