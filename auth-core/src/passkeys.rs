//! Passkeys (WebAuthn, with `webauthn-rs`) on [`Inner`]: registration, passwordless
//! login with a discoverable credential, the second step of a password login, rename
//! and removal.
//!
//! A ceremony's state (its challenge) is a stored [`Challenge`], taken once by the
//! ceremony's second request: that request may reach any node of a cluster. Each
//! passkey is stored on its user as the library serialises it; an accepted assertion
//! moves its signature counter in a compare-and-set of the user record, so a cloned
//! authenticator (a counter that goes back) is refused.

use auth_storage::{Challenge, PasskeyRecord, Storage, User};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder,
};

use crate::api::*;
use crate::auth::Inner;
use crate::clock::duration_ms;
use crate::config::PasskeyConfig;
use crate::error::AuthError;
use crate::mfa::RecoveryCodes;
use crate::second_factor::{MFA_TICKET, challenge_id, has_second_factor, random_handle};
use crate::service::user_info;
use crate::throttle::Action;
use crate::tokens::ACR_MULTI_FACTOR;

/// Challenge kinds of the two ceremonies.
const REGISTER: &str = "passkey_register";
const LOGIN: &str = "passkey_login";
/// How long a ceremony may take (the browser's prompt included).
const CEREMONY_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Passkeys one account may have.
pub(crate) const MAX_PASSKEYS: usize = 16;
const MAX_NAME_CHARS: usize = 64;
/// Longest authenticator response accepted (they are a few KiB).
const MAX_CREDENTIAL_JSON: usize = 64 * 1024;
const MAX_HANDLE_BYTES: usize = 128;

/// The relying party, built once from [`PasskeyConfig`].
pub(crate) struct RelyingParty(Webauthn);

impl RelyingParty {
    /// Checks the configuration and builds the relying party.
    pub(crate) fn new(config: &PasskeyConfig) -> Result<Self, AuthError> {
        let bad = |what: String| AuthError::InvalidConfig(format!("mfa.passkeys: {what}"));
        let origin = Url::parse(&config.origin)
            .map_err(|e| bad(format!("origin {:?} is not a URL: {e}", config.origin)))?;
        let webauthn = WebauthnBuilder::new(&config.rp_id, &origin)
            .map_err(|e| {
                bad(format!(
                    "rp_id {:?} does not fit {origin}: {e}",
                    config.rp_id
                ))
            })?
            .rp_name(&config.rp_name)
            .timeout(CEREMONY_TTL)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self(webauthn))
    }
}

/// What a stored ceremony remembers.
#[derive(Serialize, Deserialize)]
enum Ceremony {
    Register {
        name: String,
        state: PasskeyRegistration,
    },
    /// The second step of the login whose ticket has this storage id.
    SecondFactor {
        ticket_id: String,
        state: PasskeyAuthentication,
    },
    Passwordless {
        state: DiscoverableAuthentication,
    },
}

/// Our 32-hex-digit user ids are 128 bits: the WebAuthn user handle is that UUID.
fn user_handle(user_id: &str) -> Result<Uuid, AuthError> {
    Uuid::try_parse(user_id).map_err(|_| AuthError::Internal("user id is not 128-bit hex".into()))
}

fn stored_passkey(record: &PasskeyRecord) -> Result<Passkey, AuthError> {
    serde_json::from_slice(&record.credential)
        .map_err(|_| AuthError::Internal("a stored passkey does not decode".into()))
}

/// The signature counter a stored passkey last saw (0: the authenticator keeps none).
fn stored_counter(record: &PasskeyRecord) -> u32 {
    serde_json::from_slice::<serde_json::Value>(&record.credential)
        .ok()
        .and_then(|v| v["cred"]["counter"].as_u64())
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(0)
}

fn credential_id(passkey: &Passkey) -> String {
    URL_SAFE_NO_PAD.encode(passkey.cred_id().as_ref())
}

fn passkey_info(r: &PasskeyRecord) -> PasskeyInfo {
    PasskeyInfo {
        credential_id: r.credential_id.clone(),
        name: r.name.clone(),
        created_at_ms: r.created_at_ms,
        last_used_at_ms: r.last_used_at_ms,
    }
}

fn conflict(text: &'static str) -> AuthError {
    AuthError::MfaConflict(text.into())
}

/// A user-chosen passkey name: trimmed, control characters dropped, bounded.
fn clean_name(name: &str) -> Result<String, AuthError> {
    let name: String = name.trim().chars().filter(|c| !c.is_control()).collect();
    match name.chars().count() {
        0 => Ok("Passkey".to_owned()),
        n if n > MAX_NAME_CHARS => Err(AuthError::InvalidArgument(
            "a passkey name has at most 64 characters".into(),
        )),
        _ => Ok(name),
    }
}

fn bounded<'a>(json: &'a str, what: &'static str) -> Result<&'a str, AuthError> {
    if json.is_empty() || json.len() > MAX_CREDENTIAL_JSON {
        return Err(AuthError::InvalidArgument(what.into()));
    }
    Ok(json)
}

/// `amr` of a passkey: `swk` for a synced passkey (backup eligible), `hwk` for one
/// bound to its device.
fn key_method(backup_eligible: bool) -> String {
    if backup_eligible { "swk" } else { "hwk" }.to_owned()
}

impl<S: Storage> Inner<S> {
    fn relying_party(&self) -> Result<&Webauthn, AuthError> {
        self.passkeys
            .as_ref()
            .map(|rp| &rp.0)
            .ok_or_else(|| conflict("passkeys are not offered by this server"))
    }

    /// Stores a ceremony; returns its handle.
    async fn put_ceremony(
        &self,
        user_id: &str,
        ceremony: &Ceremony,
        now: i64,
    ) -> Result<String, AuthError> {
        let state = serde_json::to_vec(ceremony)
            .map_err(|e| AuthError::Internal(format!("ceremony state: {e}")))?;
        let handle = random_handle();
        let challenge = Challenge {
            id: challenge_id(&handle),
            kind: if matches!(ceremony, Ceremony::Register { .. }) {
                REGISTER
            } else {
                LOGIN
            }
            .to_owned(),
            user_id: user_id.to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(duration_ms(CEREMONY_TTL)),
            state,
            attempts: 0,
        };
        self.put_challenge(challenge, now).await?;
        Ok(handle)
    }

    /// Takes the ceremony `handle` names, if it is of `kind`.
    async fn take_ceremony(
        &self,
        handle: &str,
        kind: &str,
        now: i64,
    ) -> Result<(Challenge, Ceremony), AuthError> {
        if handle.is_empty() || handle.len() > MAX_HANDLE_BYTES {
            return Err(AuthError::CeremonyExpired);
        }
        let c = self
            .storage
            .take_challenge(&challenge_id(handle), kind, now)
            .await?
            .ok_or(AuthError::CeremonyExpired)?;
        let ceremony = serde_json::from_slice(&c.state)
            .map_err(|_| AuthError::Internal("stored ceremony state does not decode".into()))?;
        Ok((c, ceremony))
    }

    /// Adding a factor to an account that has one needs a session opened with two.
    pub(crate) fn require_multi_factor(&self, user: &User, acr: &str) -> Result<(), AuthError> {
        if has_second_factor(user) && acr != ACR_MULTI_FACTOR {
            return Err(conflict(
                "this session was opened without your second factor: log in again with it",
            ));
        }
        Ok(())
    }

    /// Starts registering a passkey for `user`.
    pub(crate) async fn passkey_register_start(
        &self,
        user: &User,
        acr: &str,
        name: &str,
        now: i64,
    ) -> Result<PasskeyCeremony, AuthError> {
        let rp = self.relying_party()?;
        let name = clean_name(name)?;
        self.require_multi_factor(user, acr)?;
        if user.passkeys.len() >= MAX_PASSKEYS {
            return Err(conflict("this account has as many passkeys as it may have"));
        }
        let exclude = user
            .passkeys
            .iter()
            .map(|r| stored_passkey(r).map(|p| p.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = rp
            .start_passkey_registration(
                user_handle(&user.id)?,
                &user.username,
                &user.username,
                Some(exclude),
            )
            .map_err(|e| AuthError::Internal(format!("starting a registration: {e}")))?;
        let options_json = serde_json::to_string(&options)
            .map_err(|e| AuthError::Internal(format!("registration options: {e}")))?;
        let ceremony_id = self
            .put_ceremony(&user.id, &Ceremony::Register { name, state }, now)
            .await?;
        Ok(PasskeyCeremony {
            ceremony_id,
            options_json,
        })
    }

    /// Finishes a registration for `user` with the authenticator's response.
    pub(crate) async fn passkey_register_finish(
        &self,
        user: User,
        acr: &str,
        req: &PasskeyRegisterFinishRequest,
        now: i64,
    ) -> Result<PasskeyRegisterFinishResponse, AuthError> {
        let rp = self.relying_party()?;
        let json = bounded(
            &req.credential_json,
            "credential_json is missing or too large",
        )?;
        let (challenge, ceremony) = self.take_ceremony(&req.ceremony_id, REGISTER, now).await?;
        let Ceremony::Register { name, state } = ceremony else {
            return Err(AuthError::CeremonyExpired);
        };
        if challenge.user_id != user.id {
            return Err(AuthError::CeremonyExpired);
        }
        let response: RegisterPublicKeyCredential = serde_json::from_str(json).map_err(|_| {
            AuthError::InvalidArgument("credential_json is not a WebAuthn registration".into())
        })?;
        let passkey = rp
            .finish_passkey_registration(&response, &state)
            .map_err(|e| {
                tracing::info!(user_id = %user.id, error = %e, "passkey registration refused");
                AuthError::InvalidArgument("the passkey response was not accepted".into())
            })?;
        let record = PasskeyRecord {
            credential_id: credential_id(&passkey),
            name,
            credential: serde_json::to_vec(&passkey)
                .map_err(|e| AuthError::Internal(format!("passkey: {e}")))?,
            created_at_ms: now,
            last_used_at_ms: 0,
        };
        let codes = RecoveryCodes::generate();
        let (user, issued) = self
            .modify_user(user, now, |u| {
                // Checked again on the record written: a factor added since the
                // ceremony started makes this session too weak to add another.
                self.require_multi_factor(u, acr)?;
                if u.passkeys.len() >= MAX_PASSKEYS {
                    return Err(conflict("this account has as many passkeys as it may have"));
                }
                if u.passkeys
                    .iter()
                    .any(|p| p.credential_id == record.credential_id)
                {
                    return Err(conflict("this passkey is registered already"));
                }
                u.passkeys.push(record.clone());
                // The first second factor comes with recovery codes.
                let issue = u.recovery_code_hashes.is_empty();
                if issue {
                    u.recovery_code_hashes = codes.hashes.clone();
                }
                Ok(issue)
            })
            .await?;
        tracing::debug!(user_id = %user.id, credential_id = %record.credential_id, "passkey registered");
        Ok(PasskeyRegisterFinishResponse {
            passkey: Some(passkey_info(&record)),
            recovery_codes: if issued {
                codes.codes.iter().map(|c| c.to_string()).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Starts a passkey login: passwordless without a ticket, else the ticket's second
    /// step (the ticket stays for the finish).
    pub(crate) async fn passkey_login_start(
        &self,
        req: &PasskeyLoginStartRequest,
    ) -> Result<PasskeyCeremony, AuthError> {
        self.ensure_open()?;
        let rp = self.relying_party()?;
        self.throttle
            .check(Action::Login, crate::service::source(&req.client))?;
        let now = self.now_ms();
        let (user_id, ceremony, options) = if req.mfa_ticket.is_empty() {
            let (mut options, state) = rp
                .start_discoverable_authentication()
                .map_err(|e| AuthError::Internal(format!("starting a login: {e}")))?;
            // A modal prompt, not the autofill ("conditional") one.
            options.mediation = None;
            (String::new(), Ceremony::Passwordless { state }, options)
        } else {
            let ticket = self.peek_ticket(&req.mfa_ticket, now).await?;
            let user = self
                .storage
                .get_user(&ticket.user_id)
                .await?
                .ok_or(AuthError::InvalidMfaTicket)?;
            let passkeys = user
                .passkeys
                .iter()
                .map(stored_passkey)
                .collect::<Result<Vec<_>, _>>()?;
            if passkeys.is_empty() {
                return Err(conflict("this account has no passkey"));
            }
            let (options, state) = rp
                .start_passkey_authentication(&passkeys)
                .map_err(|e| AuthError::Internal(format!("starting a login: {e}")))?;
            let ceremony = Ceremony::SecondFactor {
                ticket_id: ticket.id,
                state,
            };
            (user.id, ceremony, options)
        };
        let options_json = serde_json::to_string(&options)
            .map_err(|e| AuthError::Internal(format!("login options: {e}")))?;
        let ceremony_id = self.put_ceremony(&user_id, &ceremony, now).await?;
        Ok(PasskeyCeremony {
            ceremony_id,
            options_json,
        })
    }

    /// The MFA ticket `handle` names, left in place: taken and stored again.
    async fn peek_ticket(&self, handle: &str, now: i64) -> Result<Challenge, AuthError> {
        if handle.len() > MAX_HANDLE_BYTES {
            return Err(AuthError::InvalidMfaTicket);
        }
        let ticket = self
            .storage
            .take_challenge(&challenge_id(handle), MFA_TICKET, now)
            .await?
            .ok_or(AuthError::InvalidMfaTicket)?;
        self.put_challenge(ticket.clone(), now).await?;
        Ok(ticket)
    }

    /// Finishes a passkey login with the authenticator's assertion.
    pub(crate) async fn passkey_login_finish(
        &self,
        req: PasskeyLoginFinishRequest,
        attempt: &mut crate::service::Attempt,
    ) -> Result<LoginResponse, AuthError> {
        self.ensure_open()?;
        let rp = self.relying_party()?;
        let from = crate::service::source(&req.client);
        self.throttle.check(Action::Login, from)?;
        let json = bounded(
            &req.credential_json,
            "credential_json is missing or too large",
        )?;
        let now = self.now_ms();
        let (challenge, ceremony) = self.take_ceremony(&req.ceremony_id, LOGIN, now).await?;
        let assertion: PublicKeyCredential = serde_json::from_str(json).map_err(|_| {
            AuthError::InvalidArgument("credential_json is not a WebAuthn assertion".into())
        })?;
        let refused = |e: webauthn_rs::prelude::WebauthnError| {
            tracing::info!(error = %e, "passkey assertion refused");
            AuthError::InvalidCredentials
        };
        let (user, amr) = match ceremony {
            Ceremony::Passwordless { state } => {
                let (handle, cred_id) = rp
                    .identify_discoverable_authentication(&assertion)
                    .map_err(refused)?;
                let user = self
                    .storage
                    .get_user(&handle.as_simple().to_string())
                    .await?
                    .ok_or(AuthError::InvalidCredentials)?;
                attempt.user_id.clone_from(&user.id);
                let wanted = URL_SAFE_NO_PAD.encode(cred_id);
                let record = user
                    .passkeys
                    .iter()
                    .find(|p| p.credential_id == wanted)
                    .ok_or(AuthError::InvalidCredentials)?;
                let key = DiscoverableKey::from(stored_passkey(record)?);
                let result = rp
                    .finish_discoverable_authentication(&assertion, state, &[key])
                    .map_err(refused)?;
                let user = self.record_use(user, &result, now).await?;
                (
                    user,
                    vec![key_method(result.backup_eligible()), "user".to_owned()],
                )
            }
            Ceremony::SecondFactor { ticket_id, state } => {
                if challenge_id(&req.mfa_ticket) != ticket_id {
                    return Err(AuthError::InvalidMfaTicket);
                }
                let ticket = self
                    .storage
                    .take_challenge(&ticket_id, MFA_TICKET, now)
                    .await?
                    .ok_or(AuthError::InvalidMfaTicket)?;
                let user = self
                    .storage
                    .get_user(&ticket.user_id)
                    .await?
                    .ok_or(AuthError::InvalidMfaTicket)?;
                attempt.user_id.clone_from(&user.id);
                let key = user.username_key.clone();
                let id = user.id.clone();
                let checked = self
                    .guarded_code(&key, &id, from, now, async {
                        let result = rp
                            .finish_passkey_authentication(&assertion, &state)
                            .map_err(refused)?;
                        self.record_use(user, &result, now)
                            .await
                            .map(|u| (u, result.backup_eligible()))
                    })
                    .await;
                match checked {
                    Ok((user, synced)) => (user, vec!["pwd".to_owned(), key_method(synced)]),
                    Err(e) => {
                        self.return_ticket(ticket, &e, now).await;
                        return Err(e);
                    }
                }
            }
            Ceremony::Register { .. } => return Err(AuthError::CeremonyExpired),
        };
        if !challenge.user_id.is_empty() && challenge.user_id != user.id {
            return Err(AuthError::CeremonyExpired);
        }
        attempt.amr.clone_from(&amr);
        let tokens = self.open_session(&user, req.client, amr, now).await?;
        Ok(LoginResponse {
            user: Some(user_info(&user)),
            tokens: Some(tokens),
            ..LoginResponse::default()
        })
    }

    /// Stores what an accepted assertion changes on its passkey: the signature counter
    /// and backup state, and when it was last used.
    async fn record_use(
        &self,
        user: User,
        result: &webauthn_rs::prelude::AuthenticationResult,
        now: i64,
    ) -> Result<User, AuthError> {
        let wanted = URL_SAFE_NO_PAD.encode(result.cred_id().as_ref());
        let (user, ()) = self
            .modify_user(user, now, |u| {
                let record = u
                    .passkeys
                    .iter_mut()
                    .find(|p| p.credential_id == wanted)
                    .ok_or(AuthError::InvalidCredentials)?;
                let counter = result.counter();
                if counter > 0 && counter <= stored_counter(record) {
                    // The authenticator's counter went back since the ceremony began:
                    // two copies of one key are in use.
                    tracing::warn!(credential_id = %wanted, "passkey counter went back; possible cloned authenticator");
                    return Err(AuthError::InvalidCredentials);
                }
                let mut passkey = stored_passkey(record)?;
                passkey.update_credential(result);
                record.credential = serde_json::to_vec(&passkey)
                    .map_err(|e| AuthError::Internal(format!("passkey: {e}")))?;
                record.last_used_at_ms = now;
                Ok(())
            })
            .await?;
        Ok(user)
    }

    /// Renames one of `user`'s passkeys.
    pub(crate) async fn passkey_rename(
        &self,
        user: User,
        credential_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), AuthError> {
        let name = clean_name(name)?;
        self.modify_user(user, now, |u| {
            let record = u
                .passkeys
                .iter_mut()
                .find(|p| p.credential_id == credential_id)
                .ok_or(AuthError::NotFound)?;
            record.name = name.clone();
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Removes one of `user`'s passkeys. The account's last second factor goes only
    /// with a recovery code (and takes the codes with it); another, only from a session
    /// opened with two factors.
    pub(crate) async fn passkey_remove(
        &self,
        user: User,
        acr: &str,
        req: &PasskeyRemoveRequest,
        now: i64,
    ) -> Result<(), AuthError> {
        let id = req.credential_id.as_str();
        if !user.passkeys.iter().any(|p| p.credential_id == id) {
            return Err(AuthError::NotFound);
        }
        let last = !user.totp_confirmed && user.passkeys.len() == 1;
        let remove = |u: &mut User| -> Result<(), AuthError> {
            let before = u.passkeys.len();
            u.passkeys.retain(|p| p.credential_id != id);
            if u.passkeys.len() == before {
                return Err(AuthError::NotFound);
            }
            if !has_second_factor(u) {
                if !last {
                    // Another factor went meanwhile: this one is the last now, and
                    // that takes a recovery code.
                    return Err(conflict(
                        "this is now your last second factor: removing it needs a recovery code",
                    ));
                }
                u.recovery_code_hashes.clear();
            }
            Ok(())
        };
        let user_id = user.id.clone();
        if last {
            let from = crate::service::source(&req.client);
            self.check_code_and(user, &req.code, from, now, remove)
                .await?;
        } else {
            if acr != ACR_MULTI_FACTOR {
                return Err(conflict(
                    "this session was opened without your second factor: log in again with it",
                ));
            }
            self.modify_user(user, now, remove).await?;
        }
        tracing::debug!(user_id = %user_id, credential_id = %id, "passkey removed");
        Ok(())
    }
}
