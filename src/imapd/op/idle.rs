//! IDLE (RFC 2177): waits for `DONE`, sending untagged updates as they happen.
//! A delivery inside this process wakes the session through the store's change
//! signal at once; one by another process (`zolder deliver`) is found by the
//! signal's poll of the user's change counter (about a second).

use std::time::Duration;

use crate::imapd::session::{AUTH_TIMEOUT, Fatal, Reply, Session, State};

const POLL: Duration = Duration::from_secs(2);

impl Session {
    pub(crate) async fn op_idle(&mut self, tag: &str) -> Result<(), Fatal> {
        self.out.extend_from_slice(b"+ idling\r\n");
        if matches!(self.state, State::Selected(_)) {
            self.sync(true).await;
        }
        self.flush().await?;
        let user = self.user();
        let mut signal = self.blocking(move |b| b.watch(&user)).await.ok();
        let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
        let shutdown = self.shared.shutdown.clone();
        loop {
            // A line may already be buffered (pipelined DONE).
            match self.framer.take_line() {
                Ok(Some(line)) => {
                    if line.eq_ignore_ascii_case(b"DONE") {
                        self.tagged(tag, Reply::ok("Idle completed"));
                    } else {
                        self.tagged(tag, Reply::bad("Expected DONE"));
                    }
                    return Ok(());
                }
                Ok(None) => {}
                Err(_) => return Err(Fatal::Protocol("line too long")),
            }
            let woke = tokio::select! {
                _ = shutdown.cancelled() => return Err(Fatal::Shutdown),
                _ = tokio::time::sleep_until(deadline) => return Err(Fatal::Timeout),
                // Cancel-safe (see `read_some`); inflates under COMPRESS.
                r = self.read_some() => {
                    r?;
                    false
                }
                _ = async {
                    match signal.as_mut() {
                        Some(s) => s.changed().await,
                        // No signal (store error): fall back to polling.
                        None => tokio::time::sleep(POLL).await,
                    }
                } => true,
            };
            if woke && matches!(self.state, State::Selected(_)) {
                self.sync(true).await;
                self.flush().await?;
                if matches!(self.state, State::Logout) {
                    return Ok(());
                }
            }
        }
    }
}
