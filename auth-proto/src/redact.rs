//! Redacting `Debug` impls for messages that carry secrets.
//!
//! build.rs turns off prost's derived `Debug` for these messages; each impl below prints
//! every field except the secret ones, which show only whether they are set.

use std::fmt;

use crate::v1::*;

/// Shows whether a secret field is set, never its value.
struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "<redacted>" } else { "<empty>" })
    }
}

fn r(s: &str) -> Redacted {
    Redacted(!s.is_empty())
}

fn rb(b: &[u8]) -> Redacted {
    Redacted(!b.is_empty())
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("username_key", &self.username_key)
            .field("password_hash", &r(&self.password_hash))
            .field("created_at_ms", &self.created_at_ms)
            .field("updated_at_ms", &self.updated_at_ms)
            .field("version", &self.version)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until_ms", &self.locked_until_ms)
            .field("totp_sealed", &r(&self.totp_sealed))
            .field("totp_confirmed", &self.totp_confirmed)
            .field("totp_last_step", &self.totp_last_step)
            .field("recovery_code_hashes", &self.recovery_code_hashes.len())
            .field("passkeys", &self.passkeys)
            .finish()
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("state", &rb(&self.state))
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("refresh_hash", &rb(&self.refresh_hash))
            .field("retired_refresh_hashes", &self.retired_refresh_hashes.len())
            .field("sealed_successor", &rb(&self.sealed_successor))
            .field("rotated_at_ms", &self.rotated_at_ms)
            .field("created_at_ms", &self.created_at_ms)
            .field("last_used_at_ms", &self.last_used_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("absolute_expires_at_ms", &self.absolute_expires_at_ms)
            .field("user_agent", &self.user_agent)
            .field("ip", &self.ip)
            .field("generation", &self.generation)
            .field("username", &self.username)
            .field("amr", &self.amr)
            .finish()
    }
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &r(&self.access_token))
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("refresh_token", &r(&self.refresh_token))
            .field("refresh_expires_at_ms", &self.refresh_expires_at_ms)
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("username", &self.username)
            .field("password", &r(&self.password))
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &r(&self.password))
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("access_token", &r(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("refresh_token", &r(&self.refresh_token))
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutRequest")
            .field("access_token", &r(&self.access_token))
            .field("refresh_token", &r(&self.refresh_token))
            .finish()
    }
}

impl fmt::Debug for LogoutAllRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutAllRequest")
            .field("access_token", &r(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePasswordRequest")
            .field("access_token", &r(&self.access_token))
            .field("current_password", &r(&self.current_password))
            .field("new_password", &r(&self.new_password))
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for DeleteUserRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteUserRequest")
            .field("access_token", &r(&self.access_token))
            .field("password", &r(&self.password))
            .finish()
    }
}

impl fmt::Debug for ListSessionsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListSessionsRequest")
            .field("access_token", &r(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for RevokeSessionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeSessionRequest")
            .field("access_token", &r(&self.access_token))
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl fmt::Debug for RotateRefreshCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateRefreshCommand")
            .field("session_id", &self.session_id)
            .field("now_ms", &self.now_ms)
            .field("idle_ttl_ms", &self.idle_ttl_ms)
            .field("grace_ms", &self.grace_ms)
            .finish_non_exhaustive()
    }
}

/// `Debug` for a message: the `shown` fields as they are, the `hidden` ones (strings,
/// or lists of strings) only as set or empty.
macro_rules! redacted_debug {
    ($ty:ident { shown: [$($shown:ident),*], hidden: [$($hidden:ident),*] }) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($hidden), &Redacted(!self.$hidden.is_empty())))*
                    .finish()
            }
        }
    };
}

redacted_debug!(LoginResponse {
    shown: [user, tokens, mfa_required, mfa_methods],
    hidden: [mfa_ticket]
});
redacted_debug!(LoginMfaRequest {
    shown: [client],
    hidden: [mfa_ticket, code]
});
redacted_debug!(MfaStatusRequest {
    shown: [],
    hidden: [access_token]
});
redacted_debug!(TotpEnrollRequest {
    shown: [],
    hidden: [access_token]
});
redacted_debug!(TotpEnrollResponse {
    shown: [],
    hidden: [secret, otpauth_uri]
});
redacted_debug!(TotpConfirmRequest {
    shown: [client],
    hidden: [access_token, code]
});
redacted_debug!(TotpConfirmResponse {
    shown: [],
    hidden: [recovery_codes]
});
redacted_debug!(TotpDisableRequest {
    shown: [client],
    hidden: [access_token, code]
});
redacted_debug!(RegenerateRecoveryCodesRequest {
    shown: [client],
    hidden: [access_token, code]
});
redacted_debug!(RegenerateRecoveryCodesResponse {
    shown: [],
    hidden: [recovery_codes]
});
redacted_debug!(PasskeyCeremony {
    shown: [options_json],
    hidden: [ceremony_id]
});
redacted_debug!(PasskeyRegisterStartRequest {
    shown: [name],
    hidden: [access_token]
});
redacted_debug!(PasskeyRegisterFinishRequest {
    shown: [credential_json, client],
    hidden: [access_token, ceremony_id]
});
redacted_debug!(AdminListUsersRequest {
    shown: [query, page_token, page_size],
    hidden: [access_token]
});
redacted_debug!(AdminUserRequest {
    shown: [user, client],
    hidden: [access_token]
});
redacted_debug!(AdminRoleRequest {
    shown: [user, role, client],
    hidden: [access_token]
});
redacted_debug!(AdminClusterRequest {
    shown: [],
    hidden: [access_token]
});
redacted_debug!(AdminRecentEventsRequest {
    shown: [limit],
    hidden: [access_token]
});
redacted_debug!(PasskeyRegisterFinishResponse {
    shown: [passkey],
    hidden: [recovery_codes]
});
redacted_debug!(PasskeyLoginStartRequest {
    shown: [client],
    hidden: [mfa_ticket]
});
redacted_debug!(PasskeyLoginFinishRequest {
    shown: [credential_json, client],
    hidden: [ceremony_id, mfa_ticket]
});
redacted_debug!(PasskeyRenameRequest {
    shown: [credential_id, name],
    hidden: [access_token]
});
redacted_debug!(PasskeyRemoveRequest {
    shown: [credential_id, client],
    hidden: [access_token, code]
});

impl fmt::Debug for BackupChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A backup holds password hashes and sealed second factors: length only.
        f.debug_struct("BackupChunk")
            .field("data_len", &self.data.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let secret = "hunter2-very-secret";
        let outputs = [
            format!(
                "{:?}",
                LoginRequest {
                    username: "alice".into(),
                    password: secret.into(),
                    client: None
                }
            ),
            format!(
                "{:?}",
                RegisterRequest {
                    username: "alice".into(),
                    password: secret.into(),
                    client: None,
                }
            ),
            format!(
                "{:?}",
                TokenPair {
                    access_token: secret.into(),
                    refresh_token: secret.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                ChangePasswordRequest {
                    access_token: secret.into(),
                    current_password: secret.into(),
                    new_password: secret.into(),
                    client: None,
                }
            ),
            format!(
                "{:?}",
                User {
                    password_hash: secret.into(),
                    totp_sealed: secret.into(),
                    recovery_code_hashes: vec![secret.into()],
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                RefreshRequest {
                    refresh_token: secret.into(),
                    client: None,
                }
            ),
            format!(
                "{:?}",
                LoginResponse {
                    mfa_ticket: secret.into(),
                    mfa_required: true,
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                LoginMfaRequest {
                    mfa_ticket: secret.into(),
                    code: secret.into(),
                    client: None,
                }
            ),
            format!(
                "{:?}",
                TotpEnrollResponse {
                    secret: secret.into(),
                    otpauth_uri: format!("otpauth://totp/x?secret={secret}"),
                }
            ),
            format!(
                "{:?}",
                TotpConfirmResponse {
                    recovery_codes: vec![secret.into()],
                }
            ),
            format!(
                "{:?}",
                Challenge {
                    state: secret.as_bytes().to_vec(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                DeleteUserRequest {
                    access_token: secret.into(),
                    password: secret.into(),
                    client: None,
                }
            ),
        ];
        for out in outputs {
            assert!(!out.contains(secret), "secret leaked in {out}");
            assert!(out.contains("<redacted>"), "{out}");
        }
        let s = format!(
            "{:?}",
            Session {
                refresh_hash: vec![0xAB; 32],
                ..Default::default()
            }
        );
        assert!(!s.contains("171"), "hash bytes leaked in {s}");
    }

    /// Fields whose values are secrets (or let someone act as the user).
    const SECRET_FIELDS: &[&str] = &[
        "access_token",
        "refresh_token",
        "password",
        "current_password",
        "new_password",
        "password_hash",
        "mfa_ticket",
        "code",
        "secret",
        "totp_sealed",
        "recovery_codes",
        "recovery_code_hashes",
        "refresh_hash",
        "retired_refresh_hashes",
        "presented_hash",
        "new_hash",
        "sealed_successor",
        "otpauth_uri",
        "ceremony_id",
        "state",
    ];

    #[test]
    fn every_message_with_a_secret_field_has_a_redacting_debug() {
        use prost::Message as _;
        let redacted: &[&str] = include!(concat!(env!("OUT_DIR"), "/redacted_list.rs"));
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut missing = Vec::new();
        fn walk(
            prefix: &str,
            msgs: &[prost_types::DescriptorProto],
            redacted: &[&str],
            missing: &mut Vec<String>,
        ) {
            for msg in msgs {
                let name = format!("{prefix}.{}", msg.name());
                // `StorageFailure.code` is an error code, not a second-factor code.
                let secret = msg.field.iter().any(|f| {
                    SECRET_FIELDS.contains(&f.name())
                        && !(name == "auth.v1.StorageFailure" && f.name() == "code")
                });
                if secret && !redacted.contains(&name.as_str()) {
                    missing.push(name.clone());
                }
                walk(&name, &msg.nested_type, redacted, missing);
            }
        }
        for file in &set.file {
            walk(file.package(), &file.message_type, redacted, &mut missing);
        }
        assert!(
            missing.is_empty(),
            "messages with secret fields but a derived Debug (add them to build.rs \
             REDACTED and src/redact.rs): {missing:?}"
        );
    }
}
