//! Messages in a mailbox: SELECT (after reconciling with the disk), metadata and
//! body reads, APPEND, flag stores, EXPUNGE, COPY, MOVE and the CONDSTORE/QRESYNC
//! `changes_since`; plus the Maildir file helpers they share (find, rename to new
//! flags, unlink, read a header).
//!
//! Owns what happens to existing messages. New messages are written by `store.rs`;
//! the reconcile step is `sync.rs`. It must not call imapd or pop3d.
//!
//! # Security
//! UIDs, flags and mailbox names come from IMAP/POP3 clients; UIDs are only looked
//! up in the index, flags become Maildir info suffixes only through `Flags` (which
//! keeps keywords out of file names), and header reads stop at the end of the
//! header so a FETCH of headers does not pull a large body into memory.

use super::*;

impl Spool {
    /// Opens a mailbox: reconciles the index with the disk, then returns UIDVALIDITY,
    /// UIDNEXT, HIGHESTMODSEQ and every message's metadata (SELECT, EXAMINE, POP3).
    pub fn select(&self, user: &str, mailbox: &str) -> Result<MailboxState> {
        let (conn, m) = self.open_synced(user, mailbox)?;
        let messages = dbs::messages(&conn, m.id)?.into_iter().map(meta).collect();
        Ok(MailboxState {
            name: m.name,
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            messages,
        })
    }

    /// Reconciles a mailbox's index with the disk; returns a connection and the
    /// mailbox row as it stands after that (what [`select`](Self::select) lists).
    pub(super) fn open_synced(
        &self,
        user: &str,
        mailbox: &str,
    ) -> Result<(Pooled<'_>, MailboxRow)> {
        let u = self.user(user)?;
        self.prepare_user(&u.name)?;
        let name = normalize_name(mailbox)?;
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let changed = match self.store_of(&u, &name) {
            Store::Maildir(md) => self.sync_maildir(&mut conn, &m, &md)?,
            // A reader does not wait long for mutt or procmail: the index as it stands
            // is served and the next select catches up.
            Store::Mbox(path) => match mbox::MboxLock::acquire(
                &path,
                self.inner.lock_timeout.min(Duration::from_secs(3)),
            ) {
                Ok(lock) => self.sync_mbox(&mut conn, &m, &lock)?,
                Err(e) => {
                    warn!(user = %u.name, "mbox not synced, lock unavailable: {e}");
                    false
                }
            },
        };
        if changed {
            self.notify(&u.name, &name);
            let m = self.mailbox_row(&conn, &u, &name)?;
            return Ok((conn, m));
        }
        Ok((conn, m))
    }

    /// The metadata of one message.
    pub fn message_meta(&self, user: &str, mailbox: &str, uid: u32) -> Result<MsgMeta> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        dbs::message(&conn, m.id, uid)?
            .map(meta)
            .ok_or_else(|| SpoolError::NoMessage {
                user: u.name.clone(),
                mailbox: name,
                uid,
            })
    }

    /// The stored bytes of one message, exactly as delivered (line endings as stored;
    /// use [`to_crlf`] for the wire).
    pub fn read_message(&self, user: &str, mailbox: &str, uid: u32) -> Result<Vec<u8>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let gone = || SpoolError::NoMessage {
            user: u.name.clone(),
            mailbox: name.clone(),
            uid,
        };
        let row = dbs::message(&conn, m.id, uid)?.ok_or_else(gone)?;
        drop(conn);
        match self.store_of(&u, &name) {
            Store::Maildir(md) => {
                let base = row.file.as_deref().ok_or_else(gone)?;
                let info = Flags::parse(&row.flags).maildir_info();
                let (path, _) = md
                    .find(base, &info)
                    .map_err(|e| SpoolError::io(md.root(), e))?
                    .ok_or_else(gone)?;
                std::fs::read(&path).map_err(|e| SpoolError::io(path, e))
            }
            Store::Mbox(path) => {
                let (o, l) = row.offset.zip(row.length).ok_or_else(gone)?;
                mbox::read(&path, o, l).map_err(|e| SpoolError::io(path, e))
            }
        }
    }

    /// Several messages of one mailbox (IMAP FETCH): one index connection, one
    /// mailbox lookup and one index query for all of them. `None` for a UID that is
    /// gone. With `headers_only`, a message may be given as its header only (up to
    /// and including the blank line that ends it): served from the header cache
    /// (`db::imapd`), else read from the file and cached for next time.
    pub fn read_messages(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        headers_only: bool,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // found[i] is the message of sorted[i].
        let mut found: Vec<Option<Vec<u8>>> = vec![None; sorted.len()];
        let (mb_id, rows) = {
            let conn = self.conn()?;
            let m = self.mailbox_row(&conn, &u, &name)?;
            let mut missing = Vec::new();
            if headers_only {
                // A cached header exists only while its message does (the trigger
                // in migrations/0009 removes it with the row).
                let mut cached = db::imapd::headers_in(&conn, m.id, &sorted)?
                    .into_iter()
                    .peekable();
                for (i, uid) in sorted.iter().enumerate() {
                    match cached.next_if(|c| c.0 == *uid) {
                        Some((_, h)) => found[i] = Some(h),
                        None => missing.push(*uid),
                    }
                }
            } else {
                missing = sorted.clone();
            }
            let rows = if missing.is_empty() {
                Vec::new()
            } else {
                db::imapd::messages_in(&conn, m.id, &missing)?
            };
            (m.id, rows)
        };
        let store = self.store_of(&u, &name);
        let mut fresh: Vec<(u32, Vec<u8>)> = Vec::new();
        for row in rows {
            let bytes = match &store {
                Store::Maildir(md) => {
                    let Some(base) = row.file.as_deref() else {
                        continue;
                    };
                    let info = Flags::parse(&row.flags).maildir_info();
                    match read_maildir_file(md, base, &info, headers_only)? {
                        Some(b) => b,
                        None => continue,
                    }
                }
                Store::Mbox(path) => match row.offset.zip(row.length) {
                    Some((o, l)) => mbox::read(path, o, l).map_err(|e| SpoolError::io(path, e))?,
                    None => continue,
                },
            };
            if headers_only {
                fresh.push((row.uid, wire_header(&bytes)));
            }
            if let Ok(i) = sorted.binary_search(&row.uid) {
                found[i] = Some(bytes);
            }
        }
        if !fresh.is_empty() {
            // Cache the headers just read. Losing this on a crash costs only a
            // re-read, so the commit does not wait for the disk.
            if let Err(e) = self.cache_headers(mb_id, &fresh) {
                debug!(user = %u.name, mailbox = %name, "header cache not written: {e}");
            }
        }
        Ok(uids
            .iter()
            .map(|uid| sorted.binary_search(uid).ok().and_then(|i| found[i].take()))
            .collect())
    }

    /// Writes headers into the cache in one transaction, without a WAL sync.
    pub(crate) fn cache_headers(&self, mailbox_id: i64, heads: &[(u32, Vec<u8>)]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let refs: Vec<(u32, &[u8])> = heads.iter().map(|(u, h)| (*u, h.as_slice())).collect();
        db::imapd::put_headers(&tx, mailbox_id, &refs)?;
        // A cache: the WAL is synced by the next durable commit.
        let _unsynced = tx.commit_deferred()?;
        Ok(())
    }

    /// Stores one message (IMAP APPEND). Returns its UID (APPENDUID).
    pub fn append(
        &self,
        user: &str,
        mailbox: &str,
        bytes: Vec<u8>,
        flags: &Flags,
        internal_date: Option<i64>,
    ) -> Result<Appended> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        {
            // APPEND to a missing mailbox is an error ([TRYCREATE]), unlike delivery.
            self.prepare_user(&u.name)?;
            let conn = self.conn()?;
            self.mailbox_row(&conn, &u, &name)?;
        }
        let mut req = StoreRequest::new(&u.name, &name, bytes);
        req.flags = flags.clone();
        req.internal_date = internal_date;
        match self.store_batch(vec![req]).pop() {
            Some(Ok(StoreOutcome::Stored { uidvalidity, uid })) => {
                Ok(Appended { uidvalidity, uid })
            }
            Some(Ok(StoreOutcome::Duplicate)) => Err(SpoolError::Failed(
                "append without a key reported a duplicate".into(),
            )),
            Some(Err(e)) => Err(e),
            None => Err(SpoolError::Failed("empty batch result".into())),
        }
    }

    /// Stores several messages in one mailbox, all or nothing (IMAP MULTIAPPEND and
    /// CATENATE): one batch (one fsync per file, one per directory, one
    /// transaction); when any message fails, those already stored are removed again
    /// and the first error is returned. Every returned UID is durable.
    pub fn append_many(
        &self,
        user: &str,
        mailbox: &str,
        msgs: Vec<(Vec<u8>, Flags, Option<i64>)>,
    ) -> Result<Vec<Appended>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        {
            self.prepare_user(&u.name)?;
            let conn = self.conn()?;
            self.mailbox_row(&conn, &u, &name)?;
        }
        let reqs = msgs
            .into_iter()
            .map(|(bytes, flags, date)| {
                let mut req = StoreRequest::new(&u.name, &name, bytes);
                req.flags = flags;
                req.internal_date = date;
                req
            })
            .collect();
        let mut done = Vec::new();
        let mut first_err = None;
        for r in self.store_batch(reqs) {
            match r {
                Ok(StoreOutcome::Stored { uidvalidity, uid }) => {
                    done.push(Appended { uidvalidity, uid })
                }
                Ok(StoreOutcome::Duplicate) => {
                    first_err.get_or_insert(SpoolError::Failed(
                        "append without a key reported a duplicate".into(),
                    ));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            let uids: Vec<u32> = done.iter().map(|a| a.uid).collect();
            if let Err(undo) = self.expunge(&u.name, &name, &uids) {
                warn!(user = %u.name, mailbox = %name, error = %undo, "could not remove the stored part of a failed multi-message APPEND");
            }
            return Err(e);
        }
        Ok(done)
    }

    /// Changes flags (IMAP STORE). UIDs not in the mailbox are skipped. With
    /// `unchanged_since` (CONDSTORE), messages whose MODSEQ is higher are left alone
    /// and reported in `failed`. Maildir files are renamed to carry the new flags.
    pub fn store_flags(
        &self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let store = self.store_of(&u, &name);
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let mut out = FlagsResult::default();
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let new_flags = |old: &Flags| {
            let mut new = match op {
                FlagOp::Set => Flags::new(),
                FlagOp::Add | FlagOp::Remove => old.clone(),
            };
            match op {
                FlagOp::Set | FlagOp::Add => new.add_all(flags),
                FlagOp::Remove => new.remove_all(flags),
            }
            new
        };
        let track = |touched: &mut Vec<PathBuf>, from: PathBuf, md: &Maildir| {
            for d in [from, md.dir(Sub::Cur)] {
                if !touched.contains(&d) {
                    touched.push(d);
                }
            }
        };

        // 1. Maildir, unconditional STORE: rename the files before taking the write
        // lock, so other sessions' commits do not wait for this one's file system
        // work. Remember what each rename was based on.
        //
        // The renames' directories are fsynced after the index commit, before its WAL
        // sync: both are durable before the client hears OK, and a crash in between
        // leaves either the new name (the next sync takes the flags from it) or the
        // old flags everywhere — nothing acknowledged is lost either way. (Unlike
        // delivery and expunge, where the order of file and index matters.)
        let mut planned: HashMap<u32, String> = HashMap::new();
        let mut touched: Vec<PathBuf> = Vec::new();
        if let (Store::Maildir(md), None) = (&store, unchanged_since) {
            let stamp = self.stamp_before(m.id, md);
            for row in db::imapd::messages_in(&conn, m.id, &sorted)? {
                let Some(base) = row.file.as_deref() else {
                    continue;
                };
                let old = Flags::parse(&row.flags);
                let new = new_flags(&old);
                if new == old {
                    continue;
                }
                match rename_info(md, base, &old.maildir_info(), &new.maildir_info())? {
                    Renamed::From(from) => track(&mut touched, from, md),
                    Renamed::Unchanged => {}
                    Renamed::Gone => continue,
                }
                planned.insert(row.uid, row.flags);
            }
            if !touched.is_empty() {
                self.stamp_after(m.id, md, stamp);
            }
        }

        // 2. Under the write lock, from the rows as they are now: a row another
        // session changed meanwhile is recomputed (and its file renamed again).
        let tx = write_tx(&mut conn)?;
        let rows = db::imapd::messages_in(&tx, m.id, &sorted)?;
        let stamp = match &store {
            Store::Maildir(md) => self.stamp_before(m.id, md),
            Store::Mbox(_) => None,
        };
        let renamed_before = touched.len();
        let mut changes: Vec<(u32, Flags, &MessageRow)> = Vec::new();
        for row in &rows {
            if unchanged_since.is_some_and(|s| row.modseq > s) {
                out.failed.push(row.uid);
                continue;
            }
            let old = Flags::parse(&row.flags);
            let new = new_flags(&old);
            if new == old {
                continue;
            }
            if let (Store::Maildir(md), Some(base)) = (&store, row.file.as_deref())
                && planned.get(&row.uid) != Some(&row.flags)
            {
                match rename_info(md, base, &old.maildir_info(), &new.maildir_info())? {
                    Renamed::From(from) => track(&mut touched, from, md),
                    Renamed::Unchanged => {}
                    // Removed by another program: the next select expunges it.
                    Renamed::Gone => continue,
                }
            }
            changes.push((row.uid, new, row));
        }
        if let Store::Maildir(md) = &store
            && touched.len() > renamed_before
        {
            self.stamp_after(m.id, md, stamp);
        }
        // One MODSEQ for the whole command (RFC 7162 allows it; Dovecot does the same).
        let db_flags: Vec<(u32, String)> =
            changes.iter().map(|(u, f, _)| (*u, f.to_db())).collect();
        let modseq = db::imapd::set_flags_many(&tx, m.id, &db_flags)?;
        for (uid, new, row) in changes {
            out.updated.push(MsgMeta {
                uid,
                size: row.size,
                internal_date: row.internal_date,
                flags: new,
                modseq,
            });
        }
        if !out.updated.is_empty() {
            dbs::bump_changes(&tx, &u.name)?;
        }
        let ticket = tx.commit_deferred()?;
        if touched.is_empty() {
            ticket.sync()?;
        } else {
            // The directories and the WAL are synced at the same time (their order
            // does not matter here, see step 1): on a journalling file system the two
            // usually share one journal commit.
            std::thread::scope(|sc| {
                let dirs = sc.spawn(|| {
                    for d in &touched {
                        maildir::fsync_dir(d).map_err(|e| SpoolError::io(d, e))?;
                    }
                    Ok::<(), SpoolError>(())
                });
                let wal = ticket.sync();
                dirs.join().unwrap_or_else(|_| {
                    Err(SpoolError::Failed("directory sync panicked".into()))
                })?;
                wal
            })?;
        }
        if !out.updated.is_empty() {
            self.notify(&u.name, &name);
        }
        Ok(out)
    }

    /// Removes messages for good (IMAP EXPUNGE / UID EXPUNGE, POP3 DELE+QUIT).
    /// Removes exactly `uids` — the IMAP server picks those flagged `\Deleted`.
    /// Returns the UIDs that were removed.
    pub fn expunge(&self, user: &str, mailbox: &str, uids: &[u32]) -> Result<Vec<u32>> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        if uids.is_empty() {
            return Ok(vec![]);
        }
        let mut conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        let gone = match self.store_of(&u, &name) {
            Store::Maildir(md) => {
                // Files first, then the index: a crash in between leaves index rows for
                // missing files, which the next select expunges. The other order could
                // bring an expunged message back.
                let mut sorted = uids.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                let mut touched: Vec<PathBuf> = Vec::new();
                let stamp = self.stamp_before(m.id, &md);
                for row in db::imapd::messages_in(&conn, m.id, &sorted)? {
                    let Some(base) = row.file.as_deref() else {
                        continue;
                    };
                    let info = Flags::parse(&row.flags).maildir_info();
                    if let Some(dir) = remove_message_file(&md, base, &info)?
                        && !touched.contains(&dir)
                    {
                        touched.push(dir);
                    }
                }
                for d in &touched {
                    maildir::fsync_dir(d).map_err(|e| SpoolError::io(d, e))?;
                }
                if !touched.is_empty() {
                    self.stamp_after(m.id, &md, stamp);
                }
                let tx = write_tx(&mut conn)?;
                let gone = dbs::expunge(&tx, m.id, uids)?;
                dbs::bump_changes(&tx, &u.name)?;
                tx.commit()?;
                gone
            }
            Store::Mbox(path) => {
                let lock = mbox::MboxLock::acquire(&path, self.inner.lock_timeout)
                    .map_err(|e| SpoolError::io(&path, e))?;
                self.sync_mbox(&mut conn, &m, &lock)?;
                let rows = dbs::messages(&conn, m.id)?;
                let dropped: HashSet<u32> = uids.iter().copied().collect();
                let keep: Vec<&MessageRow> =
                    rows.iter().filter(|r| !dropped.contains(&r.uid)).collect();
                let spans: Vec<(u64, u64)> = keep
                    .iter()
                    .map(|r| (r.offset.unwrap_or(0), r.length.unwrap_or(0)))
                    .collect();
                let new_offsets =
                    mbox::rewrite(&lock, &spans).map_err(|e| SpoolError::io(&path, e))?;
                let tx = write_tx(&mut conn)?;
                let gone = dbs::expunge(&tx, m.id, uids)?;
                for (r, off) in keep.iter().zip(new_offsets) {
                    if r.offset != Some(off) {
                        dbs::set_mbox_offset(&tx, m.id, r.uid, off)?;
                    }
                }
                dbs::bump_changes(&tx, &u.name)?;
                tx.commit()?;
                drop(lock);
                gone
            }
        };
        if !gone.is_empty() {
            self.notify(&u.name, &name);
        }
        Ok(gone)
    }

    /// Copies messages to another mailbox of the same user, keeping flags and
    /// INTERNALDATE (IMAP COPY). The destination must exist.
    pub fn copy(&self, user: &str, from: &str, uids: &[u32], to: &str) -> Result<CopyResult> {
        let u = self.user(user)?;
        let from = normalize_name(from)?;
        let to = normalize_name(to)?;
        let dest = {
            let conn = self.conn()?;
            self.mailbox_row(&conn, &u, &to)?
        };
        let mut out = CopyResult {
            uidvalidity: dest.uidvalidity,
            uids: Vec::new(),
        };
        let mut sorted: Vec<u32> = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // In slices, so a large COPY does not hold every message in memory.
        for part in sorted.chunks(64) {
            let mut reqs = Vec::new();
            let mut srcs = Vec::new();
            for &uid in part {
                let meta = match self.message_meta(&u.name, &from, uid) {
                    Ok(m) => m,
                    Err(SpoolError::NoMessage { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let bytes = match self.read_message(&u.name, &from, uid) {
                    Ok(b) => b,
                    Err(SpoolError::NoMessage { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let mut r = StoreRequest::new(&u.name, &to, bytes);
                r.flags = meta.flags;
                r.internal_date = Some(meta.internal_date);
                reqs.push(r);
                srcs.push(uid);
            }
            for (src, res) in srcs.into_iter().zip(self.store_batch(reqs)) {
                match res? {
                    StoreOutcome::Stored { uidvalidity, uid } => {
                        out.uidvalidity = uidvalidity;
                        out.uids.push((src, uid));
                    }
                    StoreOutcome::Duplicate => {}
                }
            }
        }
        Ok(out)
    }

    /// Moves messages (IMAP MOVE): copy, then expunge from the source.
    pub fn move_messages(
        &self,
        user: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<CopyResult> {
        let res = self.copy(user, from, uids, to)?;
        let moved: Vec<u32> = res.uids.iter().map(|(s, _)| *s).collect();
        self.expunge(user, from, &moved)?;
        Ok(res)
    }

    /// What changed in a mailbox after `modseq` (no disk sync).
    pub fn changes_since(&self, user: &str, mailbox: &str, modseq: u64) -> Result<Changes> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        Ok(Changes {
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highestmodseq: m.highestmodseq,
            changed: dbs::messages_changed_since(&conn, m.id, modseq)?
                .into_iter()
                .map(meta)
                .collect(),
            vanished: dbs::expunged_since(&conn, m.id, modseq)?,
        })
    }
}

fn meta(r: MessageRow) -> MsgMeta {
    MsgMeta {
        uid: r.uid,
        size: r.size,
        internal_date: r.internal_date,
        flags: Flags::parse(&r.flags),
        modseq: r.modseq,
    }
}

/// Reads a Maildir message (only its header with `headers_only`). Opens the path the
/// index expects first (no separate existence check), then `new/`, then looks the
/// base name up in `cur/` (flags changed by another program). `None` when gone.
fn read_maildir_file(
    md: &Maildir,
    base: &str,
    info: &str,
    headers_only: bool,
) -> Result<Option<Vec<u8>>> {
    let read = |p: &Path| {
        if headers_only {
            read_header(p)
        } else {
            std::fs::read(p)
        }
    };
    for p in [
        md.dir(Sub::Cur).join(format!("{base}:2,{info}")),
        md.dir(Sub::New).join(base),
    ] {
        match read(&p) {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(p, e)),
        }
    }
    let Some((p, _)) = md
        .find(base, info)
        .map_err(|e| SpoolError::io(md.root(), e))?
    else {
        return Ok(None);
    };
    match read(&p) {
        Ok(b) => Ok(Some(b)),
        // Expunged (unlinked) by someone else meanwhile.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::io(p, e)),
    }
}

/// What [`rename_info`] did.
enum Renamed {
    /// Moved out of this directory (into `cur/`).
    From(PathBuf),
    /// Already carried the new info.
    Unchanged,
    /// The file is gone.
    Gone,
}

/// Renames a Maildir message from its `old_info` flags to `new_info` (into `cur/`).
/// Tries the path the index expects, then `new/`, then looks the base name up in
/// `cur/` (flags changed by another program).
fn rename_info(md: &Maildir, base: &str, old_info: &str, new_info: &str) -> Result<Renamed> {
    let to = md.dir(Sub::Cur).join(format!("{base}:2,{new_info}"));
    for (dir, name) in [
        (Sub::Cur, format!("{base}:2,{old_info}")),
        (Sub::New, base.to_string()),
    ] {
        let from = md.dir(dir).join(&name);
        if from == to {
            return Ok(Renamed::Unchanged);
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => return Ok(Renamed::From(md.dir(dir))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(from, e)),
        }
    }
    let Some((from, e)) = md
        .find(base, old_info)
        .map_err(|e| SpoolError::io(md.root(), e))?
    else {
        return Ok(Renamed::Gone);
    };
    if from == to {
        return Ok(Renamed::Unchanged);
    }
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(Renamed::From(md.dir(e.sub))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Renamed::Gone),
        Err(e) => Err(SpoolError::io(from, e)),
    }
}

/// Unlinks a Maildir message (expected at `cur/<base>:2,<info>`, else `new/`, else
/// found by name in `cur/`). Returns the directory it was in; `None` when it was
/// already gone.
fn remove_message_file(md: &Maildir, base: &str, info: &str) -> Result<Option<PathBuf>> {
    for (dir, name) in [
        (Sub::Cur, format!("{base}:2,{info}")),
        (Sub::New, base.to_string()),
    ] {
        let p = md.dir(dir).join(&name);
        match std::fs::remove_file(&p) {
            Ok(()) => return Ok(Some(md.dir(dir))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpoolError::io(p, e)),
        }
    }
    let Some((p, e)) = md
        .find(base, info)
        .map_err(|e| SpoolError::io(md.root(), e))?
    else {
        return Ok(None);
    };
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(Some(md.dir(e.sub))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::io(p, e)),
    }
}

/// The header of a message as the wire shows it (CRLF line ends), up to and
/// including the blank line that ends it: what `message_headers` caches.
pub(crate) fn wire_header(raw: &[u8]) -> Vec<u8> {
    let end = header_end_in(raw, 0).unwrap_or(raw.len());
    to_crlf(&raw[..end]).into_owned()
}

/// A message file's header: its bytes up to and including the empty line that ends
/// the header, or the whole file when there is none. Reads in small steps so a FETCH
/// of headers does not pull in large bodies.
pub(super) fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        let start = buf.len().saturating_sub(2);
        let n = match f.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = header_end_in(&buf, start) {
            buf.truncate(end);
            return Ok(buf);
        }
    }
}

/// Where the header of `raw` ends (just past its empty line), looking at newlines
/// from `from` on; `None` when no empty line has been seen yet.
pub(super) fn header_end_in(raw: &[u8], from: usize) -> Option<usize> {
    // The message may begin with the empty line (no header at all).
    if raw.starts_with(b"\n") {
        return Some(1);
    }
    if raw.starts_with(b"\r\n") {
        return Some(2);
    }
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', &raw[i..]) {
        let nl = i + p;
        match (raw.get(nl + 1), raw.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}
