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

use crate::imapd::proto::date::day_of;
use crate::imapd::proto::{SearchKey, SearchReturn, mime, seq};
use crate::imapd::session::{Fatal, Reply, Session};
use crate::imapd::view::{Bytes, Msg, has_flag};

/// Facts about one message a search key is tested against.
pub struct Candidate<'a> {
    pub seq: u32,
    pub msg: &'a Msg,
    pub flags: &'a str,
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

fn uses_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::And(v) => v.iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(a) => uses_modseq(a),
        SearchKey::ModSeq(_) => true,
        _ => false,
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
        // \Recent is not tracked (see SELECT): nothing is recent, so NEW matches none.
        SearchKey::New | SearchKey::Recent => false,
        SearchKey::Old => true,
        SearchKey::Before(d) => day_of(m.internal_date()) < *d,
        SearchKey::On(d) => day_of(m.internal_date()) == *d,
        SearchKey::Since(d) => day_of(m.internal_date()) >= *d,
        SearchKey::Larger(n) => (m.size as u64) > *n,
        SearchKey::Smaller(n) => (m.size as u64) < *n,
        SearchKey::ModSeq(n) => m.modseq >= *n,
        SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
            let Some(sent) = c.parsed.and_then(mime::sent_date).map(day_of) else {
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

impl Session {
    pub(crate) async fn op_search(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<Vec<SearchReturn>>,
        key: SearchKey,
    ) -> Result<Reply, Fatal> {
        let Some(v) = self.view() else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        let max_seq = v.msgs.len() as u32;
        let max_uid = v.max_uid();
        let modseq_used = uses_modseq(&key);
        let hits: Vec<(u32, u32, u64)> = if needs_content(&key) {
            // Read and parse on a blocking thread, in one pass over the mailbox.
            let msgs: Vec<(Msg, String)> = v
                .msgs
                .iter()
                .map(|m| (*m, v.flags(m).to_string()))
                .collect();
            let id = v.name.clone();
            let user = self.user();
            let key2 = key.clone();
            match self
                .blocking(move |b| {
                    let mut hits = Vec::new();
                    for (i, (m, flags)) in msgs.iter().enumerate() {
                        let mut c = Candidate {
                            seq: i as u32 + 1,
                            msg: m,
                            flags,
                            max_seq,
                            max_uid,
                            parsed: None,
                        };
                        let bytes = match b.read(&user, &id, m.uid) {
                            Ok(b) => b,
                            Err(crate::imapd::backend::StoreError::NoMailbox) => {
                                return Err(crate::imapd::backend::StoreError::NoMailbox);
                            }
                            Err(_) => continue, // expunged meanwhile
                        };
                        let parsed = mime::parse(&bytes);
                        c.parsed = parsed.as_ref();
                        if matches_key(&key2, &c) {
                            hits.push((c.seq, m.uid, m.modseq));
                        }
                    }
                    Ok(hits)
                })
                .await
            {
                Ok(h) => h,
                Err(e) => return Ok(self.store_no(e)),
            }
        } else {
            v.msgs
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let c = Candidate {
                        seq: i as u32 + 1,
                        msg: m,
                        flags: v.flags(m),
                        max_seq,
                        max_uid,
                        parsed: None,
                    };
                    matches_key(&key, &c).then_some((c.seq, m.uid, m.modseq))
                })
                .collect()
        };
        let nums: Vec<u32> = hits.iter().map(|h| if uid { h.1 } else { h.0 }).collect();
        let highest = hits.iter().map(|h| h.2).max();
        let mut out = std::mem::take(&mut self.out);
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
                            SearchReturn::Count => {}
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
