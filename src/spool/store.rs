//! The durable write path: how a delivered or appended message becomes durable.
//! [`StoreRequest`]s go through [`Spool::store_batch`], which writes each message
//! (Maildir `tmp/` → `new/`/`cur/`, or an mbox append recorded in `mbox_pending`
//! first), fsyncs files in groups of [`SYNC_GROUP`], fsyncs each directory once,
//! and only then commits every index row in one transaction (the commit order in
//! the module doc of `spool`).
//!
//! Owns the order of writes and fsyncs for new messages. It must not reconcile the
//! index with the disk (that is `sync.rs`), change flags or expunge (`message.rs`),
//! and knows no protocol.
//!
//! # Security
//! The message bytes come from the network (fetched mail, SMTP submission, IMAP
//! APPEND) and are stored as they are, read here only for the header cache; size
//! limits are the callers'. Maildir file names are generated here, never taken from
//! the message; mailbox names go through `normalize_name`.

use super::*;

/// Files [`Spool::store_batch`] writes before fsyncing them together (bounds the open
/// descriptors of a large batch).
const SYNC_GROUP: usize = 256;

/// fsyncs the written-but-unsynced files of a batch together; a file whose fsync
/// fails is removed and its job fails.
fn sync_group(
    unsynced: &mut Vec<(usize, PathBuf, std::fs::File)>,
    jobs: &mut [Job],
    results: &mut [Option<Result<StoreOutcome>>],
) {
    let synced = maildir::sync_files(&unsynced.iter().map(|u| &u.2).collect::<Vec<_>>());
    for ((ji, path, file), r) in unsynced.drain(..).zip(synced) {
        drop(file);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&path);
            let j = &mut jobs[ji];
            j.failed = true;
            results[j.idx] = Some(Err(SpoolError::io(path, e)));
        }
    }
}

/// A job inside [`Spool::store_batch`].
struct Job {
    idx: usize,
    user: String,
    mb: MailboxRow,
    store: Store,
    /// Maildir: the base name, the name in tmp/, and the path it was published at.
    name: String,
    tmp: String,
    path: Option<PathBuf>,
    /// Maildir keyed delivery found its file already in place (crash leftover).
    existing: bool,
    /// mbox: where the message bytes went, and its pending row.
    offset: u64,
    length: u64,
    pending: Option<i64>,
    /// Its key turned out to be recorded already (seen under the mbox lock).
    dup: bool,
    size: u64,
    date: i64,
    failed: bool,
}

impl Spool {
    /// Stores many messages with one fsync per file, one per directory and one
    /// transaction (group commit). Returns one result per request, in order; a
    /// `Stored`/`Duplicate` result is durable when this returns.
    pub fn store_batch(&self, reqs: Vec<StoreRequest>) -> Vec<Result<StoreOutcome>> {
        let n = reqs.len();
        let mut results: Vec<Option<Result<StoreOutcome>>> = (0..n).map(|_| None).collect();
        if n == 0 {
            return vec![];
        }
        let mut conn = match self.conn() {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return (0..n)
                    .map(|_| Err(SpoolError::Failed(msg.clone())))
                    .collect();
            }
        };
        let now = db::now();

        // 1. Resolve users and mailboxes; drop requests whose key is already recorded.
        let mut jobs: Vec<Job> = Vec::with_capacity(n);
        let mut batch_keys: HashSet<(String, String, String)> = HashSet::new();
        for (idx, r) in reqs.iter().enumerate() {
            let resolved = (|| -> Result<Option<Job>> {
                let u = self.user(&r.user)?;
                self.prepare_user(&u.name)?;
                let name = normalize_name(&r.mailbox)?;
                if let Some(k) = &r.key {
                    // The same keyed message twice for one mailbox in one batch is one.
                    let id = (u.name.to_ascii_lowercase(), name.clone(), k.clone());
                    if !batch_keys.insert(id) || dbs::key_seen(&conn, k, &u.name)? {
                        return Ok(None);
                    }
                }
                let mb = match dbs::mailbox(&conn, &u.name, &name)? {
                    Some(m) => m,
                    None => self.create_row(&mut conn, &u, &name, false)?,
                };
                Ok(Some(Job {
                    idx,
                    user: u.name.clone(),
                    store: self.store_of(&u, &name),
                    mb,
                    name: String::new(),
                    tmp: String::new(),
                    path: None,
                    existing: false,
                    offset: 0,
                    length: 0,
                    pending: None,
                    dup: false,
                    size: crlf_size(&r.bytes),
                    date: r.internal_date.unwrap_or(now),
                    failed: false,
                }))
            })();
            match resolved {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) => results[idx] = Some(Ok(StoreOutcome::Duplicate)),
                Err(e) => results[idx] = Some(Err(e)),
            }
        }

        // 2. Maildir: write every file, fsync them all (several in flight at once),
        //    publish them, fsync each directory once.
        let mut stamps: Vec<(i64, Maildir, Option<DirStamp>)> = Vec::new();
        for j in &jobs {
            if let Store::Maildir(md) = &j.store
                && !stamps.iter().any(|s| s.0 == j.mb.id)
            {
                stamps.push((j.mb.id, md.clone(), self.stamp_before(j.mb.id, md)));
            }
        }
        let mut unsynced: Vec<(usize, PathBuf, std::fs::File)> = Vec::new();
        for ji in 0..jobs.len() {
            if unsynced.len() >= SYNC_GROUP {
                sync_group(&mut unsynced, &mut jobs, &mut results);
            }
            let j = &mut jobs[ji];
            let Store::Maildir(md) = &j.store else {
                continue;
            };
            let r = &reqs[j.idx];
            let info = r.flags.maildir_part();
            let info = (!info.is_empty()).then(|| info.maildir_info());
            j.name = match &r.key {
                Some(k) => {
                    let id = format!("{}\0{}\0{}", j.user.to_ascii_lowercase(), j.mb.name, k);
                    let digest = Sha256::digest(id.as_bytes());
                    maildir::keyed_name(&self.inner.hostname, &hex::encode(&digest[..16]))
                }
                None => maildir::unique_name(&self.inner.hostname, r.bytes.len() as u64, j.size),
            };
            let res = (|| -> Result<()> {
                if r.key.is_some() {
                    // An earlier attempt that died between publishing and indexing left
                    // the file in place (or a directory sync indexed it since, perhaps
                    // moving it to cur/). Exact paths and the index only: scanning cur/
                    // on every delivery would cost too much in a big mailbox.
                    let target = md.target(&j.name, info.as_deref());
                    let found = if target.exists() {
                        Some(target)
                    } else if dbs::file_indexed(&conn, j.mb.id, &j.name)? {
                        md.find(&j.name, info.as_deref().unwrap_or(""))
                            .map_err(|e| SpoolError::io(md.root(), e))?
                            .map(|(p, _)| p)
                    } else {
                        None
                    };
                    if let Some(p) = found {
                        debug!(file = %p.display(), "keyed delivery found its file from an earlier attempt");
                        j.existing = true;
                        j.path = Some(p);
                        return Ok(());
                    }
                }
                // A keyed name is not unique by itself (a killed attempt may have
                // left it in tmp/): write under a unique name, link into place.
                j.tmp = if r.key.is_some() {
                    maildir::unique_name(&self.inner.hostname, r.bytes.len() as u64, j.size)
                } else {
                    j.name.clone()
                };
                let (path, file) = md
                    .write_tmp_unsynced(&j.tmp, &r.bytes, r.internal_date)
                    .map_err(|e| SpoolError::io(md.tmp_dir().join(&j.tmp), e))?;
                unsynced.push((ji, path, file));
                Ok(())
            })();
            if let Err(e) = res {
                j.failed = true;
                results[j.idx] = Some(Err(e));
            }
        }
        sync_group(&mut unsynced, &mut jobs, &mut results);
        let mut dirs: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for (ji, j) in jobs.iter_mut().enumerate() {
            let Store::Maildir(md) = &j.store else {
                continue;
            };
            if j.failed || j.existing {
                continue;
            }
            let r = &reqs[j.idx];
            let info = r.flags.maildir_part();
            let info = (!info.is_empty()).then(|| info.maildir_info());
            let published = if r.key.is_some() {
                md.publish_link(&j.tmp, &j.name, info.as_deref())
            } else {
                md.publish(&j.name, info.as_deref()).map(Some)
            };
            match published {
                Ok(None) => {
                    // A racing attempt with the same key put it there first.
                    j.existing = true;
                    j.path = Some(md.target(&j.name, info.as_deref()));
                }
                Ok(Some(p)) => {
                    dirs.entry(p.parent().map(Path::to_path_buf).unwrap_or_default())
                        .or_default()
                        .push(ji);
                    j.path = Some(p);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(md.tmp_dir().join(&j.tmp));
                    j.failed = true;
                    results[j.idx] = Some(Err(SpoolError::io(md.root(), e)));
                }
            }
        }
        for (dir, members) in &dirs {
            if let Err(e) = maildir::fsync_dir(dir) {
                let msg = format!("{}: {e}", dir.display());
                for &ji in members {
                    let j = &mut jobs[ji];
                    if let Some(p) = &j.path {
                        let _ = std::fs::remove_file(p);
                    }
                    j.failed = true;
                    results[j.idx] = Some(Err(SpoolError::Failed(msg.clone())));
                }
            }
        }

        for (id, md, before) in stamps {
            self.stamp_after(id, &md, before);
        }

        // 3. mbox: per mailbox, lock, recover, record pending appends, append, fsync.
        let mut locks: Vec<(mbox::MboxLock, u64, Vec<usize>)> = Vec::new();
        let mut by_mbox: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (ji, j) in jobs.iter().enumerate() {
            if matches!(j.store, Store::Mbox(_)) && !j.failed {
                by_mbox.entry(j.mb.id).or_default().push(ji);
            }
        }
        for (_, members) in by_mbox {
            let (path, mb) = match &jobs[members[0]].store {
                Store::Mbox(p) => (p.clone(), jobs[members[0]].mb.clone()),
                Store::Maildir(_) => continue,
            };
            match self.mbox_append(&mut conn, &mb, &path, &reqs, &mut jobs, &members) {
                Ok(Some(lock)) => locks.push(lock),
                Ok(None) => {}
                Err(e) => {
                    let msg = e.to_string();
                    for &ji in &members {
                        if !jobs[ji].failed {
                            jobs[ji].failed = true;
                            results[jobs[ji].idx] = Some(Err(SpoolError::Failed(msg.clone())));
                        }
                    }
                }
            }
        }
        for j in jobs.iter_mut().filter(|j| j.dup) {
            // mbox duplicates found under the lock.
            j.failed = true;
            results[j.idx] = Some(Ok(StoreOutcome::Duplicate));
        }

        // 4. One transaction indexes everything and records the keys.
        let committed = (|| -> Result<Vec<(usize, StoreOutcome)>> {
            let tx = write_tx(&mut conn)?;
            let mut done = Vec::new();
            let mut users = HashSet::new();
            for j in jobs.iter().filter(|j| !j.failed) {
                let r = &reqs[j.idx];
                if let Some(k) = &r.key
                    && matches!(j.store, Store::Maildir(_))
                    && dbs::key_seen(&tx, k, &j.user)?
                {
                    done.push((j.idx, StoreOutcome::Duplicate));
                    continue;
                }
                let flags = r.flags.to_db();
                let (uid, _, _) = dbs::insert_message(
                    &tx,
                    j.mb.id,
                    &NewMessage {
                        file: match j.store {
                            Store::Maildir(_) => Some(j.name.as_str()),
                            Store::Mbox(_) => None,
                        },
                        offset: matches!(j.store, Store::Mbox(_)).then_some(j.offset),
                        length: matches!(j.store, Store::Mbox(_)).then_some(j.length),
                        size: j.size,
                        internal_date: j.date,
                        flags: &flags,
                        message_id: r.message_id.as_deref(),
                    },
                )?;
                // The header cache (imapd's FETCH of headers, SEARCH on headers)
                // is filled while the bytes are at hand.
                db::imapd::put_headers(&tx, j.mb.id, &[(uid, &wire_header(&r.bytes))])?;
                if let Some(k) = &r.key {
                    dbs::record_key(&tx, k, &j.user)?;
                }
                if let Some(p) = j.pending {
                    dbs::delete_pending(&tx, p)?;
                }
                users.insert(j.user.clone());
                done.push((
                    j.idx,
                    StoreOutcome::Stored {
                        uidvalidity: j.mb.uidvalidity,
                        uid,
                    },
                ));
            }
            for u in &users {
                dbs::bump_changes(&tx, u)?;
            }
            tx.commit()?;
            Ok(done)
        })();
        match committed {
            Ok(done) => {
                for (idx, o) in done {
                    if o == StoreOutcome::Duplicate {
                        // A racing delivery of the same key won; ours is redundant.
                        // A keyed name is the same in both deliveries: when the winner
                        // indexed that very file (we linked it first, its link found
                        // ours), it is the winner's copy now and must stay.
                        if let Some(j) = jobs.iter().find(|j| j.idx == idx && !j.existing)
                            && let Some(p) = &j.path
                            && !matches!(
                                dbs::file_indexed(&conn, j.mb.id, &j.name),
                                Ok(true) | Err(_)
                            )
                        {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                    results[idx] = Some(Ok(o));
                }
            }
            Err(e) => {
                // Nothing was indexed: take back what we wrote so a retry does not
                // find a second copy (a crash here is what the recovery paths handle).
                let msg = e.to_string();
                for j in jobs.iter().filter(|j| !j.failed) {
                    if let (Store::Maildir(_), Some(p), false) = (&j.store, &j.path, j.existing) {
                        let _ = std::fs::remove_file(p);
                    }
                    results[j.idx] = Some(Err(SpoolError::Failed(msg.clone())));
                }
                for (lock, start, _) in &locks {
                    let _ = lock.file.set_len(*start);
                    let _ = lock.file.sync_all();
                }
            }
        }
        drop(locks);
        let mut notified = HashSet::new();
        for j in &jobs {
            if matches!(results[j.idx], Some(Ok(StoreOutcome::Stored { .. })))
                && notified.insert((j.user.clone(), j.mb.name.clone()))
            {
                self.notify(&j.user, &j.mb.name);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SpoolError::Failed("not processed".into()))))
            .collect()
    }

    /// Appends the `members` jobs to one mbox. Returns the held lock (released after
    /// the index commit) with the file length before the append.
    fn mbox_append(
        &self,
        conn: &mut Connection,
        mb: &MailboxRow,
        path: &Path,
        reqs: &[StoreRequest],
        jobs: &mut [Job],
        members: &[usize],
    ) -> Result<Option<(mbox::MboxLock, u64, Vec<usize>)>> {
        let lock = mbox::MboxLock::acquire(path, self.inner.lock_timeout)
            .map_err(|e| SpoolError::io(path, e))?;
        self.sync_mbox(conn, mb, &lock)?;
        // Keys again, now that no other writer can append.
        let mut todo = Vec::new();
        for &ji in members {
            let r = &reqs[jobs[ji].idx];
            if let Some(k) = &r.key
                && dbs::key_seen(conn, k, &jobs[ji].user)?
            {
                jobs[ji].dup = true;
                continue;
            }
            todo.push(ji);
        }
        if todo.is_empty() {
            return Ok(None);
        }
        let start = lock.len().map_err(|e| SpoolError::io(path, e))?;
        let mut tail = mbox::tail(&lock.file, start).map_err(|e| SpoolError::io(path, e))?;
        let mut buf = Vec::new();
        let mut pend = Vec::new();
        for &ji in &todo {
            let r = &reqs[jobs[ji].idx];
            let at = start + buf.len() as u64;
            let c = mbox::chunk(&tail, r.sender.as_deref(), jobs[ji].date, &r.bytes);
            jobs[ji].offset = at + c.msg_start;
            jobs[ji].length = c.msg_len;
            pend.push(dbs::PendingAppend {
                id: 0,
                mailbox_id: mb.id,
                start: at,
                offset: at + c.msg_start,
                length: c.msg_len,
                total: c.bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&c.bytes)),
                size: jobs[ji].size,
                internal_date: jobs[ji].date,
                flags: r.flags.to_db(),
                message_id: r.message_id.clone(),
                delivery_key: r.key.clone(),
            });
            buf.extend_from_slice(&c.bytes);
            tail = b"\n\n".to_vec();
        }
        let tx = write_tx(&mut *conn)?;
        for (p, &ji) in pend.iter().zip(&todo) {
            jobs[ji].pending = Some(dbs::add_pending(&tx, p)?);
        }
        tx.commit()?;
        use std::os::unix::fs::FileExt;
        let written = lock
            .file
            .write_all_at(&buf, start)
            .and_then(|_| lock.file.sync_all());
        if let Err(e) = written {
            // Never leave half a message: cut the file back and forget the appends.
            let _ = lock.file.set_len(start);
            let _ = lock.file.sync_all();
            let tx = write_tx(&mut *conn)?;
            for &ji in &todo {
                if let Some(p) = jobs[ji].pending {
                    dbs::delete_pending(&tx, p)?;
                }
            }
            tx.commit()?;
            return Err(SpoolError::io(path, e));
        }
        Ok(Some((lock, start, todo)))
    }
}
