//! Queue files on disk: `data_dir/queue/msg/<id>` holds one message's bytes exactly
//! as accepted. Writing follows the commit point in design.md: write into
//! `queue/tmp/`, fsync the file, rename into `queue/msg/`, and (once per batch, by the
//! committer) fsync `queue/msg/` before the database row is committed.
//!
//! Owns only these files; knows nothing of SQL or SMTP.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The queue's folders under `data_dir/queue/`.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub msg: PathBuf,
    pub tmp: PathBuf,
}

impl Store {
    pub fn new(data_dir: &Path) -> Store {
        let root = data_dir.join("queue");
        Store {
            msg: root.join("msg"),
            tmp: root.join("tmp"),
            root,
        }
    }

    /// Creates the folders (owner-only for message bodies; the root stays
    /// traversable so the control socket can be reached by local users).
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for (d, mode) in [(&self.root, 0o755), (&self.msg, 0o700), (&self.tmp, 0o700)] {
            if !d.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(d)
                    .map_err(|e| named(d, e))?;
            }
        }
        Ok(())
    }

    pub fn path(&self, id: &str) -> PathBuf {
        self.msg.join(id)
    }

    /// Writes `bytes` as `tmp/<id>`, fsyncs it and renames it to `msg/<id>`. The
    /// directory fsync that makes the name durable is [`Store::sync_dir`], done once
    /// per group-commit batch.
    pub fn write(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.tmp.join(id);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| named(&tmp, e))?;
        f.write_all(bytes).map_err(|e| named(&tmp, e))?;
        f.sync_all().map_err(|e| named(&tmp, e))?;
        drop(f);
        let dst = self.path(id);
        std::fs::rename(&tmp, &dst).map_err(|e| named(&dst, e))
    }

    /// fsync of `queue/msg/`: after it, every rename done before is durable.
    pub fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.msg)
            .and_then(|d| d.sync_all())
            .map_err(|e| named(&self.msg, e))
    }

    pub fn read(&self, id: &str) -> std::io::Result<Vec<u8>> {
        let p = self.path(id);
        std::fs::read(&p).map_err(|e| named(&p, e))
    }

    /// Removes a message file; a missing file is not an error.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(named(&self.path(id), e)),
            _ => Ok(()),
        }
    }

    /// Names in `msg/` (start-up check against the database).
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.msg).map_err(|e| named(&self.msg, e))? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }

    /// Empties `tmp/`: anything there was never acknowledged.
    pub fn clean_tmp(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for e in std::fs::read_dir(&self.tmp).map_err(|e| named(&self.tmp, e))? {
            let _ = std::fs::remove_file(e?.path());
            n += 1;
        }
        Ok(n)
    }
}

pub(crate) fn named(p: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        s.create().unwrap();
        s.write("ABC", b"hello").unwrap();
        s.sync_dir().unwrap();
        assert_eq!(s.read("ABC").unwrap(), b"hello");
        assert_eq!(s.list().unwrap(), vec!["ABC"]);
        assert!(s.write("ABC", b"again").is_ok() || s.list().unwrap().len() == 1);
        s.remove("ABC").unwrap();
        s.remove("ABC").unwrap();
        assert!(s.read("ABC").is_err());
    }
}
