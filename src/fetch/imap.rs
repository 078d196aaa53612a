//! The IMAP client toward the ISP (async-imap): LOGIN or AUTHENTICATE (PLAIN, XOAUTH2,
//! OAUTHBEARER), per folder UIDVALIDITY + last UID tracking in `fetch_state`,
//! `UID FETCH … BODY.PEEK[]` in batches, `\Deleted` + `UID EXPUNGE` after committed
//! delivery (grouped per [`EXPUNGE_EVERY`] messages), and IDLE push ([`idle_loop`]).
//!
//! zolder does not use `\Seen` to decide what is new (fetchmail does, and loses or
//! re-fetches mail when another client reads it): a message is new when its UID is
//! above the folder's recorded last UID under the same UIDVALIDITY. With `keep` the
//! ISP's flags are never touched (BODY.PEEK). When UIDVALIDITY changes, the folder is
//! fetched again from the start and every message whose Message-ID (or header digest)
//! this account already delivered from that folder is skipped; the folder's state
//! moves to the new UIDVALIDITY only after that whole pass, so a crash in the middle
//! repeats the de-duplicating pass instead of trusting a half-written state.
//!
//! # Security
//! async-imap bounds one response to 512 MiB; on top of that every command gets a byte
//! budget ([`Io`]): sizes announced by `RFC822.SIZE` plus slack for a body fetch, 16 MiB
//! otherwise. A server that sends more is cut off with an error naming the account.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::{debug, info, warn};

use super::{Fate, FetchError, Fetcher, PollOutcome, conn, dedup_id, fate, oauth2};
use crate::config::account::{AccountConfig, TlsMode};
use crate::db;
use crate::message::{DeliveryReport, Incoming};
use crate::net::Stream;

/// Messages per `UID FETCH` (and per delivery batch), and the byte size that ends a
/// batch early.
pub const BATCH: usize = 200;
pub const BATCH_BYTES: u64 = 24 * 1024 * 1024;
/// Delivered messages to collect before one `\Deleted` + `UID EXPUNGE` (and at the end
/// of the folder): an expunge makes the server rewrite its index, so one per batch
/// costs more than the download. A crash in between leaves them delivered and recorded
/// as seen but still on the server; the next poll deletes them without fetching.
pub const EXPUNGE_EVERY: usize = 1000;
/// Byte budget of a command that fetches no bodies.
pub const COMMAND_BUDGET: i64 = 16 * 1024 * 1024;
/// Most candidate UIDs checked one look-up each against the seen state; more than this
/// and the whole set is loaded.
const SEEN_LOOKUP_MAX: usize = 512;
/// IDLE is re-issued this often (RFC 2177 asks for less than 29 minutes).
pub const IDLE_REFRESH: Duration = Duration::from_secs(25 * 60);

/// The connection under async-imap: counts bytes read against the current budget, and
/// gathers a command's pieces until async-imap flushes it (it writes tag, space,
/// command and CRLF separately: four packets, or four TLS records, per command).
pub struct Io {
    s: Stream,
    budget: Arc<AtomicI64>,
    wbuf: Vec<u8>,
}

impl Io {
    fn new(s: Stream, budget: Arc<AtomicI64>) -> Io {
        Io {
            s,
            budget,
            wbuf: Vec::new(),
        }
    }

    /// Writes out what is gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.s).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.wbuf.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Most bytes gathered before they are written without waiting for the flush.
const WRITE_GATHER: usize = 64 * 1024;

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Io(tls={}, budget={})",
            self.s.is_tls(),
            self.budget.load(Ordering::Relaxed)
        )
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.s).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let n = (buf.filled().len() - before) as i64;
            if me.budget.fetch_sub(n, Ordering::Relaxed) - n < 0 {
                return Poll::Ready(Err(io::Error::other(
                    "server sent more than the command's byte budget",
                )));
            }
        }
        r
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.wbuf.len() + buf.len() > WRITE_GATHER {
            match me.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
            if buf.len() > WRITE_GATHER {
                return Pin::new(&mut me.s).poll_write(cx, buf);
            }
        }
        me.wbuf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.s).poll_flush(cx),
            other => other,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.as_mut().poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.get_mut().s).poll_shutdown(cx)
    }
}

/// A logged-in session with what we learned about the server.
pub struct Session {
    pub s: async_imap::Session<Io>,
    budget: Arc<AtomicI64>,
    pub uidplus: bool,
    pub idle: bool,
    /// `uidplus`/`idle` are asked (CAPABILITY) only when first needed: a poll that
    /// deletes nothing and does not IDLE never asks.
    caps_known: bool,
    account: String,
    timeout: Duration,
}

/// SASL responder for async-imap: the prepared response first, then empty ones (an
/// XOAUTH2/OAUTHBEARER error challenge is answered empty, RFC 7628 §3.2.3).
struct Sasl(Option<Vec<u8>>);

impl async_imap::Authenticator for Sasl {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0.take().unwrap_or_default()
    }
}

fn imap_err(acc: &str, what: &str, e: impl fmt::Display) -> FetchError {
    FetchError::Protocol(format!("{acc}: {what}: {e}"))
}

async fn timed<T, E: fmt::Display>(
    to: Duration,
    acc: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, FetchError> {
    match tokio::time::timeout(to, fut).await {
        Err(_) => Err(FetchError::Io(format!(
            "{acc}: {what}: no answer for {to:?}"
        ))),
        Ok(Err(e)) => Err(imap_err(acc, what, e)),
        Ok(Ok(v)) => Ok(v),
    }
}

impl Session {
    fn budget(&self, n: i64) {
        self.budget.store(n, Ordering::Relaxed);
    }

    /// Connects, does TLS as configured and logs in.
    pub async fn open(f: &Fetcher, acc: &AccountConfig) -> Result<Session, FetchError> {
        let name = acc.name.as_str();
        let to = conn::read_timeout(acc);
        let budget = Arc::new(AtomicI64::new(COMMAND_BUDGET));
        let mut s = conn::tcp(acc).await?;
        if acc.tls == TlsMode::Implicit {
            s = conn::upgrade(acc, s).await?;
        }
        let mut client = async_imap::Client::new(Io::new(s, budget.clone()));
        match timed(to, name, "greeting", async {
            client.read_response().await.transpose()
        })
        .await?
        {
            Some(_) => {}
            None => {
                return Err(FetchError::Connect(format!(
                    "{name}: closed before the greeting"
                )));
            }
        }
        if acc.tls == TlsMode::Starttls {
            timed(
                to,
                name,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|e| FetchError::Tls(format!("{name}: server refused STARTTLS ({e})")))?;
            let io = client.into_inner();
            let s = conn::upgrade(acc, io.s).await?;
            client = async_imap::Client::new(Io::new(s, budget.clone()));
        }
        let session = if let Some(o) = &acc.oauth2 {
            let mech = oauth2::mechanism_name(&o.mechanism);
            let mut attempt = 0;
            loop {
                let tok = f.tokens.token_in(Some(&f.db), name, o, attempt > 0).await?;
                let resp = oauth2::sasl_response(
                    &o.mechanism,
                    &acc.username,
                    &acc.host,
                    acc.effective_port(),
                    &tok,
                );
                let r = tokio::time::timeout(to, client.authenticate(mech, Sasl(Some(resp)))).await;
                match r {
                    Err(_) => {
                        return Err(FetchError::Io(format!("{name}: AUTHENTICATE timed out")));
                    }
                    Ok(Ok(s)) => break s,
                    Ok(Err((e, c))) if attempt == 0 => {
                        info!(
                            account = name,
                            "{mech} refused ({e}); refreshing the token once"
                        );
                        f.tokens.invalidate_in(&f.db, name).await;
                        client = c;
                        attempt += 1;
                    }
                    Ok(Err((e, _))) => {
                        return Err(FetchError::Auth(format!("{name}: {mech}: {e}")));
                    }
                }
            }
        } else {
            let pass = f.password(acc).await?;
            let r = if acc
                .auth
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("plain"))
            {
                let resp = format!("\0{}\0{}", acc.username, pass).into_bytes();
                tokio::time::timeout(to, client.authenticate("PLAIN", Sasl(Some(resp)))).await
            } else {
                tokio::time::timeout(to, client.login(&acc.username, &pass)).await
            };
            match r {
                Err(_) => return Err(FetchError::Io(format!("{name}: login timed out"))),
                Ok(Ok(s)) => s,
                Ok(Err((e, _))) => return Err(FetchError::Auth(format!("{name}: {e}"))),
            }
        };
        let se = Session {
            s: session,
            budget,
            uidplus: false,
            idle: false,
            caps_known: false,
            account: name.to_string(),
            timeout: to,
        };
        debug!(account = name, "IMAP logged in");
        Ok(se)
    }

    /// Asks CAPABILITY once (after login: the list may differ from the greeting's).
    pub async fn learn_caps(&mut self) -> Result<(), FetchError> {
        if self.caps_known {
            return Ok(());
        }
        self.budget(COMMAND_BUDGET);
        let caps = timed(
            self.timeout,
            &self.account,
            "CAPABILITY",
            self.s.capabilities(),
        )
        .await?;
        self.uidplus = caps.has_str("UIDPLUS");
        self.idle = caps.has_str("IDLE");
        self.caps_known = true;
        debug!(account = %self.account, uidplus = self.uidplus, idle = self.idle, "IMAP capabilities");
        Ok(())
    }

    /// `UID FETCH set (UID RFC822.SIZE)`: (uid, size), sorted by UID.
    async fn sizes(&mut self, set: &str) -> Result<Vec<(u32, u64)>, FetchError> {
        self.budget(COMMAND_BUDGET * 4);
        let acc = self.account.clone();
        let fut = async {
            let st = self.s.uid_fetch(set, "(UID RFC822.SIZE)").await?;
            st.try_collect::<Vec<_>>().await
        };
        let v = timed(self.timeout, &acc, "UID FETCH sizes", fut).await?;
        let mut out: Vec<(u32, u64)> = v
            .iter()
            .filter_map(|f| f.uid.map(|u| (u, u64::from(f.size.unwrap_or(0)))))
            .collect();
        out.sort_unstable();
        out.dedup_by_key(|x| x.0);
        Ok(out)
    }

    /// `UID FETCH set BODY.PEEK[]`: (uid, message) in server order.
    async fn bodies(
        &mut self,
        uids: &[u32],
        announced: u64,
        max: u64,
    ) -> Result<Vec<(u32, Vec<u8>)>, FetchError> {
        self.budget(announced as i64 + 4096 * uids.len() as i64 + COMMAND_BUDGET);
        let acc = self.account.clone();
        let set = uid_set(uids);
        let fut = async {
            let mut st = self.s.uid_fetch(&set, "(UID BODY.PEEK[])").await?;
            let mut out = Vec::with_capacity(uids.len());
            while let Some(f) = st.try_next().await? {
                if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                    out.push((uid, body.to_vec()));
                }
            }
            Ok::<_, async_imap::error::Error>(out)
        };
        let out = timed(self.timeout, &acc, "UID FETCH BODY.PEEK[]", fut).await?;
        if let Some((u, b)) = out.iter().find(|(_, b)| b.len() as u64 > max) {
            return Err(FetchError::Protocol(format!(
                "{acc}: UID {u} is {} bytes, over limits.message_size (server lied about its size)",
                b.len()
            )));
        }
        Ok(out)
    }

    /// `\Deleted` on `uids`, then `UID EXPUNGE` (UIDPLUS) or `EXPUNGE`.
    async fn delete(&mut self, uids: &[u32]) -> Result<(), FetchError> {
        if uids.is_empty() {
            return Ok(());
        }
        self.learn_caps().await?;
        self.budget(COMMAND_BUDGET);
        let acc = self.account.clone();
        let set = uid_set(uids);
        let fut = async {
            self.s
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await?;
            if self.uidplus {
                self.s
                    .uid_expunge(&set)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await?;
            } else {
                self.s.expunge().await?.try_collect::<Vec<_>>().await?;
            }
            Ok::<_, async_imap::error::Error>(())
        };
        let t0 = std::time::Instant::now();
        let r = timed(self.timeout, &acc, "STORE/EXPUNGE", fut).await;
        debug!(account = %acc, n = uids.len(), elapsed = ?t0.elapsed(), "\\Deleted + expunge");
        r
    }

    pub async fn logout(mut self) {
        self.budget(COMMAND_BUDGET);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.s.logout()).await;
    }
}

/// A compact UID set: `1:5,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{}:{}", v[i], v[j]));
        } else {
            out.push_str(&v[i].to_string());
        }
        i = j + 1;
    }
    out
}

/// The folders an account polls.
pub fn folders(acc: &AccountConfig) -> Vec<String> {
    if acc.folders.is_empty() {
        vec!["INBOX".to_string()]
    } else {
        acc.folders.clone()
    }
}

/// One poll of an IMAP account: every folder in turn on one connection.
pub async fn poll(
    f: &Fetcher,
    acc: &AccountConfig,
    out: &mut PollOutcome,
) -> Result<(), FetchError> {
    let mut se = Session::open(f, acc).await?;
    for folder in folders(acc) {
        poll_folder(f, acc, &mut se, &folder, out).await?;
        if f.shutdown.is_cancelled() {
            break;
        }
    }
    se.logout().await;
    Ok(())
}

/// A downloaded batch on its way through delivery.
struct Batch {
    /// (uid, size, dedup id) of each message handed to delivery.
    sent: Vec<(u32, u64, String)>,
    task: tokio::task::JoinHandle<Vec<DeliveryReport>>,
    /// Messages found already delivered (de-duplicated after a UIDVALIDITY change).
    dups: Vec<(u32, String)>,
}

/// Fetches what is new in one folder.
pub async fn poll_folder(
    f: &Fetcher,
    acc: &AccountConfig,
    se: &mut Session,
    folder: &str,
    out: &mut PollOutcome,
) -> Result<(), FetchError> {
    let name = acc.name.clone();
    se.budget(COMMAND_BUDGET);
    // The folder's recorded state is read while the server selects it.
    let (n, fo) = (name.clone(), folder.to_string());
    let state_fut = f.db.run(move |c| db::fetch::state(c, &n, &fo));
    let what = format!("SELECT {folder}");
    let to = se.timeout;
    let select_fut = tokio::time::timeout(to, se.s.select(folder));
    let (mbox, state) = tokio::join!(select_fut, state_fut);
    let state = state?;
    let mbox = match mbox {
        Err(_) => {
            return Err(FetchError::Io(format!(
                "{name}: {what}: no answer for {to:?}"
            )));
        }
        // The server says NO (the folder is gone, renamed, not subscribed): skip it,
        // say so in status, and go on with the account's other folders.
        Ok(Err(async_imap::error::Error::No(why))) => {
            let w = format!("folder `{folder}` skipped: the server says NO to SELECT ({why})");
            warn!(account = %name, folder, "{w}");
            out.warnings.push(w);
            return Ok(());
        }
        Ok(Err(e)) => return Err(imap_err(&name, &what, e)),
        Ok(Ok(m)) => m,
    };
    let validity = mbox
        .uid_validity
        .ok_or_else(|| FetchError::Protocol(format!("{name}: {folder}: no UIDVALIDITY")))?;
    let refetch = matches!(state, Some((v, _)) if v != validity);
    let last = match state {
        Some((v, l)) if v == validity => l,
        _ => 0,
    };
    if refetch {
        warn!(account = %name, folder, old = state.map(|s| s.0), new = validity,
            "UIDVALIDITY changed: fetching the folder again, skipping messages already delivered");
    }
    if mbox.exists == 0 {
        if state.is_none() {
            let (n, fo) = (name.clone(), folder.to_string());
            f.db.run(move |c| {
                db::fetch::commit_step(c, &n, &fo, &[], &[], Some((validity, 0)), db::now())
            })
            .await?;
        }
        return Ok(());
    }

    // Candidates: keep → above the last UID; otherwise the whole folder, so messages
    // delivered before a crash but never expunged are removed now.
    let whole = refetch || !acc.keep || acc.fetchall;
    // Every UID is below UIDNEXT: with `keep` and UIDNEXT at most one past the last UID
    // fetched, nothing can be new and the server is not asked.
    let nothing_new = !whole
        && mbox
            .uid_next
            .is_some_and(|next| next <= last.saturating_add(1));
    let listing = if nothing_new {
        Vec::new()
    } else {
        se.sizes(&if whole {
            "1:*".to_string()
        } else {
            format!("{}:*", last + 1)
        })
        .await?
    };
    let prefix = format!("{validity}:");
    // What was delivered already: the whole set when the whole folder is looked at;
    // with `keep`, only the UIDs above the last one fetched can be new, and a re-poll
    // with nothing new looks nothing up.
    let (n, fo) = (name.clone(), folder.to_string());
    let seen = if whole {
        f.db.run(move |c| db::fetch::seen_set(c, &n, &fo)).await?
    } else {
        let above: Vec<String> = listing
            .iter()
            .filter(|l| l.0 > last)
            .map(|l| format!("{prefix}{}", l.0))
            .collect();
        match above.len() {
            0 => HashSet::new(),
            k if k <= SEEN_LOOKUP_MAX => {
                f.db.run(move |c| db::fetch::seen_among(c, &n, &fo, &above))
                    .await?
            }
            _ => f.db.run(move |c| db::fetch::seen_set(c, &n, &fo)).await?,
        }
    };
    let mut delete_now: Vec<u32> = Vec::new();
    let mut todo: Vec<(u32, u64)> = Vec::new();
    let max = f.max_message();
    // The lowest UID left on the server this time (over `limit`, past `fetchlimit`):
    // last_uid stays below it, so raising the limit fetches it on a later poll.
    let mut cap = u32::MAX;
    for &(uid, size) in &listing {
        let was_seen = seen.contains(&format!("{prefix}{uid}"));
        if was_seen && !acc.keep {
            delete_now.push(uid);
            continue;
        }
        if !refetch && !acc.fetchall && (uid <= last || was_seen) {
            continue;
        }
        if acc.limit.is_some_and(|l| size > l) || size > max {
            debug!(account = %name, folder, uid, size, "over the size limit: left on the server");
            out.skipped += 1;
            cap = cap.min(uid);
            continue;
        }
        if acc.fetchlimit.is_some_and(|l| todo.len() >= l as usize) {
            out.skipped += 1;
            cap = cap.min(uid);
            continue;
        }
        todo.push((uid, size));
    }
    if acc.keep
        && let Some(days) = acc.delete_after_days
    {
        let (n, fo, before) = (
            name.clone(),
            folder.to_string(),
            db::now() - i64::from(days) * 86_400,
        );
        let old =
            f.db.run(move |c| db::fetch::seen_before(c, &n, &fo, before))
                .await?;
        let on_server: HashSet<u32> = listing.iter().map(|l| l.0).collect();
        let mut old_uids: Vec<u32> = old
            .iter()
            .filter_map(|u| u.strip_prefix(&prefix)?.parse().ok())
            .filter(|u| on_server.contains(u) || !whole)
            .collect();
        old_uids.sort_unstable();
        delete_now.extend(old_uids);
    }
    info!(account = %name, folder, validity, last, on_server = mbox.exists, new = todo.len(),
        delete = delete_now.len(), refetch, "IMAP poll");
    if !delete_now.is_empty() {
        se.delete(&delete_now).await?;
        out.deleted += delete_now.len() as u64;
        let forget: Vec<String> = delete_now.iter().map(|u| format!("{prefix}{u}")).collect();
        let (n, fo) = (name.clone(), folder.to_string());
        f.db.run(move |c| db::fetch::commit_step(c, &n, &fo, &[], &forget, None, db::now()))
            .await?;
    }
    f.progress
        .start(&name, todo.len() as u64, todo.iter().map(|t| t.1).sum());

    // Download batch k+1 while batch k is being delivered.
    let mut pending: Option<Batch> = None;
    let mut idx = 0;
    let mut frozen = false; // a deferred message stops last_uid from moving past it
    let mut high = last;
    let mut to_expunge: Vec<u32> = Vec::new();
    while idx < todo.len() || pending.is_some() {
        if f.shutdown.is_cancelled() {
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
            let uids: Vec<u32> = todo[idx..end].iter().map(|t| t.0).collect();
            idx = end;
            let msgs = se.bodies(&uids, bytes, max).await?;
            let mut sent = Vec::new();
            let mut dups = Vec::new();
            let mut incoming: Vec<Incoming> = Vec::new();
            for (uid, raw) in msgs {
                let did = dedup_id(&raw);
                if refetch && seen.contains(&did) {
                    dups.push((uid, did));
                    continue;
                }
                sent.push((uid, raw.len() as u64, did));
                incoming.push(f.incoming(
                    acc,
                    raw,
                    format!("imap:{name}:{folder}:{validity}:{uid}"),
                ));
            }
            let d = f.deliver.clone();
            next = Some(Batch {
                sent,
                dups,
                task: tokio::spawn(async move { d.deliver_batch(incoming).await }),
            });
        }
        if let Some(b) = pending.take() {
            let done = finish_batch(
                f,
                acc,
                folder,
                validity,
                b,
                refetch,
                &mut frozen,
                cap,
                &mut high,
                out,
            )
            .await?;
            if !acc.keep {
                // Durably delivered and committed as seen: may go, in groups.
                to_expunge.extend(done);
            }
        }
        pending = next;
        if to_expunge.len() >= EXPUNGE_EVERY || (pending.is_none() && !to_expunge.is_empty()) {
            let gone = std::mem::take(&mut to_expunge);
            se.delete(&gone).await?;
            out.deleted += gone.len() as u64;
            // Expunged: their rows are no longer needed. Forgotten only now, so a crash
            // before the expunge still finds them seen and deletes instead of fetching.
            let mut forget: Vec<String> = gone.iter().map(|u| format!("{prefix}{u}")).collect();
            forget.extend(forgettable_ids(&gone));
            let (n, fo) = (name.clone(), folder.to_string());
            f.db.run(move |c| db::fetch::commit_step(c, &n, &fo, &[], &forget, None, db::now()))
                .await?;
        }
    }
    if refetch {
        // The whole folder is done: move to the new UIDVALIDITY, drop the old rows.
        let stale: Vec<String> = seen
            .iter()
            .filter(|u| {
                u.as_bytes().first().is_some_and(u8::is_ascii_digit) && !u.starts_with(&prefix)
            })
            .cloned()
            .collect();
        let (n, fo) = (name.clone(), folder.to_string());
        f.db.run(move |c| {
            db::fetch::commit_step(c, &n, &fo, &[], &stale, Some((validity, high)), db::now())
        })
        .await?;
    }
    Ok(())
}

/// Dedup rows are kept for `keep` accounts; for deleting accounts a message that is
/// expunged can never come back, but its Message-ID row may still guard a copy in
/// another folder, so nothing extra is forgotten here.
fn forgettable_ids(_uids: &[u32]) -> Vec<String> {
    Vec::new()
}

/// Waits for a batch's delivery and records it (one commit); returns the UIDs that may
/// now be deleted at the ISP.
async fn finish_batch(
    f: &Fetcher,
    acc: &AccountConfig,
    folder: &str,
    validity: u32,
    b: Batch,
    refetch: bool,
    frozen: &mut bool,
    cap: u32,
    high: &mut u32,
    out: &mut PollOutcome,
) -> Result<Vec<u32>, FetchError> {
    let reports = b
        .task
        .await
        .map_err(|e| FetchError::Delivery(format!("delivery task: {e}")))?;
    if reports.len() != b.sent.len() {
        return Err(FetchError::Delivery(format!(
            "delivery returned {} reports for {} messages",
            reports.len(),
            b.sent.len()
        )));
    }
    // Everything in UID order: the first deferred UID freezes last_uid below it.
    let mut items: Vec<(u32, u64, String, Option<&DeliveryReport>)> = b
        .sent
        .iter()
        .zip(&reports)
        .map(|((u, s, d), r)| (*u, *s, d.clone(), Some(r)))
        .collect();
    items.extend(b.dups.into_iter().map(|(u, d)| (u, 0, d, None)));
    items.sort_by_key(|i| i.0);
    let mut rows = Vec::new();
    let mut done = Vec::new();
    let mut bytes = 0;
    for (uid, size, did, r) in items {
        let ok = match r.map(fate) {
            None | Some(Fate::Final) => true,
            Some(Fate::Deferred(why)) => {
                warn!(account = %acc.name, folder, uid, "delivery deferred: {why}");
                out.deferred += 1;
                false
            }
        };
        if ok {
            rows.push(format!("{validity}:{uid}"));
            rows.push(did);
            done.push(uid);
            bytes += size;
            if !*frozen && uid < cap {
                *high = (*high).max(uid);
            }
        } else {
            *frozen = true;
        }
    }
    let (n, fo) = (acc.name.clone(), folder.to_string());
    // During a UIDVALIDITY pass the state moves only at the end (see the module docs).
    let state = (!refetch).then_some((validity, *high));
    f.db.run(move |c| db::fetch::commit_step(c, &n, &fo, &rows, &[], state, db::now()))
        .await?;
    out.fetched += done.len() as u64;
    out.bytes += bytes;
    f.progress.advance(&acc.name, done.len() as u64, bytes);
    Ok(done)
}

/// `idle = true`: keep one connection on `folder`, fetch what is there, then wait in
/// IDLE and fetch again as soon as the server reports a change. Reconnects with
/// back-off after errors; returns when the fetcher shuts down.
pub async fn idle_loop(f: Fetcher, acc: AccountConfig, folder: String) {
    let mut backoff = Duration::from_secs(5);
    while !f.shutdown.is_cancelled() {
        match idle_session(&f, &acc, &folder).await {
            Ok(()) => break,
            Err(e) => {
                warn!(account = %acc.name, folder, "IDLE connection: {e}; retrying in {backoff:?}");
                let st = db::fetch::Status {
                    account: acc.name.clone(),
                    last_poll: Some(db::now()),
                    result: Some(
                        if e.is_temporary() {
                            "tempfail"
                        } else {
                            "permfail"
                        }
                        .into(),
                    ),
                    fetched: 0,
                    next_poll: Some(db::now() + backoff.as_secs() as i64),
                    last_error: Some(e.to_string()),
                };
                let _ = f.db.run(move |c| db::fetch::set_status(c, &st)).await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = f.shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(600));
            }
        }
    }
}

async fn idle_session(f: &Fetcher, acc: &AccountConfig, folder: &str) -> Result<(), FetchError> {
    let mut se = Session::open(f, acc).await?;
    se.learn_caps().await?;
    if !se.idle {
        return Err(FetchError::Config(format!(
            "{}: the server does not offer IDLE",
            acc.name
        )));
    }
    loop {
        let mut out = PollOutcome::default();
        poll_folder(f, acc, &mut se, folder, &mut out).await?;
        if out.fetched > 0 || out.deferred > 0 {
            info!(account = %acc.name, folder, fetched = out.fetched, "IDLE fetch");
        }
        let st = db::fetch::Status {
            account: acc.name.clone(),
            last_poll: Some(db::now()),
            result: Some(out.result().into()),
            fetched: out.fetched as i64,
            next_poll: None,
            last_error: None,
        };
        let _ = f.db.run(move |c| db::fetch::set_status(c, &st)).await;
        // Drain notifications that arrived while fetching; the next SELECT sees them.
        while se.s.unsolicited_responses.try_recv().is_ok() {}
        se.budget(COMMAND_BUDGET * 4);
        let Session {
            s,
            budget,
            uidplus,
            idle,
            caps_known,
            account,
            timeout,
        } = se;
        let mut h = s.idle();
        timed(timeout, &account, "IDLE", h.init()).await?;
        let (wait, stop) = h.wait_with_timeout(IDLE_REFRESH);
        let res = tokio::select! {
            r = wait => Some(r),
            _ = f.shutdown.cancelled() => None,
        };
        drop(stop);
        let s = timed(timeout, &account, "DONE", h.done()).await?;
        se = Session {
            s,
            budget,
            uidplus,
            idle,
            caps_known,
            account,
            timeout,
        };
        match res {
            None => {
                se.logout().await;
                return Ok(());
            }
            Some(Err(e)) => return Err(imap_err(&acc.name, "IDLE", e)),
            Some(Ok(r)) => debug!(account = %acc.name, folder, "IDLE woke: {r:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8, 10]), "1:3,5,7:8,10");
        assert_eq!(uid_set(&[9, 3, 3, 4]), "3:4,9");
        assert_eq!(uid_set(&[]), "");
    }
}
