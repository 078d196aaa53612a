//! Each user's Sieve scripts, as ManageSieve and the webmail's settings page keep
//! them, and the one delivery runs.
//!
//! ```text
//! data_dir/sieve/<user>.sieve             the active script: what delivery reads
//! data_dir/sieve/scripts/<user>/<name>.sieve   every script the user keeps
//! data_dir/sieve/scripts/<user>/.active   the active script's name
//! ```
//!
//! Activating a script copies it to `<user>.sieve` (written to a temporary file,
//! fsynced and renamed over it), so delivery keeps reading one file and never sees a
//! half-written script. A `<user>.sieve` written by hand before this store existed is
//! taken in as the active script `main` on first use.
//!
//! Scripts are checked with the same sieve-rs compiler delivery uses; the error names
//! the line.

use std::io::Write;
use std::path::{Path, PathBuf};

use sieve::compiler::grammar::Capability;

/// Sieve capabilities delivery does not run (see `deliver::sieve::SieveEngine::new`).
const DISABLED: &[&str] = &[
    "editheader",
    "replace",
    "enclose",
    "convert",
    "enotify",
    "fcc",
    "comparator-elbonia",
];

/// The SIEVE capability string: what sieve-rs supports, less what delivery switches off.
pub fn capabilities() -> String {
    Capability::all()
        .iter()
        .map(|c| c.to_string())
        .filter(|c| !DISABLED.contains(&c.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a store operation failed (ManageSieve maps these to its response codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("no such script")]
    NonExistent,
    #[error("a script of that name exists")]
    AlreadyExists,
    #[error("the active script cannot be deleted")]
    Active,
    #[error("bad script name")]
    BadName,
    #[error("{0}")]
    Invalid(String),
    #[error("quota: {0}")]
    Quota(String),
    #[error("{0}")]
    Io(String),
}

/// The script store under a data_dir.
#[derive(Debug, Clone)]
pub struct Scripts {
    dir: PathBuf,
    pub max_size: u64,
    pub max_scripts: usize,
}

/// A script name: 1–128 characters, no `/`, no control characters, not starting with `.`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().count() <= 128
        && !n.starts_with('.')
        && !n.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Compiles `text` with sieve-rs: `Err("line N: …")` when it does not.
pub fn check(text: &[u8]) -> Result<(), String> {
    match sieve::Compiler::new().compile(text) {
        Ok(_) => {}
        Err(e) => return Err(format!("line {}: {e}", e.line_num())),
    }
    // Compiled, but asking for something delivery does not run.
    let lower = String::from_utf8_lossy(text).to_ascii_lowercase();
    for d in DISABLED {
        if lower.contains(&format!("\"{d}\"")) && lower.contains("require") {
            return Err(format!("extension {d} is not supported here"));
        }
    }
    Ok(())
}

fn io(p: &Path, e: std::io::Error) -> ScriptError {
    ScriptError::Io(format!("{}: {e}", p.display()))
}

/// Writes `bytes` to `path` durably (tmp, fsync, rename, fsync dir).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ScriptError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = dir.join(format!(
        ".tmp.{}.{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Scripts {
    pub fn new(data_dir: &Path, max_size: u64, max_scripts: usize) -> Scripts {
        Scripts {
            dir: data_dir.join("sieve"),
            max_size,
            max_scripts,
        }
    }

    pub fn from_config(cfg: &crate::config::Config) -> Scripts {
        Scripts::new(
            &cfg.data_dir,
            cfg.managesieve.max_script_size,
            cfg.managesieve.max_scripts,
        )
    }

    fn user_dir(&self, user: &str) -> PathBuf {
        self.dir.join("scripts").join(user)
    }

    fn path(&self, user: &str, name: &str) -> Result<PathBuf, ScriptError> {
        if !valid_name(name) {
            return Err(ScriptError::BadName);
        }
        Ok(self.user_dir(user).join(format!("{name}.sieve")))
    }

    /// The file delivery reads.
    pub fn active_path(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.sieve"))
    }

    /// Takes in a hand-written `<user>.sieve` as the active script `main`.
    fn adopt(&self, user: &str) -> Result<(), ScriptError> {
        let ud = self.user_dir(user);
        if ud.exists() {
            return Ok(());
        }
        let legacy = self.active_path(user);
        if let Ok(text) = std::fs::read(&legacy) {
            write_atomic(&ud.join("main.sieve"), &text)?;
            write_atomic(&ud.join(".active"), b"main")?;
        } else {
            std::fs::create_dir_all(&ud).map_err(|e| io(&ud, e))?;
        }
        Ok(())
    }

    /// The active script's name.
    pub fn active(&self, user: &str) -> Result<Option<String>, ScriptError> {
        self.adopt(user)?;
        let p = self.user_dir(user).join(".active");
        match std::fs::read_to_string(&p) {
            Ok(s) if !s.trim().is_empty() && self.active_path(user).exists() => {
                Ok(Some(s.trim().to_string()))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p, e)),
        }
    }

    /// Every script (name, active), by name.
    pub fn list(&self, user: &str) -> Result<Vec<(String, bool)>, ScriptError> {
        let active = self.active(user)?;
        let ud = self.user_dir(user);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&ud).map_err(|e| io(&ud, e))? {
            let e = e.map_err(|e| io(&ud, e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = n.strip_suffix(".sieve")
                && !name.starts_with('.')
            {
                out.push((name.to_string(), active.as_deref() == Some(name)));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn get(&self, user: &str, name: &str) -> Result<Vec<u8>, ScriptError> {
        self.adopt(user)?;
        let p = self.path(user, name)?;
        std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ScriptError::NonExistent,
            _ => io(&p, e),
        })
    }

    /// Would a script of `size` bytes named `name` fit the quotas?
    pub fn have_space(&self, user: &str, name: &str, size: u64) -> Result<(), ScriptError> {
        if size > self.max_size {
            return Err(ScriptError::Quota(format!(
                "scripts are limited to {} bytes",
                self.max_size
            )));
        }
        let list = self.list(user)?;
        if !list.iter().any(|(n, _)| n == name) && list.len() >= self.max_scripts {
            return Err(ScriptError::Quota(format!(
                "at most {} scripts",
                self.max_scripts
            )));
        }
        Ok(())
    }

    /// Stores a script (checked first); an active one is live at once.
    pub fn put(&self, user: &str, name: &str, text: &[u8]) -> Result<(), ScriptError> {
        let p = self.path(user, name)?;
        self.have_space(user, name, text.len() as u64)?;
        check(text).map_err(ScriptError::Invalid)?;
        write_atomic(&p, text)?;
        if self.active(user)?.as_deref() == Some(name) {
            write_atomic(&self.active_path(user), text)?;
        }
        Ok(())
    }

    /// Makes `name` the active script; `None` (ManageSieve `SETACTIVE ""`) turns
    /// filtering off.
    pub fn set_active(&self, user: &str, name: Option<&str>) -> Result<(), ScriptError> {
        self.adopt(user)?;
        let ud = self.user_dir(user);
        match name {
            None => {
                let p = self.active_path(user);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&p, e)),
                }
                write_atomic(&ud.join(".active"), b"")
            }
            Some(n) => {
                let text = self.get(user, n)?;
                write_atomic(&self.active_path(user), &text)?;
                write_atomic(&ud.join(".active"), n.as_bytes())
            }
        }
    }

    pub fn delete(&self, user: &str, name: &str) -> Result<(), ScriptError> {
        let p = self.path(user, name)?;
        if self.active(user)?.as_deref() == Some(name) {
            return Err(ScriptError::Active);
        }
        std::fs::remove_file(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ScriptError::NonExistent,
            _ => io(&p, e),
        })
    }

    pub fn rename(&self, user: &str, from: &str, to: &str) -> Result<(), ScriptError> {
        let (a, b) = (self.path(user, from)?, self.path(user, to)?);
        if !a.exists() {
            return Err(ScriptError::NonExistent);
        }
        if b.exists() {
            return Err(ScriptError::AlreadyExists);
        }
        std::fs::rename(&a, &b).map_err(|e| io(&a, e))?;
        if self.active(user)?.as_deref() == Some(from) {
            write_atomic(&self.user_dir(user).join(".active"), to.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_activate_rename_delete_and_quotas() {
        let d = tempfile::tempdir().unwrap();
        // A hand-written script is adopted as the active `main`.
        std::fs::create_dir_all(d.path().join("sieve")).unwrap();
        std::fs::write(d.path().join("sieve/bouke.sieve"), "keep;\n").unwrap();
        let s = Scripts::new(d.path(), 100, 2);
        assert_eq!(s.list("bouke").unwrap(), vec![("main".into(), true)]);
        s.put(
            "bouke",
            "vakantie",
            b"require \"vacation\";\nvacation \"weg\";\n",
        )
        .unwrap();
        assert_eq!(
            s.put("bouke", "third", b"keep;"),
            Err(ScriptError::Quota("at most 2 scripts".into()))
        );
        assert!(matches!(
            s.put("bouke", "vakantie", &[b' '; 101]),
            Err(ScriptError::Quota(_))
        ));
        let bad = s.put("bouke", "main", b"keep;\nif header :contains \"x\" {\n");
        assert!(
            matches!(&bad, Err(ScriptError::Invalid(e)) if e.starts_with("line ")),
            "{bad:?}"
        );
        assert!(matches!(
            s.put(
                "bouke",
                "main",
                b"require \"editheader\";\naddheader \"X\" \"y\";"
            ),
            Err(ScriptError::Invalid(_))
        ));
        // Activating copies the script where delivery reads it.
        s.set_active("bouke", Some("vakantie")).unwrap();
        assert!(
            std::fs::read_to_string(s.active_path("bouke"))
                .unwrap()
                .contains("weg")
        );
        assert_eq!(s.delete("bouke", "vakantie"), Err(ScriptError::Active));
        // Editing the active script is live at once.
        s.put(
            "bouke",
            "vakantie",
            b"require \"vacation\";\nvacation \"terug\";\n",
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(s.active_path("bouke"))
                .unwrap()
                .contains("terug")
        );
        s.rename("bouke", "vakantie", "zomer").unwrap();
        assert_eq!(s.active("bouke").unwrap().as_deref(), Some("zomer"));
        assert_eq!(
            s.rename("bouke", "zomer", "main"),
            Err(ScriptError::AlreadyExists)
        );
        s.set_active("bouke", None).unwrap();
        assert!(!s.active_path("bouke").exists());
        assert_eq!(s.active("bouke").unwrap(), None);
        s.delete("bouke", "main").unwrap();
        assert_eq!(s.get("bouke", "main"), Err(ScriptError::NonExistent));
        assert_eq!(s.get("bouke", "../x"), Err(ScriptError::BadName));
        assert!(!valid_name(".hidden") && !valid_name("a/b") && valid_name("Mijn filters"));
        let caps = capabilities();
        assert!(
            caps.contains("fileinto") && caps.contains("vacation"),
            "{caps}"
        );
        assert!(!caps.contains("editheader"));
    }
}
