//! fetchmail's `.fetchids` file: which POP3 messages left on the server (`keep`) it has
//! already seen, so that zolder does not fetch the whole mailbox again after the switch.
//! Pure parsing; `db::fetchids` stores the result.
//!
//! # Format (fetchmail `uid.c`)
//! One line per seen, not-yet-expunged message: `remoteuser@queryname UID`, where
//! `queryname` is the `via` host or else the poll name. The user part may contain
//! blanks and `@` (the host is after the *last* `@` before the first blank that follows
//! an `@`); the UID may contain `@` too (InterMail). The UID ends at the first blank.
//! Lines that do not fit are skipped, as fetchmail skips them. Keys compare
//! case-insensitively.

/// Seen UIDs per `(remote user, host)`, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchIds {
    pub entries: Vec<FetchIdsEntry>,
    /// Lines that were not `user@host uid`.
    pub skipped_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchIdsEntry {
    pub user: String,
    pub host: String,
    pub uids: Vec<String>,
}

impl FetchIds {
    /// The seen UIDs of `user@host` (case-insensitive), or an empty list.
    pub fn uids_for(&self, user: &str, host: &str) -> &[String] {
        self.entries
            .iter()
            .find(|e| e.user.eq_ignore_ascii_case(user) && e.host.eq_ignore_ascii_case(host))
            .map(|e| e.uids.as_slice())
            .unwrap_or(&[])
    }

    /// Total number of UIDs in the file.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.uids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a `.fetchids` means for an import: the seen UIDLs of each POP3 account, and
/// what could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenPlan {
    /// (account name, seen UIDLs) for POP3 accounts with entries.
    pub pop3: Vec<(String, Vec<String>)>,
    /// (account name, count): IMAP accounts (zolder tracks UIDVALIDITY/UID itself).
    pub imap_skipped: Vec<(String, usize)>,
    /// (`user@host`, count): entries that match no account.
    pub unmatched: Vec<(String, usize)>,
}

/// Matches `.fetchids` entries to imported accounts by fetchmail's key,
/// `remoteuser@(via|pollname)`, case-insensitively.
pub fn plan(import: &super::Import, ids: &FetchIds) -> SeenPlan {
    let mut out = SeenPlan::default();
    let mut matched = vec![false; ids.entries.len()];
    for ia in &import.accounts {
        let Some(i) = ids.entries.iter().position(|e| {
            e.user.eq_ignore_ascii_case(&ia.uid_user) && e.host.eq_ignore_ascii_case(&ia.uid_host)
        }) else {
            continue;
        };
        matched[i] = true;
        let uids = &ids.entries[i].uids;
        if ia.account.protocol == crate::config::account::Protocol::Pop3 {
            out.pop3.push((ia.account.name.clone(), uids.clone()));
        } else {
            out.imap_skipped.push((ia.account.name.clone(), uids.len()));
        }
    }
    for (e, m) in ids.entries.iter().zip(matched) {
        if !m {
            out.unmatched
                .push((format!("{}@{}", e.user, e.host), e.uids.len()));
        }
    }
    out
}

/// Parses a `.fetchids` file.
pub fn parse_fetchids(text: &[u8]) -> FetchIds {
    let mut out = FetchIds::default();
    for raw in text.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some((user, host, uid)) => {
                match out.entries.iter_mut().find(|e| {
                    e.user.eq_ignore_ascii_case(user) && e.host.eq_ignore_ascii_case(host)
                }) {
                    Some(e) => {
                        if !e.uids.iter().any(|u| u == uid) {
                            e.uids.push(uid.to_string());
                        }
                    }
                    None => out.entries.push(FetchIdsEntry {
                        user: user.to_string(),
                        host: host.to_string(),
                        uids: vec![uid.to_string()],
                    }),
                }
            }
            None => out.skipped_lines += 1,
        }
    }
    out
}

/// `user@host uid` → (user, host, uid), following fetchmail's own reading.
fn parse_line(line: &str) -> Option<(&str, &str, &str)> {
    let line = line.trim_start_matches([' ', '\t']);
    let at = line.find('@')?;
    let space = at + line[at..].find(' ')?;
    let userhost = line[..space].trim_end_matches([' ', '\t']);
    let id = line[space..].trim_start_matches(' ');
    let id = id.split([' ', '\t']).next().unwrap_or("");
    let last_at = userhost.rfind('@')?;
    let (user, host) = (&userhost[..last_at], &userhost[last_at + 1..]);
    if id.is_empty() || host.is_empty() {
        return None;
    }
    Some((user, host, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fetchmail_lines() {
        let f = parse_fetchids(
            b"jsmith@pop.provider.net 000001a84f2c8e1b\n\
              jsmith@pop.provider.net <20260101.123@mail.example>\n\
              Lotus User@notes.example.com AAB@C@D\r\n\
              someone@gmail.com@pop.gmail.com GmailId18c2\n\
              garbage line without at\n\
              \n\
              JSMITH@POP.PROVIDER.NET 000001a84f2c8e1b\n",
        );
        assert_eq!(
            f.uids_for("jsmith", "pop.provider.net"),
            ["000001a84f2c8e1b", "<20260101.123@mail.example>"]
        );
        assert_eq!(f.uids_for("Lotus User", "notes.example.com"), ["AAB@C@D"]);
        assert_eq!(
            f.uids_for("someone@gmail.com", "pop.gmail.com"),
            ["GmailId18c2"]
        );
        assert!(f.uids_for("nobody", "pop.provider.net").is_empty());
        assert_eq!(f.skipped_lines, 1);
        assert_eq!(f.len(), 4);
    }
}
