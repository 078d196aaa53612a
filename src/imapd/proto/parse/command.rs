//! The command dispatch of the IMAP grammar: reads the command name after the tag and
//! parses each command's arguments (mailbox commands, SELECT/EXAMINE with CONDSTORE and
//! QRESYNC parameters, LIST/LSUB/STATUS, APPEND, STORE, COPY/MOVE, ENABLE, ID, ...).
//! FETCH attributes live in [`super::fetch`], search programs (SEARCH, SORT, THREAD)
//! in [`super::search`]; the lexical primitives (atoms, strings, literals, flags) in
//! [`super`]. No I/O: it only reads the bytes of one frame.
//!
//! # Security
//! Input is untrusted client bytes, already bounded in size by the framer. Every
//! malformed argument becomes an `Err` (a `BAD`), never a panic.

use super::super::types::*;
use super::{Cursor, R, is_atom_char};

impl Cursor<'_> {
    pub(super) fn command(&mut self) -> R<Command> {
        let name = self.word()?;
        let cmd = match name.as_str() {
            "CAPABILITY" => Command::Capability,
            "NOOP" => Command::Noop,
            "LOGOUT" => Command::Logout,
            "STARTTLS" => Command::StartTls,
            "CHECK" => Command::Check,
            "CLOSE" => Command::Close,
            "UNSELECT" => Command::Unselect,
            "IDLE" => Command::Idle,
            "NAMESPACE" => Command::Namespace,
            "EXPUNGE" => Command::Expunge { uids: None },
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.word()?;
                let initial = if self.eat(b' ') {
                    let t = self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                    if t.is_empty() {
                        return Err("bad initial response".into());
                    }
                    Some(String::from_utf8_lossy(t).into_owned())
                } else {
                    None
                };
                Command::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let user = self.astring()?;
                self.sp()?;
                let password = self.astring()?;
                Command::Login { user, password }
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut condstore = false;
                let mut qresync = None;
                if self.eat(b' ') {
                    self.expect(b'(')?;
                    while !self.eat(b')') {
                        self.eat(b' ');
                        match self.word()?.as_str() {
                            "CONDSTORE" => condstore = true,
                            "QRESYNC" => {
                                self.sp()?;
                                qresync = Some(self.qresync_params()?);
                            }
                            o => return Err(format!("unsupported select parameter {o}")),
                        }
                    }
                }
                Command::Select {
                    mailbox,
                    read_only: name == "EXAMINE",
                    condstore,
                    qresync,
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.eat(b' ') {
                    // RFC 6154 §3: CREATE name (USE (\Sent))
                    self.expect(b'(')?;
                    if self.word()? != "USE" {
                        return Err("unknown CREATE parameter".into());
                    }
                    self.sp()?;
                    special_use = self.flag_list()?;
                    self.expect(b')')?;
                }
                Command::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" => {
                self.sp()?;
                Command::Delete(self.mailbox()?)
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                Command::Rename { from, to }
            }
            "SUBSCRIBE" => {
                self.sp()?;
                Command::Subscribe(self.mailbox()?)
            }
            "UNSUBSCRIBE" => {
                self.sp()?;
                Command::Unsubscribe(self.mailbox()?)
            }
            "LIST" => Command::List(self.list_args()?),
            "LSUB" => {
                self.sp()?;
                let reference = self.astring()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                Command::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                Command::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "SEARCH" => self.search(false)?,
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "GETQUOTA" => {
                self.sp()?;
                Command::GetQuota(self.astring()?)
            }
            "GETQUOTAROOT" => {
                self.sp()?;
                Command::GetQuotaRoot(self.mailbox()?)
            }
            "SETQUOTA" => {
                self.sp()?;
                let root = self.astring()?;
                self.sp()?;
                self.expect(b'(')?;
                while !self.eat(b')') {
                    self.eat(b' ');
                    self.atom()?;
                    self.sp()?;
                    self.number64()?;
                }
                Command::SetQuota(root)
            }
            "COMPRESS" => {
                self.sp()?;
                Command::Compress(self.word()?)
            }
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" => self.copy_move(false, false)?,
            "MOVE" => self.copy_move(false, true)?,
            "UID" => {
                self.sp()?;
                let sub = self.word()?;
                match sub.as_str() {
                    "SEARCH" => self.search(true)?,
                    "SORT" => self.sort(true)?,
                    "THREAD" => self.thread(true)?,
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "COPY" => self.copy_move(true, false)?,
                    "MOVE" => self.copy_move(true, true)?,
                    "EXPUNGE" => {
                        self.sp()?;
                        Command::Expunge {
                            uids: Some(self.seq_set()?),
                        }
                    }
                    _ => return Err(format!("unknown UID command {sub}")),
                }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while self.eat(b' ') {
                    caps.push(self.word()?);
                }
                if caps.is_empty() {
                    return Err("ENABLE needs a capability".into());
                }
                Command::Enable(caps)
            }
            "ID" => {
                self.sp()?;
                let mut fields = Vec::new();
                if self.peek_word_is("NIL") {
                    self.i += 3;
                } else {
                    self.expect(b'(')?;
                    while !self.eat(b')') {
                        self.eat(b' ');
                        let k = self.string()?;
                        self.sp()?;
                        let v = self.nstring()?;
                        if fields.len() < 30 {
                            fields.push((String::from_utf8_lossy(&k).into_owned(), v));
                        }
                    }
                }
                Command::Id(fields)
            }
            _ => return Err(format!("unknown command {name}")),
        };
        self.end()?;
        Ok(cmd)
    }

    pub(super) fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        while !self.eat(b')') {
            if !items.is_empty() {
                self.sp()?;
            }
            items.push(match self.word()?.as_str() {
                "MESSAGES" => StatusItem::Messages,
                "RECENT" => StatusItem::Recent,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                "DELETED" => StatusItem::Deleted,
                "DELETED-STORAGE" => StatusItem::DeletedStorage,
                "SIZE" => StatusItem::Size,
                o => return Err(format!("unknown status item {o}")),
            });
        }
        Ok(items)
    }

    pub(super) fn list_args(&mut self) -> R<ListArgs> {
        let mut a = ListArgs::default();
        self.sp()?;
        if self.eat(b'(') {
            a.extended = true;
            while !self.eat(b')') {
                self.eat(b' ');
                match self.word()?.as_str() {
                    "SUBSCRIBED" => a.subscribed = true,
                    "SPECIAL-USE" => a.special_use_only = true,
                    "RECURSIVEMATCH" => a.recursive_match = true,
                    "REMOTE" => {}
                    o => return Err(format!("unknown LIST selection option {o}")),
                }
            }
            self.sp()?;
        }
        a.reference = self.astring()?;
        self.sp()?;
        if self.eat(b'(') {
            a.extended = true;
            while !self.eat(b')') {
                self.eat(b' ');
                a.patterns.push(self.list_mailbox()?);
            }
        } else {
            a.patterns.push(self.list_mailbox()?);
        }
        if self.eat(b' ') {
            if self.word()? != "RETURN" {
                return Err("expected RETURN".into());
            }
            a.extended = true;
            self.sp()?;
            self.expect(b'(')?;
            while !self.eat(b')') {
                self.eat(b' ');
                match self.word()?.as_str() {
                    "SUBSCRIBED" => a.return_subscribed = true,
                    "CHILDREN" => a.return_children = true,
                    "SPECIAL-USE" => a.return_special_use = true,
                    "STATUS" => {
                        self.sp()?;
                        a.return_status = Some(self.status_items()?);
                    }
                    o => return Err(format!("unknown LIST return option {o}")),
                }
            }
        }
        if a.recursive_match && !a.subscribed {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
        Ok(a)
    }

    pub(super) fn copy_move(&mut self, uid: bool, is_move: bool) -> R<Command> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if is_move {
            Command::Move { uid, set, mailbox }
        } else {
            Command::Copy { uid, set, mailbox }
        })
    }

    pub(super) fn store(&mut self, uid: bool) -> R<Command> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.eat(b'(') {
            if self.word()? != "UNCHANGEDSINCE" {
                return Err("unknown STORE modifier".into());
            }
            self.sp()?;
            unchanged_since = Some(self.number64()?);
            self.expect(b')')?;
            self.sp()?;
        }
        let item = self.take_while(is_atom_char);
        let item = String::from_utf8_lossy(item).to_ascii_uppercase();
        let (mode, rest) = match item.as_bytes().first() {
            Some(b'+') => (StoreMode::Add, &item[1..]),
            Some(b'-') => (StoreMode::Remove, &item[1..]),
            _ => (StoreMode::Replace, &item[..]),
        };
        let silent = match rest {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            _ => return Err("expected FLAGS, +FLAGS or -FLAGS".into()),
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut v = vec![self.flag()?];
            while self.eat(b' ') {
                v.push(self.flag()?);
            }
            v
        };
        Ok(Command::Store {
            uid,
            set,
            mode,
            silent,
            flags,
            unchanged_since,
        })
    }

    /// `(uidvalidity modseq [known-uids [(known-seqs known-uids)]])`
    pub(super) fn qresync_params(&mut self) -> R<QresyncParams> {
        self.expect(b'(')?;
        let uidvalidity = self.number()?;
        if uidvalidity == 0 {
            return Err("UIDVALIDITY must be positive".into());
        }
        self.sp()?;
        let modseq = self.number64()?;
        if modseq == 0 {
            return Err("MODSEQ must be positive".into());
        }
        let mut known_uids = None;
        let mut seq_match = None;
        if self.eat(b' ') {
            if self.peek() != Some(b'(') {
                known_uids = Some(self.seq_set()?);
                self.eat(b' ');
            }
            if self.eat(b'(') {
                let seqs = self.seq_set()?;
                self.sp()?;
                let uids = self.seq_set()?;
                self.expect(b')')?;
                seq_match = Some((seqs, uids));
            }
        }
        self.expect(b')')?;
        Ok(QresyncParams {
            uidvalidity,
            modseq,
            known_uids,
            seq_match,
        })
    }
}
