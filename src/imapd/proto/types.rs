//! The vocabulary of parsed IMAP commands: what a client asked for, as plain data.
//!
//! Owns no I/O and no mailbox semantics; [`super::parse`] builds these values and the
//! session's `op/*` handlers consume them.

use super::seq::SeqSet;

/// One complete client command with its tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub tag: String,
    pub command: Command,
}

/// The commands zolder understands (RFC 3501 plus the extensions it advertises).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Authenticate {
        mechanism: String,
        /// SASL-IR initial response (base64 text, `=` for empty).
        initial: Option<String>,
    },
    Login {
        user: String,
        password: String,
    },
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
        /// RFC 7162 §3.2.5 `(QRESYNC (...))`.
        qresync: Option<QresyncParams>,
    },
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    List(ListArgs),
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        flags: Vec<String>,
        /// INTERNALDATE as unix seconds.
        date: Option<i64>,
        message: Vec<u8>,
        /// Sent as `UTF8 (~{n})` (RFC 6855 §4).
        utf8: bool,
    },
    /// MULTIAPPEND (RFC 3502) and/or CATENATE (RFC 4469): several messages, or one
    /// built from parts; stored all or nothing.
    AppendMany {
        mailbox: String,
        messages: Vec<AppendMsg>,
    },
    Check,
    Close,
    Unselect,
    Expunge {
        /// UID EXPUNGE (UIDPLUS): only these UIDs.
        uids: Option<SeqSet>,
    },
    Search {
        uid: bool,
        /// ESEARCH `RETURN (...)`; `None` = classic `* SEARCH` response.
        ret: Option<Vec<SearchReturn>>,
        key: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        attrs: Vec<FetchAttr>,
        changed_since: Option<u64>,
        /// `VANISHED` modifier (QRESYNC, UID FETCH only).
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Idle,
    Enable(Vec<String>),
    /// RFC 5256 SORT / UID SORT.
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        key: SearchKey,
        /// ESORT (RFC 5267 §3.1): `SORT RETURN (MIN MAX ALL COUNT) ...`.
        ret: Option<Vec<SearchReturn>>,
    },
    /// RFC 5256 THREAD / UID THREAD.
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        key: SearchKey,
    },
    /// RFC 9208 GETQUOTA root.
    GetQuota(String),
    /// RFC 9208 GETQUOTAROOT mailbox.
    GetQuotaRoot(String),
    /// RFC 9208 SETQUOTA root (list): parsed so it can be refused cleanly.
    SetQuota(String),
    /// RFC 4978 COMPRESS mechanism.
    Compress(String),
    /// RFC 2971 ID: field/value pairs, or NIL.
    Id(Vec<(String, Option<String>)>),
}

impl Command {
    /// The command's name, for logs and for "command not allowed now" answers.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Login { .. } => "LOGIN",
            Command::Select {
                read_only: false, ..
            } => "SELECT",
            Command::Select { .. } => "EXAMINE",
            Command::Create { .. } => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List(_) => "LIST",
            Command::Lsub { .. } => "LSUB",
            Command::Namespace => "NAMESPACE",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } | Command::AppendMany { .. } => "APPEND",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge { .. } => "EXPUNGE",
            Command::Search { .. } => "SEARCH",
            Command::Fetch { .. } => "FETCH",
            Command::Store { .. } => "STORE",
            Command::Copy { .. } => "COPY",
            Command::Move { .. } => "MOVE",
            Command::Idle => "IDLE",
            Command::Enable(_) => "ENABLE",
            Command::Sort { .. } => "SORT",
            Command::Thread { .. } => "THREAD",
            Command::GetQuota(_) => "GETQUOTA",
            Command::GetQuotaRoot(_) => "GETQUOTAROOT",
            Command::SetQuota(_) => "SETQUOTA",
            Command::Compress(_) => "COMPRESS",
            Command::Id(_) => "ID",
        }
    }

    /// Whether the command addresses messages by sequence number, during which the
    /// server must not send EXPUNGE (RFC 3501 §7.4.1).
    pub fn uses_sequence_numbers(&self) -> bool {
        match self {
            Command::Fetch { uid, .. }
            | Command::Store { uid, .. }
            | Command::Copy { uid, .. }
            | Command::Move { uid, .. }
            | Command::Search { uid, .. }
            | Command::Sort { uid, .. }
            | Command::Thread { uid, .. } => !uid,
            _ => false,
        }
    }
}

/// QRESYNC parameters of SELECT/EXAMINE (RFC 7162 §3.2.5).
#[derive(Debug, Clone, PartialEq)]
pub struct QresyncParams {
    pub uidvalidity: u32,
    pub modseq: u64,
    /// UIDs the client knows; `None` = all.
    pub known_uids: Option<SeqSet>,
    /// `(known-sequence-set known-uid-set)`: accepted and checked for syntax. zolder
    /// keeps every expunged UID with its MODSEQ, so it never needs the hint.
    pub seq_match: Option<(SeqSet, SeqSet)>,
}

/// One SORT criterion (RFC 5256 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    /// SORT=DISPLAY (RFC 5957): the display name, else the address.
    DisplayFrom,
    DisplayTo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// `LIST` with RFC 5258 (LIST-EXTENDED), RFC 6154 (SPECIAL-USE) and RFC 5819 (LIST-STATUS).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListArgs {
    pub reference: String,
    pub patterns: Vec<String>,
    /// Selection options: SUBSCRIBED, SPECIAL-USE, RECURSIVEMATCH, REMOTE.
    pub subscribed: bool,
    pub special_use_only: bool,
    pub recursive_match: bool,
    /// Return options.
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    pub return_status: Option<Vec<StatusItem>>,
    /// Whether any extended syntax was used (changes nothing in output except CHILDINFO).
    pub extended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
    /// RFC 9208 §4.2: messages flagged `\Deleted`.
    Deleted,
    /// RFC 9208 §4.2: octets an EXPUNGE would free.
    DeletedStorage,
    /// RFC 8438 STATUS=SIZE: octets in the mailbox.
    Size,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::Deleted => "DELETED",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
            StatusItem::Size => "SIZE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// ESEARCH return options (RFC 4731).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    /// SEARCHRES (RFC 5182): keep the result as `$`.
    Save,
}

/// A search criterion (RFC 3501 §6.4.4, plus MODSEQ from RFC 7162).
#[derive(Debug, Clone, PartialEq)]
pub enum SearchKey {
    All,
    /// Conjunction of the keys in a list (the top level, and `( ... )`).
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    Seq(SeqSet),
    Uid(SeqSet),
    /// A system flag or keyword that must be set (`SEEN` → `\Seen`, `KEYWORD x` → `x`).
    Flag(String),
    /// A flag that must not be set (`UNSEEN`, `UNKEYWORD x`, ...).
    NotFlag(String),
    New,
    Old,
    Recent,
    /// INTERNALDATE comparisons; the value is a day (unix seconds of 00:00 UTC).
    Before(i64),
    On(i64),
    Since(i64),
    /// Date: header comparisons.
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    Larger(u64),
    Smaller(u64),
    /// A header field containing a substring (`FROM x` is `Header("From", x)`).
    Header(String, String),
    Body(String),
    Text(String),
    ModSeq(u64),
}

/// A FETCH data item.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchAttr {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    BodyStructure,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    ModSeq,
    /// `BODY[...]`, `BODY.PEEK[...]`, `RFC822`, `RFC822.HEADER`, `RFC822.TEXT`.
    Section {
        section: Section,
        partial: Option<(u32, u32)>,
        peek: bool,
        /// How the response names it: `RFC822`, `RFC822.HEADER`, `RFC822.TEXT`
        /// or `None` for BODY[..].
        alias: Option<&'static str>,
    },
    Binary(BinarySection),
}

/// One message of a MULTIAPPEND or CATENATE command.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendMsg {
    pub flags: Vec<String>,
    /// INTERNALDATE as unix seconds.
    pub date: Option<i64>,
    /// The message's pieces in order; one `Text` for a plain APPEND literal.
    pub parts: Vec<AppendPart>,
}

/// A piece of an APPEND message (RFC 4469 §5).
#[derive(Debug, Clone, PartialEq)]
pub enum AppendPart {
    /// Literal bytes (`TEXT {n}`, or the plain APPEND literal; `~{n}` for BINARY).
    Text(Vec<u8>),
    /// An IMAP URL whose bytes are copied (`URL "/INBOX;UIDVALIDITY=1/;UID=2"`).
    Url(String),
}

/// `BINARY[1.2]<0.100>`, `BINARY.PEEK[..]`, `BINARY.SIZE[..]` (RFC 3516): the part
/// with its Content-Transfer-Encoding undone.
#[derive(Debug, Clone, PartialEq)]
pub struct BinarySection {
    pub parts: Vec<u32>,
    pub partial: Option<(u32, u32)>,
    pub peek: bool,
    /// BINARY.SIZE: only the decoded size.
    pub size: bool,
}

/// A body section: a part path (`1.2`) and what of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub parts: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SectionText {
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}
