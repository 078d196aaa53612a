//! FETCH and UID FETCH (RFC 3501 §6.4.5, CONDSTORE CHANGEDSINCE/MODSEQ RFC 7162,
//! and QRESYNC's `UID FETCH set (...) (CHANGEDSINCE m VANISHED)`, which first sends
//! `* VANISHED (EARLIER) uids` for the UIDs of the set expunged since `m`).
//!
//! # Format
//! `FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE
//! BODY.PEEK[HEADER.FIELDS (From)]<0.100>)` → `* 1 FETCH (...)` per message.
//!
//! Only items that need the message (ENVELOPE, BODY[STRUCTURE], sections) read it;
//! flags, sizes and dates come from the index. A non-PEEK body section sets `\Seen`
//! first (in a read-write mailbox) and reports the new FLAGS.

use std::fmt::Write as _;

use crate::imapd::proto::date::format_date_time;
use crate::imapd::proto::{FetchAttr, Section, SectionText, SeqSet, StoreMode, mime, response};
use crate::imapd::session::{Fatal, Reply, Session};
use crate::imapd::view::{Bytes, Msg, write_msg_flags};

/// Messages read per blocking call (bounds memory of one batch).
const READ_BATCH: usize = 64;
/// Messages per blocking call when only headers are needed (served from the
/// index's header cache, a few KB each).
const HEADER_BATCH: usize = 512;

/// How a section is named in the response: `BODY[1.2.HEADER.FIELDS (From)]`.
fn section_name(s: &Section) -> String {
    let mut out: Vec<String> = s.parts.iter().map(u32::to_string).collect();
    match &s.text {
        None => {}
        Some(SectionText::Header) => out.push("HEADER".into()),
        Some(SectionText::Text) => out.push("TEXT".into()),
        Some(SectionText::Mime) => out.push("MIME".into()),
        Some(SectionText::HeaderFields(n)) | Some(SectionText::HeaderFieldsNot(n)) => {
            let kw = if matches!(s.text, Some(SectionText::HeaderFields(_))) {
                "HEADER.FIELDS"
            } else {
                "HEADER.FIELDS.NOT"
            };
            let mut names = Vec::new();
            for x in n {
                let mut b = Vec::new();
                if x.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                {
                    b.extend_from_slice(x.as_bytes());
                } else {
                    response::string(&mut b, x.as_bytes());
                }
                names.push(String::from_utf8_lossy(&b).into_owned());
            }
            out.push(format!("{kw} ({})", names.join(" ")));
        }
    }
    out.join(".")
}

fn needs_bytes(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Envelope
            | FetchAttr::BodyStructure
            | FetchAttr::Body
            | FetchAttr::Section { .. }
            | FetchAttr::Binary(_)
    )
}

/// Writes one `* n FETCH (...)` response.
fn write_fetch(
    out: &mut Vec<u8>,
    seq: usize,
    m: &Msg,
    flags: &str,
    recent: bool,
    attrs: &[FetchAttr],
    bytes: Option<&[u8]>,
    add_flags: bool,
) {
    let _ = write!(Bytes(out), "* {seq} FETCH (");
    // Parse only for the items that need the MIME structure.
    let needs_parse = attrs.iter().any(|a| {
        matches!(
            a,
            FetchAttr::Envelope | FetchAttr::BodyStructure | FetchAttr::Body
        )
    });
    let parsed = if needs_parse {
        bytes.and_then(mime::parse)
    } else {
        None
    };
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let mut flags_done = false;
    for a in attrs {
        sep(out);
        match a {
            FetchAttr::Uid => {
                let _ = write!(Bytes(out), "UID {}", m.uid);
            }
            FetchAttr::Flags => {
                out.extend_from_slice(b"FLAGS ");
                write_msg_flags(out, flags, recent);
                flags_done = true;
            }
            FetchAttr::InternalDate => {
                let _ = write!(
                    Bytes(out),
                    "INTERNALDATE \"{}\"",
                    format_date_time(m.internal_date())
                );
            }
            FetchAttr::Rfc822Size => {
                let _ = write!(Bytes(out), "RFC822.SIZE {}", m.size);
            }
            FetchAttr::ModSeq => {
                let _ = write!(Bytes(out), "MODSEQ ({})", m.modseq);
            }
            FetchAttr::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                match &parsed {
                    Some(p) => mime::envelope(out, p),
                    None => out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
                }
            }
            FetchAttr::BodyStructure | FetchAttr::Body => {
                let ext = matches!(a, FetchAttr::BodyStructure);
                out.extend_from_slice(if ext { b"BODYSTRUCTURE " } else { b"BODY " });
                match &parsed {
                    Some(p) => mime::body_structure(out, p, ext),
                    None => out.extend_from_slice(
                        b"(\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)",
                    ),
                }
            }
            FetchAttr::Section {
                section,
                partial,
                alias,
                ..
            } => {
                let data = bytes.and_then(|b| mime::section(b, section));
                let data: &[u8] = data.as_deref().unwrap_or(b"");
                match alias {
                    Some(name) => out.extend_from_slice(name.as_bytes()),
                    None => {
                        let _ = write!(Bytes(out), "BODY[{}]", section_name(section));
                    }
                }
                let slice = match partial {
                    Some((start, len)) => {
                        let _ = write!(Bytes(out), "<{start}>");
                        let s = (*start as usize).min(data.len());
                        let e = s.saturating_add(*len as usize).min(data.len());
                        &data[s..e]
                    }
                    None => data,
                };
                out.push(b' ');
                response::literal(out, slice);
            }
            FetchAttr::Binary(b) => super::binary::write_item(out, b, bytes),
        }
    }
    if add_flags && !flags_done {
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        write_msg_flags(out, flags, recent);
    }
    out.extend_from_slice(b")\r\n");
}

impl Session {
    /// `* VANISHED (EARLIER)` for the UIDs in `set` expunged after `since`.
    async fn fetch_vanished(&mut self, set: &SeqSet, since: u64) {
        let Some(v) = self.view() else { return };
        let Some(set) = v.resolve_saved(set) else {
            return;
        };
        let set = &set;
        let (id, user) = (v.name.clone(), self.user());
        let max = v.state.uidnext.saturating_sub(1).max(v.max_uid());
        let gone = match self.blocking(move |b| b.changes(&user, &id, since)).await {
            Ok((_, _, gone)) => gone,
            Err(e) => {
                tracing::warn!(error = %e, "VANISHED lookup failed");
                return;
            }
        };
        let Some(v) = self.view() else { return };
        // Expunges this session was not told of yet stay for the normal VANISHED.
        let mut gone: Vec<u32> = gone
            .into_iter()
            .filter(|&u| set.contains(u, max) && v.index_of(u).is_none())
            .collect();
        gone.sort_unstable();
        gone.dedup();
        if !gone.is_empty() {
            let l = format!(
                "VANISHED (EARLIER) {}",
                crate::imapd::proto::seq::compact(&gone)
            );
            self.untagged(&l);
        }
    }

    pub(crate) async fn op_fetch(
        &mut self,
        uid: bool,
        set: SeqSet,
        mut attrs: Vec<FetchAttr>,
        changed_since: Option<u64>,
        vanished: bool,
    ) -> Result<Reply, Fatal> {
        if vanished && !self.qresync {
            return Ok(Reply::bad("VANISHED needs ENABLE QRESYNC"));
        }
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.enable_condstore();
        }
        if let (true, Some(since)) = (vanished, changed_since) {
            self.fetch_vanished(&set, since).await;
        }
        let Some(v) = self.view() else {
            return Ok(Reply::bad("No mailbox selected"));
        };
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        let Ok(mut idx) = v.select(&set, uid) else {
            return Ok(Reply::bad(
                "Error in IMAP command FETCH: Invalid messageset",
            ));
        };
        if let Some(cs) = changed_since {
            idx.retain(|&i| v.msgs[i].modseq > cs);
        }
        let read_only = v.read_only;
        let id = v.name.clone();
        let user = self.user();

        // 1. Implicit \Seen for non-PEEK body sections.
        let sets_seen = !read_only
            && attrs.iter().any(|a| {
                matches!(a, FetchAttr::Section { peek: false, .. })
                    || matches!(a, FetchAttr::Binary(b) if !b.peek)
            });
        let mut seen_now = std::collections::HashSet::new();
        if sets_seen {
            let unseen: Vec<u32> = idx
                .iter()
                .map(|&i| &v.msgs[i])
                .filter(|m| !v.has_flag(m, "\\Seen"))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let (u2, id2) = (user.clone(), id.clone());
                let seen = vec!["\\Seen".to_string()];
                match self
                    .blocking(move |b| {
                        b.store_flags(&u2, &id2, &unseen, StoreMode::Add, &seen, None)
                    })
                    .await
                {
                    Ok(done) => {
                        if let Some(v) = self.view_mut() {
                            for m in done.updated {
                                if let Some(i) = v.index_of(m.uid) {
                                    v.set_flags(i, &m.flags, m.modseq);
                                    seen_now.insert(m.uid);
                                }
                            }
                        }
                    }
                    Err(e) => return Ok(self.store_no(e)),
                }
            }
        }

        // 2. Responses, reading message bytes in batches when needed.
        let reads = attrs.iter().any(needs_bytes);
        // Header sections of the message itself need only the bytes up to its
        // empty line; the body is not read.
        // ENVELOPE is made of header fields only.
        let headers_only = attrs.iter().filter(|a| needs_bytes(a)).all(|a| {
            matches!(a, FetchAttr::Envelope)
                || matches!(a, FetchAttr::Section { section, .. }
                if section.parts.is_empty()
                    && matches!(
                        section.text,
                        Some(SectionText::Header)
                            | Some(SectionText::HeaderFields(_))
                            | Some(SectionText::HeaderFieldsNot(_))
                    ))
        });
        let mut expunged_meanwhile = false;
        if !reads {
            // Index only (FLAGS, UID, sizes, dates): written straight from the view,
            // flushed about every FLUSH_AT bytes.
            for chunk in idx.chunks(512) {
                let mut out = std::mem::take(&mut self.out);
                if let Some(v) = self.view() {
                    for &i in chunk {
                        let m = &v.msgs[i];
                        let add_flags = seen_now.contains(&m.uid);
                        let recent = v.is_recent(m.uid);
                        write_fetch(
                            &mut out,
                            i + 1,
                            m,
                            v.flags(m),
                            recent,
                            &attrs,
                            None,
                            add_flags,
                        );
                    }
                }
                self.out = out;
                self.maybe_flush().await?;
            }
            return Ok(Reply::ok("Fetch completed"));
        }
        let batch = if headers_only {
            HEADER_BATCH
        } else {
            READ_BATCH
        };
        for chunk in idx.chunks(batch) {
            let Some(v) = self.view() else { break };
            let msgs: Vec<(usize, Msg, String, bool)> = chunk
                .iter()
                .map(|&i| {
                    let m = v.msgs[i];
                    (i, m, v.flags(&m).to_string(), v.is_recent(m.uid))
                })
                .collect();
            let bodies: Vec<Option<Vec<u8>>> = {
                let uids: Vec<u32> = msgs.iter().map(|(_, m, _, _)| m.uid).collect();
                let (u2, id2) = (user.clone(), id.clone());
                match self
                    .blocking(move |b| b.read_many(&u2, &id2, &uids, headers_only))
                    .await
                {
                    Ok(x) => x,
                    Err(e) => return Ok(self.store_no(e)),
                }
            };
            for ((i, m, flags, recent), body) in msgs.iter().zip(bodies) {
                if body.is_none() {
                    // Expunged by another session after we listed it: RFC 2180
                    // §4.1.2 lets us leave it out; the EXPUNGE follows at the next
                    // command that allows one.
                    expunged_meanwhile = true;
                    continue;
                }
                if let Some(no) = body
                    .as_deref()
                    .and_then(|b| super::binary::check(&attrs, b, m.uid))
                {
                    return Ok(no);
                }
                let add_flags = seen_now.contains(&m.uid);
                let mut out = std::mem::take(&mut self.out);
                write_fetch(
                    &mut out,
                    i + 1,
                    m,
                    flags,
                    *recent,
                    &attrs,
                    body.as_deref(),
                    add_flags,
                );
                self.out = out;
                self.maybe_flush().await?;
            }
        }
        if expunged_meanwhile {
            tracing::debug!("FETCH left out messages expunged by another session");
        }
        Ok(Reply::ok("Fetch completed"))
    }
}
