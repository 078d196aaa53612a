//! NAMESPACE (RFC 2342): one personal namespace with `.` as separator, as Maildir++
//! (and Dovecot's default) has it.
//!
//! # Format
//! `NAMESPACE` → `* NAMESPACE (("" ".")) NIL NIL`

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) fn op_namespace(&mut self) -> Reply {
        self.untagged("NAMESPACE ((\"\" \".\")) NIL NIL");
        Reply::ok("Namespace completed")
    }
}
