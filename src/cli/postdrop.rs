//! `zolder-postdrop DATA_DIR`: the setgid helper through which users who are not the
//! daemon's user put mail into the maildrop (Postfix's postdrop). `sendmail` encodes
//! the envelope and message ([`crate::queue::maildrop::encode`]) and pipes it here.
//!
//! Install a copy of the binary setgid to the daemon's group, e.g.
//! `install -o root -g zolder -m 2755 zolder /usr/local/bin/zolder-postdrop`.
//! `sendmail` looks for it next to its own executable, then in /usr/local/libexec and
//! /usr/libexec.
//!
//! # Security
//! Whenever the process runs with an effective gid that is not its real gid (a setgid
//! execution) the binary does this and nothing else, whatever argv[0] says
//! ([`crate::cli::main`]). It reads no config and no environment: its input is one
//! drop file on stdin (at most [`MAX_INPUT`] bytes, parsed strictly before anything is
//! written) and the data_dir path. The path is the caller's, so it is checked: the
//! folder `DATA_DIR/maildrop` must be a real directory (not a symlink) of this
//! process's effective group, with the maildrop mode (3770) and the same owner as
//! `DATA_DIR` — a zolder maildrop, not any folder the group may write. The file it
//! writes belongs to the caller (real uid), so the daemon records who sent it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{EX_DATAERR, EX_NOPERM, EX_OK, EX_TEMPFAIL, EX_USAGE};
use crate::queue::maildrop;

/// The largest drop file accepted (the daemon applies the configured size limit).
pub const MAX_INPUT: u64 = 512 * 1024 * 1024;

/// The helper's name, as installed.
pub const NAME: &str = "zolder-postdrop";

/// Entry point: `args` without argv[0].
pub fn main(args: &[String]) -> i32 {
    let [data_dir] = args else {
        eprintln!("usage: {NAME} DATA_DIR  (a drop file on stdin; run by sendmail)");
        return EX_USAGE;
    };
    let data_dir = Path::new(data_dir);
    if let Err(e) = check_folder(data_dir, nix::unistd::getegid().as_raw()) {
        eprintln!("{NAME}: {e}");
        return EX_NOPERM;
    }
    let mut buf = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut buf) {
        eprintln!("{NAME}: reading stdin: {e}");
        return EX_DATAERR;
    }
    if buf.len() as u64 > MAX_INPUT {
        eprintln!("{NAME}: input larger than {MAX_INPUT} bytes");
        return EX_DATAERR;
    }
    if let Err(e) = maildrop::decode(&buf) {
        eprintln!("{NAME}: not a drop file: {e}");
        return EX_DATAERR;
    }
    match maildrop::write_encoded(data_dir, &buf) {
        Ok(id) => {
            println!("{id}");
            EX_OK
        }
        Err(e) => {
            eprintln!("{NAME}: {e}");
            EX_TEMPFAIL
        }
    }
}

/// Is `data_dir/maildrop` a zolder maildrop of group `gid`?
pub fn check_folder(data_dir: &Path, gid: u32) -> Result<(), String> {
    let d = maildrop::dir(data_dir);
    let m = std::fs::symlink_metadata(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let top = std::fs::metadata(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    if !m.file_type().is_dir() {
        return Err(format!("{}: not a directory", d.display()));
    }
    if m.gid() != gid || m.mode() & 0o7777 != maildrop::MODE || m.uid() != top.uid() {
        return Err(format!(
            "{}: not a zolder maildrop of this group (want mode {:o}, group {gid}, owner of {})",
            d.display(),
            maildrop::MODE,
            data_dir.display()
        ));
    }
    Ok(())
}

/// Where `sendmail` finds the helper.
pub fn locate() -> Option<std::path::PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.join(NAME)));
    beside
        .into_iter()
        .chain([
            Path::new("/usr/local/libexec").join(NAME),
            Path::new("/usr/libexec").join(NAME),
        ])
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_real_maildrop_is_accepted() {
        let t = tempfile::tempdir().unwrap();
        let gid = std::fs::metadata(t.path()).unwrap().gid();
        assert!(check_folder(t.path(), gid).is_err(), "missing folder");
        maildrop::create(t.path()).unwrap();
        check_folder(t.path(), gid).unwrap();
        assert!(
            check_folder(t.path(), gid + 1)
                .unwrap_err()
                .contains("not a zolder maildrop")
        );
        std::fs::set_permissions(
            maildrop::dir(t.path()),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        assert!(check_folder(t.path(), gid).is_err(), "wrong mode");
        // A symlink to a maildrop is not one.
        let u = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(maildrop::dir(t.path()), u.path().join("maildrop")).unwrap();
        maildrop::create(t.path()).unwrap();
        assert!(
            check_folder(u.path(), gid)
                .unwrap_err()
                .contains("not a directory")
        );
    }
}
