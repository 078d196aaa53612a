//! `~/.netrc`: where fetchmail looks for a password the fetchmailrc does not give (by
//! poll name, then by `via` host, with a matching or absent `login`). Pure parsing and
//! lookup; [`load`](super::load) reads the file and applies it.
//!
//! # Format
//! Whitespace-separated tokens: `machine NAME`, `login NAME`, `password WORD`,
//! `account WORD`, `default`, and `macdef NAME` followed by macro lines up to a blank
//! line. A token may be double-quoted, with `\` escaping the next character.

use super::{Import, Warning};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetrcEntry {
    /// `None` for the `default` entry.
    pub machine: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut chars = line.chars().peekable();
        let mut line_tokens = Vec::new();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&c) = chars.peek() else { break };
            let mut t = String::new();
            if c == '"' {
                chars.next();
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => t.extend(chars.next()),
                        _ => t.push(d),
                    }
                }
            } else {
                while let Some(&d) = chars.peek() {
                    if d.is_whitespace() {
                        break;
                    }
                    chars.next();
                    if d == '\\' {
                        t.extend(chars.next());
                    } else {
                        t.push(d);
                    }
                }
            }
            line_tokens.push(t);
        }
        // `macdef NAME`: the macro body runs to the next blank line.
        if let Some(i) = line_tokens.iter().position(|t| t == "macdef") {
            out.extend(line_tokens.into_iter().take(i));
            for body in lines.by_ref() {
                if body.trim().is_empty() {
                    break;
                }
            }
            continue;
        }
        out.extend(line_tokens);
    }
    out
}

/// Parses a `.netrc`.
pub fn parse_netrc(text: &str) -> Vec<NetrcEntry> {
    let mut out: Vec<NetrcEntry> = Vec::new();
    let mut it = tokens(text).into_iter();
    while let Some(t) = it.next() {
        match t.as_str() {
            "machine" => out.push(NetrcEntry {
                machine: it.next(),
                ..NetrcEntry::default()
            }),
            "default" => out.push(NetrcEntry::default()),
            "login" | "password" | "account" => {
                let v = it.next();
                if let Some(e) = out.last_mut() {
                    match t.as_str() {
                        "login" => e.login = v,
                        "password" => e.password = v,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// fetchmail's `search_netrc`: the password of `host` for `login` (an entry without a
/// login matches any). The `default` entry is not used, as in fetchmail.
pub fn lookup<'a>(entries: &'a [NetrcEntry], host: &str, login: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|e| {
            e.machine
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host))
                && e.login.as_deref().is_none_or(|l| l == login)
                && e.password.is_some()
        })
        .and_then(|e| e.password.as_deref())
}

/// Fills in the passwords the fetchmailrc (`rc`) left out from `entries` (read from
/// `netrc`), looking up the poll name first and then the `via` host. Returns how many
/// were found; each is noted in the account's warnings (the secret is not printed), and
/// the account's `source` becomes the netrc, whose permissions now guard it.
pub fn apply(import: &mut Import, entries: &[NetrcEntry], netrc: &Path, rc: &Path) -> usize {
    let mut n = 0;
    for ia in import.accounts.iter_mut() {
        let pollname = ia.pollname.clone();
        let a = &mut ia.account;
        if a.password.is_some() || a.password_file.is_some() || a.password_command.is_some() {
            continue;
        }
        let found = lookup(entries, &pollname, &ia.uid_user)
            .map(|p| (p, pollname.as_str()))
            .or_else(|| {
                lookup(entries, &ia.uid_host, &ia.uid_user).map(|p| (p, ia.uid_host.as_str()))
            });
        if let Some((pw, machine)) = found {
            a.password = Some(pw.to_string());
            a.source = Some(netrc.to_path_buf());
            // The earlier "no password" note no longer holds.
            ia.warnings
                .retain(|w| !(w.keyword == "password" && w.message.starts_with("no password")));
            ia.warnings.push(Warning {
                file: rc.to_path_buf(),
                line: ia.line,
                keyword: "password".into(),
                message: format!(
                    "the password for {}@{machine} comes from {} (as fetchmail would find it)",
                    ia.uid_user,
                    netrc.display()
                ),
            });
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_looks_up_like_fetchmail() {
        let e = parse_netrc(
            "machine pop.example.net login bob password s3cret\n\
             machine imap.example.net\n  login alice\n  password \"two words\"\n\
             macdef init\ncd /pub\nbinary\n\n\
             machine mx.example.org password nologin\n\
             default login anonymous password me@example.org\n",
        );
        assert_eq!(lookup(&e, "pop.example.net", "bob"), Some("s3cret"));
        assert_eq!(lookup(&e, "POP.example.net", "bob"), Some("s3cret"));
        assert_eq!(lookup(&e, "pop.example.net", "carol"), None);
        assert_eq!(lookup(&e, "imap.example.net", "alice"), Some("two words"));
        assert_eq!(lookup(&e, "mx.example.org", "anyone"), Some("nologin"));
        assert_eq!(
            lookup(&e, "elsewhere", "anonymous"),
            None,
            "default is not used"
        );
    }
}
