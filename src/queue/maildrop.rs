//! The maildrop: how users who do not own `data_dir` inject mail (cron's mail to root,
//! a family member's mutt calling `sendmail`), following Postfix's model. The
//! `sendmail` command writes one file per message into `data_dir/maildrop/`; the daemon
//! picks each up, checks it as untrusted input and queues it under the file's name
//! (so a pickup repeated after a crash is refused as a duplicate, never queued twice),
//! then removes the file.
//!
//! # Format
//! ```text
//! ZOLDER-MAILDROP 1
//! sender <addr>            (empty = <>)
//! rcpt <addr> <notify|-> <orcpt|->     (one or more)
//! envid <xtext>            (optional)
//! ret FULL|HDRS            (optional)
//! .
//! <message bytes>
//! ```
//!
//! # Security
//! The folder is mode 3770 (sticky, setgid, owned by the daemon's user and group), as
//! Postfix's maildrop is writable only through the setgid `postdrop`: users who are
//! not the daemon's user reach it through `zolder-postdrop`, a copy of the binary
//! installed setgid to that group (see [`crate::cli::postdrop`]); with `data_dir`
//! mode 0750 the group is also what lets them reach the folder at all. Files are 0640
//! and inherit the folder's group, so the daemon can read them whoever wrote them; the
//! sticky bit keeps users from removing each other's files.
//! The daemon trusts nothing in a file: it skips symlinks and non-regular files, bounds
//! the size, parses the envelope strictly, and records the file owner's user name as
//! the source. A file that does not parse is moved aside to `maildrop/bad/`.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{NewMessage, NewRcpt, Queue, QueueError};

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("maildrop")
}

/// The folder's mode: sticky, setgid, read-write for the owner and its group only.
pub const MODE: u32 = 0o3770;

/// Creates the folder with its special mode (daemon side, at start).
pub fn create(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir(data_dir);
    std::fs::create_dir_all(d.join("bad"))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(MODE))?;
    std::fs::set_permissions(d.join("bad"), std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// The envelope part of a drop file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropEnvelope {
    pub sender: Option<String>,
    pub recipients: Vec<NewRcpt>,
    pub envid: Option<String>,
    pub ret: Option<String>,
}

fn field_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 998 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Serialises a drop file.
pub fn encode(env: &DropEnvelope, msg: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = b"ZOLDER-MAILDROP 1\n".to_vec();
    let s = env.sender.clone().unwrap_or_default();
    if !s.is_empty() && !field_ok(&s) {
        return Err(format!("bad sender `{s}`"));
    }
    out.extend_from_slice(format!("sender {s}\n").as_bytes());
    for r in &env.recipients {
        if !field_ok(&r.addr) {
            return Err(format!("bad recipient `{}`", r.addr));
        }
        let n = r.notify.clone().unwrap_or("-".into());
        let o = r.orcpt.clone().unwrap_or("-".into());
        out.extend_from_slice(format!("rcpt {} {} {}\n", r.addr, n, o).as_bytes());
    }
    if let Some(e) = &env.envid {
        out.extend_from_slice(format!("envid {e}\n").as_bytes());
    }
    if let Some(r) = &env.ret {
        out.extend_from_slice(format!("ret {r}\n").as_bytes());
    }
    out.extend_from_slice(b".\n");
    out.extend_from_slice(msg);
    Ok(out)
}

/// Parses a drop file strictly: (envelope, message bytes).
pub fn decode(b: &[u8]) -> Result<(DropEnvelope, &[u8]), String> {
    let mut env = DropEnvelope {
        sender: None,
        recipients: vec![],
        envid: None,
        ret: None,
    };
    let mut pos = 0;
    let mut first = true;
    loop {
        let end = b[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("envelope not terminated")?;
        if end > 2000 {
            return Err("envelope line too long".into());
        }
        let line = std::str::from_utf8(&b[pos..pos + end]).map_err(|_| "envelope not UTF-8")?;
        pos += end + 1;
        if first {
            if line != "ZOLDER-MAILDROP 1" {
                return Err("not a zolder maildrop file".into());
            }
            first = false;
            continue;
        }
        if line == "." {
            break;
        }
        let mut w = line.split(' ');
        match (w.next(), w.next(), w.next(), w.next(), w.next()) {
            (Some("sender"), Some(s), None, ..) => {
                env.sender = (!s.is_empty()).then(|| s.to_string());
            }
            (Some("rcpt"), Some(a), Some(n), Some(o), None) if field_ok(a) => {
                if env.recipients.len() >= 10_000 {
                    return Err("too many recipients".into());
                }
                env.recipients.push(NewRcpt {
                    addr: a.to_string(),
                    notify: (n != "-").then(|| n.to_string()),
                    orcpt: (o != "-").then(|| o.to_string()),
                });
            }
            (Some("envid"), Some(e), None, ..) if field_ok(e) => env.envid = Some(e.to_string()),
            (Some("ret"), Some(r), None, ..) if r == "FULL" || r == "HDRS" => {
                env.ret = Some(r.to_string())
            }
            _ => {
                return Err(format!(
                    "bad envelope line `{}`",
                    line.chars().take(80).collect::<String>()
                ));
            }
        }
    }
    if env.recipients.is_empty() {
        return Err("no recipients".into());
    }
    Ok((env, &b[pos..]))
}

/// Writes a drop file (the `sendmail` side). See [`write_encoded`].
pub fn write(data_dir: &Path, env: &DropEnvelope, msg: &[u8]) -> Result<String, String> {
    write_encoded(data_dir, &encode(env, msg)?)
}

/// Writes an encoded drop file: temp name (ignored by the pickup), fsync, rename,
/// folder fsync. Returns the file's name, which becomes the queue id.
///
/// `Ok` only when the file is durable in the folder. `Err` only when it will never
/// be picked up: when the folder fsync fails after the rename, the file is removed
/// again — and if it is already gone, the daemon has queued it (it removes a file only
/// after queueing it durably), which is success.
pub fn write_encoded(data_dir: &Path, data: &[u8]) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir(data_dir);
    let id = super::new_id();
    let tmp = d.join(format!(".tmp-{id}"));
    let fin = d.join(&id);
    let named = |e: std::io::Error| format!("{}: {e}", d.display());
    let staged = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)?;
        // Whatever the caller's umask: the daemon reads it through the group.
        f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(e));
    }
    if let Err(e) = std::fs::rename(&tmp, &fin) {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(e));
    }
    match std::fs::File::open(&d).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(id),
        Err(e) => match std::fs::remove_file(&fin) {
            Ok(()) => Err(named(e)),
            Err(r) if r.kind() == std::io::ErrorKind::NotFound => Ok(id),
            // Neither durable nor withdrawn: the honest answer is "maybe", and a
            // caller that retries may send it twice; say so.
            Err(r) => Err(format!(
                "{}: {e}; and {} could not be withdrawn ({r}): it may still be sent",
                d.display(),
                fin.display()
            )),
        },
    }
}

/// Picks up every complete drop file once. Returns how many were queued.
pub async fn pickup(queue: &Queue) -> usize {
    let d = dir(&queue.config().data_dir);
    let max = queue.config().limits.message_size as usize + 1024 * 1024;
    let names: Vec<String> = match std::fs::read_dir(&d) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.') && n != "bad")
            .collect(),
        Err(e) => {
            warn!(dir = %d.display(), error = %e, "cannot read maildrop");
            return 0;
        }
    };
    let mut n = 0;
    for name in names {
        let p = d.join(&name);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => continue,
        };
        let bad = |why: String| {
            warn!(file = %p.display(), reason = %why, "maildrop file refused; moved to maildrop/bad/");
            let _ = std::fs::rename(&p, d.join("bad").join(&name));
        };
        if !meta.file_type().is_file() || !super::valid_id(&name) {
            bad("not a regular file with a queue-id name".into());
            continue;
        }
        if meta.len() as usize > max {
            bad(format!("larger than the size limit ({} bytes)", meta.len()));
            continue;
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{}", meta.uid()));
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) => {
                warn!(file = %p.display(), error = %e, "cannot read maildrop file");
                continue;
            }
        };
        let (env, msg) = match decode(&bytes) {
            Ok(x) => x,
            Err(e) => {
                bad(e);
                continue;
            }
        };
        let m = NewMessage {
            id: Some(name.clone()),
            sender: env.sender,
            recipients: env.recipients,
            bytes: msg.to_vec(),
            source: format!("maildrop:{user}"),
            envid: env.envid,
            ret: env.ret,
            auth_user: None,
        };
        match queue.enqueue(m).await {
            Ok(id) => {
                info!(queue_id = %id, user = %user, "picked up from maildrop");
                let _ = std::fs::remove_file(&p);
                n += 1;
            }
            Err(QueueError::Duplicate(id)) => {
                info!(queue_id = %id, "maildrop file was already queued; removing it");
                let _ = std::fs::remove_file(&p);
            }
            Err(e) => {
                warn!(file = %p.display(), error = %e, "cannot queue maildrop file; will retry")
            }
        }
    }
    n
}

/// The daemon's pickup loop: on a poke (control socket `pickup`) and every 5 s.
pub async fn run(queue: Queue, poke: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        pickup(&queue).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = poke.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let env = DropEnvelope {
            sender: Some("bouke@zolder.thuis".into()),
            recipients: vec![
                NewRcpt::plain("root"),
                NewRcpt {
                    addr: "x@remote.example".into(),
                    notify: Some("SUCCESS,FAILURE".into()),
                    orcpt: Some("rfc822;x@remote.example".into()),
                },
            ],
            envid: Some("E1".into()),
            ret: Some("HDRS".into()),
        };
        let b = encode(&env, b"Subject: x\n\nbody\n").unwrap();
        let (e2, m) = decode(&b).unwrap();
        assert_eq!(e2, env);
        assert_eq!(m, b"Subject: x\n\nbody\n");
        assert!(decode(b"garbage\n").is_err());
        assert!(decode(b"ZOLDER-MAILDROP 1\nsender a@b\n.\nx").is_err());
        assert!(decode(b"ZOLDER-MAILDROP 1\nrcpt a@b - -\nbogus x\n.\n").is_err());
        assert!(
            encode(
                &DropEnvelope {
                    recipients: vec![NewRcpt::plain("a b")],
                    ..env
                },
                b""
            )
            .is_err()
        );
    }
}
