//! Progress of long fetches, per account: messages and bytes. On a terminal, an
//! indicatif bar per account; otherwise (daemon, cron) an info log line at most every
//! [`LOG_EVERY`] per account, so a first fetch of 10 000 messages is visibly alive.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

/// How often the non-terminal form logs.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

struct Entry {
    total_msgs: u64,
    total_bytes: u64,
    msgs: u64,
    bytes: u64,
    started: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
}

/// Shared by every poll in a process; cheap to clone.
#[derive(Clone)]
pub struct Progress {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    multi: Option<MultiProgress>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Bars when stderr is a terminal, log lines otherwise.
    pub fn new() -> Progress {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            entries: Arc::default(),
            multi,
        }
    }

    /// Log lines only (tests, the daemon).
    pub fn quiet() -> Progress {
        Progress {
            entries: Arc::default(),
            multi: None,
        }
    }

    /// A poll of `account` is about to download `msgs` messages, `bytes` in total.
    pub fn start(&self, account: &str, msgs: u64, bytes: u64) {
        let bar = self.multi.as_ref().filter(|_| msgs > 0).map(|m| {
            let b = m.add(ProgressBar::new(msgs));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} msgs {msg} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(account.to_string());
            b
        });
        let now = Instant::now();
        let mut g = self.entries.lock().unwrap();
        let e = g.entry(account.to_string()).or_insert(Entry {
            total_msgs: 0,
            total_bytes: 0,
            msgs: 0,
            bytes: 0,
            started: now,
            last_log: now,
            bar: None,
        });
        e.total_msgs += msgs;
        e.total_bytes += bytes;
        if e.bar.is_none() {
            e.bar = bar;
        } else if let Some(b) = &e.bar {
            b.set_length(e.total_msgs);
        }
    }

    /// `msgs` more messages (`bytes` bytes) of `account` are delivered.
    pub fn advance(&self, account: &str, msgs: u64, bytes: u64) {
        let mut g = self.entries.lock().unwrap();
        let Some(e) = g.get_mut(account) else { return };
        e.msgs += msgs;
        e.bytes += bytes;
        if let Some(b) = &e.bar {
            b.set_position(e.msgs);
            b.set_message(format!("{:.1} MB", e.bytes as f64 / 1e6));
        } else if e.last_log.elapsed() >= LOG_EVERY {
            e.last_log = Instant::now();
            let secs = e.started.elapsed().as_secs_f64().max(0.001);
            info!(
                account,
                "fetched {}/{} messages, {:.1}/{:.1} MB ({:.0} msg/s)",
                e.msgs,
                e.total_msgs,
                e.bytes as f64 / 1e6,
                e.total_bytes as f64 / 1e6,
                e.msgs as f64 / secs
            );
        }
    }

    /// The poll of `account` ended.
    pub fn finish(&self, account: &str) {
        if let Some(e) = self.entries.lock().unwrap().remove(account)
            && let Some(b) = e.bar
        {
            b.finish_and_clear();
        }
    }

    /// (messages, bytes) delivered so far in the running poll of `account`.
    pub fn counts(&self, account: &str) -> Option<(u64, u64)> {
        self.entries
            .lock()
            .unwrap()
            .get(account)
            .map(|e| (e.msgs, e.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_per_account() {
        let p = Progress::quiet();
        p.start("a", 10, 1000);
        p.advance("a", 3, 300);
        p.advance("a", 2, 200);
        p.advance("nobody", 1, 1);
        assert_eq!(p.counts("a"), Some((5, 500)));
        p.finish("a");
        assert_eq!(p.counts("a"), None);
    }
}
