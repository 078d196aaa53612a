//! The POP3 maildrop over the spool: a user's INBOX, UIDL = `<uidvalidity>.<uid>` (stable
//! for as long as the mailbox keeps its UIDVALIDITY, which is what POP3 clients with
//! "leave on server" rely on).

use super::session::{DropEntry, MaildropStore};
use crate::spool::{INBOX, Spool};

#[async_trait::async_trait]
impl MaildropStore for Spool {
    async fn snapshot(&self, user: &str) -> Result<Vec<DropEntry>, String> {
        let user = user.to_string();
        self.run(move |s| s.select(&user, INBOX))
            .await
            .map(|st| {
                st.messages
                    .iter()
                    .map(|m| DropEntry {
                        uid: m.uid,
                        uidl: format!("{:08x}.{:08x}", st.uidvalidity, m.uid),
                        size: m.size,
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    async fn read(&self, user: &str, uid: u32) -> Result<Vec<u8>, String> {
        let user = user.to_string();
        self.run(move |s| s.read_message(&user, INBOX, uid))
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, user: &str, uids: &[u32]) -> Result<(), String> {
        let user = user.to_string();
        let uids = uids.to_vec();
        self.run(move |s| s.expunge(&user, INBOX, &uids))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
