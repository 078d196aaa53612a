//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315): removes messages flagged
//! `\Deleted` (within the UID set for UID EXPUNGE) and reports `* n EXPUNGE` (or
//! `* VANISHED uids` under QRESYNC). With CONDSTORE enabled the tagged OK carries
//! the new `[HIGHESTMODSEQ n]` (RFC 7162 §3.2.8's example), so a resyncing client
//! can store it without another round trip.

use crate::imapd::proto::SeqSet;
use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_expunge(&mut self, uids: Option<SeqSet>) -> Reply {
        // See other sessions' \Deleted flags before deciding.
        self.sync(true).await;
        let Some(v) = self.view() else {
            return Reply::bad("No mailbox selected");
        };
        if v.read_only {
            return Reply::no("Mailbox is read-only").code("READ-ONLY");
        }
        let max = v.max_uid();
        let id = v.name.clone();
        // `UID EXPUNGE $` (SEARCHRES): the saved UIDs; an empty `$` names none.
        let uids = uids.map(|s| v.resolve_saved(&s));
        let targets: Vec<u32> = v
            .msgs
            .iter()
            .filter(|m| v.has_flag(m, "\\Deleted"))
            .filter(|m| match &uids {
                None => true,
                Some(None) => false,
                Some(Some(s)) => s.contains(m.uid, max),
            })
            .map(|m| m.uid)
            .collect();
        if targets.is_empty() {
            return Reply::ok("Expunge completed");
        }
        let user = self.user();
        let removed = match self
            .blocking(move |b| b.expunge(&user, &id, &targets))
            .await
        {
            Ok(r) => r,
            Err(e) => return self.store_no(e),
        };
        let mut out = std::mem::take(&mut self.out);
        if let Some(v) = self.view_mut() {
            v.pending_expunge.extend(removed);
            v.flush_expunges(&mut out);
        }
        self.out = out;
        if self.condstore {
            // Catch up with the store (our own expunge's MODSEQ included).
            self.sync(true).await;
            if let Some(v) = self.view() {
                let code = format!("HIGHESTMODSEQ {}", v.state.highestmodseq);
                return Reply::ok("Expunge completed").code(code);
            }
        }
        Reply::ok("Expunge completed")
    }
}
