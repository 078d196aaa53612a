//! ID (RFC 2971): logs what the client says it is, answers with our name.
//!
//! # Format
//! `ID ("name" "Thunderbird" ...)` / `ID NIL` → `* ID ("name" "zolder" ...)`

use tracing::info;

use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) fn op_id(&mut self, fields: Vec<(String, Option<String>)>) -> Reply {
        if !fields.is_empty() {
            let desc: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("NIL")))
                .collect();
            info!(client = %desc.join(", "), "client ID");
        }
        let line = format!(
            "ID (\"name\" \"zolder\" \"version\" \"{}\")",
            env!("CARGO_PKG_VERSION")
        );
        self.untagged(&line);
        Reply::ok("ID completed")
    }
}
