use std::path::{Path, PathBuf};
use std::time::Duration;

use auth_core::{Config, HashParams};
use auth_raft::{RaftConfig, ReadConsistency};
use clap::Parser;

use auth_raft::pki::{CertAuthority, CertRequest};
use auth_raft::tls::{PeerIdentity, write_private_file};

use super::*;
use crate::server::{DEFAULT_MAX_REQUEST_BYTES, ServerOptions};

fn args(list: &[&str]) -> Settings {
    let mut argv = vec!["auth-backend", "serve"];
    argv.extend_from_slice(list);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Serve(a) => a,
        Command::Cluster(_)
        | Command::Certs(_)
        | Command::Keys(_)
        | Command::BootstrapAdmin(_)
        | Command::Restore(_) => unreachable!("serve was parsed"),
    }
}

/// Flags, then the `--config` file, then the checks, as `main_serve` does.
fn resolve(s: Settings) -> Result<Settings, ConfigError> {
    let s = s.load()?;
    s.check()?;
    Ok(s)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("auth-backend-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    for bad in [
        "",
        "m",
        "-5s",
        "1.5h",
        "10y",
        "99999999999999999999",
        "18446744073709551615d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn defaults_without_flags_or_file_are_the_libraries() {
    let s = resolve(args(&[])).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.listen(), "127.0.0.1:50051");
    assert_eq!(s.storage(), StorageKind::Memory);
    assert_eq!(s.log_format(), LogFormat::Text);
    assert_eq!(s.shutdown_timeout(), DEFAULT_SHUTDOWN_TIMEOUT);
    assert!(s.raft_config().unwrap().is_none());
    let opts = s.server_options();
    let d = ServerOptions::default();
    assert_eq!(opts.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    assert_eq!(
        opts.concurrency_per_connection,
        d.concurrency_per_connection
    );
    let core = s.auth_config().unwrap();
    let d = Config::default();
    assert_eq!(core.hash, HashParams::default());
    assert_eq!(core.access_token_ttl, d.access_token_ttl);
    assert_eq!(core.refresh_token_ttl, d.refresh_token_ttl);
    assert_eq!(core.session_max_lifetime, d.session_max_lifetime);
    assert_eq!((core.issuer, core.audience), (d.issuer, d.audience));
    assert_eq!(core.lockout, d.lockout);
}

#[test]
fn raft_defaults_are_the_libraries() {
    let s = Settings {
        storage: Some(StorageKind::Raft),
        raft: RaftSettings {
            id: Some(1),
            peers: Some("1=127.0.0.1:50052".into()),
            data_dir: Some("/tmp/x".into()),
            peer_listen: Some("127.0.0.1:50052".into()),
            ..RaftSettings::default()
        },
        tls: TlsSettings {
            insecure: Some(true),
            ..TlsSettings::default()
        },
        ..Settings::default()
    };
    let rc = s.raft_config().unwrap().unwrap();
    let d = RaftConfig::new(1, "127.0.0.1:50052", "/tmp/x");
    assert_eq!(rc.max_snapshot_bytes, d.max_snapshot_bytes);
    assert!(rc.tls.is_none());
    assert_eq!(rc.addr, d.addr);
    assert_eq!(rc.cluster_id, d.cluster_id);
    assert_eq!(rc.snapshot_every, d.snapshot_every);
    assert_eq!(rc.logs_to_keep, d.logs_to_keep);
    assert_eq!(rc.read_consistency, d.read_consistency);
    assert_eq!(rc.initial_members.len(), 1);
    assert_eq!(rc.max_clock_skew, d.max_clock_skew);

    // --max-clock-skew sets the bound; 0 turns it off.
    let mut s = s;
    s.raft.max_clock_skew = Some(Duration::from_millis(500));
    let rc = s.raft_config().unwrap().unwrap();
    assert_eq!(rc.max_clock_skew, Some(Duration::from_millis(500)));
    s.raft.max_clock_skew = Some(Duration::ZERO);
    assert_eq!(s.raft_config().unwrap().unwrap().max_clock_skew, None);
}

#[test]
fn throttling_and_trusted_front_ends_come_from_flags() {
    let s = args(&[]);
    let c = s.auth_config().unwrap();
    assert_eq!(c.throttle, auth_core::ThrottlePolicy::default());
    assert!(s.frontend_trust().addrs.is_empty() && s.frontend_trust().names.is_empty());
    let s = args(&[
        "--throttle",
        "false",
        "--trusted-frontends",
        "10.0.0.7, web ,::1",
    ]);
    assert_eq!(
        s.auth_config().unwrap().throttle,
        auth_core::ThrottlePolicy::disabled()
    );
    let t = s.frontend_trust();
    assert_eq!(
        t.addrs,
        vec![
            "10.0.0.7".parse::<std::net::IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert_eq!(t.names, vec!["web".to_owned()]);
    assert_eq!(s.server_options().frontends.names, vec!["web".to_owned()]);
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let file = Settings::parse(
        r#"
        listen = "0.0.0.0:7000"
        max_request_bytes = 2048
        log_format = "json"
        shutdown_timeout = 5
        [tokens]
        access_token_ttl = "5m"
        refresh_token_ttl = 3600
        issuer = "file-iss"
        [argon2]
        memory_kib = 128
        iterations = 3
        [lockout]
        max_failures = 9
        "#,
    )
    .unwrap();
    let a = args(&[
        "--listen",
        "127.0.0.1:0",
        "--argon2-iterations",
        "1",
        "--audience",
        "flag-aud",
        "--lockout-max-failures",
        "0",
    ]);
    let s = a.merge(file);
    s.check().unwrap();
    assert_eq!(s.listen(), "127.0.0.1:0");
    assert_eq!(s.log_format(), LogFormat::Json);
    assert_eq!(s.shutdown_timeout(), Duration::from_secs(5));
    assert_eq!(s.server_options().max_request_bytes, 2048);
    let core = s.auth_config().unwrap();
    assert_eq!(core.access_token_ttl, Duration::from_secs(300));
    assert_eq!(core.refresh_token_ttl, Duration::from_secs(3600));
    assert_eq!(
        core.session_max_lifetime,
        Config::default().session_max_lifetime
    );
    assert_eq!(core.issuer, "file-iss");
    assert_eq!(core.audience, "flag-aud");
    assert_eq!(core.lockout.max_failures, 0);
    assert_eq!(
        core.hash,
        HashParams {
            memory_kib: 128,
            iterations: 1,
            parallelism: HashParams::default().parallelism,
        }
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let e = Settings::parse("listen = \"x:1\"\nlisten_addr = \"y:2\"\n").unwrap_err();
    assert!(e.contains("listen_addr"), "{e}");
    let e = Settings::parse("[argon2]\nmemory = 5\n").unwrap_err();
    assert!(e.contains("memory"), "{e}");
    let e = Settings::parse("[tls]\ncert_file = \"a.pem\"\n").unwrap_err();
    assert!(e.contains("cert_file"), "{e}");
    let e = Settings::parse("[argon3]\nmemory_kib = 5\n").unwrap_err();
    assert!(e.contains("argon3"), "{e}");
    // Token settings live in [tokens], the flag path only on the command line.
    let e = Settings::parse("issuer = \"x\"\n").unwrap_err();
    assert!(e.contains("issuer"), "{e}");
    let e = Settings::parse("config = \"other.toml\"\n").unwrap_err();
    assert!(e.contains("config"), "{e}");
    let e = Settings::parse("[tokens]\naccess_token_ttl = \"soon\"\n").unwrap_err();
    assert!(e.contains("invalid duration"), "{e}");
    let e = Settings::parse("storage = \"disk\"\n").unwrap_err();
    assert!(e.contains("disk"), "{e}");
}

#[test]
fn the_documented_file_parses() {
    let src = include_str!("mod.rs");
    let start = src.find("//! ```toml\n").expect("a toml example") + "//! ```toml\n".len();
    let len = src[start..].find("//! ```\n").expect("end of the example");
    let text: String = src[start..start + len]
        .lines()
        .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
        .map(|l| format!("{l}\n"))
        .collect();
    let s = Settings::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Every group is set, so a key in the wrong table would have failed above.
    assert_eq!(s.storage(), StorageKind::Raft);
    assert_eq!(s.max_connections, Some(10_000));
    assert_eq!(s.tokens.signing_key_id.as_deref(), Some("2024-06"));
    assert_eq!(s.mfa.totp_issuer.as_deref(), Some("Example"));
    assert_eq!(s.mfa.passkey_rp_id.as_deref(), Some("example.com"));
    assert_eq!(s.argon2, HashParams::default().into());
    assert_eq!(s.lockout.max_failures, Some(5));
    assert_eq!(s.raft.max_snapshot_bytes, Some(64 << 20));
    assert_eq!(s.tls.insecure, Some(false));
    // The example's TLS files do not exist here: the error names the first one read.
    let e = s.check().unwrap_err().to_string();
    assert!(e.contains("peer.key"), "{e}");
    let mut without_files = s.clone();
    without_files.tls = TlsSettings {
        insecure: Some(true),
        ..TlsSettings::default()
    };
    let rc = without_files.raft_config().unwrap().unwrap();
    assert_eq!((rc.id, rc.addr.as_str()), (1, "10.0.0.1:50052"));
    assert_eq!(rc.cluster_id, "example-prod");
}

#[test]
fn raft_storage_needs_id_peers_and_data_dir() {
    let e = resolve(args(&["--storage", "raft"])).unwrap_err();
    assert!(e.to_string().contains("--id"), "{e}");
    let e = resolve(args(&[
        "--storage",
        "raft",
        "--id",
        "1",
        "--data-dir",
        "/tmp/x",
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("--peers"), "{e}");
    let e = resolve(args(&[
        "--storage",
        "raft",
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:50051",
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("--data-dir"), "{e}");
    // A flag can override the file's choice.
    let file = Settings::parse("storage = \"raft\"").unwrap();
    args(&["--storage", "memory"]).merge(file).check().unwrap();
    let ok = resolve(args(&[
        "--storage",
        "raft",
        "--id",
        "2",
        "--listen",
        "127.0.0.1:50061",
        "--peer-listen",
        "127.0.0.1:50062",
        "--insecure",
        "--signing-key-file",
        "/tmp/k",
        "--data-dir",
        "/tmp/x",
        "--peers",
        "1=127.0.0.1:50052,2=127.0.0.1:50062,3=127.0.0.1:50072",
        "--read-consistency",
        "local",
        "--snapshot-every",
        "50",
    ]))
    .unwrap();
    let r = ok.raft_config().unwrap().unwrap();
    assert_eq!(r.id, 2);
    assert_eq!(r.addr, "127.0.0.1:50062");
    assert_eq!(r.initial_members.len(), 3);
    assert_eq!(r.data_dir, Path::new("/tmp/x"));
    assert_eq!(r.read_consistency, ReadConsistency::Local);
    assert_eq!(r.snapshot_every, 50);
}

#[test]
fn read_modes_parse_and_linearizable_means_lease() {
    for (given, mode) in [
        ("lease", ReadConsistency::Lease),
        ("linearizable", ReadConsistency::Lease),
        ("read-index", ReadConsistency::ReadIndex),
        ("local", ReadConsistency::Local),
    ] {
        let ok = resolve(args(&[
            "--storage",
            "raft",
            "--id",
            "1",
            "--peer-listen",
            "127.0.0.1:50052",
            "--insecure",
            "--signing-key-file",
            "/tmp/k",
            "--data-dir",
            "/tmp/x",
            "--peers",
            "1=127.0.0.1:50052",
            "--read-consistency",
            given,
        ]))
        .unwrap();
        let r = ok.raft_config().unwrap().unwrap();
        assert_eq!(r.read_consistency, mode, "{given}");
    }
    assert!(
        Cli::try_parse_from(["auth-backend", "serve", "--read-consistency", "sometimes"]).is_err()
    );
    let file = Settings::parse("[raft]\nread_consistency = \"read-index\"").unwrap();
    assert_eq!(file.raft.read_consistency, Some(ReadMode::ReadIndex));
    let file = Settings::parse("[raft]\nread_consistency = \"linearizable\"").unwrap();
    assert_eq!(file.raft.read_consistency, Some(ReadMode::Lease));
}

#[test]
fn wrong_peer_lists_are_rejected() {
    let base = [
        "--storage",
        "raft",
        "--id",
        "2",
        "--listen",
        "127.0.0.1:50061",
        "--peer-listen",
        "127.0.0.1:50062",
        "--insecure",
        "--signing-key-file",
        "/tmp/k",
        "--data-dir",
        "/tmp/x",
    ];
    for (peers, why) in [
        (
            "1=127.0.0.1:50052,3=127.0.0.1:50072",
            "does not list this node",
        ),
        (
            "1=127.0.0.1:50052,2=127.0.0.1:59999",
            "its peer listener is",
        ),
        ("1=127.0.0.1:50052,1=127.0.0.1:50062", "twice"),
        ("0=127.0.0.1:50062,2=127.0.0.1:50062", "non-zero"),
        ("x=127.0.0.1:50062", "not a number"),
        ("2=nowhere", "host:port"),
        ("1=127.0.0.1:50062,2=127.0.0.1:50062", "share an address"),
        ("", "empty"),
    ] {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(["--peers", peers]);
        let e = resolve(args(&a)).unwrap_err();
        assert!(e.to_string().contains(why), "{peers}: {e}");
    }
    let mut a: Vec<&str> = base.to_vec();
    a[3] = "0";
    a.extend(["--peers", "1=127.0.0.1:50062"]);
    let e = resolve(args(&a)).unwrap_err();
    assert!(e.to_string().contains("--id must be non-zero"), "{e}");
    let e = resolve(args(&["--id", "1"])).unwrap_err();
    assert!(
        e.to_string().contains("only apply to --storage raft"),
        "{e}"
    );
}

#[test]
fn bad_values_are_rejected() {
    assert!(Cli::try_parse_from(["auth-backend", "serve", "--storage", "disk"]).is_err());
    assert!(Cli::try_parse_from(["auth-backend", "serve", "--access-token-ttl", "x"]).is_err());
    assert!(Cli::try_parse_from(["auth-backend", "serve", "--insecure=maybe"]).is_err());
    for bad in [
        &["--access-token-ttl", "0"][..],
        &["--argon2-memory-kib", "1"],
        &["--argon2-parallelism", "0"],
        &["--issuer", ""],
        &["--listen", " "],
        &["--max-request-bytes", "10"],
        &["--max-request-bytes", "4294967296"],
        &["--signing-key-id", "k1"],
    ] {
        let e = resolve(args(bad)).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid(_)), "{bad:?}: {e}");
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let e = resolve(args(&["--config", "/nonexistent/auth-backend.toml"])).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/auth-backend.toml"),
        "{e}"
    );
}

#[test]
fn signing_key_is_loaded_with_its_id_relative_to_the_config_file() {
    let dir = temp_dir("cfg");
    write_private_file(
        &dir.join("hs.key"),
        b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    )
    .unwrap();
    let conf = dir.join("backend.toml");
    std::fs::write(
        &conf,
        "[tokens]\nsigning_key_file = \"hs.key\"\nsigning_key_id = \"k-2024\"\n",
    )
    .unwrap();
    let s = resolve(args(&["--config", conf.to_str().unwrap()])).unwrap();
    let src = s.signing_key().unwrap().unwrap();
    assert_eq!(
        src,
        KeySource::File {
            path: dir.join("hs.key"),
            kid: "k-2024".into()
        }
    );
    let core = s.auth_config().unwrap();
    assert_eq!(core.keys.unwrap().current().kid(), "k-2024");

    // Without an id, the default id; a bad file is a configuration error.
    let s = resolve(args(&[
        "--signing-key-file",
        dir.join("hs.key").to_str().unwrap(),
    ]))
    .unwrap();
    assert!(matches!(
        s.signing_key().unwrap().unwrap(),
        KeySource::File { kid, .. } if kid == DEFAULT_KEY_ID
    ));
    assert!(s.auth_config().is_ok());
    write_private_file(&dir.join("short.key"), b"c2hvcnQ=").unwrap();
    let s = resolve(args(&[
        "--signing-key-file",
        dir.join("short.key").to_str().unwrap(),
    ]))
    .unwrap();
    assert!(matches!(s.auth_config(), Err(ConfigError::Invalid(_))));
    // A key others can read is refused, with the fix in the message.
    std::fs::write(
        dir.join("loose.key"),
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("loose.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let s = resolve(args(&[
            "--signing-key-file",
            dir.join("loose.key").to_str().unwrap(),
        ]))
        .unwrap();
        let e = s.auth_config().unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("loose.key"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_signing_key_means_a_generated_one_of_the_signing_alg() {
    let s = resolve(args(&[])).unwrap();
    assert!(s.signing_key().unwrap().is_none());
    let ring = s.auth_config().unwrap().keys.unwrap();
    assert_eq!(ring.current().algorithm(), auth_core::Algorithm::Hs256);
    assert!(ring.jwks().keys.is_empty());
    let s = resolve(args(&["--signing-alg", "eddsa"])).unwrap();
    let ring = s.auth_config().unwrap().keys.unwrap();
    assert_eq!(ring.current().algorithm(), auth_core::Algorithm::EdDsa);
    assert_eq!(ring.jwks().keys.len(), 1);
}

#[test]
fn a_key_directory_rotates_current_and_previous_keys() {
    let dir = temp_dir("keydir");
    let keys = auth_core::keys::KeyDir::new(dir.join("keys"));
    keys.generate(auth_core::Algorithm::EdDsa, Some("2026-01"))
        .unwrap();
    keys.generate(auth_core::Algorithm::EdDsa, Some("2026-02"))
        .unwrap();
    let key_dir = dir.join("keys");
    let key_dir = key_dir.to_str().unwrap();
    let in_dir = |extra: &[&str]| {
        resolve(args(&[&["--signing-key-dir", key_dir][..], extra].concat())).unwrap()
    };
    // Several keys: the signing one must be named; both verify (and are published).
    let s = in_dir(&[]);
    let e = s.auth_config().unwrap_err().to_string();
    assert!(
        e.contains("--signing-key-id") && e.contains("2026-02"),
        "{e}"
    );
    let s = in_dir(&["--signing-key-id", "2026-02"]);
    let ring = s.auth_config().unwrap().keys.unwrap();
    assert_eq!(ring.current().kid(), "2026-02");
    let kids: Vec<_> = ring.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["2026-02", "2026-01"]);
    // --signing-key-id pins the current key (step one of a rotation).
    let s = in_dir(&["--signing-key-id", "2026-01"]);
    assert_eq!(
        s.auth_config().unwrap().keys.unwrap().current().kid(),
        "2026-01"
    );
    // Unknown id, wrong algorithm, file and dir together: configuration errors.
    let s = in_dir(&["--signing-key-id", "2025-12"]);
    let e = s.auth_config().unwrap_err().to_string();
    assert!(e.contains("2025-12"), "{e}");
    let s = in_dir(&["--signing-key-id", "2026-02", "--signing-alg", "hs256"]);
    let e = s.auth_config().unwrap_err().to_string();
    assert!(e.contains("--signing-alg"), "{e}");
    assert!(
        Cli::try_parse_from([
            "auth-backend",
            "serve",
            "--signing-key-dir",
            key_dir,
            "--signing-key-file",
            "x"
        ])
        .is_err()
    );
    // A key file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.join("keys").join("2026-01.pem");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = in_dir(&["--signing-key-id", "2026-02"]);
        let e = s.auth_config().unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("2026-01.pem"), "{e}");
        // So is a directory others can write to (they could plant a key).
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let keys = dir.join("keys");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = s.auth_config().unwrap_err().to_string();
        assert!(e.contains("chmod go-w"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_and_connection_settings_round_trip_from_flags_and_the_file() {
    let flags = args(&[
        "--tls-cert",
        "/etc/auth/server.pem",
        "--tls-key",
        "/etc/auth/server.key",
        "--peer-listen",
        "0.0.0.0:50052",
        "--peer-cert-file",
        "/etc/auth/peer.pem",
        "--peer-key-file",
        "/etc/auth/peer.key",
        "--peer-trusted-ca-file",
        "/etc/auth/ca.pem",
        "--insecure",
        "--max-snapshot-bytes",
        "1048576",
        "--max-connections",
        "100",
        "--max-concurrent-streams",
        "8",
    ]);
    let expected = TlsSettings {
        cert: Some("/etc/auth/server.pem".into()),
        key: Some("/etc/auth/server.key".into()),
        peer_cert_file: Some("/etc/auth/peer.pem".into()),
        peer_key_file: Some("/etc/auth/peer.key".into()),
        peer_trusted_ca_file: Some("/etc/auth/ca.pem".into()),
        insecure: Some(true),
    };
    assert_eq!(flags.tls, expected);
    assert_eq!(flags.raft.peer_listen.as_deref(), Some("0.0.0.0:50052"));
    assert_eq!(flags.raft.max_snapshot_bytes, Some(1 << 20));
    assert_eq!(flags.max_connections, Some(100));
    assert_eq!(flags.max_concurrent_streams, Some(8));
    // Peer settings without Raft are a mistake, not silently ignored.
    let e = flags.check().unwrap_err().to_string();
    assert!(e.contains("only apply to --storage raft"), "{e}");
    assert_eq!(args(&["--insecure=false"]).tls.insecure, Some(false));
    assert_eq!(args(&[]).tls.insecure, None);

    // The same from a file: relative paths are relative to its directory.
    let dir = temp_dir("tls");
    let conf = dir.join("backend.toml");
    std::fs::write(
        &conf,
        r#"
        max_connections = 100
        max_concurrent_streams = 8
        [raft]
        peer_listen = "0.0.0.0:50052"
        max_snapshot_bytes = 1048576
        [tls]
        cert = "server.pem"
        key = "/etc/auth/server.key"
        peer_cert_file = "certs/peer.pem"
        peer_key_file = "certs/peer.key"
        peer_trusted_ca_file = "ca.pem"
        insecure = true
        "#,
    )
    .unwrap();
    let s = args(&["--config", conf.to_str().unwrap()]).load().unwrap();
    assert_eq!(
        s.tls,
        TlsSettings {
            cert: Some(dir.join("server.pem")),
            key: Some("/etc/auth/server.key".into()),
            peer_cert_file: Some(dir.join("certs/peer.pem")),
            peer_key_file: Some(dir.join("certs/peer.key")),
            peer_trusted_ca_file: Some(dir.join("ca.pem")),
            insecure: Some(true),
        }
    );
    assert_eq!(s.raft, flags.raft);
    assert_eq!(s.max_connections, flags.max_connections);
    assert_eq!(s.max_concurrent_streams, flags.max_concurrent_streams);

    // Flags win over the file, field by field.
    let s = args(&[
        "--config",
        conf.to_str().unwrap(),
        "--insecure=false",
        "--tls-cert",
        "/other.pem",
    ])
    .load()
    .unwrap();
    assert_eq!(s.tls.insecure, Some(false));
    assert_eq!(s.tls.cert, Some("/other.pem".into()));
    assert_eq!(s.tls.peer_trusted_ca_file, Some(dir.join("ca.pem")));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A CA and node certificates (and a signing key) in a fresh directory; the flags of
/// node `id` of a 3-node cluster that uses them.
fn tls_node_flags(dir: &Path, id: u64, cert_of: u64) -> Vec<String> {
    let ca = CertAuthority::generate("test", Duration::from_secs(3600)).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    ca.issue(&CertRequest::new(
        PeerIdentity::Node(cert_of),
        ["127.0.0.1"],
    ))
    .unwrap()
    .write(dir, "node")
    .unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    [
        "--storage",
        "raft",
        "--id",
        &id.to_string(),
        "--listen",
        "127.0.0.1:50061",
        "--peer-listen",
        "127.0.0.1:50062",
        "--peers",
        "1=127.0.0.1:50052,2=127.0.0.1:50062,3=127.0.0.1:50072",
        "--data-dir",
        &p("data"),
        "--signing-key-file",
        &p("signing.key"),
        "--peer-cert-file",
        &p("node.pem"),
        "--peer-key-file",
        &p("node.key"),
        "--peer-trusted-ca-file",
        &p("ca.pem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn raft_needs_mutual_tls_or_an_explicit_insecure_and_a_signing_key() {
    let dir = temp_dir("peer-tls");
    let flags = tls_node_flags(&dir, 2, 2);
    let parse = |extra: &[&str], drop: &[&str]| {
        let mut v: Vec<&str> = Vec::new();
        let mut skip = false;
        for f in &flags {
            if skip {
                skip = false;
                continue;
            }
            if drop.contains(&f.as_str()) {
                skip = true;
                continue;
            }
            v.push(f);
        }
        v.extend_from_slice(extra);
        resolve(args(&v))
    };
    let s = parse(&[], &[]).unwrap();
    let rc = s.raft_config().unwrap().unwrap();
    assert_eq!(
        rc.tls.as_ref().map(|t| t.identity().clone()),
        Some(PeerIdentity::Node(2))
    );
    let e = parse(&[], &["--peer-key-file"]).unwrap_err().to_string();
    assert!(e.contains("--insecure"), "{e}");
    let e = parse(&["--insecure"], &[]).unwrap_err().to_string();
    assert!(e.contains("contradicts"), "{e}");
    let e = parse(&[], &["--signing-key-file"]).unwrap_err().to_string();
    assert!(e.contains("signing key"), "{e}");
    let e = parse(&["--listen", "127.0.0.1:50062"], &["--listen"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("must differ"), "{e}");
    let e = parse(&["--tls-cert", "/x.pem"], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("go together"), "{e}");
    // Another node's certificate: refused, naming the file.
    let other = temp_dir("peer-tls-other");
    let mut v = tls_node_flags(&other, 2, 3);
    v.push("--insecure=false".into());
    let v: Vec<&str> = v.iter().map(String::as_str).collect();
    let e = resolve(args(&v)).unwrap_err().to_string();
    assert!(e.contains("node.pem") && e.contains("node 3"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn the_mfa_key_is_loaded_from_its_file_and_a_cluster_without_one_offers_no_totp() {
    let dir = temp_dir("mfa-key");
    write_private_file(
        &dir.join("mfa.key"),
        b"bWZhLWtleS1tZmEta2V5LW1mYS1rZXktbWZhLWtleSE=\n",
    )
    .unwrap();
    let conf = dir.join("backend.toml");
    std::fs::write(
        &conf,
        "[mfa]\nmfa_key_file = \"mfa.key\"\ntotp_issuer = \"Example Corp\"\n",
    )
    .unwrap();
    let s = resolve(args(&["--config", conf.to_str().unwrap()])).unwrap();
    assert_eq!(s.mfa.mfa_key_file, Some(dir.join("mfa.key")));
    let core = s.auth_config().unwrap();
    assert!(core.mfa.key.is_some() && core.mfa.totp_enabled);
    assert_eq!(core.mfa.totp_issuer, "Example Corp");

    // Memory without a key: a random one, TOTP on.
    let core = resolve(args(&[])).unwrap().auth_config().unwrap();
    assert!(core.mfa.key.is_none() && core.mfa.totp_enabled);

    // A short key, a key others can read, an issuer with ':' are refused.
    write_private_file(&dir.join("short.key"), b"c2hvcnQ=").unwrap();
    let s = resolve(args(&[
        "--mfa-key-file",
        dir.join("short.key").to_str().unwrap(),
    ]))
    .unwrap();
    let e = s.auth_config().unwrap_err().to_string();
    assert!(e.contains("short.key") && e.contains("32 bytes"), "{e}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::copy(dir.join("mfa.key"), dir.join("loose.key")).unwrap();
        std::fs::set_permissions(
            dir.join("loose.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let s = resolve(args(&[
            "--mfa-key-file",
            dir.join("loose.key").to_str().unwrap(),
        ]))
        .unwrap();
        let e = s.auth_config().unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("loose.key"), "{e}");
    }
    assert!(resolve(args(&["--totp-issuer", "a:b"])).is_err());
    // Passkeys: both settings or neither; a relying party that does not fit its origin.
    let core = resolve(args(&[
        "--passkey-rp-id",
        "localhost",
        "--passkey-origin",
        "http://localhost:8080",
    ]))
    .unwrap()
    .auth_config()
    .unwrap();
    assert_eq!(core.mfa.passkeys.unwrap().rp_id, "localhost");
    assert!(resolve(args(&["--passkey-rp-id", "example.com"])).is_err());
    assert!(
        resolve(args(&[
            "--passkey-rp-id",
            "example.com",
            "--passkey-origin",
            "https://evil.test"
        ]))
        .is_err()
    );

    // A Raft node without a key refuses enrolment instead of sealing secrets only it
    // can open.
    write_private_file(
        &dir.join("signing.key"),
        b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
    )
    .unwrap();
    let flags = tls_node_flags(&dir, 2, 2);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let core = resolve(args(&flags)).unwrap().auth_config().unwrap();
    assert!(!core.mfa.totp_enabled);
    let mut with_key = flags.clone();
    let key = dir.join("mfa.key");
    with_key.extend(["--mfa-key-file", key.to_str().unwrap()]);
    let core = resolve(args(&with_key)).unwrap().auth_config().unwrap();
    assert!(core.mfa.totp_enabled && core.mfa.key.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
