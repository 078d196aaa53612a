//! FETCH arguments (RFC 3501 §6.4.5, RFC 7162 CHANGEDSINCE/VANISHED): the sequence set,
//! the attribute list or macro, `BODY[section]<partial>` and the fetch modifiers.
//! Reads one frame through [`super::Cursor`]; no I/O, no session state.
//!
//! # Security
//! Input is untrusted client bytes, already bounded in size by the framer. Section
//! part numbers and partial ranges are parsed as bounded integers; malformed input
//! becomes an `Err` (a `BAD`), never a panic.

use super::super::types::*;
use super::{Cursor, R, is_atom_char};

impl Cursor<'_> {
    pub(super) fn fetch(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mut attrs = Vec::new();
        if self.eat(b'(') {
            while !self.eat(b')') {
                if !attrs.is_empty() {
                    self.sp()?;
                }
                attrs.push(self.fetch_att()?);
            }
        } else if self.peek_word_is("ALL") {
            self.i += 3;
            attrs = vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
            ];
        } else if self.peek_word_is("FAST") {
            self.i += 4;
            attrs = vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
            ];
        } else if self.peek_word_is("FULL") {
            self.i += 4;
            attrs = vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ];
        } else {
            attrs.push(self.fetch_att()?);
        }
        let mut changed_since = None;
        let mut vanished = false;
        if self.eat(b' ') {
            // RFC 7162: FETCH ... (CHANGEDSINCE n [VANISHED])
            self.expect(b'(')?;
            while !self.eat(b')') {
                self.eat(b' ');
                match self.word()?.as_str() {
                    "CHANGEDSINCE" => {
                        self.sp()?;
                        changed_since = Some(self.number64()?);
                    }
                    "VANISHED" if uid => vanished = true,
                    o => return Err(format!("unknown FETCH modifier {o}")),
                }
            }
        }
        if vanished && changed_since.is_none() {
            // RFC 7162 §3.2.6: VANISHED needs CHANGEDSINCE.
            return Err("VANISHED requires CHANGEDSINCE".into());
        }
        if changed_since.is_some() && !attrs.contains(&FetchAttr::ModSeq) {
            attrs.push(FetchAttr::ModSeq);
        }
        Ok(Command::Fetch {
            uid,
            set,
            attrs,
            changed_since,
            vanished,
        })
    }

    pub(super) fn fetch_att(&mut self) -> R<FetchAttr> {
        let name = self.take_while(|b| is_atom_char(b) && b != b'[');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        Ok(match name.as_str() {
            "UID" => FetchAttr::Uid,
            "FLAGS" => FetchAttr::Flags,
            "INTERNALDATE" => FetchAttr::InternalDate,
            "RFC822.SIZE" => FetchAttr::Rfc822Size,
            "ENVELOPE" => FetchAttr::Envelope,
            "BODYSTRUCTURE" => FetchAttr::BodyStructure,
            "MODSEQ" => FetchAttr::ModSeq,
            "RFC822" => FetchAttr::Section {
                section: Section::default(),
                partial: None,
                peek: false,
                alias: Some("RFC822"),
            },
            "RFC822.HEADER" => FetchAttr::Section {
                section: Section {
                    parts: vec![],
                    text: Some(SectionText::Header),
                },
                partial: None,
                peek: true,
                alias: Some("RFC822.HEADER"),
            },
            "RFC822.TEXT" => FetchAttr::Section {
                section: Section {
                    parts: vec![],
                    text: Some(SectionText::Text),
                },
                partial: None,
                peek: false,
                alias: Some("RFC822.TEXT"),
            },
            "BODY" | "BODY.PEEK" => {
                if self.peek() != Some(b'[') {
                    if name == "BODY" {
                        return Ok(FetchAttr::Body);
                    }
                    return Err("BODY.PEEK needs a section".into());
                }
                let section = self.section()?;
                let partial = self.partial()?;
                FetchAttr::Section {
                    section,
                    partial,
                    peek: name == "BODY.PEEK",
                    alias: None,
                }
            }
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
                // RFC 3516 §4.2: section-binary = "[" [section-part] "]"
                self.expect(b'[')?;
                let mut parts = Vec::new();
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    let n = self.number()?;
                    if n == 0 || parts.len() >= 100 {
                        return Err("bad BINARY section".into());
                    }
                    parts.push(n);
                    if !self.eat(b'.') {
                        break;
                    }
                }
                self.expect(b']')?;
                let size = name == "BINARY.SIZE";
                let partial = if size { None } else { self.partial()? };
                FetchAttr::Binary(BinarySection {
                    parts,
                    partial,
                    peek: name != "BINARY",
                    size,
                })
            }
            _ => return Err(format!("unknown FETCH item {name}")),
        })
    }

    /// `"[" [section-spec] "]"`
    pub(super) fn section(&mut self) -> R<Section> {
        self.expect(b'[')?;
        let mut sec = Section::default();
        loop {
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                let n = self.number()?;
                if n == 0 {
                    return Err("part numbers start at 1".into());
                }
                sec.parts.push(n);
                if self.eat(b'.') {
                    continue;
                }
                break;
            }
            let w = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
            let w = String::from_utf8_lossy(w).to_ascii_uppercase();
            sec.text = Some(match w.as_str() {
                "HEADER" => SectionText::Header,
                "TEXT" => SectionText::Text,
                "MIME" if !sec.parts.is_empty() => SectionText::Mime,
                "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                    self.sp()?;
                    self.expect(b'(')?;
                    let mut names = Vec::new();
                    while !self.eat(b')') {
                        if !names.is_empty() {
                            self.sp()?;
                        }
                        names.push(self.astring()?);
                    }
                    if names.is_empty() {
                        return Err("empty header list".into());
                    }
                    if w == "HEADER.FIELDS" {
                        SectionText::HeaderFields(names)
                    } else {
                        SectionText::HeaderFieldsNot(names)
                    }
                }
                "" => break,
                _ => return Err(format!("bad section {w}")),
            });
            break;
        }
        self.expect(b']')?;
        Ok(sec)
    }

    pub(super) fn partial(&mut self) -> R<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let start = self.number()?;
        self.expect(b'.')?;
        let len = self.number()?;
        if len == 0 {
            return Err("partial length must be positive".into());
        }
        self.expect(b'>')?;
        Ok(Some((start, len)))
    }
}
