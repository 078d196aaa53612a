//! IMAP URLs (RFC 5092) as CATENATE (RFC 4469), URLAUTH (RFC 4467) and BURL use them:
//! one message or one of its sections, `imap://user@host/INBOX;UIDVALIDITY=1/;UID=2/
//! ;SECTION=1.2;EXPIRE=...;URLAUTH=submit+fred:internal:<token>`, or the absolute path
//! form `/INBOX;UIDVALIDITY=1/;UID=2` relative to this server. No I/O.
//!
//! # Security
//! URLs are untrusted client text, bounded by the framer; every malformed one is an
//! `Err` (answered `[BADURL]`). Who may read what the URL names is the caller's
//! decision (the user part and the URLAUTH access identifier).

use super::types::{Section, SectionText};

/// A parsed message URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImapUrl {
    /// The `user` of `imap://user@host/` (absent in the path form).
    pub user: Option<String>,
    pub host: Option<String>,
    /// Mailbox name, %-decoded (still modified UTF-7 as on the wire).
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The section, as written (`1.2.MIME`), upper-cased.
    pub section: Option<String>,
    pub partial: Option<(u32, Option<u32>)>,
    /// `;EXPIRE=` as written (RFC 3339 date-time).
    pub expire: Option<String>,
    /// `;URLAUTH=access` (without mechanism and token).
    pub access: Option<String>,
    /// `:mech:token` after the access identifier.
    pub mechanism: Option<String>,
    pub token: Option<String>,
    /// The URL up to and including `;URLAUTH=access` (what the token signs).
    pub rump: String,
}

/// `%XX` decoding (RFC 3986); `None` for a bad escape or non-UTF-8 result.
fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a message URL; the error names what is wrong.
pub fn parse(url: &str) -> Result<ImapUrl, String> {
    let mut u = ImapUrl::default();
    let path = if let Some(rest) = strip_prefix_ci(url, "imap://") {
        let slash = rest.find('/').ok_or("no mailbox in URL")?;
        let authority = &rest[..slash];
        let host = match authority.rsplit_once('@') {
            Some((user, host)) => {
                let user = user.split(';').next().unwrap_or("");
                u.user = Some(pct_decode(user).ok_or("bad user in URL")?);
                host
            }
            None => authority,
        };
        u.host = Some(host.to_ascii_lowercase());
        &rest[slash..]
    } else if url.starts_with('/') {
        url
    } else {
        return Err("not an IMAP URL".into());
    };
    // `/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]][;EXPIRE=t][;URLAUTH=a[:m:t]]`
    let path = &path[1..];
    let uid_at = find_ci(path, "/;UID=").ok_or("no UID in URL")?;
    let (mbox, rest) = (&path[..uid_at], &path[uid_at + 6..]);
    let (name, validity) = match find_ci(mbox, ";UIDVALIDITY=") {
        Some(i) => (&mbox[..i], Some(&mbox[i + 13..])),
        None => (mbox, None),
    };
    if name.is_empty() {
        return Err("no mailbox in URL".into());
    }
    u.mailbox = pct_decode(name).ok_or("bad mailbox in URL")?;
    if let Some(v) = validity {
        u.uidvalidity = Some(v.parse().map_err(|_| "bad UIDVALIDITY in URL")?);
    }
    // The URLAUTH part ends the URL; everything before it (with the access id) is
    // the rump.
    let (body, auth) = match find_ci(rest, ";URLAUTH=") {
        Some(i) => (&rest[..i], Some(&rest[i + 9..])),
        None => (rest, None),
    };
    if let Some(a) = auth {
        let mut it = a.splitn(3, ':');
        let access = it.next().unwrap_or("");
        if access.is_empty() {
            return Err("empty URLAUTH access".into());
        }
        u.access = Some(access.to_string());
        u.mechanism = it.next().map(str::to_ascii_lowercase);
        u.token = it.next().map(str::to_string);
        if u.mechanism.is_some() != u.token.is_some() {
            return Err("URLAUTH mechanism without token".into());
        }
        let cut = url.len() - a.len() + access.len();
        u.rump = url[..cut].to_string();
    } else {
        u.rump = url.to_string();
    }
    let (body, expire) = match find_ci(body, ";EXPIRE=") {
        Some(i) => (&body[..i], Some(&body[i + 8..])),
        None => (body, None),
    };
    u.expire = expire.map(str::to_string);
    let mut segs = body.split("/;");
    let uid = segs.next().unwrap_or("");
    u.uid = uid.parse().map_err(|_| "bad UID in URL")?;
    if u.uid == 0 {
        return Err("UID 0 in URL".into());
    }
    for seg in segs {
        if let Some(s) = strip_prefix_ci(seg, "SECTION=") {
            u.section = Some(pct_decode(s).ok_or("bad section")?.to_ascii_uppercase());
        } else if let Some(p) = strip_prefix_ci(seg, "PARTIAL=") {
            let (o, l) = match p.split_once('.') {
                Some((o, l)) => (o, Some(l.parse().map_err(|_| "bad PARTIAL")?)),
                None => (p, None),
            };
            u.partial = Some((o.parse().map_err(|_| "bad PARTIAL")?, l));
        } else {
            return Err(format!("unknown URL part {seg}"));
        }
    }
    Ok(u)
}

/// The [`Section`] a URL's `;SECTION=` names (`None` = the whole message).
pub fn section(s: Option<&str>) -> Result<Section, String> {
    let mut sec = Section::default();
    let Some(s) = s else { return Ok(sec) };
    for w in s.split('.') {
        if sec.text.is_some() {
            return Err(format!("bad section {s}"));
        }
        if let Ok(n) = w.parse::<u32>() {
            if n == 0 || sec.parts.len() >= 100 {
                return Err(format!("bad section {s}"));
            }
            sec.parts.push(n);
            continue;
        }
        sec.text = Some(match w {
            "HEADER" => SectionText::Header,
            "TEXT" => SectionText::Text,
            "MIME" if !sec.parts.is_empty() => SectionText::Mime,
            _ => return Err(format!("bad section {s}")),
        });
    }
    Ok(sec)
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    (s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        .then(|| &s[p.len()..])
}

fn find_ci(s: &str, needle: &str) -> Option<usize> {
    let (h, n) = (s.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4467_example() {
        let u = parse(
            "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a473744909de610943775f92038",
        )
        .unwrap();
        assert_eq!(u.user.as_deref(), Some("joe"));
        assert_eq!(u.mailbox, "INBOX");
        assert_eq!(u.uid, 20);
        assert_eq!(u.section.as_deref(), Some("1.2"));
        assert_eq!(u.access.as_deref(), Some("submit+fred"));
        assert_eq!(u.mechanism.as_deref(), Some("internal"));
        assert_eq!(
            u.rump,
            "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"
        );
    }

    #[test]
    fn path_form_and_errors() {
        let u = parse("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER").unwrap();
        assert_eq!(u.mailbox, "Drafts");
        assert_eq!(u.uidvalidity, Some(385759045));
        assert_eq!(
            section(u.section.as_deref()).unwrap().text,
            Some(SectionText::Header)
        );
        assert_eq!(parse("/a%20b/;UID=1").unwrap().mailbox, "a b");
        assert!(parse("/INBOX").is_err());
        assert!(parse("/INBOX/;UID=x").is_err());
        assert!(parse("http://x/INBOX/;UID=1").is_err());
        assert!(section(Some("1.FOO")).is_err());
        assert!(parse("/INBOX/;UID=1;URLAUTH=anonymous:internal").is_err());
    }
}
