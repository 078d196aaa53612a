//! DELETE (RFC 3501 §6.3.4): removes a mailbox and its messages. INBOX cannot be
//! deleted; a mailbox with children keeps them (the store decides, as Dovecot's
//! Maildir++ layout does).

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_delete(&mut self, mailbox: String) -> Reply {
        if mailbox == "INBOX" {
            return Reply::no("INBOX can't be deleted.");
        }
        if self.view().is_some_and(|v| v.name == mailbox) {
            return Reply::no("Can't delete the selected mailbox").code("INUSE");
        }
        let user = self.user();
        match self.blocking(move |b| b.delete(&user, &mailbox)).await {
            Ok(()) => Reply::ok("Delete completed"),
            Err(e) => self.store_no(e),
        }
    }
}
