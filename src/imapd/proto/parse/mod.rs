//! The command grammar (RFC 3501 §9 and the extensions zolder advertises): turns one
//! complete frame from [`super::frame::Framer`] into a [`Request`], or a `BAD` reason.
//!
//! Hand-written recursive descent over the frame's bytes; literals appear inline as
//! `{n}\r\n` followed by n bytes, exactly as they came from the client.
//!
//! # Security
//! Input is untrusted; frames are already bounded by the framer. Nesting (search key
//! parentheses, NOT chains) is bounded by [`MAX_DEPTH`] so a hostile command cannot
//! exhaust the stack.
//!
//! This file owns the entry points and the lexical primitives ([`Cursor`]: atoms,
//! strings, literals, mailbox names, flags); the command dispatch and per-command
//! arguments are in [`command`], FETCH attributes in [`fetch`], search programs
//! (SEARCH, SORT, THREAD) in [`search`].

mod append;
mod command;
mod fetch;
mod search;

use super::frame::literal_marker;
use super::seq::SeqSet;
use super::types::*;

/// Deepest nesting of search-key parentheses/NOT/OR accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a frame is not a command; answered `BAD` (tagged when the tag was read).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub reason: String,
}

/// Parses one complete command (mailbox names in modified UTF-7).
pub fn parse_command(frame: &[u8]) -> Result<Request, ParseError> {
    parse_command_opts(frame, false)
}

/// Parses one complete command; with `utf8` (after `ENABLE UTF8=ACCEPT`, RFC 6855
/// §3) mailbox names are plain UTF-8 and not decoded from modified UTF-7.
pub fn parse_command_opts(frame: &[u8], utf8: bool) -> Result<Request, ParseError> {
    let mut p = Cursor {
        s: frame,
        i: 0,
        utf8,
    };
    let tag = p.tag().map_err(|reason| ParseError { tag: None, reason })?;
    let command = p.command().map_err(|reason| ParseError {
        tag: Some(tag.clone()),
        reason,
    })?;
    Ok(Request { tag, command })
}

/// `tag = 1*<any ASTRING-CHAR except "+">`
pub fn is_tag_char(b: u8) -> bool {
    is_atom_char(b) && b != b'+' || b == b']'
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20
        && b < 0x7f
        && !matches!(
            b,
            b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\' | b']'
        )
}

type R<T> = Result<T, String>;

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    /// UTF8=ACCEPT is enabled: names are UTF-8 on the wire.
    utf8: bool,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, b: u8) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected '{}'", b as char))
        }
    }
    fn sp(&mut self) -> R<()> {
        self.expect(b' ')
    }
    fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err("unexpected text after command".into())
        }
    }

    fn tag(&mut self) -> R<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tag_char) {
            self.i += 1;
        }
        if self.i == start {
            return Err("missing tag".into());
        }
        let t = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.sp().map_err(|_| "missing command".to_string())?;
        Ok(t)
    }

    /// Bytes while `ok` holds.
    fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(&ok) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn atom(&mut self) -> R<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err("expected an atom".into());
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    /// A keyword compared case-insensitively (upper-cased).
    fn word(&mut self) -> R<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    fn number(&mut self) -> R<u32> {
        let d = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "expected a number".to_string())
    }

    fn number64(&mut self) -> R<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "expected a number".to_string())
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'\\' | b'"')) => {
                            out.push(c);
                            self.i += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> R<Vec<u8>> {
        // `{n}` or `{n+}` then CRLF then n bytes.
        let close = self.s[self.i..]
            .iter()
            .position(|&b| b == b'}')
            .ok_or("bad literal")?;
        let (n, _) = literal_marker(&self.s[self.i..self.i + close + 1]).ok_or("bad literal")?;
        self.i += close + 1;
        if !self.eat(b'\r') {
            // Bare LF after a literal marker is tolerated.
        }
        self.expect(b'\n')?;
        let n = n as usize;
        if self.s.len() < self.i + n {
            return Err("literal shorter than announced".into());
        }
        let v = self.s[self.i..self.i + n].to_vec();
        self.i += n;
        Ok(v)
    }

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err("expected a string".into()),
        }
    }

    fn astring_bytes(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let a = self.take_while(|b| is_atom_char(b) || b == b']');
                if a.is_empty() {
                    return Err("expected an atom or string".into());
                }
                Ok(a.to_vec())
            }
        }
    }

    fn astring(&mut self) -> R<String> {
        let b = self.astring_bytes()?;
        String::from_utf8(b).map_err(|_| "invalid UTF-8".to_string())
    }

    fn nstring(&mut self) -> R<Option<String>> {
        if self.peek_word_is("NIL") {
            self.i += 3;
            return Ok(None);
        }
        let b = self.string()?;
        Ok(Some(String::from_utf8_lossy(&b).into_owned()))
    }

    fn peek_word_is(&self, w: &str) -> bool {
        let end = self.i + w.len();
        self.s.len() >= end
            && self.s[self.i..end].eq_ignore_ascii_case(w.as_bytes())
            && self.s.get(end).is_none_or(|&b| !is_atom_char(b))
    }

    /// A mailbox name (modified UTF-7 on the wire, UTF-8 here); `INBOX` in any case
    /// means INBOX.
    fn mailbox(&mut self) -> R<String> {
        let m = self.astring()?;
        let m = if self.utf8 {
            m
        } else {
            super::utf7::decode(&m).unwrap_or(m)
        };
        Ok(normalise_inbox(m))
    }

    /// `list-mailbox`: like astring but `%` and `*` allowed unquoted.
    fn list_mailbox(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => {
                let b = self.string()?;
                String::from_utf8(b).map_err(|_| "invalid UTF-8".to_string())
            }
            _ => {
                let a = self.take_while(|b| is_atom_char(b) || matches!(b, b'%' | b'*' | b']'));
                if a.is_empty() {
                    return Err("expected a mailbox pattern".into());
                }
                Ok(String::from_utf8_lossy(a).into_owned())
            }
        }
        .map(|p| {
            if self.utf8 {
                p
            } else {
                super::utf7::decode(&p).unwrap_or(p)
            }
        })
    }

    fn seq_set(&mut self) -> R<SeqSet> {
        if self.eat(b'$') {
            // SEARCHRES (RFC 5182): the saved result, only ever alone.
            return Ok(SeqSet::saved());
        }
        let s = self.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b',' | b'*'));
        std::str::from_utf8(s)
            .ok()
            .and_then(SeqSet::parse)
            .ok_or_else(|| "bad sequence set".to_string())
    }

    /// `flag-list = "(" [flag *(SP flag)] ")"`
    fn flag_list(&mut self) -> R<Vec<String>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        while !self.eat(b')') {
            if !out.is_empty() {
                self.sp()?;
            }
            out.push(self.flag()?);
        }
        Ok(out)
    }

    /// `\Seen`, `$Label`, `keyword`; system flags are returned in canonical case.
    fn flag(&mut self) -> R<String> {
        let bs = self.eat(b'\\');
        let a = if bs && self.eat(b'*') {
            "*".to_string()
        } else {
            self.atom()?
        };
        if !bs {
            return Ok(a);
        }
        let canon = match a.to_ascii_lowercase().as_str() {
            "seen" => "\\Seen",
            "answered" => "\\Answered",
            "flagged" => "\\Flagged",
            "deleted" => "\\Deleted",
            "draft" => "\\Draft",
            "recent" => "\\Recent",
            _ => return Ok(format!("\\{a}")),
        };
        Ok(canon.to_string())
    }
}

/// `inbox` in any case is INBOX (RFC 3501 §5.1); other names are case-sensitive.
pub fn normalise_inbox(m: String) -> String {
    if m.eq_ignore_ascii_case("INBOX") {
        return "INBOX".into();
    }
    if m.len() > 6 && m[..6].eq_ignore_ascii_case("INBOX.") && !m.starts_with("INBOX.") {
        return format!("INBOX.{}", &m[6..]);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Command {
        parse_command(s.as_bytes())
            .unwrap_or_else(|e| panic!("{s}: {e:?}"))
            .command
    }

    #[test]
    fn simple_commands() {
        assert_eq!(cmd("a1 noop"), Command::Noop);
        assert_eq!(
            parse_command(b"A.b-1 CAPABILITY").unwrap().tag,
            "A.b-1".to_string()
        );
        assert_eq!(
            cmd("a login \"jo\\\"e\" {3}\r\np w"),
            Command::Login {
                user: "jo\"e".into(),
                password: "p w".into()
            }
        );
        assert_eq!(
            cmd("a select inbox"),
            Command::Select {
                mailbox: "INBOX".into(),
                read_only: false,
                condstore: false,
                qresync: None
            }
        );
        assert_eq!(
            cmd("a EXAMINE \"Sent\" (CONDSTORE)"),
            Command::Select {
                mailbox: "Sent".into(),
                read_only: true,
                condstore: true,
                qresync: None
            }
        );
    }

    #[test]
    fn bad_commands_carry_the_tag() {
        let e = parse_command(b"x17 FROB").unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("x17"));
        let e = parse_command(b"x18 FETCH 1:* (FLAGS").unwrap_err();
        assert_eq!(e.tag.as_deref(), Some("x18"));
        assert!(parse_command(b"").unwrap_err().tag.is_none());
        assert!(parse_command(b"a NOOP extra").is_err());
        assert!(parse_command(b"a FETCH 0 FLAGS").is_err());
    }

    #[test]
    fn fetch_items() {
        let Command::Fetch {
            uid, set, attrs, ..
        } = cmd(
            "a UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.512> BODY[1.2.MIME] BODY[] RFC822.SIZE)",
        )
        else {
            panic!()
        };
        assert!(uid);
        assert!(set.has_star());
        assert_eq!(attrs.len(), 6);
        assert_eq!(
            attrs[2],
            FetchAttr::Section {
                section: Section {
                    parts: vec![],
                    text: Some(SectionText::HeaderFields(vec![
                        "From".into(),
                        "Subject".into()
                    ]))
                },
                partial: Some((0, 512)),
                peek: true,
                alias: None
            }
        );
        assert_eq!(
            attrs[3],
            FetchAttr::Section {
                section: Section {
                    parts: vec![1, 2],
                    text: Some(SectionText::Mime)
                },
                partial: None,
                peek: false,
                alias: None
            }
        );
        let Command::Fetch { attrs, .. } = cmd("a FETCH 1 FAST") else {
            panic!()
        };
        assert_eq!(attrs.len(), 3);
        let Command::Fetch {
            attrs,
            changed_since,
            ..
        } = cmd("a FETCH 1:5 (FLAGS) (CHANGEDSINCE 12)")
        else {
            panic!()
        };
        assert_eq!(changed_since, Some(12));
        assert!(attrs.contains(&FetchAttr::ModSeq));
        assert!(parse_command(b"a FETCH 1 BODY[MIME]").is_err());
        // RFC 3516: BINARY sections are part paths only; BINARY.SIZE takes no partial.
        let Command::Fetch { attrs, .. } =
            cmd("a FETCH 1 (BINARY.PEEK[1.2]<0.10> BINARY[] BINARY.SIZE[3])")
        else {
            panic!()
        };
        assert_eq!(
            attrs,
            vec![
                FetchAttr::Binary(BinarySection {
                    parts: vec![1, 2],
                    partial: Some((0, 10)),
                    peek: true,
                    size: false
                }),
                FetchAttr::Binary(BinarySection {
                    parts: vec![],
                    partial: None,
                    peek: false,
                    size: false
                }),
                FetchAttr::Binary(BinarySection {
                    parts: vec![3],
                    partial: None,
                    peek: true,
                    size: true
                }),
            ]
        );
        assert!(parse_command(b"a FETCH 1 BINARY[1.TEXT]").is_err());
        assert!(parse_command(b"a FETCH 1 BINARY.SIZE[1]<0.1>").is_err());
    }

    #[test]
    fn store_and_append() {
        assert_eq!(
            cmd("a UID STORE 4:6 +FLAGS.SILENT (\\seen $Junk)"),
            Command::Store {
                uid: true,
                set: SeqSet::parse("4:6").unwrap(),
                mode: StoreMode::Add,
                silent: true,
                flags: vec!["\\Seen".into(), "$Junk".into()],
                unchanged_since: None
            }
        );
        assert!(matches!(
            cmd("a STORE 1 FLAGS \\Deleted"),
            Command::Store {
                mode: StoreMode::Replace,
                ..
            }
        ));
        let Command::Append {
            mailbox,
            flags,
            date,
            message,
            ..
        } = cmd("a APPEND Sent (\\Seen) \"05-Mar-2024 10:00:00 +0100\" {5+}\r\nhi\r\n!")
        else {
            panic!()
        };
        assert_eq!(mailbox, "Sent");
        assert_eq!(flags, vec!["\\Seen".to_string()]);
        assert_eq!(date, Some(1709629200));
        assert_eq!(message, b"hi\r\n!");
    }

    #[test]
    fn search_keys() {
        let Command::Search { key, .. } = cmd(
            "a SEARCH CHARSET UTF-8 OR FROM alice (SUBJECT \"x y\" UNSEEN) NOT 1:3 SINCE 1-Feb-2024",
        ) else {
            panic!()
        };
        let SearchKey::And(keys) = key else { panic!() };
        assert_eq!(keys.len(), 3);
        assert!(matches!(keys[0], SearchKey::Or(..)));
        assert_eq!(
            keys[1],
            SearchKey::Not(Box::new(SearchKey::Seq(SeqSet::parse("1:3").unwrap())))
        );
        assert_eq!(keys[2], SearchKey::Since(1706745600));
        let Command::Search { uid, ret, .. } = cmd("a UID SEARCH RETURN (MIN COUNT) UNDELETED")
        else {
            panic!()
        };
        assert!(uid);
        assert_eq!(ret, Some(vec![SearchReturn::Min, SearchReturn::Count]));
        assert!(parse_command(b"a SEARCH CHARSET KOI8-R ALL").is_err());
        let deep = format!("a SEARCH {}ALL{}", "(".repeat(40), ")".repeat(40));
        assert!(parse_command(deep.as_bytes()).is_err());
    }

    #[test]
    fn extension_commands() {
        let Command::Select { qresync, .. } =
            cmd("a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))")
        else {
            panic!()
        };
        let q = qresync.unwrap();
        assert_eq!((q.uidvalidity, q.modseq), (67890007, 90060115194045000));
        assert_eq!(q.known_uids, SeqSet::parse("41:211,214:541"));
        assert!(q.seq_match.is_none());
        let Command::Select { qresync, .. } =
            cmd("a EXAMINE INBOX (QRESYNC (1 2 1:9 (1,5 3,20)) CONDSTORE)")
        else {
            panic!()
        };
        let q = qresync.unwrap();
        assert_eq!(
            q.seq_match,
            Some((
                SeqSet::parse("1,5").unwrap(),
                SeqSet::parse("3,20").unwrap()
            ))
        );
        let Command::Select { qresync, .. } = cmd("a SELECT INBOX (QRESYNC (1 2 (1 3)))") else {
            panic!()
        };
        assert!(qresync.unwrap().known_uids.is_none());
        assert!(parse_command(b"a SELECT INBOX (QRESYNC (0 2))").is_err());
        assert!(parse_command(b"a SELECT INBOX (QRESYNC (1))").is_err());

        let Command::Fetch { vanished, .. } =
            cmd("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)")
        else {
            panic!()
        };
        assert!(vanished);
        assert!(parse_command(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)").is_err());
        assert!(parse_command(b"a UID FETCH 1:* (FLAGS) (VANISHED)").is_err());

        assert_eq!(
            cmd("a UID SORT (REVERSE DATE subject) UTF-8 UNDELETED"),
            Command::Sort {
                uid: true,
                criteria: vec![
                    SortCriterion {
                        reverse: true,
                        key: SortKey::Date
                    },
                    SortCriterion {
                        reverse: false,
                        key: SortKey::Subject
                    }
                ],
                key: SearchKey::NotFlag("\\Deleted".into()),
                ret: None,
            }
        );
        assert!(matches!(
            cmd("a SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL"),
            Command::Sort { ret: Some(r), .. } if r == vec![SearchReturn::Min, SearchReturn::Count]
        ));
        assert!(parse_command(b"a SORT RETURN (BOGUS) (DATE) UTF-8 ALL").is_err());
        assert!(parse_command(b"a SORT (REVERSE) UTF-8 ALL").is_err());
        assert!(parse_command(b"a SORT (DATE) ALL").is_err());
        assert!(parse_command(b"a SORT (DATE) KOI8-R ALL").is_err());
        assert!(parse_command(b"a SORT () UTF-8 ALL").is_err());
        assert_eq!(
            cmd("a THREAD REFERENCES US-ASCII ALL"),
            Command::Thread {
                uid: false,
                algorithm: ThreadAlgorithm::References,
                key: SearchKey::All
            }
        );
        assert!(parse_command(b"a THREAD REFS UTF-8 ALL").is_err());

        assert_eq!(
            cmd("a GETQUOTAROOT inbox"),
            Command::GetQuotaRoot("INBOX".into())
        );
        assert_eq!(cmd("a GETQUOTA \"\""), Command::GetQuota(String::new()));
        assert_eq!(
            cmd("a SETQUOTA \"\" (STORAGE 512)"),
            Command::SetQuota(String::new())
        );
        assert_eq!(
            cmd("a COMPRESS deflate"),
            Command::Compress("DEFLATE".into())
        );

        let Command::Append { message, utf8, .. } = cmd("a APPEND INBOX UTF8 (~{4+}\r\nhi!!)")
        else {
            panic!()
        };
        assert!(utf8);
        assert_eq!(message, b"hi!!");
    }

    #[test]
    fn utf8_accept_changes_names_and_charsets() {
        let utf8 = |s: &str| parse_command_opts(s.as_bytes(), true).map(|r| r.command);
        // Modified UTF-7 is decoded only when UTF8=ACCEPT is off.
        assert_eq!(cmd("a DELETE \"&AOk-t\""), Command::Delete("ét".into()));
        assert_eq!(
            utf8("a DELETE \"&AOk-t\"").unwrap(),
            Command::Delete("&AOk-t".into())
        );
        assert_eq!(
            utf8("a DELETE \"Één\"").unwrap(),
            Command::Delete("Één".into())
        );
        assert!(utf8("a SEARCH CHARSET UTF-8 ALL").is_err());
        assert!(utf8("a SORT (DATE) US-ASCII ALL").is_err());
        assert!(utf8("a SORT (DATE) UTF-8 ALL").is_ok());
    }

    #[test]
    fn list_forms() {
        let Command::List(a) = cmd("a LIST \"\" %") else {
            panic!()
        };
        assert_eq!(a.patterns, vec!["%".to_string()]);
        assert!(!a.extended);
        let Command::List(a) = cmd(
            "a LIST (SUBSCRIBED) \"\" (INBOX* \"Sent\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))",
        ) else {
            panic!()
        };
        assert!(a.subscribed && a.return_children);
        assert_eq!(a.patterns.len(), 2);
        assert_eq!(
            a.return_status,
            Some(vec![StatusItem::Messages, StatusItem::Unseen])
        );
    }

    #[test]
    fn misc() {
        assert_eq!(
            cmd("a ID (\"name\" \"Thunderbird\" \"version\" NIL)"),
            Command::Id(vec![
                ("name".into(), Some("Thunderbird".into())),
                ("version".into(), None)
            ])
        );
        assert_eq!(cmd("a ID NIL"), Command::Id(vec![]));
        assert_eq!(
            cmd("a AUTHENTICATE PLAIN AGpvAHB3"),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some("AGpvAHB3".into())
            }
        );
        assert_eq!(
            cmd("a ENABLE condstore qresync"),
            Command::Enable(vec!["CONDSTORE".into(), "QRESYNC".into()])
        );
        assert_eq!(
            cmd("a CREATE Archief (USE (\\Archive))"),
            Command::Create {
                mailbox: "Archief".into(),
                special_use: vec!["\\Archive".into()]
            }
        );
        assert_eq!(
            cmd("a UID EXPUNGE 3:5"),
            Command::Expunge {
                uids: SeqSet::parse("3:5")
            }
        );
        assert_eq!(
            cmd("a rename inbox.a INBOX.b"),
            Command::Rename {
                from: "INBOX.a".into(),
                to: "INBOX.b".into()
            }
        );
    }
}
