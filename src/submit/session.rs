//! One SMTP conversation: greeting, EHLO, STARTTLS, AUTH, the mail transaction and
//! DATA, with PIPELINING (replies are buffered and written when the client's input
//! runs dry, so a pipelined group gets its replies in one write, in order).
//!
//! # Security
//! Untrusted network input. Command lines are bounded ([`MAX_COMMAND`]), DATA lines
//! too ([`MAX_DATA_LINE`]), the message by `limits.message_size`, recipients by
//! `submit.max_recipients`, silence by `submit.idle_timeout`. After STARTTLS every
//! byte the client sent ahead of the handshake is discarded (CVE-2011-0411 class) and
//! the session starts over (RFC 3207). Failed AUTH is answered after a growing delay.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tracing::{debug, info, warn};

use super::policy::{self, RcptDecision};
use super::proto::{self, Command, Path, Reply};
use super::{DataCheck, DataVerdict};
use crate::auth::FailureDelays;
use crate::config::Config;
use crate::message::{Envelope, Source};
use crate::net::Stream;
use crate::queue::{NewMessage, NewRcpt, Queue};

/// Longest command line (RFC 5321 says 512; AUTH responses may be longer).
pub const MAX_COMMAND: usize = 4096;
/// Longest line inside DATA (RFC 5321 says 1000; real mail is sloppier).
pub const MAX_DATA_LINE: usize = 1 << 20;

/// What every session of a listener shares.
#[derive(Clone)]
pub struct Shared {
    pub cfg: Arc<Config>,
    pub queue: Queue,
    pub tls: Option<async_native_tls::TlsAcceptor>,
    pub delays: Arc<FailureDelays>,
    pub check: Option<Arc<dyn DataCheck>>,
    /// Cancelled when the daemon stops: a session finishes its current command,
    /// answers 421 and closes.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The transport under a session: the network (may turn into TLS), or anything else
/// (stdin/stdout for `sendmail -bs`).
pub enum Io {
    Net(Stream),
    Other(Pin<Box<dyn AsyncReadWrite>>),
}

/// Read + write, boxed.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncReadWrite for T {}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Net(s) => Pin::new(s).poll_read(cx, buf),
            Io::Other(s) => s.as_mut().poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Net(s) => Pin::new(s).poll_write(cx, buf),
            Io::Other(s) => s.as_mut().poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Net(s) => Pin::new(s).poll_flush(cx),
            Io::Other(s) => s.as_mut().poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Net(s) => Pin::new(s).poll_shutdown(cx),
            Io::Other(s) => s.as_mut().poll_shutdown(cx),
        }
    }
}

/// Who is on the other end.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Listener name: "submission", "smtp" or "sendmail-bs".
    pub service: &'static str,
    /// A local `sendmail -bs` caller: may relay, no AUTH needed (Postfix's -bs).
    pub local_user: Option<String>,
}

#[derive(Default)]
struct Transaction {
    sender: Option<Option<String>>, // Some(None) = <>
    params: proto::MailParams,
    rcpts: Vec<NewRcpt>,
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line (through `\n`) into `buf`, at most `max` bytes; a longer line is
/// skipped to its end and reported as `TooLong`.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                LineRead::Eof
            } else if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
        let (take, done) = match avail.iter().position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        r.consume(take);
        if done {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

/// Runs one session to its end. Errors are logged here; they never reach the listener.
pub async fn run(shared: Shared, io: Io, peer: Peer) {
    let mut s = Session {
        shared,
        peer,
        helo: None,
        esmtp: false,
        tls: false,
        auth_user: None,
        tx: Transaction::default(),
        out: Vec::with_capacity(1024),
        auth_failures: 0,
    };
    s.tls = matches!(&io, Io::Net(st) if st.is_tls());
    let greeting = Reply::new(220, "", format!("{} ESMTP zolder", s.shared.cfg.hostname));
    s.reply(greeting);
    let mut io = Some(io);
    loop {
        match s.serve(io.take().expect("io")).await {
            Ok(Some(next)) => io = Some(next), // STARTTLS: go round with the TLS stream
            Ok(None) => break,
            Err(e) => {
                debug!(error = %e, "session ended");
                break;
            }
        }
    }
}

struct Session {
    shared: Shared,
    peer: Peer,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    auth_user: Option<String>,
    tx: Transaction,
    out: Vec<u8>,
    auth_failures: u32,
}

impl Session {
    fn reply(&mut self, r: Reply) {
        self.out.extend_from_slice(r.to_wire().as_bytes());
    }

    fn may_auth(&self) -> bool {
        self.tls
            || self.peer.addr.ip().is_loopback()
            || (self.shared.cfg.allow_plaintext_auth
                && policy::in_lan(&self.shared.cfg, self.peer.addr.ip()))
    }

    /// Bare LF / CR in DATA: refused on port 25 and from unauthenticated clients
    /// off the LAN; normalised to CRLF for LAN, authenticated and `sendmail -bs`
    /// submission (README "Security").
    fn bare_newlines(&self) -> proto::BareNewlines {
        let trusted = self.peer.local_user.is_some()
            || self.auth_user.is_some()
            || policy::in_lan(&self.shared.cfg, self.peer.addr.ip());
        if self.peer.service != "smtp" && trusted {
            proto::BareNewlines::Normalise
        } else {
            proto::BareNewlines::Reject
        }
    }

    fn may_relay(&self) -> bool {
        self.peer.local_user.is_some()
            || self.auth_user.is_some()
            || policy::in_lan(&self.shared.cfg, self.peer.addr.ip())
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        if !self.out.is_empty() {
            w.write_all(&self.out).await?;
            w.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Serves until QUIT/EOF (`Ok(None)`) or STARTTLS (`Ok(Some(tls stream))`).
    async fn serve(&mut self, io: Io) -> std::io::Result<Option<Io>> {
        let mut rd = BufReader::with_capacity(64 * 1024, io);
        let idle = Duration::from_secs(self.shared.cfg.submit.idle_timeout.max(10));
        let mut line = Vec::with_capacity(512);
        loop {
            if rd.buffer().is_empty() {
                self.flush(rd.get_mut()).await?;
            }
            let shutdown = self.shared.shutdown.clone();
            let r = tokio::select! {
                r = tokio::time::timeout(idle, read_line(&mut rd, &mut line, MAX_COMMAND)) => r,
                _ = shutdown.cancelled() => {
                    self.reply(Reply::new(421, "4.3.2", format!("{} Service shutting down", self.shared.cfg.hostname)));
                    self.flush(rd.get_mut()).await?;
                    return Ok(None);
                }
            };
            let r = match r {
                Ok(r) => r?,
                Err(_) => {
                    self.reply(Reply::new(
                        421,
                        "4.4.2",
                        format!("{} Error: timeout exceeded", self.shared.cfg.hostname),
                    ));
                    self.flush(rd.get_mut()).await?;
                    return Ok(None);
                }
            };
            match r {
                LineRead::Eof => return Ok(None),
                LineRead::TooLong => {
                    self.reply(Reply::new(500, "5.5.2", "Error: line too long"));
                    continue;
                }
                LineRead::Line => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']).to_string();
            let cmd = match proto::parse(&text) {
                Ok(c) => c,
                Err(r) => {
                    self.reply(r);
                    continue;
                }
            };
            match cmd {
                Command::Ehlo(d) => {
                    self.helo = Some(d);
                    self.esmtp = true;
                    self.tx = Transaction::default();
                    let cfg = &self.shared.cfg;
                    let mut lines = vec![
                        format!("{} Hello {}", cfg.hostname, self.peer.addr.ip()),
                        "PIPELINING".into(),
                        format!("SIZE {}", cfg.limits.message_size),
                        "8BITMIME".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "SMTPUTF8".into(),
                        "DSN".into(),
                    ];
                    if self.shared.tls.is_some() && !self.tls && matches!(rd.get_ref(), Io::Net(_))
                    {
                        lines.push("STARTTLS".into());
                    }
                    if self.may_auth() && self.peer.local_user.is_none() {
                        lines.push("AUTH PLAIN LOGIN".into());
                    }
                    self.reply(Reply::multi(250, lines));
                }
                Command::Helo(d) => {
                    self.helo = Some(d);
                    self.esmtp = false;
                    self.tx = Transaction::default();
                    let h = self.shared.cfg.hostname.clone();
                    self.reply(Reply::new(250, "", h));
                }
                Command::StartTls => {
                    let can = self.shared.tls.is_some()
                        && !self.tls
                        && matches!(rd.get_ref(), Io::Net(_));
                    if !can {
                        self.reply(Reply::new(454, "4.7.0", "TLS not available"));
                        continue;
                    }
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    self.flush(rd.get_mut()).await?;
                    if !rd.buffer().is_empty() {
                        warn!(peer = %self.peer.addr, "client pipelined data after STARTTLS; discarded");
                    }
                    // into_inner drops whatever was buffered: nothing sent before the
                    // handshake may count as said inside TLS.
                    let Io::Net(stream) = rd.into_inner() else {
                        unreachable!()
                    };
                    let acceptor = self.shared.tls.clone().expect("checked");
                    let tls = stream.accept_tls(&acceptor).await?;
                    self.tls = true;
                    self.helo = None;
                    self.esmtp = false;
                    self.auth_user = None;
                    self.tx = Transaction::default();
                    return Ok(Some(Io::Net(tls)));
                }
                Command::Auth { mechanism, initial } => {
                    self.auth(&mut rd, &mechanism, initial).await?;
                }
                Command::Mail { from, params } => {
                    if self.helo.is_none() {
                        self.reply(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
                    } else if self.tx.sender.is_some() {
                        self.reply(Reply::new(503, "5.5.1", "Error: nested MAIL command"));
                    } else if params
                        .size
                        .is_some_and(|s| s > self.shared.cfg.limits.message_size)
                    {
                        self.reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
                    } else {
                        let sender = match from {
                            Path::Null => None,
                            Path::Addr(a) => Some(a),
                        };
                        if let Some(r) = self.check_sender(sender.as_deref()) {
                            self.reply(r);
                            continue;
                        }
                        self.tx.sender = Some(sender);
                        self.tx.params = params;
                        self.reply(Reply::new(250, "2.1.0", "Ok"));
                    }
                }
                Command::Rcpt { to, params } => {
                    if self.tx.sender.is_none() {
                        self.reply(Reply::new(503, "5.5.1", "Error: need MAIL command"));
                        continue;
                    }
                    if self.tx.rcpts.len() >= self.shared.cfg.submit.max_recipients {
                        self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
                        continue;
                    }
                    let raw = match to {
                        Path::Null => {
                            self.reply(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
                            continue;
                        }
                        Path::Addr(a) => a,
                    };
                    match policy::check_rcpt(&self.shared.cfg, &raw, self.may_relay()) {
                        RcptDecision::Reject(r) => {
                            info!(peer = %self.peer.addr, rcpt = %raw, code = r.code, "recipient refused");
                            self.reply(r)
                        }
                        RcptDecision::Local | RcptDecision::Remote => {
                            self.tx.rcpts.push(NewRcpt {
                                addr: raw,
                                notify: params.notify,
                                orcpt: params.orcpt,
                            });
                            // A sender with a real recipient is a client being served:
                            // out of the listener's pre-login budget (net::listener).
                            crate::net::listener::authenticated();
                            self.reply(Reply::new(250, "2.1.5", "Ok"));
                        }
                    }
                }
                Command::Data => {
                    if self.tx.sender.is_none() {
                        self.reply(Reply::new(503, "5.5.1", "Error: need MAIL command"));
                    } else if self.tx.rcpts.is_empty() {
                        self.reply(Reply::new(554, "5.5.1", "Error: no valid recipients"));
                    } else {
                        self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
                        self.flush(rd.get_mut()).await?;
                        self.data(&mut rd, idle).await?;
                    }
                }
                Command::Bdat => self.reply(Reply::new(502, "5.5.1", "Error: BDAT not offered")),
                Command::Rset => {
                    self.tx = Transaction::default();
                    self.reply(Reply::new(250, "2.0.0", "Ok"));
                }
                Command::Noop => self.reply(Reply::new(250, "2.0.0", "Ok")),
                Command::Vrfy | Command::Expn => self.reply(Reply::new(
                    252,
                    "2.0.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                )),
                Command::Help => self.reply(Reply::new(214, "2.0.0", "See RFC 5321")),
                Command::Quit => {
                    self.reply(Reply::new(221, "2.0.0", "Bye"));
                    self.flush(rd.get_mut()).await?;
                    let _ = rd.get_mut().shutdown().await;
                    return Ok(None);
                }
            }
        }
    }

    /// Envelope sender rules: syntax, relay tricks, and for AUTH users ownership.
    fn check_sender(&self, sender: Option<&str>) -> Option<Reply> {
        let s = sender?;
        if crate::message::Address::parse(s).is_none()
            || s.contains(['%', '!'])
            || s.starts_with('@')
        {
            return Some(Reply::new(501, "5.1.7", "Bad sender address syntax"));
        }
        if let Some(u) = &self.auth_user
            && self.shared.cfg.submit.sender_login_match
            && !policy::owns_sender(&self.shared.cfg, u, s)
        {
            warn!(peer = %self.peer.addr, user = %u, sender = %s, "sender not owned by login");
            return Some(Reply::new(
                553,
                "5.7.1",
                format!("Sender address rejected: not owned by user {u}"),
            ));
        }
        None
    }

    /// AUTH PLAIN / LOGIN.
    async fn auth(
        &mut self,
        rd: &mut BufReader<Io>,
        mech: &str,
        initial: Option<String>,
    ) -> std::io::Result<()> {
        if !self.may_auth() || self.peer.local_user.is_some() {
            self.reply(Reply::new(
                503,
                "5.5.1",
                "Error: authentication not enabled (use STARTTLS first)",
            ));
            return Ok(());
        }
        if self.auth_user.is_some() {
            self.reply(Reply::new(503, "5.5.1", "Error: already authenticated"));
            return Ok(());
        }
        if self.tx.sender.is_some() {
            self.reply(Reply::new(
                503,
                "5.5.1",
                "Error: MAIL transaction in progress",
            ));
            return Ok(());
        }
        let mut line = Vec::new();
        let mut ask = async |s: &mut Session,
                             rd: &mut BufReader<Io>,
                             prompt: &str|
               -> std::io::Result<Option<String>> {
            s.reply(Reply::new(334, "", prompt.to_string()));
            s.flush(rd.get_mut()).await?;
            match read_line(rd, &mut line, MAX_COMMAND).await? {
                LineRead::Line => {
                    let t = String::from_utf8_lossy(&line).trim_end().to_string();
                    Ok(if t == "*" { None } else { Some(t) })
                }
                _ => Ok(None),
            }
        };
        let creds = match mech {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) if i != "=" => Some(i),
                    Some(_) => Some(String::new()),
                    None => ask(self, rd, "").await?,
                };
                match resp {
                    None => {
                        self.reply(Reply::new(501, "5.7.0", "Authentication aborted"));
                        return Ok(());
                    }
                    Some(r) => proto::decode_plain(&r),
                }
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => Some(i),
                    None => ask(self, rd, "VXNlcm5hbWU6").await?,
                };
                let Some(user) = user.and_then(|u| proto::decode_b64_line(&u)) else {
                    self.reply(Reply::new(501, "5.7.0", "Authentication aborted"));
                    return Ok(());
                };
                let Some(pass) = ask(self, rd, "UGFzc3dvcmQ6")
                    .await?
                    .and_then(|p| proto::decode_b64_line(&p))
                else {
                    self.reply(Reply::new(501, "5.7.0", "Authentication aborted"));
                    return Ok(());
                };
                Some((user, pass))
            }
            _ => {
                self.reply(Reply::new(504, "5.5.4", "Unrecognized authentication type"));
                return Ok(());
            }
        };
        let ip = self.peer.addr.ip();
        let delays = self.shared.delays.clone();
        let login = creds.as_ref().map(|c| c.0.as_str()).unwrap_or_default();
        let Ok(guess) = delays.begin(ip, login) else {
            warn!(peer = %self.peer.addr, "AUTH refused: too many failures from this address");
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Error: too many authentication failures",
            ));
            self.flush(rd.get_mut()).await?;
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "too many authentication failures",
            ));
        };
        let ok = match &creds {
            Some((u, p)) => verify(&self.shared.cfg, u, p).await,
            None => false,
        };
        if ok {
            let user = creds.map(|c| c.0).unwrap_or_default();
            guess.succeeded();
            crate::net::listener::authenticated();
            info!(peer = %self.peer.addr, user = %user, "authenticated");
            self.auth_user = Some(user);
            self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
        } else {
            self.auth_failures += 1;
            let d = guess.failed();
            warn!(peer = %self.peer.addr, user = %creds.map(|c| c.0).unwrap_or_default(), "authentication failed");
            tokio::time::sleep(d).await;
            self.reply(Reply::new(535, "5.7.8", "Error: authentication failed"));
        }
        Ok(())
    }

    /// Reads the message after 354, then queues it and answers.
    async fn data(&mut self, rd: &mut BufReader<Io>, idle: Duration) -> std::io::Result<()> {
        let limit = self.shared.cfg.limits.message_size as usize;
        let mut msg: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut line = Vec::with_capacity(1024);
        let mut too_big = false;
        let mut bad_line = false;
        let mut framer = proto::DataFramer::new(self.bare_newlines());
        loop {
            let r = match tokio::time::timeout(idle, read_line(rd, &mut line, MAX_DATA_LINE)).await
            {
                Ok(r) => r?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timeout in DATA",
                    ));
                }
            };
            match r {
                LineRead::Eof => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "EOF in DATA",
                    ));
                }
                LineRead::TooLong => {
                    bad_line = true;
                    continue;
                }
                LineRead::Line => {}
            }
            match framer.line(&line) {
                proto::DataLine::End => break,
                proto::DataLine::Content(l) => {
                    if msg.len() + l.len() > limit {
                        too_big = true;
                    } else if !too_big {
                        msg.extend_from_slice(&l);
                    }
                }
            }
        }
        let tx = std::mem::take(&mut self.tx);
        if too_big {
            self.reply(Reply::new(552, "5.3.4", "Error: message file too big"));
            return Ok(());
        }
        if bad_line {
            self.reply(Reply::new(500, "5.5.2", "Error: line too long in message"));
            return Ok(());
        }
        if framer.bare && self.bare_newlines() == proto::BareNewlines::Reject {
            info!(peer = %self.peer.addr, service = self.peer.service, "message refused: bare CR or LF in DATA");
            self.reply(Reply::new(
                550,
                "5.5.2",
                "Error: bare <CR> or <LF> received; lines must end in <CR><LF>",
            ));
            return Ok(());
        }
        let sender = tx.sender.clone().flatten();
        let id = crate::queue::new_id();
        let cfg = self.shared.cfg.clone();

        // Content check (scan stage) before we answer.
        if let Some(check) = &self.shared.check {
            let env = Envelope::new(
                sender.clone(),
                tx.rcpts.iter().map(|r| r.addr.clone()).collect(),
                Source::Submit {
                    peer: self.peer.addr,
                    helo: self.helo.clone().unwrap_or_default(),
                    auth_user: self.auth_user.clone(),
                    tls: self.tls,
                },
            );
            match check.check(&msg, &env).await {
                DataVerdict::Accept => {}
                DataVerdict::Reject(code, text) => {
                    info!(peer = %self.peer.addr, code, reason = %text, "message refused by content check");
                    self.reply(Reply::new(code.clamp(500, 599), "5.7.1", text));
                    return Ok(());
                }
                DataVerdict::TempFail(text) => {
                    self.reply(Reply::new(451, "4.7.1", text));
                    return Ok(());
                }
            }
        }

        // Trace header, then Date/Message-ID when missing (local submission).
        let proto_name = match (self.esmtp, self.tls, self.auth_user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let for_part = if tx.rcpts.len() == 1 {
            format!("\r\n\tfor <{}>", tx.rcpts[0].addr)
        } else {
            String::new()
        };
        let received = format!(
            "Received: from {} ({})\r\n\tby {} (zolder) with {} id {}{};\r\n\t{}\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            match &self.peer.local_user {
                Some(u) => format!("local user {u}"),
                None => format!("[{}]", self.peer.addr.ip()),
            },
            cfg.hostname,
            proto_name,
            id,
            for_part,
            crate::queue::rfc2822_now()
        );
        let body = crate::queue::complete_headers(msg, &cfg.hostname, &id);
        let mut bytes = Vec::with_capacity(received.len() + body.len());
        bytes.extend_from_slice(received.as_bytes());
        bytes.extend_from_slice(&body);

        let source = match &self.peer.local_user {
            Some(u) => format!("sendmail-bs:{u}"),
            None => format!("{}:{}", self.peer.service, self.peer.addr),
        };
        let n_rcpts = tx.rcpts.len();
        let m = NewMessage {
            id: Some(id),
            sender,
            recipients: tx.rcpts,
            bytes,
            source,
            envid: tx.params.envid,
            ret: tx.params.ret,
            auth_user: self.auth_user.clone(),
        };
        match self.shared.queue.enqueue(m).await {
            Ok(id) => {
                info!(peer = %self.peer.addr, queue_id = %id, rcpts = n_rcpts, "queued");
                self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
            }
            Err(e) => {
                warn!(peer = %self.peer.addr, error = %e, "cannot queue message");
                self.reply(Reply::new(451, "4.3.0", "Error: queue file write error"));
            }
        }
        Ok(())
    }
}

/// Checks a LAN user's password: the database first (`zolder user add`), then
/// `password_hash` in the config. argon2 runs on a blocking thread.
pub async fn verify(cfg: &Arc<Config>, user: &str, pass: &str) -> bool {
    let cfg = cfg.clone();
    let user = user.to_string();
    let pass = pass.to_string();
    crate::auth::run_verification(move || {
        let from_db = crate::db::open(&cfg.db_path())
            .ok()
            .and_then(|c| crate::db::users::password_hash(&c, &user).ok().flatten());
        let hash = from_db.or_else(|| cfg.user(&user).and_then(|u| u.password_hash.clone()));
        match hash {
            Some(h) => crate::auth::verify_password(&pass, &h),
            None => {
                // Same work for unknown users, so timing does not tell who exists.
                let _ = crate::auth::verify_password(&pass, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE");
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}
