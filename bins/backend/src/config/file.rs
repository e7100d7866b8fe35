//! Reading the configuration file and layering flags over it.

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::settings::{Layer, Settings};

impl Settings {
    /// Parses a configuration file's text. Paths are kept as written.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Reads and parses a configuration file. Relative paths inside it (signing key,
    /// data directory, TLS files) are made relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut file = Self::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_owned(),
            reason,
        })?;
        if let Some(dir) = path.parent() {
            file.rebase(dir);
        }
        Ok(file)
    }

    /// These settings over `file`: every setting given here wins, the others are taken
    /// from `file`.
    pub fn merge(self, file: Settings) -> Settings {
        self.over(file)
    }

    /// Applies the `--config` file, if any, under these settings (flags and environment
    /// variables win over the file). Without `--config`, returns the settings unchanged.
    pub fn load(self) -> Result<Settings, ConfigError> {
        match &self.config {
            Some(path) => {
                let file = Self::from_file(path)?;
                Ok(self.merge(file))
            }
            None => Ok(self),
        }
    }

    /// Makes every relative path relative to `dir`.
    fn rebase(&mut self, dir: &Path) {
        let paths: [&mut Option<PathBuf>; 12] = [
            &mut self.metrics_token_file,
            &mut self.audit.log_file,
            &mut self.tokens.signing_key_file,
            &mut self.mfa.mfa_key_file,
            &mut self.admin.bootstrap_admin_password_file,
            &mut self.tokens.signing_key_dir,
            &mut self.raft.data_dir,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.peer_cert_file,
            &mut self.tls.peer_key_file,
            &mut self.tls.peer_trusted_ca_file,
        ];
        for path in paths.into_iter().flatten() {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
}
