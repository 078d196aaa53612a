//! URLAUTH commands (RFC 4467 §6): GENURLAUTH, URLFETCH, RESETKEY. No I/O.
//!
//! # Format
//! `GENURLAUTH "imap://joe@example.com/INBOX/;uid=20;urlauth=submit+fred" INTERNAL`,
//! `URLFETCH url *(SP url)`, `RESETKEY [mailbox *(SP mechanism)]`.
//!
//! # Security
//! Untrusted bytes bounded by the framer; at most [`MAX_URLS`] URLs per command.

use super::super::types::*;
use super::{Cursor, R};

/// URLs in one GENURLAUTH or URLFETCH.
pub const MAX_URLS: usize = 100;

impl Cursor<'_> {
    pub(super) fn urlauth(&mut self, name: &str) -> R<Command> {
        match name {
            "GENURLAUTH" => {
                let mut pairs = Vec::new();
                while self.eat(b' ') {
                    if pairs.len() >= MAX_URLS {
                        return Err("too many URLs".into());
                    }
                    let url = self.astring()?;
                    self.sp()?;
                    pairs.push((url, self.word()?));
                }
                if pairs.is_empty() {
                    return Err("GENURLAUTH needs a URL and a mechanism".into());
                }
                Ok(Command::GenUrlAuth(pairs))
            }
            "URLFETCH" => {
                let mut urls = Vec::new();
                while self.eat(b' ') {
                    if urls.len() >= MAX_URLS {
                        return Err("too many URLs".into());
                    }
                    urls.push(self.astring()?);
                }
                if urls.is_empty() {
                    return Err("URLFETCH needs a URL".into());
                }
                Ok(Command::UrlFetch(urls))
            }
            _ => {
                let mut mailbox = None;
                let mut mechanisms = Vec::new();
                if self.eat(b' ') {
                    mailbox = Some(self.mailbox()?);
                    while self.eat(b' ') {
                        mechanisms.push(self.word()?);
                    }
                }
                Ok(Command::ResetKey {
                    mailbox,
                    mechanisms,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_command;
    use super::*;

    #[test]
    fn rfc4467_examples() {
        let c = parse_command(
            b"a GENURLAUTH \"imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred\" INTERNAL",
        )
        .unwrap()
        .command;
        assert_eq!(
            c,
            Command::GenUrlAuth(vec![(
                "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred".into(),
                "INTERNAL".into()
            )])
        );
        let c = parse_command(b"b RESETKEY INBOX INTERNAL").unwrap().command;
        assert_eq!(
            c,
            Command::ResetKey {
                mailbox: Some("INBOX".into()),
                mechanisms: vec!["INTERNAL".into()]
            }
        );
        assert!(matches!(
            parse_command(b"c URLFETCH \"imap://a@b/INBOX/;UID=1\"").unwrap().command,
            Command::UrlFetch(u) if u.len() == 1
        ));
        assert!(parse_command(b"d GENURLAUTH \"x\"").is_err());
        assert!(parse_command(b"d URLFETCH").is_err());
    }
}
