//! One mbox file (`data_dir/spool/<user>`, the `/var/spool/mail/<user>` format):
//! locking, mboxrd `From_` quoting, appending, reading back, scanning, and the
//! rewrite an expunge needs.
//!
//! Knows nothing of the index; [`super::Spool`] records what is appended and handles
//! recovery of appends a crashed writer left behind.
//!
//! # Locking
//! Compatible with mutt, procmail and Dovecot's defaults: first a dot-lock
//! (`<mbox>.lock`, created with `link(2)` from a unique file so it works on NFS too,
//! holding our pid; a lock whose pid is gone or that is older than five minutes is
//! stale and removed), then a write lock with `fcntl(2)`. We use open-file-description
//! locks (`F_OFD_SETLK`): they conflict with the classic POSIX locks other programs
//! take, but unlike those they are not dropped when some other thread of this process
//! closes the same file, and they exclude our own threads from each other.
//!
//! # Format
//! Each message is `From <sender> <asctime>\n`, the message with every line matching
//! `^>*From ` given one more `>` (mboxrd), and a blank line. The index stores the offset
//! of the message bytes (after the From_ line) and their quoted length; reading undoes
//! the quoting, so a message reads back byte for byte.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{FcntlArg, fcntl};

/// An held mbox lock: the dot-lock file plus an fcntl write lock on `file`.
/// Dropping it releases both.
#[derive(Debug)]
pub struct MboxLock {
    pub path: PathBuf,
    pub file: File,
    dotlock: PathBuf,
}

/// How long a dot-lock may sit before it is considered stale whatever its pid says
/// (procmail's default `LOCKTIMEOUT` is 17 minutes; mutt does not break locks;
/// five minutes is liblockfile's default).
const STALE_AFTER: Duration = Duration::from_secs(300);

impl MboxLock {
    /// Locks (creating if needed) the mbox at `path`, waiting at most `timeout`.
    pub fn acquire(path: &Path, timeout: Duration) -> io::Result<MboxLock> {
        let deadline = Instant::now() + timeout;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let dotlock = dotlock_path(path);
        take_dotlock(&dotlock, deadline)?;
        let locked = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)?;
            let mut delay = Duration::from_millis(2);
            loop {
                let fl = libc::flock {
                    l_type: libc::F_WRLCK as libc::c_short,
                    l_whence: libc::SEEK_SET as libc::c_short,
                    l_start: 0,
                    l_len: 0,
                    l_pid: 0,
                };
                match fcntl(&file, FcntlArg::F_OFD_SETLK(&fl)) {
                    Ok(_) => return Ok(file),
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
                        if Instant::now() >= deadline {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("{}: fcntl lock held by another program", path.display()),
                            ));
                        }
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_millis(200));
                    }
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
        })();
        match locked {
            Ok(file) => Ok(MboxLock {
                path: path.to_path_buf(),
                file,
                dotlock,
            }),
            Err(e) => {
                let _ = fs::remove_file(&dotlock);
                Err(e)
            }
        }
    }

    /// Current length of the locked file.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl Drop for MboxLock {
    fn drop(&mut self) {
        // Closing `file` (after this) releases the fcntl lock.
        let _ = fs::remove_file(&self.dotlock);
    }
}

pub fn dotlock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

fn take_dotlock(dotlock: &Path, deadline: Instant) -> io::Result<()> {
    let unique = {
        let mut s = dotlock.as_os_str().to_os_string();
        s.push(format!(
            ".{}.{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        PathBuf::from(s)
    };
    let mut delay = Duration::from_millis(2);
    loop {
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&unique)?;
            // liblockfile format: the pid in ASCII.
            writeln!(f, "{}", std::process::id())?;
        }
        let linked = fs::hard_link(&unique, dotlock);
        let _ = fs::remove_file(&unique);
        match linked {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        break_if_stale(dotlock);
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{}: dot-lock held by another program", dotlock.display()),
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// Removes `dotlock` when the process that made it is gone or it is too old.
fn break_if_stale(dotlock: &Path) {
    let Ok(meta) = fs::metadata(dotlock) else {
        return;
    };
    let old = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > STALE_AFTER);
    let dead = fs::read_to_string(dotlock)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
        .is_some_and(|pid| {
            matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            )
        });
    if old || dead {
        // Only remove the file we judged (not one a third party put there since).
        if fs::metadata(dotlock).is_ok_and(|m| m.ino() == meta.ino()) {
            tracing::warn!(lock = %dotlock.display(), "removing stale mbox dot-lock");
            let _ = fs::remove_file(dotlock);
        }
    }
}

/// True if `line` (from a line start) is `>*From `.
fn is_from_line(line: &[u8]) -> bool {
    let stripped = line
        .iter()
        .position(|&b| b != b'>')
        .map(|i| &line[i..])
        .unwrap_or(&[]);
    stripped.starts_with(b"From ")
}

/// mboxrd quoting: one more `>` before each line matching `^>*From `.
pub fn quote(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if is_from_line(line) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out
}

/// Undoes [`quote`]: one `>` less before each line matching `^>+From `.
pub fn unquote(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len());
    for line in stored.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'>') && is_from_line(line) {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The From_ line for `sender` at unix time `date` (asctime, UTC).
pub fn from_line(sender: Option<&str>, date: i64) -> String {
    let s = sender
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or("MAILER-DAEMON");
    let t = chrono::DateTime::from_timestamp(date, 0).unwrap_or_default();
    format!("From {s} {}\n", t.format("%a %b %e %H:%M:%S %Y"))
}

/// What one append adds to the file.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The bytes to append.
    pub bytes: Vec<u8>,
    /// Where the message bytes start within `bytes`.
    pub msg_start: u64,
    /// The quoted message length.
    pub msg_len: u64,
}

/// Builds the bytes to append after a file whose last two bytes are `tail` (empty
/// for an empty file): a separating newline if the file lacks its blank line, the
/// From_ line, the quoted message, and the closing blank line.
pub fn chunk(tail: &[u8], sender: Option<&str>, date: i64, msg: &[u8]) -> Chunk {
    let mut bytes = Vec::with_capacity(msg.len() + 128);
    match tail {
        [] => {}
        [.., b'\n', b'\n'] => {}
        [.., b'\n'] => bytes.push(b'\n'),
        _ => bytes.extend_from_slice(b"\n\n"),
    }
    bytes.extend_from_slice(from_line(sender, date).as_bytes());
    let msg_start = bytes.len() as u64;
    let q = quote(msg);
    let msg_len = q.len() as u64;
    bytes.extend_from_slice(&q);
    if !q.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.push(b'\n');
    Chunk {
        bytes,
        msg_start,
        msg_len,
    }
}

/// The last (up to) two bytes of `file` of length `len`.
pub fn tail(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let n = len.min(2) as usize;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, len - n as u64)?;
    Ok(buf)
}

/// Reads message bytes (`offset`, stored `length`) and undoes the quoting.
pub fn read(path: &Path, offset: u64, length: u64) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(unquote(&buf))
}

/// A message found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Start of its From_ line.
    pub from_start: u64,
    /// Start of the message bytes.
    pub offset: u64,
    /// Stored (quoted) length, without the separating blank line.
    pub length: u64,
    /// The From_ line, without its newline.
    pub from_line: String,
}

/// Finds the messages in `file` from `start` (a line start, preceded by a blank line
/// or the beginning of the file) to the end. A message begins at a `From ` line
/// that follows a blank line.
pub fn scan(file: &File, start: u64) -> io::Result<Vec<Span>> {
    let mut r = BufReader::with_capacity(256 * 1024, file);
    r.seek(SeekFrom::Start(start))?;
    let mut pos = start;
    let mut prev_blank = true;
    let mut out: Vec<Span> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if prev_blank && line.starts_with(b"From ") {
            if let Some(last) = out.last_mut() {
                // The message ends before the blank line that precedes this From_.
                last.length = (pos - 1).saturating_sub(last.offset);
            }
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            out.push(Span {
                from_start: pos,
                offset: pos + n as u64,
                length: 0,
                from_line: text,
            });
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        pos += n as u64;
    }
    if let Some(last) = out.last_mut() {
        let mut end = pos;
        if prev_blank && end > last.offset {
            end -= 1; // the closing blank line
        }
        last.length = end.saturating_sub(last.offset);
    }
    Ok(out)
}

/// Rewrites the locked mbox keeping only the messages at `keep` (offset, stored
/// length), in order: a new file beside it, fsynced, renamed over the old one, the
/// directory fsynced. Returns the new offset of each kept message. Other writers are
/// shut out by the dot-lock we hold, which they take before opening the file.
pub fn rewrite(lock: &MboxLock, keep: &[(u64, u64)]) -> io::Result<Vec<u64>> {
    let spans = scan(&lock.file, 0)?;
    let tmp = {
        let mut s = lock.path.as_os_str().to_os_string();
        s.push(format!(".zolder-rewrite.{}", std::process::id()));
        PathBuf::from(s)
    };
    let res = (|| {
        let mut out = std::io::BufWriter::with_capacity(
            256 * 1024,
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?,
        );
        let mut pos = 0u64;
        let mut new_offsets = Vec::with_capacity(keep.len());
        for &(offset, length) in keep {
            let from = match spans.binary_search_by_key(&offset, |s| s.offset) {
                Ok(i) => format!("{}\n", spans[i].from_line),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: no message starts at offset {offset}; the file was changed by another program",
                            lock.path.display()
                        ),
                    ));
                }
            };
            out.write_all(from.as_bytes())?;
            pos += from.len() as u64;
            new_offsets.push(pos);
            let mut src = (&lock.file).take(0);
            (&lock.file).seek(SeekFrom::Start(offset))?;
            src.set_limit(length);
            let copied = io::copy(&mut src, &mut out)?;
            if copied != length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: message at {offset} is cut short", lock.path.display()),
                ));
            }
            pos += length;
            let mut last = [0u8; 1];
            let ends_nl = length > 0 && {
                lock.file.read_exact_at(&mut last, offset + length - 1)?;
                last[0] == b'\n'
            };
            let sep: &[u8] = if ends_nl { b"\n" } else { b"\n\n" };
            out.write_all(sep)?;
            pos += sep.len() as u64;
        }
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &lock.path)?;
        if let Some(dir) = lock.path.parent() {
            super::maildir::fsync_dir(dir)?;
        }
        Ok(new_offsets)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Does an indexed message (offset, stored length) still sit where the index says?
/// Checks that a From_ line ends right before `offset` and that the message is
/// followed by a separator or the end of the file.
pub fn looks_intact(file: &File, len: u64, offset: u64, length: u64) -> io::Result<bool> {
    if offset < 6 || offset + length > len {
        return Ok(offset == 0 && length == 0);
    }
    let back = offset.min(1024);
    let mut buf = vec![0u8; back as usize];
    file.read_exact_at(&mut buf, offset - back)?;
    if buf.last() != Some(&b'\n') {
        return Ok(false);
    }
    let line_start = buf[..buf.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(if back == offset { 0 } else { usize::MAX });
    if line_start == usize::MAX || !buf[line_start..].starts_with(b"From ") {
        return Ok(false);
    }
    let end = offset + length;
    let n = (len - end).min(3) as usize;
    let mut after = vec![0u8; n];
    file.read_exact_at(&mut after, end)?;
    Ok(matches!(
        after.as_slice(),
        [] | [b'\n'] | [b'\n', b'\n'] | [b'\n', b'F', ..] | [b'\n', b'\n', ..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        let m = b"Subject: x\n\nFrom here\n>From there\n>>From far\nFromage\n";
        let q = quote(m);
        assert_eq!(
            q,
            b"Subject: x\n\n>From here\n>>From there\n>>>From far\nFromage\n".to_vec()
        );
        assert_eq!(unquote(&q), m.to_vec());
    }

    #[test]
    fn append_scan_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bouke");
        let lock = MboxLock::acquire(&p, Duration::from_secs(5)).unwrap();
        assert!(dotlock_path(&p).exists());
        let msgs: [&[u8]; 3] = [b"A: 1\n\nFrom me\n", b"B: 2\n\nno newline", b"C: 3\n\nc\n"];
        let mut idx = Vec::new();
        for m in msgs {
            let len = lock.len().unwrap();
            let t = tail(&lock.file, len).unwrap();
            let c = chunk(&t, Some("a@b"), 0, m);
            lock.file.write_all_at(&c.bytes, len).unwrap();
            idx.push((len + c.msg_start, c.msg_len));
        }
        let len = lock.len().unwrap();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(read(&p, idx[i].0, idx[i].1).unwrap(), m.to_vec());
            assert!(looks_intact(&lock.file, len, idx[i].0, idx[i].1).unwrap());
        }
        let spans = scan(&lock.file, 0).unwrap();
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].offset, idx[0].0);
        assert_eq!(spans[0].length, idx[0].1);
        assert!(
            spans[0]
                .from_line
                .starts_with("From a@b Thu Jan  1 00:00:00 1970")
        );
        let new = rewrite(&lock, &[idx[1], idx[2]]).unwrap();
        drop(lock);
        assert!(!dotlock_path(&p).exists());
        assert_eq!(read(&p, new[0], idx[1].1).unwrap(), msgs[1].to_vec());
        assert_eq!(read(&p, new[1], idx[2].1).unwrap(), msgs[2].to_vec());
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("From a@b"), "{text}");
        assert_eq!(text.matches("\nFrom ").count(), 1);
    }

    #[test]
    fn a_second_locker_waits_then_times_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        let _held = MboxLock::acquire(&p, Duration::from_secs(1)).unwrap();
        let err = MboxLock::acquire(&p, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn stale_dotlock_of_a_dead_process_is_broken() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        // pid 2^22+1 is above Linux's pid_max default, so no such process.
        fs::write(dotlock_path(&p), "4194305\n").unwrap();
        let l = MboxLock::acquire(&p, Duration::from_secs(2)).unwrap();
        drop(l);
    }
}
