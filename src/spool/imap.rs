//! What the IMAP server needs from the spool beyond its main API: a mailbox's
//! counters without a disk sync or a count (imapd checks them after every command,
//! so this must be one indexed row). Added by imapd; kept apart from the spool's
//! own code.

use super::{Result, Spool, normalize_name};

impl Spool {
    /// (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) of a mailbox.
    pub fn counters(&self, user: &str, mailbox: &str) -> Result<(u32, u32, u64)> {
        let u = self.user(user)?;
        let name = normalize_name(mailbox)?;
        let conn = self.conn()?;
        let m = self.mailbox_row(&conn, &u, &name)?;
        Ok((m.uidvalidity, m.uidnext, m.highestmodseq))
    }
}
