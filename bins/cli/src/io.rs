//! Where commands read and write: stdin lines, prompted passwords, token arguments,
//! `--save` files and the output in text or JSON.

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{EXIT_OK, Failure};

/// Where a command reads and writes; the real process streams in `main`, buffers in
/// tests.
pub struct Io<'a> {
    /// Standard input (passwords, `-` tokens).
    pub stdin: &'a mut dyn BufRead,
    /// Whether stdin is a terminal: passwords are then prompted for without echo.
    pub stdin_is_tty: bool,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

/// Writes the JSON value or the text, and returns success.
pub(crate) fn emit(
    io: &mut Io<'_>,
    json: bool,
    value: Value,
    text: impl FnOnce() -> String,
) -> Result<u8, Failure> {
    // A closed stdout (`authctl ... | head -0`) is not worth a different exit status.
    let _ = if json {
        writeln!(io.out, "{value}")
    } else {
        io.out.write_all(text().as_bytes())
    };
    Ok(EXIT_OK)
}

/// Reads one line of stdin, without its line ending.
pub(crate) fn read_line(io: &mut Io<'_>) -> Result<Option<String>, Failure> {
    let mut line = String::new();
    let n = io
        .stdin
        .read_line(&mut line)
        .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

/// The password: prompted for without echo on a terminal (twice when `confirm`),
/// otherwise the first line of stdin. Never from the command line.
pub(crate) fn read_password(io: &mut Io<'_>, confirm: bool) -> Result<String, Failure> {
    if io.stdin_is_tty {
        let prompt_err = |e: std::io::Error| Failure::Usage(format!("cannot read password: {e}"));
        let password = rpassword::prompt_password("Password: ").map_err(prompt_err)?;
        if confirm {
            let again = rpassword::prompt_password("Repeat password: ").map_err(prompt_err)?;
            if again != password {
                return Err(Failure::Usage("passwords do not match".into()));
            }
        }
        return Ok(password);
    }
    read_line(io)?.ok_or_else(|| {
        Failure::Usage(
            "no password on stdin: pipe it in as one line (passwords are never taken from \
             the command line)"
                .into(),
        )
    })
}

/// A token argument; `-` means one line of stdin.
pub(crate) fn token_arg(io: &mut Io<'_>, arg: String) -> Result<String, Failure> {
    if arg != "-" {
        return Ok(arg);
    }
    match read_line(io)? {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => Err(Failure::Usage("no token on stdin".into())),
    }
}

/// A `--save` file, opened (mode 0600) before the request so that an unusable path
/// fails before a session is opened.
pub(crate) struct SaveFile {
    path: PathBuf,
    file: File,
    created: bool,
}

impl SaveFile {
    pub(crate) fn open(path: &Path) -> Result<Self, Failure> {
        let created = !path.exists();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(path)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // An existing file keeps its mode on open: tighten it before secrets go in.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Failure::Usage(format!("cannot protect {}: {e}", path.display())))?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            created,
        })
    }

    pub(crate) fn write(mut self, value: &Value) -> Result<PathBuf, Failure> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::Usage(format!("cannot encode tokens: {e}")))?;
        let io_err = |e: std::io::Error| {
            Failure::Usage(format!("cannot write {}: {e}", self.path.display()))
        };
        self.file.set_len(0).map_err(io_err)?;
        self.file
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| self.file.sync_all())
            .map_err(io_err)?;
        Ok(self.path)
    }

    /// Removes the file if this command created it.
    pub(crate) fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EXIT_USAGE;

    fn with_stdin<R>(input: &str, tty: bool, f: impl FnOnce(&mut Io<'_>) -> R) -> R {
        let mut stdin = std::io::Cursor::new(input.as_bytes().to_vec());
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut io = Io {
            stdin: &mut stdin,
            stdin_is_tty: tty,
            out: &mut out,
            err: &mut err,
        };
        f(&mut io)
    }

    #[test]
    fn passwords_and_tokens_come_from_stdin_lines() {
        let pw = with_stdin("s3cret pass\r\nnext\n", false, |io| read_password(io, true));
        assert_eq!(pw.unwrap(), "s3cret pass");
        let pw = with_stdin("no newline", false, |io| read_password(io, false));
        assert_eq!(pw.unwrap(), "no newline");
        let e = with_stdin("", false, |io| read_password(io, false)).unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        let t = with_stdin("  tok.en \n", false, |io| token_arg(io, "-".into()));
        assert_eq!(t.unwrap(), "tok.en");
        let t = with_stdin("", false, |io| token_arg(io, "abc".into()));
        assert_eq!(t.unwrap(), "abc");
        assert!(with_stdin("\n", false, |io| token_arg(io, "-".into())).is_err());
    }
}
