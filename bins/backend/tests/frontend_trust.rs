//! Who may state the end user's address (`ClientInfo.ip`) on the client listener: a
//! front end presenting a client certificate from the cluster CA whose name is in
//! `FrontendTrust::names`. Everyone else — no certificate, another name, a certificate
//! from a foreign CA — has its claim replaced by the connection's address.

mod common;

use common::recorded_ip;
use std::time::Duration;

use auth_backend::ServerOptions;
use auth_backend::server::FrontendTrust;
use auth_core::api::*;
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_raft::tls::PeerIdentity;
use auth_testing::{GrpcServer, TestCa, fast_auth};
use tonic::transport::{ClientTlsConfig, Endpoint};

const PW: &str = "correct horse battery";

async fn client(
    addr: &str,
    tls: ClientTlsConfig,
) -> Result<AuthServiceClient<tonic::transport::Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AuthServiceClient::new(channel))
}

#[tokio::test]
async fn only_a_named_front_end_certificate_may_state_the_client_address() {
    let ca = TestCa::new("front-end trust CA");
    let server = GrpcServer::builder()
        .options(ServerOptions {
            tls: Some(ca.server_tls().with_client_ca(ca.cert_pem())),
            frontends: FrontendTrust {
                addrs: Vec::new(),
                names: vec!["web".into()],
            },
            ..ServerOptions::default()
        })
        .start(fast_auth())
        .await;
    let addr = server.addr().to_string();

    // The named front end: its claim is kept.
    let mut web = client(
        &addr,
        ca.client_tls_config_as(PeerIdentity::Client("web".into())),
    )
    .await
    .expect("the front end connects");
    assert_eq!(
        recorded_ip(&mut web, "alice", PW, "203.0.113.7").await,
        "203.0.113.7"
    );

    // No certificate, or a certificate with another name: the connection's address.
    let mut anonymous = client(&addr, ca.client_tls_config())
        .await
        .expect("connects");
    assert_eq!(
        recorded_ip(&mut anonymous, "bob", PW, "203.0.113.8").await,
        "127.0.0.1"
    );
    let mut other = client(
        &addr,
        ca.client_tls_config_as(PeerIdentity::Client("other".into())),
    )
    .await
    .expect("connects");
    assert_eq!(
        recorded_ip(&mut other, "carol", PW, "203.0.113.9").await,
        "127.0.0.1"
    );
    // A node's certificate is not a front end's either.
    let mut node = client(&addr, ca.client_tls_config_as(PeerIdentity::Node(1)))
        .await
        .expect("connects");
    assert_eq!(
        recorded_ip(&mut node, "dave", PW, "203.0.113.10").await,
        "127.0.0.1"
    );

    // A "web" certificate from a foreign CA does not even complete the handshake.
    let foreign = TestCa::new("foreign CA");
    let forged = foreign.client_tls_config_as(PeerIdentity::Client("web".into()));
    let forged = forged.ca_certificate(tonic::transport::Certificate::from_pem(ca.cert_pem()));
    match client(&addr, forged).await {
        Err(_) => {}
        Ok(mut c) => {
            let r = c
                .verify(VerifyRequest {
                    access_token: "x".into(),
                })
                .await;
            let s = r.expect_err("a foreign certificate must not be served");
            assert!(
                s.metadata().get("auth-error-code").is_none(),
                "the call reached the service: {s:?}"
            );
        }
    }
    server.stop().await;
}
