//! SELECT and EXAMINE (RFC 3501 §6.3.1-2, RFC 7162 CONDSTORE and QRESYNC): opens a
//! mailbox and reports its state.
//!
//! # Format
//! `SELECT INBOX` → FLAGS, OK [PERMANENTFLAGS], EXISTS, RECENT, OK [UNSEEN],
//! OK [UIDVALIDITY], OK [UIDNEXT], OK [HIGHESTMODSEQ], tagged OK [READ-WRITE].
//!
//! `SELECT INBOX (QRESYNC (uidvalidity modseq [known-uids]))` (after
//! `ENABLE QRESYNC`) adds, when the UIDVALIDITY matches, `* VANISHED (EARLIER) uids`
//! for the known UIDs expunged since `modseq` and `* n FETCH (UID FLAGS MODSEQ)` for
//! the known messages changed since. Every expunge is kept in the index with its
//! MODSEQ, so the answer is exact and the seq-match hint is not needed.
//!
//! `\Recent` (RFC 3501 §2.3.2): a read-write SELECT takes the messages no session
//! has taken yet (`Backend::take_recent`); EXAMINE shows them as recent without
//! taking them, as Dovecot does. IMAP4rev2 sessions get no RECENT response.
//! FLAGS and PERMANENTFLAGS name every keyword the mailbox uses.

use std::fmt::Write as _;

use tracing::info;

use crate::imapd::backend::Meta;
use crate::imapd::proto::{QresyncParams, seq};
use crate::imapd::session::{Reply, Session, State};
use crate::imapd::view::{Bytes, View, write_msg_flags};

impl Session {
    pub(crate) async fn op_select(
        &mut self,
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParams>,
    ) -> Reply {
        if qresync.is_some() && !self.qresync {
            // RFC 7162 §3.2.5: QRESYNC parameters need ENABLE QRESYNC first.
            return Reply::bad("QRESYNC not enabled");
        }
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
        let since = qresync.as_ref().map(|q| (q.uidvalidity, q.modseq));
        let opened = self
            .blocking(move |b| {
                let view = b.open_view(&user, &name, read_only)?;
                let state = view.state;
                let upto = view.max_uid();
                let taken = b.take_recent(&user, &name, upto, !read_only)?;
                // Changes since the client's MODSEQ, read right after the snapshot;
                // anything newer than the snapshot is left to the next sync.
                let changes = match since {
                    Some((v, m)) if v == state.uidvalidity && m < state.highestmodseq => {
                        let (_, changed, vanished) = b.changes(&user, &name, m)?;
                        Some((changed, vanished))
                    }
                    _ => None,
                };
                Ok((view, changes, taken, upto))
            })
            .await;
        let (mut view, changes, taken, upto) = match opened {
            Ok(x) => x,
            Err(e) => return self.store_no(e),
        };
        let state = view.state;
        view.qresync = self.qresync;
        view.rev2 = self.rev2;
        view.add_recent(taken, upto);
        view.learn_all_keywords();
        let first_unseen = view.first_unseen();
        view.write_flag_lines(&mut self.out);
        let l = format!("{} EXISTS", view.exists());
        self.untagged(&l);
        if !self.rev2 {
            let l = format!("{} RECENT", view.recent_count());
            self.untagged(&l);
        }
        if let Some(i) = first_unseen.filter(|_| !self.rev2) {
            let l = format!("OK [UNSEEN {}] First unseen.", i + 1);
            self.untagged(&l);
        }
        let l = format!("OK [UIDVALIDITY {}] UIDs valid", state.uidvalidity);
        self.untagged(&l);
        let l = format!("OK [UIDNEXT {}] Predicted next UID", state.uidnext);
        self.untagged(&l);
        let l = format!("OK [HIGHESTMODSEQ {}] Highest", state.highestmodseq);
        self.untagged(&l);
        if let (Some(q), Some((changed, vanished))) = (&qresync, changes) {
            resync(&view, q, changed, vanished, &mut self.out);
        }
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

/// Writes the QRESYNC answer (RFC 7162 §3.2.5.1): the known UIDs expunged since the
/// client's MODSEQ, then the known messages changed since, with their MODSEQ.
fn resync(
    view: &View,
    q: &QresyncParams,
    changed: Vec<Meta>,
    vanished: Vec<u32>,
    out: &mut Vec<u8>,
) {
    // `*` in known-uids is the largest UID the mailbox ever gave out.
    let max = view.state.uidnext.saturating_sub(1).max(view.max_uid());
    let known = |uid: u32| q.known_uids.as_ref().is_none_or(|s| s.contains(uid, max));
    let mut gone: Vec<u32> = vanished
        .into_iter()
        .filter(|&u| known(u) && view.index_of(u).is_none())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    if !gone.is_empty() {
        let _ = write!(
            Bytes(out),
            "* VANISHED (EARLIER) {}\r\n",
            seq::compact(&gone)
        );
    }
    let mut idx: Vec<usize> = changed
        .iter()
        .filter(|m| m.modseq > q.modseq && known(m.uid))
        .filter_map(|m| view.index_of(m.uid))
        .collect();
    idx.sort_unstable();
    idx.dedup();
    for i in idx {
        let m = &view.msgs[i];
        let _ = write!(Bytes(out), "* {} FETCH (UID {} FLAGS ", i + 1, m.uid);
        write_msg_flags(out, view.flags(m), view.is_recent(m.uid));
        let _ = write!(Bytes(out), " MODSEQ ({}))\r\n", m.modseq);
    }
}
