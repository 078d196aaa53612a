//! The scan stage and the Sieve filter plugged into the pipeline's seams
//! (`deliver::hooks::ScanStage` / `FilterStage`).
//!
//! [`ScanHook`] runs the [`Scanner`], turns its [`Decision`] into the pipeline's
//! disposition and performs the quarantine itself (durably, before the pipeline reports
//! the message as taken care of), returning the postmaster notice as generated mail.
//! [`SieveHook`] runs the user's Sieve scripts and maps their actions; it drops vacation
//! replies to mail the scan stage judged spam (no backscatter to spammers) and writes
//! the vacation memory only once the copy is stored.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::{error, info};

use super::{Decision, Scanner, Verdict};
use crate::config::Config;
use crate::db::{self, Connection};
use crate::deliver::hooks::{
    FilterAction, FilterOutcome, FilterRequest, FilterStage, ScanDisposition, ScanOutcome,
    ScanStage,
};
use crate::deliver::quarantine::{NoticeSettings, Quarantine};
use crate::deliver::sieve::{SieveAction, SieveEngine, SieveRequest};
use crate::message::{Envelope, Incoming, RawMessage};

/// The scan stage: scanners, then quarantine/reject/junk per `[scan.actions]`.
#[derive(Clone)]
pub struct ScanHook {
    scanner: Scanner,
    quarantine: Quarantine,
    notice: NoticeSettings,
    db_path: PathBuf,
}

impl ScanHook {
    pub fn new(cfg: &Config, scanner: Scanner) -> ScanHook {
        ScanHook {
            scanner,
            quarantine: Quarantine::new(&cfg.data_dir),
            notice: NoticeSettings {
                hostname: cfg.hostname.clone(),
                domain: cfg
                    .local_domains
                    .first()
                    .cloned()
                    .unwrap_or_else(|| cfg.hostname.clone()),
                postmaster: cfg.postmaster.clone(),
                notify_recipients: cfg.scan.notify_recipients,
            },
            db_path: cfg.db_path(),
        }
    }

    /// From `[scan]`; `None` when no scanner is configured (use the pass-through).
    pub fn from_config(cfg: &Config) -> Result<Option<ScanHook>, super::ScanError> {
        if !cfg.scan.any() {
            return Ok(None);
        }
        Ok(Some(ScanHook::new(cfg, Scanner::from_config(cfg)?)))
    }

    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// The same stage without one scanner (`zolder quarantine release`).
    pub fn without(&self, scanner: &str) -> ScanHook {
        ScanHook {
            scanner: self.scanner.without(scanner),
            ..self.clone()
        }
    }

    async fn hold(
        &self,
        envelope: &Envelope,
        message: &[u8],
        scanner: &'static str,
        verdict: Verdict,
    ) -> Result<(String, Vec<crate::message::Generated>), String> {
        let q = self.quarantine.clone();
        let notice = self.notice.clone();
        let db_path = self.db_path.clone();
        let incoming = Incoming {
            envelope: envelope.clone(),
            message: RawMessage::new(message.to_vec()),
        };
        tokio::task::spawn_blocking(move || {
            let conn = db::open(&db_path).map_err(|e| e.to_string())?;
            let held = q
                .hold(&conn, &incoming, scanner, &verdict, &notice)
                .map_err(|e| e.to_string())?;
            Ok((
                format!("quarantined as {} ({})", held.id, verdict.describe()),
                held.notices,
            ))
        })
        .await
        .map_err(|e| format!("quarantine task: {e}"))?
    }
}

#[async_trait::async_trait]
impl ScanStage for ScanHook {
    async fn scan(&self, envelope: &Envelope, message: &[u8]) -> ScanOutcome {
        if self.scanner.is_empty() {
            return ScanOutcome::deliver();
        }
        let r = self.scanner.verdict(message, envelope).await;
        let mut out = ScanOutcome {
            disposition: ScanDisposition::Deliver,
            headers: r.headers.clone(),
            spam: r.spam_status(),
            virus: r.virus_status(),
            generated: vec![],
        };
        out.disposition = match r.decision {
            Decision::Deliver => ScanDisposition::Deliver,
            Decision::Junk => ScanDisposition::Junk,
            Decision::Reject { text, .. } => ScanDisposition::Reject(554, text),
            Decision::TempFail { scanner, reason } => {
                ScanDisposition::TempFail(format!("4.7.1 {scanner} unavailable: {reason}"))
            }
            Decision::Discard { scanner, reason } => {
                info!(scanner, %reason, "discarded by scan action");
                ScanDisposition::Held {
                    reason: format!("discarded ({scanner}: {reason})"),
                }
            }
            Decision::Quarantine { scanner, verdict } => {
                match self.hold(envelope, message, scanner, verdict).await {
                    Ok((reason, notices)) => {
                        out.generated = notices;
                        ScanDisposition::Held { reason }
                    }
                    Err(e) => {
                        // Not held durably: the message must stay where it is.
                        error!("quarantine failed: {e}");
                        ScanDisposition::TempFail(format!("4.3.0 quarantine failed: {e}"))
                    }
                }
            }
        };
        out
    }
}

/// Per-user Sieve as the pipeline's filter stage.
pub struct SieveHook {
    engine: SieveEngine,
    conn: Mutex<Option<Connection>>,
    db_path: PathBuf,
}

impl SieveHook {
    pub fn new(cfg: &Config) -> SieveHook {
        SieveHook {
            engine: SieveEngine::new(&cfg.data_dir, &cfg.hostname),
            conn: Mutex::new(None),
            db_path: cfg.db_path(),
        }
    }

    pub fn into_arc(self) -> Arc<dyn FilterStage> {
        Arc::new(self)
    }

    /// Runs `f` with the (lazily opened) database connection.
    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(db::open(&self.db_path).map_err(|e| e.to_string())?);
        }
        Ok(f(guard.as_ref().expect("opened above")))
    }
}

impl FilterStage for SieveHook {
    fn filter(&self, req: &FilterRequest<'_>) -> FilterOutcome {
        if !self.engine.applies_to(req.user) {
            return FilterOutcome::default();
        }
        let sreq = SieveRequest {
            user: req.user,
            addresses: req.addresses,
            envelope_from: req.envelope.sender.as_deref(),
            envelope_to: req.recipient,
            message: req.message,
            spam: req.spam,
            virus: req.virus,
        };
        let outcome = match self.with_conn(|c| self.engine.run(c, &sreq)) {
            Ok(o) => o,
            Err(e) => {
                error!(user = req.user, "sieve: database: {e}; keeping");
                return FilterOutcome::default();
            }
        };
        let mut actions = Vec::new();
        let mut redirected = false;
        for a in outcome.actions {
            match a {
                SieveAction::Keep { flags } => actions.push(FilterAction::Keep { flags }),
                SieveAction::FileInto { folder, flags, .. } => {
                    actions.push(FilterAction::FileInto { folder, flags })
                }
                SieveAction::Discard => actions.push(FilterAction::Discard),
                SieveAction::Reject(r) => actions.push(FilterAction::Reject(r)),
                SieveAction::Redirect(_) => redirected = true,
            }
        }
        // Redirected and not kept: nothing is stored here (empty would mean keep).
        if actions.is_empty() && redirected {
            actions.push(FilterAction::Discard);
        }
        let is_spam = matches!(req.spam, Some((true, _)));
        let mut generated = outcome.generated;
        let mut remember = outcome.duplicates;
        if is_spam {
            generated.retain(|g| g.reason != "vacation");
            remember.clear();
        }
        FilterOutcome {
            actions,
            generated,
            remember,
        }
    }

    fn stored(&self, user: &str, outcome: &FilterOutcome) {
        if outcome.remember.is_empty() {
            return;
        }
        let r = self.with_conn(|c| {
            outcome
                .remember
                .iter()
                .try_for_each(|(id, exp)| db::quarantine::record_duplicate(c, user, id, *exp))
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(user, "sieve: recording vacation memory: {e}"),
            Err(e) => error!(user, "sieve: database: {e}"),
        }
    }
}

/// Plugs the configured scanners and Sieve into a pipeline (daemon, `zolder deliver`).
pub fn wire(
    cfg: &Config,
    pipeline: crate::deliver::LocalDelivery,
) -> Result<crate::deliver::LocalDelivery, super::ScanError> {
    let mut p = pipeline.with_filter(Arc::new(SieveHook::new(cfg)));
    if let Some(hook) = ScanHook::from_config(cfg)? {
        p = p.with_scan(Arc::new(hook));
    }
    Ok(p)
}

/// Local delivery of a message released from the quarantine: the configured pipeline
/// without the scanner `skip` that caught it. Generated mail is in the report.
pub async fn redeliver(
    cfg: &Config,
    skip: &str,
    msg: crate::message::Incoming,
) -> Result<crate::message::DeliveryReport, ReleaseError> {
    use crate::message::Deliver;
    let cfg = Arc::new(cfg.clone());
    let spool = crate::spool::Spool::open(&cfg)?;
    let mut pipeline = crate::deliver::LocalDelivery::new(cfg.clone(), spool)
        .with_filter(Arc::new(SieveHook::new(&cfg)));
    if let Some(hook) = ScanHook::from_config(&cfg)? {
        pipeline = pipeline.with_scan(Arc::new(hook.without(skip)));
    }
    Ok(pipeline.deliver(msg).await)
}

/// Why a released message could not be handed to delivery.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Scan(#[from] super::ScanError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}
