//! LIST (RFC 3501 §6.3.8 with LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154,
//! LIST-STATUS RFC 5819, CHILDREN RFC 3348) and LSUB (§6.3.9).
//!
//! # Format
//! `LIST "" "*"` → `* LIST (\HasNoChildren \Sent) "." "Sent"` per match;
//! `LIST "" ""` → the hierarchy separator; `%` matches within one level, `*` any.

use std::collections::BTreeMap;

use crate::imapd::backend::MailboxInfo;
use crate::imapd::proto::{ListArgs, response};
use crate::imapd::session::{Reply, Session};

/// Does `name` match the LIST pattern (`*` = anything, `%` = anything but `.`)?
/// Dynamic programming, so hostile patterns cannot make it exponential.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // m[j] = pattern[..i] matches name[..j]
    let mut m = vec![false; n.len() + 1];
    m[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut any = false;
                for j in 0..=n.len() {
                    // Wildcard extends a previous match while characters are allowed.
                    if m[j] {
                        any = true;
                    }
                    if j > 0 && pc == '%' && n[j - 1] == '.' {
                        any = m[j];
                    }
                    next[j] = any;
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = m[j - 1] && n[j - 1] == c;
                }
            }
        }
        m = next;
    }
    m[n.len()]
}

/// INBOX matches case-insensitively, everything else exactly.
fn matches_name(pattern: &str, name: &str) -> bool {
    if name == "INBOX" {
        return pattern_matches(&pattern.to_ascii_uppercase(), name);
    }
    if let Some(rest) = name.strip_prefix("INBOX.")
        && pattern.len() >= 6
        && pattern[..6].eq_ignore_ascii_case("INBOX.")
    {
        return pattern_matches(&pattern[6..], rest);
    }
    pattern_matches(pattern, name)
}

/// A name LIST can show: a real mailbox or an implied parent of one.
struct Entry<'a> {
    info: Option<&'a MailboxInfo>,
    has_children: bool,
}

fn entries(list: &[MailboxInfo]) -> BTreeMap<String, Entry<'_>> {
    let mut m: BTreeMap<String, Entry<'_>> = BTreeMap::new();
    for mb in list {
        let mut parts: Vec<&str> = mb.name.split('.').collect();
        parts.pop();
        let mut prefix = String::new();
        for p in parts {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(p);
            m.entry(prefix.clone())
                .or_insert(Entry {
                    info: None,
                    has_children: true,
                })
                .has_children = true;
        }
        m.entry(mb.name.clone())
            .or_insert(Entry {
                info: None,
                has_children: false,
            })
            .info = Some(mb);
    }
    m
}

/// Whether `name` has a subscribed descendant that `matches` rejects (RFC 5258
/// RECURSIVEMATCH / CHILDINFO, RFC 3501 §6.3.9 LSUB `%`).
fn hidden_subscribed_child(
    subs: &std::collections::BTreeSet<&str>,
    name: &str,
    matches: impl Fn(&str) -> bool,
) -> bool {
    let prefix = format!("{name}.");
    subs.range::<str, _>((std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded))
        .take_while(|s| s.starts_with(&prefix))
        .any(|s| !matches(s))
}

impl Session {
    pub(crate) async fn op_list(&mut self, a: ListArgs) -> Reply {
        if a.patterns.len() == 1 && a.patterns[0].is_empty() {
            self.untagged("LIST (\\Noselect) \".\" \"\"");
            return Reply::ok("List completed");
        }
        let user = self.user();
        let list = match self.blocking(move |b| b.list(&user)).await {
            Ok(l) => l,
            Err(e) => return self.store_no(e),
        };
        let (real, kept): (Vec<MailboxInfo>, Vec<MailboxInfo>) =
            list.into_iter().partition(|m| m.exists);
        let mut all = entries(&real);
        // Subscribed names: the mailboxes' own and those kept without a mailbox.
        let subs: std::collections::BTreeSet<&str> = real
            .iter()
            .chain(kept.iter())
            .filter(|m| m.subscribed)
            .map(|m| m.name.as_str())
            .collect();
        let matches = |name: &str| {
            a.patterns
                .iter()
                .any(|p| matches_name(&format!("{}{p}", a.reference), name))
        };
        if a.subscribed {
            // RFC 5258 §3.1: subscribed names that do not exist are listed too.
            for k in &kept {
                all.entry(k.name.clone()).or_insert(Entry {
                    info: None,
                    has_children: false,
                });
            }
        }
        let mut status_for = Vec::new();
        for (name, e) in &all {
            if !matches(name) {
                continue;
            }
            let subscribed = subs.contains(name.as_str());
            let childinfo = a.subscribed
                && a.recursive_match
                && hidden_subscribed_child(&subs, name, matches);
            if a.subscribed && !subscribed && !childinfo {
                continue;
            }
            let special = e.info.and_then(|i| i.special_use.as_deref());
            if a.special_use_only && special.is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if e.info.is_none() {
                if e.has_children {
                    attrs.push("\\Noselect");
                }
                if a.extended || !e.has_children {
                    attrs.push("\\NonExistent");
                }
            }
            if e.info.is_some() || e.has_children {
                attrs.push(if e.has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some(s) = special {
                attrs.push(s);
            }
            if subscribed && (a.subscribed || a.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            let mut line = b"* LIST ".to_vec();
            response::flag_list(&mut line, &attrs);
            line.extend_from_slice(b" \".\" ");
            response::mailbox_as(&mut line, name, self.utf8);
            if childinfo {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
            if a.return_status.is_some() && e.info.is_some() {
                status_for.push(name.clone());
            }
        }
        if let Some(items) = a.return_status {
            for name in status_for {
                // A mailbox that vanished in between is simply left out (RFC 5819).
                let _ = self.status_line(name, &items).await;
            }
        }
        Reply::ok("List completed")
    }

    /// LSUB (RFC 3501 §6.3.9): the subscribed names matching, existing or not; an
    /// unsubscribed parent whose subscribed child `%` hides appears as `\Noselect`.
    pub(crate) async fn op_lsub(&mut self, reference: String, pattern: String) -> Reply {
        let user = self.user();
        let list = match self.blocking(move |b| b.list(&user)).await {
            Ok(l) => l,
            Err(e) => return self.store_no(e),
        };
        let subs: std::collections::BTreeSet<&str> = list
            .iter()
            .filter(|m| m.subscribed)
            .map(|m| m.name.as_str())
            .collect();
        let full = format!("{reference}{pattern}");
        let matches = |n: &str| matches_name(&full, n);
        // Every subscribed name and each of its parents, in name order.
        let mut names: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for s in &subs {
            names.insert(s);
            let mut end = s.len();
            while let Some(i) = s[..end].rfind('.') {
                names.insert(&s[..i]);
                end = i;
            }
        }
        for name in names {
            if !matches(name) {
                continue;
            }
            let attrs = if subs.contains(name) {
                ""
            } else if hidden_subscribed_child(&subs, name, matches) {
                "\\Noselect"
            } else {
                continue;
            };
            let mut line = format!("* LSUB ({attrs}) \".\" ").into_bytes();
            response::mailbox_as(&mut line, name, self.utf8);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        Reply::ok("Lsub completed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a.b.c"));
        assert!(pattern_matches("%", "abc"));
        assert!(!pattern_matches("%", "a.b"));
        assert!(pattern_matches("a.%", "a.b"));
        assert!(!pattern_matches("a.%", "a.b.c"));
        assert!(pattern_matches("a*c", "a.b.c"));
        assert!(pattern_matches("%.c", "b.c"));
        assert!(!pattern_matches("a", "ab"));
        assert!(pattern_matches("", ""));
        assert!(matches_name("inbox", "INBOX"));
        assert!(matches_name("Inbox.%", "INBOX.x"));
        assert!(!pattern_matches(&"*a".repeat(50), &"b".repeat(200)));
    }

    #[test]
    fn implied_parents() {
        let l = vec![
            MailboxInfo {
                name: "INBOX".into(),
                special_use: None,
                subscribed: true,
                exists: true,
            },
            MailboxInfo {
                name: "Werk.2025.Q1".into(),
                special_use: None,
                subscribed: true,
                exists: true,
            },
        ];
        let e = entries(&l);
        let names: Vec<&String> = e.keys().collect();
        assert_eq!(names, vec!["INBOX", "Werk", "Werk.2025", "Werk.2025.Q1"]);
        assert!(e["Werk"].info.is_none() && e["Werk"].has_children);
        assert!(!e["INBOX"].has_children);
    }
}
