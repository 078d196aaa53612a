//! COPY, MOVE and their UID forms (RFC 3501 §6.4.7, MOVE RFC 6851, UIDPLUS COPYUID).
//!
//! # Format
//! `UID MOVE 4:6 Trash` → `* OK [COPYUID v 4:6 10:12]`, `* n EXPUNGE`..., `OK`.
//! COPY answers `OK [COPYUID ...]`; a missing target is `NO [TRYCREATE]`; a COPY
//! beyond the user's quota is `NO [OVERQUOTA]`.

use crate::imapd::backend::StoreError;
use crate::imapd::proto::{SeqSet, seq};
use crate::imapd::session::{Fatal, Reply, Session};

impl Session {
    pub(crate) async fn op_copy(
        &mut self,
        uid: bool,
        set: SeqSet,
        mailbox: String,
        is_move: bool,
    ) -> Result<Reply, Fatal> {
        let Some(v) = self.view() else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if is_move && v.read_only {
            return Ok(Reply::no("Mailbox is read-only").code("READ-ONLY"));
        }
        let Ok(idx) = v.select(&set, uid) else {
            return Ok(Reply::bad("Error in IMAP command: Invalid messageset"));
        };
        let uids: Vec<u32> = idx.iter().map(|&i| v.msgs[i].uid).collect();
        let id = v.name.clone();
        if uids.is_empty() {
            return Ok(Reply::ok(if is_move {
                "No messages moved"
            } else {
                "No messages copied"
            }));
        }
        if !is_move {
            // A move within the user's mailboxes changes no usage; a copy adds.
            let bytes: u64 = idx.iter().map(|&i| v.msgs[i].size as u64).sum();
            let n = uids.len() as u64;
            if let Some(r) = self.over_quota(bytes, n).await {
                return Ok(r);
            }
        }
        let user = self.user();
        let u2 = uids.clone();
        let id2 = id.clone();
        let (validity, pairs) = match self
            .blocking(move |b| b.copy(&user, &id2, &u2, &mailbox))
            .await
        {
            Ok(x) => x,
            Err(StoreError::NoMailbox) => {
                return Ok(Reply::no("Mailbox doesn't exist").code("TRYCREATE"));
            }
            Err(e) => return Ok(self.store_no(e)),
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        // COPYUID lists sources in ascending order with destinations in the same order.
        let code = format!(
            "COPYUID {validity} {} {}",
            seq::compact(&src),
            dst.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        );
        if !is_move {
            return Ok(Reply::ok("Copy completed").code(code));
        }
        let line = format!("OK [{code}] Moved UIDs.");
        self.untagged(&line);
        let user = self.user();
        let removed = match self.blocking(move |b| b.expunge(&user, &id, &src)).await {
            Ok(r) => r,
            Err(e) => return Ok(self.store_no(e)),
        };
        let mut out = std::mem::take(&mut self.out);
        if let Some(v) = self.view_mut() {
            v.pending_expunge.extend(removed);
            v.flush_expunges(&mut out);
        }
        self.out = out;
        Ok(Reply::ok("Move completed"))
    }
}
