//! Second factors on a 3-node Raft cluster of real `auth-backend` processes: TOTP
//! enrolled through one node, the password step on a second, the code on the third
//! (the ticket, the sealed secret and the spent step are replicated), and a replay of
//! that code refused on the first. Then passkey ceremonies whose second request is
//! served by another node than their first.

use std::time::{Duration, Instant};

use auth_backend::RemoteAuth;
use auth_core::AuthApi;
use auth_core::api::*;
use auth_core::mfa::TotpSecret;
use auth_testing::ProcCluster;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const BIN: &str = env!("CARGO_BIN_EXE_auth-backend");
const PW: &str = "password-1";

/// A client of one node only.
fn node(c: &ProcCluster, i: usize) -> RemoteAuth {
    c.node_client(i)
}

fn login_req() -> LoginRequest {
    LoginRequest {
        username: "nadia".into(),
        password: PW.into(),
        client: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrol_on_one_node_log_in_across_the_other_two() {
    let c = ProcCluster::start(
        BIN,
        3,
        &[
            "--passkey-rp-id",
            "localhost",
            "--passkey-origin",
            "http://localhost:8080",
        ],
    );
    let (a, b, d) = (node(&c, 0), node(&c, 1), node(&c, 2));
    // The first write waits (bounded) for the cluster to elect a leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = a
            .register(RegisterRequest {
                username: "nadia".into(),
                password: PW.into(),
                client: None,
            })
            .await;
        match r {
            Ok(_) => break,
            Err(e) if e.code() == "user_exists" => break,
            Err(e) if e.code() == "unavailable" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("register: {e}"),
        }
    }
    let first = a.login(login_req()).await.unwrap().into_tokens().unwrap();
    let started = a
        .totp_enroll(TotpEnrollRequest {
            access_token: first.access_token.clone(),
        })
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(&started.secret).unwrap();
    let codes = a
        .totp_confirm(TotpConfirmRequest {
            access_token: first.access_token.clone(),
            code: secret.code_at_step(auth_testing::totp_step_now()),
            client: None,
        })
        .await
        .unwrap()
        .recovery_codes;
    assert_eq!(codes.len(), 10);

    // The password step on node 2; its ticket completes on node 3.
    let step = b.login(login_req()).await.unwrap();
    assert!(step.mfa_required && step.tokens.is_none());
    let code = secret.code_at_step(auth_testing::totp_step_now() + 1);
    let pair = d
        .login_mfa(LoginMfaRequest {
            mfa_ticket: step.mfa_ticket.clone(),
            code: code.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_tokens()
        .unwrap();
    let pair_token = pair.access_token.clone();
    let me = b
        .verify(VerifyRequest {
            access_token: pair.access_token,
        })
        .await
        .unwrap();
    assert_eq!((me.username.as_str(), me.acr.as_str()), ("nadia", "aal2"));

    // The ticket was used on node 3: node 1 refuses it. The code's step is spent
    // cluster-wide: a fresh ticket on node 1 with the same code is a replay.
    let again = a
        .login_mfa(LoginMfaRequest {
            mfa_ticket: step.mfa_ticket,
            code: code.clone(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), "invalid_mfa_ticket");
    let fresh = a.login(login_req()).await.unwrap();
    let replay = a
        .login_mfa(LoginMfaRequest {
            mfa_ticket: fresh.mfa_ticket.clone(),
            code,
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(replay.code(), "invalid_code");
    // A recovery code spent on node 2 is gone on node 3.
    b.login_mfa(LoginMfaRequest {
        mfa_ticket: fresh.mfa_ticket,
        code: codes[0].clone(),
        client: None,
    })
    .await
    .unwrap();
    let t = d.login(login_req()).await.unwrap().mfa_ticket;
    let spent = d
        .login_mfa(LoginMfaRequest {
            mfa_ticket: t,
            code: codes[0].clone(),
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(spent.code(), "invalid_code");

    // A passkey: the registration starts on node 1 and finishes on node 3 (from the
    // multi-factor session opened above).
    let origin = Url::parse("http://localhost:8080").unwrap();
    let mut key = WebauthnAuthenticator::new(SoftPasskey::new(true));
    let started = a
        .passkey_register_start(PasskeyRegisterStartRequest {
            access_token: pair_token.clone(),
            name: "cluster key".into(),
        })
        .await
        .unwrap();
    let options: CreationChallengeResponse = serde_json::from_str(&started.options_json).unwrap();
    let attestation = key.do_registration(origin.clone(), options).unwrap();
    let done = d
        .passkey_register_finish(PasskeyRegisterFinishRequest {
            access_token: pair_token,
            ceremony_id: started.ceremony_id,
            credential_json: serde_json::to_string(&attestation).unwrap(),
            client: None,
        })
        .await
        .unwrap();
    assert_eq!(done.passkey.unwrap().name, "cluster key");
    // The password on node 1, the passkey ceremony started on node 2, finished on 3.
    let step = a.login(login_req()).await.unwrap();
    assert!(step.mfa_methods.contains(&"webauthn".to_owned()));
    let started = b
        .passkey_login_start(PasskeyLoginStartRequest {
            mfa_ticket: step.mfa_ticket.clone(),
            client: None,
        })
        .await
        .unwrap();
    let options: RequestChallengeResponse = serde_json::from_str(&started.options_json).unwrap();
    let assertion = key.do_authentication(origin, options).unwrap();
    let pair = d
        .passkey_login_finish(PasskeyLoginFinishRequest {
            ceremony_id: started.ceremony_id.clone(),
            credential_json: serde_json::to_string(&assertion).unwrap(),
            mfa_ticket: step.mfa_ticket.clone(),
            client: None,
        })
        .await
        .unwrap()
        .into_tokens()
        .unwrap();
    let me = a
        .verify(VerifyRequest {
            access_token: pair.access_token,
        })
        .await
        .unwrap();
    assert_eq!(me.amr, vec!["pwd", "hwk"]);
    // The ceremony was taken on node 3: node 1 cannot finish it again.
    let again = a
        .passkey_login_finish(PasskeyLoginFinishRequest {
            ceremony_id: started.ceremony_id,
            credential_json: serde_json::to_string(&assertion).unwrap(),
            mfa_ticket: step.mfa_ticket,
            client: None,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), "ceremony_expired");
}
