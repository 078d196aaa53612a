//! The queue's control socket, `data_dir/queue/control.sock`: how `zolder flush`,
//! `sendmail -q` and `sendmail` (after a direct enqueue or a maildrop write) reach a
//! running daemon. One command per connection, one line back:
//!
//! # Format
//! ```text
//! flush   → "ok messages=N sent=N deferred=N failed=N" once the run is over
//! flush id QUEUEID     → the same, for that message only (`sendmail -qI`)
//! flush site DOMAIN    → the same, for messages with a recipient there (`sendmail -qR`)
//! start [id QUEUEID | site DOMAIN] → "ok started": the same run as `flush`, begun
//!           without waiting for its end (`zolder flush --no-wait`)
//! wake    → "ok"   (new mail was queued directly; look now)
//! pickup  → "ok"   (a file was written into maildrop/)
//! ```
//!
//! # Security
//! Any local user may connect (mode 0666), like Postfix's `authorized_flush_users =
//! static:anyone`; the commands only make the daemon do sooner what it would do
//! anyway. Input is one line of at most 300 bytes; a flush target must be a queue
//! id or a domain name ([`super::FlushTarget::parse`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Queue;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("queue").join("control.sock")
}

/// Binds the socket (replacing a stale one from a crash).
pub fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let p = socket_path(data_dir);
    let _ = std::fs::remove_file(&p);
    let l = UnixListener::bind(&p).map_err(|e| super::store::named(&p, e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// Serves the socket until `shutdown`.
pub async fn serve(
    l: UnixListener,
    queue: Queue,
    pickup: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let (mut s, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = l.accept() => match r { Ok(x) => x, Err(e) => { warn!(error = %e, "control socket accept"); continue; } },
        };
        let queue = queue.clone();
        let pickup = pickup.clone();
        tokio::spawn(async move {
            let (r, mut w) = s.split();
            let mut line = String::new();
            // Room for "flush site <253-byte domain>".
            let mut r = tokio::io::BufReader::new(r.take(300));
            if r.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match line.trim() {
                l if l.starts_with("flush") => match super::FlushTarget::parse(l) {
                    Some(t) => match queue.flush_target(t).await {
                        Some(sum) => format!("ok {}\n", sum.line()),
                        None => "error queue runner not running\n".into(),
                    },
                    None => "error bad flush target\n".into(),
                },
                l if l.starts_with("start") => {
                    match super::FlushTarget::parse(&format!("flush{}", &l["start".len()..])) {
                        Some(t) => {
                            // The runner takes the request now; nobody waits for the summary.
                            tokio::spawn(async move {
                                if let Some(sum) = queue.flush_target(t).await {
                                    tracing::info!(summary = %sum.line(), "flush started over the control socket done");
                                }
                            });
                            "ok started\n".into()
                        }
                        None => "error bad flush target\n".into(),
                    }
                }
                "wake" => {
                    queue.wake();
                    "ok\n".into()
                }
                "pickup" => {
                    pickup.notify_one();
                    "ok\n".into()
                }
                other => {
                    debug!(command = %other, "unknown control command");
                    "error unknown command\n".into()
                }
            };
            let _ = w.write_all(reply.as_bytes()).await;
        });
    }
    let _ = std::fs::remove_file(socket_path(queue.config().data_dir.as_path()));
}

/// Client side (blocking, for the CLI): sends `cmd`, returns the reply line.
/// `Err` with `NotFound`/`ConnectionRefused` means no daemon is running.
pub fn request(data_dir: &Path, cmd: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket_path(data_dir))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(s, 4096)).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}
