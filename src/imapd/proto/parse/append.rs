//! APPEND arguments: RFC 3501 §6.3.11, MULTIAPPEND (RFC 3502: several messages in
//! one command), CATENATE (RFC 4469: a message built from `TEXT` literals and `URL`s
//! of stored messages), BINARY's `~{n}` literal8 (RFC 3516 §4.4) and RFC 6855's
//! `UTF8 (~{n})`. No I/O.
//!
//! # Format
//! `APPEND box [(flags)] ["date"] {n}` `*( SP [(flags)] ["date"] {n})` — each message
//! is `{n}`, `~{n}`, `UTF8 (~{n})` or `CATENATE (TEXT {n} URL "/INBOX;..." ...)`.
//!
//! # Security
//! The framer bounds every literal and the command's total; this file bounds the
//! number of messages ([`MAX_MESSAGES`]) and of CATENATE parts ([`MAX_PARTS`]).

use super::super::date::parse_date_time;
use super::super::types::*;
use super::{Cursor, R};

/// Messages in one MULTIAPPEND command.
pub const MAX_MESSAGES: usize = 1000;
/// Parts of one CATENATE message.
pub const MAX_PARTS: usize = 256;

impl Cursor<'_> {
    /// After `APPEND`: one plain message becomes [`Command::Append`] (the common,
    /// single-message path), anything else [`Command::AppendMany`].
    pub(super) fn append(&mut self) -> R<Command> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        let mut utf8_single = false;
        let mut catenate = false;
        while !self.at_end() {
            if messages.len() >= MAX_MESSAGES {
                return Err("too many messages in one APPEND".into());
            }
            self.sp()?;
            let mut flags = Vec::new();
            let mut date = None;
            if self.peek() == Some(b'(') {
                flags = self.flag_list()?;
                self.sp()?;
            }
            if self.peek() == Some(b'"') {
                let d = self.quoted()?;
                date = Some(parse_date_time(&String::from_utf8_lossy(&d)).ok_or("bad date-time")?);
                self.sp()?;
            }
            let parts = if self.peek_word_is("UTF8") {
                // RFC 6855 §4: `UTF8 (~{n}\r\n...)`.
                self.i += 4;
                self.sp()?;
                self.expect(b'(')?;
                self.expect(b'~')?;
                let m = self.literal()?;
                self.expect(b')')?;
                utf8_single = true;
                vec![AppendPart::Text(m)]
            } else if self.peek_word_is("CATENATE") {
                self.i += 8;
                self.sp()?;
                catenate = true;
                self.catenate_parts()?
            } else {
                vec![AppendPart::Text(self.literal8()?)]
            };
            messages.push(AppendMsg { flags, date, parts });
        }
        if messages.is_empty() {
            return Err("APPEND needs a message".into());
        }
        if messages.len() == 1 && !catenate {
            let m = messages.pop().expect("one message");
            let Some(AppendPart::Text(message)) = m.parts.into_iter().next() else {
                return Err("APPEND needs a message".into());
            };
            return Ok(Command::Append {
                mailbox,
                flags: m.flags,
                date: m.date,
                message,
                utf8: utf8_single,
            });
        }
        Ok(Command::AppendMany { mailbox, messages })
    }

    /// `{n}` or `~{n}` (literal8, RFC 3516 §4.4).
    fn literal8(&mut self) -> R<Vec<u8>> {
        self.eat(b'~');
        self.literal()
    }

    /// `"(" cat-part *(SP cat-part) ")"`, cat-part = `TEXT literal8` | `URL astring`.
    fn catenate_parts(&mut self) -> R<Vec<AppendPart>> {
        self.expect(b'(')?;
        let mut parts = Vec::new();
        loop {
            if parts.len() >= MAX_PARTS {
                return Err("too many CATENATE parts".into());
            }
            match self.word()?.as_str() {
                "TEXT" => {
                    self.sp()?;
                    parts.push(AppendPart::Text(self.literal8()?));
                }
                "URL" => {
                    self.sp()?;
                    parts.push(AppendPart::Url(self.astring()?));
                }
                o => return Err(format!("unknown CATENATE part {o}")),
            }
            if self.eat(b')') {
                break;
            }
            self.sp()?;
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_command;
    use super::*;

    fn cmd(s: &[u8]) -> Command {
        parse_command(s).expect("parses").command
    }

    #[test]
    fn single_plain_and_binary() {
        assert_eq!(
            cmd(b"a APPEND INBOX (\\Seen) ~{3}\r\na\0b"),
            Command::Append {
                mailbox: "INBOX".into(),
                flags: vec!["\\Seen".into()],
                date: None,
                message: b"a\0b".to_vec(),
                utf8: false,
            }
        );
    }

    #[test]
    fn multiappend() {
        // RFC 3502 §6's example shape: two messages, the second with flags.
        let c = cmd(b"A003 APPEND saved-messages (\\Seen) {3}\r\none (\\Draft) {3+}\r\ntwo");
        let Command::AppendMany { mailbox, messages } = c else {
            panic!("not AppendMany: {c:?}");
        };
        assert_eq!(mailbox, "saved-messages");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].flags, vec!["\\Draft".to_string()]);
        assert_eq!(messages[1].parts, vec![AppendPart::Text(b"two".to_vec())]);
    }

    #[test]
    fn catenate() {
        // RFC 4469 §5's example, shortened.
        let c = cmd(
            b"A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER\" TEXT {4}\r\n\r\n\r\n URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME\")",
        );
        let Command::AppendMany { messages, .. } = c else {
            panic!("not AppendMany");
        };
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].parts.len(), 3);
        assert_eq!(messages[0].parts[1], AppendPart::Text(b"\r\n\r\n".to_vec()));
        assert!(parse_command(b"a APPEND x CATENATE ()").is_err());
        assert!(parse_command(b"a APPEND x CATENATE (FOO 1)").is_err());
        assert!(parse_command(b"a APPEND x").is_err());
    }
}
