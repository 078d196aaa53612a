//! bogofilter, run directly (no shell) with its word lists in `data_dir/bogofilter`
//! (`-d`), and the training worker that drains the `scan_training` queue.
//!
//! Exit codes are inverted compared with most tools (bogofilter(1) RETURN VALUES):
//! 0 spam, 1 ham, 2 unsure, 3 I/O or other error. Unsure is delivered normally with
//! its `X-Bogosity` line. A fresh install has no `wordlist.db`; bogofilter then exits 3,
//! which must not defer every message forever, so a missing word list counts as
//! "unsure, not trained yet" until the family teaches it (moving mail into Junk).
//!
//! Training: `-s`/`-n` register spam/ham; `-Sn`/`-Ns` move an earlier registration to
//! the other class. What was registered is remembered by message digest in
//! `bogofilter_registered`, so a message moved into Junk and back out is un-learned,
//! not learned twice.
//!
//! # Security
//! The message goes to bogofilter's stdin; the argv holds only fixed options and the
//! word-list folder. Its output is capped at 4 KiB.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use sha2::{Digest, Sha256};
use tokio::process::Command;
use tracing::{info, warn};

use super::{Check, Checked, Verdict, one_line};
use crate::config::Config;
use crate::db::quarantine::{self as qdb, TrainKind};
use crate::db::{self, Connection};
use crate::message::Envelope;
use crate::spool::Spool;

/// What bogofilter said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bogosity {
    Spam,
    Ham,
    Unsure,
    Error,
}

/// Maps bogofilter's exit code (without `-e`).
pub fn bogosity(code: Option<i32>) -> Bogosity {
    match code {
        Some(0) => Bogosity::Spam,
        Some(1) => Bogosity::Ham,
        Some(2) => Bogosity::Unsure,
        _ => Bogosity::Error,
    }
}

#[derive(Debug, Clone)]
pub struct Bogofilter {
    program: String,
    dir: PathBuf,
}

/// The result of one bogofilter run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Bogofilter {
    pub fn new(program: &str, dir: PathBuf) -> Bogofilter {
        Bogofilter {
            program: program.to_string(),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True once a word list exists (something was registered).
    pub fn trained(&self) -> bool {
        self.dir.join("wordlist.db").exists()
    }

    async fn run(&self, args: &[&str], message: &[u8]) -> std::io::Result<Run> {
        std::fs::create_dir_all(&self.dir)?;
        let mut child = Command::new(&self.program)
            .arg("-d")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (out, err, status) = super::feed_and_collect(&mut child, message, 4096).await;
        let (out, err, status) = (out?, err?, status?);
        Ok(Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }

    /// Classifies `message`: the verdict word and the `X-Bogosity` value.
    pub async fn classify(&self, message: &[u8]) -> Result<(Bogosity, String), String> {
        let run = self
            .run(&["-v"], message)
            .await
            .map_err(|e| format!("{}: {e}", self.program))?;
        let b = bogosity(run.code);
        if b == Bogosity::Error {
            return Err(format!(
                "{} exited {:?}: {}",
                self.program,
                run.code,
                one_line(&run.stderr)
            ));
        }
        let value = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("X-Bogosity:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| format!("{b:?}, tests=bogofilter"));
        Ok((b, value))
    }

    /// Registers `message` as `kind`, undoing an earlier opposite registration
    /// (`previous`). Returns the flags used.
    pub async fn register(
        &self,
        message: &[u8],
        kind: TrainKind,
        previous: Option<TrainKind>,
    ) -> Result<&'static str, String> {
        let flag = match (kind, previous) {
            (TrainKind::Spam, Some(TrainKind::Spam)) | (TrainKind::Ham, Some(TrainKind::Ham)) => {
                return Ok("");
            }
            (TrainKind::Spam, Some(TrainKind::Ham)) => "-Ns",
            (TrainKind::Ham, Some(TrainKind::Spam)) => "-Sn",
            (TrainKind::Spam, None) => "-s",
            (TrainKind::Ham, None) => "-n",
        };
        let run = self
            .run(&[flag], message)
            .await
            .map_err(|e| format!("{}: {e}", self.program))?;
        if run.code != Some(0) {
            return Err(format!(
                "{} {flag} exited {:?}: {}",
                self.program,
                run.code,
                one_line(&run.stderr)
            ));
        }
        Ok(flag)
    }
}

#[async_trait::async_trait]
impl Check for Bogofilter {
    fn name(&self) -> &'static str {
        "bogofilter"
    }
    fn is_spam_check(&self) -> bool {
        true
    }
    async fn check(&self, message: &[u8], _envelope: &Envelope) -> Checked {
        if !self.trained() {
            return Checked::new(Verdict::Clean).header(
                "X-Bogosity",
                "Unsure, tests=bogofilter, no word list yet (move spam into Junk to train)",
            );
        }
        match self.classify(message).await {
            Ok((b, value)) => {
                let v = if b == Bogosity::Spam {
                    let spamicity = value
                        .split(',')
                        .find_map(|p| p.trim().strip_prefix("spamicity="))
                        .and_then(|s| s.parse::<f64>().ok())
                        .unwrap_or(1.0);
                    Verdict::Spam {
                        score: spamicity,
                        symbols: vec!["BOGOFILTER".into()],
                    }
                } else {
                    Verdict::Clean
                };
                Checked::new(v).header("X-Bogosity", value)
            }
            Err(e) => Checked::new(Verdict::temporary_error(e)),
        }
    }
}

fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// SHA-256 of a message, hex: the key of `bogofilter_registered`.
pub fn digest(message: &[u8]) -> String {
    hex::encode(Sha256::digest(message))
}

/// Requests that failed this often are dropped (the message is probably gone).
pub const MAX_TRAINING_ATTEMPTS: i64 = 5;

/// Summary of one [`train_pending`] run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrainingStats {
    pub trained: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// **The training worker.** Drains up to `limit` rows of `scan_training` (filled by the
/// IMAP server through `db::quarantine::enqueue_training`), feeding each message to
/// bogofilter. `load` returns the bytes of `(user, mailbox, uid)` as stored, or `None`
/// when the message is gone (expunged since). Run it from the daemon on a timer or
/// after an IMAP MOVE/COPY; it is cheap when the queue is empty. The connection is
/// locked only around each statement, never across a bogofilter run.
pub async fn train_pending<F, Fut>(
    conn: &Mutex<Connection>,
    bogo: &Bogofilter,
    limit: usize,
    load: F,
) -> db::Result<TrainingStats>
where
    F: Fn(String, String, u32) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<u8>>>,
{
    let mut stats = TrainingStats::default();
    let rows = qdb::pending_training(&lock(conn), limit)?;
    for row in rows {
        let Some(bytes) = load(row.user.clone(), row.mailbox.clone(), row.uid).await else {
            if row.attempts + 1 >= MAX_TRAINING_ATTEMPTS {
                warn!(user = %row.user, mailbox = %row.mailbox, uid = row.uid, "training: message gone; request dropped");
                qdb::finish_training(&lock(conn), row.id)?;
                stats.skipped += 1;
            } else {
                qdb::fail_training(&lock(conn), row.id, "message not found")?;
                stats.failed += 1;
            }
            continue;
        };
        let d = digest(&bytes);
        let previous = qdb::registered(&lock(conn), &d)?;
        match bogo.register(&bytes, row.kind, previous).await {
            Ok(flag) => {
                if flag.is_empty() {
                    stats.skipped += 1;
                } else {
                    qdb::set_registered(&lock(conn), &d, row.kind)?;
                    info!(user = %row.user, mailbox = %row.mailbox, uid = row.uid, kind = row.kind.as_str(), flag, "bogofilter trained");
                    stats.trained += 1;
                }
                qdb::finish_training(&lock(conn), row.id)?;
            }
            // Bounded like a missing message: a request bogofilter keeps refusing (a
            // Junk move undone at once, a broken word list) must not fail forever.
            Err(e) if row.attempts + 1 >= MAX_TRAINING_ATTEMPTS => {
                warn!(user = %row.user, mailbox = %row.mailbox, uid = row.uid,
                    "training failed {MAX_TRAINING_ATTEMPTS} times; request dropped: {e}");
                qdb::finish_training(&lock(conn), row.id)?;
                stats.skipped += 1;
            }
            Err(e) => {
                warn!(user = %row.user, uid = row.uid, "training failed: {e}");
                qdb::fail_training(&lock(conn), row.id, &e)?;
                stats.failed += 1;
            }
        }
    }
    Ok(stats)
}

/// The daemon's training service: drains the queue every `every` (and once at start)
/// until `shutdown`, reading the messages from the spool. Run only with
/// `scan.bogofilter = true`.
pub async fn run_trainer(cfg: &Config, spool: Spool, shutdown: CancellationToken, every: Duration) {
    let bogo = Bogofilter::new(&cfg.scan.bogofilter_path, cfg.data_dir.join("bogofilter"));
    let conn = match db::open(&cfg.db_path()) {
        Ok(c) => Mutex::new(c),
        Err(e) => {
            warn!("bogofilter training disabled: {e}");
            return;
        }
    };
    loop {
        let load = |user: String, mailbox: String, uid: u32| {
            let sp = spool.clone();
            async move {
                sp.run(move |s| s.read_message(&user, &mailbox, uid))
                    .await
                    .ok()
            }
        };
        match train_pending(&conn, &bogo, 200, load).await {
            Ok(st) if st != TrainingStats::default() => info!(?st, "bogofilter training"),
            Ok(_) => {}
            Err(e) => warn!("bogofilter training: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_bogofilter_keeps_refusing_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bogofilter::new("/bin/false", dir.path().join("bogo"));
        let conn = Mutex::new(db::open_memory().unwrap());
        qdb::enqueue_training(&lock(&conn), "bouke", "Junk", 7, TrainKind::Spam).unwrap();
        let load = |_: String, _: String, _: u32| async { Some(b"Subject: x\r\n\r\nx".to_vec()) };
        for _ in 1..MAX_TRAINING_ATTEMPTS {
            let st = train_pending(&conn, &b, 10, load).await.unwrap();
            assert_eq!(st.failed, 1);
        }
        let st = train_pending(&conn, &b, 10, load).await.unwrap();
        assert_eq!((st.failed, st.skipped), (0, 1));
        assert!(qdb::pending_training(&lock(&conn), 10).unwrap().is_empty());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(bogosity(Some(0)), Bogosity::Spam);
        assert_eq!(bogosity(Some(1)), Bogosity::Ham);
        assert_eq!(bogosity(Some(2)), Bogosity::Unsure);
        assert_eq!(bogosity(Some(3)), Bogosity::Error);
        assert_eq!(bogosity(None), Bogosity::Error);
    }

    #[tokio::test]
    async fn untrained_is_unsure_and_missing_program_is_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bogofilter::new("/nonexistent/bogofilter", dir.path().join("bogo"));
        let env = Envelope::new(None, vec![], crate::message::Source::Import);
        let c = b.check(b"Subject: x\r\n\r\nx", &env).await;
        assert_eq!(c.verdict, Verdict::Clean);
        assert!(c.headers[0].1.starts_with("Unsure"));
        std::fs::create_dir_all(b.dir()).unwrap();
        std::fs::write(b.dir().join("wordlist.db"), b"").unwrap();
        let c = b.check(b"Subject: x\r\n\r\nx", &env).await;
        assert!(matches!(
            c.verdict,
            Verdict::Error {
                temporary: true,
                ..
            }
        ));
    }
}
