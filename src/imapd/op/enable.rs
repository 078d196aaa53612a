//! ENABLE (RFC 5161): turns on CONDSTORE (MODSEQ in unsolicited FETCH responses),
//! QRESYNC (RFC 7162 §3.2.3: implies CONDSTORE; VANISHED replaces EXPUNGE) and
//! UTF8=ACCEPT (RFC 6855: mailbox names and quoted strings in UTF-8) for this
//! session. Unknown or unsupported extensions are ignored, as required.
//!
//! # Format
//! `ENABLE CONDSTORE QRESYNC` → `* ENABLED CONDSTORE QRESYNC`

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) fn op_enable(&mut self, caps: Vec<String>) -> Reply {
        let mut enabled = Vec::new();
        for c in caps {
            let newly = match c.as_str() {
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
                _ => false,
            };
            if newly {
                enabled.push(c);
            }
        }
        let qresync = self.qresync;
        if let Some(v) = self.view_mut() {
            v.qresync = qresync;
        }
        let line = format!("ENABLED {}", enabled.join(" "));
        self.untagged(line.trim_end());
        Reply::ok("Enabled")
    }
}
