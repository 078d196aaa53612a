//! One POP3 connection: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939), with STLS
//! and SASL PLAIN. The maildrop is a snapshot of the user's INBOX taken at login;
//! messages marked with DELE are removed only at QUIT, through the spool's expunge
//! (so a dropped connection deletes nothing).
//!
//! # Security
//! Talks to LAN clients, trusts nothing they send: lines are bounded by
//! [`proto::MAX_LINE`], passwords are accepted only over TLS or where
//! [`auth::plaintext_auth_allowed`] says so, failures are delayed per address, and
//! the session can read and delete only the logged-in user's INBOX.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::{debug, info, warn};

use super::proto::{self, Command};
use crate::auth::{self, FailureDelays, LoginError};
use crate::config::Config;
use crate::net::Stream;

/// One message in the maildrop snapshot.
#[derive(Debug, Clone)]
pub struct DropEntry {
    /// The spool's UID (stable for the session).
    pub uid: u32,
    /// The UIDL string: stable across sessions as long as the mailbox keeps its UIDVALIDITY.
    pub uidl: String,
    /// Size with CRLF line ends, as LIST reports it.
    pub size: u64,
}

/// What a POP3 session needs from the spool.
#[async_trait::async_trait]
pub trait MaildropStore: Send + Sync {
    /// The user's INBOX at this moment.
    async fn snapshot(&self, user: &str) -> Result<Vec<DropEntry>, String>;
    async fn read(&self, user: &str, uid: u32) -> Result<Vec<u8>, String>;
    /// Removes these messages (QUIT in TRANSACTION state).
    async fn delete(&self, user: &str, uids: &[u32]) -> Result<(), String>;
}

/// Everything the sessions of one server share.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn MaildropStore>,
    pub tls: Option<async_native_tls::TlsAcceptor>,
    /// Shared with IMAP and SMTP AUTH ([`FailureDelays::shared`]).
    pub delays: std::sync::Arc<FailureDelays>,
}

const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

enum State {
    Authorization {
        user: Option<String>,
    },
    Transaction {
        user: String,
        drop: Vec<DropEntry>,
        deleted: Vec<bool>,
    },
}

/// Runs one session to its end. `stream` is already TLS for pop3s.
pub async fn run(shared: Arc<Shared>, stream: Stream, peer: SocketAddr) {
    if let Err(e) = session(shared, stream, peer).await {
        debug!(error = %e, "session ended");
    }
}

async fn write(w: &mut BufReader<Stream>, data: &[u8]) -> std::io::Result<()> {
    let s = w.get_mut();
    s.write_all(data).await?;
    s.flush().await
}

async fn line(w: &mut BufReader<Stream>, text: &str) -> std::io::Result<()> {
    write(w, format!("{text}\r\n").as_bytes()).await
}

/// Reads one line, bounded. `Ok(None)` = peer closed.
async fn read_line(
    r: &mut BufReader<Stream>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Result<String, ()>>> {
    buf.clear();
    loop {
        let avail = match tokio::time::timeout(IDLE_TIMEOUT, r.fill_buf()).await {
            Ok(x) => x?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "idle timeout",
                ));
            }
        };
        if avail.is_empty() {
            return Ok(None);
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&avail[..=i]);
            r.consume(i + 1);
            break;
        }
        let n = avail.len();
        buf.extend_from_slice(avail);
        r.consume(n);
        if buf.len() > proto::MAX_LINE {
            // Swallow the rest of the over-long line, then report it.
            loop {
                let avail = r.fill_buf().await?;
                if avail.is_empty() {
                    return Ok(None);
                }
                if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                    r.consume(i + 1);
                    return Ok(Some(Err(())));
                }
                let n = avail.len();
                r.consume(n);
            }
        }
    }
    Ok(Some(String::from_utf8(std::mem::take(buf)).map_err(|_| ())))
}

async fn session(shared: Arc<Shared>, stream: Stream, peer: SocketAddr) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    let mut buf = Vec::new();
    let mut state = State::Authorization { user: None };
    line(
        &mut io,
        &format!("+OK {} POP3 ready", shared.config.hostname),
    )
    .await?;
    loop {
        let text = match read_line(&mut io, &mut buf).await? {
            None => break,
            Some(Err(())) => {
                line(&mut io, "-ERR line too long or not UTF-8").await?;
                continue;
            }
            Some(Ok(t)) => t,
        };
        let cmd = match proto::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                line(&mut io, &format!("-ERR {}", e.text())).await?;
                continue;
            }
        };
        let tls = io.get_ref().is_tls();
        let may_auth = auth::plaintext_auth_allowed(&shared.config, peer.ip(), tls);
        let authorized = matches!(state, State::Authorization { .. });
        match (&mut state, cmd) {
            (_, Command::Quit) => {
                if let State::Transaction {
                    user,
                    drop,
                    deleted,
                } = &state
                {
                    let uids: Vec<u32> = drop
                        .iter()
                        .zip(deleted)
                        .filter(|(_, d)| **d)
                        .map(|(e, _)| e.uid)
                        .collect();
                    if !uids.is_empty()
                        && let Err(e) = shared.store.delete(user, &uids).await
                    {
                        warn!(%user, error = %e, "QUIT: could not delete");
                        line(&mut io, "-ERR [SYS/TEMP] some deleted messages not removed").await?;
                        return Ok(());
                    }
                    info!(%user, deleted = uids.len(), "logout");
                }
                line(&mut io, "+OK bye").await?;
                return Ok(());
            }
            (_, Command::Capa) => {
                let mut caps = vec![
                    "CAPA",
                    "TOP",
                    "UIDL",
                    "RESP-CODES",
                    "PIPELINING",
                    "AUTH-RESP-CODE",
                ];
                if authorized {
                    if shared.tls.is_some() && !tls {
                        caps.push("STLS");
                    }
                    if may_auth {
                        caps.push("USER");
                        caps.push("SASL PLAIN");
                    }
                }
                caps.push("IMPLEMENTATION zolder");
                let mut out = String::from("+OK capabilities follow\r\n");
                for c in &caps[1..] {
                    out.push_str(c);
                    out.push_str("\r\n");
                }
                out.push_str(".\r\n");
                write(&mut io, out.as_bytes()).await?;
            }
            (State::Transaction { .. }, Command::Noop) => line(&mut io, "+OK").await?,
            (State::Authorization { .. }, Command::Stls) => {
                let Some(acc) = shared.tls.clone() else {
                    line(&mut io, "-ERR STLS not available").await?;
                    continue;
                };
                if tls {
                    line(&mut io, "-ERR already using TLS").await?;
                    continue;
                }
                if !io.buffer().is_empty() {
                    // Commands pipelined after STLS would be a plaintext injection.
                    line(&mut io, "-ERR STLS must be the last command in a pipeline").await?;
                    return Ok(());
                }
                line(&mut io, "+OK begin TLS").await?;
                let stream = io.into_inner().accept_tls(&acc).await?;
                io = BufReader::new(stream);
                state = State::Authorization { user: None };
            }
            (State::Authorization { user }, Command::User(name)) => {
                if !may_auth {
                    line(
                        &mut io,
                        "-ERR [AUTH] plaintext login not allowed here; use STLS first",
                    )
                    .await?;
                    continue;
                }
                *user = Some(name);
                line(&mut io, "+OK send PASS").await?;
            }
            (State::Authorization { user }, Command::Pass(pass)) => {
                let Some(name) = user.take() else {
                    line(&mut io, "-ERR USER first").await?;
                    continue;
                };
                if let Some(new) = login(&shared, &mut io, peer, &name, &pass).await? {
                    state = new;
                }
            }
            (State::Authorization { .. }, Command::Auth(None, _)) => {
                write(&mut io, b"+OK\r\nPLAIN\r\n.\r\n").await?;
            }
            (State::Authorization { .. }, Command::Auth(Some(mech), ir)) => {
                if mech != "PLAIN" {
                    line(&mut io, "-ERR unsupported mechanism").await?;
                    continue;
                }
                if !may_auth {
                    line(
                        &mut io,
                        "-ERR [AUTH] plaintext login not allowed here; use STLS first",
                    )
                    .await?;
                    continue;
                }
                let resp = match ir {
                    Some(r) if r != "=" => r,
                    _ => {
                        line(&mut io, "+ ").await?;
                        match read_line(&mut io, &mut buf).await? {
                            Some(Ok(t)) => t.trim_end().to_string(),
                            Some(Err(())) => String::new(),
                            None => return Ok(()),
                        }
                    }
                };
                if resp == "*" {
                    line(&mut io, "-ERR authentication cancelled").await?;
                    continue;
                }
                match auth::decode_sasl_plain(&resp) {
                    Some((name, pass)) => {
                        if let Some(new) = login(&shared, &mut io, peer, &name, &pass).await? {
                            state = new;
                        }
                    }
                    None => line(&mut io, "-ERR [AUTH] malformed PLAIN response").await?,
                }
            }
            (State::Authorization { .. }, _) => line(&mut io, "-ERR log in first").await?,
            (State::Transaction { drop, deleted, .. }, Command::Stat) => {
                let (n, size) =
                    live(drop, deleted).fold((0, 0), |(n, s), (_, e)| (n + 1, s + e.size));
                line(&mut io, &format!("+OK {n} {size}")).await?;
            }
            (State::Transaction { drop, deleted, .. }, Command::List(None)) => {
                let mut out = String::from("+OK scan listing follows\r\n");
                for (i, e) in live(drop, deleted) {
                    out.push_str(&format!("{} {}\r\n", i + 1, e.size));
                }
                out.push_str(".\r\n");
                write(&mut io, out.as_bytes()).await?;
            }
            (State::Transaction { drop, deleted, .. }, Command::Uidl(None)) => {
                let mut out = String::from("+OK unique-id listing follows\r\n");
                for (i, e) in live(drop, deleted) {
                    out.push_str(&format!("{} {}\r\n", i + 1, e.uidl));
                }
                out.push_str(".\r\n");
                write(&mut io, out.as_bytes()).await?;
            }
            (State::Transaction { drop, deleted, .. }, Command::List(Some(n))) => {
                match pick(drop, deleted, n) {
                    Some(e) => line(&mut io, &format!("+OK {n} {}", e.size)).await?,
                    None => line(&mut io, "-ERR no such message").await?,
                }
            }
            (State::Transaction { drop, deleted, .. }, Command::Uidl(Some(n))) => {
                match pick(drop, deleted, n) {
                    Some(e) => line(&mut io, &format!("+OK {n} {}", e.uidl)).await?,
                    None => line(&mut io, "-ERR no such message").await?,
                }
            }
            (
                State::Transaction {
                    user,
                    drop,
                    deleted,
                },
                cmd @ (Command::Retr(_) | Command::Top(_, _)),
            ) => {
                let (n, top) = match cmd {
                    Command::Retr(n) => (n, None),
                    Command::Top(n, l) => (n, Some(l)),
                    _ => unreachable!(),
                };
                let Some(e) = pick(drop, deleted, n) else {
                    line(&mut io, "-ERR no such message").await?;
                    continue;
                };
                match shared.store.read(user, e.uid).await {
                    Ok(bytes) => {
                        let mut out = format!("+OK {} octets\r\n", e.size).into_bytes();
                        proto::encode_multiline(&bytes, top, &mut out);
                        write(&mut io, &out).await?;
                    }
                    Err(err) => {
                        warn!(%user, uid = e.uid, error = %err, "cannot read message");
                        line(&mut io, "-ERR [SYS/TEMP] message not readable now").await?;
                    }
                }
            }
            (State::Transaction { drop, deleted, .. }, Command::Dele(n)) => {
                if pick(drop, deleted, n).is_some() {
                    deleted[n as usize - 1] = true;
                    line(&mut io, &format!("+OK message {n} deleted")).await?;
                } else {
                    line(&mut io, "-ERR no such message").await?;
                }
            }
            (State::Transaction { deleted, .. }, Command::Rset) => {
                deleted.iter_mut().for_each(|d| *d = false);
                line(&mut io, "+OK").await?;
            }
            (State::Transaction { .. }, _) => line(&mut io, "-ERR not valid now").await?,
        }
    }
    Ok(())
}

fn live<'a>(
    drop: &'a [DropEntry],
    deleted: &'a [bool],
) -> impl Iterator<Item = (usize, &'a DropEntry)> {
    drop.iter().enumerate().filter(move |(i, _)| !deleted[*i])
}

fn pick<'a>(drop: &'a [DropEntry], deleted: &[bool], n: u32) -> Option<&'a DropEntry> {
    let i = (n as usize).checked_sub(1)?;
    if i < drop.len() && !deleted[i] {
        Some(&drop[i])
    } else {
        None
    }
}

/// Verifies credentials and opens the maildrop; `Ok(None)` after answering a failure.
async fn login(
    shared: &Shared,
    io: &mut BufReader<Stream>,
    peer: SocketAddr,
    name: &str,
    pass: &str,
) -> std::io::Result<Option<State>> {
    let Ok(guess) = shared.delays.begin(peer.ip(), name) else {
        warn!(login = %name, "login refused: too many failures from this address");
        line(io, "-ERR [AUTH] too many authentication failures").await?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "too many authentication failures",
        ));
    };
    match auth::check_login(shared.config.clone(), name, pass).await {
        Ok(user) => {
            guess.succeeded();
            crate::net::listener::authenticated();
            match shared.store.snapshot(&user).await {
                Ok(drop) => {
                    let size: u64 = drop.iter().map(|e| e.size).sum();
                    info!(%user, messages = drop.len(), "login");
                    line(
                        io,
                        &format!("+OK {user} has {} messages ({size} octets)", drop.len()),
                    )
                    .await?;
                    let deleted = vec![false; drop.len()];
                    Ok(Some(State::Transaction {
                        user,
                        drop,
                        deleted,
                    }))
                }
                Err(e) => {
                    warn!(%user, error = %e, "cannot open maildrop");
                    line(io, "-ERR [SYS/TEMP] mailbox not available, try again later").await?;
                    Ok(None)
                }
            }
        }
        Err(LoginError::Unavailable(e)) => {
            drop(guess); // not the client's fault, but it stays counted
            warn!(login = %name, error = %e, "login check failed");
            line(io, "-ERR [SYS/TEMP] try again later").await?;
            Ok(None)
        }
        Err(why) => {
            let wait = guess.failed();
            warn!(login = %name, reason = ?why, "login failed");
            tokio::time::sleep(wait).await;
            line(io, "-ERR [AUTH] authentication failed").await?;
            if shared.delays.outstanding(peer.ip()) >= auth::MAX_GUESSES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "too many authentication failures",
                ));
            }
            Ok(None)
        }
    }
}
