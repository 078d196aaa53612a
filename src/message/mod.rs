//! The shared vocabulary of zolder: envelopes, raw messages, addresses and the
//! per-recipient outcomes that travel between stages.
//!
//! This module does no I/O and depends on nothing but std and parsing crates, so
//! every other module may use it (style.md: "message/ — shared vocabulary, no I/O").

use std::fmt;
use std::net::SocketAddr;

pub mod address;
pub mod headers;
pub mod mime_limits;
pub use address::Address;

/// Where a message entered zolder. Used for trace headers, logs and trust decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Fetched from an ISP account (POP3 or IMAP).
    Fetch {
        account: String,
        protocol: String,
        host: String,
    },
    /// Accepted over SMTP from a LAN client.
    Submit {
        peer: SocketAddr,
        helo: String,
        auth_user: Option<String>,
        tls: bool,
    },
    /// Handed over locally (`zolder deliver`, `zolder sendmail`), by this uid/user name.
    Local { user: String },
    /// Re-delivered from the outgoing queue (local recipients) or the quarantine.
    Queue { queue_id: String },
    /// Imported from an existing spool (`zolder import-mail`).
    Import,
}

impl Source {
    /// A short word for logs and `Received:` headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Fetch { .. } => "fetch",
            Source::Submit { .. } => "submit",
            Source::Local { .. } => "local",
            Source::Queue { .. } => "queue",
            Source::Import => "import",
        }
    }
}

/// The envelope of one message: who sent it and for whom it is.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The envelope sender (`MAIL FROM`); `None` is the null sender `<>` (bounces).
    pub sender: Option<String>,
    /// Envelope recipients, as given (full addresses or bare local names).
    pub recipients: Vec<String>,
    pub source: Source,
    /// Exactly-once key: `pop3:<account>:<uidl>` or
    /// `imap:<account>:<folder>:<uidvalidity>:<uid>`. Delivering the same key twice
    /// to the same recipient stores once (design.md rule 2).
    pub idempotency_key: Option<String>,
    /// Deliver into this folder instead of INBOX (`zolder deliver --folder`).
    pub folder: Option<String>,
    /// DSN parameters (RFC 3461) for a next hop that offers DSN; `None` = none given.
    pub dsn: Option<EnvelopeDsn>,
}

/// The RFC 3461 parameters of a queued message, to pass on when relaying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeDsn {
    /// `FULL` or `HDRS`.
    pub ret: Option<String>,
    /// The envelope id, xtext-decoded.
    pub envid: Option<String>,
    /// Per recipient (same order as `Envelope::recipients`): `NEVER` or a comma list.
    pub notify: Vec<Option<String>>,
    /// Per recipient: `type;address`, xtext-decoded.
    pub orcpt: Vec<Option<String>>,
}

impl Envelope {
    pub fn new(sender: Option<String>, recipients: Vec<String>, source: Source) -> Self {
        Envelope {
            sender,
            recipients,
            source,
            idempotency_key: None,
            folder: None,
            dsn: None,
        }
    }

    /// The sender as written in `Return-Path:` / `MAIL FROM:` (`<>` for none).
    pub fn sender_display(&self) -> String {
        match &self.sender {
            Some(s) => format!("<{s}>"),
            None => "<>".to_string(),
        }
    }
}

/// A message as received: the exact bytes, never re-serialised (design.md rule 4).
#[derive(Clone)]
pub struct RawMessage {
    pub bytes: Vec<u8>,
}

impl RawMessage {
    pub fn new(bytes: Vec<u8>) -> Self {
        RawMessage { bytes }
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for RawMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawMessage({} bytes)", self.bytes.len())
    }
}

/// One message on its way through a stage.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub envelope: Envelope,
    pub message: RawMessage,
}

/// What happened to one recipient. Anything unknown is temporary (style.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Durably stored (or accepted by the next hop).
    Delivered,
    /// Try again later; the reason is for logs and `zolder status`.
    TempFail(String),
    /// Will never work: SMTP-style code (e.g. 550) and reason, for a bounce.
    PermFail(u16, String),
}

impl RcptOutcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, RcptOutcome::Delivered)
    }
    pub fn is_temporary(&self) -> bool {
        matches!(self, RcptOutcome::TempFail(_))
    }
}

/// A message that a delivery generated (vacation reply, redirect, quarantine notice,
/// bounce). Delivery never queues on its own; it returns these to its caller, and the
/// daemon's wrapper enqueues them (style.md).
#[derive(Debug, Clone)]
pub struct Generated {
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub bytes: Vec<u8>,
    /// Why it was made, for logs: "vacation", "redirect", "quarantine-notice", "bounce".
    pub reason: String,
}

/// The result of delivering one message: an outcome per recipient, plus mail generated.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    pub outcomes: Vec<(String, RcptOutcome)>,
    pub generated: Vec<Generated>,
    /// The next hop offered DSN and took the request on (RFC 3461 §6.2.1): it, not
    /// we, reports success ("relayed" notices are not sent).
    pub dsn_passed_on: bool,
}

impl DeliveryReport {
    pub fn all_delivered(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(|(_, o)| o.is_delivered())
    }
    /// True when every recipient has a final outcome (delivered or permanently failed):
    /// the message may then be removed at its source (ISP deletion, queue removal).
    pub fn is_final(&self) -> bool {
        self.outcomes.iter().all(|(_, o)| !o.is_temporary())
    }
    pub fn any_temporary(&self) -> bool {
        self.outcomes.iter().any(|(_, o)| o.is_temporary())
    }
}

/// A delivery target: the local pipeline, or the smarthost relay.
///
/// `deliver_batch` exists for group commit: several messages may share one directory
/// fsync and one database transaction. An implementation returns only once every
/// message in the batch whose outcome is `Delivered` is durable.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    async fn deliver(&self, msg: Incoming) -> DeliveryReport {
        self.deliver_batch(vec![msg])
            .await
            .pop()
            .unwrap_or_default()
    }
    /// Reports are in the order of `msgs`.
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport>;

    /// Delivers messages one after another as `source` hands them out, giving each
    /// outcome back before asking for the next. A transport that keeps one
    /// connection for a whole run (the smarthost relay) overrides this; the caller
    /// records each outcome at once, so a crash repeats at most the message in flight.
    async fn deliver_stream(&self, source: &mut dyn MessageSource) {
        while let Some(m) = source.next().await {
            let r = self.deliver(m).await;
            source.done(r).await;
        }
    }
}

/// The feeding side of [`Deliver::deliver_stream`] (the queue runner): hands out
/// messages lazily (their bytes are read only when needed) and takes each report.
#[async_trait::async_trait]
pub trait MessageSource: Send {
    async fn next(&mut self) -> Option<Incoming>;
    async fn done(&mut self, report: DeliveryReport);
}
