//! ENABLE (RFC 5161): turns on CONDSTORE (MODSEQ in unsolicited FETCH responses),
//! QRESYNC (RFC 7162 §3.2.3: implies CONDSTORE; VANISHED replaces EXPUNGE) and
//! UTF8=ACCEPT (RFC 6855: mailbox names and quoted strings in UTF-8) for this
//! session, and IMAP4rev2 (RFC 9051: no `\Recent`/RECENT, SEARCH answered in
//! ESEARCH form). Unknown or unsupported extensions are ignored, as required.
//!
//! # Format
//! `ENABLE CONDSTORE QRESYNC` → `* ENABLED CONDSTORE QRESYNC`

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) fn op_enable(&mut self, caps: Vec<String>) -> Reply {
        let mut enabled = Vec::new();
        for c in caps {
            let newly = match c.to_ascii_uppercase().as_str() {
                "CONDSTORE" => {
                    let was = self.condstore;
                    self.enable_condstore();
                    !was
                }
                "QRESYNC" => {
                    self.condstore = true;
                    !std::mem::replace(&mut self.qresync, true)
                }
                "UTF8=ACCEPT" => !std::mem::replace(&mut self.utf8, true),
                // RFC 9051: no \Recent / RECENT, SEARCH answers in ESEARCH form.
                "IMAP4REV2" => !std::mem::replace(&mut self.rev2, true),
                _ => false,
            };
            if newly {
                // Named as the capability spells it.
                enabled.push(if c.eq_ignore_ascii_case("IMAP4rev2") {
                    "IMAP4rev2".to_string()
                } else {
                    c
                });
            }
        }
        let (qresync, rev2) = (self.qresync, self.rev2);
        if let Some(v) = self.view_mut() {
            v.qresync = qresync;
            v.rev2 = rev2;
        }
        let line = format!("ENABLED {}", enabled.join(" "));
        self.untagged(line.trim_end());
        Reply::ok("Enabled")
    }
}
