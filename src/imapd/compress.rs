//! COMPRESS=DEFLATE (RFC 4978) state of one session: a raw deflate stream each way
//! (no zlib header), with a sync flush after every response batch so the client can
//! decode what it was sent without waiting for more.
//!
//! Sans-I/O: the session pushes the compressed bytes it read with
//! [`Deflate::push_input`] and pulls inflated bytes with [`Deflate::inflate`]; it
//! hands each outgoing batch to [`Deflate::compress`].
//!
//! # Security
//! The compressed input is untrusted. Inflating is bounded: one call yields at most
//! `max` bytes, and the session feeds them to the framer before inflating more, so
//! the framer's line and literal limits apply to the *inflated* bytes and a
//! compression bomb (1 KiB that inflates to gigabytes) cannot grow memory past them.
//! Compressed input not yet inflated is at most one socket read.
//!
//! # Memory
//! A deflate compressor holds ~250 KiB of tables. An idle session does not need
//! them: after a sync flush the stream is byte-aligned and a fresh compressor's
//! blocks are a valid continuation (they only refer back to what they themselves
//! sent). So the session drops the compressor whenever it waits for the client
//! ([`Deflate::release_compressor`]); an idle COMPRESS session keeps only the
//! inflater and its 32 KiB window, which the client's stream may refer back into.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A corrupt deflate stream from the client.
#[derive(Debug, thiserror::Error)]
#[error("deflate stream: {0}")]
pub struct DeflateError(String);

/// Both directions of a COMPRESS=DEFLATE session.
pub struct Deflate {
    inflate: Decompress,
    /// Created on first use after each release.
    deflate: Option<Compress>,
    /// Compressed bytes read from the client and not yet consumed by the inflater.
    input: Vec<u8>,
    /// The last inflate filled its output: the inflater may hold more.
    more: bool,
    /// The client ended its deflate stream; nothing more can follow.
    ended: bool,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("input", &self.input.len())
            .finish()
    }
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::new()
    }
}

impl Deflate {
    pub fn new() -> Deflate {
        Deflate {
            inflate: Decompress::new(false),
            deflate: None,
            input: Vec::new(),
            more: false,
            ended: false,
        }
    }

    /// Adds compressed bytes from the client.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Whether [`Deflate::inflate`] may produce bytes without new input.
    pub fn has_pending(&self) -> bool {
        !self.ended && (!self.input.is_empty() || self.more)
    }

    /// Whether the client ended its stream.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Inflates at most `max` bytes into `out` (appended); returns how many. Zero
    /// means more input is needed (or the stream ended).
    pub fn inflate(&mut self, max: usize, out: &mut Vec<u8>) -> Result<usize, DeflateError> {
        if self.ended {
            return Ok(0);
        }
        // `decompress_vec` writes into spare capacity only: a buffer of exactly
        // `max` bounds what one call can produce.
        let mut chunk = Vec::with_capacity(max);
        let before_in = self.inflate.total_in();
        let status = self
            .inflate
            .decompress_vec(&self.input, &mut chunk, FlushDecompress::None)
            .map_err(|e| DeflateError(e.to_string()))?;
        let consumed = (self.inflate.total_in() - before_in) as usize;
        self.input.drain(..consumed);
        if self.input.is_empty() && self.input.capacity() > 16 * 1024 {
            self.input = Vec::new();
        }
        let produced = chunk.len();
        out.extend_from_slice(&chunk);
        self.more = produced == max;
        if status == Status::StreamEnd {
            self.ended = true;
        }
        Ok(produced)
    }

    /// Frees the compressor's tables (see "Memory" above); the next
    /// [`Deflate::compress`] starts a fresh one.
    pub fn release_compressor(&mut self) {
        self.deflate = None;
    }

    /// Compresses `data` with a sync flush, appending to `out`.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        // Level 6: mail text compresses well; higher levels cost CPU for little.
        let deflate = self
            .deflate
            .get_or_insert_with(|| Compress::new(Compression::new(6), false));
        let mut rest = data;
        loop {
            out.reserve(rest.len() / 2 + 256);
            let before_in = deflate.total_in();
            // Errors are impossible for in-memory deflate with a valid flush mode.
            let _ = deflate
                .compress_vec(rest, out, FlushCompress::Sync)
                .map(|_| ());
            let consumed = (deflate.total_in() - before_in) as usize;
            rest = &rest[consumed..];
            if rest.is_empty() && out.len() < out.capacity() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn client_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.flush().unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trip_in_fragments() {
        let mut d = Deflate::new();
        let wire = client_deflate(b"a1 NOOP\r\na2 CAPABILITY\r\n");
        let mut got = Vec::new();
        for b in wire.chunks(3) {
            d.push_input(b);
            while d.inflate(5, &mut got).unwrap() > 0 {}
        }
        assert_eq!(got, b"a1 NOOP\r\na2 CAPABILITY\r\n");

        // Server side: each batch decodes on its own (sync flush).
        let mut z = Vec::new();
        d.compress(b"* OK one\r\n", &mut z);
        let mut inf = Decompress::new(false);
        let mut plain = Vec::with_capacity(100);
        inf.decompress_vec(&z, &mut plain, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(plain, b"* OK one\r\n");
        // A fresh compressor after a release continues the same stream.
        d.release_compressor();
        let mut z2 = Vec::new();
        d.compress(b"* OK two\r\n", &mut z2);
        let mut plain2 = Vec::with_capacity(100);
        inf.decompress_vec(&z2, &mut plain2, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(plain2, b"* OK two\r\n");
    }

    #[test]
    fn bomb_is_inflated_in_bounded_steps() {
        // 16 MiB of 'A' compresses to ~16 KiB.
        let wire = client_deflate(&vec![b'A'; 16 << 20]);
        assert!(wire.len() < 64 * 1024);
        let mut d = Deflate::new();
        d.push_input(&wire);
        let mut out = Vec::new();
        let n = d.inflate(4096, &mut out).unwrap();
        assert_eq!(n, 4096);
        assert_eq!(out.len(), 4096);
        assert!(d.has_pending());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Deflate::new();
        d.push_input(&[0xff; 64]);
        let mut out = Vec::new();
        assert!(d.inflate(1024, &mut out).is_err());
    }
}
