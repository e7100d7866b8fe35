//! The backup file format: a memory store exported and imported whole, the same state
//! always written as the same bytes, and every kind of damage refused with its code.

use auth_proto::v1 as pb;
use auth_storage::backup::{Backup, BackupError, FORMAT_VERSION, MAGIC};
use auth_storage::memory::MemoryStorage;
use auth_storage::{Session, Storage, User};

fn user(i: usize) -> User {
    User {
        id: format!("{i:032x}"),
        username: format!("user{i}"),
        username_key: format!("user{i}"),
        password_hash: format!("$argon2id$secret-{i}"),
        created_at_ms: 1_000 + i as i64,
        roles: if i == 0 { vec!["admin".into()] } else { vec![] },
        ..User::default()
    }
}

fn session(i: usize, of: &User) -> Session {
    Session {
        id: format!("s{i:031x}"),
        user_id: of.id.clone(),
        refresh_hash: vec![i as u8; 32],
        created_at_ms: 2_000,
        expires_at_ms: i64::MAX / 2,
        absolute_expires_at_ms: i64::MAX / 2,
        ..Session::default()
    }
}

async fn filled() -> MemoryStorage {
    let store = MemoryStorage::new();
    for i in 0..20 {
        let u = store.create_user(user(i)).await.unwrap();
        if i % 2 == 0 {
            store.create_session(session(i, &u), 100).await.unwrap();
        }
    }
    store
}

fn export(store: &MemoryStorage) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.export(&mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn a_memory_store_exports_and_imports_whole() {
    let store = filled().await;
    let bytes = export(&store);
    assert_eq!(&bytes[..8], MAGIC);
    let backup = Backup::read_from(bytes.as_slice()).unwrap();
    assert_eq!(backup.header.source, "memory");
    assert_eq!(backup.header.format_version, FORMAT_VERSION);
    assert_eq!(backup.header.users, 20);
    assert_eq!(backup.header.sessions, 10);
    assert!(backup.header.producer.starts_with("auth-sdk "));

    let copy = MemoryStorage::from_backup(backup).unwrap();
    assert_eq!(copy.user_count(), 20);
    assert_eq!(copy.session_count(), 10);
    for i in 0..20 {
        let original = store.get_user(&user(i).id).await.unwrap().unwrap();
        let restored = copy.get_user(&user(i).id).await.unwrap().unwrap();
        assert_eq!(original, restored, "user {i}, version and roles included");
        let by_name = copy
            .get_user_by_username(&format!("user{i}"))
            .await
            .unwrap();
        assert_eq!(by_name.map(|u| u.id), Some(original.id));
    }
    for i in (0..20).step_by(2) {
        let s = copy.get_session(&session(i, &user(i)).id).await.unwrap();
        assert_eq!(s.map(|s| s.refresh_hash), Some(vec![i as u8; 32]));
    }
    // The same state is the same records: they go in id order. (The header holds the
    // time of the export, and the checksum covers it.)
    let again = export(&copy);
    assert_eq!(bytes[..12], again[..12]);
    let body = |b: &[u8]| {
        let header_len = u32::from_be_bytes(b[8 + 4..8 + 8].try_into().unwrap()) as usize;
        b[16 + header_len..b.len() - 32].to_vec()
    };
    assert_eq!(body(&bytes), body(&again));
}

#[tokio::test]
async fn damage_of_every_kind_is_refused_with_its_code() {
    let bytes = export(&filled().await);
    let code = |b: &[u8]| Backup::read_from(b).map(|_| ()).unwrap_err().code();

    // Any flipped byte after the magic and version: the checksum, or a bound, or a
    // decode error finds it; never a state.
    for at in (12..bytes.len()).step_by(97) {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        let c = code(&b);
        assert!(
            matches!(c, "checksum_mismatch" | "malformed" | "truncated"),
            "byte {at}: {c}"
        );
    }
    // Cut anywhere: truncated.
    for cut in [13, 40, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(code(&bytes[..cut]), "truncated", "cut at {cut}");
    }
    // Grown: refused.
    let mut grown = bytes.clone();
    grown.push(0);
    assert_eq!(code(&grown), "malformed");
    // Not a backup at all, or empty.
    assert_eq!(code(b"{\"users\": []}"), "not_a_backup");
    assert_eq!(code(b""), "not_a_backup");
    // A later version.
    let mut later = bytes.clone();
    later[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_be_bytes());
    assert!(matches!(
        Backup::read_from(later.as_slice()),
        Err(BackupError::UnsupportedVersion { found }) if found == FORMAT_VERSION + 1
    ));
    // A length beyond the bound is refused before anything is allocated for it.
    let mut huge = bytes.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(code(&huge), "malformed");
}

#[tokio::test]
async fn records_that_do_not_form_a_state_are_refused_on_import() {
    // A session whose user is missing, written with a valid checksum.
    let mut tables = auth_storage::memory::Tables::new();
    tables.create_user(user(1)).unwrap();
    let mut bytes = Vec::new();
    auth_storage::backup::write_tables(&tables, pb::BackupHeader::default(), &mut bytes).unwrap();
    let mut backup = Backup::read_from(bytes.as_slice()).unwrap();
    backup.sessions.push(session(9, &user(9)));
    let e = MemoryStorage::from_backup(backup).unwrap_err();
    assert_eq!(e.code(), "invalid");
}

#[test]
fn debug_of_a_backup_chunk_shows_no_bytes() {
    let chunk = pb::BackupChunk {
        data: b"$argon2id$v=19$secret".to_vec(),
    };
    let shown = format!("{chunk:?}");
    assert!(!shown.contains("argon2"), "{shown}");
    assert!(shown.contains("21"), "{shown}");
}
