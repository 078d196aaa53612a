//! The fetchmailrc grammar (fetchmail 6.4's `rcfile_y.y`) as a recursive-descent
//! parser over [`lexer`](super::lexer) tokens, producing [`Record`]s and [`Globals`].
//! Pure. The ordering rules fetchmail enforces are enforced here too, with the same
//! complaints: server options after user options, `user` after implicit-user options,
//! `defaults` anywhere but first.

use super::ast::*;
use super::lexer::{Kw, Lexer, Tok, Token};

/// A syntax error: the line, the token it was found at, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    /// The offending token's text (`end of input` at the end).
    pub keyword: String,
    pub message: String,
}

pub struct Parsed {
    pub records: Vec<Record>,
    pub globals: Globals,
}

type R<T> = Result<T, SyntaxError>;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    records: Vec<Record>,
    globals: Globals,
}

/// Parses a whole fetchmailrc.
pub fn parse(src: &[u8]) -> Result<Parsed, SyntaxError> {
    let mut p = Parser {
        toks: Lexer::new(src).tokens(),
        pos: 0,
        records: Vec::new(),
        globals: Globals::default(),
    };
    p.file()?;
    Ok(Parsed {
        records: p.records,
        globals: p.globals,
    })
}

fn is_server_kw(k: Kw) -> bool {
    use Kw::*;
    matches!(
        k,
        Aka | Via
            | LocalDomains
            | Protocol
            | Principal
            | EsmtpName
            | EsmtpPassword
            | Uidl
            | Checkalias
            | Service
            | Port
            | Interval
            | Authenticate
            | Timeout
            | Envelope
            | Qvirtual
            | Interface
            | Monitor
            | Plugin
            | Plugout
            | Dns
            | Tracepolls
            | BadHeader
    )
}

/// Keywords that may follow `no` in the server part.
fn is_server_no_kw(k: Kw) -> bool {
    use Kw::*;
    matches!(k, Uidl | Checkalias | Dns | Envelope | Tracepolls)
}

fn is_user_kw(k: Kw) -> bool {
    use Kw::*;
    matches!(
        k,
        To | Is
            | Password
            | Folder
            | SmtpHost
            | FetchDomains
            | SmtpAddress
            | SmtpName
            | Antispam
            | Mda
            | Bsmtp
            | Lmtp
            | Preconnect
            | Postconnect
            | Keep
            | Flush
            | Limitflush
            | Fetchall
            | Rewrite
            | Forcecr
            | Stripcr
            | Pass8bits
            | Dropstatus
            | Dropdelivered
            | Mimedecode
            | Idle
            | Ssl
            | Sslkey
            | Sslcert
            | Sslproto
            | Sslcertck
            | Sslcertfile
            | Sslcertpath
            | Sslcommonname
            | Sslfingerprint
            | Limit
            | Warnings
            | Fetchlimit
            | Fetchsizelimit
            | Fastuidl
            | Batchlimit
            | Expunge
            | Properties
            | Passwordfile
            | Passwordfd
            | Passwordeval
            | Sslmode
            | Idletimeout
            | Forceidle
            | RetrieveError
            | Pwmd
    )
}

/// Keywords that may follow `no` in the user part.
fn is_user_no_kw(k: Kw) -> bool {
    use Kw::*;
    matches!(
        k,
        Keep | Flush
            | Limitflush
            | Fetchall
            | Rewrite
            | Forcecr
            | Stripcr
            | Pass8bits
            | Dropstatus
            | Dropdelivered
            | Mimedecode
            | Idle
            | Forceidle
            | Ssl
            | Sslcertck
    )
}

/// A word that would be a statement keyword if it were lower case (`Poll`, `SET`).
fn keyword_like(t: &str) -> bool {
    matches!(
        t.to_ascii_lowercase().as_str(),
        "poll" | "server" | "skip" | "defaults" | "set" | "user" | "username" | "password"
    ) && t != t.to_ascii_lowercase()
}

fn token_name(t: &Token) -> String {
    if t.kind == Tok::Eof {
        "end of input".into()
    } else {
        t.text.clone()
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn peek2(&self) -> &Token {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)]
    }
    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn peek_kw(&self) -> Option<Kw> {
        match self.peek().kind {
            Tok::Kw(k) => Some(k),
            _ => None,
        }
    }

    fn error_at(&self, t: &Token, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: t.line,
            keyword: token_name(t),
            message: message.into(),
        }
    }
    fn error_here(&self, message: impl Into<String>) -> SyntaxError {
        self.error_at(self.peek(), message)
    }

    fn string(&mut self, after: &str) -> R<String> {
        match &self.peek().kind {
            Tok::Str(s) => {
                let s = s.clone();
                self.bump();
                Ok(s)
            }
            _ => Err(self.error_here(format!("syntax error: `{after}` wants a string here"))),
        }
    }
    fn number(&mut self, after: &str) -> R<i64> {
        match self.peek().kind {
            Tok::Number(n) => {
                self.bump();
                Ok(n)
            }
            _ => Err(self.error_here(format!("syntax error: `{after}` wants a number here"))),
        }
    }
    fn strings(&mut self, after: &str) -> R<Vec<String>> {
        let mut v = vec![self.string(after)?];
        while let Tok::Str(s) = &self.peek().kind {
            v.push(s.clone());
            self.bump();
        }
        Ok(v)
    }

    fn is_server_option(&self) -> bool {
        match self.peek().kind {
            Tok::Kw(Kw::No) => matches!(self.peek2().kind, Tok::Kw(k) if is_server_no_kw(k)),
            Tok::Kw(k) => is_server_kw(k),
            _ => false,
        }
    }
    fn is_user_option(&self) -> bool {
        match self.peek().kind {
            Tok::Kw(Kw::No) => matches!(self.peek2().kind, Tok::Kw(k) if is_user_no_kw(k)),
            Tok::Kw(k) => is_user_kw(k),
            _ => false,
        }
    }

    fn file(&mut self) -> R<()> {
        loop {
            match self.peek().kind {
                Tok::Eof => return Ok(()),
                Tok::Kw(Kw::Set) => self.set_statement()?,
                Tok::Kw(Kw::Poll) | Tok::Kw(Kw::Skip) | Tok::Kw(Kw::Defaults) => self.entry()?,
                _ => {
                    let hint = match &self.peek().kind {
                        _ if self.is_user_option() || self.is_server_option() => {
                            "syntax error: an option outside any `poll` entry".to_string()
                        }
                        Tok::Str(_) => {
                            let t = &self.peek().text;
                            if keyword_like(t) {
                                format!(
                                    "syntax error: keywords are lower case (`{}`)",
                                    t.to_ascii_lowercase()
                                )
                            } else if t.ends_with('\\') {
                                "syntax error: a backslash right after a word is part of it; put a blank before a line-continuing `\\`".to_string()
                            } else {
                                "syntax error: not a keyword here (values with blanks or `;:,=` need quotes; strings belong after the keyword that takes them)".to_string()
                            }
                        }
                        _ => {
                            "syntax error: expected `poll`, `skip`, `defaults` or `set`".to_string()
                        }
                    };
                    return Err(self.error_here(hint));
                }
            }
        }
    }

    fn set_statement(&mut self) -> R<()> {
        self.bump(); // set
        let t = self.bump();
        let line = t.line;
        let g = &mut self.globals;
        let _ = g;
        match t.kind {
            Tok::Kw(
                k @ (Kw::Logfile | Kw::Idfile | Kw::Pidfile | Kw::Postmaster | Kw::Properties),
            ) => {
                if self.peek().kind == Tok::Map {
                    self.bump();
                }
                let v = Some((self.string(&format!("set {}", t.text))?, line));
                let g = &mut self.globals;
                match k {
                    Kw::Logfile => g.logfile = v,
                    Kw::Idfile => g.idfile = v,
                    Kw::Pidfile => g.pidfile = v,
                    Kw::Postmaster => g.postmaster = v,
                    _ => g.properties = v,
                }
            }
            Tok::Kw(Kw::Daemon) => {
                if self.peek().kind == Tok::Map {
                    // `=` puts fetchmail's lexer in NAME state: the number becomes a
                    // string and fetchmail reports a syntax error. So do we.
                    self.bump();
                    let t = self.peek().clone();
                    return Err(self.error_at(
                        &t,
                        "syntax error: `set daemon` takes a bare number (`set daemon 600`); after `=` it reads as a string",
                    ));
                }
                let n = self.number("set daemon")?;
                self.globals.daemon = Some((n, line));
            }
            Tok::Kw(Kw::No) => {
                let t2 = self.bump();
                self.set_flag(&t2, false, line)?;
            }
            _ => self.set_flag(&t, true, line)?,
        }
        Ok(())
    }

    fn set_flag(&mut self, t: &Token, on: bool, line: usize) -> R<()> {
        let g = &mut self.globals;
        let v = Some((on, line));
        match t.kind {
            Tok::Kw(Kw::Bouncemail) => g.bouncemail = v,
            Tok::Kw(Kw::Spambounce) => g.spambounce = v,
            Tok::Kw(Kw::Softbounce) => g.softbounce = v,
            Tok::Kw(Kw::Syslog) => g.syslog = v,
            Tok::Kw(Kw::Invisible) => g.invisible = v,
            Tok::Kw(Kw::Showdots) => g.showdots = v,
            _ => {
                return Err(self.error_at(
                    t,
                    "syntax error: `set` knows daemon, logfile, idfile, pidfile, postmaster, properties and [no] bouncemail, spambounce, softbounce, syslog, invisible, showdots",
                ));
            }
        }
        Ok(())
    }

    fn entry(&mut self) -> R<()> {
        let head = self.bump();
        let line = head.line;
        let (pollname, skip, is_defaults) = match head.kind {
            Tok::Kw(Kw::Defaults) => {
                if let Some(r) = self.records.first() {
                    let msg = if r.is_defaults {
                        "multiple \"defaults\" records in config file".to_string()
                    } else {
                        format!(
                            "\"defaults\" must be the first record (the first entry is at line {})",
                            r.line
                        )
                    };
                    return Err(self.error_at(&head, msg));
                }
                ("defaults".to_string(), false, true)
            }
            Tok::Kw(k) => {
                let name = self.string(&head.text)?;
                (name, k == Kw::Skip, false)
            }
            _ => unreachable!("entry() is called on poll/skip/defaults"),
        };
        let mut server = ServerOpts::default();
        while self.is_server_option() {
            self.server_option(&mut server)?;
        }
        let new_record = |user: UserOpts, user_line: usize| Record {
            pollname: pollname.clone(),
            line,
            user_line,
            skip,
            is_defaults,
            server: server.clone(),
            user,
        };
        if self.peek_kw() == Some(Kw::User) {
            // Explicit users: `user X …` one or more times.
            while self.peek_kw() == Some(Kw::User) {
                let user_line = self.peek().line;
                let mut user = UserOpts::default();
                self.userdef(&mut user)?;
                while self.is_user_option() {
                    self.user_option(&mut user)?;
                }
                self.records.push(new_record(user, user_line));
            }
        } else if self.is_user_option() {
            // The implicit user: options with no `user` keyword.
            let user_line = self.peek().line;
            let mut user = UserOpts::default();
            while self.is_user_option() {
                self.user_option(&mut user)?;
            }
            self.records.push(new_record(user, user_line));
            if self.peek_kw() == Some(Kw::User) {
                return Err(self.error_here(
                    "syntax error: user options before `user` make an entry of their own; move them after `user …` (sslproto, ssl, keep … are user options)",
                ));
            }
        } else {
            self.records.push(new_record(UserOpts::default(), line));
        }
        if self.is_server_option() {
            return Err(self.error_here(
                "server option after user options (server options such as proto, port, auth, timeout, envelope, aka come before `user`)",
            ));
        }
        Ok(())
    }

    fn server_option(&mut self, s: &mut ServerOpts) -> R<()> {
        let t = self.bump();
        let line = t.line;
        let Tok::Kw(k) = t.kind else {
            unreachable!("is_server_option() checked")
        };
        match k {
            Kw::No => {
                let t2 = self.bump();
                let v = Some((false, line));
                match t2.kind {
                    Tok::Kw(Kw::Uidl) => s.uidl = v,
                    Tok::Kw(Kw::Checkalias) => s.checkalias = v,
                    Tok::Kw(Kw::Dns) => s.dns = v,
                    Tok::Kw(Kw::Tracepolls) => s.tracepolls = v,
                    Tok::Kw(Kw::Envelope) => s.envelope = Some((Envelope::Disabled, line)),
                    _ => unreachable!("is_server_option() checked"),
                }
            }
            Kw::Aka => {
                let v = self.strings("aka")?;
                append(&mut s.aka, v, line);
            }
            Kw::LocalDomains => {
                let v = self.strings(&t.text)?;
                append(&mut s.localdomains, v, line);
            }
            Kw::Via => s.via = Some((self.string("via")?, line)),
            Kw::Protocol => {
                let p = self.bump();
                match p.kind {
                    Tok::Proto(pk) => s.protocol = Some((pk, line)),
                    _ => {
                        return Err(self.error_at(
                            &p,
                            "syntax error: protocol is one of auto, pop2, pop3, imap, apop, rpop, kpop, sdps, etrn, odmr (all lower or all upper case)",
                        ));
                    }
                }
            }
            Kw::Principal => s.principal = Some((self.string("principal")?, line)),
            Kw::EsmtpName => s.esmtpname = Some((self.string("esmtpname")?, line)),
            Kw::EsmtpPassword => s.esmtppassword = Some((self.string("esmtppassword")?, line)),
            Kw::Uidl => s.uidl = Some((true, line)),
            Kw::Checkalias => s.checkalias = Some((true, line)),
            Kw::Dns => s.dns = Some((true, line)),
            Kw::Tracepolls => s.tracepolls = Some((true, line)),
            Kw::Service => {
                let v = match &self.peek().kind {
                    Tok::Number(n) => n.to_string(),
                    Tok::Str(s) => s.clone(),
                    _ => {
                        return Err(self.error_here(
                            "syntax error: `service` wants a port number or service name",
                        ));
                    }
                };
                self.bump();
                s.service = Some((v, line));
            }
            Kw::Port => s.service = Some((self.number("port")?.to_string(), line)),
            Kw::Interval => s.interval = Some((self.number("interval")?, line)),
            Kw::Timeout => s.timeout = Some((self.number("timeout")?, line)),
            Kw::Authenticate => {
                let a = self.bump();
                match a.kind {
                    Tok::AuthType(ak) => s.auth = Some((ak, line)),
                    _ => {
                        return Err(self.error_at(
                            &a,
                            "syntax error: auth is one of any, password, cram-md5, external, ssh, gssapi, kerberos_v4, kerberos_v5, otp, ntlm, msn (zolder also takes oauthbearer, xoauth2)",
                        ));
                    }
                }
            }
            Kw::Envelope => {
                let skip = if let Tok::Number(n) = self.peek().kind {
                    self.bump();
                    n
                } else {
                    0
                };
                let name = self.string("envelope")?;
                s.envelope = Some((Envelope::Header { skip, name }, line));
            }
            Kw::Qvirtual => s.qvirtual = Some((self.string("qvirtual")?, line)),
            Kw::Interface => s.interface = Some((self.string("interface")?, line)),
            Kw::Monitor => s.monitor = Some((self.string("monitor")?, line)),
            Kw::Plugin => s.plugin = Some((self.string("plugin")?, line)),
            Kw::Plugout => s.plugout = Some((self.string("plugout")?, line)),
            Kw::BadHeader => {
                let a = self.bump();
                match a.kind {
                    Tok::Kw(Kw::Accept) => s.badheader_accept = Some((true, line)),
                    Tok::Kw(Kw::Reject) => s.badheader_accept = Some((false, line)),
                    _ => {
                        return Err(
                            self.error_at(&a, "syntax error: `bad-header` wants accept or reject")
                        );
                    }
                }
            }
            _ => unreachable!("is_server_option() checked"),
        }
        Ok(())
    }

    /// `user NAME`, `user NAME there`, `user NAME… here`.
    fn userdef(&mut self, u: &mut UserOpts) -> R<()> {
        let t = self.bump(); // user
        let line = t.line;
        let first = self.string(&t.text)?;
        match self.peek().kind {
            Tok::Kw(Kw::There) => {
                self.bump();
                u.remotename = Some((first, line));
            }
            Tok::Map | Tok::Str(_) | Tok::Kw(Kw::Here) => {
                // The reversed form: `user esr here is eric there`.
                let list = self.mapping_list_from(first)?;
                if self.peek_kw() != Some(Kw::Here) {
                    return Err(self.error_here(
                        "syntax error: several names after `user` must end with `here` (local names)",
                    ));
                }
                self.bump();
                self.add_localnames(u, list, line);
            }
            _ => u.remotename = Some((first, line)),
        }
        Ok(())
    }

    /// The rest of a mapping list whose first string was already read.
    fn mapping_list_from(&mut self, first: String) -> R<Vec<Mapping>> {
        let mut out = Vec::new();
        let mut remote = first;
        loop {
            let local = if self.peek().kind == Tok::Map {
                self.bump();
                Some(self.string("=")?)
            } else {
                None
            };
            out.push(Mapping { remote, local });
            match &self.peek().kind {
                Tok::Str(s) => {
                    remote = s.clone();
                    self.bump();
                }
                _ => return Ok(out),
            }
        }
    }

    fn add_localnames(&mut self, u: &mut UserOpts, list: Vec<Mapping>, line: usize) {
        let mut names = Vec::new();
        for m in list {
            if m.remote == "*" && m.local.is_none() {
                u.wildcard = Some((true, line));
            } else {
                names.push(m);
            }
        }
        append(&mut u.localnames, names, line);
    }

    fn user_option(&mut self, u: &mut UserOpts) -> R<()> {
        let t = self.bump();
        let line = t.line;
        let Tok::Kw(k) = t.kind else {
            unreachable!("is_user_option() checked")
        };
        let yes = Some((true, line));
        match k {
            Kw::No => {
                let t2 = self.bump();
                let v = Some((false, line));
                let Tok::Kw(k2) = t2.kind else {
                    unreachable!("is_user_option() checked")
                };
                self.flag(u, k2, v);
            }
            Kw::To | Kw::Is => {
                let first = self.string(&t.text)?;
                if k == Kw::Is && self.peek_kw() == Some(Kw::There) {
                    self.bump();
                    u.remotename = Some((first, line));
                    return Ok(());
                }
                let list = self.mapping_list_from(first)?;
                if self.peek_kw() == Some(Kw::Here) {
                    self.bump();
                }
                self.add_localnames(u, list, line);
            }
            Kw::Password => u.password = Some((self.string("password")?, line)),
            Kw::Passwordfile => u.passwordfile = Some((self.string("passwordfile")?, line)),
            Kw::Passwordeval => u.passwordeval = Some((self.string("passwordeval")?, line)),
            Kw::Passwordfd => u.passwordfd = Some((self.number("passwordfd")?, line)),
            Kw::Folder => {
                let v = self.strings("folder")?;
                append(&mut u.folders, v, line);
            }
            Kw::SmtpHost => {
                let v = self.strings("smtphost")?;
                append(&mut u.smtphunt, v, line);
            }
            Kw::FetchDomains => {
                let v = self.strings("fetchdomains")?;
                append(&mut u.fetchdomains, v, line);
            }
            Kw::SmtpAddress => u.smtpaddress = Some((self.string("smtpaddress")?, line)),
            Kw::SmtpName => u.smtpname = Some((self.string("smtpname")?, line)),
            Kw::Antispam => {
                let mut v = vec![self.number("antispam")?];
                while let Tok::Number(n) = self.peek().kind {
                    v.push(n);
                    self.bump();
                }
                append(&mut u.antispam, v, line);
            }
            Kw::Mda => u.mda = Some((self.string("mda")?, line)),
            Kw::Bsmtp => u.bsmtp = Some((self.string("bsmtp")?, line)),
            Kw::Lmtp => u.lmtp = yes,
            Kw::Preconnect => u.preconnect = Some((self.string("preconnect")?, line)),
            Kw::Postconnect => u.postconnect = Some((self.string("postconnect")?, line)),
            Kw::Sslkey => u.sslkey = Some((self.string("sslkey")?, line)),
            Kw::Sslcert => u.sslcert = Some((self.string("sslcert")?, line)),
            Kw::Sslproto => {
                // fetchmail 6.4 lexes a bare `auto` as a protocol name and then fails;
                // zolder takes it for what it obviously means.
                let v = match &self.peek().kind {
                    Tok::Proto(ProtoKind::Auto) => {
                        let s = self.peek().text.clone();
                        self.bump();
                        s
                    }
                    _ => self.string("sslproto")?,
                };
                u.sslproto = Some((v, line));
            }
            Kw::Sslcertfile => u.sslcertfile = Some((self.string("sslcertfile")?, line)),
            Kw::Sslcertpath => u.sslcertpath = Some((self.string("sslcertpath")?, line)),
            Kw::Sslcommonname => u.sslcommonname = Some((self.string("sslcommonname")?, line)),
            Kw::Sslfingerprint => u.sslfingerprint = Some((self.string("sslfingerprint")?, line)),
            Kw::Sslmode => {
                let v = match &self.peek().kind {
                    Tok::Str(_) => self.string("sslmode")?,
                    _ => {
                        let s = self.peek().text.clone();
                        self.bump();
                        s
                    }
                };
                u.sslmode = Some((v, line));
            }
            Kw::Limit => u.limit = Some((self.number("limit")?, line)),
            Kw::Warnings => u.warnings = Some((self.number("warnings")?, line)),
            Kw::Fetchlimit => u.fetchlimit = Some((self.number("fetchlimit")?, line)),
            Kw::Fetchsizelimit => u.fetchsizelimit = Some((self.number("fetchsizelimit")?, line)),
            Kw::Fastuidl => u.fastuidl = Some((self.number("fastuidl")?, line)),
            Kw::Batchlimit => u.batchlimit = Some((self.number("batchlimit")?, line)),
            Kw::Expunge => u.expunge = Some((self.number("expunge")?, line)),
            Kw::Idletimeout => u.idletimeout = Some((self.number("idletimeout")?, line)),
            Kw::Properties => u.properties = Some((self.string("properties")?, line)),
            Kw::RetrieveError => {
                let s = self.peek().text.clone();
                self.bump();
                u.retrieve_error = Some((s, line));
            }
            Kw::Pwmd => {
                let s = self.peek().text.clone();
                self.bump();
                u.pwmd = Some((format!("{} {s}", t.text), line));
            }
            other => self.flag(u, other, yes),
        }
        Ok(())
    }

    fn flag(&mut self, u: &mut UserOpts, k: Kw, v: At<bool>) {
        match k {
            Kw::Keep => u.keep = v,
            Kw::Flush => u.flush = v,
            Kw::Limitflush => u.limitflush = v,
            Kw::Fetchall => u.fetchall = v,
            Kw::Rewrite => u.rewrite = v,
            Kw::Forcecr => u.forcecr = v,
            Kw::Stripcr => u.stripcr = v,
            Kw::Pass8bits => u.pass8bits = v,
            Kw::Dropstatus => u.dropstatus = v,
            Kw::Dropdelivered => u.dropdelivered = v,
            Kw::Mimedecode => u.mimedecode = v,
            Kw::Idle => u.idle = v,
            Kw::Forceidle => u.forceidle = v,
            Kw::Ssl => u.ssl = v,
            Kw::Sslcertck => u.sslcertck = v,
            _ => unreachable!("only flag keywords reach flag()"),
        }
    }
}

/// Lists accumulate (fetchmail's `save_str` appends), keeping the first keyword's line.
fn append<T>(dst: &mut At<Vec<T>>, items: Vec<T>, line: usize) {
    match dst {
        Some((v, _)) => v.extend(items),
        None => *dst = Some((items, line)),
    }
}
