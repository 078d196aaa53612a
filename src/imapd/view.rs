//! The selected mailbox as one session sees it: the message list in sequence order
//! (sequence number = index + 1) with UID, flags, MODSEQ, size and INTERNALDATE, and
//! the diffing that turns the store's changes into untagged EXISTS / FETCH / EXPUNGE
//! at the moments RFC 3501 allows.
//!
//! Pure data: no I/O. Several sessions on one mailbox each hold a view and learn of
//! each other's changes through [`View::apply`].

use std::fmt::Write as _;

use super::backend::{MailboxState, Meta};

/// One message in the view: 24 bytes, so an idle session on a 50 000-message
/// mailbox holds ~1.2 MB and one on a 2 000-message INBOX ~48 KB. Flags are an index
/// into the view's table of distinct flag sets (a mailbox has few).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg {
    pub uid: u32,
    pub size: u32,
    /// INTERNALDATE, unix seconds (u32 lasts until 2106).
    pub date: u32,
    pub flags: u32,
    pub modseq: u64,
}

impl Msg {
    pub fn internal_date(&self) -> i64 {
        self.date as i64
    }
}

/// Distinct flag sets of a mailbox, each stored once.
#[derive(Debug, Default, Clone)]
pub struct FlagTable {
    sets: Vec<Box<str>>,
    index: std::collections::HashMap<Box<str>, u32>,
}

impl FlagTable {
    pub fn intern(&mut self, flags: &str) -> u32 {
        if let Some(&i) = self.index.get(flags) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(flags.into());
        self.index.insert(flags.into(), i);
        i
    }

    pub fn get(&self, i: u32) -> &str {
        self.sets.get(i as usize).map_or("", |s| s)
    }
}

/// Whether a space-separated flag string contains `flag` (case-insensitive, as
/// flags and keywords compare in IMAP).
pub fn has_flag(flags: &str, flag: &str) -> bool {
    flags.split(' ').any(|f| f.eq_ignore_ascii_case(flag))
}

/// Flags as a parenthesised list for a FETCH response.
pub fn write_flags(out: &mut Vec<u8>, flags: &str) {
    // Written in place (a FETCH 1:* FLAGS of a big mailbox calls this per message).
    out.push(b'(');
    let mut first = true;
    for f in flags.split(' ').filter(|f| !f.is_empty()) {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b')');
}

/// Flags as a parenthesised list, with `\Recent` when the message is recent in this
/// session (RFC 3501 §2.3.2).
pub fn write_msg_flags(out: &mut Vec<u8>, flags: &str, recent: bool) {
    write_flags(out, flags);
    if recent {
        out.pop();
        if out.last() != Some(&b'(') {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent)");
    }
}

/// The system flags offered, in the order Dovecot lists them.
pub const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The selected mailbox.
#[derive(Debug)]
pub struct View {
    pub name: String,
    pub state: MailboxState,
    pub read_only: bool,
    pub msgs: Vec<Msg>,
    pub flag_table: FlagTable,
    /// UIDs the store has expunged that this session has not been told of yet
    /// (held back during commands that use sequence numbers).
    pub pending_expunge: Vec<u32>,
    /// QRESYNC is enabled: report expunges as `* VANISHED uids` (RFC 7162 §3.2.10).
    pub qresync: bool,
    /// Keywords announced to the client in FLAGS / PERMANENTFLAGS (RFC 3501 §7.2.6:
    /// a client need not accept a flag FLAGS did not name).
    pub keywords: Vec<Box<str>>,
    /// UID ranges (inclusive) recent in this session (RFC 3501 §2.3.2).
    pub recent: Vec<(u32, u32)>,
    /// The highest UID whose recent state this session has settled.
    pub recent_upto: u32,
    /// An IMAP4rev2 session: no `\Recent`, no `* n RECENT` (RFC 9051 §E).
    pub rev2: bool,
    /// SEARCHRES `$` (RFC 5182): UIDs of the last `SEARCH RETURN (SAVE)`, ascending.
    pub saved: Vec<u32>,
}

impl View {
    pub fn new(name: String, state: MailboxState, metas: Vec<Meta>, read_only: bool) -> View {
        let mut v = View {
            name,
            state,
            read_only,
            msgs: Vec::with_capacity(metas.len()),
            flag_table: FlagTable::default(),
            pending_expunge: Vec::new(),
            qresync: false,
            keywords: Vec::new(),
            recent: Vec::new(),
            recent_upto: 0,
            rev2: false,
            saved: Vec::new(),
        };
        for m in metas {
            let msg = v.msg_from(&m);
            v.msgs.push(msg);
        }
        v.msgs.sort_by_key(|m| m.uid);
        v
    }

    /// Appends a message read from the index in UID order (opening a mailbox).
    pub fn push(&mut self, uid: u32, size: u64, date: i64, flags: &str, modseq: u64) {
        let msg = Msg {
            uid,
            size: size.min(u32::MAX as u64) as u32,
            date: date.clamp(0, u32::MAX as i64) as u32,
            flags: self.flag_table.intern(flags),
            modseq,
        };
        if self.msgs.last().is_some_and(|l| l.uid >= uid) {
            // Out of order (never from the index's ORDER BY uid): keep the invariant.
            let i = self.msgs.partition_point(|m| m.uid < uid);
            if self.msgs.get(i).is_some_and(|m| m.uid == uid) {
                self.msgs[i] = msg;
            } else {
                self.msgs.insert(i, msg);
            }
            return;
        }
        self.msgs.push(msg);
    }

    fn msg_from(&mut self, m: &Meta) -> Msg {
        Msg {
            uid: m.uid,
            size: m.size.min(u32::MAX as u64) as u32,
            date: m.internal_date.clamp(0, u32::MAX as i64) as u32,
            flags: self.flag_table.intern(&m.flags),
            modseq: m.modseq,
        }
    }

    /// `set` with `$` replaced by the saved UIDs (`None`: `$` is empty).
    pub fn resolve_saved(&self, set: &super::proto::SeqSet) -> Option<super::proto::SeqSet> {
        if !set.is_saved() {
            return Some(set.clone());
        }
        super::proto::SeqSet::parse(&super::proto::seq::compact(&self.saved))
    }

    /// Whether `uid` is recent in this session.
    pub fn is_recent(&self, uid: u32) -> bool {
        !self.rev2 && self.recent.iter().any(|&(a, b)| a <= uid && uid <= b)
    }

    /// Messages recent in this session.
    pub fn recent_count(&self) -> usize {
        if self.recent.is_empty() {
            return 0;
        }
        self.msgs.iter().filter(|m| self.is_recent(m.uid)).count()
    }

    /// Records that the messages above `taken` (taken by other sessions before) up to
    /// `upto` are recent here; returns whether that settled anything new.
    pub fn add_recent(&mut self, taken: u32, upto: u32) -> bool {
        let from = taken.max(self.recent_upto) + 1;
        if upto < from {
            self.recent_upto = self.recent_upto.max(upto);
            return false;
        }
        self.recent.push((from, upto));
        self.recent_upto = upto;
        true
    }

    /// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` naming the system flags and
    /// every announced keyword.
    pub fn write_flag_lines(&self, out: &mut Vec<u8>) {
        let mut kw = String::new();
        for k in &self.keywords {
            kw.push(' ');
            kw.push_str(k);
        }
        let _ = write!(Bytes(out), "* FLAGS ({SYSTEM_FLAGS}{kw})\r\n");
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
        } else {
            let _ = write!(
                Bytes(out),
                "* OK [PERMANENTFLAGS ({SYSTEM_FLAGS}{kw} \\*)] Flags permitted.\r\n"
            );
        }
    }

    /// Adds the keywords of `flags` not announced yet; whether there were any.
    fn learn_keywords(&mut self, flags: &str) -> bool {
        let mut new = false;
        for f in flags.split(' ') {
            if f.is_empty() || f.starts_with('\\') {
                continue;
            }
            if !self.keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                self.keywords.push(f.into());
                new = true;
            }
        }
        new
    }

    /// Learns every keyword the mailbox uses (at SELECT, before FLAGS is sent).
    pub fn learn_all_keywords(&mut self) {
        let sets: Vec<Box<str>> = self.flag_table.sets.clone();
        for s in &sets {
            self.learn_keywords(s);
        }
    }

    /// Announces the keywords of `flags` the client has not seen yet, writing FLAGS
    /// and PERMANENTFLAGS before the response that uses them.
    pub fn announce(&mut self, flags: &str, out: &mut Vec<u8>) {
        if self.learn_keywords(flags) {
            self.write_flag_lines(out);
        }
    }

    /// The flags of a message, space-separated.
    pub fn flags(&self, m: &Msg) -> &str {
        self.flag_table.get(m.flags)
    }

    pub fn has_flag(&self, m: &Msg, flag: &str) -> bool {
        has_flag(self.flags(m), flag)
    }

    /// For each entry of the flag table, whether it holds `flag`: lets a pass over a
    /// big mailbox test a flag with one index instead of a string scan per message.
    pub fn sets_with(&self, flag: &str) -> Vec<bool> {
        self.flag_table
            .sets
            .iter()
            .map(|s| has_flag(s, flag))
            .collect()
    }

    /// Index of the first message without `\Seen`.
    pub fn first_unseen(&self) -> Option<usize> {
        let seen = self.sets_with("\\Seen");
        self.msgs
            .iter()
            .position(|m| !seen.get(m.flags as usize).copied().unwrap_or(false))
    }

    /// Records new flags and MODSEQ for the message at `i`.
    pub fn set_flags(&mut self, i: usize, flags: &str, modseq: u64) {
        let f = self.flag_table.intern(flags);
        let m = &mut self.msgs[i];
        m.flags = f;
        m.modseq = m.modseq.max(modseq);
    }

    /// Index (sequence number − 1) of `uid`.
    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn max_uid(&self) -> u32 {
        self.msgs.last().map_or(0, |m| m.uid)
    }

    pub fn exists(&self) -> usize {
        self.msgs.len()
    }

    /// Applies what the store reports since `self.state.highestmodseq` and writes the
    /// untagged responses into `out`; returns how many messages are new. Expunges are written only when
    /// `allow_expunge` (RFC 3501 §7.4.1); otherwise they wait in `pending_expunge`.
    pub fn apply(
        &mut self,
        state: MailboxState,
        changed: Vec<Meta>,
        expunged: Vec<u32>,
        allow_expunge: bool,
        with_modseq: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        let mut new = 0usize;
        for m in changed {
            match self.index_of(m.uid) {
                Some(i) => {
                    let flags_changed = self.flags(&self.msgs[i]) != m.flags;
                    self.set_flags(i, &m.flags, m.modseq);
                    if flags_changed {
                        let cur = self.msgs[i];
                        self.announce(&m.flags, out);
                        let _ = write!(Bytes(out), "* {} FETCH (UID {} FLAGS ", i + 1, cur.uid);
                        write_msg_flags(out, self.flags(&cur), self.is_recent(cur.uid));
                        if with_modseq {
                            let _ = write!(Bytes(out), " MODSEQ ({})", cur.modseq);
                        }
                        out.extend_from_slice(b")\r\n");
                    }
                }
                None if m.uid > self.max_uid() && !self.pending_expunge.contains(&m.uid) => {
                    self.announce(&m.flags, out);
                    let msg = self.msg_from(&m);
                    self.msgs.push(msg);
                    new += 1;
                }
                None => {}
            }
        }
        self.pending_expunge.extend(expunged);
        if allow_expunge {
            self.flush_expunges(out);
        }
        if new > 0 {
            let _ = write!(Bytes(out), "* {} EXISTS\r\n", self.msgs.len());
        }
        self.state = MailboxState {
            highestmodseq: state.highestmodseq.max(self.state.highestmodseq),
            ..state
        };
        new
    }

    /// Removes pending expunged messages from the view, writing `* n EXPUNGE` from
    /// the highest sequence number down (so each number is valid when sent).
    pub fn flush_expunges(&mut self, out: &mut Vec<u8>) {
        if self.pending_expunge.is_empty() {
            return;
        }
        let mut idx: Vec<usize> = self
            .pending_expunge
            .iter()
            .filter_map(|&u| self.index_of(u))
            .collect();
        idx.sort_unstable();
        idx.dedup();
        if self.qresync {
            if !idx.is_empty() {
                let uids: Vec<u32> = idx.iter().map(|&i| self.msgs[i].uid).collect();
                let _ = write!(
                    Bytes(out),
                    "* VANISHED {}\r\n",
                    super::proto::seq::compact(&uids)
                );
            }
        } else {
            for &i in idx.iter().rev() {
                let _ = write!(Bytes(out), "* {} EXPUNGE\r\n", i + 1);
            }
        }
        let gone: std::collections::HashSet<u32> = self.pending_expunge.drain(..).collect();
        self.msgs.retain(|m| !gone.contains(&m.uid));
    }
}

/// `fmt::Write` over a byte buffer.
pub struct Bytes<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A sequence number beyond the mailbox (RFC 3501 §9: invalid message set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSet;

impl View {
    /// The indices a sequence set names: by UID, or by sequence number. `Err` when a
    /// sequence number is beyond the mailbox (RFC 3501 §9: invalid message set).
    pub fn select(&self, set: &super::proto::SeqSet, uid: bool) -> Result<Vec<usize>, InvalidSet> {
        if set.is_saved() {
            // `$` names messages whatever the command's numbering (RFC 5182 §2.1);
            // expunged ones simply drop out.
            return Ok(self
                .saved
                .iter()
                .filter_map(|&u| self.index_of(u))
                .collect());
        }
        if uid {
            let max = self.max_uid();
            let mut out = Vec::new();
            // Normalised first: each message is named at most once, however often
            // the client repeats it (memory follows the mailbox, issue 13).
            for (a, b) in set.normalized(max) {
                // Binary search the first UID >= a, then walk.
                let start = self.msgs.partition_point(|m| m.uid < a);
                for (i, m) in self.msgs[start..].iter().enumerate() {
                    if m.uid > b {
                        break;
                    }
                    out.push(start + i);
                }
            }
            return Ok(out);
        }
        let n = self.msgs.len() as u32;
        if n == 0 && set.has_star() {
            // `1:*` in an empty mailbox names nothing (as Dovecot answers it).
            return Ok(Vec::new());
        }
        let ranges = set.normalized(n);
        if ranges.iter().any(|&(a, b)| b > n || a == 0) {
            return Err(InvalidSet);
        }
        let mut out = Vec::new();
        for (a, b) in ranges {
            out.extend((a - 1..b).map(|i| i as usize));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, modseq: u64, flags: &str) -> Meta {
        Meta {
            uid,
            modseq,
            flags: flags.into(),
            size: 10,
            internal_date: 0,
        }
    }

    fn st(modseq: u64) -> MailboxState {
        MailboxState {
            uidvalidity: 7,
            uidnext: 10,
            highestmodseq: modseq,
        }
    }

    #[test]
    fn new_flags_and_expunges() {
        let mut v = View::new(
            "INBOX".into(),
            st(5),
            vec![meta(1, 1, ""), meta(2, 2, "\\Seen"), meta(4, 3, "")],
            false,
        );
        let mut out = Vec::new();
        // Another session flags 2, a message arrives, 1 is expunged — during FETCH by
        // sequence number: no EXPUNGE yet.
        v.apply(
            st(8),
            vec![meta(2, 6, "\\Seen \\Flagged"), meta(5, 7, "")],
            vec![1],
            false,
            false,
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* 2 FETCH (UID 2 FLAGS (\\Seen \\Flagged))\r\n* 4 EXISTS\r\n"
        );
        assert_eq!(v.exists(), 4);
        out.clear();
        v.apply(st(8), vec![], vec![], true, true, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "* 1 EXPUNGE\r\n");
        assert_eq!(v.exists(), 3);
        assert_eq!(v.index_of(5), Some(2));
        // Own change already applied: no echo.
        out.clear();
        v.apply(
            st(9),
            vec![meta(2, 9, "\\Seen \\Flagged")],
            vec![],
            true,
            true,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(v.state.highestmodseq, 9);
    }

    #[test]
    fn expunges_descend() {
        let mut v = View::new(
            "INBOX".into(),
            st(5),
            (1..=5).map(|u| meta(u, 1, "")).collect(),
            false,
        );
        let mut out = Vec::new();
        v.apply(st(6), vec![], vec![2, 3, 5], true, false, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* 5 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"
        );
        assert_eq!(v.msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 4]);
    }

    #[test]
    fn qresync_reports_vanished() {
        let mut v = View::new(
            "INBOX".into(),
            st(5),
            (1..=6).map(|u| meta(u, 1, "")).collect(),
            false,
        );
        v.qresync = true;
        let mut out = Vec::new();
        v.apply(st(6), vec![], vec![2, 3, 5, 99], true, true, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "* VANISHED 2:3,5\r\n");
        assert_eq!(v.exists(), 3);
    }
}
