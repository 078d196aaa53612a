//! One Maildir folder on disk: `tmp/`, `new/`, `cur/`, unique names, the commit step
//! (tmp → fsync → rename into `new/` or `cur/` → fsync the directory) and the `:2,`
//! info suffix that carries flags.
//!
//! Knows nothing of the index or of users; [`super::Spool`] decides what to write and
//! records it. A file is visible to readers only once complete: it is written and
//! fsynced under `tmp/` (created with O_EXCL, so two writers never share a name) and
//! then renamed, which is atomic. Postfix's `local/maildir.c` is the model.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a file sits: `new/` (not yet seen by any client, no info) or `cur/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    New,
    Cur,
}

impl Sub {
    pub fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// A file found in a Maildir listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name without `:2,` info.
    pub base: String,
    pub sub: Sub,
    /// The info letters after `:2,` (files in `cur/` only).
    pub info: Option<String>,
}

impl Entry {
    /// The file name in its subdirectory.
    pub fn file_name(&self) -> String {
        match &self.info {
            Some(i) => format!("{}:2,{}", self.base, i),
            None => self.base.clone(),
        }
    }
}

/// One Maildir folder (the root `Maildir/` or a Maildir++ `.Name/` below it).
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    pub fn new(root: impl Into<PathBuf>) -> Maildir {
        Maildir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, sub: Sub) -> PathBuf {
        self.root.join(sub.dir())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Creates `tmp/`, `new/`, `cur/` (and, for a Maildir++ subfolder, the
    /// `maildirfolder` marker Courier and Dovecot expect). Idempotent.
    pub fn create(&self, subfolder: bool) -> io::Result<()> {
        for d in ["tmp", "new", "cur"] {
            fs::create_dir_all(self.root.join(d))?;
        }
        if subfolder {
            let marker = self.root.join("maildirfolder");
            if !marker.exists() {
                File::create(&marker)?;
            }
        }
        Ok(())
    }

    pub fn exists(&self) -> bool {
        self.root.join("cur").is_dir() && self.root.join("new").is_dir()
    }

    /// Writes `bytes` to `tmp/<name>` (O_EXCL) and fsyncs it. `mtime`, when given,
    /// becomes the file's modification time (Dovecot reads INTERNALDATE from it).
    /// On error nothing is left behind.
    pub fn write_tmp(&self, name: &str, bytes: &[u8], mtime: Option<i64>) -> io::Result<PathBuf> {
        let (path, f) = self.write_tmp_unsynced(name, bytes, mtime)?;
        if let Err(e) = f.sync_all() {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// [`write_tmp`](Self::write_tmp) without the fsync: the caller must fsync the
    /// returned file (see [`sync_files`]) before publishing it, or remove it.
    pub fn write_tmp_unsynced(
        &self,
        name: &str,
        bytes: &[u8],
        mtime: Option<i64>,
    ) -> io::Result<(PathBuf, File)> {
        let path = self.tmp_dir().join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let res = (|| {
            f.write_all(bytes)?;
            if let Some(t) = mtime.filter(|t| *t > 0) {
                f.set_modified(UNIX_EPOCH + Duration::from_secs(t as u64))?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok((path, f))
    }

    /// Renames `tmp/<name>` to its place (`new/<name>`, or `cur/<name>:2,<info>` when
    /// `info` is given). The caller fsyncs the target directory (once per batch).
    pub fn publish(&self, name: &str, info: Option<&str>) -> io::Result<PathBuf> {
        let target = self.target(name, info);
        fs::rename(self.tmp_dir().join(name), &target)?;
        Ok(target)
    }

    /// Like [`publish`](Self::publish) for a name that may already exist (a keyed
    /// delivery repeated): `tmp/<tmp>` is hard-linked to `new/<name>` (or `cur/`), which
    /// never replaces an existing file, then removed. `None` when the target was
    /// already there.
    pub fn publish_link(
        &self,
        tmp: &str,
        name: &str,
        info: Option<&str>,
    ) -> io::Result<Option<PathBuf>> {
        let target = self.target(name, info);
        let from = self.tmp_dir().join(tmp);
        let res = fs::hard_link(&from, &target);
        let _ = fs::remove_file(&from);
        match res {
            Ok(()) => Ok(Some(target)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where [`publish`](Self::publish) puts `name`.
    pub fn target(&self, name: &str, info: Option<&str>) -> PathBuf {
        match info {
            Some(i) => self.dir(Sub::Cur).join(format!("{name}:2,{i}")),
            None => self.dir(Sub::New).join(name),
        }
    }

    /// Finds the file of message `base`. `info` is what the index believes; when the
    /// file is not where expected (another program changed its flags), `cur/` is
    /// scanned for the base name.
    pub fn find(&self, base: &str, info: &str) -> io::Result<Option<(PathBuf, Entry)>> {
        let cur = self.dir(Sub::Cur).join(format!("{base}:2,{info}"));
        if cur.exists() {
            return Ok(Some((
                cur,
                Entry {
                    base: base.to_string(),
                    sub: Sub::Cur,
                    info: Some(info.to_string()),
                },
            )));
        }
        let new = self.dir(Sub::New).join(base);
        if new.exists() {
            return Ok(Some((
                new,
                Entry {
                    base: base.to_string(),
                    sub: Sub::New,
                    info: None,
                },
            )));
        }
        for e in self.list_sub(Sub::Cur)? {
            if e.base == base {
                return Ok(Some((self.dir(Sub::Cur).join(e.file_name()), e)));
            }
        }
        Ok(None)
    }

    /// Every message file in `new/` then `cur/`. Listing `new/` first means a file that
    /// moves from `new/` to `cur/` meanwhile is seen at least once.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        let mut out = self.list_sub(Sub::New)?;
        out.extend(self.list_sub(Sub::Cur)?);
        Ok(out)
    }

    fn list_sub(&self, sub: Sub) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(self.dir(sub)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for ent in rd {
            let ent = ent?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            out.push(parse_name(name, sub));
        }
        Ok(out)
    }

    /// Removes files in `tmp/` older than `max_age`: what writers killed mid-message
    /// left (the Maildir convention allows 36 hours). Returns how many went.
    pub fn clean_tmp(&self, max_age: Duration) -> io::Result<usize> {
        let mut n = 0;
        let rd = match fs::read_dir(self.tmp_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for ent in rd.flatten() {
            let old = ent
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > max_age);
            if old && fs::remove_file(ent.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Moves a message to `cur/<base>:2,<info>` (flags changed). Returns the new path.
    pub fn set_info(&self, from: &Path, base: &str, info: &str) -> io::Result<PathBuf> {
        let to = self.dir(Sub::Cur).join(format!("{base}:2,{info}"));
        if from != to {
            fs::rename(from, &to)?;
        }
        Ok(to)
    }
}

/// Splits a file name into base and info.
pub fn parse_name(name: &str, sub: Sub) -> Entry {
    match (sub, name.rfind(":2,")) {
        (Sub::Cur, Some(i)) => Entry {
            base: name[..i].to_string(),
            sub,
            info: Some(name[i + 3..].to_string()),
        },
        _ => Entry {
            base: name.to_string(),
            sub,
            info: None,
        },
    }
}

/// fsyncs a directory, so the renames and unlinks in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Most fsyncs [`sync_files`] keeps in flight at once.
pub const SYNC_THREADS: usize = 16;

/// fsyncs every file, several at a time, and returns one result per file (in order).
///
/// Why threads: one fsync after another costs a journal commit and a disk flush each
/// (ext4 manages ~200 a second on a shared virtual disk), while fsyncs that are in
/// flight together share one journal commit (jbd2 batches them), so a batch of files
/// becomes durable for about the price of one. Every file still gets its own fsync:
/// durability does not depend on how the filesystem groups them.
pub fn sync_files(files: &[&File]) -> Vec<io::Result<()>> {
    let threads = files.len().min(SYNC_THREADS);
    if threads <= 1 {
        return files.iter().map(|f| f.sync_all()).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<io::Result<()>>> = (0..files.len()).map(|_| None).collect();
    let done = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        mine.push((i, f.sync_all()));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    for (i, r) in done {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("fsync thread failed"))))
        .collect()
}

/// A Maildir-safe host name: '/' and ':' escaped as the Maildir spec says.
pub fn safe_hostname(h: &str) -> String {
    h.replace('/', "\\057").replace(':', "\\072")
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name: `<secs>.M<usec>P<pid>Q<n>R<random>.<host>,S=<bytes>,W=<crlf bytes>`
/// (the Dovecot-style `S=`/`W=` let POP3 and a directory sync learn sizes without
/// reading the file).
pub fn unique_name(host: &str, size: u64, wsize: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}R{:016x}.{},S={},W={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n,
        rand::random::<u64>(),
        safe_hostname(host),
        size,
        wsize
    )
}

/// The deterministic name of a delivery that carries an idempotency key: the same
/// (user, mailbox, key, copy) always gives the same name, so a delivery repeated after
/// a crash between rename and index commit finds the file already there.
pub fn keyed_name(host: &str, digest_hex: &str) -> String {
    format!("K{}.{}", digest_hex, safe_hostname(host))
}

/// The `W=` (CRLF size) hint in a name, if any.
pub fn name_wsize(base: &str) -> Option<u64> {
    base.split(',')
        .find_map(|p| p.strip_prefix("W="))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_find() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::new(d.path().join("Maildir"));
        md.create(false).unwrap();
        let name = unique_name("h:o/st", 3, 4);
        assert!(name.contains("h\\072o\\057st"));
        md.write_tmp(&name, b"hi\n", Some(1_000_000)).unwrap();
        // O_EXCL: the same tmp name twice fails.
        assert!(md.write_tmp(&name, b"x", None).is_err());
        let p = md.publish(&name, None).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hi\n");
        let (found, e) = md.find(&name, "").unwrap().unwrap();
        assert_eq!((found, e.sub), (p.clone(), Sub::New));
        let moved = md.set_info(&p, &name, "S").unwrap();
        // The index thought "FS": find still locates it by scanning cur/.
        let (found, e) = md.find(&name, "FS").unwrap().unwrap();
        assert_eq!(found, moved);
        assert_eq!(e.info.as_deref(), Some("S"));
        assert_eq!(md.list().unwrap().len(), 1);
        assert_eq!(name_wsize(&name), Some(4));
        assert!(fs::read_dir(md.tmp_dir()).unwrap().next().is_none());
    }
}
