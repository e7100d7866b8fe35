//! The [`AuthApi`] operations of [`Auth`].

use async_trait::async_trait;
use auth_storage::{RotateOutcome, RotateRefresh, Session, Storage, StorageError, User};

use crate::api::*;
use crate::audit::{AuditEvent, AuditKind};
use crate::auth::{Auth, CAS_RETRIES, Inner};
use crate::clock::duration_ms;
use crate::error::AuthError;
use crate::second_factor::{amr_password, has_second_factor};
use crate::throttle::Action;
use crate::tokens::{Claims, RefreshToken, random_id};

/// Longest user agent / address kept with a session.
const MAX_USER_AGENT: usize = 256;
const MAX_IP: usize = 64;

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].chars().filter(|c| !c.is_control()).collect()
}

pub(crate) fn user_info(u: &User) -> UserInfo {
    UserInfo {
        id: u.id.clone(),
        username: u.username.clone(),
        created_at_ms: u.created_at_ms,
    }
}

impl<S: Storage> Inner<S> {
    /// Decodes an access token and requires a live session, whatever `session_check`
    /// says: account operations always see logouts at once.
    pub(crate) async fn authenticate(&self, token: &str) -> Result<(Claims, i64), AuthError> {
        self.ensure_open()?;
        let now = self.now_ms();
        let claims = self.codec.decode(token, now)?;
        self.require_live(&claims, now).await?;
        Ok((claims, now))
    }

    fn token_pair(
        &self,
        session: &Session,
        refresh: &RefreshToken,
        now: i64,
    ) -> Result<TokenPair, AuthError> {
        let ttl = i64::try_from(self.config.access_token_ttl.as_secs()).unwrap_or(i64::MAX);
        let (access, claims) = self.codec.issue(session, now, ttl)?;
        Ok(TokenPair {
            access_token: access,
            access_expires_at_ms: claims.exp.saturating_mul(1000),
            refresh_token: refresh.encode(),
            refresh_expires_at_ms: session.expires_at_ms,
            session_id: session.id.clone(),
        })
    }

    pub(crate) async fn open_session(
        &self,
        user: &User,
        client: Option<ClientInfo>,
        amr: Vec<String>,
        now: i64,
    ) -> Result<TokenPair, AuthError> {
        let id = random_id();
        let refresh = RefreshToken::generate(&id);
        let absolute = now.saturating_add(duration_ms(self.config.session_max_lifetime));
        let idle = now.saturating_add(duration_ms(self.config.refresh_token_ttl));
        let client = client.unwrap_or_default();
        let session = Session {
            id,
            user_id: user.id.clone(),
            username: user.username.clone(),
            refresh_hash: refresh.hash(),
            created_at_ms: now,
            last_used_at_ms: now,
            expires_at_ms: idle.min(absolute),
            absolute_expires_at_ms: absolute,
            user_agent: truncate(&client.user_agent, MAX_USER_AGENT),
            ip: truncate(&client.ip, MAX_IP),
            amr,
            ..Session::default()
        };
        let session = match self
            .storage
            .create_session(session, self.config.max_sessions_per_user)
            .await
        {
            Ok(s) => s,
            // The user was deleted between the password check and now.
            Err(StorageError::NotFound) => return Err(AuthError::InvalidCredentials),
            Err(e) => return Err(e.into()),
        };
        self.token_pair(&session, &refresh, now)
    }

    /// Password check for an operation on a signed-in user (change password, delete
    /// account), under the same throttling and lockout as a login.
    async fn check_password(
        &self,
        user: &User,
        password: &str,
        source: Option<&str>,
        now: i64,
    ) -> Result<(), AuthError> {
        if password.len() > self.config.password.max_bytes {
            return Err(AuthError::InvalidCredentials);
        }
        self.guarded_check(
            &user.username_key,
            &user.id,
            source,
            password,
            Some(&user.password_hash),
            now,
        )
        .await
        .map(drop)
    }
}

impl<S: Storage> Inner<S> {
    /// The password step of a login; `attempt` learns the user for the audit event.
    async fn login_password(
        &self,
        req: LoginRequest,
        attempt: &mut Attempt,
    ) -> Result<LoginResponse, AuthError> {
        let me = self;
        me.ensure_open()?;
        // Over-long passwords are refused before hashing (hash flooding).
        if req.password.len() > me.config.password.max_bytes {
            return Err(AuthError::InvalidCredentials);
        }
        let from = source(&req.client);
        me.throttle.check(Action::Login, from)?;
        let Ok(name) = me.config.username.normalize(&req.username) else {
            // No account can have this name: the same hashing time, no storage.
            return Err(me.reject_unknown(&req.password).await);
        };
        let user = me.storage.get_user_by_username(&name.key).await?;
        let now = me.now_ms();
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        if let Some(u) = &user {
            attempt.user_id.clone_from(&u.id);
        }
        let check = me
            .guarded_check(
                &name.key,
                &attempt.user_id,
                from,
                &req.password,
                stored,
                now,
            )
            .await?;
        let Some(mut user) = user else {
            return Err(AuthError::InvalidCredentials);
        };
        if check.needs_rehash {
            // Best effort: a shed re-hash waits for the next login, it fails nothing.
            match me.hasher.hash(&req.password).await {
                Ok(rehash) => user = me.upgrade_hash(user, rehash, now).await?,
                Err(AuthError::Overloaded { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if user.admin_locked_at_ms != 0 {
            // Only after the password proved who is asking.
            return Err(AuthError::AccountDisabled);
        }
        if has_second_factor(&user) {
            return me.mfa_step(&user, now).await;
        }
        attempt.amr = amr_password();
        let tokens = me
            .open_session(&user, req.client, attempt.amr.clone(), now)
            .await?;
        Ok(LoginResponse {
            user: Some(user_info(&user)),
            tokens: Some(tokens),
            ..LoginResponse::default()
        })
    }

    /// The audit event of a sign-in (password, second step or passkey): succeeded,
    /// second factor required, or failed with its code. Failures of the service itself
    /// (unavailable, internal) are not sign-in events.
    pub(crate) fn audit_sign_in(
        &self,
        r: &Result<LoginResponse, AuthError>,
        attempt: &Attempt,
        client: Option<&ClientInfo>,
    ) {
        let e = match r {
            Ok(resp) if resp.mfa_required => self.event(AuditKind::SecondFactorRequired),
            Ok(resp) => {
                let sid = resp.tokens.as_ref().map_or("", |t| t.session_id.as_str());
                self.event(AuditKind::LoginSucceeded)
                    .session(sid)
                    .detail(attempt.amr.join(","))
            }
            Err(e) if e.is_internal() || *e == AuthError::Stopped => return,
            // Refusals that cost the caller nothing (throttled, shed) are counted, not
            // written: a flood of them must not rotate real events out of the trail.
            Err(e @ (AuthError::RateLimited { .. } | AuthError::Overloaded { .. })) => {
                metrics::counter!("auth_login_failures_total", "reason" => e.code()).increment(1);
                return;
            }
            Err(e) => self.event(AuditKind::LoginFailed).failed(e.code()),
        };
        self.audit(e.user(&attempt.user_id).source(client));
    }

    /// The event of a change to the caller's second factors.
    fn audit_factor(
        &self,
        kind: AuditKind,
        factor: &str,
        claims: &Claims,
        client: Option<&ClientInfo>,
    ) {
        self.audit(
            self.event(kind)
                .user(&claims.sub)
                .session(&claims.sid)
                .source(client)
                .detail(factor),
        );
    }

    /// The `logout` event of a session that ended.
    fn audit_logout(&self, user_id: &str, session_id: &str, client: Option<&ClientInfo>) {
        self.audit(
            self.event(AuditKind::Logout)
                .user(user_id)
                .session(session_id)
                .source(client),
        );
    }

    /// The event of an account operation that may fail (a password change, a
    /// deletion): its outcome and, on failure, the code.
    pub(crate) fn audit_outcome<T>(&self, r: &Result<T, AuthError>, event: AuditEvent) {
        match r {
            Ok(_) => self.audit(event),
            Err(e) if e.is_internal() || *e == AuthError::Stopped => {}
            Err(e) => self.audit(event.failed(e.code())),
        }
    }
}

/// What a sign-in learned on its way, for its audit event.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// The user, once known.
    pub(crate) user_id: String,
    /// How they authenticated, once a session opens.
    pub(crate) amr: Vec<String>,
}

/// The source address a request names, if any.
pub(crate) fn source(client: &Option<ClientInfo>) -> Option<&str> {
    client
        .as_ref()
        .map(|c| c.ip.as_str())
        .filter(|ip| !ip.is_empty())
}

#[async_trait]
impl<S: Storage> AuthApi for Auth<S> {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, AuthError> {
        let me = &self.inner;
        me.ensure_open()?;
        me.throttle.check(Action::Register, source(&req.client))?;
        let name = me.config.username.normalize(&req.username)?;
        me.config.password.check(&req.password)?;
        // Cheap early answer; create_user below is what actually guarantees uniqueness.
        if me.storage.username_taken_hint(&name.key).await? {
            return Err(AuthError::UserExists);
        }
        let password_hash = me.hasher.hash(&req.password).await?;
        let now = me.now_ms();
        let user = me
            .storage
            .create_user(User {
                id: random_id(),
                username: name.display,
                username_key: name.key,
                password_hash,
                created_at_ms: now,
                updated_at_ms: now,
                ..User::default()
            })
            .await?;
        me.audit(
            me.event(AuditKind::Registered)
                .user(&user.id)
                .source(req.client.as_ref()),
        );
        Ok(RegisterResponse {
            user: Some(user_info(&user)),
        })
    }

    async fn login(&self, req: LoginRequest) -> Result<LoginResponse, AuthError> {
        let mut attempt = Attempt::default();
        let client = req.client.clone();
        let r = self.inner.login_password(req, &mut attempt).await;
        self.inner.audit_sign_in(&r, &attempt, client.as_ref());
        r
    }

    async fn verify(&self, req: VerifyRequest) -> Result<VerifyResponse, AuthError> {
        let claims = self.verify_token(&req.access_token).await?;
        Ok(VerifyResponse {
            user_id: claims.sub,
            username: claims.name,
            session_id: claims.sid,
            issued_at_ms: claims.iat.saturating_mul(1000),
            expires_at_ms: claims.exp.saturating_mul(1000),
            token_id: claims.jti,
            amr: claims.amr,
            acr: claims.acr,
            roles: claims.roles,
        })
    }

    async fn refresh(&self, req: RefreshRequest) -> Result<RefreshResponse, AuthError> {
        let me = &self.inner;
        me.ensure_open()?;
        me.throttle.check(Action::Refresh, source(&req.client))?;
        let presented = RefreshToken::parse(&req.refresh_token)?;
        // A read first: a token of no session, or matching none of its hashes, is
        // refused without a (replicated, fsynced) write.
        let presented_hash = presented.hash();
        let owner = match me.storage.get_session(presented.session_id()).await? {
            Some(s)
                if s.refresh_hash == presented_hash
                    || s.retired_refresh_hashes.contains(&presented_hash) =>
            {
                s.user_id
            }
            _ => return Err(AuthError::InvalidToken),
        };
        let successor = RefreshToken::generate(presented.session_id());
        let now = me.now_ms();
        let outcome = me
            .storage
            .rotate_refresh(RotateRefresh {
                session_id: presented.session_id().to_owned(),
                presented_hash,
                new_hash: successor.hash(),
                sealed_successor: presented.seal(&successor),
                now_ms: now,
                idle_ttl_ms: duration_ms(me.config.refresh_token_ttl),
                grace_ms: duration_ms(me.config.refresh_grace),
            })
            .await?;
        let tokens = match outcome {
            RotateOutcome::Rotated(s) => me.token_pair(&s, &successor, now)?,
            RotateOutcome::Replayed(s) => {
                let current = presented.open(&s.sealed_successor)?;
                if current.hash() != s.refresh_hash {
                    return Err(AuthError::InvalidToken);
                }
                me.token_pair(&s, &current, now)?
            }
            RotateOutcome::Reused => {
                me.audit(
                    me.event(AuditKind::RefreshReuseDetected)
                        .failed(AuthError::RefreshTokenReused.code())
                        .user(&owner)
                        .session(presented.session_id())
                        .source(req.client.as_ref()),
                );
                return Err(AuthError::RefreshTokenReused);
            }
            RotateOutcome::Expired => return Err(AuthError::SessionEnded),
            RotateOutcome::Invalid => return Err(AuthError::InvalidToken),
        };
        Ok(RefreshResponse {
            tokens: Some(tokens),
        })
    }

    async fn logout(&self, req: LogoutRequest) -> Result<LogoutResponse, AuthError> {
        let me = &self.inner;
        me.ensure_open()?;
        if !req.refresh_token.is_empty() {
            let token = RefreshToken::parse(&req.refresh_token)?;
            let Some(s) = me.storage.get_session(token.session_id()).await? else {
                return Ok(LogoutResponse {});
            };
            let h = token.hash();
            if s.refresh_hash != h && !s.retired_refresh_hashes.contains(&h) {
                return Err(AuthError::InvalidToken);
            }
            if me.storage.delete_session(&s.id, &s.user_id).await? {
                me.audit_logout(&s.user_id, &s.id, req.client.as_ref());
            }
        } else if !req.access_token.is_empty() {
            let claims = match me.codec.decode(&req.access_token, me.now_ms()) {
                Ok(c) => c,
                Err(e) => return Err(e),
            };
            if me.storage.delete_session(&claims.sid, &claims.sub).await? {
                me.audit_logout(&claims.sub, &claims.sid, req.client.as_ref());
            }
        } else {
            return Err(AuthError::InvalidArgument(
                "access_token or refresh_token is required".into(),
            ));
        }
        Ok(LogoutResponse {})
    }

    async fn logout_all(&self, req: LogoutAllRequest) -> Result<LogoutAllResponse, AuthError> {
        let (claims, _) = self.inner.authenticate(&req.access_token).await?;
        let me = &self.inner;
        let n = me.storage.delete_user_sessions(&claims.sub, None).await?;
        me.audit(
            me.event(AuditKind::LogoutAll)
                .user(&claims.sub)
                .session(&claims.sid)
                .source(req.client.as_ref())
                .detail(format!("{n} sessions")),
        );
        Ok(LogoutAllResponse { sessions_ended: n })
    }

    async fn change_password(
        &self,
        req: ChangePasswordRequest,
    ) -> Result<ChangePasswordResponse, AuthError> {
        let me = &self.inner;
        me.throttle
            .check(Action::ChangePassword, source(&req.client))?;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let event = me
            .event(AuditKind::PasswordChanged)
            .user(&claims.sub)
            .session(&claims.sid)
            .source(req.client.as_ref());
        let r: Result<ChangePasswordResponse, AuthError> = async {
            let mut user = me
                .storage
                .get_user(&claims.sub)
                .await?
                .ok_or(AuthError::SessionEnded)?;
            me.check_password(&user, &req.current_password, source(&req.client), now)
                .await?;
            me.config.password.check(&req.new_password)?;
            let verified_hash = user.password_hash.clone();
            let new_hash = me.hasher.hash(&req.new_password).await?;
            let mut done = false;
            for _ in 0..CAS_RETRIES {
                if user.password_hash != verified_hash {
                    // Someone changed the password after we checked the current one.
                    return Err(AuthError::InvalidCredentials);
                }
                let mut next = user.clone();
                next.password_hash = new_hash.clone();
                next.updated_at_ms = now;
                match me.storage.update_user(next).await {
                    Ok(_) => {
                        done = true;
                        break;
                    }
                    Err(StorageError::Conflict) => {
                        user = me
                            .storage
                            .get_user(&claims.sub)
                            .await?
                            .ok_or(AuthError::SessionEnded)?;
                    }
                    Err(StorageError::NotFound) => return Err(AuthError::SessionEnded),
                    Err(e) => return Err(e.into()),
                }
            }
            if !done {
                return Err(AuthError::Unavailable("user record is contended".into()));
            }
            let ended = me
                .storage
                .delete_user_sessions(&claims.sub, Some(&claims.sid))
                .await?;
            Ok(ChangePasswordResponse {
                sessions_ended: ended,
            })
        }
        .await;
        me.audit_outcome(&r, event);
        r
    }

    async fn delete_user(&self, req: DeleteUserRequest) -> Result<DeleteUserResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let event = me
            .event(AuditKind::AccountDeleted)
            .user(&claims.sub)
            .session(&claims.sid)
            .source(req.client.as_ref());
        let r: Result<DeleteUserResponse, AuthError> = async {
            let user = me
                .storage
                .get_user(&claims.sub)
                .await?
                .ok_or(AuthError::SessionEnded)?;
            me.check_password(&user, &req.password, source(&req.client), now)
                .await?;
            match me.storage.delete_user(&claims.sub).await {
                Ok(_) => {}
                Err(StorageError::NotFound) => return Err(AuthError::SessionEnded),
                Err(e) => return Err(e.into()),
            }
            Ok(DeleteUserResponse {})
        }
        .await;
        me.audit_outcome(&r, event);
        r
    }

    async fn list_sessions(
        &self,
        req: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me
            .storage
            .get_user(&claims.sub)
            .await?
            .ok_or(AuthError::SessionEnded)?;
        let sessions = me.session_infos(&claims.sub, &claims.sid, now).await?;
        Ok(ListSessionsResponse {
            user: Some(user_info(&user)),
            sessions,
        })
    }

    async fn revoke_session(
        &self,
        req: RevokeSessionRequest,
    ) -> Result<RevokeSessionResponse, AuthError> {
        let me = &self.inner;
        let (claims, _) = me.authenticate(&req.access_token).await?;
        if req.session_id.is_empty() {
            return Err(AuthError::InvalidArgument("session_id is required".into()));
        }
        if me
            .storage
            .delete_session(&req.session_id, &claims.sub)
            .await?
        {
            me.audit(
                me.event(AuditKind::SessionRevoked)
                    .user(&claims.sub)
                    .session(&req.session_id)
                    .source(req.client.as_ref()),
            );
            Ok(RevokeSessionResponse {})
        } else {
            Err(AuthError::NotFound)
        }
    }

    async fn keys(&self, _req: KeysRequest) -> Result<KeysResponse, AuthError> {
        Ok(KeysResponse::from(&self.jwks()))
    }

    async fn login_mfa(&self, req: LoginMfaRequest) -> Result<LoginResponse, AuthError> {
        let mut attempt = Attempt::default();
        let client = req.client.clone();
        let r = self.inner.login_mfa(req, &mut attempt).await;
        self.inner.audit_sign_in(&r, &attempt, client.as_ref());
        r
    }

    async fn mfa_status(&self, req: MfaStatusRequest) -> Result<MfaStatusResponse, AuthError> {
        let me = &self.inner;
        let (claims, _) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        Ok(me.mfa_status(&user).await)
    }

    async fn totp_enroll(&self, req: TotpEnrollRequest) -> Result<TotpEnrollResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        me.totp_enroll(user, &claims.acr, now).await
    }

    async fn totp_confirm(
        &self,
        req: TotpConfirmRequest,
    ) -> Result<TotpConfirmResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        let r = me
            .totp_confirm(user, &claims.acr, &req.code, source(&req.client), now)
            .await;
        if r.is_ok() {
            me.audit_factor(
                AuditKind::SecondFactorAdded,
                "totp",
                &claims,
                req.client.as_ref(),
            );
        }
        r
    }

    async fn totp_disable(
        &self,
        req: TotpDisableRequest,
    ) -> Result<TotpDisableResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        me.totp_disable(user, &req.code, source(&req.client), now)
            .await?;
        me.audit_factor(
            AuditKind::SecondFactorRemoved,
            "totp",
            &claims,
            req.client.as_ref(),
        );
        Ok(TotpDisableResponse {})
    }

    async fn regenerate_recovery_codes(
        &self,
        req: RegenerateRecoveryCodesRequest,
    ) -> Result<RegenerateRecoveryCodesResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        let r = me
            .regenerate_recovery_codes(user, &req.code, source(&req.client), now)
            .await;
        if r.is_ok() {
            me.audit_factor(
                AuditKind::RecoveryCodesRegenerated,
                "",
                &claims,
                req.client.as_ref(),
            );
        }
        r
    }

    async fn passkey_register_start(
        &self,
        req: PasskeyRegisterStartRequest,
    ) -> Result<PasskeyCeremony, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        me.passkey_register_start(&user, &claims.acr, &req.name, now)
            .await
    }

    async fn passkey_register_finish(
        &self,
        req: PasskeyRegisterFinishRequest,
    ) -> Result<PasskeyRegisterFinishResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        let r = me
            .passkey_register_finish(user, &claims.acr, &req, now)
            .await;
        if r.is_ok() {
            me.audit_factor(
                AuditKind::SecondFactorAdded,
                "passkey",
                &claims,
                req.client.as_ref(),
            );
        }
        r
    }

    async fn passkey_login_start(
        &self,
        req: PasskeyLoginStartRequest,
    ) -> Result<PasskeyCeremony, AuthError> {
        self.inner.passkey_login_start(&req).await
    }

    async fn passkey_login_finish(
        &self,
        req: PasskeyLoginFinishRequest,
    ) -> Result<LoginResponse, AuthError> {
        let mut attempt = Attempt::default();
        let client = req.client.clone();
        let r = self.inner.passkey_login_finish(req, &mut attempt).await;
        self.inner.audit_sign_in(&r, &attempt, client.as_ref());
        r
    }

    async fn passkey_rename(
        &self,
        req: PasskeyRenameRequest,
    ) -> Result<PasskeyRenameResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        me.passkey_rename(user, &req.credential_id, &req.name, now)
            .await?;
        Ok(PasskeyRenameResponse {})
    }

    async fn passkey_remove(
        &self,
        req: PasskeyRemoveRequest,
    ) -> Result<PasskeyRemoveResponse, AuthError> {
        let me = &self.inner;
        let (claims, now) = me.authenticate(&req.access_token).await?;
        let user = me.current_user(&claims.sub).await?;
        me.passkey_remove(user, &claims.acr, &req, now).await?;
        me.audit_factor(
            AuditKind::SecondFactorRemoved,
            "passkey",
            &claims,
            req.client.as_ref(),
        );
        Ok(PasskeyRemoveResponse {})
    }

    async fn admin_list_users(
        &self,
        req: AdminListUsersRequest,
    ) -> Result<AdminListUsersResponse, AuthError> {
        self.admin_list_users_impl(req).await
    }

    async fn admin_get_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminGetUserResponse, AuthError> {
        self.admin_get_user_impl(req).await
    }

    async fn admin_lock_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        self.admin_lock_user_impl(req).await
    }

    async fn admin_unlock_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        self.admin_unlock_user_impl(req).await
    }

    async fn admin_logout_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        self.admin_logout_user_impl(req).await
    }

    async fn admin_delete_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        self.admin_delete_user_impl(req).await
    }

    async fn admin_grant_role(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        self.admin_grant_role_impl(req).await
    }

    async fn admin_revoke_role(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        self.admin_revoke_role_impl(req).await
    }

    async fn admin_cluster(
        &self,
        req: AdminClusterRequest,
    ) -> Result<AdminClusterResponse, AuthError> {
        self.admin_cluster_impl(req).await
    }

    async fn admin_recent_events(
        &self,
        req: AdminRecentEventsRequest,
    ) -> Result<AdminRecentEventsResponse, AuthError> {
        self.admin_recent_events_impl(req).await
    }
}
