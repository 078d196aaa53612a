//! APPEND (RFC 3501 §6.3.11, UIDPLUS RFC 4315 APPENDUID, APPENDLIMIT RFC 7889, and
//! RFC 6855's `UTF8 (~{n})` form).
//!
//! APPENDLIMIT: CAPABILITY advertises `APPENDLIMIT=<[limits] message_size>`; a
//! bigger literal is refused by the framer before the client sends it, and a
//! message over the limit that arrives anyway is answered `NO [TOOBIG]`.
//!
//! The UTF8 form is accepted whether or not UTF8=ACCEPT was enabled, and the bytes
//! are stored as sent either way: RFC 3501 literals may already carry 8-bit
//! headers, and the spool never rewrites a message.
//!
//! # Format
//! `APPEND Sent (\Seen) "05-Mar-2024 10:00:00 +0100" {123}` + message →
//! `OK [APPENDUID <uidvalidity> <uid>]`, or `NO [TRYCREATE]` for a missing mailbox.

use crate::imapd::backend::StoreError;
use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_append(
        &mut self,
        mailbox: String,
        flags: Vec<String>,
        date: Option<i64>,
        message: Vec<u8>,
        utf8: bool,
    ) -> Reply {
        if utf8 {
            tracing::debug!(mailbox = %mailbox, "UTF8 APPEND");
        }
        if message.is_empty() {
            return Reply::no("Can't save an empty message");
        }
        if message.len() > self.shared.max_literal() {
            return Reply::no("Message too large").code("TOOBIG");
        }
        if let Some(r) = self.over_quota(message.len() as u64, 1).await {
            return r;
        }
        let flags: Vec<String> = flags
            .into_iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .collect();
        let flags = flags.join(" ");
        let user = self.user();
        match self
            .blocking(move |b| b.append(&user, &mailbox, message, &flags, date))
            .await
        {
            Ok((validity, uid)) => {
                Reply::ok("Append completed").code(format!("APPENDUID {validity} {uid}"))
            }
            Err(StoreError::NoMailbox) => Reply::no("Mailbox doesn't exist").code("TRYCREATE"),
            Err(e) => self.store_no(e),
        }
    }
}
