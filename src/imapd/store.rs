//! [`Backend`] over the real mail store (`crate::spool::Spool`): translates names,
//! flag forms and errors, and serves messages with CRLF line ends (the spool keeps
//! bytes as delivered; IMAP's RFC822.SIZE and sections count CRLF).
//!
//! Spam training: when bogofilter is on, a COPY/MOVE into the `\Junk` mailbox queues
//! the new copy as spam, and one out of Junk (except into `\Trash`) as ham
//! (`db::quarantine::enqueue_training`); the scan stage's worker drains the queue, so
//! the IMAP command never waits for bogofilter.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;

use super::backend::{
    Backend, ChangeSignal, FlagChange, MailboxInfo, MailboxState, Meta, StatusData, StoreError,
    StoreResult, Usage,
};
use super::backend::{MailboxUsage, SortKeys};
use super::proto::StoreMode;
use super::view::{FlagTable, Msg, View};
use crate::db::sortkeys::SortKeyRow;
use crate::spool::{ChangeWatcher, FlagOp, Flags, MsgMeta, Spool, SpoolError};

/// The spool as imapd's store.
#[derive(Clone)]
pub struct SpoolBackend {
    spool: Spool,
    /// Recently opened big mailboxes, shared by the sessions of this process.
    views: Arc<ViewCache>,
    /// The database to queue spam/ham training in, when bogofilter is on.
    training_db: Option<PathBuf>,
    /// A connection for QUOTA usage sums, opened on first use.
    usage_db: Arc<Mutex<Option<crate::db::Connection>>>,
}

impl SpoolBackend {
    pub fn new(spool: Spool) -> SpoolBackend {
        SpoolBackend {
            spool,
            views: Default::default(),
            training_db: None,
            usage_db: Arc::new(Mutex::new(None)),
        }
    }

    /// Queues spam/ham training for Junk moves into the database at `db`.
    pub fn with_training(mut self, db: PathBuf) -> SpoolBackend {
        self.training_db = Some(db);
        self
    }

    /// Runs `f` on imapd's own connection (QUOTA and STATUS sizes, the SORT key
    /// cache), opened on first use.
    fn with_usage_db<T>(
        &self,
        f: impl FnOnce(&crate::db::Connection) -> crate::db::Result<T>,
    ) -> StoreResult<T> {
        let internal = |e: crate::db::DbError| StoreError::Internal(format!("usage: {e}"));
        let mut guard = self.usage_db.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let path = self.spool.data_dir().join("zolder.db");
            *guard = Some(crate::db::open(&path).map_err(internal)?);
        }
        let conn = guard
            .as_ref()
            .ok_or_else(|| StoreError::Internal("usage: no database".into()))?;
        f(conn).map_err(internal)
    }

    /// After a copy from `from` to `to`: queue training if Junk is involved.
    fn train(&self, user: &str, from: &str, to: &str, new_uids: &[u32]) {
        let Some(db) = &self.training_db else { return };
        if new_uids.is_empty() {
            return;
        }
        let Ok(boxes) = self.spool.mailboxes(user) else {
            return;
        };
        let role = |name: &str| {
            boxes
                .iter()
                .find(|b| b.name == name)
                .and_then(|b| b.special_use.clone())
                .unwrap_or_default()
        };
        let (rf, rt) = (role(from), role(to));
        use crate::db::quarantine::TrainKind;
        let kind = if rt == "\\Junk" && rf != "\\Junk" {
            TrainKind::Spam
        } else if rf == "\\Junk" && rt != "\\Junk" && rt != "\\Trash" {
            TrainKind::Ham
        } else {
            return;
        };
        let r = crate::db::open(db).and_then(|c| {
            for &uid in new_uids {
                crate::db::quarantine::enqueue_training(&c, user, to, uid, kind)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            warn!(user, mailbox = to, error = %e, "could not queue spam training");
        }
    }
}

const EMPTY: MailboxState = MailboxState {
    uidvalidity: 0,
    uidnext: 0,
    highestmodseq: 0,
};

/// A mailbox's message list as a session's view holds it, at one MODSEQ.
struct Snapshot {
    state: MailboxState,
    msgs: Vec<Msg>,
    flags: FlagTable,
}

/// The message lists of recently opened big mailboxes. A client that opens several
/// connections, or SELECTs its INBOX again at every check, gets an unchanged
/// 50 000-message list copied (about 1 MB, well under a millisecond) instead of
/// read again from the index. Valid while the mailbox's UIDVALIDITY and
/// HIGHESTMODSEQ are unchanged (every change takes a new MODSEQ).
#[derive(Default)]
struct ViewCache {
    map: Mutex<HashMap<(String, String), Arc<Snapshot>>>,
}

impl ViewCache {
    /// Only lists this long are kept (smaller ones are cheap to read).
    const MIN_MESSAGES: usize = 5_000;
    /// Mailboxes kept at most.
    const MAX_MAILBOXES: usize = 8;

    fn get(&self, key: &(String, String)) -> Option<Arc<Snapshot>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn put(&self, key: (String, String), v: &View) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if v.msgs.len() < Self::MIN_MESSAGES {
            map.remove(&key);
            return;
        }
        if map.len() >= Self::MAX_MAILBOXES && !map.contains_key(&key) {
            // Drop the smallest: the big ones are what the cache is for.
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, s)| s.msgs.len())
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.insert(
            key,
            Arc::new(Snapshot {
                state: v.state,
                msgs: v.msgs.clone(),
                flags: v.flag_table.clone(),
            }),
        );
    }
}

fn err(e: SpoolError) -> StoreError {
    match e {
        SpoolError::NoMailbox { .. } => StoreError::NoMailbox,
        SpoolError::MailboxExists { .. } => StoreError::Exists,
        SpoolError::BadName { name, why } => {
            StoreError::Refused(format!("Invalid mailbox name {name}: {why}"))
        }
        SpoolError::Protected(name) => StoreError::Refused(format!("{name} can't be removed")),
        SpoolError::UnknownUser(u) => {
            StoreError::Refused(format!("{u} has no mailboxes on this server"))
        }
        e => StoreError::Internal(e.to_string()),
    }
}

fn meta(m: MsgMeta) -> Meta {
    Meta {
        uid: m.uid,
        modseq: m.modseq,
        flags: m.flags.to_db(),
        size: m.size,
        internal_date: m.internal_date,
    }
}

struct Watcher(ChangeWatcher);

#[async_trait::async_trait]
impl ChangeSignal for Watcher {
    async fn changed(&mut self) {
        self.0.changed().await;
    }
}

impl Backend for SpoolBackend {
    fn list(&self, user: &str) -> StoreResult<Vec<MailboxInfo>> {
        let mut out: Vec<MailboxInfo> = self
            .spool
            .mailboxes(user)
            .map_err(err)?
            .into_iter()
            .map(|m| MailboxInfo {
                name: m.name,
                special_use: m.special_use,
                subscribed: m.subscribed,
                exists: true,
            })
            .collect();
        let kept = self.spool.subscriptions_without_mailbox(user).map_err(err)?;
        out.extend(kept.into_iter().map(|name| MailboxInfo {
            name,
            special_use: None,
            subscribed: true,
            exists: false,
        }));
        Ok(out)
    }

    fn create(&self, user: &str, name: &str, special_use: Option<&str>) -> StoreResult<()> {
        if special_use.is_some() {
            return Err(StoreError::Refused(
                "[USEATTR] Setting a special use is not supported".into(),
            ));
        }
        self.spool.create_mailbox(user, name).map_err(err)
    }

    fn delete(&self, user: &str, name: &str) -> StoreResult<()> {
        self.spool.delete_mailbox(user, name).map_err(err)
    }

    fn rename(&self, user: &str, from: &str, to: &str) -> StoreResult<()> {
        self.spool.rename_mailbox(user, from, to).map_err(err)
    }

    fn set_subscribed(&self, user: &str, name: &str, on: bool) -> StoreResult<()> {
        self.spool.subscribe(user, name, on).map_err(err)
    }

    fn open(&self, user: &str, name: &str) -> StoreResult<(MailboxState, Vec<Meta>)> {
        let s = self.spool.select(user, name).map_err(err)?;
        Ok((
            MailboxState {
                uidvalidity: s.uidvalidity,
                uidnext: s.uidnext,
                highestmodseq: s.highestmodseq,
            },
            s.messages.into_iter().map(meta).collect(),
        ))
    }

    fn open_view(&self, user: &str, name: &str, read_only: bool) -> StoreResult<View> {
        let key = (user.to_ascii_lowercase(), name.to_string());
        let cached = self.views.get(&key);
        let known = cached
            .as_ref()
            .map(|c| (c.state.uidvalidity, c.state.highestmodseq));
        let mut v = View::new(name.to_string(), EMPTY, Vec::new(), read_only);
        let ((uidvalidity, uidnext, highestmodseq), read) = self
            .spool
            .select_each(user, name, known, |uid, size, date, flags, modseq| {
                v.push(uid, size, date, flags, modseq)
            })
            .map_err(err)?;
        v.state = MailboxState {
            uidvalidity,
            uidnext,
            highestmodseq,
        };
        match (read, cached) {
            (false, Some(c)) => {
                // Unchanged since another session opened it: copy its list.
                v.msgs = c.msgs.clone();
                v.flag_table = c.flags.clone();
            }
            _ => self.views.put(key, &v),
        }
        Ok(v)
    }

    fn state(&self, user: &str, name: &str) -> StoreResult<MailboxState> {
        let (uidvalidity, uidnext, highestmodseq) = self.spool.counters(user, name).map_err(err)?;
        Ok(MailboxState {
            uidvalidity,
            uidnext,
            highestmodseq,
        })
    }

    fn changes(
        &self,
        user: &str,
        name: &str,
        since: u64,
    ) -> StoreResult<(MailboxState, Vec<Meta>, Vec<u32>)> {
        let c = self.spool.changes_since(user, name, since).map_err(err)?;
        Ok((
            MailboxState {
                uidvalidity: c.uidvalidity,
                uidnext: c.uidnext,
                highestmodseq: c.highestmodseq,
            },
            c.changed.into_iter().map(meta).collect(),
            c.vanished,
        ))
    }

    fn status(&self, user: &str, name: &str) -> StoreResult<StatusData> {
        let m = self.spool.status(user, name).map_err(err)?;
        Ok(StatusData {
            state: MailboxState {
                uidvalidity: m.uidvalidity,
                uidnext: m.uidnext,
                highestmodseq: m.highestmodseq,
            },
            messages: m.messages,
            unseen: m.unseen,
        })
    }

    fn read(&self, user: &str, name: &str, uid: u32) -> StoreResult<Vec<u8>> {
        let b = self.spool.read_message(user, name, uid).map_err(err)?;
        Ok(match crate::spool::to_crlf(&b) {
            std::borrow::Cow::Borrowed(_) => b,
            std::borrow::Cow::Owned(o) => o,
        })
    }

    fn read_many(
        &self,
        user: &str,
        name: &str,
        uids: &[u32],
        headers_only: bool,
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let all = self
            .spool
            .read_messages(user, name, uids, headers_only)
            .map_err(err)?;
        Ok(all
            .into_iter()
            .map(|b| {
                b.map(|b| match crate::spool::to_crlf(&b) {
                    std::borrow::Cow::Borrowed(_) => b,
                    std::borrow::Cow::Owned(o) => o,
                })
            })
            .collect())
    }

    fn append(
        &self,
        user: &str,
        name: &str,
        bytes: Vec<u8>,
        flags: &str,
        date: Option<i64>,
    ) -> StoreResult<(u32, u32)> {
        let a = self
            .spool
            .append(user, name, bytes, &Flags::parse(flags), date)
            .map_err(err)?;
        Ok((a.uidvalidity, a.uid))
    }

    fn append_many(
        &self,
        user: &str,
        name: &str,
        msgs: Vec<(Vec<u8>, String, Option<i64>)>,
    ) -> StoreResult<(u32, Vec<u32>)> {
        let msgs = msgs
            .into_iter()
            .map(|(b, f, d)| (b, Flags::parse(&f), d))
            .collect();
        let done = self.spool.append_many(user, name, msgs).map_err(err)?;
        let validity = done.first().map_or(0, |a| a.uidvalidity);
        Ok((validity, done.into_iter().map(|a| a.uid).collect()))
    }

    fn store_flags(
        &self,
        user: &str,
        name: &str,
        uids: &[u32],
        mode: StoreMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> StoreResult<FlagChange> {
        let op = match mode {
            StoreMode::Replace => FlagOp::Set,
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
        };
        let mut f = Flags::new();
        for x in flags {
            f.insert(x);
        }
        let r = self
            .spool
            .store_flags(user, name, uids, op, &f, unchanged_since)
            .map_err(err)?;
        Ok(FlagChange {
            updated: r.updated.into_iter().map(meta).collect(),
            failed: r.failed,
        })
    }

    fn copy(
        &self,
        user: &str,
        name: &str,
        uids: &[u32],
        dest: &str,
    ) -> StoreResult<(u32, Vec<(u32, u32)>)> {
        let r = self.spool.copy(user, name, uids, dest).map_err(err)?;
        let new: Vec<u32> = r.uids.iter().map(|p| p.1).collect();
        self.train(user, name, dest, &new);
        Ok((r.uidvalidity, r.uids))
    }

    fn expunge(&self, user: &str, name: &str, uids: &[u32]) -> StoreResult<Vec<u32>> {
        self.spool.expunge(user, name, uids).map_err(err)
    }

    fn usage(&self, user: &str) -> StoreResult<Usage> {
        let u = self.with_usage_db(|c| crate::db::quota::usage(c, user))?;
        Ok(Usage {
            bytes: u.bytes,
            messages: u.messages,
        })
    }

    fn sort_keys(&self, user: &str, name: &str) -> StoreResult<Vec<SortKeys>> {
        let rows = self.with_usage_db(|c| crate::db::sortkeys::load(c, user, name))?;
        Ok(rows
            .into_iter()
            .map(|r| SortKeys {
                uid: r.uid,
                sent: r.sent,
                subject: r.subject,
                is_reply: r.is_reply,
                from: r.from,
                to: r.to,
                cc: r.cc,
                display_from: r.display_from,
                display_to: r.display_to,
                message_id: r.message_id,
                references: r
                    .refs
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            })
            .collect())
    }

    fn put_sort_keys(&self, user: &str, name: &str, keys: &[SortKeys]) -> StoreResult<()> {
        let rows: Vec<SortKeyRow> = keys
            .iter()
            .map(|k| SortKeyRow {
                uid: k.uid,
                sent: k.sent,
                subject: k.subject.clone(),
                is_reply: k.is_reply,
                from: k.from.clone(),
                to: k.to.clone(),
                cc: k.cc.clone(),
                display_from: k.display_from.clone(),
                display_to: k.display_to.clone(),
                message_id: k.message_id.clone(),
                refs: k.references.join(" "),
            })
            .collect();
        self.with_usage_db(|c| crate::db::sortkeys::store(c, user, name, &rows))
    }

    fn mailbox_usage(&self, user: &str, name: &str) -> StoreResult<MailboxUsage> {
        let u = self
            .with_usage_db(|c| crate::db::quota::mailbox_usage(c, user, name))?
            .ok_or(StoreError::NoMailbox)?;
        Ok(MailboxUsage {
            bytes: u.bytes,
            deleted: u.deleted,
            deleted_bytes: u.deleted_bytes,
        })
    }

    fn take_recent(&self, user: &str, name: &str, upto: u32, take: bool) -> StoreResult<u32> {
        let name = crate::spool::normalize_name(name).map_err(err)?;
        self.with_usage_db(|c| crate::db::imapd::take_recent(c, user, &name, upto, take))?
            .ok_or(StoreError::NoMailbox)
    }

    fn recent_count(&self, user: &str, name: &str) -> StoreResult<u32> {
        let name = crate::spool::normalize_name(name).map_err(err)?;
        self.with_usage_db(|c| crate::db::imapd::recent_count(c, user, &name))
    }

    fn watch(&self, user: &str) -> StoreResult<Box<dyn ChangeSignal>> {
        let w = self.spool.watch(user).map_err(err)?;
        Ok(Box::new(Watcher(w.poll_every(Duration::from_secs(1)))))
    }
}
