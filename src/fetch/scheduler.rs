//! When each account is polled: on its cron `schedule` (six fields, with seconds) or
//! every `interval` seconds (default [`DEFAULT_INTERVAL`]), with a per-account jitter
//! so that accounts sharing a schedule do not all hit the line at once, at most
//! [`MAX_PARALLEL`] polls at a time, and exponential back-off after failures.
//! `idle = true` IMAP accounts get one long-lived IDLE task per folder instead.
//!
//! Owns only timing; polling is [`Fetcher::poll`]. Status rows (`fetch_status`) get the
//! planned next poll so `zolder status` can show it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use super::{Fetcher, PollOutcome, imap};
use crate::config::account::{AccountConfig, Protocol};
use crate::db;

/// Polls at the same time, across accounts.
pub const MAX_PARALLEL: usize = 4;
/// Seconds between polls when an account names neither `schedule` nor `interval`
/// (fetchmail's Debian default daemon interval).
pub const DEFAULT_INTERVAL: u64 = 300;
/// Longest jitter added to a planned poll.
pub const MAX_JITTER: Duration = Duration::from_secs(60);
/// First and largest back-off after failed polls.
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// How an account is timed.
#[derive(Debug, Clone)]
pub enum Plan {
    Cron(Box<cron::Schedule>),
    Every(Duration),
    /// `schedule = "manual"`: only `zolder fetch` polls it.
    Manual,
}

impl Plan {
    pub fn of(acc: &AccountConfig) -> Result<Plan, String> {
        match (&acc.schedule, acc.interval) {
            (Some(s), _) if s == "manual" => Ok(Plan::Manual),
            (Some(s), _) => s
                .parse::<cron::Schedule>()
                .map(|c| Plan::Cron(Box::new(c)))
                .map_err(|e| format!("account {}: schedule `{s}`: {e}", acc.name)),
            (None, Some(i)) => Ok(Plan::Every(Duration::from_secs(i.max(1)))),
            (None, None) => Ok(Plan::Every(Duration::from_secs(DEFAULT_INTERVAL))),
        }
    }

    /// The next planned poll after `after`, without jitter.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Plan::Cron(c) => c.after(&after).next(),
            Plan::Every(d) => Some(after + chrono::Duration::from_std(*d).ok()?),
            Plan::Manual => None,
        }
    }

    /// The longest jitter that fits: a tenth of the period, at most [`MAX_JITTER`].
    pub fn max_jitter(&self, now: DateTime<Utc>) -> Duration {
        let period = match self {
            Plan::Every(d) => *d,
            Plan::Cron(c) => {
                let mut it = c.after(&now);
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
                    _ => Duration::ZERO,
                }
            }
            Plan::Manual => Duration::ZERO,
        };
        (period / 10).min(MAX_JITTER)
    }
}

/// Back-off after `failures` consecutive failed polls: 1, 2, 4 … minutes, at most 1 h.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let f = (failures - 1).min(16);
    (BACKOFF_BASE * 2u32.pow(f)).min(BACKOFF_MAX)
}

/// When to poll next: the plan's next time plus jitter, but not before the back-off
/// after failures has passed.
pub fn next_poll(
    plan: &Plan,
    now: DateTime<Utc>,
    failures: u32,
    jitter: Duration,
) -> Option<DateTime<Utc>> {
    let planned = plan.next_after(now)? + chrono::Duration::from_std(jitter).ok()?;
    let earliest = now + chrono::Duration::from_std(backoff(failures)).ok()?;
    Some(planned.max(earliest))
}

/// Polls `accounts` once, up to [`MAX_PARALLEL`] at a time (`zolder fetch`).
pub async fn poll_all(f: &Fetcher, accounts: &[AccountConfig]) -> Vec<(String, PollOutcome)> {
    let sem = Arc::new(Semaphore::new(MAX_PARALLEL));
    let mut tasks = Vec::new();
    for acc in accounts.iter().cloned() {
        let (f, sem) = (f.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            let out = f.poll(&acc).await;
            (acc.name, out)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => warn!("poll task failed: {e}"),
        }
    }
    out
}

/// How often the fetchmailrc's modification time is checked.
pub const RELOAD_CHECK: Duration = Duration::from_secs(15);

/// The daemon's scheduler: runs until `f.shutdown` is cancelled. With
/// `fetchmailrc = "PATH"`, an edit of that file (seen by its mtime and size) reloads the
/// accounts; so does `f.reload` (SIGHUP), which re-reads the config file for its
/// `[[accounts]]` too. Running polls finish the batch in hand, then the new set starts.
/// A broken edit is logged and the accounts already running keep running.
///
/// `poll_now` (SIGUSR1 to the daemon, fetchmail's wake-up signal; what an `ip-up` script
/// sends when the line comes up) polls every scheduled account at once — `schedule =
/// "manual"` accounts included — without waiting for its next planned time.
pub async fn run(f: Fetcher, accounts: Vec<AccountConfig>, poll_now: Arc<tokio::sync::Notify>) {
    let mut current = accounts;
    let mut stamp = crate::config::fetchmailrc::fetchmailrc_stamp(&f.config);
    loop {
        let generation = f.shutdown.child_token();
        // New keep accounts of a live fetchmailrc start from fetchmail's seen state.
        super::seed_from_fetchids(&f, &current).await;
        let mut tasks = spawn_all(
            &Fetcher {
                shutdown: generation.clone(),
                ..f.clone()
            },
            current.clone(),
            &poll_now,
        );
        let reload = loop {
            let hup = tokio::select! {
                _ = f.shutdown.cancelled() => break false,
                _ = tokio::time::sleep(RELOAD_CHECK) => false,
                _ = f.reload.notified() => true,
            };
            let now = crate::config::fetchmailrc::fetchmailrc_stamp(&f.config);
            if !hup && (f.config.fetchmailrc.is_none() || now == stamp) {
                continue;
            }
            stamp = now;
            let loaded = if hup {
                // The other settings stay as the daemon started with them; accounts
                // carry their own.
                match crate::config::Config::load(&f.config.path) {
                    Ok(c) => {
                        crate::config::fetchmailrc::load_accounts(&c).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                }
            } else {
                crate::config::fetchmailrc::load_accounts(&f.config).map_err(|e| e.to_string())
            };
            let what = if hup { "SIGHUP" } else { "fetchmailrc changed" };
            match loaded {
                Ok((new, warnings)) => {
                    for w in warnings {
                        warn!("{w}");
                    }
                    if new != current {
                        info!(accounts = new.len(), "{what}: reloading the accounts");
                        current = new;
                        break true;
                    }
                }
                Err(e) => error!("{what}: accounts not reloaded, keeping the running ones: {e}"),
            }
        };
        generation.cancel();
        while tasks.join_next().await.is_some() {}
        if !reload {
            return;
        }
    }
}

fn spawn_all(
    f: &Fetcher,
    accounts: Vec<AccountConfig>,
    poll_now: &Arc<tokio::sync::Notify>,
) -> tokio::task::JoinSet<()> {
    let sem = Arc::new(Semaphore::new(MAX_PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for acc in accounts.into_iter().filter(|a| !a.disabled) {
        if acc.idle && acc.protocol == Protocol::Imap {
            for folder in imap::folders(&acc) {
                info!(account = %acc.name, folder, "IDLE");
                tasks.spawn(imap::idle_loop(f.clone(), acc.clone(), folder));
            }
            continue;
        }
        let plan = match Plan::of(&acc) {
            Ok(p) => p,
            Err(e) => {
                warn!("{e}; account not scheduled");
                continue;
            }
        };
        tasks.spawn(account_loop(
            f.clone(),
            acc,
            plan,
            sem.clone(),
            poll_now.clone(),
        ));
    }
    tasks
}

async fn account_loop(
    f: Fetcher,
    acc: AccountConfig,
    plan: Plan,
    sem: Arc<Semaphore>,
    poll_now: Arc<tokio::sync::Notify>,
) {
    let mut failures = 0u32;
    // The first poll comes soon after start (spread by jitter), then on the plan; a
    // `manual` account (dial-up) waits for `zolder fetch` or SIGUSR1.
    let mut next = match plan {
        Plan::Manual => None,
        _ => Some(Utc::now() + chrono::Duration::from_std(jitter(&plan)).unwrap_or_default()),
    };
    loop {
        let (name, ts) = (acc.name.clone(), next.map(|at| at.timestamp()));
        let _ =
            f.db.run(move |c| db::fetch::set_next_poll(c, &name, ts))
                .await;
        // Until the planned time (none for `schedule = "manual"`), or a wake-up.
        let wait = next.map(|at| (at - Utc::now()).to_std().unwrap_or_default());
        if wait.is_none() {
            debug!(account = %acc.name, "schedule = manual: waiting for `zolder fetch` or SIGUSR1");
        }
        tokio::select! {
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = poll_now.notified() => info!(account = %acc.name, "woken up: polling now"),
            _ = f.shutdown.cancelled() => return,
        }
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => p,
            _ = f.shutdown.cancelled() => return,
        };
        let out = f.poll(&acc).await;
        drop(permit);
        failures = failures_after(failures, out.error.as_ref());
        next = next_poll(&plan, Utc::now(), failures, jitter(&plan));
        if failures > 0 {
            warn!(account = %acc.name, failures, next = ?next, "poll failed; backing off");
        } else if out.error.is_some() {
            info!(account = %acc.name, next = ?next, "poll failed temporarily; trying again on the account's schedule");
        }
    }
}

/// The consecutive failures that count for back-off after a poll. Only permanent ones
/// do (a refused login: hammering would lock the account); a temporary one (the ISP or
/// the line down, a delivery deferred) is retried on the account's own schedule, as
/// fetchmail does, so polling resumes as soon as the ISP is back.
pub fn failures_after(failures: u32, error: Option<&super::FetchError>) -> u32 {
    match error {
        None => 0,
        Some(e) if e.is_temporary() => 0,
        Some(_) => failures.saturating_add(1),
    }
}

fn jitter(plan: &Plan) -> Duration {
    let max = plan.max_jitter(Utc::now()).as_millis() as u64;
    Duration::from_millis(if max == 0 {
        0
    } else {
        rand::rng().random_range(0..max)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn acc(schedule: Option<&str>, interval: Option<u64>) -> AccountConfig {
        let mut a: AccountConfig = toml::from_str(
            "name = \"a\"\nprotocol = \"pop3\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\ndeliver_to = [\"x\"]\n",
        )
        .unwrap();
        a.schedule = schedule.map(String::from);
        a.interval = interval;
        a
    }

    #[test]
    fn plans() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 20, 30).unwrap();
        let hourly = Plan::of(&acc(Some("0 0 * * * *"), None)).unwrap();
        assert_eq!(
            hourly.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap())
        );
        assert_eq!(hourly.max_jitter(t), MAX_JITTER);
        let every = Plan::of(&acc(None, Some(120))).unwrap();
        assert_eq!(
            every.next_after(t),
            Some(t + chrono::Duration::seconds(120))
        );
        assert_eq!(every.max_jitter(t), Duration::from_secs(12));
        assert!(Plan::of(&acc(None, None)).unwrap().next_after(t).is_some());
        assert!(
            Plan::of(&acc(Some("manual"), None))
                .unwrap()
                .next_after(t)
                .is_none()
        );
        assert!(Plan::of(&acc(Some("every hour"), None)).is_err());
    }

    #[test]
    fn only_permanent_failures_back_off() {
        use crate::fetch::FetchError;
        let down = FetchError::Io("connect: pop.isp.example:995: Connection refused".into());
        let login = FetchError::Auth("-ERR invalid password".into());
        assert!(down.is_temporary() && !login.is_temporary());
        // An ISP outage of many polls: the next poll is on the plan, not an hour away.
        let mut f = 0;
        for _ in 0..10 {
            f = failures_after(f, Some(&down));
        }
        assert_eq!(f, 0);
        let plan = Plan::Every(Duration::from_secs(10));
        let now = Utc::now();
        let next = next_poll(&plan, now, f, Duration::ZERO).unwrap();
        assert_eq!((next - now).num_seconds(), 10);
        // A refused login backs off.
        f = failures_after(failures_after(0, Some(&login)), Some(&login));
        assert_eq!(f, 2);
        assert_eq!(failures_after(f, None), 0);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(30), BACKOFF_MAX);
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let every_min = Plan::Every(Duration::from_secs(60));
        // Failing: the back-off wins over the 1-minute plan.
        assert_eq!(
            next_poll(&every_min, t, 4, Duration::ZERO),
            Some(t + chrono::Duration::seconds(480))
        );
        // Healthy: plan + jitter.
        assert_eq!(
            next_poll(&every_min, t, 0, Duration::from_secs(5)),
            Some(t + chrono::Duration::seconds(65))
        );
    }
}
