//! STORE and UID STORE (RFC 3501 §6.4.6, CONDSTORE UNCHANGEDSINCE RFC 7162).
//!
//! # Format
//! `STORE 1:3 +FLAGS.SILENT (\Deleted)`; `UID STORE 5 (UNCHANGEDSINCE 12) FLAGS ()`
//! → `* n FETCH (FLAGS (...) UID m [MODSEQ (x)])` unless .SILENT;
//! `OK [MODIFIED set]` names messages changed since UNCHANGEDSINCE.

use std::fmt::Write as _;

use crate::imapd::proto::{SeqSet, StoreMode, seq};
use crate::imapd::session::{Fatal, Reply, Session};
use crate::imapd::view::{Bytes, write_msg_flags};

impl Session {
    pub(crate) async fn op_store(
        &mut self,
        uid: bool,
        set: SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<Reply, Fatal> {
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let Some(v) = self.view() else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if v.read_only {
            return Ok(Reply::no("Mailbox is read-only").code("READ-ONLY"));
        }
        let Ok(idx) = v.select(&set, uid) else {
            return Ok(Reply::bad(
                "Error in IMAP command STORE: Invalid messageset",
            ));
        };
        let id = v.name.clone();
        let targets: Vec<u32> = idx.iter().map(|&i| v.msgs[i].uid).collect();
        let user = self.user();
        let done = match self
            .blocking(move |b| b.store_flags(&user, &id, &targets, mode, &flags, unchanged_since))
            .await
        {
            Ok(d) => d,
            Err(e) => return Ok(self.store_no(e)),
        };
        let mut modified: Vec<u32> = Vec::new();
        let mut out = std::mem::take(&mut self.out);
        if let Some(v) = self.view_mut() {
            for m in done.updated {
                if let Some(i) = v.index_of(m.uid) {
                    // New keywords are announced before the FETCH that shows them.
                    v.announce(&m.flags, &mut out);
                    v.set_flags(i, &m.flags, m.modseq);
                }
            }
            for u in done.failed {
                if let Some(i) = v.index_of(u) {
                    modified.push(if uid { u } else { i as u32 + 1 });
                }
            }
        }
        self.out = out;
        let condstore = self.condstore;
        // Under CONDSTORE even .SILENT reports each new MODSEQ (RFC 7162 §3.1.3).
        if !silent || condstore {
            let mut out = std::mem::take(&mut self.out);
            if let Some(v) = self.view() {
                for &i in &idx {
                    let m = &v.msgs[i];
                    if modified.contains(&(if uid { m.uid } else { i as u32 + 1 })) {
                        continue;
                    }
                    let _ = write!(Bytes(&mut out), "* {} FETCH (", i + 1);
                    if !silent {
                        out.extend_from_slice(b"FLAGS ");
                        write_msg_flags(&mut out, v.flags(m), v.is_recent(m.uid));
                        out.push(b' ');
                    }
                    let _ = write!(Bytes(&mut out), "UID {}", m.uid);
                    if condstore {
                        let _ = write!(Bytes(&mut out), " MODSEQ ({})", m.modseq);
                    }
                    out.extend_from_slice(b")\r\n");
                }
            }
            self.out = out;
        }
        if !modified.is_empty() {
            modified.sort_unstable();
            return Ok(Reply::ok("Conditional store failed")
                .code(format!("MODIFIED {}", seq::compact(&modified))));
        }
        Ok(Reply::ok("Store completed"))
    }
}
