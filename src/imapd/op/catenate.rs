//! APPEND with several messages (MULTIAPPEND, RFC 3502) or a message built from
//! pieces (CATENATE, RFC 4469): every message is assembled and checked first, then
//! all are stored in one batch, all or nothing; OK only once every one is durable.
//!
//! A CATENATE `URL` names a message (or section) of the logged-in user's own
//! mailboxes; a URL of another user, or one that does not resolve, fails the
//! command with `NO [BADURL url]`.
//!
//! # Format
//! `APPEND Sent (\Seen) {n} (\Seen) {m}` → `OK [APPENDUID v 7:8]`;
//! `APPEND Drafts CATENATE (URL "/Drafts;UIDVALIDITY=1/;UID=2/;SECTION=HEADER"
//! TEXT {n})` → `OK [APPENDUID v 9]`.
//!
//! # Security
//! Each assembled message is bounded by the message size limit and the command's
//! messages together by [`frame::total_bound`]; URL parts are read through the
//! same store calls a FETCH uses, for the session's user only.

use crate::imapd::backend::StoreError;
use crate::imapd::proto::{AppendMsg, AppendPart, frame, mime, seq, url, utf7};
use crate::imapd::session::{Reply, Session};

impl Session {
    pub(crate) async fn op_append_many(
        &mut self,
        mailbox: String,
        messages: Vec<AppendMsg>,
    ) -> Reply {
        let max = self.shared.max_literal();
        let total_max = frame::total_bound(max);
        let mut total = 0usize;
        let mut batch = Vec::with_capacity(messages.len());
        for m in messages {
            let mut bytes = Vec::new();
            for part in m.parts {
                let piece = match part {
                    AppendPart::Text(t) => t,
                    AppendPart::Url(u) => match self.url_bytes(&u).await {
                        Ok(b) => b,
                        Err(r) => return r,
                    },
                };
                if bytes.len() + piece.len() > max || total + bytes.len() + piece.len() > total_max
                {
                    return Reply::no("Message too large").code("TOOBIG");
                }
                bytes.extend_from_slice(&piece);
            }
            if bytes.is_empty() {
                return Reply::no("Can't save an empty message");
            }
            total += bytes.len();
            let flags: Vec<String> = m
                .flags
                .into_iter()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .collect();
            batch.push((bytes, flags.join(" "), m.date));
        }
        if let Some(r) = self.over_quota(total as u64, batch.len() as u64).await {
            return r;
        }
        let user = self.user();
        match self
            .blocking(move |b| b.append_many(&user, &mailbox, batch))
            .await
        {
            Ok((validity, uids)) => Reply::ok("Append completed")
                .code(format!("APPENDUID {validity} {}", seq::compact(&uids))),
            Err(StoreError::NoMailbox) => Reply::no("Mailbox doesn't exist").code("TRYCREATE"),
            Err(e) => self.store_no(e),
        }
    }

    /// The bytes an IMAP URL names, from the session user's own mailboxes.
    /// `Err` is the `NO [BADURL ...]` to answer.
    pub(crate) async fn url_bytes(&self, raw: &str) -> Result<Vec<u8>, Reply> {
        let bad = || {
            let shown: String = raw
                .chars()
                .filter(|c| !c.is_control() && *c != ']')
                .take(200)
                .collect();
            Reply::no("Bad URL").code(format!("BADURL {shown}"))
        };
        let u = url::parse(raw).map_err(|e| {
            tracing::debug!(url = %raw, error = %e, "bad IMAP URL");
            bad()
        })?;
        let me = self.user();
        if u.user
            .as_deref()
            .is_some_and(|x| !x.eq_ignore_ascii_case(&me))
        {
            tracing::info!(user = %me, url = %raw, "URL of another user refused");
            return Err(bad());
        }
        let section = url::section(u.section.as_deref()).map_err(|_| bad())?;
        let name = utf7::decode(&u.mailbox).unwrap_or(u.mailbox.clone());
        let name = crate::imapd::proto::parse::normalise_inbox(name);
        let (uid, validity) = (u.uid, u.uidvalidity);
        let data = self
            .blocking(move |b| {
                let st = b.state(&me, &name)?;
                if validity.is_some_and(|v| v != st.uidvalidity) {
                    return Err(StoreError::Refused("UIDVALIDITY changed".into()));
                }
                b.read(&me, &name, uid)
            })
            .await
            .map_err(|e| {
                tracing::debug!(url = %raw, error = %e, "URL does not resolve");
                bad()
            })?;
        let mut out = mime::section(&data, &section).ok_or_else(bad)?.into_owned();
        if let Some((start, len)) = u.partial {
            let s = (start as usize).min(out.len());
            let e = len.map_or(out.len(), |l| s.saturating_add(l as usize).min(out.len()));
            out = out[s..e].to_vec();
        }
        Ok(out)
    }
}
