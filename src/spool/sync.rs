//! Reconciling the index with the disk before a mailbox is served: mail dropped
//! into a Maildir or appended to an mbox by another program, files removed or
//! re-flagged by one, appends a crashed writer left in `mbox_pending`, and the
//! directory stamps ([`DirStamp`]) that let an unchanged Maildir skip its listing.
//! Also the mbox header readers (`From ` line dates, `Status:` flags) that
//! `zolder import-mail` shares.
//!
//! Owns bringing the index up to date with what other programs did. It must not
//! change messages itself beyond recording what it finds, and knows no protocol.
//!
//! # Security
//! Files in a user's Maildir and mbox are written by other programs (procmail, the
//! user's MUA) and are trusted no more than network input: a Maildir file whose
//! name is not UTF-8 or starts with `.` is skipped, every other one is indexed as a
//! message; the mbox is split into messages by `mbox.rs`, and `Status:`/`X-Status:`
//! are read only inside a message's header.

use super::*;

impl Spool {
    /// Brings an mbox's index up to date, holding its lock: finishes or undoes appends
    /// a crashed writer left, indexes mail other programs appended, and re-indexes from
    /// scratch (new UIDVALIDITY) if another program rewrote the file. Returns whether
    /// anything changed.
    pub(super) fn sync_mbox(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        lock: &mbox::MboxLock,
    ) -> Result<bool> {
        let path = &lock.path;
        let ioerr = |e| SpoolError::io(path, e);
        let mut len = lock.len().map_err(ioerr)?;
        let mut changed = false;
        let pending = dbs::pending(conn, mb.id)?;
        if !pending.is_empty() {
            let tx = write_tx(&mut *conn)?;
            for p in &pending {
                let complete = len >= p.start + p.total && {
                    let mut buf = vec![0u8; p.total as usize];
                    use std::os::unix::fs::FileExt;
                    lock.file.read_exact_at(&mut buf, p.start).map_err(ioerr)?;
                    hex::encode(Sha256::digest(&buf)) == p.sha256
                };
                if complete {
                    lock.file.sync_all().map_err(ioerr)?;
                    dbs::insert_message(
                        &tx,
                        mb.id,
                        &NewMessage {
                            file: None,
                            offset: Some(p.offset),
                            length: Some(p.length),
                            size: p.size,
                            internal_date: p.internal_date,
                            flags: &p.flags,
                            message_id: p.message_id.as_deref(),
                        },
                    )?;
                    if let Some(k) = &p.delivery_key {
                        dbs::record_key(&tx, k, &mb.user)?;
                    }
                    warn!(mbox = %path.display(), offset = p.start, "indexed an append a crashed writer completed");
                } else if len > p.start {
                    warn!(mbox = %path.display(), offset = p.start, "truncating an append a crashed writer left incomplete");
                    lock.file.set_len(p.start).map_err(ioerr)?;
                    lock.file.sync_all().map_err(ioerr)?;
                    len = p.start;
                }
                dbs::delete_pending(&tx, p.id)?;
            }
            dbs::bump_changes(&tx, &mb.user)?;
            tx.commit()?;
            changed = true;
        }
        // Did another program rewrite the file under us?
        let intact = match dbs::last_mbox_message(conn, mb.id)? {
            Some(last) => mbox::looks_intact(
                &lock.file,
                len,
                last.offset.unwrap_or(0),
                last.length.unwrap_or(0),
            )
            .map_err(ioerr)?,
            None => true,
        };
        let from = if intact {
            dbs::mbox_end(conn, mb.id)?
        } else {
            warn!(mbox = %path.display(), "mbox was rewritten by another program; re-indexing with a new UIDVALIDITY");
            0
        };
        if !intact || len > from + 2 {
            let spans = mbox::scan(&lock.file, from).map_err(ioerr)?;
            if !intact || !spans.is_empty() {
                let tx = write_tx(&mut *conn)?;
                if !intact {
                    dbs::reset_mailbox(&tx, mb.id)?;
                }
                for s in spans {
                    let body = mbox::read(path, s.offset, s.length).map_err(ioerr)?;
                    let date = parse_from_line_date(&s.from_line).unwrap_or_else(db::now);
                    let flags = mbox_status_flags(&body);
                    dbs::insert_message(
                        &tx,
                        mb.id,
                        &NewMessage {
                            file: None,
                            offset: Some(s.offset),
                            length: Some(s.length),
                            size: crlf_size(&body),
                            internal_date: date,
                            flags: &flags.to_db(),
                            message_id: None,
                        },
                    )?;
                }
                dbs::bump_changes(&tx, &mb.user)?;
                tx.commit()?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The folder's directory times, when the index is known to match them: the
    /// stamp recorded for this mailbox equals what is on disk now. Called before a
    /// change of our own; pass the result to [`stamp_after`](Self::stamp_after).
    pub(super) fn stamp_before(&self, mailbox_id: i64, md: &Maildir) -> Option<DirStamp> {
        let now = DirStamp::read(md)?;
        let map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&mailbox_id)
            .filter(|s| s.same_dirs(&now) && s.listed.elapsed() < DirStamp::MAX_TRUST)
            .map(|_| now)
    }

    /// After a change of our own (indexed by us): when the folder matched the index
    /// before it, it still does, at the new directory times.
    pub(super) fn stamp_after(&self, mailbox_id: i64, md: &Maildir, before: Option<DirStamp>) {
        let mut map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
        match (before, DirStamp::read(md)) {
            (Some(b), Some(mut now)) => {
                now.listed = b.listed;
                map.insert(mailbox_id, now);
            }
            _ => {
                map.remove(&mailbox_id);
            }
        }
    }

    /// Reconciles a Maildir folder with its index: files that appeared are indexed,
    /// files that vanished are expunged, flags changed in file names are taken over.
    ///
    /// Skipped (the folder is not listed) when `new/` and `cur/` carry the directory
    /// times recorded the last time the index matched them — Dovecot's check. A
    /// time is recorded only once it is a second old, so a change made within the
    /// same clock tick as our look cannot hide behind an unchanged time; and every
    /// folder is listed again at least every [`DirStamp::MAX_TRUST`].
    pub(super) fn sync_maildir(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        md: &Maildir,
    ) -> Result<bool> {
        let before = DirStamp::read(md);
        if let Some(b) = &before {
            let map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if map
                .get(&mb.id)
                .is_some_and(|s| s.same_dirs(b) && s.listed.elapsed() < DirStamp::MAX_TRUST)
            {
                return Ok(false);
            }
        }
        let changed = self.sync_maildir_listing(conn, mb, md)?;
        let mut map = self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner());
        match before.filter(DirStamp::settled) {
            Some(b) => {
                map.insert(mb.id, b);
            }
            None => {
                map.remove(&mb.id);
            }
        }
        Ok(changed)
    }

    fn sync_maildir_listing(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        md: &Maildir,
    ) -> Result<bool> {
        let ioerr = |e| SpoolError::io(md.root(), e);
        let mut disk: HashMap<String, maildir::Entry> = md
            .list()
            .map_err(ioerr)?
            .into_iter()
            .map(|e| (e.base.clone(), e))
            .collect();
        let rows = dbs::messages(conn, mb.id)?;
        let indexed: HashMap<&str, &MessageRow> = rows
            .iter()
            .filter_map(|r| r.file.as_deref().map(|f| (f, r)))
            .collect();
        let mut missing: Vec<u32> = rows
            .iter()
            .filter(|r| r.file.as_deref().is_none_or(|f| !disk.contains_key(f)))
            .map(|r| r.uid)
            .collect();
        if !missing.is_empty() {
            // A second look: a file renamed while we listed may have been missed once.
            for e in md.list().map_err(ioerr)? {
                disk.entry(e.base.clone()).or_insert(e);
            }
            missing.retain(|uid| {
                rows.iter()
                    .find(|r| r.uid == *uid)
                    .and_then(|r| r.file.as_deref())
                    .is_none_or(|f| !disk.contains_key(f))
            });
        }
        let mut fresh: Vec<(i64, &maildir::Entry)> = Vec::new();
        let mut drift: Vec<(u32, Flags)> = Vec::new();
        for e in disk.values() {
            match indexed.get(e.base.as_str()) {
                None => {
                    let p = md.dir(e.sub).join(e.file_name());
                    let mtime = std::fs::metadata(&p)
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or_else(db::now);
                    fresh.push((mtime, e));
                }
                Some(r) => {
                    if let Some(info) = &e.info {
                        let old = Flags::parse(&r.flags);
                        let on_disk = Flags::from_maildir_info(info);
                        if on_disk != old.maildir_part() {
                            let mut new = old.keyword_part();
                            new.add_all(&on_disk);
                            drift.push((r.uid, new));
                        }
                    }
                }
            }
        }
        if missing.is_empty() && fresh.is_empty() && drift.is_empty() {
            return Ok(false);
        }
        fresh.sort_by(|a, b| (a.0, &a.1.base).cmp(&(b.0, &b.1.base)));
        let tx = write_tx(&mut *conn)?;
        dbs::expunge(&tx, mb.id, &missing)?;
        for (mtime, e) in &fresh {
            let p = md.dir(e.sub).join(e.file_name());
            let size = match maildir::name_wsize(&e.base) {
                Some(w) => w,
                None => match std::fs::read(&p) {
                    Ok(b) => crlf_size(&b),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(SpoolError::io(p, err)),
                },
            };
            let flags = e
                .info
                .as_deref()
                .map(Flags::from_maildir_info)
                .unwrap_or_default();
            dbs::insert_message(
                &tx,
                mb.id,
                &NewMessage {
                    file: Some(&e.base),
                    offset: None,
                    length: None,
                    size,
                    internal_date: *mtime,
                    flags: &flags.to_db(),
                    message_id: None,
                },
            )?;
        }
        for (uid, f) in &drift {
            dbs::set_flags(&tx, mb.id, *uid, &f.to_db())?;
        }
        dbs::bump_changes(&tx, &mb.user)?;
        tx.commit()?;
        if !fresh.is_empty() || !missing.is_empty() {
            debug!(mailbox = %mb.name, user = %mb.user, added = fresh.len(), removed = missing.len(), "maildir synced");
        }
        Ok(true)
    }
}

/// The modification times of a Maildir folder's `new/` and `cur/`, and when the
/// folder was last listed in full.
#[derive(Debug, Clone, Copy)]
pub(super) struct DirStamp {
    new: std::time::SystemTime,
    cur: std::time::SystemTime,
    listed: std::time::Instant,
}

impl DirStamp {
    /// A folder is listed in full at least this often, whatever its times say.
    const MAX_TRUST: Duration = Duration::from_secs(60);

    pub(super) fn read(md: &Maildir) -> Option<DirStamp> {
        let m = |sub| {
            std::fs::metadata(md.dir(sub))
                .and_then(|m| m.modified())
                .ok()
        };
        Some(DirStamp {
            new: m(Sub::New)?,
            cur: m(Sub::Cur)?,
            listed: std::time::Instant::now(),
        })
    }

    pub(super) fn same_dirs(&self, other: &DirStamp) -> bool {
        self.new == other.new && self.cur == other.cur
    }

    /// Both times at least a second in the past: any later change gets a later time.
    pub(super) fn settled(&self) -> bool {
        let limit = std::time::SystemTime::now() - Duration::from_secs(1);
        self.new <= limit && self.cur <= limit
    }
}

/// The date of a From_ line (`From sender Wed Nov 25 14:46:27 2026`), as unix seconds.
pub fn parse_from_line_date(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("From ")?;
    let mut parts = rest.split_ascii_whitespace();
    parts.next()?; // sender
    let date: Vec<&str> = parts.take(5).collect();
    if date.len() < 5 {
        return None;
    }
    let s = date.join(" ");
    chrono::NaiveDateTime::parse_from_str(&s, "%a %b %e %H:%M:%S %Y")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// Flags from the `Status:`/`X-Status:` headers mutt and Dovecot write into mboxes.
pub fn mbox_status_flags(msg: &[u8]) -> Flags {
    let mut f = Flags::new();
    let head_end = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| msg.windows(4).position(|w| w == b"\r\n\r\n"))
        .unwrap_or(msg.len());
    for line in msg[..head_end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("status:") {
            if v.contains('r') {
                f.insert(Flags::SEEN);
            }
        } else if let Some(v) = line.get(9..).filter(|_| lower.starts_with("x-status:")) {
            for (c, flag) in [
                ('A', Flags::ANSWERED),
                ('F', Flags::FLAGGED),
                ('D', Flags::DELETED),
                ('T', Flags::DRAFT),
            ] {
                if v.contains(c) {
                    f.insert(flag);
                }
            }
        }
    }
    f
}
