//! The queue runner: the one task that moves queued mail on.
//!
//! It wakes when mail is queued, when the earliest local retry is due, at the
//! smarthost schedule's times and on `zolder flush`; each round it
//! 1. hands due local recipients to the local `Deliver` (in batches, with the queue id
//!    as idempotency key, so a crash mid-batch cannot store a message twice),
//! 2. when the relay is due (schedule tick) or asked for (flush: backoff ignored, like
//!    Postfix's `postqueue -f`), streams due remote recipients through the relay's
//!    single connection, recording each message's outcome before the next is sent,
//! 3. writes notices (bounces, delay warnings, success reports) BEFORE marking the
//!    recipients final, so a crash may repeat a notice but never lose one,
//! 4. removes finished messages: a FULL commit first, the file afterwards (on the
//!    remover thread, so a slow unlink never holds the relay up).
//!
//! Only one runner may own a queue (the daemon holds `queue/runner.lock`; a `flush`
//! without a daemon takes the same lock).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::bounce::{self, Action, DsnRcpt};
use super::schedule::{self, RelaySchedule};
use super::{NewMessage, NewRcpt, Queue};
use crate::db::{self, queue as q};
use crate::message::{
    Deliver, DeliveryReport, Envelope, EnvelopeDsn, Incoming, MessageSource, RawMessage,
    RcptOutcome, Source,
};

/// Why a remote recipient waits when there is nowhere to send it.
pub const NO_SMARTHOST: &str = "no smarthost configured";

/// What a flush did, per recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushSummary {
    pub messages: usize,
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
    /// Why nothing could be relayed (no smarthost configured), if so.
    pub note: Option<String>,
}

impl FlushSummary {
    fn add(&mut self, o: &FlushSummary) {
        self.messages += o.messages;
        self.sent += o.sent;
        self.deferred += o.deferred;
        self.failed += o.failed;
        if self.note.is_none() {
            self.note = o.note.clone();
        }
    }
    /// One line for the control socket and `zolder flush`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "messages={} sent={} deferred={} failed={}",
            self.messages, self.sent, self.deferred, self.failed
        );
        if let Some(n) = &self.note {
            s.push_str(&format!(" note={}", n.replace(char::is_whitespace, "_")));
        }
        s
    }
}

/// Which messages a flush is for: everything (`zolder flush`, `sendmail -q`), one
/// queue id (`sendmail -qI`, `zolder flush --id`) or the messages with a recipient
/// at one site (`sendmail -qR`, `zolder flush --site`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushTarget {
    All,
    Id(String),
    /// A domain: matches recipients at that domain or a subdomain of it.
    Site(String),
}

impl FlushTarget {
    /// The control-socket form (`flush`, `flush id ID`, `flush site DOMAIN`).
    pub fn command(&self) -> String {
        match self {
            FlushTarget::All => "flush".into(),
            FlushTarget::Id(i) => format!("flush id {i}"),
            FlushTarget::Site(d) => format!("flush site {d}"),
        }
    }

    /// Parses [`FlushTarget::command`]'s output; `None` for anything else (an id must
    /// be a queue id, a site a plausible domain).
    pub fn parse(line: &str) -> Option<FlushTarget> {
        let mut w = line.split_ascii_whitespace();
        if w.next()? != "flush" {
            return None;
        }
        let t = match (w.next(), w.next()) {
            (None, _) => FlushTarget::All,
            (Some("id"), Some(id)) if super::valid_id(id) => FlushTarget::Id(id.to_string()),
            (Some("site"), Some(d))
                if !d.is_empty()
                    && d.len() <= 253
                    && d.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                FlushTarget::Site(d.trim_matches('.').to_ascii_lowercase())
            }
            _ => return None,
        };
        w.next().is_none().then_some(t)
    }

    fn matches_rcpt(&self, rcpt: &str) -> bool {
        match self {
            FlushTarget::All => true,
            FlushTarget::Id(_) => true,
            FlushTarget::Site(site) => rcpt.rsplit_once('@').is_some_and(|(_, d)| {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == *site || d.ends_with(&format!(".{site}"))
            }),
        }
    }
}

pub(crate) type FlushRequest = (FlushTarget, oneshot::Sender<FlushSummary>);

/// The runner. Build with [`Runner::new`], then [`Runner::recover`] once, then
/// [`Runner::run`] (daemon) or [`Runner::flush_once`] (`zolder flush` without daemon).
pub struct Runner {
    queue: Queue,
    local: Option<Arc<dyn Deliver>>,
    relay: Option<Arc<dyn Deliver>>,
    schedule: RelaySchedule,
    conn: db::Connection,
    relay_host: Option<String>,
    /// Some recipient reached a final state since the last removal pass (so the
    /// removal query does not scan a large queue on every wake-up).
    finished: bool,
    /// In-flight markers not yet committed: they ride along with the next outcome
    /// commit (one transaction per relayed message).
    pending_inflight: Vec<(String, Vec<String>)>,
    remover: Remover,
}

/// Unlinks the files of removed messages on its own thread, after their rows are
/// gone (committed): on a filesystem mounted with `discard` an unlink waits for the
/// device, and the relay must not. A crash before the unlink leaves a file without a
/// row, which [`Runner::recover`] removes. Dropping it waits for the pending unlinks.
struct Remover {
    tx: Option<std::sync::mpsc::Sender<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    store: super::Store,
}

impl Remover {
    fn new(store: super::Store) -> Remover {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<String>>();
        let st = store.clone();
        let thread = std::thread::Builder::new()
            .name("queue-remover".into())
            .spawn(move || {
                for ids in rx {
                    for id in ids {
                        if let Err(e) = st.remove(&id) {
                            warn!(queue_id = %id, error = %e, "cannot remove queue file");
                        }
                    }
                }
            })
            .ok();
        Remover {
            tx: thread.is_some().then_some(tx),
            thread,
            store,
        }
    }

    fn remove(&self, ids: Vec<String>) {
        let ids = match &self.tx {
            Some(tx) => match tx.send(ids) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => ids,
        };
        // No thread: unlink here.
        for id in ids {
            if let Err(e) = self.store.remove(&id) {
                warn!(queue_id = %id, error = %e, "cannot remove queue file");
            }
        }
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A notice to send about one message.
struct Notice {
    rcpts: Vec<DsnRcpt>,
}

impl Runner {
    pub fn new(
        queue: Queue,
        local: Option<Arc<dyn Deliver>>,
        relay: Option<Arc<dyn Deliver>>,
    ) -> Result<Runner, super::QueueError> {
        let cfg = queue.config().clone();
        let schedule = match &cfg.smarthost {
            Some(s) => RelaySchedule::parse(&s.schedule).map_err(super::QueueError::Other)?,
            None => RelaySchedule::Manual,
        };
        let conn = db::open(queue.db_path())?;
        // Per-recipient bookkeeping survives a process crash without an fsync each;
        // see db::queue::set_synchronous for why that is safe.
        q::set_synchronous(&conn, false)?;
        Ok(Runner {
            relay_host: cfg.smarthost.as_ref().map(|s| s.host.clone()),
            finished: true,
            pending_inflight: Vec::new(),
            remover: Remover::new(queue.store().clone()),
            queue,
            local,
            relay,
            schedule,
            conn,
        })
    }

    /// Start-up repair after a crash: recipients left in flight go back to the queue
    /// (they will be sent again: at-least-once), half-written files are removed, files
    /// that never got their row (never acknowledged) are removed, and rows whose file
    /// is gone are reported.
    pub fn recover(&mut self) -> Result<(), super::QueueError> {
        let n = q::reset_inflight(&self.conn)?;
        if n > 0 {
            warn!(
                recipients = n,
                "recipients were in flight at the last stop; they will be sent again"
            );
        }
        let store = self.queue.store();
        store.clean_tmp()?;
        let ids: std::collections::HashSet<String> = q::all_ids(&self.conn)?.into_iter().collect();
        for f in store.list()? {
            if !ids.contains(&f) {
                info!(file = %store.path(&f).display(), "removing queue file without a queue row (finished, or never acknowledged)");
                store.remove(&f)?;
            }
        }
        let files: std::collections::HashSet<String> = store.list()?.into_iter().collect();
        for id in ids {
            if !files.contains(&id) {
                error!(queue_id = %id, file = %store.path(&id).display(), "queued message has lost its file");
            }
        }
        Ok(())
    }

    /// The daemon's loop, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let Some(mut flush_rx) = self.queue.take_flush_rx() else {
            error!("queue runner started twice; the second one stops");
            return;
        };
        let mut next_relay = self.schedule.next_after(self.queue.now());
        loop {
            let now = self.queue.now();
            if self.local.is_some() {
                self.local_pass(false).await;
            }
            if self.relay.is_none() {
                self.note_no_smarthost();
            }
            if self.relay.is_some() && next_relay.is_some_and(|t| now >= t) {
                let s = self.relay_pass(false).await;
                if s.messages > 0 {
                    info!(summary = %s.line(), "scheduled relay run");
                }
                self.log_run("scheduled run", &s);
                next_relay = self.schedule.next_after(self.queue.now());
            }
            let mut waiting: Vec<FlushRequest> = Vec::new();
            while let Ok(r) = flush_rx.try_recv() {
                waiting.push(r);
            }
            if !waiting.is_empty() {
                // One run per distinct target; requests for the same target share it.
                while let Some((target, _)) = waiting.first() {
                    let target = target.clone();
                    let s = self.flush_target(&target).await;
                    info!(summary = %s.line(), target = %target.command(), "flush");
                    for (_, w) in waiting.extract_if(.., |(t, _)| *t == target) {
                        let _ = w.send(s.clone());
                    }
                }
                continue;
            }
            self.housekeeping().await;

            // Sleep until something is due (at most a minute: delay warnings, clock).
            let now = self.queue.now();
            let mut wait = 60i64;
            if self.local.is_some()
                && let Ok(Some(t)) = q::next_due(&self.conn, true)
            {
                wait = wait.min((t - now).max(0));
            }
            if let Some(t) = next_relay {
                wait = wait.min((t - now).max(0));
            }
            if wait == 0 {
                // Due now but nothing moved (e.g. a local transport keeps failing
                // instantly): don't spin.
                wait = 1;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.queue.woken() => {}
                r = flush_rx.recv() => {
                    if let Some((target, r)) = r {
                        let s = self.flush_target(&target).await;
                        info!(summary = %s.line(), target = %target.command(), "flush");
                        let _ = r.send(s);
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
            }
        }
        debug!("queue runner stopped");
    }

    /// Everything now, ignoring backoff: local recipients, then the smarthost.
    pub async fn flush_once(&mut self) -> FlushSummary {
        self.flush_target(&FlushTarget::All).await
    }

    /// Like [`Runner::flush_once`], for the messages `target` selects only.
    pub async fn flush_target(&mut self, target: &FlushTarget) -> FlushSummary {
        let mut s = FlushSummary::default();
        if self.local.is_some() {
            s.add(&self.local_pass_for(true, target).await);
        }
        s.add(&self.relay_pass_for(true, target).await);
        self.housekeeping().await;
        self.log_run(&target.command(), &s);
        s
    }

    /// A run that moved or deferred mail goes into the event log (`zolder status`).
    fn log_run(&self, what: &str, s: &FlushSummary) {
        if s.messages > 0 || s.deferred > 0 {
            let _ = crate::db::log_event(&self.conn, "relay", what, &s.line());
        }
    }

    /// Keeps the ids `target` selects (for `Site`: a pending recipient of the given
    /// kind at that site).
    fn select(&self, ids: Vec<String>, local: bool, target: &FlushTarget) -> Vec<String> {
        match target {
            FlushTarget::All => ids,
            FlushTarget::Id(want) => ids.into_iter().filter(|i| i == want).collect(),
            FlushTarget::Site(_) => ids
                .into_iter()
                .filter(|id| {
                    q::recipients(&self.conn, id).is_ok_and(|rs| {
                        rs.iter().any(|r| {
                            r.local == local && r.is_pending() && target.matches_rcpt(&r.rcpt)
                        })
                    })
                })
                .collect(),
        }
    }

    /// Hands due local recipients to the local pipeline, 64 messages per batch.
    pub async fn local_pass(&mut self, ignore_backoff: bool) -> FlushSummary {
        self.local_pass_for(ignore_backoff, &FlushTarget::All).await
    }

    async fn local_pass_for(&mut self, ignore_backoff: bool, target: &FlushTarget) -> FlushSummary {
        let mut sum = FlushSummary::default();
        let Some(local) = self.local.clone() else {
            return sum;
        };
        let mut tried = std::collections::HashSet::new();
        loop {
            let now = self.queue.now();
            let ids = match q::due_messages(&self.conn, true, now, ignore_backoff, 64) {
                Ok(ids) => ids,
                Err(e) => {
                    error!(error = %e, "queue: cannot read due local recipients");
                    return sum;
                }
            };
            let ids: Vec<String> = ids
                .into_iter()
                .filter(|i| tried.insert(i.clone()))
                .collect();
            if ids.is_empty() {
                return sum;
            }
            let ids = self.select(ids, true, target);
            let mut batch = Vec::new();
            let mut metas = Vec::new();
            for id in ids {
                match self.load(&id, true, now, ignore_backoff).await {
                    Some((msg, rcpts, inc)) => {
                        batch.push(inc);
                        metas.push((msg, rcpts));
                    }
                    None => continue,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let reports = local.deliver_batch(batch).await;
            for (i, (msg, rcpts)) in metas.into_iter().enumerate() {
                let report = reports.get(i).cloned().unwrap_or_default();
                let s = self.apply(&msg, &rcpts, &report, true).await;
                sum.add(&s);
            }
        }
    }

    /// Without a relay: records [`NO_SMARTHOST`] on each waiting remote recipient;
    /// returns how many there are.
    fn note_no_smarthost(&self) -> usize {
        match q::note_remote_waiting(&self.conn, NO_SMARTHOST) {
            Ok(n) => n,
            Err(e) => {
                error!(error = %e, "queue: cannot mark recipients waiting for a smarthost");
                0
            }
        }
    }

    /// Streams due remote recipients through the relay.
    pub async fn relay_pass(&mut self, ignore_backoff: bool) -> FlushSummary {
        self.relay_pass_for(ignore_backoff, &FlushTarget::All).await
    }

    async fn relay_pass_for(&mut self, ignore_backoff: bool, target: &FlushTarget) -> FlushSummary {
        let Some(relay) = self.relay.clone() else {
            // Nothing can be sent: every waiting remote recipient says why (`zolder
            // queue`), and counts as deferred (`zolder flush` exits 75).
            let waiting = self.note_no_smarthost();
            return FlushSummary {
                deferred: waiting,
                note: (waiting > 0).then(|| NO_SMARTHOST.to_string()),
                ..Default::default()
            };
        };
        let now = self.queue.now();
        let ids = match q::due_messages(&self.conn, false, now, ignore_backoff, usize::MAX >> 1) {
            Ok(ids) => ids,
            Err(e) => {
                error!(error = %e, "queue: cannot read due remote recipients");
                return FlushSummary::default();
            }
        };
        let ids = self.select(ids, false, target);
        if ids.is_empty() {
            return FlushSummary::default();
        }
        let span = info_span!("relay", messages = ids.len());
        let reader = spawn_reader(self.queue.store().clone(), ids.clone());
        let mut src = RelaySource {
            runner: self,
            ids: ids.into_iter(),
            reader,
            handed: std::collections::VecDeque::new(),
            ignore_backoff,
            now,
            sum: FlushSummary::default(),
            checkpoint: std::time::Instant::now(),
        };
        relay.deliver_stream(&mut src).instrument(span).await;
        // A transport that stopped early leaves messages in flight.
        let left: Vec<_> = src.handed.drain(..).collect();
        let sum = std::mem::take(&mut src.sum);
        drop(src);
        self.pending_inflight.clear();
        for (msg, rcpts) in left {
            for r in &rcpts {
                let _ = q::requeue(&self.conn, &msg.id, &r.rcpt);
            }
        }
        sum
    }

    /// The rows of a message and its pending recipients of one kind (`None` when
    /// nothing of that kind is due).
    fn rows(
        &self,
        id: &str,
        local: bool,
        now: i64,
        ignore_backoff: bool,
    ) -> Option<(q::MessageRow, Vec<q::RcptRow>)> {
        let msg = q::message(&self.conn, id).ok()??;
        let rcpts: Vec<q::RcptRow> = q::recipients(&self.conn, id)
            .ok()?
            .into_iter()
            .filter(|r| {
                r.local == local && r.state == "queued" && (ignore_backoff || r.next_attempt <= now)
            })
            .collect();
        (!rcpts.is_empty()).then_some((msg, rcpts))
    }

    /// The `Incoming` a transport gets for a queued message.
    fn incoming(msg: &q::MessageRow, rcpts: &[q::RcptRow], bytes: Vec<u8>) -> Incoming {
        let names: Vec<String> = rcpts.iter().map(|r| r.rcpt.clone()).collect();
        let mut env = Envelope::new(
            msg.sender.clone(),
            names,
            Source::Queue {
                queue_id: msg.id.clone(),
            },
        );
        env.idempotency_key = Some(format!("queue:{}", msg.id));
        if msg.ret.is_some()
            || msg.envid.is_some()
            || rcpts
                .iter()
                .any(|r| r.notify.is_some() || r.orcpt.is_some())
        {
            env.dsn = Some(EnvelopeDsn {
                ret: msg.ret.clone(),
                envid: msg.envid.clone(),
                notify: rcpts.iter().map(|r| r.notify.clone()).collect(),
                orcpt: rcpts.iter().map(|r| r.orcpt.clone()).collect(),
            });
        }
        Incoming {
            envelope: env,
            message: RawMessage::new(bytes),
        }
    }

    /// Loads a message and its pending recipients of one kind, marks them in flight
    /// and builds the `Incoming` for the transport.
    async fn load(
        &mut self,
        id: &str,
        local: bool,
        now: i64,
        ignore_backoff: bool,
    ) -> Option<(q::MessageRow, Vec<q::RcptRow>, Incoming)> {
        let (msg, rcpts) = self.rows(id, local, now, ignore_backoff)?;
        let path = self.queue.store().path(id);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                error!(queue_id = %id, file = %path.display(), error = %e, "cannot read queued message");
                return None;
            }
        };
        let names: Vec<String> = rcpts.iter().map(|r| r.rcpt.clone()).collect();
        if let Err(e) = q::mark_inflight(&mut self.conn, id, &names) {
            error!(queue_id = %id, error = %e, "cannot mark recipients in flight");
            return None;
        }
        let inc = Self::incoming(&msg, &rcpts, bytes);
        Some((msg, rcpts, inc))
    }

    /// Records one attempt's outcomes for a message: notices first, then the rows.
    async fn apply(
        &mut self,
        msg: &q::MessageRow,
        rcpts: &[q::RcptRow],
        report: &DeliveryReport,
        local: bool,
    ) -> FlushSummary {
        let cfg = self.queue.config().clone();
        let now = self.queue.now();
        let by_rcpt: HashMap<String, &RcptOutcome> = report
            .outcomes
            .iter()
            .map(|(r, o)| (r.to_ascii_lowercase(), o))
            .collect();
        let mut sum = FlushSummary {
            messages: 1,
            ..Default::default()
        };
        let mut ups = Vec::new();
        let mut notice = Notice { rcpts: Vec::new() };
        let remote_mta = (!local)
            .then(|| self.relay_host.as_ref().map(|h| format!("dns; {h}")))
            .flatten();
        let is_bounce = msg.sender.is_none();
        for r in rcpts {
            let missing = RcptOutcome::TempFail("no outcome reported for this recipient".into());
            let o = by_rcpt
                .get(&r.rcpt.to_ascii_lowercase())
                .copied()
                .unwrap_or(&missing);
            let wants = |what: &str| match &r.notify {
                None => what != "SUCCESS",
                Some(n) => n.split(',').any(|x| x.trim().eq_ignore_ascii_case(what)),
            };
            match o {
                RcptOutcome::Delivered => {
                    sum.sent += 1;
                    // RFC 3461 §6.2.1: a DSN-capable next hop reports success itself.
                    if wants("SUCCESS") && !report.dsn_passed_on {
                        notice.rcpts.push(DsnRcpt {
                            rcpt: r.rcpt.clone(),
                            orcpt: r.orcpt.clone(),
                            action: if local {
                                Action::Delivered
                            } else {
                                Action::Relayed
                            },
                            status: "2.0.0".into(),
                            diagnostic: None,
                            remote_mta: remote_mta.clone(),
                            will_retry_until: None,
                        });
                    }
                    ups.push(q::OutcomeUpdate {
                        rcpt: r.rcpt.clone(),
                        state: "sent",
                        next_attempt: now,
                        last_error: None,
                    });
                }
                RcptOutcome::PermFail(code, reason) => {
                    sum.failed += 1;
                    let diag = if reason.starts_with(&code.to_string()) {
                        reason.clone()
                    } else {
                        format!("{code} {reason}")
                    };
                    warn!(queue_id = %msg.id, rcpt = %r.rcpt, reason = %diag, "recipient failed");
                    if wants("FAILURE") {
                        notice.rcpts.push(DsnRcpt {
                            rcpt: r.rcpt.clone(),
                            orcpt: r.orcpt.clone(),
                            action: Action::Failed,
                            status: bounce::status_of(&diag, true),
                            diagnostic: Some(diag.clone()),
                            remote_mta: remote_mta.clone(),
                            will_retry_until: None,
                        });
                    }
                    ups.push(q::OutcomeUpdate {
                        rcpt: r.rcpt.clone(),
                        state: "failed",
                        next_attempt: now,
                        last_error: Some(diag),
                    });
                }
                RcptOutcome::TempFail(reason) => {
                    if schedule::expired(&cfg.queue, now, msg.arrival, is_bounce) {
                        sum.failed += 1;
                        let diag = format!(
                            "message expired after {} s in the queue; last error: {reason}",
                            now - msg.arrival
                        );
                        warn!(queue_id = %msg.id, rcpt = %r.rcpt, reason = %reason, "recipient expired");
                        if wants("FAILURE") {
                            // Like Postfix: the last temporary status stays (4.x.x) with
                            // Action: failed; without one, 4.4.7 "delivery time expired".
                            let st = bounce::status_of(reason, false);
                            notice.rcpts.push(DsnRcpt {
                                rcpt: r.rcpt.clone(),
                                orcpt: r.orcpt.clone(),
                                action: Action::Failed,
                                status: if st == "4.0.0" { "4.4.7".into() } else { st },
                                diagnostic: Some(diag.clone()),
                                remote_mta: remote_mta.clone(),
                                will_retry_until: None,
                            });
                        }
                        ups.push(q::OutcomeUpdate {
                            rcpt: r.rcpt.clone(),
                            state: "failed",
                            next_attempt: now,
                            last_error: Some(diag),
                        });
                    } else {
                        sum.deferred += 1;
                        let next = schedule::next_attempt(&cfg.queue, now, msg.arrival);
                        debug!(queue_id = %msg.id, rcpt = %r.rcpt, reason = %reason, next, "recipient deferred");
                        ups.push(q::OutcomeUpdate {
                            rcpt: r.rcpt.clone(),
                            state: "queued",
                            next_attempt: next,
                            last_error: Some(reason.clone()),
                        });
                    }
                }
            }
        }
        if ups.iter().any(|u| u.state != "queued") {
            self.finished = true;
        }
        if !notice.rcpts.is_empty() {
            self.send_notice(msg, notice).await;
        }
        let inflight = std::mem::take(&mut self.pending_inflight);
        if let Err(e) = q::set_outcomes(&mut self.conn, &msg.id, now, &ups, &inflight) {
            error!(queue_id = %msg.id, error = %e, "cannot record delivery outcomes");
        }
        // The admin page's "sent" counter and queue-length history.
        let stats = (|| -> crate::db::Result<()> {
            if !local && sum.sent > 0 {
                crate::db::web::count(&self.conn, "sent", sum.sent as i64, now)?;
            }
            let (_, waiting) = q::counts(&self.conn)?;
            crate::db::web::gauge(&self.conn, "queue", waiting, now)
        })();
        if let Err(e) = stats {
            warn!(queue_id = %msg.id, error = %e, "cannot count");
        }
        sum
    }

    /// Queues a DSN to the message's sender; a message from `<>` gets none (never a
    /// bounce of a bounce).
    async fn send_notice(&mut self, msg: &q::MessageRow, notice: Notice) {
        let Some(sender) = msg.sender.clone() else {
            warn!(queue_id = %msg.id, "not notifying about a message from <> (no bounce of a bounce)");
            return;
        };
        let cfg = self.queue.config().clone();
        let original = match self.queue.store().read(&msg.id) {
            Ok(b) => b,
            Err(e) => {
                error!(queue_id = %msg.id, error = %e, "cannot read message for its notice");
                Vec::new()
            }
        };
        let bytes = bounce::build(&bounce::Dsn {
            hostname: &cfg.hostname,
            queue_id: &msg.id,
            sender: &sender,
            arrival: msg.arrival,
            envid: msg.envid.as_deref(),
            headers_only: msg
                .ret
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("HDRS")),
            bounce_size_limit: cfg.queue.bounce_size_limit,
            original: &original,
            rcpts: notice.rcpts,
            now: self.queue.now(),
        });
        let mut m = NewMessage::new(None, vec![], bytes, &format!("notice:{}", msg.id));
        m.recipients = vec![NewRcpt::plain(sender.clone())];
        match self.queue.enqueue(m).await {
            Ok(id) => {
                info!(queue_id = %msg.id, notice = %id, to = %sender, "delivery status notice queued");
                let _ = crate::db::log_event(
                    &self.conn,
                    "relay",
                    &msg.id,
                    &format!("delivery status notice {id} to {sender}"),
                );
            }
            Err(e) => error!(queue_id = %msg.id, error = %e, "cannot queue delivery status notice"),
        }
    }

    /// Delay warnings (when configured) and removal of finished messages.
    pub async fn housekeeping(&mut self) {
        let cfg = self.queue.config().clone();
        let now = self.queue.now();
        if cfg.queue.delay_warning > 0 {
            let ids = q::unwarned_older_than(&self.conn, now - cfg.queue.delay_warning as i64)
                .unwrap_or_default();
            for id in ids {
                let (Ok(Some(msg)), Ok(rcpts)) =
                    (q::message(&self.conn, &id), q::recipients(&self.conn, &id))
                else {
                    continue;
                };
                let until = schedule::retry_until(&cfg.queue, msg.arrival);
                let list: Vec<DsnRcpt> = rcpts
                    .iter()
                    .filter(|r| r.state == "queued" && r.attempts > 0)
                    .filter(|r| match &r.notify {
                        None => true,
                        Some(n) => n.split(',').any(|x| x.trim().eq_ignore_ascii_case("DELAY")),
                    })
                    .map(|r| DsnRcpt {
                        rcpt: r.rcpt.clone(),
                        orcpt: r.orcpt.clone(),
                        action: Action::Delayed,
                        status: bounce::status_of(r.last_error.as_deref().unwrap_or(""), false),
                        diagnostic: r.last_error.clone(),
                        remote_mta: None,
                        will_retry_until: Some(until),
                    })
                    .collect();
                if !list.is_empty() {
                    self.send_notice(&msg, Notice { rcpts: list }).await;
                }
                let _ = q::mark_warned(&self.conn, &id);
            }
        }
        self.remove_finished();
    }

    /// Removes finished messages: a FULL commit first (which also makes every earlier
    /// NORMAL commit durable), the files afterwards.
    fn remove_finished(&mut self) {
        if !std::mem::take(&mut self.finished) {
            return;
        }
        loop {
            let done = match q::finished_messages(&self.conn, 1000) {
                Ok(d) if !d.is_empty() => d,
                _ => break,
            };
            // The removal is committed with FULL: it also makes every earlier
            // NORMAL-synced outcome durable before the file disappears.
            let _ = q::set_synchronous(&self.conn, true);
            let r = q::delete_messages(&mut self.conn, &done);
            let _ = q::set_synchronous(&self.conn, false);
            if let Err(e) = r {
                error!(error = %e, "cannot remove finished messages");
                break;
            }
            debug!(n = done.len(), "finished messages removed");
            self.remover.remove(done);
        }
    }
}

/// How many queue files the reader thread may hold ready ahead of the relay.
const READ_AHEAD: usize = 8;
/// The relay pass makes a FULL commit (removing finished messages) this often, so a
/// power loss repeats at most this much relaying (see `db::queue::set_synchronous`).
const CHECKPOINT: Duration = Duration::from_secs(2);

/// Reads the queue files of `ids`, in order, on a blocking thread, at most
/// [`READ_AHEAD`] ahead of the relay: the next message is in memory while the
/// current one is on the wire.
fn spawn_reader(
    store: super::Store,
    ids: Vec<String>,
) -> tokio::sync::mpsc::Receiver<(String, std::io::Result<Vec<u8>>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        for id in ids {
            let r = store.read(&id);
            if tx.blocking_send((id, r)).is_err() {
                break; // the pass ended early
            }
        }
    });
    rx
}

/// Feeds the relay in queue order and records each outcome as it comes. The relay may
/// ask for the next message before reporting the current one (pipelining); reports
/// come in the order the messages were handed out.
struct RelaySource<'a> {
    runner: &'a mut Runner,
    ids: std::vec::IntoIter<String>,
    reader: tokio::sync::mpsc::Receiver<(String, std::io::Result<Vec<u8>>)>,
    handed: std::collections::VecDeque<(q::MessageRow, Vec<q::RcptRow>)>,
    ignore_backoff: bool,
    now: i64,
    sum: FlushSummary,
    checkpoint: std::time::Instant,
}

#[async_trait::async_trait]
impl MessageSource for RelaySource<'_> {
    async fn next(&mut self) -> Option<Incoming> {
        for id in self.ids.by_ref() {
            let bytes = match self.reader.recv().await {
                Some((rid, r)) if rid == id => r,
                Some((rid, _)) => {
                    error!(queue_id = %id, read = %rid, "queue reader out of step; ending this relay pass");
                    return None;
                }
                None => {
                    error!(queue_id = %id, "queue reader stopped; ending this relay pass");
                    return None;
                }
            };
            let Some((msg, rcpts)) = self.runner.rows(&id, false, self.now, self.ignore_backoff)
            else {
                continue;
            };
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) => {
                    let path = self.runner.queue.store().path(&id);
                    error!(queue_id = %id, file = %path.display(), error = %e, "cannot read queued message");
                    continue;
                }
            };
            let inc = Runner::incoming(&msg, &rcpts, bytes);
            // Committed with the next outcome (before this message's data is sent).
            self.runner
                .pending_inflight
                .push((id.clone(), inc.envelope.recipients.clone()));
            self.handed.push_back((msg, rcpts));
            return Some(inc);
        }
        None
    }

    async fn done(&mut self, report: DeliveryReport) {
        let Some((msg, rcpts)) = self.handed.pop_front() else {
            return;
        };
        // The marker of this message itself is moot now: its outcome follows.
        self.runner.pending_inflight.retain(|(id, _)| *id != msg.id);
        let s = self.runner.apply(&msg, &rcpts, &report, false).await;
        self.sum.add(&s);
        if self.checkpoint.elapsed() >= CHECKPOINT {
            self.runner.remove_finished();
            self.checkpoint = std::time::Instant::now();
        }
    }
}
