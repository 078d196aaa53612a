//! CREATE (RFC 3501 §6.3.3, RFC 6154 CREATE-SPECIAL-USE).
//!
//! # Format
//! `CREATE name [(USE (\Sent))]`; a trailing separator is ignored; creating INBOX
//! fails; intermediate levels are created by the store as needed.

use crate::imapd::session::{Reply, Session};

const SPECIAL_USES: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

impl Session {
    pub(crate) async fn op_create(&mut self, mailbox: String, special_use: Vec<String>) -> Reply {
        let name = mailbox.trim_end_matches('.').to_string();
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Reply::no("Invalid mailbox name").code("CANNOT");
        }
        if name == "INBOX" {
            return Reply::no("Mailbox already exists").code("ALREADYEXISTS");
        }
        if special_use.len() > 1 {
            return Reply::no("Only one special use per mailbox").code("USEATTR");
        }
        let mut su = None;
        if let Some(u) = special_use.first() {
            match SPECIAL_USES.iter().find(|s| s.eq_ignore_ascii_case(u)) {
                Some(s) => su = Some(s.to_string()),
                None => return Reply::no("Unsupported special use").code("USEATTR"),
            }
        }
        let user = self.user();
        match self
            .blocking(move |b| b.create(&user, &name, su.as_deref()))
            .await
        {
            Ok(()) => Reply::ok("Create completed"),
            Err(e) => self.store_no(e),
        }
    }
}
