//! `auth-backend restore`: seed a member of a new Raft cluster from a backup file, like
//! `etcdutl snapshot restore`. The file comes from `authctl cluster snapshot save` or
//! from a development instance's in-memory store
//! ([`MemoryStorage::export`](auth_storage::memory::MemoryStorage::export)); see
//! [`auth_storage::backup`].
//!
//! Run it once per member, with the same file and `--peers`, each with its own
//! `--id` and `--data-dir`, then start every member with `serve --storage raft` and
//! the same `--id`, `--peers`, `--data-dir` and `--cluster-id`.

use std::path::PathBuf;
use std::process::ExitCode;

use auth_storage::backup::Backup;
use clap::Args;

/// `auth-backend restore …`
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long = "from", value_name = "FILE")]
    pub from: PathBuf,

    /// This member's data directory; it must not hold a Raft store yet.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// This member's id in the new cluster (non-zero).
    #[arg(long, value_name = "N")]
    pub id: u64,

    /// Every member of the new cluster as `id=host:port` of its peer listener,
    /// comma-separated, as `serve --peers` will be given.
    #[arg(long, value_name = "LIST")]
    pub peers: String,

    /// The new cluster's name, as `serve --cluster-id` will be given [default:
    /// auth-sdk].
    #[arg(long, value_name = "NAME")]
    pub cluster_id: Option<String>,
}

fn run(args: &RestoreArgs) -> Result<String, (u8, String)> {
    let members = crate::config::parse_peers(&args.peers).map_err(|e| (2, e))?;
    let file = std::fs::File::open(&args.from)
        .map_err(|e| (1, format!("{}: {e}", args.from.display())))?;
    let backup = Backup::read_from(std::io::BufReader::new(file))
        .map_err(|e| (1, format!("{}: {e} [{}]", args.from.display(), e.code())))?;
    let header = backup.header.clone();
    let cluster_id = args
        .cluster_id
        .clone()
        .unwrap_or_else(|| auth_raft::DEFAULT_CLUSTER_ID.to_owned());
    let seeded =
        auth_raft::restore::seed_data_dir(&args.data_dir, &cluster_id, args.id, &members, backup)
            .map_err(|e| {
            let code = if e.code() == "invalid_argument" { 2 } else { 1 };
            (code, format!("{e} [{}]", e.code()))
        })?;
    let from = auth_storage::backup::origin(&header);
    Ok(format!(
        "restored {} users and {} sessions from {from} into {} as node {} of cluster {cluster_id:?} ({} members)",
        seeded.users,
        seeded.sessions,
        args.data_dir.display(),
        args.id,
        members.len()
    ))
}

/// Runs `auth-backend restore`: exit 0 once the directory is seeded, 1 if the file or
/// the directory is refused, 2 for bad arguments.
pub fn main_restore(args: &RestoreArgs) -> ExitCode {
    match run(args) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => {
            eprintln!("auth-backend restore: {e}");
            ExitCode::from(code)
        }
    }
}
