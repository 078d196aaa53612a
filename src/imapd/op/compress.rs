//! COMPRESS (RFC 4978): switches both directions of the connection to raw deflate.
//! Works on plain, STARTTLS and implicit-TLS connections alike: the deflate layer
//! sits above the [`crate::net::Stream`].
//!
//! # Format
//! `COMPRESS DEFLATE` → `OK DEFLATE active` (sent uncompressed); everything after,
//! both ways, is compressed. A second COMPRESS → `NO [COMPRESSIONACTIVE]`.
//!
//! # Security
//! See [`crate::imapd::compress`]: inflating is bounded per read, so the framer's
//! line and literal limits apply to the inflated bytes.

use crate::imapd::compress::Deflate;
use crate::imapd::session::{Fatal, Reply, Session};

impl Session {
    pub(crate) async fn op_compress(&mut self, tag: &str, mechanism: &str) -> Result<(), Fatal> {
        if self.deflate.is_some() {
            self.tagged(
                tag,
                Reply::no("Compression already active").code("COMPRESSIONACTIVE"),
            );
            return Ok(());
        }
        if mechanism != "DEFLATE" {
            self.tagged(tag, Reply::bad("Unknown compression mechanism"));
            return Ok(());
        }
        self.tagged(tag, Reply::ok("DEFLATE active"));
        self.flush().await?;
        // Whatever the client sent after the command is already compressed.
        let mut z = Deflate::new();
        z.push_input(&self.framer.take_buffered());
        self.deflate = Some(Box::new(z));
        Ok(())
    }
}
