//! When to try again, when to give up, and when the smarthost may be used.
//!
//! Retry follows Postfix's qmgr (`qmgr_active.c`): the wait is the time the message
//! has already spent in the queue, clamped to `[min_backoff, max_backoff]`, so gaps
//! roughly double until they reach the maximum. A message expires when an attempt
//! fails temporarily and it has been queued for `lifetime` or longer (Postfix
//! `maximal_queue_lifetime`). Time spent waiting for a manual flush never counts on
//! its own: expiry is judged only after a real attempt, so a dial-up box that is
//! offline for a week does not bounce mail it never tried to send.

use std::str::FromStr;

use chrono::TimeZone;

use crate::config::QueueConfig;

/// The next attempt after a temporary failure at `now` for mail that arrived at `arrival`.
pub fn next_attempt(cfg: &QueueConfig, now: i64, arrival: i64) -> i64 {
    let waited = (now - arrival).max(0) as u64;
    now + waited.clamp(cfg.min_backoff, cfg.max_backoff.max(cfg.min_backoff)) as i64
}

/// Has a message with this arrival time used up its lifetime? `bounce` = the message
/// is itself a bounce (null sender), which uses `bounce_lifetime`.
pub fn expired(cfg: &QueueConfig, now: i64, arrival: i64, bounce: bool) -> bool {
    let life = if bounce {
        cfg.bounce_lifetime
    } else {
        cfg.lifetime
    };
    life == 0 || now - arrival >= life as i64
}

/// The last moment a message is retried (DSN `Will-Retry-Until:`).
pub fn retry_until(cfg: &QueueConfig, arrival: i64) -> i64 {
    arrival + cfg.lifetime as i64
}

/// When the relay to the smarthost runs on its own.
#[derive(Debug, Clone)]
pub enum RelaySchedule {
    /// Only on `zolder flush` (dial-up: Postfix's `defer_transports`).
    Manual,
    /// At the times of a cron expression (with seconds).
    Cron(Box<cron::Schedule>),
}

impl RelaySchedule {
    pub fn parse(s: &str) -> Result<RelaySchedule, String> {
        if s.trim().eq_ignore_ascii_case("manual") {
            return Ok(RelaySchedule::Manual);
        }
        cron::Schedule::from_str(s)
            .map(|c| RelaySchedule::Cron(Box::new(c)))
            .map_err(|e| format!("smarthost.schedule `{s}`: {e}"))
    }

    /// The first scheduled run strictly after `now` (unix seconds, local time zone).
    pub fn next_after(&self, now: i64) -> Option<i64> {
        match self {
            RelaySchedule::Manual => None,
            RelaySchedule::Cron(c) => {
                let t = chrono::Local.timestamp_opt(now, 0).single()?;
                c.after(&t).next().map(|d| d.timestamp())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_backoff() {
        let c = QueueConfig::default();
        // Fresh message: at least 300 s.
        assert_eq!(next_attempt(&c, 1000, 1000), 1300);
        // Queued for 1000 s: wait 1000 s.
        assert_eq!(next_attempt(&c, 2000, 1000), 3000);
        // Queued for a day: capped at 4000 s.
        assert_eq!(next_attempt(&c, 86400, 0), 86400 + 4000);
        assert!(!expired(&c, 5 * 86400 - 1, 0, false));
        assert!(expired(&c, 5 * 86400, 0, false));
    }

    #[test]
    fn schedules() {
        assert!(matches!(
            RelaySchedule::parse("manual"),
            Ok(RelaySchedule::Manual)
        ));
        let s = RelaySchedule::parse("0 */15 * * * *").unwrap();
        let n = s.next_after(1_700_000_000).unwrap();
        assert!(n > 1_700_000_000 && n <= 1_700_000_000 + 900);
        assert!(RelaySchedule::parse("every now and then").is_err());
    }
}
