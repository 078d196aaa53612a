//! The POP3 client (RFC 1939, CAPA/STLS RFC 2449/2595, SASL RFC 5034): login, UIDL,
//! LIST, pipelined RETR, DELE after durable delivery, QUIT to commit.
//!
//! The wire format is parsed by small pure pieces ([`parse_status`], [`DotDecoder`],
//! [`parse_listing`], [`apop_digest`]) that the unit tests feed in fragments; the
//! [`Session`] does the I/O. Owns nothing in the database but calls `db::fetch`.
//!
//! # Security
//! The server is untrusted. Status lines are bounded by [`MAX_LINE`], a dot-stuffed
//! line that could be the terminator by [`MAX_PENDING`], a message by
//! `limits.message_size` and a UIDL/LIST listing by [`MAX_LISTING`]; every read has a
//! the account's `timeout` (default 300 s). After STLS, bytes the server sent before the handshake are an
//! error (no plaintext injection into the TLS session). Passwords are only sent after
//! TLS when `tls` is `starttls` or `implicit`.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use md5::{Digest, Md5};
use memchr::{memchr, memmem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::{Fate, FetchError, Fetcher, PollOutcome, conn, fate, oauth2};
use crate::config::account::{AccountConfig, TlsMode};
use crate::db;
use crate::message::{DeliveryReport, Incoming};
use crate::net::Stream;

/// Longest status line (RFC 2449 allows 512 octets; we are generous).
pub const MAX_LINE: usize = 8 * 1024;
/// Longest unfinished line starting with '.' held while waiting for its end.
pub const MAX_PENDING: usize = 1024 * 1024;
/// Most new messages whose sizes are asked one `LIST n` each (pipelined); more than
/// this and one full `LIST` is cheaper.
const LIST_EACH_MAX: usize = 64;

/// Largest UIDL or LIST answer.
pub const MAX_LISTING: usize = 64 * 1024 * 1024;
/// Deletions between two QUITs: bounds what a dropped line makes us fetch again
/// (fetchmail's `expunge N`), without reconnecting too often.
pub const COMMIT_EVERY: usize = 1000;
/// Messages per delivery batch, and the byte size that ends a batch early.
pub const BATCH: usize = 200;
pub const BATCH_BYTES: u64 = 24 * 1024 * 1024;

// ---------------------------------------------------------------------------------
// Pure protocol pieces
// ---------------------------------------------------------------------------------

/// A status line: `Ok(text)` for `+OK text`, `Err(text)` for `-ERR text`, `None` for
/// anything else. `+ ` (a SASL continuation) is reported as `Some(Err)` by
/// [`parse_status`] callers that do not expect one.
pub fn parse_status(line: &[u8]) -> Option<Result<String, String>> {
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).trim().to_string();
    if let Some(r) = line.strip_prefix(b"+OK") {
        Some(Ok(text(r)))
    } else {
        line.strip_prefix(b"-ERR").map(|r| Err(text(r)))
    }
}

/// `<…>` in the greeting: the APOP timestamp.
pub fn greeting_timestamp(greeting: &str) -> Option<&str> {
    let l = greeting.find('<')?;
    let r = greeting[l..].find('>')? + l;
    let ts = &greeting[l..=r];
    ts.contains('@').then_some(ts)
}

/// APOP digest (RFC 1939 §7): lower-case hex MD5 of timestamp + secret.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Lines of a UIDL or LIST answer: `(message number, second word)`.
pub fn parse_listing(data: &[u8]) -> Result<Vec<(u32, String)>, String> {
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let s = std::str::from_utf8(line).map_err(|_| "listing line is not UTF-8".to_string())?;
        let mut w = s.split_ascii_whitespace();
        let n = w
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| format!("bad listing line `{}`", s.escape_debug()))?;
        let v = w
            .next()
            .ok_or_else(|| format!("bad listing line `{}`", s.escape_debug()))?;
        // RFC 1939: a UIDL is 1-70 characters in 0x21..0x7E.
        if v.len() > 70 {
            return Err(format!("listing value too long in `{}`", s.escape_debug()));
        }
        out.push((n, v.to_string()));
    }
    Ok(out)
}

/// What [`DotDecoder::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// All of the input up to this offset is consumed; more is needed. Bytes after it
    /// (a possibly-terminating line not yet complete) must be fed again.
    Incomplete(usize),
    /// The terminating `.CRLF` ends at this offset; the message is complete.
    Done(usize),
}

/// Decodes a multi-line response body (RFC 1939 §3): removes byte-stuffing, stops at
/// the lone `.` line. Fed any fragments; the output keeps the line endings as sent.
#[derive(Debug)]
pub struct DotDecoder {
    pub out: Vec<u8>,
    limit: usize,
    bol: bool,
}

impl DotDecoder {
    pub fn new(limit: usize) -> DotDecoder {
        DotDecoder {
            out: Vec::new(),
            limit,
            bol: true,
        }
    }

    pub fn with_capacity(limit: usize, cap: usize) -> DotDecoder {
        DotDecoder {
            out: Vec::with_capacity(cap.min(limit)),
            limit,
            bol: true,
        }
    }

    fn push(&mut self, b: &[u8]) -> Result<(), String> {
        if self.out.len() + b.len() > self.limit {
            return Err(format!("message larger than {} bytes", self.limit));
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    pub fn feed(&mut self, input: &[u8]) -> Result<Feed, String> {
        let mut i = 0;
        loop {
            if self.bol {
                if i >= input.len() {
                    return Ok(Feed::Incomplete(i));
                }
                if input[i] == b'.' {
                    // Need the whole line: terminator or a stuffed line?
                    let Some(j) = memchr(b'\n', &input[i..]) else {
                        if input.len() - i > MAX_PENDING {
                            return Err("line too long".into());
                        }
                        return Ok(Feed::Incomplete(i));
                    };
                    let line = &input[i..i + j + 1];
                    if line == b".\r\n" || line == b".\n" {
                        return Ok(Feed::Done(i + j + 1));
                    }
                    self.push(&line[1..])?;
                    i += j + 1;
                    continue;
                }
                self.bol = false;
            }
            match memmem::find(&input[i..], b"\n.") {
                Some(j) => {
                    self.push(&input[i..i + j + 1])?;
                    i += j + 1;
                    self.bol = true;
                }
                None => {
                    self.push(&input[i..])?;
                    self.bol = input.last() == Some(&b'\n');
                    return Ok(Feed::Incomplete(input.len()));
                }
            }
        }
    }
}

/// The capabilities that matter to us, from a CAPA answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Caps {
    pub stls: bool,
    pub pipelining: bool,
    pub uidl: bool,
    pub user: bool,
    /// SASL mechanisms, upper-case.
    pub sasl: Vec<String>,
}

pub fn parse_capa(data: &[u8]) -> Caps {
    let mut c = Caps::default();
    for line in String::from_utf8_lossy(data).lines() {
        let mut w = line.split_ascii_whitespace();
        match w.next().map(|s| s.to_ascii_uppercase()).as_deref() {
            Some("STLS") => c.stls = true,
            Some("PIPELINING") => c.pipelining = true,
            Some("UIDL") => c.uidl = true,
            Some("USER") => c.user = true,
            Some("SASL") => c.sasl = w.map(|m| m.to_ascii_uppercase()).collect(),
            _ => {}
        }
    }
    c
}

// ---------------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------------

/// One POP3 connection, logged in (TRANSACTION state).
pub struct Session {
    s: Stream,
    buf: Vec<u8>,
    pos: usize,
    caps: Caps,
    account: String,
    timeout: Duration,
}

impl Session {
    async fn fill(&mut self) -> Result<(), FetchError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 256 * 1024, 0);
        let r = tokio::time::timeout(self.timeout, self.s.read(&mut self.buf[len..])).await;
        let n = match r {
            Err(_) => {
                self.buf.truncate(len);
                return Err(FetchError::Io(format!(
                    "{}: no answer for {:?}",
                    self.account, self.timeout
                )));
            }
            Ok(Err(e)) => {
                self.buf.truncate(len);
                return Err(FetchError::Io(format!("{}: {e}", self.account)));
            }
            Ok(Ok(n)) => n,
        };
        self.buf.truncate(len + n);
        if n == 0 {
            return Err(FetchError::Io(format!(
                "{}: connection closed by the server",
                self.account
            )));
        }
        Ok(())
    }

    async fn line(&mut self) -> Result<Vec<u8>, FetchError> {
        loop {
            if let Some(j) = memchr(b'\n', &self.buf[self.pos..]) {
                let mut l = self.buf[self.pos..self.pos + j].to_vec();
                self.pos += j + 1;
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(l);
            }
            if self.buf.len() - self.pos > MAX_LINE {
                return Err(FetchError::Protocol(format!(
                    "{}: status line too long",
                    self.account
                )));
            }
            self.fill().await?;
        }
    }

    async fn multiline(&mut self, limit: usize, cap: usize) -> Result<Vec<u8>, FetchError> {
        let mut d = DotDecoder::with_capacity(limit, cap);
        loop {
            match d
                .feed(&self.buf[self.pos..])
                .map_err(|e| FetchError::Protocol(format!("{}: {e}", self.account)))?
            {
                Feed::Done(n) => {
                    self.pos += n;
                    return Ok(d.out);
                }
                Feed::Incomplete(n) => {
                    self.pos += n;
                    self.fill().await?;
                }
            }
        }
    }

    async fn send(&mut self, cmd: &str) -> Result<(), FetchError> {
        let w = async {
            self.s.write_all(cmd.as_bytes()).await?;
            self.s.flush().await
        };
        tokio::time::timeout(self.timeout, w)
            .await
            .map_err(|_| FetchError::Io(format!("{}: write timed out", self.account)))?
            .map_err(|e| FetchError::Io(format!("{}: {e}", self.account)))
    }

    /// Reads one status line; `-ERR` becomes `Err(text)` for the caller to judge.
    async fn status(&mut self) -> Result<Result<String, String>, FetchError> {
        let l = self.line().await?;
        parse_status(&l).ok_or_else(|| {
            FetchError::Protocol(format!(
                "{}: unexpected answer `{}`",
                self.account,
                String::from_utf8_lossy(&l[..l.len().min(200)]).escape_debug()
            ))
        })
    }

    /// Sends `cmd`, expects +OK.
    async fn command(&mut self, cmd: &str, what: &str) -> Result<String, FetchError> {
        self.send(&format!("{cmd}\r\n")).await?;
        self.status()
            .await?
            .map_err(|e| FetchError::Protocol(format!("{}: {what}: -ERR {e}", self.account)))
    }

    async fn capa(&mut self) -> Result<Caps, FetchError> {
        self.send("CAPA\r\n").await?;
        match self.status().await? {
            Ok(_) => Ok(parse_capa(&self.multiline(MAX_LINE * 16, 1024).await?)),
            Err(_) => Ok(Caps::default()),
        }
    }

    /// Connects, reads the greeting, does TLS as configured and logs in.
    pub async fn open(f: &Fetcher, acc: &AccountConfig) -> Result<Session, FetchError> {
        let mut s = conn::tcp(acc).await?;
        if acc.tls == TlsMode::Implicit {
            s = conn::upgrade(acc, s).await?;
        }
        let mut se = Session {
            s,
            buf: Vec::with_capacity(512 * 1024),
            pos: 0,
            caps: Caps::default(),
            account: acc.name.clone(),
            timeout: conn::read_timeout(acc),
        };
        let greeting = match se.status().await? {
            Ok(g) => g,
            Err(e) => {
                return Err(FetchError::Connect(format!(
                    "{}: greeting -ERR {e}",
                    acc.name
                )));
            }
        };
        se.caps = se.capa().await?;
        if acc.tls == TlsMode::Starttls {
            se.command("STLS", "STLS")
                .await
                .map_err(|e| FetchError::Tls(format!("{}: server refused STLS ({e})", acc.name)))?;
            if se.pos != se.buf.len() {
                return Err(FetchError::Protocol(format!(
                    "{}: data after the STLS answer (plaintext injection?)",
                    acc.name
                )));
            }
            let Session {
                s: plain,
                account,
                timeout,
                ..
            } = se;
            se = Session {
                s: conn::upgrade(acc, plain).await?,
                buf: Vec::with_capacity(512 * 1024),
                pos: 0,
                caps: Caps::default(),
                account,
                timeout,
            };
            se.caps = se.capa().await?;
        }
        se.login(f, acc, &greeting).await?;
        debug!(account = %acc.name, caps = ?se.caps, "POP3 logged in");
        Ok(se)
    }

    async fn login(
        &mut self,
        f: &Fetcher,
        acc: &AccountConfig,
        greeting: &str,
    ) -> Result<(), FetchError> {
        let user = &acc.username;
        if let Some(o) = &acc.oauth2 {
            let mech = oauth2::mechanism_name(&o.mechanism);
            for attempt in 0..2 {
                let tok = f
                    .tokens
                    .token_in(Some(&f.db), &acc.name, o, attempt > 0)
                    .await?;
                let ir =
                    oauth2::sasl_b64(&o.mechanism, user, &acc.host, acc.effective_port(), &tok);
                self.send(&format!("AUTH {mech} {ir}\r\n")).await?;
                let mut l = self.line().await?;
                if l.starts_with(b"+ ") || l == b"+" {
                    // An error challenge (RFC 7628 §3.2.2): answer empty, get the -ERR.
                    self.send("\r\n").await?;
                    l = self.line().await?;
                }
                match parse_status(&l) {
                    Some(Ok(_)) => return Ok(()),
                    Some(Err(e)) if attempt == 0 => {
                        info!(account = %acc.name, "{mech} refused ({e}); refreshing the token once");
                        f.tokens.invalidate_in(&f.db, &acc.name).await;
                    }
                    Some(Err(e)) => {
                        return Err(FetchError::Auth(format!("{}: {mech}: {e}", acc.name)));
                    }
                    None => {
                        return Err(FetchError::Protocol(format!(
                            "{}: bad AUTH answer",
                            acc.name
                        )));
                    }
                }
            }
            unreachable!("the loop returns on its second attempt");
        }
        let pass = f.password(acc).await?;
        let auth = acc.auth.as_deref().unwrap_or("auto").to_ascii_lowercase();
        let refused = |e: String| FetchError::Auth(format!("{}: {e}", acc.name));
        match auth.as_str() {
            "apop" => {
                let ts = greeting_timestamp(greeting).ok_or_else(|| {
                    FetchError::Auth(format!(
                        "{}: auth = apop but the greeting has no timestamp",
                        acc.name
                    ))
                })?;
                self.send(&format!("APOP {user} {}\r\n", apop_digest(ts, &pass)))
                    .await?;
                self.status().await?.map(|_| ()).map_err(refused)
            }
            "plain" => self.auth_plain(user, &pass).await?.map_err(refused),
            "user" | "password" => self.user_pass(user, &pass).await?.map_err(refused),
            _ => {
                if self.caps.sasl.iter().any(|m| m == "PLAIN") {
                    self.auth_plain(user, &pass).await?.map_err(refused)
                } else {
                    self.user_pass(user, &pass).await?.map_err(refused)
                }
            }
        }
    }

    async fn auth_plain(
        &mut self,
        user: &str,
        pass: &str,
    ) -> Result<Result<(), String>, FetchError> {
        let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.send(&format!("AUTH PLAIN {ir}\r\n")).await?;
        let l = self.line().await?;
        if l.starts_with(b"+") && !l.starts_with(b"+OK") {
            self.send("*\r\n").await?;
            let _ = self.line().await?;
            return Ok(Err("AUTH PLAIN: unexpected challenge".into()));
        }
        match parse_status(&l) {
            Some(Ok(_)) => Ok(Ok(())),
            Some(Err(e)) => Ok(Err(format!("AUTH PLAIN: {e}"))),
            None => Err(FetchError::Protocol(format!(
                "{}: bad AUTH answer",
                self.account
            ))),
        }
    }

    async fn user_pass(
        &mut self,
        user: &str,
        pass: &str,
    ) -> Result<Result<(), String>, FetchError> {
        self.send(&format!("USER {user}\r\n")).await?;
        if let Err(e) = self.status().await? {
            return Ok(Err(format!("USER: {e}")));
        }
        self.send(&format!("PASS {pass}\r\n")).await?;
        Ok(self
            .status()
            .await?
            .map(|_| ())
            .map_err(|e| format!("PASS: {e}")))
    }

    /// `UIDL`: (message number, unique id) for every message.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, FetchError> {
        self.command("UIDL", "UIDL (the server must support it)")
            .await?;
        let d = self.multiline(MAX_LISTING, 64 * 1024).await?;
        parse_listing(&d).map_err(|e| FetchError::Protocol(format!("{}: UIDL: {e}", self.account)))
    }

    /// `LIST`: size of every message.
    pub async fn list(&mut self) -> Result<HashMap<u32, u64>, FetchError> {
        self.command("LIST", "LIST").await?;
        let d = self.multiline(MAX_LISTING, 64 * 1024).await?;
        let l = parse_listing(&d)
            .map_err(|e| FetchError::Protocol(format!("{}: LIST: {e}", self.account)))?;
        Ok(l.into_iter()
            .filter_map(|(n, s)| s.parse().ok().map(|s| (n, s)))
            .collect())
    }

    /// Sizes of just these messages: `LIST n` for each, pipelined, when they are few
    /// and the server pipelines; the full `LIST` otherwise. A message the server no
    /// longer knows is left out.
    pub async fn list_some(&mut self, nums: &[u32]) -> Result<HashMap<u32, u64>, FetchError> {
        if nums.is_empty() {
            return Ok(HashMap::new());
        }
        if !self.caps.pipelining || nums.len() > LIST_EACH_MAX {
            return self.list().await;
        }
        let mut cmds = String::with_capacity(nums.len() * 16);
        for n in nums {
            cmds.push_str(&format!("LIST {n}\r\n"));
        }
        self.send(&cmds).await?;
        let mut out = HashMap::with_capacity(nums.len());
        for &n in nums {
            if let Ok(text) = self.status().await? {
                // "+OK n size"
                let mut w = text.split_ascii_whitespace();
                if let (Some(Ok(m)), Some(Ok(size))) = (
                    w.next().map(str::parse::<u32>),
                    w.next().map(str::parse::<u64>),
                ) && m == n
                {
                    out.insert(n, size);
                }
            }
        }
        Ok(out)
    }

    /// `RETR` for each number, pipelined when the server allows: the messages, or
    /// `None` for one the server refused (e.g. deleted meanwhile by another client).
    pub async fn retr_many(
        &mut self,
        nums: &[(u32, u64)],
        limit: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, FetchError> {
        let mut out = Vec::with_capacity(nums.len());
        if self.caps.pipelining {
            let mut cmds = String::with_capacity(nums.len() * 16);
            for (n, _) in nums {
                cmds.push_str(&format!("RETR {n}\r\n"));
            }
            self.send(&cmds).await?;
            for &(n, size) in nums {
                out.push(self.retr_answer(n, size, limit).await?);
            }
        } else {
            for &(n, size) in nums {
                self.send(&format!("RETR {n}\r\n")).await?;
                out.push(self.retr_answer(n, size, limit).await?);
            }
        }
        Ok(out)
    }

    async fn retr_answer(
        &mut self,
        n: u32,
        size: u64,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        match self.status().await? {
            Ok(_) => Ok(Some(
                self.multiline(limit as usize, size as usize + 1024).await?,
            )),
            Err(e) => {
                warn!(account = %self.account, msg = n, "RETR refused: {e}");
                Ok(None)
            }
        }
    }

    /// `DELE` for each number (pipelined when allowed).
    pub async fn dele_many(&mut self, nums: &[u32]) -> Result<(), FetchError> {
        if nums.is_empty() {
            return Ok(());
        }
        let pipelined = self.caps.pipelining;
        if pipelined {
            let mut cmds = String::new();
            for n in nums {
                cmds.push_str(&format!("DELE {n}\r\n"));
            }
            self.send(&cmds).await?;
        }
        let mut first_err = None;
        for n in nums {
            if !pipelined {
                self.send(&format!("DELE {n}\r\n")).await?;
            }
            if let Err(e) = self.status().await? {
                first_err.get_or_insert(format!("DELE {n}: {e}"));
            }
        }
        match first_err {
            Some(e) => Err(FetchError::Protocol(format!("{}: {e}", self.account))),
            None => Ok(()),
        }
    }

    /// `QUIT`: the server commits the deletions (UPDATE state).
    pub async fn quit(mut self) -> Result<(), FetchError> {
        self.command("QUIT", "QUIT (deletions not committed)")
            .await?;
        let _ = self.s.shutdown().await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// One poll
// ---------------------------------------------------------------------------------

/// What was downloaded in one batch, waiting for its delivery.
struct Batch {
    uidls: Vec<String>,
    sizes: Vec<u64>,
    task: tokio::task::JoinHandle<Vec<DeliveryReport>>,
}

/// One poll of a POP3 account.
pub async fn poll(
    f: &Fetcher,
    acc: &AccountConfig,
    out: &mut PollOutcome,
) -> Result<(), FetchError> {
    let folder = db::fetch::POP3_FOLDER;
    let name = acc.name.clone();
    // What this account already delivered is read while the server is asked for
    // its UIDL listing (a re-poll with nothing new is mostly this wait).
    let n1 = name.clone();
    let seen_fut = f.db.run(move |c| db::fetch::seen_set(c, &n1, folder));
    let net = async {
        let mut se = Session::open(f, acc).await?;
        let listing = se.uidl().await?;
        Ok::<_, FetchError>((se, listing))
    };
    let (net, seen) = tokio::join!(net, seen_fut);
    let (mut se, listing) = net?;
    let mut seen = seen?;
    let mut num_of: HashMap<String, u32> = listing.iter().map(|(n, u)| (u.clone(), *n)).collect();

    // Forget what is no longer on the server.
    let gone: Vec<String> = seen
        .iter()
        .filter(|u| !num_of.contains_key(*u))
        .cloned()
        .collect();
    if !gone.is_empty() {
        for u in &gone {
            seen.remove(u);
        }
        let n2 = name.clone();
        f.db.run(move |c| db::fetch::commit_step(c, &n2, folder, &[], &gone, None, db::now()))
            .await?;
    }

    // Plan: what to delete now (already delivered), what to download.
    let mut delete_now: Vec<String> = Vec::new();
    if !acc.keep {
        delete_now.extend(
            listing
                .iter()
                .filter(|(_, u)| seen.contains(u))
                .map(|(_, u)| u.clone()),
        );
    } else if let Some(days) = acc.delete_after_days {
        let (n3, before) = (name.clone(), db::now() - i64::from(days) * 86_400);
        let old =
            f.db.run(move |c| db::fetch::seen_before(c, &n3, folder, before))
                .await?;
        delete_now.extend(old.into_iter().filter(|u| num_of.contains_key(u)));
    }
    let max = f.max_message();
    let wanted: Vec<&(u32, String)> = listing
        .iter()
        .filter(|(_, u)| acc.fetchall || !seen.contains(u))
        .collect();
    // Sizes only for what may be downloaded: nothing new, no LIST.
    let sizes = se
        .list_some(&wanted.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        .await?;
    let mut todo: Vec<(String, u64)> = Vec::new();
    for (n, u) in wanted {
        let size = sizes.get(n).copied().unwrap_or(0);
        if acc.limit.is_some_and(|l| size > l) || size > max {
            debug!(account = %name, uidl = %u, size, "over the size limit: left on the server");
            out.skipped += 1;
            continue;
        }
        if acc.fetchlimit.is_some_and(|l| todo.len() >= l as usize) {
            out.skipped += 1;
            continue;
        }
        todo.push((u.clone(), size));
    }
    f.progress
        .start(&name, todo.len() as u64, todo.iter().map(|t| t.1).sum());
    info!(account = %name, on_server = listing.len(), new = todo.len(), delete = delete_now.len(), "POP3 poll");

    let mut deleted_uncommitted = 0usize;
    if !delete_now.is_empty() {
        let nums: Vec<u32> = delete_now
            .iter()
            .filter_map(|u| num_of.get(u).copied())
            .collect();
        se.dele_many(&nums).await?;
        deleted_uncommitted += nums.len();
        out.deleted += nums.len() as u64;
    }

    // Download in batches; deliver one batch while the next downloads.
    let mut pending: Option<Batch> = None;
    let mut idx = 0;
    while idx < todo.len() || pending.is_some() {
        if f.shutdown.is_cancelled() {
            // Finish the batch in hand, download nothing more.
            todo.truncate(idx);
        }
        let mut next = None;
        if idx < todo.len() {
            let mut end = idx;
            let mut bytes = 0;
            while end < todo.len() && end - idx < BATCH && (bytes < BATCH_BYTES || end == idx) {
                bytes += todo[end].1;
                end += 1;
            }
            let part = &todo[idx..end];
            idx = end;
            let nums: Vec<(u32, u64)> = part
                .iter()
                .map(|(u, s)| (num_of.get(u).copied().unwrap_or(0), *s))
                .collect();
            let msgs = se.retr_many(&nums, max).await?;
            let mut uidls = Vec::new();
            let mut szs = Vec::new();
            let mut incoming: Vec<Incoming> = Vec::new();
            for ((u, _), m) in part.iter().zip(msgs) {
                let Some(raw) = m else { continue };
                szs.push(raw.len() as u64);
                uidls.push(u.clone());
                incoming.push(f.incoming(acc, raw, format!("pop3:{}:{}", name, u)));
            }
            let d = f.deliver.clone();
            next = Some(Batch {
                uidls,
                sizes: szs,
                task: tokio::spawn(async move { d.deliver_batch(incoming).await }),
            });
        }
        if let Some(b) = pending.take() {
            let done = finish_batch(f, acc, b, out).await?;
            if !acc.keep {
                let nums: Vec<u32> = done.iter().filter_map(|u| num_of.get(u).copied()).collect();
                se.dele_many(&nums).await?;
                deleted_uncommitted += nums.len();
                out.deleted += nums.len() as u64;
            }
        }
        pending = next;
        if deleted_uncommitted >= COMMIT_EVERY && (idx < todo.len() || pending.is_some()) {
            // Commit the deletions so far; message numbers change with the new session.
            se.quit().await?;
            deleted_uncommitted = 0;
            se = Session::open(f, acc).await?;
            num_of = se.uidl().await?.into_iter().map(|(n, u)| (u, n)).collect();
            debug!(account = %name, "QUIT + reconnect to commit deletions");
        }
    }
    se.quit().await?;
    Ok(())
}

/// Waits for a batch's delivery, records the final ones as seen (one commit), and
/// returns their UIDLs (the ones that may now be deleted).
async fn finish_batch(
    f: &Fetcher,
    acc: &AccountConfig,
    b: Batch,
    out: &mut PollOutcome,
) -> Result<Vec<String>, FetchError> {
    let reports = b
        .task
        .await
        .map_err(|e| FetchError::Delivery(format!("delivery task: {e}")))?;
    if reports.len() != b.uidls.len() {
        return Err(FetchError::Delivery(format!(
            "delivery returned {} reports for {} messages",
            reports.len(),
            b.uidls.len()
        )));
    }
    let mut done = Vec::new();
    let mut bytes = 0;
    for ((u, r), size) in b.uidls.into_iter().zip(&reports).zip(b.sizes) {
        match fate(r) {
            Fate::Final => {
                done.push(u);
                bytes += size;
            }
            Fate::Deferred(why) => {
                warn!(account = %acc.name, uidl = %u, "delivery deferred: {why}");
                out.deferred += 1;
            }
        }
    }
    let (name, rows) = (acc.name.clone(), done.clone());
    f.db.run(move |c| {
        db::fetch::commit_step(
            c,
            &name,
            db::fetch::POP3_FOLDER,
            &rows,
            &[],
            None,
            db::now(),
        )
    })
    .await?;
    out.fetched += done.len() as u64;
    out.bytes += bytes;
    f.progress.advance(&acc.name, done.len() as u64, bytes);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to a decoder in pieces of `step` bytes, the way a socket would.
    fn decode_in_pieces(wire: &[u8], step: usize) -> (Vec<u8>, usize) {
        let mut d = DotDecoder::new(1 << 20);
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut consumed_total = 0;
        loop {
            let take = step.min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + take]);
            fed += take;
            match d.feed(&buf).unwrap() {
                Feed::Done(n) => return (d.out, consumed_total + n),
                Feed::Incomplete(n) => {
                    consumed_total += n;
                    buf.drain(..n);
                    assert!(fed < wire.len(), "ran out of input");
                }
            }
        }
    }

    #[test]
    fn dot_unstuffing_in_every_fragment_size() {
        // The first lone "." line ends the message; what follows is the next answer.
        let wire = b"Subject: x\r\n\r\n..leading dot\r\n.\r\n+OK next";
        let (out, used) = decode_in_pieces(wire, wire.len());
        assert_eq!(out, b"Subject: x\r\n\r\n.leading dot\r\n".to_vec());
        assert_eq!(&wire[used..], b"+OK next");
        let wire = b"a\r\n..b\r\n...\r\n.c\r\nd.\r\n\r\n.\r\nREST";
        let want = b"a\r\n.b\r\n..\r\nc\r\nd.\r\n\r\n".to_vec();
        for step in 1..=wire.len() {
            let (out, used) = decode_in_pieces(wire, step);
            assert_eq!(out, want, "step {step}");
            assert_eq!(&wire[used..], b"REST", "step {step}");
        }
    }

    #[test]
    fn empty_message_and_bare_lf() {
        let (out, used) = decode_in_pieces(b".\r\n", 1);
        assert!(out.is_empty());
        assert_eq!(used, 3);
        let (out, _) = decode_in_pieces(b"x\n..y\n.\n", 2);
        assert_eq!(out, b"x\n.y\n".to_vec());
    }

    #[test]
    fn bounds() {
        let mut d = DotDecoder::new(10);
        assert!(d.feed(b"0123456789ABCDEF\r\n.\r\n").is_err());
        let mut d = DotDecoder::new(usize::MAX);
        let long = vec![b'.'; MAX_PENDING + 2];
        assert!(d.feed(&long).is_err());
    }

    #[test]
    fn status_greeting_apop() {
        assert_eq!(parse_status(b"+OK hi"), Some(Ok("hi".into())));
        assert_eq!(
            parse_status(b"-ERR [AUTH] no"),
            Some(Err("[AUTH] no".into()))
        );
        assert_eq!(parse_status(b"* BYE"), None);
        let g = "POP3 server ready <1896.697170952@dbc.mtview.ca.us>";
        let ts = greeting_timestamp(g).unwrap();
        // The example of RFC 1939 §7.
        assert_eq!(
            apop_digest(ts, "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert_eq!(greeting_timestamp("Dovecot ready."), None);
    }

    #[test]
    fn listings_and_capa() {
        let l = parse_listing(b"1 000000017c1e2a5b\r\n2 abc\r\n").unwrap();
        assert_eq!(l, vec![(1, "000000017c1e2a5b".into()), (2, "abc".into())]);
        assert!(parse_listing(b"x y\r\n").is_err());
        assert!(parse_listing(b"1\r\n").is_err());
        let c = parse_capa(
            b"CAPA\r\nTOP\r\nUIDL\r\nSTLS\r\nPIPELINING\r\nSASL PLAIN xoauth2\r\nUSER\r\n",
        );
        assert!(c.stls && c.pipelining && c.uidl && c.user);
        assert_eq!(c.sasl, vec!["PLAIN", "XOAUTH2"]);
    }
}
