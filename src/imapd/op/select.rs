//! SELECT and EXAMINE (RFC 3501 §6.3.1-2, RFC 7162 CONDSTORE): opens a mailbox and
//! reports its state.
//!
//! # Format
//! `SELECT INBOX` → FLAGS, OK [PERMANENTFLAGS], EXISTS, RECENT, OK [UNSEEN],
//! OK [UIDVALIDITY], OK [UIDNEXT], OK [HIGHESTMODSEQ], tagged OK [READ-WRITE].
//!
//! RECENT is always 0: like IMAP4rev2, zolder does not track `\Recent` (clients use
//! UIDNEXT and EXISTS to find new mail).

use tracing::info;

use crate::imapd::session::{Reply, Session, State};

/// The system flags offered, in the order Dovecot lists them.
pub const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

impl Session {
    pub(crate) async fn op_select(
        &mut self,
        mailbox: String,
        read_only: bool,
        condstore: bool,
    ) -> Reply {
        // Selecting (even a failing SELECT) leaves the selected state (§6.3.1).
        if matches!(self.state, State::Selected(_)) {
            self.state = State::Authenticated;
            self.untagged("OK [CLOSED] Previous mailbox closed.");
        }
        if condstore {
            self.condstore = true;
        }
        let user = self.user();
        let name = mailbox.clone();
        let opened = self
            .blocking(move |b| b.open_view(&user, &name, read_only))
            .await;
        let view = match opened {
            Ok(v) => v,
            Err(e) => return self.store_no(e),
        };
        let state = view.state;
        let first_unseen = view.first_unseen();
        let lines = [
            format!("FLAGS ({SYSTEM_FLAGS})"),
            format!("OK [PERMANENTFLAGS ({SYSTEM_FLAGS} \\*)] Flags permitted."),
            format!("{} EXISTS", view.exists()),
            "0 RECENT".to_string(),
        ];
        for l in lines {
            self.untagged(&l);
        }
        if let Some(i) = first_unseen {
            let l = format!("OK [UNSEEN {}] First unseen.", i + 1);
            self.untagged(&l);
        }
        let l = format!("OK [UIDVALIDITY {}] UIDs valid", state.uidvalidity);
        self.untagged(&l);
        let l = format!("OK [UIDNEXT {}] Predicted next UID", state.uidnext);
        self.untagged(&l);
        let l = format!("OK [HIGHESTMODSEQ {}] Highest", state.highestmodseq);
        self.untagged(&l);
        tracing::Span::current().record("mailbox", mailbox.as_str());
        info!(mailbox = %mailbox, exists = view.exists(), read_only, "selected");
        self.state = State::Selected(Box::new(view));
        if read_only {
            Reply::ok("Examine completed").code("READ-ONLY")
        } else {
            Reply::ok("Select completed").code("READ-WRITE")
        }
    }
}
