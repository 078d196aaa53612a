//! STATUS (RFC 3501 §6.3.10, CONDSTORE HIGHESTMODSEQ, RFC 8438 SIZE, RFC 9208
//! DELETED and DELETED-STORAGE; the last three from one sum over the index, made only
//! when asked for).
//!
//! # Format
//! `STATUS Sent (MESSAGES UNSEEN UIDNEXT)` → `* STATUS "Sent" (MESSAGES 3 UNSEEN 0 UIDNEXT 4)`

use crate::imapd::proto::{StatusItem, response};
use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_status(&mut self, mailbox: String, items: Vec<StatusItem>) -> Reply {
        match self.status_line(mailbox, &items).await {
            Ok(()) => Reply::ok("Status completed"),
            Err(r) => r,
        }
    }

    /// Writes `* STATUS` for one mailbox (also used by LIST-STATUS).
    pub(crate) async fn status_line(
        &mut self,
        mailbox: String,
        items: &[StatusItem],
    ) -> Result<(), Reply> {
        let user = self.user();
        let name = mailbox.clone();
        let sizes = items.iter().any(|i| {
            matches!(
                i,
                StatusItem::Size | StatusItem::Deleted | StatusItem::DeletedStorage
            )
        });
        let recent = items.contains(&StatusItem::Recent);
        let r = self
            .blocking(move |b| {
                let st = b.status(&user, &name)?;
                let u = if sizes {
                    b.mailbox_usage(&user, &name)?
                } else {
                    Default::default()
                };
                let r = if recent {
                    b.recent_count(&user, &name)?
                } else {
                    0
                };
                Ok((st, u, r))
            })
            .await;
        let (st, usage, recent) = match r {
            Ok(s) => s,
            Err(e) => return Err(self.store_no(e)),
        };
        let mut line = b"* STATUS ".to_vec();
        response::mailbox_as(&mut line, &mailbox, self.utf8);
        line.extend_from_slice(b" (");
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                line.push(b' ');
            }
            let v = match it {
                StatusItem::Messages => st.messages as u64,
                StatusItem::Recent => recent as u64,
                StatusItem::UidNext => st.state.uidnext as u64,
                StatusItem::UidValidity => st.state.uidvalidity as u64,
                StatusItem::Unseen => st.unseen as u64,
                StatusItem::HighestModSeq => st.state.highestmodseq,
                StatusItem::Deleted => usage.deleted,
                StatusItem::DeletedStorage => usage.deleted_bytes,
                StatusItem::Size => usage.bytes,
            };
            line.extend_from_slice(format!("{} {v}", it.name()).as_bytes());
        }
        line.extend_from_slice(b")\r\n");
        self.out.extend_from_slice(&line);
        Ok(())
    }
}
