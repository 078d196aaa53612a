//! STARTTLS (RFC 3501 §6.2.1, RFC 2595): switches the connection to TLS.
//!
//! # Security
//! Bytes the client pipelined after STARTTLS arrived in plain text and are
//! discarded (CVE-2011-0411-style command injection); capabilities are re-announced
//! only when asked, over TLS.

use crate::imapd::session::{Fatal, Reply, Session};

impl Session {
    pub(crate) async fn op_starttls(&mut self, tag: &str) -> Result<(), Fatal> {
        let Some(acc) = self.shared.tls.clone() else {
            self.tagged(tag, Reply::bad("STARTTLS not available"));
            return Ok(());
        };
        if self.is_tls() {
            self.tagged(tag, Reply::bad("TLS is already active"));
            return Ok(());
        }
        self.tagged(tag, Reply::ok("Begin TLS negotiation now"));
        self.flush().await?;
        self.framer.clear();
        let plain = self.stream.take().ok_or(Fatal::Closed)?;
        let tls = plain.accept_tls(&acc).await?;
        self.stream = Some(tls);
        Ok(())
    }
}
