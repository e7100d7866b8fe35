//! [`AuthApi`]: the operations a front end needs, in process or over the network.

use async_trait::async_trait;

pub use auth_proto::v1::{
    AdminClusterRequest, AdminClusterResponse, AdminGetUserResponse, AdminListUsersRequest,
    AdminListUsersResponse, AdminRecentEventsRequest, AdminRecentEventsResponse, AdminRoleRequest,
    AdminUserActionResponse, AdminUserInfo, AdminUserRequest, AuditEventInfo,
    ChangePasswordRequest, ChangePasswordResponse, ClientInfo, ClusterNodeInfo, DeleteUserRequest,
    DeleteUserResponse, KeysRequest, KeysResponse, ListSessionsRequest, ListSessionsResponse,
    LoginMfaRequest, LoginRequest, LoginResponse, LogoutAllRequest, LogoutAllResponse,
    LogoutRequest, LogoutResponse, MfaStatusRequest, MfaStatusResponse, PasskeyCeremony,
    PasskeyInfo, PasskeyLoginFinishRequest, PasskeyLoginStartRequest, PasskeyRegisterFinishRequest,
    PasskeyRegisterFinishResponse, PasskeyRegisterStartRequest, PasskeyRemoveRequest,
    PasskeyRemoveResponse, PasskeyRenameRequest, PasskeyRenameResponse, PublicKey, RefreshRequest,
    RefreshResponse, RegenerateRecoveryCodesRequest, RegenerateRecoveryCodesResponse,
    RegisterRequest, RegisterResponse, RevokeSessionRequest, RevokeSessionResponse, SessionInfo,
    TokenPair, TotpConfirmRequest, TotpConfirmResponse, TotpDisableRequest, TotpDisableResponse,
    TotpEnrollRequest, TotpEnrollResponse, UserInfo, VerifyRequest, VerifyResponse,
};

use crate::error::AuthError;

/// The auth operations, one method per `AuthService` RPC, on the `auth.proto` messages.
///
/// Implemented by `Auth` (in process) and by the gRPC client in `auth-backend`, so a
/// front end has one code path whether it embeds the core or talks to a cluster.
/// Calls that act for a signed-in user take their access token in the request.
#[async_trait]
pub trait AuthApi: Send + Sync + 'static {
    /// Creates an account.
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, AuthError>;
    /// Checks credentials and opens a session. For a user with a second factor it
    /// opens none: the answer has `mfa_required`, a single-use `mfa_ticket` and the
    /// `mfa_methods`; [`AuthApi::login_mfa`] completes it.
    async fn login(&self, req: LoginRequest) -> Result<LoginResponse, AuthError>;
    /// Checks an access token.
    async fn verify(&self, req: VerifyRequest) -> Result<VerifyResponse, AuthError>;
    /// Rotates a refresh token into a new token pair.
    async fn refresh(&self, req: RefreshRequest) -> Result<RefreshResponse, AuthError>;
    /// Ends the session a token belongs to. Ending an already-ended session succeeds.
    async fn logout(&self, req: LogoutRequest) -> Result<LogoutResponse, AuthError>;
    /// Ends every session of the caller.
    async fn logout_all(&self, req: LogoutAllRequest) -> Result<LogoutAllResponse, AuthError>;
    /// Changes the caller's password; ends every other session of theirs.
    async fn change_password(
        &self,
        req: ChangePasswordRequest,
    ) -> Result<ChangePasswordResponse, AuthError>;
    /// Deletes the caller's account (re-authenticated by password).
    async fn delete_user(&self, req: DeleteUserRequest) -> Result<DeleteUserResponse, AuthError>;
    /// Lists the caller's live sessions.
    async fn list_sessions(
        &self,
        req: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, AuthError>;
    /// Ends one of the caller's sessions.
    async fn revoke_session(
        &self,
        req: RevokeSessionRequest,
    ) -> Result<RevokeSessionResponse, AuthError>;
    /// The public keys that verify access tokens, as a JWKS (convert with
    /// [`Jwks::from`](crate::Jwks)): the EdDSA keys of the key ring, current and
    /// previous. Empty when tokens are signed with HS256. Needs no credential.
    async fn keys(&self, req: KeysRequest) -> Result<KeysResponse, AuthError>;
    /// The second step of a login: the ticket [`AuthApi::login`] gave and a TOTP code
    /// or recovery code. A wrong code counts towards the account's lockout and uses
    /// one of the ticket's tries; an unknown, expired or used ticket is
    /// [`AuthError::InvalidMfaTicket`].
    async fn login_mfa(&self, req: LoginMfaRequest) -> Result<LoginResponse, AuthError>;
    /// The caller's second factors.
    async fn mfa_status(&self, req: MfaStatusRequest) -> Result<MfaStatusResponse, AuthError>;
    /// Starts TOTP enrolment: a new secret, pending until [`AuthApi::totp_confirm`].
    async fn totp_enroll(&self, req: TotpEnrollRequest) -> Result<TotpEnrollResponse, AuthError>;
    /// Confirms TOTP enrolment with a first code and returns ten recovery codes (shown
    /// once). Logins ask for a second factor from then on.
    async fn totp_confirm(&self, req: TotpConfirmRequest)
    -> Result<TotpConfirmResponse, AuthError>;
    /// Removes TOTP, re-authenticated by a current TOTP or recovery code. Without
    /// another factor left, the recovery codes go too.
    async fn totp_disable(&self, req: TotpDisableRequest)
    -> Result<TotpDisableResponse, AuthError>;
    /// Replaces the recovery codes, re-authenticated by a current TOTP or recovery
    /// code.
    async fn regenerate_recovery_codes(
        &self,
        req: RegenerateRecoveryCodesRequest,
    ) -> Result<RegenerateRecoveryCodesResponse, AuthError>;
    /// Starts registering a passkey for the caller: options for
    /// `navigator.credentials.create()` and the ceremony id for
    /// [`AuthApi::passkey_register_finish`]. On an account with a second factor, the
    /// session must have been opened with it.
    async fn passkey_register_start(
        &self,
        req: PasskeyRegisterStartRequest,
    ) -> Result<PasskeyCeremony, AuthError>;
    /// Finishes a passkey registration; the account's first second factor comes with
    /// recovery codes.
    async fn passkey_register_finish(
        &self,
        req: PasskeyRegisterFinishRequest,
    ) -> Result<PasskeyRegisterFinishResponse, AuthError>;
    /// Starts a passkey login: passwordless without a ticket, or the second step of
    /// the password login whose `mfa_ticket` it carries.
    async fn passkey_login_start(
        &self,
        req: PasskeyLoginStartRequest,
    ) -> Result<PasskeyCeremony, AuthError>;
    /// Finishes a passkey login with the authenticator's assertion: the token pair.
    async fn passkey_login_finish(
        &self,
        req: PasskeyLoginFinishRequest,
    ) -> Result<LoginResponse, AuthError>;
    /// Renames one of the caller's passkeys.
    async fn passkey_rename(
        &self,
        req: PasskeyRenameRequest,
    ) -> Result<PasskeyRenameResponse, AuthError>;
    /// Removes one of the caller's passkeys: the last second factor only with a
    /// recovery code, another only from a session opened with two factors.
    async fn passkey_remove(
        &self,
        req: PasskeyRemoveRequest,
    ) -> Result<PasskeyRemoveResponse, AuthError>;
    /// Administration (the caller needs the `admin` role): a page of users by
    /// username, optionally filtered by text or id.
    async fn admin_list_users(
        &self,
        req: AdminListUsersRequest,
    ) -> Result<AdminListUsersResponse, AuthError>;
    /// Administration: one user with their live sessions.
    async fn admin_get_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminGetUserResponse, AuthError>;
    /// Administration: locks an account (no sign-in or refresh until unlocked) and
    /// ends its sessions.
    async fn admin_lock_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError>;
    /// Administration: unlocks an account.
    async fn admin_unlock_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError>;
    /// Administration: ends every session of a user.
    async fn admin_logout_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError>;
    /// Administration: deletes an account with its sessions.
    async fn admin_delete_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError>;
    /// Administration: grants a role (in tokens from the user's next sign-in).
    async fn admin_grant_role(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError>;
    /// Administration: revokes a role and ends the user's sessions, so no token
    /// carries it any more.
    async fn admin_revoke_role(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError>;
    /// Administration: the storage behind this server and, for a Raft cluster, every
    /// member's state as the serving node sees it.
    async fn admin_cluster(
        &self,
        req: AdminClusterRequest,
    ) -> Result<AdminClusterResponse, AuthError>;
    /// Administration: the latest audit events this server emitted, newest first.
    async fn admin_recent_events(
        &self,
        req: AdminRecentEventsRequest,
    ) -> Result<AdminRecentEventsResponse, AuthError>;
}

#[async_trait]
impl<T: AuthApi + ?Sized> AuthApi for std::sync::Arc<T> {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, AuthError> {
        (**self).register(req).await
    }
    async fn login(&self, req: LoginRequest) -> Result<LoginResponse, AuthError> {
        (**self).login(req).await
    }
    async fn verify(&self, req: VerifyRequest) -> Result<VerifyResponse, AuthError> {
        (**self).verify(req).await
    }
    async fn refresh(&self, req: RefreshRequest) -> Result<RefreshResponse, AuthError> {
        (**self).refresh(req).await
    }
    async fn logout(&self, req: LogoutRequest) -> Result<LogoutResponse, AuthError> {
        (**self).logout(req).await
    }
    async fn logout_all(&self, req: LogoutAllRequest) -> Result<LogoutAllResponse, AuthError> {
        (**self).logout_all(req).await
    }
    async fn change_password(
        &self,
        req: ChangePasswordRequest,
    ) -> Result<ChangePasswordResponse, AuthError> {
        (**self).change_password(req).await
    }
    async fn delete_user(&self, req: DeleteUserRequest) -> Result<DeleteUserResponse, AuthError> {
        (**self).delete_user(req).await
    }
    async fn list_sessions(
        &self,
        req: ListSessionsRequest,
    ) -> Result<ListSessionsResponse, AuthError> {
        (**self).list_sessions(req).await
    }
    async fn revoke_session(
        &self,
        req: RevokeSessionRequest,
    ) -> Result<RevokeSessionResponse, AuthError> {
        (**self).revoke_session(req).await
    }
    async fn keys(&self, req: KeysRequest) -> Result<KeysResponse, AuthError> {
        (**self).keys(req).await
    }
    async fn login_mfa(&self, req: LoginMfaRequest) -> Result<LoginResponse, AuthError> {
        (**self).login_mfa(req).await
    }
    async fn mfa_status(&self, req: MfaStatusRequest) -> Result<MfaStatusResponse, AuthError> {
        (**self).mfa_status(req).await
    }
    async fn totp_enroll(&self, req: TotpEnrollRequest) -> Result<TotpEnrollResponse, AuthError> {
        (**self).totp_enroll(req).await
    }
    async fn totp_confirm(
        &self,
        req: TotpConfirmRequest,
    ) -> Result<TotpConfirmResponse, AuthError> {
        (**self).totp_confirm(req).await
    }
    async fn totp_disable(
        &self,
        req: TotpDisableRequest,
    ) -> Result<TotpDisableResponse, AuthError> {
        (**self).totp_disable(req).await
    }
    async fn regenerate_recovery_codes(
        &self,
        req: RegenerateRecoveryCodesRequest,
    ) -> Result<RegenerateRecoveryCodesResponse, AuthError> {
        (**self).regenerate_recovery_codes(req).await
    }
    async fn passkey_register_start(
        &self,
        req: PasskeyRegisterStartRequest,
    ) -> Result<PasskeyCeremony, AuthError> {
        (**self).passkey_register_start(req).await
    }
    async fn passkey_register_finish(
        &self,
        req: PasskeyRegisterFinishRequest,
    ) -> Result<PasskeyRegisterFinishResponse, AuthError> {
        (**self).passkey_register_finish(req).await
    }
    async fn passkey_login_start(
        &self,
        req: PasskeyLoginStartRequest,
    ) -> Result<PasskeyCeremony, AuthError> {
        (**self).passkey_login_start(req).await
    }
    async fn passkey_login_finish(
        &self,
        req: PasskeyLoginFinishRequest,
    ) -> Result<LoginResponse, AuthError> {
        (**self).passkey_login_finish(req).await
    }
    async fn passkey_rename(
        &self,
        req: PasskeyRenameRequest,
    ) -> Result<PasskeyRenameResponse, AuthError> {
        (**self).passkey_rename(req).await
    }
    async fn passkey_remove(
        &self,
        req: PasskeyRemoveRequest,
    ) -> Result<PasskeyRemoveResponse, AuthError> {
        (**self).passkey_remove(req).await
    }
    async fn admin_list_users(
        &self,
        req: AdminListUsersRequest,
    ) -> Result<AdminListUsersResponse, AuthError> {
        (**self).admin_list_users(req).await
    }
    async fn admin_get_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminGetUserResponse, AuthError> {
        (**self).admin_get_user(req).await
    }
    async fn admin_lock_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        (**self).admin_lock_user(req).await
    }
    async fn admin_unlock_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        (**self).admin_unlock_user(req).await
    }
    async fn admin_logout_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        (**self).admin_logout_user(req).await
    }
    async fn admin_delete_user(
        &self,
        req: AdminUserRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        (**self).admin_delete_user(req).await
    }
    async fn admin_grant_role(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        (**self).admin_grant_role(req).await
    }
    async fn admin_revoke_role(
        &self,
        req: AdminRoleRequest,
    ) -> Result<AdminUserActionResponse, AuthError> {
        (**self).admin_revoke_role(req).await
    }
    async fn admin_cluster(
        &self,
        req: AdminClusterRequest,
    ) -> Result<AdminClusterResponse, AuthError> {
        (**self).admin_cluster(req).await
    }
    async fn admin_recent_events(
        &self,
        req: AdminRecentEventsRequest,
    ) -> Result<AdminRecentEventsResponse, AuthError> {
        (**self).admin_recent_events(req).await
    }
}
