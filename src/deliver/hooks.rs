//! The two seams of the delivery pipeline where content checks plug in:
//! [`ScanStage`] (virus/spam/banned checks, once per message, async because scanners
//! are network services) and [`FilterStage`] (per-user filters such as Sieve, once per
//! local recipient, blocking). Both default to [`PassThrough`], which accepts and keeps
//! everything.
//!
//! Rules for implementations (maddy's model): they vote and may add header lines;
//! they never rewrite the message. Anything they are unsure about is temporary.

use crate::message::{Envelope, Generated};

/// What the scan stage concluded for a message (all recipients).
#[derive(Debug, Clone, PartialEq)]
pub enum ScanDisposition {
    /// Deliver normally.
    Deliver,
    /// Deliver into each recipient's Junk folder (unless their filter files it
    /// elsewhere).
    Junk,
    /// Accepted but not delivered (quarantined by the scanner, or discarded): every
    /// recipient's outcome is `Delivered`, and nothing reaches the spools.
    Held { reason: String },
    /// Refuse for every recipient: SMTP-style code and a text safe to show the sender.
    Reject(u16, String),
    /// Try again later (a scanner was unavailable).
    TempFail(String),
}

/// The scan stage's result.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub disposition: ScanDisposition,
    /// Header lines `(name, value)` to put in front of the stored message.
    pub headers: Vec<(String, String)>,
    /// `(is_spam, score)`, for the filter's `spamtest`.
    pub spam: Option<(bool, f64)>,
    /// `Some(true)` infected, `Some(false)` scanned clean, `None` not scanned.
    pub virus: Option<bool>,
    /// Mail the stage made (a quarantine notice to the admin); returned to the caller.
    pub generated: Vec<Generated>,
}

impl ScanOutcome {
    pub fn deliver() -> ScanOutcome {
        ScanOutcome {
            disposition: ScanDisposition::Deliver,
            headers: vec![],
            spam: None,
            virus: None,
            generated: vec![],
        }
    }
}

/// Content checks run once per message before routing.
#[async_trait::async_trait]
pub trait ScanStage: Send + Sync {
    /// `message` is the message as received (no trace headers yet).
    async fn scan(&self, envelope: &Envelope, message: &[u8]) -> ScanOutcome;
}

/// What a per-user filter sees.
#[derive(Debug, Clone)]
pub struct FilterRequest<'a> {
    pub user: &'a str,
    /// The user's configured addresses.
    pub addresses: &'a [String],
    pub envelope: &'a Envelope,
    /// The envelope recipient this copy is for.
    pub recipient: &'a str,
    /// The message as it will be stored (trace and scan headers included).
    pub message: &'a [u8],
    pub spam: Option<(bool, f64)>,
    pub virus: Option<bool>,
    /// The folder delivery would use without a filter (INBOX, `--folder`, or Junk).
    pub default_folder: &'a str,
}

/// One thing a filter decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterAction {
    /// Store in the default folder, with these IMAP flags.
    Keep { flags: Vec<String> },
    /// Store in `folder` (IMAP name, '.'-separated; created if missing).
    FileInto { folder: String, flags: Vec<String> },
    /// Do not store (explicit discard). The recipient's outcome is `Delivered`.
    Discard,
    /// Refuse: the recipient's outcome is a permanent failure with this reason.
    Reject(String),
}

/// A filter's result for one recipient.
#[derive(Debug, Clone, Default)]
pub struct FilterOutcome {
    /// Empty means keep.
    pub actions: Vec<FilterAction>,
    /// Mail the filter made (vacation, redirect); returned to the caller.
    pub generated: Vec<Generated>,
    /// `(id, expires)` the filter wants remembered once the message is stored (Sieve
    /// `duplicate`/vacation memory); handed to [`FilterStage::stored`].
    pub remember: Vec<(String, i64)>,
}

/// Per-user filtering, run once per local recipient, in a blocking thread.
pub trait FilterStage: Send + Sync {
    fn filter(&self, req: &FilterRequest<'_>) -> FilterOutcome;

    /// Called once the recipient's copies are durably stored (not on failure), so a
    /// retried delivery still gets e.g. its vacation reply.
    fn stored(&self, _user: &str, _outcome: &FilterOutcome) {}
}

/// Accepts everything, keeps everything: the stages before scanning and Sieve are
/// configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

#[async_trait::async_trait]
impl ScanStage for PassThrough {
    async fn scan(&self, _envelope: &Envelope, _message: &[u8]) -> ScanOutcome {
        ScanOutcome::deliver()
    }
}

impl FilterStage for PassThrough {
    fn filter(&self, _req: &FilterRequest<'_>) -> FilterOutcome {
        FilterOutcome::default()
    }
}
