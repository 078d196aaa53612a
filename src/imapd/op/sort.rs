//! SORT and UID SORT (RFC 5256 §3): the messages matching the search keys, ordered
//! by ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT (base subject), TO, each optionally
//! REVERSE; ties in sequence order.
//!
//! # Format
//! `SORT (REVERSE DATE SUBJECT) UTF-8 UNDELETED` → `* SORT 5 3 4`
//!
//! The index gives size and INTERNALDATE (a sort by ARRIVAL/SIZE alone reads no
//! message); the other keys come from each message's header, parsed once and then
//! cached in the index (`sort_keys`, as Dovecot keeps them in its cache file): a
//! later SORT/THREAD reads only the headers of messages new since. Messages
//! expunged by another session meanwhile are left out.

use std::fmt::Write as _;

use std::collections::HashMap;

use tracing::warn;

use crate::imapd::backend::{SortKeys, StoreError};
use crate::imapd::op::search::{Candidate, matches_key, needs_content};
use crate::imapd::proto::thread::{SortMsg, sort};
use crate::imapd::proto::{SearchKey, SearchReturn, SortCriterion, SortKey, mime};
use crate::imapd::view::Bytes;
use crate::imapd::session::{Fatal, Reply, Session};
use crate::imapd::view::Msg;

/// A sequence-set that keeps the order of `nums`: runs of consecutive ascending
/// numbers become `a:b`, everything else stays in place (`5,1:3,9`).
pub(crate) fn ordered_set(nums: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j].wrapping_add(1) {
            j += 1;
        }
        if !s.is_empty() {
            s.push(',');
        }
        let _ = if j > i {
            write!(s, "{}:{}", nums[i], nums[j])
        } else {
            write!(s, "{}", nums[i])
        };
        i = j + 1;
    }
    s
}

/// Headers read per store call.
const BATCH: usize = 256;

/// What the store caches of a summary (the header part).
fn keys_of(s: &SortMsg) -> SortKeys {
    SortKeys {
        uid: s.uid,
        sent: s.dated.then_some(s.sent),
        subject: s.subject.clone(),
        is_reply: s.is_reply,
        from: s.from.clone(),
        to: s.to.clone(),
        cc: s.cc.clone(),
        display_from: s.display_from.clone(),
        display_to: s.display_to.clone(),
        message_id: s.message_id.clone(),
        references: s.references.clone(),
    }
}

/// A summary from cached keys and the index.
fn from_keys(seq: u32, m: &Msg, k: SortKeys) -> SortMsg {
    SortMsg {
        seq,
        uid: m.uid,
        size: m.size,
        arrival: m.internal_date(),
        sent: k.sent.unwrap_or(m.internal_date()),
        dated: k.sent.is_some(),
        subject: k.subject,
        is_reply: k.is_reply,
        from: k.from,
        to: k.to,
        cc: k.cc,
        display_from: k.display_from,
        display_to: k.display_to,
        message_id: k.message_id,
        references: k.references,
    }
}

impl Session {
    /// The summaries of the messages matching `key`, in sequence order; without
    /// `headers`, only what the index knows (sequence, UID, size, INTERNALDATE).
    pub(crate) async fn sort_input(
        &mut self,
        key: SearchKey,
        headers: bool,
    ) -> Result<Vec<SortMsg>, Reply> {
        let Some(v) = self.view() else {
            return Err(Reply::bad("No mailbox selected"));
        };
        let max_seq = v.msgs.len() as u32;
        let max_uid = v.max_uid();
        let content = needs_content(&key);
        // Index-only keys are decided here; content keys after reading.
        let cands: Vec<(u32, Msg, String, bool)> = v
            .msgs
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                content
                    || matches_key(
                        &key,
                        &Candidate {
                            seq: *i as u32 + 1,
                            msg: m,
                            flags: v.flags(m),
                            recent: v.is_recent(m.uid),
                            max_seq,
                            max_uid,
                            parsed: None,
                        },
                    )
            })
            .map(|(i, m)| {
                let recent = v.is_recent(m.uid);
                (i as u32 + 1, *m, v.flags(m).to_string(), recent)
            })
            .collect();
        if !content && !headers {
            return Ok(cands
                .into_iter()
                .map(|(seq, m, _, _)| SortMsg {
                    seq,
                    uid: m.uid,
                    size: m.size,
                    arrival: m.internal_date(),
                    sent: m.internal_date(),
                    ..SortMsg::default()
                })
                .collect());
        }
        let (user, id) = (self.user(), v.name.clone());
        let r = self
            .blocking(move |b| {
                // Keys cached by earlier SORT/THREADs; a failing cache only costs time.
                let mut cached: HashMap<u32, SortKeys> = match b.sort_keys(&user, &id) {
                    Ok(v) => v.into_iter().map(|k| (k.uid, k)).collect(),
                    Err(e) => {
                        warn!(error = %e, "SORT key cache unreadable");
                        HashMap::new()
                    }
                };
                let mut out = Vec::with_capacity(cands.len());
                let mut fresh = Vec::new();
                // Content keys need every candidate's bytes; otherwise only the
                // headers of messages not cached yet are read.
                let to_read: Vec<&(u32, Msg, String, bool)> = cands
                    .iter()
                    .filter(|c| content || !cached.contains_key(&c.1.uid))
                    .collect();
                let mut read: HashMap<u32, SortMsg> = HashMap::new();
                for chunk in to_read.chunks(BATCH) {
                    let uids: Vec<u32> = chunk.iter().map(|c| c.1.uid).collect();
                    let bodies = b.read_many(&user, &id, &uids, !content)?;
                    for ((seq, m, flags, recent), body) in
                        chunk.iter().map(|c| (c.0, &c.1, &c.2, c.3)).zip(bodies)
                    {
                        let Some(body) = body else { continue };
                        if content {
                            let parsed = mime::parse(&body);
                            let c = Candidate {
                                seq,
                                msg: m,
                                flags,
                                recent,
                                max_seq,
                                max_uid,
                                parsed: parsed.as_ref(),
                            };
                            if !matches_key(&key, &c) {
                                continue;
                            }
                        }
                        if cached.contains_key(&m.uid) {
                            read.insert(m.uid, SortMsg::default());
                            continue;
                        }
                        let hdr = &body[..mime::header_end(&body).min(body.len())];
                        let s = SortMsg::from_header(seq, m.uid, m.size, m.internal_date(), hdr);
                        fresh.push(keys_of(&s));
                        read.insert(m.uid, s);
                    }
                }
                for (seq, m, _, _) in &cands {
                    if content && !read.contains_key(&m.uid) {
                        continue; // did not match, or expunged meanwhile
                    }
                    if let Some(k) = cached.remove(&m.uid) {
                        out.push(from_keys(*seq, m, k));
                    } else if let Some(s) = read.remove(&m.uid) {
                        out.push(s);
                    }
                }
                if let Err(e) = b.put_sort_keys(&user, &id, &fresh) {
                    warn!(error = %e, "SORT key cache not written");
                }
                Ok::<_, StoreError>(out)
            })
            .await;
        r.map_err(|e| self.store_no(e))
    }

    pub(crate) async fn op_sort(
        &mut self,
        tag: &str,
        uid: bool,
        criteria: Vec<SortCriterion>,
        key: SearchKey,
        ret: Option<Vec<SearchReturn>>,
    ) -> Result<Reply, Fatal> {
        let headers = criteria
            .iter()
            .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
        let mut msgs = match self.sort_input(key, headers).await {
            Ok(m) => m,
            Err(r) => return Ok(r),
        };
        sort(&mut msgs, &criteria);
        if let Some(opts) = ret {
            // ESORT (RFC 5267 §3.1): MIN/MAX are the first and last in sort order,
            // ALL lists them in sort order.
            let nums: Vec<u32> = msgs.iter().map(|m| if uid { m.uid } else { m.seq }).collect();
            let mut out = Vec::new();
            out.extend_from_slice(b"* ESEARCH (TAG ");
            crate::imapd::proto::response::string(&mut out, tag.as_bytes());
            out.push(b')');
            if uid {
                out.extend_from_slice(b" UID");
            }
            if let (Some(first), Some(last)) = (nums.first(), nums.last()) {
                for o in &opts {
                    let _ = match o {
                        SearchReturn::Min => write!(Bytes(&mut out), " MIN {first}"),
                        SearchReturn::Max => write!(Bytes(&mut out), " MAX {last}"),
                        SearchReturn::All => write!(Bytes(&mut out), " ALL {}", ordered_set(&nums)),
                        SearchReturn::Count | SearchReturn::Save => Ok(()),
                    };
                }
            }
            if opts.contains(&SearchReturn::Count) {
                let _ = write!(Bytes(&mut out), " COUNT {}", nums.len());
            }
            out.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&out);
            return Ok(Reply::ok("Sort completed"));
        }
        let mut line = String::from("SORT");
        for m in &msgs {
            let _ = write!(line, " {}", if uid { m.uid } else { m.seq });
        }
        self.untagged(&line);
        Ok(Reply::ok("Sort completed"))
    }
}
