//! Reading a fetchmailrc (and a `.fetchids`) from disk: the permission rule, the file
//! owner as fetchmail's "invoking user", and merging with `[[accounts]]` for the fetch
//! scheduler. The only part of the importer that does I/O.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Import, Options, ParseError, Warning, parse};
use crate::config::{AccountConfig, Config};

/// A fetchmailrc larger than this is not one (bounds memory on a wrong path).
pub const MAX_RC_BYTES: u64 = 4 << 20;
/// Same for `.fetchids` (a million UIDs is about 60 MB; far above any real mailbox).
pub const MAX_IDS_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchmailrcError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("{}: larger than {} bytes, not a fetchmail file", .0.display(), MAX_RC_BYTES)]
    TooLarge(PathBuf),
    /// Holds a password and is readable by group or others.
    #[error("{0}")]
    Insecure(String),
    #[error("{0}")]
    Parse(#[from] ParseError),
}

fn read_bounded(path: &Path, max: u64) -> Result<(Vec<u8>, std::fs::Metadata), FetchmailrcError> {
    let read_err = |e| FetchmailrcError::Read {
        file: path.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(FetchmailrcError::NotAFile(path.to_path_buf()));
    }
    if meta.len() > max {
        return Err(FetchmailrcError::TooLarge(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    Ok((bytes, meta))
}

/// The login name of `uid`, else `$USER`, else `root`.
fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "root".to_string())
}

/// Reads and imports the fetchmailrc at `path`. fetchmail runs as the file's owner (it
/// insists on that), so the owner is the default login and local name.
///
/// Refuses the file when it holds an inline password and group or others may read it
/// (fetchmail refuses any such file; a file holding only `passwordfile` references has
/// no secret to protect, so zolder lets it be, which keeps committed examples usable).
pub fn read_fetchmailrc(path: &Path, hostname: Option<&str>) -> Result<Import, FetchmailrcError> {
    let (bytes, meta) = read_bounded(path, MAX_RC_BYTES)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let opts = Options {
        invoking_user: user_name(meta.uid()),
        base_dir,
        hostname: hostname.map(str::to_string),
    };
    let mut import = parse(&bytes, path, &opts)?;
    if import.has_inline_secret() && meta.permissions().mode() & 0o077 != 0 {
        let e = crate::config::check_secret_file(path)
            .err()
            .unwrap_or_else(|| {
                format!(
                    "{}: holds a password but is readable by group or others",
                    path.display()
                )
            });
        return Err(FetchmailrcError::Insecure(format!(
            "{e} (fetchmail refuses it too)"
        )));
    }
    let lacking = import.accounts.iter().any(|ia| {
        let a = &ia.account;
        a.password.is_none() && a.password_file.is_none() && a.password_command.is_none()
    });
    if lacking && let Some(netrc) = netrc_path(meta.uid()).filter(|p| p.is_file()) {
        use_netrc(&mut import, &netrc, path);
    }
    Ok(import)
}

/// `$NETRC`, else the rcfile owner's `~/.netrc`, else `$HOME/.netrc`.
fn netrc_path(owner: u32) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
        .ok()
        .flatten()
        .map(|u| u.dir)
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .map(|h| h.join(".netrc"))
}

/// Takes missing passwords from a `.netrc`, unless others may read it.
fn use_netrc(import: &mut Import, netrc: &Path, rc: &Path) {
    let warn = |message: String| Warning {
        file: netrc.to_path_buf(),
        line: 1,
        keyword: "password".into(),
        message,
    };
    if let Err(e) = crate::config::check_secret_file(netrc) {
        import
            .warnings
            .push(warn(format!("not used for the missing passwords: {e}")));
        return;
    }
    match read_bounded(netrc, MAX_RC_BYTES) {
        Ok((bytes, _)) => {
            let entries = super::netrc::parse_netrc(&String::from_utf8_lossy(&bytes));
            super::netrc::apply(import, &entries, netrc, rc);
        }
        Err(e) => import.warnings.push(warn(format!("not used: {e}"))),
    }
}

/// The accounts the fetch scheduler should run: `[[accounts]]` from zolder.toml plus
/// those of `fetchmailrc = "PATH"`, with the fetchmailrc's warnings. An `[[accounts]]`
/// entry with the same name as a fetchmailrc account replaces it.
///
/// Call it at start, on SIGHUP and when the fetchmailrc's mtime changes. On error keep
/// running the accounts you have and log the error: unlike fetchmail, a broken edit must
/// not stop the mail.
pub fn load_accounts(cfg: &Config) -> Result<(Vec<AccountConfig>, Vec<Warning>), FetchmailrcError> {
    let mut accounts = cfg.accounts.clone();
    let Some(path) = &cfg.fetchmailrc else {
        return Ok((accounts, Vec::new()));
    };
    let import = read_fetchmailrc(path, Some(&cfg.hostname))?;
    let mut warnings = import.all_warnings();
    for ia in import.accounts {
        let mut a = ia.account;
        if a.source.is_none() {
            a.source = Some(path.clone());
        }
        if accounts
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(&a.name))
        {
            warnings.push(Warning {
                file: path.clone(),
                line: ia.line,
                keyword: "poll".into(),
                message: format!(
                    "account `{}` is also in {}: the [[accounts]] entry is used",
                    a.name,
                    cfg.path.display()
                ),
            });
            continue;
        }
        accounts.push(a);
    }
    Ok((accounts, warnings))
}

/// A stamp of the fetchmailrc (modification time and size) for noticing edits: reload
/// with [`load_accounts`] when it differs from the last one. `None` without a
/// `fetchmailrc` key or when the file cannot be read (then `load_accounts` says why).
pub fn fetchmailrc_stamp(cfg: &Config) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(cfg.fetchmailrc.as_ref()?).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Where fetchmail keeps `.fetchids` when the file does not say (`set idfile`):
/// `$FETCHMAILHOME/.fetchids`, the rcfile owner's `~/.fetchids`, and the Debian
/// system-wide daemon's places. Only existing files are returned.
pub fn idfile_candidates(rc: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(h) = std::env::var_os("FETCHMAILHOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(h).join(".fetchids"));
    }
    if let Ok(meta) = std::fs::metadata(rc)
        && let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
    {
        out.push(u.dir.join(".fetchids"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(h).join(".fetchids"));
    }
    out.push(PathBuf::from("/var/lib/fetchmail/.fetchids"));
    out.push(PathBuf::from("/var/lib/fetchmail/.fetchmail-UIDL-cache"));
    out.push(PathBuf::from("/var/mail/.fetchmail-UIDL-cache"));
    let mut seen = Vec::new();
    out.into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            let fresh = !seen.contains(p);
            seen.push(p.clone());
            fresh
        })
        .collect()
}

/// For `fetchmailrc = "PATH"` used live: the `.fetchids` fetchmail left (from `set
/// idfile`, else the usual places) and the seen UIDLs it holds for each POP3 account, so
/// that the fetcher can seed an account's seen set the first time it meets it
/// (`db::fetchids::seed_seen_if_new`). `Ok(None)` without a fetchmailrc or a `.fetchids`.
pub fn live_seen_state(
    cfg: &Config,
) -> Result<Option<(PathBuf, super::fetchids::SeenPlan)>, FetchmailrcError> {
    let Some(rc) = &cfg.fetchmailrc else {
        return Ok(None);
    };
    let import = read_fetchmailrc(rc, Some(&cfg.hostname))?;
    let idfile = import
        .idfile
        .clone()
        .filter(|p| p.is_file())
        .or_else(|| idfile_candidates(rc).into_iter().next());
    let Some(idfile) = idfile else {
        return Ok(None);
    };
    let ids = read_fetchids(&idfile)?;
    Ok(Some((idfile, super::fetchids::plan(&import, &ids))))
}

/// Reads a `.fetchids` file (bounded).
pub fn read_fetchids(path: &Path) -> Result<super::FetchIds, FetchmailrcError> {
    let (bytes, _) = read_bounded(path, MAX_IDS_BYTES)?;
    Ok(super::parse_fetchids(&bytes))
}

/// What `zolder check` reports about `fetchmailrc = "PATH"`: a file that cannot be used
/// (an error naming file, line and keyword), every import warning, and the problems of
/// each imported account as if it were an `[[accounts]]` entry.
pub fn problems(cfg: &Config) -> Vec<crate::config::Problem> {
    use crate::config::Problem;
    if cfg.fetchmailrc.is_none() {
        return Vec::new();
    }
    match load_accounts(cfg) {
        Err(e) => vec![
            Problem::error("fetchmailrc", e.to_string())
                .hint("zolder keeps polling the accounts it had until the file is fixed"),
        ],
        Ok((accounts, warnings)) => {
            let mut out: Vec<Problem> = warnings
                .iter()
                .map(|w| Problem::warning("fetchmailrc", w.to_string()))
                .collect();
            // Accounts from the fetchmailrc carry their source (the rc, or the .netrc
            // that gave their password); [[accounts]] entries never do.
            for a in accounts.iter().filter(|a| a.source.is_some()) {
                out.extend(a.validate(&format!("fetchmailrc[{}]", a.name), cfg));
            }
            out
        }
    }
}
