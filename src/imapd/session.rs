//! One client connection: reads commands through the framer, checks them against the
//! state's allow-list, runs the matching `op/*` handler, and sends the untagged
//! updates other sessions caused before each tagged completion.
//!
//! States (RFC 3501 §3): NotAuthenticated → Authenticated → Selected → Logout.
//!
//! # Security
//! Talks to any LAN client. Nothing it sends is trusted: commands are framed with
//! bounded lines and literals, the connection is dropped after 60 s idle before
//! login and 30 min after, LOGIN/AUTHENTICATE are refused in plain text except on
//! loopback (unless `allow_plaintext_auth`), failed logins are delayed per address.
//! Under COMPRESS=DEFLATE the bytes are inflated at most 16 KiB at a time before
//! the framer sees them, so its bounds hold for the inflated stream.
//! It reads and writes only the logged-in user's mailboxes, through [`Backend`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::backend::{Backend, StoreError};
use super::compress::Deflate;
use super::proto::{Command, Frame, Framer, Request, parse_command_opts, response};
use super::server::Shared;
use super::view::View;
use crate::net::Stream;

/// Bytes of one command line outside literals.
pub const MAX_LINE: usize = 64 * 1024;
/// Idle time allowed before login.
pub const PRELOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle time allowed after login (RFC 3501 §5.4: at least 30 minutes).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Flush the output buffer once it holds this much.
const FLUSH_AT: usize = 64 * 1024;
/// Most bytes inflated per read under COMPRESS=DEFLATE before the framer checks its
/// limits again.
const INFLATE_CHUNK: usize = 16 * 1024;

/// The session's protocol state.
#[derive(Debug)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<View>),
    Logout,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::NotAuthenticated => "not-authenticated",
            State::Authenticated => "authenticated",
            State::Selected(_) => "selected",
            State::Logout => "logout",
        }
    }
}

/// Which commands each state accepts (RFC 3501 §6).
pub fn allowed(state: &State, cmd: &Command) -> bool {
    use Command::*;
    let any = matches!(cmd, Capability | Noop | Logout | Id(_));
    match state {
        State::NotAuthenticated => {
            any || matches!(cmd, StartTls | Authenticate { .. } | Login { .. })
        }
        State::Authenticated => {
            any || matches!(
                cmd,
                Select { .. }
                    | Create { .. }
                    | Delete(_)
                    | Rename { .. }
                    | Subscribe(_)
                    | Unsubscribe(_)
                    | List(_)
                    | Lsub { .. }
                    | Namespace
                    | Status { .. }
                    | Append { .. }
                    | AppendMany { .. }
                    | Idle
                    | Enable(_)
                    | GetQuota(_)
                    | GetQuotaRoot(_)
                    | SetQuota(_)
                    | Compress(_)
            )
        }
        State::Selected(_) => !matches!(cmd, StartTls | Authenticate { .. } | Login { .. }),
        State::Logout => false,
    }
}

/// How a command ended, for its tagged response.
#[derive(Debug)]
pub struct Reply {
    pub status: &'static str,
    pub code: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            status: "OK",
            code: None,
            text: text.into(),
        }
    }
    pub fn no(text: impl Into<String>) -> Reply {
        Reply {
            status: "NO",
            code: None,
            text: text.into(),
        }
    }
    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            status: "BAD",
            code: None,
            text: text.into(),
        }
    }
    pub fn code(mut self, code: impl Into<String>) -> Reply {
        self.code = Some(code.into());
        self
    }
}

/// A failure that ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by client")]
    Closed,
    #[error("idle timeout")]
    Timeout,
    #[error("server shutting down")]
    Shutdown,
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

/// One connection's session.
pub struct Session {
    pub(crate) stream: Option<Stream>,
    pub(crate) framer: Framer,
    pub(crate) out: Vec<u8>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
    pub(crate) state: State,
    pub(crate) user: Option<String>,
    /// CONDSTORE enabled (ENABLE, SELECT (CONDSTORE), or a MODSEQ-using command).
    pub(crate) condstore: bool,
    /// QRESYNC enabled (RFC 7162 §3.2.3): VANISHED instead of EXPUNGE.
    pub(crate) qresync: bool,
    /// UTF8=ACCEPT enabled (RFC 6855): mailbox names and strings in UTF-8.
    pub(crate) utf8: bool,
    /// IMAP4rev2 enabled (RFC 9051): its responses instead of IMAP4rev1's.
    pub(crate) rev2: bool,
    /// COMPRESS=DEFLATE active (RFC 4978).
    pub(crate) deflate: Option<Box<Deflate>>,
}

impl Session {
    pub fn new(stream: Stream, peer: SocketAddr, shared: Arc<Shared>) -> Session {
        let max_literal = shared.max_literal();
        Session {
            stream: Some(stream),
            framer: Framer::new(MAX_LINE, max_literal).pre_auth(),
            out: Vec::new(),
            shared,
            peer,
            state: State::NotAuthenticated,
            user: None,
            condstore: false,
            qresync: false,
            utf8: false,
            rev2: false,
            deflate: None,
        }
    }

    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        self.shared.backend.clone()
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    /// Plain-text passwords are accepted over TLS, from loopback, or when configured.
    pub(crate) fn auth_allowed(&self) -> bool {
        self.is_tls() || self.peer.ip().is_loopback() || self.shared.config.allow_plaintext_auth
    }

    /// The user's name (only called in authenticated states).
    pub(crate) fn user(&self) -> String {
        self.user.clone().unwrap_or_default()
    }

    pub(crate) fn view(&self) -> Option<&View> {
        match &self.state {
            State::Selected(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn view_mut(&mut self) -> Option<&mut View> {
        match &mut self.state {
            State::Selected(v) => Some(v),
            _ => None,
        }
    }

    /// Runs a blocking store call off the async threads.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, StoreError> + Send + 'static,
    {
        let b = self.backend();
        tokio::task::spawn_blocking(move || f(b.as_ref()))
            .await
            .unwrap_or_else(|e| Err(StoreError::Internal(format!("store task failed: {e}"))))
    }

    /// Maps a store error to a NO reply, logging internal ones.
    pub(crate) fn store_no(&self, e: StoreError) -> Reply {
        match e {
            StoreError::NoMailbox => Reply::no("Mailbox doesn't exist").code("NONEXISTENT"),
            StoreError::Exists => Reply::no("Mailbox already exists").code("ALREADYEXISTS"),
            StoreError::Refused(t) => Reply::no(response::text(&t)),
            StoreError::Internal(t) => {
                warn!(user = ?self.user, error = %t, "store error");
                Reply::no("Internal error occurred; refer to the server log").code("SERVERBUG")
            }
        }
    }

    /// Turns CONDSTORE on at its first use (RFC 7162 §3.1: a CONDSTORE-enabling
    /// command in the selected state brings `* OK [HIGHESTMODSEQ n]`).
    pub(crate) fn enable_condstore(&mut self) {
        if std::mem::replace(&mut self.condstore, true) {
            return;
        }
        if let Some(v) = self.view() {
            let l = format!("OK [HIGHESTMODSEQ {}] Highest", v.state.highestmodseq);
            self.untagged(&l);
        }
    }

    pub(crate) fn untagged(&mut self, line: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) async fn flush(&mut self) -> Result<(), Fatal> {
        if self.out.is_empty() {
            return Ok(());
        }
        let s = self.stream.as_mut().ok_or(Fatal::Closed)?;
        match self.deflate.as_mut() {
            Some(z) => {
                let mut wire = Vec::with_capacity(self.out.len() / 2 + 64);
                z.compress(&self.out, &mut wire);
                s.write_all(&wire).await?;
            }
            None => s.write_all(&self.out).await?,
        }
        s.flush().await?;
        self.out.clear();
        // Idle sessions should cost little: give back what a big response grew.
        if self.out.capacity() > 8 * 1024 {
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Flushes when the buffer is large (long FETCH responses).
    pub(crate) async fn maybe_flush(&mut self) -> Result<(), Fatal> {
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Reads more bytes into the framer, within the idle timeout.
    pub(crate) async fn read_more(&mut self) -> Result<(), Fatal> {
        let timeout = if self.user.is_some() {
            AUTH_TIMEOUT
        } else {
            PRELOGIN_TIMEOUT
        };
        let shutdown = self.shared.shutdown.clone();
        tokio::select! {
            _ = shutdown.cancelled() => Err(Fatal::Shutdown),
            r = tokio::time::timeout(timeout, self.read_some()) => match r {
                Err(_) => Err(Fatal::Timeout),
                Ok(r) => r,
            },
        }
    }

    /// Feeds the framer at least one byte from the client, inflating under
    /// COMPRESS. Cancel-safe: the only await is the socket read, and bytes read are
    /// handed to the framer or the inflater before the next await.
    pub(crate) async fn read_some(&mut self) -> Result<(), Fatal> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(z) = self.deflate.as_mut() {
                if z.has_pending() {
                    let mut plain = Vec::new();
                    z.inflate(INFLATE_CHUNK, &mut plain).map_err(|e| {
                        debug!(error = %e, "bad compressed input");
                        Fatal::Protocol("Invalid compressed data")
                    })?;
                    if !plain.is_empty() {
                        self.framer.feed(&plain);
                        return Ok(());
                    }
                }
                if z.ended() {
                    return Err(Fatal::Closed);
                }
            }
            if let Some(z) = self.deflate.as_mut() {
                // About to wait for the client: an idle session need not keep the
                // compressor's tables (see `compress`).
                z.release_compressor();
            }
            let s = self.stream.as_mut().ok_or(Fatal::Closed)?;
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(Fatal::Closed);
            }
            match self.deflate.as_mut() {
                Some(z) => z.push_input(&buf[..n]),
                None => {
                    self.framer.feed(&buf[..n]);
                    return Ok(());
                }
            }
        }
    }

    /// Reads one raw line (SASL responses).
    pub(crate) async fn read_line(&mut self) -> Result<Vec<u8>, Fatal> {
        loop {
            match self.framer.take_line() {
                Ok(Some(l)) => return Ok(l),
                Ok(None) => self.read_more().await?,
                Err(_) => return Err(Fatal::Protocol("line too long")),
            }
        }
    }

    pub(crate) fn greeting(&mut self) {
        let caps = self.capabilities();
        let line = format!("OK [CAPABILITY {caps}] zolder ready.");
        self.untagged(&line);
    }

    /// The session's loop; returns when the connection ends.
    pub async fn run(mut self) {
        self.greeting();
        let end = self.serve().await;
        match &end {
            Err(Fatal::Timeout) => {
                self.untagged("BYE Autologout; idle for too long");
            }
            Err(Fatal::Shutdown) => {
                self.untagged("BYE Server shutting down");
            }
            Err(Fatal::Protocol(why)) => {
                let l = format!("BYE {why}");
                self.untagged(&l);
            }
            _ => {}
        }
        let _ = self.flush().await;
        if let Some(mut s) = self.stream.take() {
            let _ = s.shutdown().await;
        }
        match end {
            Ok(()) | Err(Fatal::Closed) => debug!("connection closed"),
            Err(e) => info!(error = %e, "connection ended"),
        }
    }

    async fn serve(&mut self) -> Result<(), Fatal> {
        loop {
            match self.framer.next_frame() {
                Frame::Incomplete => {
                    self.flush().await?;
                    self.read_more().await?;
                }
                Frame::NeedContinuation => {
                    self.out.extend_from_slice(b"+ OK\r\n");
                    self.flush().await?;
                }
                Frame::LiteralRefused { tag } => {
                    let t = tag.unwrap_or_else(|| "*".into());
                    let line = format!("{t} BAD Command not allowed in this state\r\n");
                    self.out.extend_from_slice(line.as_bytes());
                }
                Frame::TooBig { tag, fatal } => {
                    let t = tag.unwrap_or_else(|| "*".into());
                    let line = format!("{t} BAD [TOOBIG] Command or literal too long\r\n");
                    self.out.extend_from_slice(line.as_bytes());
                    if fatal {
                        return Err(Fatal::Protocol("Command too long"));
                    }
                }
                Frame::Command(bytes) => match parse_command_opts(&bytes, self.utf8) {
                    Ok(req) => {
                        drop(bytes);
                        self.dispatch(req).await?;
                        if matches!(self.state, State::Logout) {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        debug!(reason = %e.reason, "bad command");
                        let tag = e.tag.unwrap_or_else(|| "*".into());
                        let text = response::text(&e.reason);
                        let line = if text.starts_with('[') {
                            format!("{tag} BAD {text}\r\n")
                        } else {
                            format!("{tag} BAD Error in IMAP command: {text}\r\n")
                        };
                        self.out.extend_from_slice(line.as_bytes());
                    }
                },
            }
        }
    }

    async fn dispatch(&mut self, req: Request) -> Result<(), Fatal> {
        let Request { tag, command } = req;
        let name = command.name();
        debug!(tag = %tag, command = name, "command");
        let started = std::time::Instant::now();
        if !allowed(&self.state, &command) {
            let line = format!(
                "{tag} BAD {} not allowed in the {} state\r\n",
                command.name(),
                self.state.name()
            );
            self.out.extend_from_slice(line.as_bytes());
            return Ok(());
        }
        let allow_expunge = !command.uses_sequence_numbers();
        let reply = match command {
            Command::Capability => self.op_capability(),
            Command::Noop | Command::Check => Reply::ok(format!(
                "{} completed",
                if matches!(command, Command::Noop) {
                    "NOOP"
                } else {
                    "CHECK"
                }
            )),
            Command::Logout => {
                self.untagged("BYE Logging out");
                self.state = State::Logout;
                Reply::ok("Logout completed")
            }
            Command::StartTls => return self.op_starttls(&tag).await,
            Command::Login { user, password } => self.op_login(user, password).await?,
            Command::Authenticate { mechanism, initial } => {
                self.op_authenticate(&tag, mechanism, initial).await?
            }
            Command::Id(fields) => self.op_id(fields),
            Command::Enable(caps) => self.op_enable(caps),
            Command::Namespace => self.op_namespace(),
            Command::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => self.op_select(mailbox, read_only, condstore, qresync).await,
            Command::Create {
                mailbox,
                special_use,
            } => self.op_create(mailbox, special_use).await,
            Command::Delete(m) => self.op_delete(m).await,
            Command::Rename { from, to } => self.op_rename(from, to).await,
            Command::Subscribe(m) => self.op_subscribe(m, true).await,
            Command::Unsubscribe(m) => self.op_subscribe(m, false).await,
            Command::List(args) => self.op_list(args).await,
            Command::Lsub { reference, pattern } => self.op_lsub(reference, pattern).await,
            Command::Status { mailbox, items } => self.op_status(mailbox, items).await,
            Command::Append {
                mailbox,
                flags,
                date,
                message,
                utf8,
            } => self.op_append(mailbox, flags, date, message, utf8).await,
            Command::AppendMany { mailbox, messages } => {
                self.op_append_many(mailbox, messages).await
            }
            Command::Close => self.op_close(true).await,
            Command::Unselect => self.op_close(false).await,
            Command::Expunge { uids } => self.op_expunge(uids).await,
            Command::Search { uid, ret, key } => self.op_search(&tag, uid, ret, key).await?,
            Command::Fetch {
                uid,
                set,
                attrs,
                changed_since,
                vanished,
            } => {
                self.op_fetch(uid, set, attrs, changed_since, vanished)
                    .await?
            }
            Command::Sort {
                uid,
                criteria,
                key,
                ret,
            } => self.op_sort(&tag, uid, criteria, key, ret).await?,
            Command::Thread {
                uid,
                algorithm,
                key,
            } => self.op_thread(uid, algorithm, key).await?,
            Command::GetQuota(root) => self.op_getquota(root).await,
            Command::GetQuotaRoot(m) => self.op_getquotaroot(m).await,
            Command::SetQuota(_) => {
                Reply::no("Quota limits are set in the server's configuration").code("NOPERM")
            }
            Command::Compress(mech) => return self.op_compress(&tag, &mech).await,
            Command::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            } => {
                self.op_store(uid, set, mode, silent, flags, unchanged_since)
                    .await?
            }
            Command::Copy { uid, set, mailbox } => self.op_copy(uid, set, mailbox, false).await?,
            Command::Move { uid, set, mailbox } => self.op_copy(uid, set, mailbox, true).await?,
            Command::Idle => return self.op_idle(&tag).await,
        };
        // Untagged updates from other sessions go before the tagged completion.
        if matches!(self.state, State::Selected(_)) {
            self.sync(allow_expunge).await;
        }
        // Where the time goes, per command (the benchmark's per-op figures, live).
        debug!(tag = %tag, command = name, status = reply.status, micros = started.elapsed().as_micros() as u64, "done");
        self.tagged(&tag, reply);
        Ok(())
    }

    pub(crate) fn tagged(&mut self, tag: &str, r: Reply) {
        let line = match r.code {
            Some(c) => format!("{tag} {} [{c}] {}\r\n", r.status, r.text),
            None => format!("{tag} {} {}\r\n", r.status, r.text),
        };
        self.out.extend_from_slice(line.as_bytes());
    }

    /// Brings the selected view up to date with the store, writing untagged
    /// EXISTS/FETCH/EXPUNGE. Store errors are logged; the view then stays as it was.
    pub(crate) async fn sync(&mut self, allow_expunge: bool) {
        let Some(v) = self.view() else { return };
        let (name, known) = (v.name.clone(), v.state.highestmodseq);
        let (known_uid, take) = (v.recent_upto.max(v.max_uid()), !v.read_only);
        let user = self.user();
        let r = self
            .blocking(move |b| {
                let st = b.state(&user, &name)?;
                if st.highestmodseq == known {
                    return Ok((st, None));
                }
                let (st, changed, expunged) = b.changes(&user, &name, known)?;
                // New messages: settle which are recent here (RFC 3501 §2.3.2).
                let upto = changed.iter().map(|m| m.uid).max().unwrap_or(0);
                let recent = if upto > known_uid {
                    Some((b.take_recent(&user, &name, upto, take)?, upto))
                } else {
                    None
                };
                Ok((st, Some((changed, expunged, recent))))
            })
            .await;
        let condstore = self.condstore;
        let mut out = std::mem::take(&mut self.out);
        if let Some(v) = self.view_mut() {
            match r {
                Ok((st, Some((changed, expunged, recent)))) => {
                    if let Some((taken, upto)) = recent {
                        v.add_recent(taken, upto);
                    }
                    let new = v.apply(st, changed, expunged, allow_expunge, condstore, &mut out);
                    if new > 0 && !v.rev2 {
                        let _ = std::io::Write::write_fmt(
                            &mut out,
                            format_args!("* {} RECENT\r\n", v.recent_count()),
                        );
                    }
                }
                Ok((_, None)) => {
                    if allow_expunge {
                        v.flush_expunges(&mut out);
                    }
                }
                Err(StoreError::NoMailbox) => {
                    // Deleted or renamed by another session: nothing sensible to
                    // show any more.
                    out.extend_from_slice(b"* BYE Selected mailbox was removed\r\n");
                    self.state = State::Logout;
                }
                Err(e) => warn!(error = %e, "mailbox sync failed"),
            }
        }
        self.out = out;
    }
}
