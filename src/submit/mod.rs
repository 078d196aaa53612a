//! SMTP submission from the LAN (`[listen] submission` and `smtp`) and the `sendmail`
//! injector's logic. Everything accepted goes to the queue; nothing is delivered here.
//!
//! * [`proto`]: the pure command parser and reply formatting.
//! * [`session`]: one client conversation (state, STARTTLS, AUTH, DATA).
//! * [`server`]: the listeners.
//! * [`sendmail`]: argument parsing and message preparation for `zolder sendmail`.
//! * [`policy`]: relay control and sender checks.
//!
//! Uses queue (enqueue), auth, net, message, and an optional content check
//! ([`DataCheck`]) the daemon may wire to the scanners so that a message can be refused
//! before `250` is answered, and an optional [`BurlFetch`] for BURL. Never calls
//! relay, spool or the delivery pipeline.
//!
//! # Security
//! Every connection is untrusted until proven otherwise: recipients outside
//! `local_domains` are accepted only from `lan_networks` or after AUTH; relay tricks
//! (`%`, `!`, source routes, quoted local parts, several `@`) are refused for everyone;
//! AUTH is offered only over TLS or from loopback; an authenticated user may use only
//! their own addresses as sender. Lines, messages and recipient counts are bounded.

use crate::message::Envelope;

pub mod policy;
pub mod proto;
pub mod sendmail;
pub mod server;
pub mod session;

/// What a content check says about a message before `250` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataVerdict {
    Accept,
    /// Refuse permanently (e.g. 554 5.7.1 virus found).
    Reject(u16, String),
    /// Refuse for now (e.g. 451 4.7.1 scanner unavailable).
    TempFail(String),
}

/// Where BURL (RFC 4468) gets the bytes a URLAUTH-authorized IMAP URL names: the
/// daemon wires it to imapd's URLAUTH over the spool, so submit itself never reads
/// a mailbox. `user` is the SMTP-authenticated user the submission acts for.
#[async_trait::async_trait]
pub trait BurlFetch: Send + Sync {
    /// The bytes, or why not (for the log; the client gets a generic 554).
    async fn fetch(&self, user: &str, url: &str) -> Result<Vec<u8>, String>;
}

/// A check run on each message after DATA and before the reply (the scan stage's
/// seam; the daemon wires it, submit does not know what it does).
#[async_trait::async_trait]
pub trait DataCheck: Send + Sync {
    async fn check(&self, message: &[u8], envelope: &Envelope) -> DataVerdict;
}
