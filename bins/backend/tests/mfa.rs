//! Second factors over gRPC: TOTP enrolment, the login's second step and recovery
//! codes through `RemoteAuth` against the real `AuthService`, including the bearer
//! metadata path and the typed errors.

mod common;

use auth_backend::RemoteAuth;
use auth_core::api::*;
use auth_core::mfa::TotpSecret;
use auth_core::{AuthApi, AuthError};
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_testing::{GrpcServer, fast_auth};
use common::*;

const PW: &str = "correct horse battery";

fn code(result: Result<impl std::fmt::Debug, AuthError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn totp_step_up_works_over_grpc() {
    let server = GrpcServer::start(fast_auth()).await;
    let remote = RemoteAuth::new([server.url()], Default::default()).unwrap();
    remote.register(register_req("alice", PW)).await.unwrap();
    let first = remote
        .login(login_req("alice", PW))
        .await
        .unwrap()
        .into_tokens()
        .unwrap();

    // Enrolment with the token in `authorization` metadata, as other gRPC clients send it.
    let mut raw = AuthServiceClient::connect(server.url()).await.unwrap();
    let mut req = tonic::Request::new(TotpEnrollRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", first.access_token).parse().unwrap(),
    );
    let started = raw.totp_enroll(req).await.unwrap().into_inner();
    assert!(started.otpauth_uri.starts_with("otpauth://totp/"));
    let secret = TotpSecret::from_base32(&started.secret).unwrap();

    let confirm = |code: String| {
        remote.totp_confirm(TotpConfirmRequest {
            access_token: first.access_token.clone(),
            code,
            client: None,
        })
    };
    assert_eq!(code(confirm("000000".into()).await), "invalid_code");
    let recovery = confirm(secret.code_at_step(auth_testing::totp_step_now()))
        .await
        .unwrap()
        .recovery_codes;
    assert_eq!(recovery.len(), 10);

    let step = remote.login(login_req("alice", PW)).await.unwrap();
    assert!(step.mfa_required && step.tokens.is_none());
    assert_eq!(step.mfa_methods, vec!["totp", "recovery_code"]);
    let login_mfa = |ticket: &str, code: &str| {
        remote.login_mfa(LoginMfaRequest {
            mfa_ticket: ticket.into(),
            code: code.into(),
            client: None,
        })
    };
    assert_eq!(
        code(login_mfa("forged", "123456").await),
        "invalid_mfa_ticket"
    );
    assert_eq!(
        code(login_mfa(&step.mfa_ticket, "123456").await),
        "invalid_code"
    );
    // The next step's code is inside the window and after the confirming one.
    let pair = login_mfa(
        &step.mfa_ticket,
        &secret.code_at_step(auth_testing::totp_step_now() + 1),
    )
    .await
    .unwrap()
    .into_tokens()
    .unwrap();
    let me = remote
        .verify(VerifyRequest {
            access_token: pair.access_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        (me.amr, me.acr.as_str()),
        (vec!["pwd".into(), "otp".into()], "aal2")
    );

    let status = remote
        .mfa_status(MfaStatusRequest {
            access_token: pair.access_token.clone(),
        })
        .await
        .unwrap();
    assert!(status.totp_enabled);
    assert_eq!(status.recovery_codes_left, 10);

    // A recovery code once, then never again; new ones replace them.
    let step = remote.login(login_req("alice", PW)).await.unwrap();
    login_mfa(&step.mfa_ticket, &recovery[0]).await.unwrap();
    let step = remote.login(login_req("alice", PW)).await.unwrap();
    assert_eq!(
        code(login_mfa(&step.mfa_ticket, &recovery[0]).await),
        "invalid_code"
    );
    let fresh = remote
        .regenerate_recovery_codes(RegenerateRecoveryCodesRequest {
            access_token: pair.access_token.clone(),
            code: recovery[1].clone(),
            client: None,
        })
        .await
        .unwrap()
        .recovery_codes;
    assert_eq!(fresh.len(), 10);
    assert_eq!(
        code(
            remote
                .totp_enroll(TotpEnrollRequest {
                    access_token: pair.access_token.clone(),
                })
                .await
        ),
        "mfa_conflict"
    );
    remote
        .totp_disable(TotpDisableRequest {
            access_token: pair.access_token.clone(),
            code: fresh[0].clone(),
            client: None,
        })
        .await
        .unwrap();
    assert!(
        remote
            .login(login_req("alice", PW))
            .await
            .unwrap()
            .tokens
            .is_some()
    );
    server.stop().await;
}
