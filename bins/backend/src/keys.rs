//! `auth-backend keys generate|list`: the signing keys of a key directory
//! (`serve --signing-key-dir`), for rotating them across a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use auth_core::keys::KeyDir;
use clap::{Args, Subcommand};

use crate::config::SigningAlg;

/// The key directory a command works on.
#[derive(Debug, Clone, Args)]
pub struct KeyDirArg {
    /// The key directory (as `serve --signing-key-dir`).
    #[arg(long, env = "AUTH_BACKEND_SIGNING_KEY_DIR", value_name = "DIR")]
    pub dir: PathBuf,
}

/// `auth-backend keys …`
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCmd {
    /// Write a new random signing key, `DIR/<id>.pem` (Ed25519) or `DIR/<id>.key` (HS256),
    /// mode 0600. It verifies (and is published) as soon as a node loads the
    /// directory, and signs only once named by `serve --signing-key-id`.
    Generate {
        /// Where.
        #[command(flatten)]
        dir: KeyDirArg,
        /// The algorithm.
        #[arg(long, value_name = "ALG", default_value = "eddsa")]
        alg: SigningAlg,
        /// The key id [default: the UTC time, YYYYMMDD-HHMMSS, so newer keys sort last].
        #[arg(long, value_name = "KID")]
        id: Option<String>,
    },
    /// List the keys: id, algorithm, whether it signs, file.
    List {
        /// Which directory.
        #[command(flatten)]
        dir: KeyDirArg,
        /// The id `serve --signing-key-id` names, if any.
        #[arg(
            long = "signing-key-id",
            env = "AUTH_BACKEND_SIGNING_KEY_ID",
            value_name = "KID"
        )]
        current: Option<String>,
    },
}

fn run(cmd: &KeysCmd) -> Result<String, String> {
    match cmd {
        KeysCmd::Generate { dir, alg, id } => {
            let file = KeyDir::new(&dir.dir)
                .generate((*alg).into(), id.as_deref())
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{} key {} written to {}",
                file.algorithm,
                file.kid,
                file.path.display()
            ))
        }
        KeysCmd::List { dir, current } => {
            let keys = KeyDir::new(&dir.dir);
            let files = keys.files().map_err(|e| e.to_string())?;
            // Loading checks every file (permissions, contents) and the signing key.
            let ring = match (current, files.len()) {
                (None, n) if n > 1 => None,
                _ => Some(keys.load(current.as_deref()).map_err(|e| e.to_string())?),
            };
            let mut out = format!("{:<24} {:<6} {:<8} FILE", "KID", "ALG", "SIGNS");
            for file in &files {
                file.load().map_err(|e| e.to_string())?;
                let signs = match &ring {
                    Some(ring) if ring.current().kid() == file.kid => "yes",
                    Some(_) => "verifies",
                    None => "?",
                };
                out.push_str(&format!(
                    "\n{:<24} {:<6} {:<8} {}",
                    file.kid,
                    file.algorithm,
                    signs,
                    file.path.display()
                ));
            }
            if ring.is_none() {
                out.push_str(
                    "\nseveral keys: `serve --signing-key-id KID` names the one that signs",
                );
            }
            Ok(out)
        }
    }
}

/// `auth-backend keys …`: exit 0, or 2 with the reason on stderr.
pub fn main_keys(cmd: &KeysCmd) -> ExitCode {
    match run(cmd) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("auth-backend keys: {e}");
            ExitCode::from(crate::app::EXIT_CONFIG)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_list_shows_which_key_signs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDirArg {
            dir: tmp.path().join("keys"),
        };
        let generate = |id: &str, alg| KeysCmd::Generate {
            dir: dir.clone(),
            alg,
            id: Some(id.into()),
        };
        run(&generate("a-old", SigningAlg::Eddsa)).unwrap();
        run(&generate("b-new", SigningAlg::Eddsa)).unwrap();
        let e = run(&generate("b-new", SigningAlg::Eddsa)).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        // Several keys and none named: listed, none marked as signing.
        let listed = run(&KeysCmd::List {
            dir: dir.clone(),
            current: None,
        })
        .unwrap();
        assert!(listed.contains("--signing-key-id"), "{listed}");
        assert!(!listed.contains(" yes "), "{listed}");
        let listed = run(&KeysCmd::List {
            dir: dir.clone(),
            current: Some("b-new".into()),
        })
        .unwrap();
        let signing: Vec<&str> = listed.lines().filter(|l| l.contains(" yes ")).collect();
        assert_eq!(signing.len(), 1, "{listed}");
        assert!(signing[0].starts_with("b-new"), "{listed}");
        let listed = run(&KeysCmd::List {
            dir: dir.clone(),
            current: Some("a-old".into()),
        })
        .unwrap();
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with("a-old") && l.contains(" yes ")),
            "{listed}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.dir.join("a-old.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // An HS256 key is listed too, and never published.
        run(&generate("c-hs", SigningAlg::Hs256)).unwrap();
        let ring = KeyDir::new(&dir.dir).load(Some("c-hs")).unwrap();
        assert_eq!(ring.current().algorithm(), auth_core::Algorithm::Hs256);
        assert_eq!(ring.jwks().keys.len(), 2);
    }
}
