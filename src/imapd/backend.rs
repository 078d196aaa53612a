//! What imapd needs from the mail store, as one small trait: mailboxes, the message
//! index (UID, flags, MODSEQ, size, INTERNALDATE), message bytes, changes since a
//! MODSEQ, and a per-user change signal for IDLE.
//!
//! Every method is blocking (SQLite, files); sessions call them on
//! `spawn_blocking`. The implementation over `crate::spool` is in [`super::store`];
//! keeping the session on this seam lets it be tested against the real spool while
//! staying ignorant of Maildir and mbox.

/// Why a store operation failed. `Refused` and `NoMailbox`/`Exists` are the user's
/// doing (answered `NO`); `Internal` is ours (logged, answered generically).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such mailbox")]
    NoMailbox,
    #[error("mailbox already exists")]
    Exists,
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One mailbox as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub name: String,
    pub special_use: Option<String>,
    pub subscribed: bool,
    /// `false` for a subscribed name that has no mailbox (RFC 5258 `\NonExistent`).
    pub exists: bool,
}

/// A mailbox's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
}

/// One message's index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub modseq: u64,
    /// Space-separated, as stored (`\Seen $Junk`).
    pub flags: String,
    pub size: u64,
    pub internal_date: i64,
}

/// STATUS data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusData {
    pub state: MailboxState,
    pub messages: u32,
    pub unseen: u32,
}

/// What a flag change did: the messages changed (new flags and MODSEQ) and those
/// left alone because of UNCHANGEDSINCE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagChange {
    pub updated: Vec<Meta>,
    pub failed: Vec<u32>,
}

/// What all of a user's mailboxes hold (QUOTA).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of RFC822.SIZE, octets.
    pub bytes: u64,
    pub messages: u64,
}

/// Sizes of one mailbox (STATUS SIZE, DELETED, DELETED-STORAGE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    pub bytes: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
}

/// SORT/THREAD keys of one message as cached by the store (RFC 5256; see
/// `proto::thread::SortMsg`, which adds what the index knows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortKeys {
    pub uid: u32,
    /// The Date: header; `None` when it has none that parses.
    pub sent: Option<i64>,
    pub subject: String,
    pub is_reply: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    pub message_id: Option<String>,
    pub references: Vec<String>,
}

/// Wakes when the user's mail changes.
#[async_trait::async_trait]
pub trait ChangeSignal: Send {
    /// Returns after the next change (in this process at once; by another process
    /// within a few seconds).
    async fn changed(&mut self);
}

/// The store as imapd sees it. Mailbox names are the store's (UTF-8, `.`-separated,
/// `INBOX`); the session converts modified UTF-7 at the wire.
pub trait Backend: Send + Sync + 'static {
    fn list(&self, user: &str) -> StoreResult<Vec<MailboxInfo>>;
    fn create(&self, user: &str, name: &str, special_use: Option<&str>) -> StoreResult<()>;
    fn delete(&self, user: &str, name: &str) -> StoreResult<()>;
    fn rename(&self, user: &str, from: &str, to: &str) -> StoreResult<()>;
    fn set_subscribed(&self, user: &str, name: &str, on: bool) -> StoreResult<()>;
    /// Opens a mailbox (reconciling with the disk): its counters and every message,
    /// by UID.
    fn open(&self, user: &str, name: &str) -> StoreResult<(MailboxState, Vec<Meta>)>;
    /// Opens a mailbox (as [`open`](Self::open)) straight into a session's view.
    /// The spool's implementation builds it without an allocation per message.
    fn open_view(&self, user: &str, name: &str, read_only: bool) -> StoreResult<super::view::View> {
        let (state, metas) = self.open(user, name)?;
        Ok(super::view::View::new(
            name.to_string(),
            state,
            metas,
            read_only,
        ))
    }
    /// The counters only (a cheap "did anything change?").
    fn state(&self, user: &str, name: &str) -> StoreResult<MailboxState>;
    /// Messages whose MODSEQ is above `since` (new or changed) and UIDs expunged
    /// above `since`.
    fn changes(
        &self,
        user: &str,
        name: &str,
        since: u64,
    ) -> StoreResult<(MailboxState, Vec<Meta>, Vec<u32>)>;
    fn status(&self, user: &str, name: &str) -> StoreResult<StatusData>;
    /// One message, with CRLF line ends (what the wire and RFC822.SIZE use).
    fn read(&self, user: &str, name: &str, uid: u32) -> StoreResult<Vec<u8>>;
    /// Several messages (CRLF line ends), `None` for one that is gone. With
    /// `headers_only`, a message may be cut after the empty line ending its header.
    fn read_many(
        &self,
        user: &str,
        name: &str,
        uids: &[u32],
        headers_only: bool,
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let _ = headers_only;
        Ok(uids
            .iter()
            .map(|&u| self.read(user, name, u).ok())
            .collect())
    }
    /// Stores a message durably; returns (UIDVALIDITY, UID).
    fn append(
        &self,
        user: &str,
        name: &str,
        bytes: Vec<u8>,
        flags: &str,
        date: Option<i64>,
    ) -> StoreResult<(u32, u32)>;
    /// Stores several messages (bytes, flags, INTERNALDATE) in one mailbox, all or
    /// nothing, each durable before it returns: (UIDVALIDITY, UIDs in order).
    fn append_many(
        &self,
        user: &str,
        name: &str,
        msgs: Vec<(Vec<u8>, String, Option<i64>)>,
    ) -> StoreResult<(u32, Vec<u32>)> {
        let mut validity = 0;
        let mut uids = Vec::new();
        for (bytes, flags, date) in msgs {
            match self.append(user, name, bytes, &flags, date) {
                Ok((v, u)) => {
                    validity = v;
                    uids.push(u);
                }
                Err(e) => {
                    let _ = self.expunge(user, name, &uids);
                    return Err(e);
                }
            }
        }
        Ok((validity, uids))
    }
    /// STORE: sets, adds or removes `flags` on `uids`.
    fn store_flags(
        &self,
        user: &str,
        name: &str,
        uids: &[u32],
        mode: super::proto::StoreMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> StoreResult<FlagChange>;
    /// Copies messages (with their flags and INTERNALDATE) into `dest`; returns the
    /// destination's UIDVALIDITY and (source UID, new UID) pairs.
    fn copy(
        &self,
        user: &str,
        name: &str,
        uids: &[u32],
        dest: &str,
    ) -> StoreResult<(u32, Vec<(u32, u32)>)>;
    /// Removes messages; returns the UIDs that were removed.
    fn expunge(&self, user: &str, name: &str, uids: &[u32]) -> StoreResult<Vec<u32>>;
    /// Storage and message count over all the user's mailboxes (QUOTA).
    fn usage(&self, user: &str) -> StoreResult<Usage>;
    /// The cached SORT/THREAD keys of a mailbox's messages (any subset of them).
    fn sort_keys(&self, user: &str, name: &str) -> StoreResult<Vec<SortKeys>>;
    /// Caches SORT/THREAD keys (a header never changes for a UID).
    fn put_sort_keys(&self, user: &str, name: &str, keys: &[SortKeys]) -> StoreResult<()>;
    /// Size, `\Deleted` count and their size, of one mailbox.
    fn mailbox_usage(&self, user: &str, name: &str) -> StoreResult<MailboxUsage>;
    /// `\Recent` (RFC 3501 §2.3.2): the UID up to which other sessions took the
    /// mailbox's messages as recent; with `take`, the caller takes those up to `upto`.
    fn take_recent(&self, user: &str, name: &str, upto: u32, take: bool) -> StoreResult<u32>;
    /// Messages no session has taken as recent yet (STATUS RECENT).
    fn recent_count(&self, user: &str, name: &str) -> StoreResult<u32>;
    /// The user's change signal (for IDLE).
    fn watch(&self, user: &str) -> StoreResult<Box<dyn ChangeSignal>>;
}
