//! SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6-7), kept in the mailbox index.

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_subscribe(&mut self, mailbox: String, on: bool) -> Reply {
        let user = self.user();
        match self
            .blocking(move |b| b.set_subscribed(&user, &mailbox, on))
            .await
        {
            Ok(()) if on => Reply::ok("Subscribe completed"),
            Ok(()) => Reply::ok("Unsubscribe completed"),
            Err(e) => self.store_no(e),
        }
    }
}
