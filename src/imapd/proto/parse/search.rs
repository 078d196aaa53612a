//! Search programs: SEARCH (RFC 3501 §6.4.4, ESEARCH return options), SORT and THREAD
//! (RFC 5256), and the recursive search-key grammar they share. Reads one frame through
//! [`super::Cursor`]; no I/O, no session state, no evaluation (the session evaluates
//! the resulting [`SearchKey`] against the spool).
//!
//! # Security
//! Input is untrusted client bytes. Key nesting (parentheses, NOT, OR) is bounded by
//! [`super::MAX_DEPTH`] so a hostile command cannot exhaust the stack.

use super::super::date::parse_date;
use super::super::types::*;
use super::{Cursor, MAX_DEPTH, R};

impl Cursor<'_> {
    /// `SP charset 1*(SP search-key)` as SORT and THREAD take it (RFC 5256).
    pub(super) fn charset_and_keys(&mut self) -> R<SearchKey> {
        self.sp()?;
        let cs = self.astring()?.to_ascii_uppercase();
        if cs != "UTF-8" && (cs != "US-ASCII" || self.utf8) {
            // RFC 6855 errata 4029: only UTF-8 once UTF8=ACCEPT is enabled.
            return Err("[BADCHARSET (UTF-8 US-ASCII)] charset not supported".into());
        }
        let mut keys = Vec::new();
        while self.eat(b' ') {
            keys.push(self.search_key(0)?);
        }
        Ok(match keys.len() {
            0 => return Err("search criteria expected".into()),
            1 => keys.pop().unwrap_or(SearchKey::All),
            _ => SearchKey::And(keys),
        })
    }

    /// `SORT (criteria) charset keys` (RFC 5256 §3).
    pub(super) fn sort(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let mut ret = None;
        if self.peek_word_is("RETURN") {
            self.i += 6;
            self.sp()?;
            let r = self.return_options()?;
            if r.contains(&SearchReturn::Save) {
                return Err("SORT RETURN (SAVE) is not supported".into());
            }
            ret = Some(r);
            self.sp()?;
        }
        self.expect(b'(')?;
        let mut criteria = Vec::new();
        let mut reverse = false;
        loop {
            let w = self.word()?;
            let key = match w.as_str() {
                "REVERSE" => {
                    if reverse {
                        return Err("REVERSE twice".into());
                    }
                    reverse = true;
                    self.sp()?;
                    continue;
                }
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
                o => return Err(format!("unknown sort criterion {o}")),
            };
            criteria.push(SortCriterion { reverse, key });
            reverse = false;
            if self.eat(b')') {
                break;
            }
            self.sp()?;
        }
        let key = self.charset_and_keys()?;
        Ok(Command::Sort {
            uid,
            criteria,
            key,
            ret,
        })
    }

    /// `THREAD algorithm charset keys` (RFC 5256 §4).
    pub(super) fn thread(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let algorithm = match self.word()?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            o => return Err(format!("unknown threading algorithm {o}")),
        };
        let key = self.charset_and_keys()?;
        Ok(Command::Thread {
            uid,
            algorithm,
            key,
        })
    }

    pub(super) fn search(&mut self, uid: bool) -> R<Command> {
        let mut ret = None;
        let mut keys = Vec::new();
        while self.eat(b' ') {
            if keys.is_empty() && ret.is_none() && self.peek_word_is("RETURN") {
                self.i += 6;
                self.sp()?;
                ret = Some(self.return_options()?);
                continue;
            }
            if keys.is_empty() && self.peek_word_is("CHARSET") {
                if self.utf8 {
                    // RFC 6855 §3: no CHARSET once UTF8=ACCEPT is enabled.
                    return Err("CHARSET not allowed with UTF8=ACCEPT".into());
                }
                self.i += 7;
                self.sp()?;
                let cs = self.astring()?.to_ascii_uppercase();
                if cs != "UTF-8" && cs != "US-ASCII" {
                    return Err("[BADCHARSET (UTF-8 US-ASCII)] charset not supported".into());
                }
                continue;
            }
            keys.push(self.search_key(0)?);
        }
        if keys.is_empty() {
            return Err("SEARCH needs a criterion".into());
        }
        let key = if keys.len() == 1 {
            keys.pop().unwrap_or(SearchKey::All)
        } else {
            SearchKey::And(keys)
        };
        Ok(Command::Search { uid, ret, key })
    }

    /// `(MIN MAX ALL COUNT)` after RETURN (RFC 4731, RFC 5267); `()` means ALL.
    fn return_options(&mut self) -> R<Vec<SearchReturn>> {
        self.expect(b'(')?;
        let mut r = Vec::new();
        while !self.eat(b')') {
            if r.len() > 8 {
                return Err("too many RETURN options".into());
            }
            self.eat(b' ');
            r.push(match self.word()?.as_str() {
                "MIN" => SearchReturn::Min,
                "MAX" => SearchReturn::Max,
                "ALL" => SearchReturn::All,
                "COUNT" => SearchReturn::Count,
                "SAVE" => SearchReturn::Save,
                o => return Err(format!("unknown RETURN option {o}")),
            });
        }
        if r.is_empty() {
            r.push(SearchReturn::All);
        }
        Ok(r)
    }

    pub(super) fn search_string(&mut self) -> R<String> {
        self.sp()?;
        let b = self.astring_bytes()?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    pub(super) fn search_date(&mut self) -> R<i64> {
        self.sp()?;
        let b = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-')
                .to_vec()
        };
        parse_date(&String::from_utf8_lossy(&b)).ok_or_else(|| "bad date".to_string())
    }

    pub(super) fn search_key(&mut self, depth: usize) -> R<SearchKey> {
        if depth > MAX_DEPTH {
            return Err("search criteria nested too deeply".into());
        }
        if self.eat(b'(') {
            let mut keys = vec![self.search_key(depth + 1)?];
            while self.eat(b' ') {
                keys.push(self.search_key(depth + 1)?);
            }
            self.expect(b')')?;
            return Ok(if keys.len() == 1 {
                keys.pop().unwrap_or(SearchKey::All)
            } else {
                SearchKey::And(keys)
            });
        }
        if self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b == b'*' || b == b'$')
        {
            return Ok(SearchKey::Seq(self.seq_set()?));
        }
        let w = self.word()?;
        let flag = |f: &str| Ok(SearchKey::Flag(f.to_string()));
        let not_flag = |f: &str| Ok(SearchKey::NotFlag(f.to_string()));
        match w.as_str() {
            "ALL" => Ok(SearchKey::All),
            "ANSWERED" => flag("\\Answered"),
            "DELETED" => flag("\\Deleted"),
            "DRAFT" => flag("\\Draft"),
            "FLAGGED" => flag("\\Flagged"),
            "SEEN" => flag("\\Seen"),
            "UNANSWERED" => not_flag("\\Answered"),
            "UNDELETED" => not_flag("\\Deleted"),
            "UNDRAFT" => not_flag("\\Draft"),
            "UNFLAGGED" => not_flag("\\Flagged"),
            "UNSEEN" => not_flag("\\Seen"),
            "KEYWORD" => {
                self.sp()?;
                Ok(SearchKey::Flag(self.flag()?))
            }
            "UNKEYWORD" => {
                self.sp()?;
                Ok(SearchKey::NotFlag(self.flag()?))
            }
            "NEW" => Ok(SearchKey::New),
            "OLD" => Ok(SearchKey::Old),
            "RECENT" => Ok(SearchKey::Recent),
            "BEFORE" => Ok(SearchKey::Before(self.search_date()?)),
            "ON" => Ok(SearchKey::On(self.search_date()?)),
            "SINCE" => Ok(SearchKey::Since(self.search_date()?)),
            "SENTBEFORE" => Ok(SearchKey::SentBefore(self.search_date()?)),
            "SENTON" => Ok(SearchKey::SentOn(self.search_date()?)),
            "SENTSINCE" => Ok(SearchKey::SentSince(self.search_date()?)),
            "LARGER" => {
                self.sp()?;
                Ok(SearchKey::Larger(self.number64()?))
            }
            "SMALLER" => {
                self.sp()?;
                Ok(SearchKey::Smaller(self.number64()?))
            }
            "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => {
                let name = match w.as_str() {
                    "FROM" => "From",
                    "TO" => "To",
                    "CC" => "Cc",
                    "BCC" => "Bcc",
                    _ => "Subject",
                };
                Ok(SearchKey::Header(name.into(), self.search_string()?))
            }
            "HEADER" => {
                let name = self.search_string()?;
                let value = self.search_string()?;
                Ok(SearchKey::Header(name, value))
            }
            "BODY" => Ok(SearchKey::Body(self.search_string()?)),
            "TEXT" => Ok(SearchKey::Text(self.search_string()?)),
            "UID" => {
                self.sp()?;
                Ok(SearchKey::Uid(self.seq_set()?))
            }
            "NOT" => {
                self.sp()?;
                Ok(SearchKey::Not(Box::new(self.search_key(depth + 1)?)))
            }
            "OR" => {
                self.sp()?;
                let a = self.search_key(depth + 1)?;
                self.sp()?;
                let b = self.search_key(depth + 1)?;
                Ok(SearchKey::Or(Box::new(a), Box::new(b)))
            }
            "MODSEQ" => {
                self.sp()?;
                // Optional entry-name and entry-type-req (RFC 7162 §3.1.5): skipped.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    self.word()?;
                    self.sp()?;
                }
                Ok(SearchKey::ModSeq(self.number64()?))
            }
            _ => Err(format!("unknown search key {w}")),
        }
    }
}
