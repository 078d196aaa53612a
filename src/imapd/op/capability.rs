//! CAPABILITY: what this server does, exactly. Before login only what a client
//! needs to log in; after login the extensions (as Dovecot does).
//!
//! # Format
//! `CAPABILITY` → `* CAPABILITY IMAP4rev1 ...`

use crate::imapd::session::{Reply, Session};

impl Session {
    /// The capability list for the current state and transport.
    pub(crate) fn capabilities(&self) -> String {
        let mut c = vec!["IMAP4rev1", "SASL-IR", "ID", "ENABLE", "IDLE", "LITERAL+"];
        if self.user.is_none() {
            if !self.is_tls() && self.shared.tls.is_some() {
                c.push("STARTTLS");
            }
            if self.auth_allowed() {
                c.push("AUTH=PLAIN");
                c.push("AUTH=LOGIN");
            } else {
                c.push("LOGINDISABLED");
            }
            return c.join(" ");
        }
        c.extend([
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "SEARCHRES",
            "CONDSTORE",
            "QRESYNC",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "QUOTA=RES-MESSAGE",
            "STATUS=SIZE",
            "UTF8=ACCEPT",
            "BINARY",
            "MULTIAPPEND",
            "CATENATE",
        ]);
        if self.deflate.is_none() {
            c.push("COMPRESS=DEFLATE");
        }
        let mut s = c.join(" ");
        s.push_str(&format!(" APPENDLIMIT={}", self.shared.max_literal()));
        s
    }

    pub(crate) fn op_capability(&mut self) -> Reply {
        let line = format!("CAPABILITY {}", self.capabilities());
        self.untagged(&line);
        Reply::ok("Capability completed")
    }
}
