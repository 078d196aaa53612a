//! ENABLE (RFC 5161): turns on CONDSTORE for this session (MODSEQ in unsolicited
//! FETCH responses). Unknown or unsupported extensions are ignored, as required.
//!
//! # Format
//! `ENABLE CONDSTORE` → `* ENABLED CONDSTORE`

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) fn op_enable(&mut self, caps: Vec<String>) -> Reply {
        let mut enabled = Vec::new();
        for c in caps {
            if c == "CONDSTORE" && !self.condstore {
                self.condstore = true;
                enabled.push(c);
            }
        }
        let line = format!("ENABLED {}", enabled.join(" "));
        self.untagged(line.trim_end());
        Reply::ok("Enabled")
    }
}
