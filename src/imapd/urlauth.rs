//! URLAUTH (RFC 4467) over the store: signing a URL for GENURLAUTH, and resolving a
//! URL (CATENATE's, URLFETCH's, the submission server's BURL) to the bytes it names.
//! Blocking (store and database calls): run it on `spawn_blocking`.
//!
//! # Security
//! URLs come from clients. A URL only ever names the requester's own mailboxes: one
//! whose `user@` is someone else is refused before anything is read, whatever its
//! token. A URLAUTH-authorized URL must carry a token made with the mailbox's
//! current key (constant-time compare), an access identifier admitting the
//! requester, and an EXPIRE not in the past.

use super::backend::{Backend, StoreError};
use super::proto::url::{self, ImapUrl};
use super::proto::urlauth::{self as ua, Requester};
use super::proto::{mime, parse::normalise_inbox, utf7};

/// The store name of the mailbox a URL names (modified UTF-7 on the wire).
fn mailbox_of(u: &ImapUrl) -> String {
    normalise_inbox(utf7::decode(&u.mailbox).unwrap_or_else(|| u.mailbox.clone()))
}

/// The bytes `u` names in `owner`'s store (UIDVALIDITY checked, section and
/// partial applied). `Err` says why, for the log.
pub fn resolve(b: &dyn Backend, owner: &str, u: &ImapUrl) -> Result<Vec<u8>, String> {
    if u.user
        .as_deref()
        .is_some_and(|x| !x.eq_ignore_ascii_case(owner))
    {
        return Err("URL names another user's mailbox".into());
    }
    let section = url::section(u.section.as_deref())?;
    let name = mailbox_of(u);
    let st = b.state(owner, &name).map_err(|e| format!("{name}: {e}"))?;
    if u.uidvalidity.is_some_and(|v| v != st.uidvalidity) {
        return Err(format!("{name}: UIDVALIDITY is {}", st.uidvalidity));
    }
    let data = b
        .read(owner, &name, u.uid)
        .map_err(|e| format!("{name} UID {}: {e}", u.uid))?;
    let mut out = mime::section(&data, &section)
        .ok_or_else(|| format!("{name} UID {}: no such section", u.uid))?
        .into_owned();
    if let Some((start, len)) = u.partial {
        let s = (start as usize).min(out.len());
        let e = len.map_or(out.len(), |l| s.saturating_add(l as usize).min(out.len()));
        out = out[s..e].to_vec();
    }
    Ok(out)
}

/// GENURLAUTH for one URL: checks it names an existing message of `user` and has
/// an access identifier but no token yet; returns the URL with `:internal:<token>`.
pub fn generate(b: &dyn Backend, user: &str, raw: &str) -> Result<String, String> {
    let u = url::parse(raw)?;
    if u.user.is_none() || u.host.is_none() {
        return Err("GENURLAUTH needs an absolute imap://user@host/ URL".into());
    }
    let access = u.access.as_deref().ok_or("no ;URLAUTH= in URL")?;
    if u.token.is_some() {
        return Err("URL already has a token".into());
    }
    if !ua::valid_access(access) {
        return Err(format!("unknown access identifier {access}"));
    }
    resolve(b, user, &u)?;
    let key = b
        .urlauth_key(user, &mailbox_of(&u), true)
        .map_err(|e| e.to_string())?
        .ok_or("no key")?;
    Ok(format!("{}:internal:{}", u.rump, ua::token(&key, &u.rump)))
}

/// URLFETCH / BURL: the bytes of a URLAUTH-authorized URL, for `who`.
pub fn fetch(b: &dyn Backend, raw: &str, who: Requester<'_>) -> Result<Vec<u8>, String> {
    let u = url::parse(raw)?;
    let me = match who {
        Requester::Imap(m) | Requester::Submit(m) => m,
    };
    let owner = u.user.as_deref().ok_or("URL has no user")?;
    if !owner.eq_ignore_ascii_case(me) {
        return Err(format!("{me} asked for a URL of {owner}"));
    }
    let (Some(access), Some(mech), Some(token)) = (&u.access, &u.mechanism, &u.token) else {
        return Err("not a URLAUTH-authorized URL".into());
    };
    if mech != "internal" {
        return Err(format!("unknown URLAUTH mechanism {mech}"));
    }
    if !ua::admits(access, who) {
        return Err(format!("access {access} does not admit {me}"));
    }
    if let Some(exp) = &u.expire {
        let t = chrono::DateTime::parse_from_rfc3339(exp).map_err(|_| "bad EXPIRE")?;
        if t.timestamp() <= chrono::Utc::now().timestamp() {
            return Err("URL expired".into());
        }
    }
    let key = match b.urlauth_key(me, &mailbox_of(&u), false) {
        Ok(Some(k)) => k,
        Ok(None) => return Err("mailbox has no URLAUTH key".into()),
        Err(StoreError::NoMailbox) => return Err("no such mailbox".into()),
        Err(e) => return Err(e.to_string()),
    };
    if !ua::token_matches(&key, &u.rump, token) {
        return Err("token does not match".into());
    }
    resolve(b, me, &u)
}
