//! Generates the Rust types and tonic stubs from `proto/`, with a vendored protoc.

use std::path::PathBuf;

/// Messages that carry secrets get a hand-written, redacting `Debug` in `src/redact.rs`.
const REDACTED: &[&str] = &[
    "auth.v1.User",
    "auth.v1.Session",
    "auth.v1.TokenPair",
    "auth.v1.RegisterRequest",
    "auth.v1.LoginRequest",
    "auth.v1.VerifyRequest",
    "auth.v1.RefreshRequest",
    "auth.v1.LogoutRequest",
    "auth.v1.LogoutAllRequest",
    "auth.v1.ChangePasswordRequest",
    "auth.v1.DeleteUserRequest",
    "auth.v1.ListSessionsRequest",
    "auth.v1.RevokeSessionRequest",
    "auth.v1.RotateRefreshCommand",
    "auth.v1.Challenge",
    "auth.v1.LoginResponse",
    "auth.v1.LoginMfaRequest",
    "auth.v1.MfaStatusRequest",
    "auth.v1.TotpEnrollRequest",
    "auth.v1.TotpEnrollResponse",
    "auth.v1.TotpConfirmRequest",
    "auth.v1.TotpConfirmResponse",
    "auth.v1.TotpDisableRequest",
    "auth.v1.RegenerateRecoveryCodesRequest",
    "auth.v1.RegenerateRecoveryCodesResponse",
    "auth.v1.PasskeyCeremony",
    "auth.v1.PasskeyRegisterStartRequest",
    "auth.v1.PasskeyRegisterFinishRequest",
    "auth.v1.PasskeyRegisterFinishResponse",
    "auth.v1.PasskeyLoginStartRequest",
    "auth.v1.PasskeyLoginFinishRequest",
    "auth.v1.PasskeyRenameRequest",
    "auth.v1.PasskeyRemoveRequest",
    "auth.v1.AdminListUsersRequest",
    "auth.v1.AdminUserRequest",
    "auth.v1.AdminRoleRequest",
    "auth.v1.BackupChunk",
    "auth.v1.AdminClusterRequest",
    "auth.v1.AdminRecentEventsRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files = [
        "auth/v1/models.proto",
        "auth/v1/auth.proto",
        "auth/v1/raft.proto",
    ]
    .map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // The list, for the test that every message with a secret field is on it.
    std::fs::write(out.join("redacted_list.rs"), format!("&{REDACTED:?}"))?;
    let descriptor = out.join("auth_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptor)
        .skip_debug(REDACTED.iter().copied())
        .compile_protos(&files, &[root])?;
    Ok(())
}
