//! CLOSE (RFC 3501 §6.4.2: expunge `\Deleted` silently, then leave the mailbox) and
//! UNSELECT (RFC 3691: leave without expunging).

use crate::imapd::session::{Reply, Session, State};

impl Session {
    pub(crate) async fn op_close(&mut self, expunge: bool) -> Reply {
        let Some(v) = self.view() else {
            return Reply::bad("No mailbox selected");
        };
        if expunge && !v.read_only {
            let id = v.name.clone();
            let deleted: Vec<u32> = v
                .msgs
                .iter()
                .filter(|m| v.has_flag(m, "\\Deleted"))
                .map(|m| m.uid)
                .collect();
            if !deleted.is_empty() {
                let user = self.user();
                if let Err(e) = self
                    .blocking(move |b| b.expunge(&user, &id, &deleted))
                    .await
                {
                    return self.store_no(e);
                }
            }
        }
        self.state = State::Authenticated;
        if expunge {
            Reply::ok("Close completed")
        } else {
            Reply::ok("Unselect completed")
        }
    }
}
