//! `zolder backup`, `zolder restore`, `zolder backup --verify`: snapshots of data_dir
//! taken while the daemon runs and mail arrives.
//!
//! # Layout
//! ```text
//! DEST/                     a folder of snapshots (rsync it off the box)
//!   20261203T030000Z/       one snapshot
//!     MANIFEST              "zolder-backup 1", then "<sha256> <size> <mtime> <path>"
//!     zolder.db             the database, from SQLite's online backup API
//!     files/…               everything else under data_dir, same relative paths
//!   latest -> 20261203T030000Z
//! ```
//!
//! Order: the database first, then the files. Mail is written before it is indexed
//! (file durable, then the index row), so every message the snapshot's database
//! knows was on disk before the file walk began; files that arrive later are copied
//! too and are simply not indexed yet (the spool finds them like any unindexed file).
//!
//! Files that are only ever renamed, never rewritten — Maildir messages, queue and
//! quarantine files — are hard-linked from data_dir when DEST is on the same file
//! system (free, like rsnapshot), else copied. Files rewritten in place (mbox spools,
//! Sieve scripts, spam word lists, certificates) are always copied, so the snapshot
//! never changes under it. `--incremental` first looks in `DEST/latest`: a file there
//! with the same path, size and mtime is hard-linked from it with its recorded
//! checksum, so a nightly run copies and hashes only what is new.
//!
//! Not copied: the live database files (`zolder.db`, `-wal`, `-shm`), sockets, the
//! runner lock, and unfinished files (Maildir `tmp/`, dot-named temporaries).

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "MANIFEST";
const MAGIC: &str = "zolder-backup 1";

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sha256: String,
    pub size: u64,
    pub mtime: i64,
    /// Relative to the snapshot ("zolder.db", "files/mail/…").
    pub path: String,
}

/// What a backup did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    pub linked: usize,
    pub copied: usize,
    pub reused: usize,
    pub snapshot: PathBuf,
}

fn io(p: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", p.display())
}

fn sha256_file(p: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(p).map_err(|e| io(p, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(p, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Files under data_dir worth keeping, as relative paths.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
    for e in rd {
        let e = e.map_err(|e| io(&dir, e))?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        let r = rel.join(&name);
        let top = rel.as_os_str().is_empty();
        if n.starts_with(".tmp") {
            continue; // temporaries (.tmp-…); Maildir++ folders (.Sent, .Junk) stay
        }
        if top && (n == "zolder.db" || n.starts_with("zolder.db-")) {
            continue;
        }
        let ft = match e.file_type() {
            Ok(t) => t,
            Err(_) => continue,
        };
        if ft.is_dir() {
            // Maildir tmp/: deliveries in progress, not yet mail.
            if n == "tmp" && root.join(rel).join("new").is_dir() {
                continue;
            }
            walk(root, &r, out)?;
        } else if ft.is_file() {
            if r == Path::new("queue/runner.lock") {
                continue;
            }
            out.push(r);
        }
    }
    Ok(())
}

/// Only renamed, never rewritten: may be shared by hard link.
fn immutable(rel: &Path) -> bool {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    matches!(
        first.as_deref(),
        Some("mail" | "queue" | "quarantine" | "maildrop")
    )
}

/// Reads a snapshot's manifest.
pub fn read_manifest(snap: &Path) -> Result<Vec<Entry>, String> {
    let p = snap.join(MANIFEST);
    let f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| io(&p, e))?;
        if i == 0 {
            if line != MAGIC {
                return Err(format!("{}:1: not a zolder backup manifest", p.display()));
            }
            continue;
        }
        let mut w = line.splitn(4, ' ');
        let bad = || format!("{}:{}: bad manifest line", p.display(), i + 1);
        let (Some(h), Some(s), Some(m), Some(path)) = (w.next(), w.next(), w.next(), w.next())
        else {
            return Err(bad());
        };
        if path.contains("..") || path.starts_with('/') {
            return Err(bad());
        }
        out.push(Entry {
            sha256: h.to_string(),
            size: s.parse().map_err(|_| bad())?,
            mtime: m.parse().map_err(|_| bad())?,
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// The snapshot `p` names: itself when it holds a MANIFEST, else its `latest`.
pub fn resolve(p: &Path) -> PathBuf {
    if p.join(MANIFEST).exists() {
        p.to_path_buf()
    } else {
        p.join("latest")
    }
}

/// Writes a new snapshot of `data_dir` into `dest` (a folder of snapshots).
pub fn backup(
    data_dir: &Path,
    db_path: &Path,
    dest: &Path,
    incremental: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Summary, String> {
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    let name = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let snap = dest.join(&name);
    let work = dest.join(format!(".{name}.partial"));
    std::fs::create_dir(&work).map_err(|e| io(&work, e))?;
    let earlier: HashMap<String, Entry> = if incremental {
        let latest = dest.join("latest");
        match read_manifest(&latest) {
            Ok(v) => v.into_iter().map(|e| (e.path.clone(), e)).collect(),
            Err(e) if latest.exists() => return Err(format!("--incremental: {e}")),
            Err(_) => HashMap::new(),
        }
    } else {
        HashMap::new()
    };
    let mut sum = Summary::default();
    let mut entries = Vec::new();

    // 1. The database, consistent, while the daemon writes.
    let db_out = work.join("zolder.db");
    crate::db::backup_to(db_path, &db_out, &mut |rem, total| {
        if total > 0 && rem % 4096 == 0 {
            progress(&format!("database: {} of {total} pages", total - rem));
        }
    })
    .map_err(|e| e.to_string())?;
    let m = std::fs::metadata(&db_out).map_err(|e| io(&db_out, e))?;
    entries.push(Entry {
        sha256: sha256_file(&db_out)?,
        size: m.len(),
        mtime: m.mtime(),
        path: "zolder.db".into(),
    });
    sum.bytes += m.len();

    // 2. The files.
    let mut files = Vec::new();
    walk(data_dir, Path::new(""), &mut files)?;
    let latest = dest.join("latest");
    for rel in files {
        let src = data_dir.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&src) else {
            continue; // gone since the walk (expunged, sent): not part of the snapshot
        };
        let key = format!("files/{}", rel.display());
        let out = work.join(&key);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let prev = earlier
            .get(&key)
            .filter(|e| e.size == meta.len() && e.mtime == meta.mtime());
        let sha = if let Some(e) = prev
            && std::fs::hard_link(latest.join(&key), &out).is_ok()
        {
            sum.reused += 1;
            e.sha256.clone()
        } else {
            if immutable(&rel) && std::fs::hard_link(&src, &out).is_ok() {
                sum.linked += 1;
            } else {
                match std::fs::copy(&src, &out) {
                    Ok(_) => sum.copied += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&src, e)),
                }
            }
            sha256_file(&out)?
        };
        entries.push(Entry {
            sha256: sha,
            size: meta.len(),
            mtime: meta.mtime(),
            path: key,
        });
        sum.files += 1;
        sum.bytes += meta.len();
        if sum.files % 1000 == 0 {
            progress(&format!(
                "{} files, {} MB ({} linked, {} copied, {} from the last snapshot)",
                sum.files,
                sum.bytes / 1_000_000,
                sum.linked,
                sum.copied,
                sum.reused
            ));
        }
    }

    // 3. The manifest, then the snapshot is complete: renamed into place, `latest`.
    let mp = work.join(MANIFEST);
    let mut f = std::fs::File::create(&mp).map_err(|e| io(&mp, e))?;
    let mut text = format!("{MAGIC}\n");
    for e in &entries {
        text.push_str(&format!("{} {} {} {}\n", e.sha256, e.size, e.mtime, e.path));
    }
    f.write_all(text.as_bytes()).map_err(|e| io(&mp, e))?;
    f.sync_all().map_err(|e| io(&mp, e))?;
    std::fs::rename(&work, &snap).map_err(|e| io(&snap, e))?;
    let tmp_link = dest.join(".latest.new");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&name, &tmp_link).map_err(|e| io(&tmp_link, e))?;
    std::fs::rename(&tmp_link, &latest).map_err(|e| io(&latest, e))?;
    sum.snapshot = snap;
    Ok(sum)
}

/// Checks every file of a snapshot against its manifest, and the database's integrity.
/// Returns the problems (empty: sound) and the number of files checked.
pub fn verify(snap: &Path) -> Result<(Vec<String>, usize), String> {
    let entries = read_manifest(snap)?;
    let mut problems = Vec::new();
    for e in &entries {
        let p = snap.join(&e.path);
        match std::fs::metadata(&p) {
            Err(err) => problems.push(format!("{}: {err}", e.path)),
            Ok(m) if m.len() != e.size => problems.push(format!(
                "{}: {} bytes, manifest says {}",
                e.path,
                m.len(),
                e.size
            )),
            Ok(_) => match sha256_file(&p) {
                Ok(h) if h == e.sha256 => {}
                Ok(_) => problems.push(format!("{}: checksum differs from the manifest", e.path)),
                Err(err) => problems.push(err),
            },
        }
    }
    match crate::db::integrity_problems(&snap.join("zolder.db")) {
        Ok(v) => problems.extend(v.into_iter().map(|p| format!("zolder.db: {p}"))),
        Err(e) => problems.push(e.to_string()),
    }
    Ok((problems, entries.len()))
}

/// Restores a verified snapshot into `data_dir`, which must be empty or absent. Files
/// are copied (never linked: the backup must not change with the restored data).
pub fn restore(snap: &Path, data_dir: &Path, db_path: &Path) -> Result<usize, String> {
    if let Ok(mut rd) = std::fs::read_dir(data_dir)
        && rd.next().is_some()
    {
        return Err(format!(
            "{}: not empty; restore only into an empty data_dir",
            data_dir.display()
        ));
    }
    let (problems, _) = verify(snap)?;
    if !problems.is_empty() {
        return Err(format!(
            "{}: the snapshot does not verify: {}",
            snap.display(),
            problems.join("; ")
        ));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    let mut n = 0;
    for e in read_manifest(snap)? {
        let from = snap.join(&e.path);
        let to = match e.path.strip_prefix("files/") {
            Some(rel) => data_dir.join(rel),
            None if e.path == "zolder.db" => db_path.to_path_buf(),
            None => continue,
        };
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).map_err(|e| io(p, e))?;
        }
        std::fs::copy(&from, &to).map_err(|e| io(&from, e))?;
        n += 1;
    }
    // Maildirs need their tmp/ (not backed up) to take deliveries.
    let mail = data_dir.join("mail");
    let mut dirs = Vec::new();
    collect_maildirs(&mail, &mut dirs);
    for d in dirs {
        let _ = std::fs::create_dir_all(d.join("tmp"));
        let _ = std::fs::create_dir_all(d.join("cur"));
    }
    let f = std::fs::File::open(data_dir).map_err(|e| io(data_dir, e))?;
    f.sync_all().map_err(|e| io(data_dir, e))?;
    Ok(n)
}

fn collect_maildirs(d: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(d) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") {
                out.push(d.to_path_buf());
            } else {
                collect_maildirs(&p, out);
            }
        }
    }
}
