//! A `Deliver` that writes each recipient's copy into `<root>/<user>/Maildir/new` the
//! durable way (tmp, fsync, rename, fsync dir) and honours the idempotency key, standing
//! in for the real pipeline in the fetch tests; and a config builder for them.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use zolder::message::{Deliver, DeliveryReport, Incoming, RcptOutcome};

/// Durable Maildir delivery with exactly-once keys (in memory: one process).
pub struct MaildirDeliver {
    pub root: PathBuf,
    keys: Mutex<HashSet<(String, String)>>,
    pub stored: AtomicUsize,
    pub calls: AtomicUsize,
    /// Recipients whose delivery fails temporarily.
    pub tempfail: Mutex<HashSet<String>>,
    seq: AtomicUsize,
}

impl MaildirDeliver {
    pub fn new(root: &Path) -> MaildirDeliver {
        MaildirDeliver {
            root: root.to_path_buf(),
            keys: Mutex::default(),
            stored: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            tempfail: Mutex::default(),
            seq: AtomicUsize::new(0),
        }
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join(user).join("Maildir")
    }

    /// Files in a user's Maildir/new.
    pub fn count(&self, user: &str) -> usize {
        std::fs::read_dir(self.maildir(user).join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn store(&self, user: &str, bytes: &[u8]) -> std::io::Result<()> {
        let md = self.maildir(user);
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(sub))?;
        }
        let name = format!(
            "{}.{}.test",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::SeqCst)
        );
        let tmp = md.join("tmp").join(&name);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, md.join("new").join(&name))?;
        std::fs::File::open(md.join("new"))?.sync_all()?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Deliver for MaildirDeliver {
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::new();
        for m in msgs {
            let mut r = DeliveryReport::default();
            for rc in &m.envelope.recipients {
                if self.tempfail.lock().unwrap().contains(rc) {
                    r.outcomes.push((
                        rc.clone(),
                        RcptOutcome::TempFail("test: mailbox busy".into()),
                    ));
                    continue;
                }
                let key = m.envelope.idempotency_key.clone().unwrap_or_default();
                let fresh = key.is_empty()
                    || !self
                        .keys
                        .lock()
                        .unwrap()
                        .contains(&(key.clone(), rc.clone()));
                if fresh {
                    if let Err(e) = self.store(rc, &m.message.bytes) {
                        r.outcomes
                            .push((rc.clone(), RcptOutcome::TempFail(e.to_string())));
                        continue;
                    }
                    self.stored.fetch_add(1, Ordering::SeqCst);
                    self.keys.lock().unwrap().insert((key, rc.clone()));
                }
                r.outcomes.push((rc.clone(), RcptOutcome::Delivered));
            }
            out.push(r);
        }
        out
    }
}

/// A config in `dir` with users `users` and the accounts given as TOML.
pub fn config(dir: &Path, users: &[&str], accounts_toml: &str) -> zolder::config::Config {
    let mut text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\npostmaster = \"{}\"\n",
        users[0]
    );
    for u in users {
        text.push_str(&format!("[[users]]\nname = \"{u}\"\n"));
    }
    text.push_str(accounts_toml);
    let path = dir.join("zolder.toml");
    std::fs::write(&path, &text).unwrap();
    zolder::config::Config::from_str_at(&text, &path, false).unwrap()
}
