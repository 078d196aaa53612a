//! Change notification: the per-user in-process broadcast and [`ChangeWatcher`],
//! which also polls the user's change counter row for changes made by another
//! process (`zolder deliver`). IMAP IDLE and NOOP updates wait on it.
//!
//! Owns the notification channels. It must not read or change mailboxes or
//! messages.

use super::*;

impl Spool {
    /// The user's change counter: differs whenever any of their mailboxes changed,
    /// in any process. Cheap (one row).
    pub fn change_counter(&self, user: &str) -> Result<u64> {
        let u = self.user(user)?;
        let conn = self.conn()?;
        Ok(dbs::changes_counter(&conn, &u.name)?)
    }

    /// A watcher that wakes when `user`'s mail changes (for IDLE).
    pub fn watch(&self, user: &str) -> Result<ChangeWatcher> {
        let u = self.user(user)?;
        let rx = self.sender(&u.name).subscribe();
        let seen = self.change_counter(&u.name)?;
        Ok(ChangeWatcher {
            spool: self.clone(),
            user: u.name,
            rx,
            seen,
            poll: Duration::from_secs(1),
        })
    }

    fn sender(&self, user: &str) -> broadcast::Sender<Change> {
        let mut map = self.inner.notify.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(user.to_ascii_lowercase())
            .or_insert_with(|| broadcast::channel(64).0)
            .clone()
    }

    pub(super) fn notify(&self, user: &str, mailbox: &str) {
        let _ = self.sender(user).send(Change {
            user: user.to_string(),
            mailbox: Some(mailbox.to_string()),
        });
    }
}

/// Wakes when a user's mail changes; see [`Spool::watch`].
pub struct ChangeWatcher {
    spool: Spool,
    user: String,
    rx: broadcast::Receiver<Change>,
    seen: u64,
    poll: Duration,
}

impl ChangeWatcher {
    /// Sets how often the cross-process counter is polled (default 1 s).
    pub fn poll_every(mut self, d: Duration) -> ChangeWatcher {
        self.poll = d;
        self
    }

    /// Waits for the next change. Changes made through this process's [`Spool`] wake
    /// it at once (with the mailbox named); changes by other processes within one poll
    /// interval (mailbox `None`). After it returns, re-read the mailbox
    /// ([`Spool::changes_since`]).
    pub async fn changed(&mut self) -> Change {
        loop {
            tokio::select! {
                r = self.rx.recv() => {
                    self.seen = self.counter(true).await.unwrap_or(self.seen);
                    match r {
                        Ok(c) => return c,
                        Err(broadcast::error::RecvError::Lagged(_)) |
                        Err(broadcast::error::RecvError::Closed) => {
                            return Change { user: self.user.clone(), mailbox: None };
                        }
                    }
                }
                _ = tokio::time::sleep(self.poll) => {
                    if let Some(c) = self.counter(false).await
                        && c != self.seen {
                            self.seen = c;
                            return Change { user: self.user.clone(), mailbox: None };
                        }
                }
            }
        }
    }

    /// The user's change counter. Unless `fresh`, a value another watcher of the
    /// same user read less than half a poll interval ago is used instead of asking
    /// the database again (a stale value only delays a wake by that much).
    async fn counter(&self, fresh: bool) -> Option<u64> {
        let key = self.user.to_ascii_lowercase();
        let counters = &self.spool.inner.counters;
        if !fresh {
            let map = counters.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&(at, c)) = map.get(&key)
                && at.elapsed() < self.poll / 2
            {
                return Some(c);
            }
        }
        let user = self.user.clone();
        let at = std::time::Instant::now();
        let c = self
            .spool
            .run(move |s| s.change_counter(&user))
            .await
            .ok()?;
        let mut map = counters.lock().unwrap_or_else(|e| e.into_inner());
        // Keep whichever reading started last.
        if map.get(&key).is_none_or(|&(t, _)| t <= at) {
            map.insert(key, (at, c));
        }
        Some(c)
    }
}
