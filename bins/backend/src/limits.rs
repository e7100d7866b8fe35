//! Process limits a server raises before it listens.

/// Raises the soft limit on open files to the hard limit (as Go's runtime does at
/// start): every connection is a file descriptor, and the common default of 1 024
/// lets a few addresses exhaust them, after which every new client is refused. Returns
/// the limit now in force, or `None` where there is none to raise (or on failure,
/// logged: the server still runs, with the limit it had).
pub fn raise_open_files() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        let limit = super::raise_open_files().expect("a limit on Linux");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
        assert_eq!((soft, limit), (hard, hard));
    }
}
