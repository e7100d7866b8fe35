//! Signing keys for access tokens and the key ring that lets them rotate.
//!
//! A [`KeyRing`] has one current key, which signs, and any number of previous keys,
//! which still verify. To rotate: make the new key current and move the old one to
//! `previous` for at least one access-token lifetime, then drop it.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::error::AuthError;

/// Minimum HS256 secret length (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HS256_SECRET: usize = 32;

/// The JWS algorithm a [`SigningKey`] signs with (the token's `alg` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256 (`HS256`): a shared secret signs and verifies, so only its
    /// holders can check tokens. Never published in a JWKS.
    Hs256,
    /// Ed25519 (`EdDSA`): the private key signs; anyone with the public key (a JWKS
    /// document) can verify.
    EdDsa,
}

impl Algorithm {
    /// The JOSE name: `HS256` or `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = AuthError;

    /// `eddsa` or `hs256`, in any case (so `EdDSA` and `HS256` too).
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s.to_ascii_lowercase().as_str() {
            "eddsa" => Ok(Algorithm::EdDsa),
            "hs256" => Ok(Algorithm::Hs256),
            _ => Err(AuthError::InvalidConfig(format!(
                "unknown signing algorithm {s:?} (expected eddsa or hs256)"
            ))),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signing key: an id (`kid` header), an algorithm and the key material.
/// `Debug` shows the id and algorithm only.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The Ed25519 public key (EdDSA keys only), as published in a JWKS.
    public: Option<[u8; 32]>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn check_kid(kid: &str) -> Result<(), AuthError> {
    let ok = !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidConfig(
            "key id must be 1..=64 characters of [A-Za-z0-9._-]".into(),
        ))
    }
}

/// A secret written in base64 (standard or URL-safe, padded or not, surrounding
/// whitespace ignored); `what` names it in the error, which never echoes the text.
pub(crate) fn decode_secret_base64(
    text: &str,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let t = text.trim();
    STANDARD
        .decode(t)
        .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
        .map(Zeroizing::new)
        .map_err(|_| AuthError::InvalidConfig(format!("{what} is not valid base64")))
}

fn random_kid() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

impl SigningKey {
    /// An HS256 key from a secret of at least 32 bytes.
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, AuthError> {
        let kid = kid.into();
        check_kid(&kid)?;
        if secret.len() < MIN_HS256_SECRET {
            return Err(AuthError::InvalidConfig(format!(
                "HS256 secret must be at least {MIN_HS256_SECRET} bytes"
            )));
        }
        Ok(Self {
            kid,
            algorithm: Algorithm::Hs256,
            public: None,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// An HS256 key from a base64 (standard or URL-safe, padded or not) secret.
    pub fn hs256_base64(kid: impl Into<String>, secret_b64: &str) -> Result<Self, AuthError> {
        let bytes = decode_secret_base64(secret_b64, "HS256 secret")?;
        Self::hs256(kid, &bytes)
    }

    /// An EdDSA (Ed25519) key from a PKCS#8 DER private key.
    pub fn ed25519_pkcs8_der(kid: impl Into<String>, der: &[u8]) -> Result<Self, AuthError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map_err(|_| AuthError::InvalidConfig("not a PKCS#8 DER Ed25519 private key".into()))?;
        Ok(Self::from_dalek(kid, &key))
    }

    /// An EdDSA (Ed25519) key from a PKCS#8 PEM private key
    /// (`openssl genpkey -algorithm ed25519`).
    pub fn ed25519_pem(kid: impl Into<String>, pem: &str) -> Result<Self, AuthError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| AuthError::InvalidConfig("not a PKCS#8 PEM Ed25519 private key".into()))?;
        Ok(Self::from_dalek(kid, &key))
    }

    /// A key from a file: a PKCS#8 PEM Ed25519 private key, or else a base64 HS256
    /// secret.
    pub fn from_file(kid: impl Into<String>, path: impl AsRef<Path>) -> Result<Self, AuthError> {
        let text = Zeroizing::new(std::fs::read_to_string(path.as_ref()).map_err(|e| {
            AuthError::InvalidConfig(format!(
                "cannot read key file {}: {}",
                path.as_ref().display(),
                e.kind()
            ))
        })?);
        if text.trim_start().starts_with("-----BEGIN") {
            Self::ed25519_pem(kid, &text)
        } else {
            Self::hs256_base64(kid, &text)
        }
    }

    /// A fresh random HS256 key (256-bit secret) with a random id.
    pub fn generate_hs256() -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(secret.as_mut());
        Self {
            kid: random_kid(),
            algorithm: Algorithm::Hs256,
            public: None,
            encoding: EncodingKey::from_secret(secret.as_ref()),
            decoding: DecodingKey::from_secret(secret.as_ref()),
        }
    }

    /// A fresh random Ed25519 key with a random id.
    pub fn generate_ed25519() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(seed.as_mut());
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        Self::from_dalek(random_kid(), &key)
    }

    fn from_dalek(kid: String, key: &ed25519_dalek::SigningKey) -> Self {
        // Encoding a valid in-memory key as PKCS#8 cannot fail; fall back to an
        // unusable key rather than panic, which `Auth::new` would then reject on use.
        let der = key
            .to_pkcs8_der()
            .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
            .unwrap_or_default();
        Self {
            kid,
            algorithm: Algorithm::EdDsa,
            public: Some(key.verifying_key().to_bytes()),
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
        }
    }

    /// The key id (`kid` header of tokens it signs).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS algorithm (`HS256` or `EdDSA`).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The current signing key plus previous keys still accepted for verification.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SigningKey,
    previous: Vec<SigningKey>,
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(current: SigningKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a key that still verifies but no longer signs. Key ids must be unique.
    pub fn with_previous(mut self, key: SigningKey) -> Result<Self, AuthError> {
        if self.find(key.kid()).is_some() {
            return Err(AuthError::InvalidConfig(format!(
                "duplicate key id {:?}",
                key.kid()
            )));
        }
        self.previous.push(key);
        Ok(self)
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// All keys, current first.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }

    /// The key with this id.
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys().find(|k| k.kid == kid)
    }

    /// The public keys of this ring as a JWKS document (RFC 7517): every EdDSA key,
    /// current and previous, with its `kid`. HS256 keys are secrets and never appear.
    ///
    /// ```
    /// use auth_core::{KeyRing, SigningKey};
    ///
    /// let ring = KeyRing::new(SigningKey::generate_ed25519())
    ///     .with_previous(SigningKey::generate_hs256())
    ///     .unwrap();
    /// let jwks = ring.jwks();
    /// assert_eq!(jwks.keys.len(), 1);
    /// assert_eq!(jwks.keys[0].kid, ring.current().kid());
    /// let json = serde_json::to_string(&jwks).unwrap();
    /// assert!(json.contains(r#""kty":"OKP""#) && json.contains(r#""crv":"Ed25519""#));
    /// ```
    pub fn jwks(&self) -> Jwks {
        let keys = self
            .keys()
            .filter_map(|k| {
                k.public.map(|public| Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(public),
                    kid: k.kid.clone(),
                    alg: Algorithm::EdDsa.as_str().into(),
                    key_use: "sig".into(),
                })
            })
            .collect();
        Jwks { keys }
    }
}

/// A JWKS document (RFC 7517): the public keys that verify access tokens. Serialises
/// to `{"keys":[...]}`, what `/.well-known/jwks.json` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One public key of a [`Jwks`]: an Ed25519 key (RFC 8037), `kty` `OKP`, `crv`
/// `Ed25519`, `x` the public key in unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519` (absent from other key types: empty).
    #[serde(default)]
    pub crv: String,
    /// The public key, unpadded base64url (absent from other key types: empty).
    #[serde(default)]
    pub x: String,
    /// Key id: the `kid` header of the tokens it verifies (optional in RFC 7517).
    #[serde(default)]
    pub kid: String,
    /// Algorithm: `EdDSA` (optional in RFC 7517).
    #[serde(default)]
    pub alg: String,
    /// Use: `sig`.
    #[serde(rename = "use", default)]
    pub key_use: String,
}

/// A directory of signing keys, one file per key, named after its id: `<kid>.pem` (a
/// PKCS#8 PEM Ed25519 private key) or `<kid>.key` (a base64 HS256 secret). Other
/// files are ignored. It is how a key ring rotates across a cluster: every node gets
/// the same files, and one of them is named current.
///
/// ```
/// use auth_core::Algorithm;
/// use auth_core::keys::KeyDir;
///
/// let dir = tempfile::tempdir().unwrap();
/// let keys = KeyDir::new(dir.path());
/// keys.generate(Algorithm::EdDsa, Some("2026-01")).unwrap();
/// assert_eq!(keys.load(None).unwrap().current().kid(), "2026-01"); // the only key
/// keys.generate(Algorithm::EdDsa, Some("2026-02")).unwrap();
/// assert!(keys.load(None).is_err()); // several keys: say which one signs
/// let ring = keys.load(Some("2026-02")).unwrap();
/// assert_eq!(ring.current().kid(), "2026-02");
/// assert_eq!(ring.jwks().keys.len(), 2); // both verify, both are published
/// ```
#[derive(Debug, Clone)]
pub struct KeyDir {
    path: std::path::PathBuf,
}

/// One key file of a [`KeyDir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// The key id (the file name without its extension).
    pub kid: String,
    /// The algorithm (from the extension: `.pem` EdDSA, `.key` HS256).
    pub algorithm: Algorithm,
    /// The file.
    pub path: std::path::PathBuf,
}

impl KeyDir {
    /// The key directory at `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key files, sorted by key id. Files that are not `<kid>.pem` or `<kid>.key`
    /// with a valid id are skipped.
    pub fn files(&self) -> Result<Vec<KeyFile>, AuthError> {
        let unreadable = |e: std::io::Error| {
            AuthError::InvalidConfig(format!(
                "cannot read key directory {}: {}",
                self.path.display(),
                e.kind()
            ))
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let algorithm = match ext {
                "pem" => Algorithm::EdDsa,
                "key" => Algorithm::Hs256,
                _ => continue,
            };
            if check_kid(stem).is_ok() && path.is_file() {
                files.push(KeyFile {
                    kid: stem.to_owned(),
                    algorithm,
                    path,
                });
            }
        }
        files.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(files)
    }

    /// Loads every key into a ring. The current key is `current`, or the only key of
    /// the directory: with several keys it must be named, so that a node restarted
    /// while a new key is being copied to the others does not start signing with it.
    /// Every other key still verifies.
    ///
    /// Fails on an empty directory, an unknown or missing `current`, a key file that
    /// others can read (or a directory others can write), a file that is not the key
    /// its extension says, or two files with one id.
    pub fn load(&self, current: Option<&str>) -> Result<KeyRing, AuthError> {
        check_not_writable_by_others(&self.path)?;
        let files = self.files()?;
        let chosen = match (current, files.as_slice()) {
            (Some(kid), _) => files.iter().find(|f| f.kid == kid).ok_or_else(|| {
                AuthError::InvalidConfig(format!(
                    "no key {kid:?} in {} (expected {kid}.pem or {kid}.key)",
                    self.path.display()
                ))
            })?,
            (None, [only]) => only,
            (None, []) => {
                return Err(AuthError::InvalidConfig(format!(
                    "no key files (<kid>.pem, <kid>.key) in {}",
                    self.path.display()
                )));
            }
            (None, several) => {
                let kids: Vec<&str> = several.iter().map(|f| f.kid.as_str()).collect();
                return Err(AuthError::InvalidConfig(format!(
                    "{} holds several keys ({}): name the one that signs (--signing-key-id)",
                    self.path.display(),
                    kids.join(", ")
                )));
            }
        };
        let mut ring = KeyRing::new(chosen.load()?);
        for f in files.iter().filter(|f| f.path != chosen.path) {
            ring = ring.with_previous(f.load()?)?;
        }
        Ok(ring)
    }

    /// Writes a new random key (mode 0600, the directory created 0700 if missing) and
    /// returns its file. `kid` defaults to the UTC time, `YYYYMMDD-HHMMSS`, so that
    /// newer keys sort last. Never overwrites a file.
    pub fn generate(&self, algorithm: Algorithm, kid: Option<&str>) -> Result<KeyFile, AuthError> {
        let kid = match kid {
            Some(kid) => kid.to_owned(),
            None => {
                use crate::clock::{Clock, SystemClock, UtcDateTime};
                let t = UtcDateTime::from_unix_ms(SystemClock.now_ms());
                format!(
                    "{:04}{:02}{:02}-{:02}{:02}{:02}",
                    t.year, t.month, t.day, t.hour, t.minute, t.second
                )
            }
        };
        check_kid(&kid)?;
        create_private_dir(&self.path).map_err(|e| {
            AuthError::InvalidConfig(format!("cannot create {}: {e}", self.path.display()))
        })?;
        if self.files()?.iter().any(|f| f.kid == kid) {
            return Err(AuthError::InvalidConfig(format!(
                "key {kid:?} already exists"
            )));
        }
        let (ext, contents) = match algorithm {
            Algorithm::Hs256 => {
                let mut secret = Zeroizing::new([0u8; 32]);
                rand::rng().fill_bytes(secret.as_mut());
                (
                    "key",
                    Zeroizing::new(STANDARD.encode(secret.as_ref()) + "\n"),
                )
            }
            Algorithm::EdDsa => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rand::rng().fill_bytes(seed.as_mut());
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let pem = key
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(|_| AuthError::Internal("PKCS#8 encoding failed".into()))?;
                ("pem", Zeroizing::new(pem.to_string()))
            }
        };
        let path = self.path.join(format!("{kid}.{ext}"));
        write_new_private_file(&path, contents.as_bytes()).map_err(|e| {
            AuthError::InvalidConfig(format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(KeyFile {
            kid,
            algorithm,
            path,
        })
    }
}

impl KeyFile {
    /// Loads the key, refusing a file that others can read or that does not hold the
    /// key its extension says.
    pub fn load(&self) -> Result<SigningKey, AuthError> {
        check_private(&self.path)?;
        let key = SigningKey::from_file(self.kid.clone(), &self.path)?;
        if key.algorithm() != self.algorithm {
            return Err(AuthError::InvalidConfig(format!(
                "{} does not hold an {} key",
                self.path.display(),
                self.algorithm
            )));
        }
        Ok(key)
    }
}

/// Refuses a key file that anyone but its owner can read.
fn check_private(path: &Path) -> Result<(), AuthError> {
    refuse_mode(
        path,
        0o077,
        "key file",
        "is accessible to others",
        "chmod 600",
    )
}

/// Refuses a key directory that others can write (they could plant a key).
fn check_not_writable_by_others(dir: &Path) -> Result<(), AuthError> {
    refuse_mode(
        dir,
        0o022,
        "key directory",
        "is writable by others",
        "chmod go-w",
    )
}

/// An error naming `path`, what is wrong and the command that fixes it, if any of the
/// `forbidden` permission bits is set (Unix only).
fn refuse_mode(
    path: &Path,
    forbidden: u32,
    what: &str,
    problem: &str,
    fix: &str,
) -> Result<(), AuthError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let mode = std::fs::metadata(path)
            .map_err(|e| {
                AuthError::InvalidConfig(format!("cannot read {what} {shown}: {}", e.kind()))
            })?
            .permissions()
            .mode();
        if mode & forbidden != 0 {
            return Err(AuthError::InvalidConfig(format!(
                "{what} {shown} {problem} (mode {:o}): run `{fix} {shown}`",
                mode & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, forbidden, what, problem, fix);
    Ok(())
}

/// Creates `dir` (0700) and its parents if needed.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `path` (0600), failing if it exists.
fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    std::io::Write::write_all(&mut f, contents)?;
    f.sync_all()
}

impl From<&Jwks> for auth_proto::v1::KeysResponse {
    fn from(jwks: &Jwks) -> Self {
        let keys = jwks.keys.iter().map(|k| auth_proto::v1::PublicKey {
            kty: k.kty.clone(),
            crv: k.crv.clone(),
            x: k.x.clone(),
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            key_use: k.key_use.clone(),
        });
        Self {
            keys: keys.collect(),
        }
    }
}

impl From<auth_proto::v1::KeysResponse> for Jwks {
    fn from(resp: auth_proto::v1::KeysResponse) -> Self {
        let keys = resp.keys.into_iter().map(|k| Jwk {
            kty: k.kty,
            crv: k.crv,
            x: k.x,
            kid: k.kid,
            alg: k.alg,
            key_use: k.key_use,
        });
        Self {
            keys: keys.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_and_bad_kids_are_rejected() {
        assert!(SigningKey::hs256("k1", &[7u8; 31]).is_err());
        assert!(SigningKey::hs256("k1", &[7u8; 32]).is_ok());
        assert!(SigningKey::hs256("", &[7u8; 32]).is_err());
        assert!(SigningKey::hs256("bad kid", &[7u8; 32]).is_err());
        assert!(SigningKey::hs256_base64("k", "not base64!!").is_err());
        assert!(SigningKey::ed25519_pkcs8_der("k", b"garbage").is_err());
        assert!(SigningKey::ed25519_pem("k", "-----BEGIN PRIVATE KEY-----\nx\n").is_err());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let secret = [0x41u8; 32];
        let k = SigningKey::hs256("k1", &secret).unwrap();
        let dbg = format!("{:?}", KeyRing::new(k));
        assert!(dbg.contains("k1"));
        assert!(!dbg.contains("AAAA") && !dbg.contains("65, 65"), "{dbg}");
    }

    #[test]
    fn algorithms_have_their_jose_names_and_map_to_jsonwebtoken() {
        assert_eq!(Algorithm::Hs256.to_string(), "HS256");
        assert_eq!(Algorithm::EdDsa.as_str(), "EdDSA");
        assert_eq!(Algorithm::EdDsa.jwt(), jsonwebtoken::Algorithm::EdDSA);
        assert_eq!(SigningKey::generate_ed25519().algorithm(), Algorithm::EdDsa);
        assert_eq!(SigningKey::generate_hs256().algorithm(), Algorithm::Hs256);
    }

    #[test]
    fn keys_load_from_files_and_base64() {
        let dir = std::env::temp_dir().join(format!("auth-core-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hs = dir.join("hs.key");
        std::fs::write(&hs, STANDARD.encode([9u8; 32])).unwrap();
        assert_eq!(
            SigningKey::from_file("a", &hs).unwrap().algorithm(),
            Algorithm::Hs256
        );
        let ed = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let pem = ed
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let edf = dir.join("ed.pem");
        std::fs::write(&edf, pem.as_bytes()).unwrap();
        assert_eq!(
            SigningKey::from_file("b", &edf).unwrap().algorithm(),
            Algorithm::EdDsa
        );
        assert!(SigningKey::from_file("c", dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ring_rejects_duplicate_ids() {
        let ring = KeyRing::new(SigningKey::hs256("a", &[1u8; 32]).unwrap());
        assert!(
            ring.clone()
                .with_previous(SigningKey::hs256("a", &[2u8; 32]).unwrap())
                .is_err()
        );
        let ring = ring.with_previous(SigningKey::generate_ed25519()).unwrap();
        assert_eq!(ring.keys().count(), 2);
    }
}
