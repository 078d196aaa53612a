//! SEARCH and UID SEARCH (RFC 3501 §6.4.4) with every RFC 3501 key, MODSEQ
//! (CONDSTORE) and ESEARCH results (RFC 4731).
//!
//! # Format
//! `SEARCH [RETURN (MIN MAX COUNT ALL)] [CHARSET UTF-8] key...` → `* SEARCH 2 5`, or
//! `* ESEARCH (TAG "a1") UID MIN 2 COUNT 2`.
//!
//! Keys on headers and text parse the stored message (read on a blocking thread);
//! flag, size, date and number keys use the index only.

use std::fmt::Write as _;

use crate::imapd::backend::{Backend, StoreResult};
use crate::imapd::proto::date::day_of;
use crate::imapd::proto::{SearchKey, SearchReturn, SeqSet, mime, seq};
use crate::imapd::session::{Fatal, Reply, Session};
use crate::imapd::view::{Bytes, Msg, View, has_flag};

/// Facts about one message a search key is tested against.
pub struct Candidate<'a> {
    pub seq: u32,
    pub msg: &'a Msg,
    pub flags: &'a str,
    /// `\Recent` in this session.
    pub recent: bool,
    pub max_seq: u32,
    pub max_uid: u32,
    pub parsed: Option<&'a mail_parser::Message<'a>>,
}

pub(crate) fn needs_content(k: &SearchKey) -> bool {
    match k {
        SearchKey::And(v) => v.iter().any(needs_content),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::Not(a) => needs_content(a),
        SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        _ => false,
    }
}

/// Whether a key needs the message body (not only its header).
fn needs_body(k: &SearchKey) -> bool {
    match k {
        SearchKey::And(v) => v.iter().any(needs_body),
        SearchKey::Or(a, b) => needs_body(a) || needs_body(b),
        SearchKey::Not(a) => needs_body(a),
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        _ => false,
    }
}

/// Evaluates `key` from the index alone (flags, dates, sizes, numbers): `None` when
/// the answer depends on the message's content. `FLAGGED SUBJECT x` thus reads only
/// the flagged messages, as Dovecot does.
fn quick(key: &SearchKey, c: &Candidate<'_>) -> Option<bool> {
    match key {
        SearchKey::And(v) => {
            let mut unknown = false;
            for k in v {
                match quick(k, c) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            (!unknown).then_some(true)
        }
        SearchKey::Or(a, b) => match (quick(a, c), quick(b, c)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        SearchKey::Not(a) => quick(a, c).map(|x| !x),
        k if needs_content(k) => None,
        k => Some(matches_key(k, c)),
    }
}

/// A message's raw header, for ruling header keys out before a full parse (most
/// messages of a big mailbox fail a `FROM x`; parsing each would cost far more than
/// looking at its From line).
struct RawText<'a> {
    /// `None` when the bytes are not the header alone (a body key is searched too).
    header: Option<&'a [u8]>,
}

impl<'a> RawText<'a> {
    fn new(bytes: &'a [u8], header_only: bool) -> RawText<'a> {
        RawText {
            header: header_only.then_some(bytes),
        }
    }

    /// Whether some field `name` contains `needle` in its raw text (`None`: only the
    /// parse can tell — an encoded word or 8-bit text in another charset may decode
    /// to the needle).
    fn field_may_contain(&self, name: &str, needle_lower: &str) -> Option<bool> {
        let header = self.header?;
        let mut value: Vec<u8> = Vec::new();
        let mut inside = false;
        for line in header.split(|&b| b == b'\n') {
            if matches!(line.first(), Some(b' ' | b'\t')) {
                if inside {
                    value.extend_from_slice(line);
                }
                continue;
            }
            inside = line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()..].trim_ascii_start().first() == Some(&b':');
            if inside {
                value.push(b' ');
                value.extend_from_slice(&line[name.len()..]);
            }
        }
        if memchr::memmem::find(&value, b"=?").is_some() {
            return None;
        }
        let text = std::str::from_utf8(&value).ok()?;
        let found = if text.is_ascii() {
            memchr::memmem::find(
                text.to_ascii_lowercase().as_bytes(),
                needle_lower.as_bytes(),
            )
            .is_some()
        } else {
            text.to_lowercase().contains(needle_lower)
        };
        Some(found)
    }
}

/// Like [`quick`], but also decides header keys on the raw field lines when they are
/// plain text (no encoded words, UTF-8).
fn raw_quick(key: &SearchKey, c: &Candidate<'_>, raw: &RawText) -> Option<bool> {
    match key {
        SearchKey::And(v) => {
            let mut unknown = false;
            for k in v {
                match raw_quick(k, c, raw) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            (!unknown).then_some(true)
        }
        SearchKey::Or(a, b) => match (raw_quick(a, c, raw), raw_quick(b, c, raw)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        SearchKey::Not(a) => raw_quick(a, c, raw).map(|x| !x),
        // A needle with white space may span a folded line, and the parse writes
        // addresses as `name <addr>` after unquoting: those are left to it.
        SearchKey::Header(name, v)
            if !v.is_empty()
                && !v
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\\' | ',')) =>
        {
            // Found in a field's raw text is a match too: the parse's test looks at
            // the raw text of each field first.
            raw.field_may_contain(name, &v.to_lowercase())
        }
        k if needs_content(k) => None,
        k => Some(matches_key(k, c)),
    }
}

/// Messages whose content is read per blocking call.
const READ_BATCH: usize = 128;
/// The same when only headers are needed (from the header cache, a few KB each).
const HEADER_BATCH: usize = 1024;

fn uses_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::And(v) => v.iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(a) => uses_modseq(a),
        SearchKey::ModSeq(_) => true,
        _ => false,
    }
}

/// `key` with SEARCHRES `$` (RFC 5182) replaced by the saved UIDs, so the rest of
/// the search never sees it. Depth is bounded by the parser.
fn resolve_saved(key: SearchKey, view: &crate::imapd::view::View) -> SearchKey {
    let saved = |s: SeqSet| -> SearchKey {
        if !s.is_saved() {
            return SearchKey::Uid(s);
        }
        match view.resolve_saved(&s) {
            Some(u) => SearchKey::Uid(u),
            None => SearchKey::Not(Box::new(SearchKey::All)),
        }
    };
    match key {
        SearchKey::And(v) => SearchKey::And(v.into_iter().map(|k| resolve_saved(k, view)).collect()),
        SearchKey::Or(a, b) => SearchKey::Or(
            Box::new(resolve_saved(*a, view)),
            Box::new(resolve_saved(*b, view)),
        ),
        SearchKey::Not(a) => SearchKey::Not(Box::new(resolve_saved(*a, view))),
        SearchKey::Seq(s) if s.is_saved() => saved(s),
        SearchKey::Uid(s) => saved(s),
        k => k,
    }
}

/// Whether a message satisfies `key`.
pub(crate) fn matches_key(key: &SearchKey, c: &Candidate<'_>) -> bool {
    let m = c.msg;
    match key {
        SearchKey::All => true,
        SearchKey::And(v) => v.iter().all(|k| matches_key(k, c)),
        SearchKey::Or(a, b) => matches_key(a, c) || matches_key(b, c),
        SearchKey::Not(a) => !matches_key(a, c),
        SearchKey::Seq(s) => s.contains(c.seq, c.max_seq),
        SearchKey::Uid(s) => s.contains(m.uid, c.max_uid),
        SearchKey::Flag(f) => has_flag(c.flags, f),
        SearchKey::NotFlag(f) => !has_flag(c.flags, f),
        // RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT.
        SearchKey::New => c.recent && !has_flag(c.flags, "\\Seen"),
        SearchKey::Recent => c.recent,
        SearchKey::Old => !c.recent,
        SearchKey::Before(d) => day_of(m.internal_date()) < *d,
        SearchKey::On(d) => day_of(m.internal_date()) == *d,
        SearchKey::Since(d) => day_of(m.internal_date()) >= *d,
        SearchKey::Larger(n) => (m.size as u64) > *n,
        SearchKey::Smaller(n) => (m.size as u64) < *n,
        SearchKey::ModSeq(n) => m.modseq >= *n,
        SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
            let Some(sent) = c.parsed.and_then(mime::sent_day) else {
                return false;
            };
            match key {
                SearchKey::SentBefore(_) => sent < *d,
                SearchKey::SentOn(_) => sent == *d,
                _ => sent >= *d,
            }
        }
        SearchKey::Header(name, v) => c.parsed.is_some_and(|p| mime::header_contains(p, name, v)),
        SearchKey::Body(v) => c.parsed.is_some_and(|p| mime::body_contains(p, v)),
        SearchKey::Text(v) => c.parsed.is_some_and(|p| mime::text_contains(p, v)),
    }
}

/// Step 1 of a search: decides what the index can. Returns the hits (seq, UID,
/// MODSEQ) and the messages whose content decides (seq, message, flags).
#[allow(clippy::type_complexity)]
fn index_pass(v: &View, key: &SearchKey) -> (Vec<(u32, u32, u64)>, Vec<(u32, Msg, String, bool)>) {
    let max_seq = v.msgs.len() as u32;
    let max_uid = v.max_uid();
    let mut hits: Vec<(u32, u32, u64)> = Vec::new();
    let mut undecided: Vec<(u32, Msg, String, bool)> = Vec::new();
    for (i, m) in v.msgs.iter().enumerate() {
        let c = Candidate {
            seq: i as u32 + 1,
            msg: m,
            flags: v.flags(m),
            recent: v.is_recent(m.uid),
            max_seq,
            max_uid,
            parsed: None,
        };
        match quick(key, &c) {
            Some(true) => hits.push((c.seq, m.uid, m.modseq)),
            Some(false) => {}
            None => undecided.push((c.seq, *m, c.flags.to_string(), c.recent)),
        }
    }
    (hits, undecided)
}

/// Step 2 of a search (blocking): reads and parses the undecided messages in
/// batches (only their headers, from the index's header cache, unless a key needs
/// the body) and returns those that match.
fn content_pass(
    b: &dyn Backend,
    user: &str,
    mailbox: &str,
    undecided: &[(u32, Msg, String, bool)],
    key: &SearchKey,
    max_seq: u32,
    max_uid: u32,
) -> StoreResult<Vec<(u32, u32, u64)>> {
    let headers_only = !needs_body(key);
    let mut hits = Vec::new();
    let batch = if headers_only {
        HEADER_BATCH
    } else {
        READ_BATCH
    };
    for chunk in undecided.chunks(batch) {
        let uids: Vec<u32> = chunk.iter().map(|(_, m, _, _)| m.uid).collect();
        let bodies = b.read_many(user, mailbox, &uids, headers_only)?;
        for ((seq, m, flags, recent), bytes) in chunk.iter().zip(bodies) {
            // None: expunged meanwhile.
            let Some(bytes) = bytes else { continue };
            let c = Candidate {
                seq: *seq,
                msg: m,
                flags,
                recent: *recent,
                max_seq,
                max_uid,
                parsed: None,
            };
            let raw = RawText::new(&bytes, headers_only);
            match raw_quick(key, &c, &raw) {
                Some(true) => {
                    hits.push((*seq, m.uid, m.modseq));
                    continue;
                }
                Some(false) => continue,
                None => {}
            }
            let parsed = mime::parse(&bytes);
            let c = Candidate {
                seq: *seq,
                msg: m,
                flags,
                recent: *recent,
                max_seq,
                max_uid,
                parsed: parsed.as_ref(),
            };
            if matches_key(key, &c) {
                hits.push((*seq, m.uid, m.modseq));
            }
        }
    }
    Ok(hits)
}

/// The whole search of one opened mailbox, blocking: the UIDs of the messages of
/// `view` that satisfy `key`, ascending. The IMAP session runs the same two passes
/// (the index pass on its task, the content pass on a blocking thread); the webmail's
/// search box calls this.
pub fn search_view(
    b: &dyn Backend,
    user: &str,
    view: &View,
    key: &SearchKey,
) -> StoreResult<Vec<u32>> {
    let (mut hits, undecided) = index_pass(view, key);
    if !undecided.is_empty() {
        let max_seq = view.msgs.len() as u32;
        hits.extend(content_pass(
            b,
            user,
            &view.name,
            &undecided,
            key,
            max_seq,
            view.max_uid(),
        )?);
    }
    let mut uids: Vec<u32> = hits.into_iter().map(|h| h.1).collect();
    uids.sort_unstable();
    Ok(uids)
}

impl Session {
    pub(crate) async fn op_search(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<Vec<SearchReturn>>,
        key: SearchKey,
    ) -> Result<Reply, Fatal> {
        if self.view().is_none() {
            return Ok(Reply::bad("No mailbox selected"));
        }
        let modseq_used = uses_modseq(&key);
        if modseq_used {
            self.enable_condstore();
        }
        let save = ret.as_ref().is_some_and(|r| r.contains(&SearchReturn::Save));
        let Some(v) = self.view_mut() else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let key = resolve_saved(key, v);
        if save {
            // A search that fails leaves `$` empty (RFC 5182 §2.1).
            v.saved.clear();
        }
        let v = &*v;
        let max_seq = v.msgs.len() as u32;
        let max_uid = v.max_uid();
        // 1. Decide what the index can; collect the messages whose content decides.
        let (mut hits, undecided) = index_pass(v, &key);
        // 2. Read and parse those on a blocking thread.
        if !undecided.is_empty() {
            let id = v.name.clone();
            let user = self.user();
            let key2 = key.clone();
            match self
                .blocking(move |b| content_pass(b, &user, &id, &undecided, &key2, max_seq, max_uid))
                .await
            {
                Ok(h) => hits.extend(h),
                Err(e) => return Ok(self.store_no(e)),
            }
            hits.sort_unstable();
        }
        let nums: Vec<u32> = hits.iter().map(|h| if uid { h.1 } else { h.0 }).collect();
        let highest = hits.iter().map(|h| h.2).max();
        if save {
            // SAVE with MIN/MAX keeps only those; otherwise the whole result.
            let opts = ret.as_deref().unwrap_or(&[]);
            let (min, max) = (
                opts.contains(&SearchReturn::Min),
                opts.contains(&SearchReturn::Max),
            );
            let mut uids: Vec<u32> = if min || max {
                let mut u = Vec::new();
                if min && let Some(h) = hits.first() {
                    u.push(h.1);
                }
                if max && let Some(h) = hits.last() {
                    u.push(h.1);
                }
                u
            } else {
                hits.iter().map(|h| h.1).collect()
            };
            uids.sort_unstable();
            uids.dedup();
            if let Some(v) = self.view_mut() {
                v.saved = uids;
            }
            if opts.iter().all(|o| *o == SearchReturn::Save) {
                // SAVE alone: no ESEARCH response (RFC 5182 §2.4).
                return Ok(Reply::ok("Search completed"));
            }
        }
        let mut out = std::mem::take(&mut self.out);
        // IMAP4rev2 (RFC 9051 §6.4.4): SEARCH without RETURN is RETURN (ALL).
        let ret = ret.or_else(|| self.rev2.then(|| vec![SearchReturn::All]));
        match ret {
            None => {
                out.extend_from_slice(b"* SEARCH");
                for n in &nums {
                    let _ = write!(Bytes(&mut out), " {n}");
                }
                if modseq_used && let Some(h) = highest {
                    let _ = write!(Bytes(&mut out), " (MODSEQ {h})");
                }
                out.extend_from_slice(b"\r\n");
            }
            Some(opts) => {
                out.extend_from_slice(b"* ESEARCH (TAG ");
                crate::imapd::proto::response::string(&mut out, tag.as_bytes());
                out.push(b')');
                if uid {
                    out.extend_from_slice(b" UID");
                }
                if !nums.is_empty() {
                    for o in &opts {
                        match o {
                            SearchReturn::Min => {
                                let _ = write!(Bytes(&mut out), " MIN {}", nums[0]);
                            }
                            SearchReturn::Max => {
                                let _ = write!(Bytes(&mut out), " MAX {}", nums[nums.len() - 1]);
                            }
                            SearchReturn::All => {
                                let _ = write!(Bytes(&mut out), " ALL {}", seq::compact(&nums));
                            }
                            SearchReturn::Count | SearchReturn::Save => {}
                        }
                    }
                    if modseq_used && let Some(h) = highest {
                        let _ = write!(Bytes(&mut out), " MODSEQ {h}");
                    }
                }
                if opts.contains(&SearchReturn::Count) {
                    let _ = write!(Bytes(&mut out), " COUNT {}", nums.len());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        self.out = out;
        Ok(Reply::ok("Search completed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw-header shortcut never contradicts the full parse.
    #[test]
    fn raw_header_shortcut_agrees_with_the_parse() {
        let heads: [&[u8]; 7] = [
            b"From: \"Anna Berg\" <anna.berg@example.com>\r\nSubject: Hello\r\n\r\n",
            b"FROM: x@example.com\r\nFrom-Anna: y\r\nSubject: Re:\r\n anna\r\n\r\n",
            b"Sender: anna@example.com\r\nFrom:\r\n Ben\r\n  <ben@example.org>\r\n\r\n",
            b"From: Ben <ben@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_Anna?=\r\n\r\n",
            b"From: Carla <carla@example.net>\r\nSubject: a\r\n\tfolded anna line\r\n\r\n",
            b"From: David <d@example.net>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n",
            b"From: Eva <eva@example.net>\nSubject: plain LF anna\n\n",
        ];
        let keys = [
            SearchKey::Header("From".into(), "anna".into()),
            SearchKey::Header("From".into(), "ben@example.org".into()),
            SearchKey::Header("Subject".into(), "re:".into()),
            SearchKey::Header("Subject".into(), "anna".into()),
            SearchKey::Header("Subject".into(), "GRÜSSE".into()),
            SearchKey::Header("Subject".into(), "grüße".into()),
            SearchKey::Not(Box::new(SearchKey::Header("From".into(), "ben".into()))),
            SearchKey::Or(
                Box::new(SearchKey::Header("From".into(), "zzz".into())),
                Box::new(SearchKey::Flag("\\Seen".into())),
            ),
        ];
        let msg = Msg {
            uid: 1,
            size: 10,
            date: 0,
            flags: 0,
            modseq: 1,
        };
        for h in heads {
            let parsed = mime::parse(h);
            for k in &keys {
                let mut c = Candidate {
                    seq: 1,
                    msg: &msg,
                    flags: "\\Seen",
                    recent: false,
                    max_seq: 1,
                    max_uid: 1,
                    parsed: None,
                };
                let quick = raw_quick(k, &c, &RawText::new(h, true));
                c.parsed = parsed.as_ref();
                let full = matches_key(k, &c);
                if let Some(q) = quick {
                    assert_eq!(q, full, "{k:?} on {}", String::from_utf8_lossy(h));
                }
            }
        }
        // It does decide the common case: a plain header without the needle.
        let c = Candidate {
            seq: 1,
            msg: &msg,
            flags: "",
            recent: false,
            max_seq: 1,
            max_uid: 1,
            parsed: None,
        };
        let k = SearchKey::Header("From".into(), "zzz".into());
        assert_eq!(
            raw_quick(&k, &c, &RawText::new(heads[0], true)),
            Some(false)
        );
        let k = SearchKey::Header("From".into(), "anna".into());
        assert_eq!(raw_quick(&k, &c, &RawText::new(heads[0], true)), Some(true));
        // An encoded word is left to the parse.
        let k = SearchKey::Header("Subject".into(), "anna".into());
        assert_eq!(raw_quick(&k, &c, &RawText::new(heads[3], true)), None);
    }
}
