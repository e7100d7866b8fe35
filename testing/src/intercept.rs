//! [`Intercepted`]: an [`AuthApi`] that runs a test's [`Hook`] before every call and
//! then forwards it, so a test wrapper (counting, stalling, recording, failing) is one
//! method instead of one per RPC, and keeps compiling when `AuthApi` grows.

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use auth_core::api::*;
use auth_core::{AuthApi, AuthError};

/// What a test wrapper does around each call.
#[async_trait]
pub trait Hook: Send + Sync + 'static {
    /// Where calls go once [`Hook::before`] lets them through; `None` for a wrapper
    /// whose `before` answers every call itself.
    fn inner(&self) -> Option<&dyn AuthApi>;

    /// Runs before each call with the method's name and, for requests that carry one,
    /// their [`ClientInfo`]. An error answers the call instead of forwarding it.
    async fn before(
        &self,
        call: &'static str,
        client: Option<&ClientInfo>,
    ) -> Result<(), AuthError>;
}

/// `H` as an [`AuthApi`]. Dereferences to `H`, so a test reaches its hook's counters
/// through an `Arc<Intercepted<H>>`.
pub struct Intercepted<H>(pub H);

impl<H: Hook> Intercepted<H> {
    /// `hook` behind an `Arc`, ready to serve.
    pub fn arc(hook: H) -> Arc<Self> {
        Arc::new(Self(hook))
    }

    fn forward(&self) -> Result<&dyn AuthApi, AuthError> {
        self.0
            .inner()
            .ok_or_else(|| AuthError::Internal("this test hook forwards nothing".into()))
    }
}

impl<H> Deref for Intercepted<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.0
    }
}

/// The request's client info, for request types listed with `client`.
macro_rules! client_of {
    ($req:ident) => {
        None
    };
    ($req:ident, client) => {
        $req.client.as_ref()
    };
}

macro_rules! intercept {
    ($($name:ident($req:ty) -> $resp:ty $(, $client:ident)?;)*) => {
        #[async_trait]
        impl<H: Hook> AuthApi for Intercepted<H> {
            $(
                async fn $name(&self, req: $req) -> Result<$resp, AuthError> {
                    self.0.before(stringify!($name), client_of!(req $(, $client)?)).await?;
                    self.forward()?.$name(req).await
                }
            )*
        }
    };
}

intercept! {
    register(RegisterRequest) -> RegisterResponse, client;
    login(LoginRequest) -> LoginResponse, client;
    verify(VerifyRequest) -> VerifyResponse;
    refresh(RefreshRequest) -> RefreshResponse, client;
    logout(LogoutRequest) -> LogoutResponse;
    logout_all(LogoutAllRequest) -> LogoutAllResponse;
    change_password(ChangePasswordRequest) -> ChangePasswordResponse, client;
    delete_user(DeleteUserRequest) -> DeleteUserResponse;
    list_sessions(ListSessionsRequest) -> ListSessionsResponse;
    revoke_session(RevokeSessionRequest) -> RevokeSessionResponse;
    keys(KeysRequest) -> KeysResponse;
    login_mfa(LoginMfaRequest) -> LoginResponse, client;
    mfa_status(MfaStatusRequest) -> MfaStatusResponse;
    totp_enroll(TotpEnrollRequest) -> TotpEnrollResponse;
    totp_confirm(TotpConfirmRequest) -> TotpConfirmResponse, client;
    totp_disable(TotpDisableRequest) -> TotpDisableResponse, client;
    regenerate_recovery_codes(RegenerateRecoveryCodesRequest) -> RegenerateRecoveryCodesResponse, client;
    passkey_register_start(PasskeyRegisterStartRequest) -> PasskeyCeremony;
    passkey_register_finish(PasskeyRegisterFinishRequest) -> PasskeyRegisterFinishResponse;
    passkey_login_start(PasskeyLoginStartRequest) -> PasskeyCeremony, client;
    passkey_login_finish(PasskeyLoginFinishRequest) -> LoginResponse, client;
    passkey_rename(PasskeyRenameRequest) -> PasskeyRenameResponse;
    passkey_remove(PasskeyRemoveRequest) -> PasskeyRemoveResponse, client;
    admin_list_users(AdminListUsersRequest) -> AdminListUsersResponse;
    admin_get_user(AdminUserRequest) -> AdminGetUserResponse;
    admin_lock_user(AdminUserRequest) -> AdminUserActionResponse, client;
    admin_unlock_user(AdminUserRequest) -> AdminUserActionResponse, client;
    admin_logout_user(AdminUserRequest) -> AdminUserActionResponse, client;
    admin_delete_user(AdminUserRequest) -> AdminUserActionResponse, client;
    admin_grant_role(AdminRoleRequest) -> AdminUserActionResponse, client;
    admin_revoke_role(AdminRoleRequest) -> AdminUserActionResponse, client;
    admin_cluster(AdminClusterRequest) -> AdminClusterResponse;
    admin_recent_events(AdminRecentEventsRequest) -> AdminRecentEventsResponse;
}
