//! Property-based fuzzing of `AuthService`, through a real server on 127.0.0.1: every
//! request message of every RPC with proptest-made fields (strings of any kind, huge,
//! unicode and control characters, real tokens mutated, optional `ClientInfo`, bearer
//! metadata), and raw bytes as the protobuf body of every method (sent with a codec
//! that passes `Vec<u8>` through).
//!
//! Each target runs `PROPTEST_CASES` cases (default 10 000) from a fixed seed; a
//! failure names the seed and the smallest input. `FUZZ_SEED=<64 hex digits>` explores
//! elsewhere.
//!
//! Every answer must be: a response, or a status that carries `auth-error-code` with a
//! code from [`AuthError::CODES`] (never one that means the server failed: `internal`,
//! `invalid_config`, `unavailable`, `stopped`) and exactly the public message of that
//! error; or one of tonic's own transport statuses, which carry no code:
//! `OUT_OF_RANGE` for a message over the size limit and, for raw bodies only,
//! `INTERNAL` "failed to decode Protobuf message" for bytes that are not the
//! request message (gRPC's status-code table prescribes INTERNAL for an unparsable
//! request). The server stays healthy throughout.

use std::cell::{Cell, RefCell};

use auth_backend::status::{CODE_KEY, RETRY_AFTER_KEY, from_status};
use auth_core::AuthError;
use auth_proto::prost::Message;
use auth_proto::v1 as pb;
use auth_proto::v1::auth_service_client::AuthServiceClient;
use auth_testing::GrpcServer;
use auth_testing::RawCodec;
use auth_testing::fuzz::{Edit, edits, mutate};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tokio::runtime::Runtime;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The fixed seed of every target (each target adds its number to the last byte).
const SEED: [u8; 32] = *b"auth-backend fuzz seed, issue 8.";

/// The fixture user's password.
const PW: &str = "fuzzing horse battery";

/// Auth codes that mean the server itself failed: never an answer to bad input.
const SERVER_FAILURES: &[&str] = &["internal", "invalid_config", "unavailable", "stopped"];

/// Every method of `AuthService`.
const METHODS: [&str; 10] = [
    "Register",
    "Login",
    "Verify",
    "Refresh",
    "Logout",
    "LogoutAll",
    "ChangePassword",
    "DeleteUser",
    "ListSessions",
    "RevokeSession",
];

// ---------------------------------------------------------------------------------
// Running a target (as in auth-web's tests/fuzz.rs)
// ---------------------------------------------------------------------------------

/// Runs one target from [`SEED`] (see `auth_testing::fuzz::run`).
fn fuzz<S: Strategy>(
    name: &str,
    target: u8,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    auth_testing::fuzz::run(name, SEED, target, strategy, test)
}

/// Fails the case with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($msg)+)));
        }
    };
}

// ---------------------------------------------------------------------------------
// Mutations and generators
// ---------------------------------------------------------------------------------

/// A value the fixture holds.
#[derive(Debug, Clone, Copy)]
enum Secret {
    Access,
    Refresh,
    SessionId,
    Username,
    Password,
}

/// A string field.
#[derive(Debug, Clone)]
enum Text {
    Empty,
    Any(String),
    Real(Secret),
    /// A real value with its bytes edited (then made UTF-8, as protobuf strings are).
    Mutated(Secret, Vec<Edit>),
    /// `count` copies of one character (past the 64 KiB request limit at the top).
    Huge(char, usize),
}

fn secret() -> impl Strategy<Value = Secret> {
    prop::sample::select(vec![
        Secret::Access,
        Secret::Refresh,
        Secret::SessionId,
        Secret::Username,
        Secret::Password,
    ])
}

/// Boxed, as are the other composite strategies: the value trees of nested unions are
/// large enough in debug builds to overflow a test thread's stack.
fn text() -> BoxedStrategy<Text> {
    prop_oneof![
        1 => Just(Text::Empty),
        4 => prop_oneof![
            prop::collection::vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect()),
            "[a-zA-Z0-9_.@+ -]{0,40}",
            prop::collection::vec(0u8..0x20, 0..20)
                .prop_map(|b| String::from_utf8(b).expect("ASCII")),
        ]
        .prop_map(Text::Any),
        2 => secret().prop_map(Text::Real),
        4 => (secret(), edits()).prop_map(|(s, e)| Text::Mutated(s, e)),
        1 => (any::<char>(), 1usize..40_000).prop_map(|(c, n)| Text::Huge(c, n)),
    ]
    .boxed()
}

fn client_info() -> BoxedStrategy<Option<pb::ClientInfo>> {
    let any = prop_oneof![
        Just(String::new()),
        "[0-9a-f:.]{0,45}",
        prop::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
    ];
    prop::option::weighted(
        0.6,
        (any.clone(), any).prop_map(|(user_agent, ip)| pb::ClientInfo { user_agent, ip }),
    )
    .boxed()
}

/// One typed call: the RPC, its fields, and an optional `authorization: Bearer` value.
#[derive(Debug, Clone)]
enum Rpc {
    Register(Text, Text, Option<pb::ClientInfo>),
    Login(Text, Text, Option<pb::ClientInfo>),
    Verify(Text),
    Refresh(Text, Option<pb::ClientInfo>),
    Logout(Text, Text),
    LogoutAll(Text),
    ChangePassword(Text, Text, Text, Option<pb::ClientInfo>),
    DeleteUser(Text, Text),
    ListSessions(Text),
    RevokeSession(Text, Text),
}

fn rpc() -> BoxedStrategy<Rpc> {
    prop_oneof![
        (text(), text(), client_info()).prop_map(|(u, p, c)| Rpc::Register(u, p, c)),
        (text(), text(), client_info()).prop_map(|(u, p, c)| Rpc::Login(u, p, c)),
        text().prop_map(Rpc::Verify),
        (text(), client_info()).prop_map(|(t, c)| Rpc::Refresh(t, c)),
        (text(), text()).prop_map(|(a, r)| Rpc::Logout(a, r)),
        text().prop_map(Rpc::LogoutAll),
        (text(), text(), text(), client_info())
            .prop_map(|(a, c, n, i)| Rpc::ChangePassword(a, c, n, i)),
        (text(), text()).prop_map(|(a, p)| Rpc::DeleteUser(a, p)),
        text().prop_map(Rpc::ListSessions),
        (text(), text()).prop_map(|(a, s)| Rpc::RevokeSession(a, s)),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------
// The server and its fixture user
// ---------------------------------------------------------------------------------

/// The fixture user's live session.
#[derive(Debug, Clone, Default)]
struct Account {
    username: String,
    access: String,
    refresh: String,
    session_id: String,
}

/// A real `AuthService` on 127.0.0.1 over an embedded `Auth`, a client, and a
/// signed-in fixture user.
struct Backend {
    rt: Runtime,
    /// Kept for its lifetime: dropping it stops the server.
    _server: GrpcServer,
    channel: Channel,
    account: RefCell<Account>,
    users: Cell<u32>,
}

impl Backend {
    fn new() -> Self {
        // The server's tasks run on worker threads, as in `auth-backend serve`.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (server, channel) = rt.block_on(async {
            let server = GrpcServer::start(auth_testing::fast_auth()).await;
            let channel = Channel::from_shared(server.url())
                .expect("url")
                .connect()
                .await
                .expect("connect");
            (server, channel)
        });
        let backend = Self {
            rt,
            _server: server,
            channel,
            account: RefCell::new(Account::default()),
            users: Cell::new(0),
        };
        backend.rt.block_on(backend.renew());
        backend
    }

    fn client(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    fn account(&self) -> Account {
        self.account.borrow().clone()
    }

    /// The fixture's value of `secret`.
    fn secret(&self, secret: Secret) -> String {
        let a = self.account();
        match secret {
            Secret::Access => a.access,
            Secret::Refresh => a.refresh,
            Secret::SessionId => a.session_id,
            Secret::Username => a.username,
            Secret::Password => PW.into(),
        }
    }

    fn text(&self, t: &Text) -> String {
        match t {
            Text::Empty => String::new(),
            Text::Any(s) => s.clone(),
            Text::Real(s) => self.secret(*s),
            Text::Mutated(s, e) => {
                String::from_utf8_lossy(&mutate(self.secret(*s).as_bytes(), e)).into_owned()
            }
            Text::Huge(c, n) => std::iter::repeat_n(*c, *n).collect(),
        }
    }

    /// Signs the fixture user in afresh (ending the old session), or a new user when
    /// the old one can no longer log in.
    async fn renew(&self) {
        let mut client = self.client();
        let old = self.account();
        if !old.access.is_empty() {
            let req = pb::LogoutRequest {
                access_token: old.access.clone(),
                ..Default::default()
            };
            let _ = client.logout(req).await;
        }
        let login = |username: &str| pb::LoginRequest {
            username: username.to_owned(),
            password: PW.into(),
            client: None,
        };
        let mut username = old.username;
        let mut resp = Err(Status::not_found("no fixture user yet"));
        if !username.is_empty() {
            resp = client.login(login(&username)).await;
        }
        // A case may have registered the next name already (a mutated username).
        for _ in 0..1_000 {
            if resp.is_ok() {
                break;
            }
            self.users.set(self.users.get() + 1);
            username = format!("fuzzer{}", self.users.get());
            let req = pb::RegisterRequest {
                username: username.clone(),
                password: PW.into(),
                client: None,
            };
            match client.register(req).await {
                Ok(_) => resp = client.login(login(&username)).await,
                Err(s) if s.code() == Code::AlreadyExists => {}
                Err(s) => panic!("register fixture: {s:?}"),
            }
        }
        let tokens = resp
            .expect("fixture login")
            .into_inner()
            .tokens
            .expect("tokens");
        *self.account.borrow_mut() = Account {
            username,
            access: tokens.access_token,
            refresh: tokens.refresh_token,
            session_id: tokens.session_id,
        };
    }

    /// After a case that sent `sent`: renews the fixture if the case may have spent its
    /// refresh token, ended its session or changed its password.
    async fn settle(&self, sent: &[u8]) {
        let a = self.account();
        let secrets = [&a.access, &a.refresh, &a.session_id, PW];
        if !secrets.iter().any(|s| contains(sent, s)) {
            return;
        }
        let req = pb::VerifyRequest {
            access_token: a.access.clone(),
        };
        let live = self.client().verify(req).await.is_ok();
        if !live || contains(sent, &a.refresh) {
            self.renew().await;
        }
    }

    /// Sends `rpc` (with `bearer` as `authorization` metadata, when it can be one).
    async fn call(&self, rpc: &Rpc, bearer: Option<&Text>) -> (Vec<u8>, Result<(), Status>) {
        let t = |x: &Text| self.text(x);
        let bearer = bearer.map(t);
        let mut sent = bearer.clone().unwrap_or_default().into_bytes();
        let mut client = self.client();
        macro_rules! send {
            ($method:ident, $msg:expr) => {{
                let msg = $msg;
                sent.extend(msg.encode_to_vec());
                let mut req = Request::new(msg);
                if let Some(b) = &bearer
                    && let Ok(v) = MetadataValue::try_from(format!("Bearer {b}"))
                {
                    req.metadata_mut().insert("authorization", v);
                }
                client.$method(req).await.map(|_| ())
            }};
        }
        let result = match rpc {
            Rpc::Register(u, p, c) => send!(
                register,
                pb::RegisterRequest {
                    username: t(u),
                    password: t(p),
                    client: c.clone(),
                }
            ),
            Rpc::Login(u, p, c) => send!(
                login,
                pb::LoginRequest {
                    username: t(u),
                    password: t(p),
                    client: c.clone(),
                }
            ),
            Rpc::Verify(a) => send!(verify, pb::VerifyRequest { access_token: t(a) }),
            Rpc::Refresh(r, c) => send!(
                refresh,
                pb::RefreshRequest {
                    refresh_token: t(r),
                    client: c.clone(),
                }
            ),
            Rpc::Logout(a, r) => send!(
                logout,
                pb::LogoutRequest {
                    access_token: t(a),
                    refresh_token: t(r),
                    client: None,
                }
            ),
            Rpc::LogoutAll(a) => send!(
                logout_all,
                pb::LogoutAllRequest {
                    access_token: t(a),
                    client: None,
                }
            ),
            Rpc::ChangePassword(a, c, n, i) => send!(
                change_password,
                pb::ChangePasswordRequest {
                    access_token: t(a),
                    current_password: t(c),
                    new_password: t(n),
                    client: i.clone(),
                }
            ),
            Rpc::DeleteUser(a, p) => send!(
                delete_user,
                pb::DeleteUserRequest {
                    access_token: t(a),
                    password: t(p),
                    client: None,
                }
            ),
            Rpc::ListSessions(a) => {
                send!(
                    list_sessions,
                    pb::ListSessionsRequest { access_token: t(a) }
                )
            }
            Rpc::RevokeSession(a, s) => send!(
                revoke_session,
                pb::RevokeSessionRequest {
                    access_token: t(a),
                    session_id: t(s),
                    client: None,
                }
            ),
        };
        (sent, result)
    }

    /// Sends `body` as the message of `method`, unparsed.
    async fn call_raw(&self, method: &str, body: Vec<u8>) -> Result<(), Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
        let path = format!("/auth.v1.AuthService/{method}")
            .parse()
            .expect("method path");
        grpc.unary(Request::new(body), path, RawCodec)
            .await
            .map(|_| ())
    }

    /// Whether gRPC health says `AuthService` is serving.
    fn healthy(&self) -> bool {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        self.rt.block_on(async {
            let req = HealthCheckRequest {
                service: "auth.v1.AuthService".into(),
            };
            let resp = HealthClient::new(self.channel.clone()).check(req).await;
            resp.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
        })
    }
}

/// True if `needle` (non-empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

/// What every failed call must look like (see the module docs); `raw` allows tonic's
/// status for a body that is not the request message.
fn check_status(status: &Status, raw: bool) -> Result<(), TestCaseError> {
    let message = status.message();
    let Some(code) = status.metadata().get(CODE_KEY) else {
        let too_large = status.code() == Code::OutOfRange
            && message.starts_with("Error, decoded message length too large");
        // Metadata over the server's header-list limit (hyper's 431).
        let headers_too_large =
            status.code() == Code::Unknown && message.ends_with("HTTP status code 431");
        let undecodable = raw
            && status.code() == Code::Internal
            && message.starts_with("failed to decode Protobuf message");
        ensure!(
            too_large || headers_too_large || undecodable,
            "{:?} without {CODE_KEY}: {message}",
            status.code()
        );
        return Ok(());
    };
    let code = code.to_str().unwrap_or("<not ASCII>");
    ensure!(AuthError::CODES.contains(&code), "unknown code {code:?}");
    ensure!(
        !SERVER_FAILURES.contains(&code),
        "the server failed on bad input: {code}: {message}"
    );
    ensure!(
        code != "overloaded" || status.metadata().contains_key(RETRY_AFTER_KEY),
        "overloaded without {RETRY_AFTER_KEY}"
    );
    let public = from_status(status).public_message().into_owned();
    ensure!(
        message == public,
        "{code}: message {message:?} is not the public one {public:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------

/// Every RPC with fields of every kind, and sometimes bearer metadata.
#[test]
fn typed_requests() {
    let backend = Backend::new();
    // Bearer metadata stays under the server's header-list limit: past it, h2 may
    // close the whole connection (a transport matter, not the service's), and the
    // next case would fail on the dead connection.
    let bearer = text().prop_filter("metadata under the header limit", |t| {
        !matches!(t, Text::Huge(..))
    });
    let strategy = (rpc(), prop::option::weighted(0.2, bearer));
    fuzz("typed_requests", 1, strategy, |(rpc, bearer)| {
        backend.rt.block_on(async {
            let (sent, result) = backend.call(&rpc, bearer.as_ref()).await;
            let checked = match &result {
                Ok(()) => Ok(()),
                Err(status) => check_status(status, false),
            };
            backend.settle(&sent).await;
            checked
        })
    });
    assert!(backend.healthy(), "AuthService serving after the run");
}

/// A raw protobuf body.
#[derive(Debug, Clone)]
enum RawBody {
    Arbitrary(Vec<u8>),
    /// A typed request, encoded, then edited byte by byte.
    Mutated(Rpc, Vec<Edit>),
    /// Protobuf fields of every wire type and number, well framed.
    Fields(Vec<(u32, u8, Vec<u8>)>),
    Huge(usize),
}

fn raw_body() -> BoxedStrategy<RawBody> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..200).prop_map(RawBody::Arbitrary),
        4 => (rpc(), edits()).prop_map(|(r, e)| RawBody::Mutated(r, e)),
        3 => prop::collection::vec(
            (1u32..20, 0u8..8, prop::collection::vec(any::<u8>(), 0..20)),
            0..6
        )
        .prop_map(RawBody::Fields),
        1 => (60_000usize..70_000).prop_map(RawBody::Huge),
    ]
    .boxed()
}

/// Appends `v` as a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Raw bytes as the message of every method.
#[test]
fn raw_bodies() {
    let backend = Backend::new();
    let strategy = (prop::sample::select(METHODS.to_vec()), raw_body());
    fuzz("raw_bodies", 2, strategy, |(method, body)| {
        backend.rt.block_on(async {
            let bytes = match &body {
                RawBody::Arbitrary(b) => b.clone(),
                RawBody::Mutated(rpc, e) => {
                    // The typed encoding of the request, as `call` would send it.
                    let encoded = encode(&backend, rpc);
                    mutate(&encoded, e)
                }
                RawBody::Fields(fields) => {
                    let mut out = Vec::new();
                    for (number, wire, payload) in fields {
                        varint(&mut out, u64::from(number << 3 | u32::from(*wire)));
                        match wire {
                            0 => varint(&mut out, payload.len() as u64),
                            2 => {
                                varint(&mut out, payload.len() as u64);
                                out.extend_from_slice(payload);
                            }
                            _ => out.extend_from_slice(payload),
                        }
                    }
                    out
                }
                RawBody::Huge(n) => {
                    let mut out = Vec::new();
                    varint(&mut out, 1 << 3 | 2);
                    varint(&mut out, *n as u64);
                    out.resize(out.len() + n, b'a');
                    out
                }
            };
            let result = backend.call_raw(method, bytes.clone()).await;
            let checked = match &result {
                Ok(()) => Ok(()),
                Err(status) => check_status(status, true),
            };
            backend.settle(&bytes).await;
            checked
        })
    });
    assert!(backend.healthy(), "AuthService serving after the run");
}

/// `rpc`'s request message, encoded.
fn encode(backend: &Backend, rpc: &Rpc) -> Vec<u8> {
    let t = |x: &Text| backend.text(x);
    match rpc {
        Rpc::Register(u, p, c) => pb::RegisterRequest {
            username: t(u),
            password: t(p),
            client: c.clone(),
        }
        .encode_to_vec(),
        Rpc::Login(u, p, c) => pb::LoginRequest {
            username: t(u),
            password: t(p),
            client: c.clone(),
        }
        .encode_to_vec(),
        Rpc::Verify(a) | Rpc::LogoutAll(a) | Rpc::ListSessions(a) => {
            pb::VerifyRequest { access_token: t(a) }.encode_to_vec()
        }
        Rpc::Refresh(r, c) => pb::RefreshRequest {
            refresh_token: t(r),
            client: c.clone(),
        }
        .encode_to_vec(),
        Rpc::Logout(a, r) => pb::LogoutRequest {
            access_token: t(a),
            refresh_token: t(r),
            client: None,
        }
        .encode_to_vec(),
        Rpc::ChangePassword(a, c, n, i) => pb::ChangePasswordRequest {
            access_token: t(a),
            current_password: t(c),
            new_password: t(n),
            client: i.clone(),
        }
        .encode_to_vec(),
        Rpc::DeleteUser(a, p) | Rpc::RevokeSession(a, p) => pb::DeleteUserRequest {
            access_token: t(a),
            password: t(p),
            client: None,
        }
        .encode_to_vec(),
    }
}
