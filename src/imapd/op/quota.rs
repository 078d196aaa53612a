//! GETQUOTA and GETQUOTAROOT (RFC 9208, compatible with RFC 2087 clients), and the
//! OVERQUOTA check APPEND and COPY make.
//!
//! A user with `quota_storage` and/or `quota_messages` in their `[[users]]` entry
//! has one quota root, `""`, covering all their mailboxes; usage is summed from the
//! message index. A user without limits has no quota root: RFC 9208's QUOTA
//! response needs a limit for every resource it lists, so usage alone cannot be
//! reported, and GETQUOTAROOT answers with the mailbox and no roots.
//! SETQUOTA is refused (limits live in the config file).
//!
//! # Format
//! `GETQUOTAROOT INBOX` → `* QUOTAROOT INBOX ""`, `* QUOTA "" (STORAGE 12 1024 MESSAGE 3 100)`;
//! `GETQUOTA ""` → `* QUOTA "" (...)`. STORAGE counts units of 1024 octets.

use crate::imapd::backend::Usage;
use crate::imapd::proto::response;
use crate::imapd::session::{Reply, Session};

/// The one quota root name.
const ROOT: &str = "";

impl Session {
    /// The logged-in user's (storage bytes, messages) limits; `None` when neither is set.
    fn quota_limits(&self) -> Option<(Option<u64>, Option<u64>)> {
        let name = self.user.as_deref()?;
        let u = self
            .shared
            .config
            .users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))?;
        (u.quota_storage.is_some() || u.quota_messages.is_some())
            .then_some((u.quota_storage, u.quota_messages))
    }

    async fn usage(&self) -> Result<Usage, Reply> {
        let user = self.user();
        self.blocking(move |b| b.usage(&user))
            .await
            .map_err(|e| self.store_no(e))
    }

    fn quota_line(&mut self, usage: Usage, limits: (Option<u64>, Option<u64>)) {
        let mut res = Vec::new();
        if let Some(l) = limits.0 {
            res.push(format!(
                "STORAGE {} {}",
                usage.bytes.div_ceil(1024),
                l / 1024
            ));
        }
        if let Some(l) = limits.1 {
            res.push(format!("MESSAGE {} {l}", usage.messages));
        }
        let mut line = b"* QUOTA ".to_vec();
        response::string(&mut line, ROOT.as_bytes());
        line.extend_from_slice(format!(" ({})\r\n", res.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
    }

    pub(crate) async fn op_getquotaroot(&mut self, mailbox: String) -> Reply {
        let user = self.user();
        let name = mailbox.clone();
        if let Err(e) = self.blocking(move |b| b.status(&user, &name)).await {
            return self.store_no(e);
        }
        let mut line = b"* QUOTAROOT ".to_vec();
        response::mailbox_as(&mut line, &mailbox, self.utf8);
        let limits = self.quota_limits();
        if limits.is_some() {
            line.push(b' ');
            response::string(&mut line, ROOT.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&line);
        if let Some(l) = limits {
            match self.usage().await {
                Ok(u) => self.quota_line(u, l),
                Err(r) => return r,
            }
        }
        Reply::ok("Getquotaroot completed")
    }

    pub(crate) async fn op_getquota(&mut self, root: String) -> Reply {
        let Some(limits) = self.quota_limits().filter(|_| root == ROOT) else {
            return Reply::no("No such quota root").code("NONEXISTENT");
        };
        match self.usage().await {
            Ok(u) => self.quota_line(u, limits),
            Err(r) => return r,
        }
        Reply::ok("Getquota completed")
    }

    /// `Some(NO [OVERQUOTA])` when adding `bytes` in `messages` would pass a limit.
    pub(crate) async fn over_quota(&self, bytes: u64, messages: u64) -> Option<Reply> {
        let (ls, lm) = self.quota_limits()?;
        let u = match self.usage().await {
            Ok(u) => u,
            Err(r) => return Some(r),
        };
        let over = ls.is_some_and(|l| u.bytes.saturating_add(bytes) > l)
            || lm.is_some_and(|l| u.messages.saturating_add(messages) > l);
        over.then(|| Reply::no("Quota exceeded").code("OVERQUOTA"))
    }
}
