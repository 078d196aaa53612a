//! RENAME (RFC 3501 §6.3.5). Renaming INBOX moves its messages into the new mailbox
//! and leaves INBOX empty (the store implements that special case).

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_rename(&mut self, from: String, to: String) -> Reply {
        let to = to.trim_end_matches('.').to_string();
        if to.is_empty() || to.split('.').any(str::is_empty) {
            return Reply::no("Invalid mailbox name").code("CANNOT");
        }
        if to == "INBOX" {
            return Reply::no("Mailbox already exists").code("ALREADYEXISTS");
        }
        let user = self.user();
        match self.blocking(move |b| b.rename(&user, &from, &to)).await {
            Ok(()) => Reply::ok("Rename completed"),
            Err(e) => self.store_no(e),
        }
    }
}
