//! Framing: cuts the byte stream from a client into complete commands, following
//! literals (`{n}` synchronising, `{n+}` LITERAL+) so that a command whose argument
//! spans several lines and packets arrives as one buffer.
//!
//! Sans-I/O: the session feeds bytes in with [`Framer::feed`] and asks for the next
//! frame; the framer says when it needs more, when the client waits for a `+`
//! continuation, or when a limit was crossed.
//!
//! # Security
//! Everything here is untrusted network input. Every line (outside literals) is
//! bounded by `max_line`, every literal by `max_literal`; a synchronising literal over
//! the limit is refused before the client sends it, a non-synchronising one ends the
//! connection (RFC 7888 §4), since its bytes would otherwise be read as commands.
//!
//! Each literal is bounded, and so is a whole command (its lines and literals
//! together): before login [`PRE_AUTH_COMMAND`] in all, and a literal only for LOGIN
//! and ID (anything else gets `BAD` without a `+`, so a client that is not logged in
//! is never invited to send data); after login the literal limit (the message size)
//! for APPEND and [`MAX_COMMAND`] for anything else. The session feeds at most one
//! bounded chunk at a time (inflated, under COMPRESS), so these bounds are what a
//! connection can make the server hold.

use memchr::memchr;

/// Most bytes one command may hold, lines and literals together, before login.
pub const PRE_AUTH_COMMAND: usize = 8 * 1024;
/// Most bytes one command other than APPEND may hold after login.
pub const MAX_COMMAND: usize = 1024 * 1024;

/// What the framer has for the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Nothing complete yet: read more bytes.
    Incomplete,
    /// The client announced a synchronising literal and waits for `+ ...`.
    NeedContinuation,
    /// One complete command, literals inline, final CRLF removed.
    Command(Vec<u8>),
    /// A limit was crossed. `tag` is the command's tag when it could be read; when
    /// `fatal`, the stream can no longer be followed and the connection must end.
    TooBig { tag: Option<String>, fatal: bool },
    /// A synchronising literal for a command that may not send one in this state
    /// (before login: anything but LOGIN and ID). The line was dropped, no `+` sent.
    LiteralRefused { tag: Option<String> },
}

/// A line longer than the framer's bound.
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// The incremental command framer.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the line being examined starts within `buf`.
    scan: usize,
    /// Whether `+` was already requested for the literal at the end of the current line.
    acked: bool,
    max_line: usize,
    max_literal: usize,
    /// Not logged in yet: the [`PRE_AUTH_COMMAND`] bounds apply.
    pre_auth: bool,
    /// Bound on one command's literals together (MULTIAPPEND, CATENATE: many
    /// messages in one command, each within `max_literal`).
    max_total: usize,
}

/// The total bound of one command's literals: room for several messages of the
/// largest size, and never less than 64 MiB (nor less than one message).
pub fn total_bound(max_literal: usize) -> usize {
    max_literal.max(64 << 20)
}

impl Framer {
    /// A framer for a logged-in session (`max_literal` also bounds APPEND).
    pub fn new(max_line: usize, max_literal: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            scan: 0,
            acked: false,
            max_line,
            max_literal,
            pre_auth: false,
            max_total: total_bound(max_literal),
        }
    }

    /// The same, with the bounds of a connection that has not logged in.
    pub fn pre_auth(mut self) -> Framer {
        self.pre_auth = true;
        self
    }

    /// The client logged in: the post-login bounds apply from the next command.
    pub fn authenticated(&mut self) {
        self.pre_auth = false;
    }

    fn line_limit(&self) -> usize {
        if self.pre_auth {
            self.max_line.min(PRE_AUTH_COMMAND)
        } else {
            self.max_line
        }
    }

    /// The command word (after the tag), if the buffer starts with `tag SP word`.
    fn command_word(&self) -> Option<&[u8]> {
        let sp = memchr(b' ', &self.buf[..self.buf.len().min(80)])?;
        let rest = &self.buf[sp + 1..];
        let end = rest
            .iter()
            .position(|&b| !b.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// Most bytes the current command may hold in all.
    fn command_limit(&self) -> usize {
        let word = self.command_word().unwrap_or(b"");
        if self.pre_auth {
            PRE_AUTH_COMMAND
        } else if word.eq_ignore_ascii_case(b"APPEND") {
            // MULTIAPPEND and CATENATE carry several messages in one APPEND.
            self.max_total.saturating_add(self.max_line)
        } else {
            MAX_COMMAND.max(self.max_line)
        }
    }

    /// May the current command carry a literal in this state?
    fn literal_allowed(&self) -> bool {
        if !self.pre_auth {
            return true;
        }
        let word = self.command_word().unwrap_or(b"");
        word.eq_ignore_ascii_case(b"LOGIN") || word.eq_ignore_ascii_case(b"ID")
    }

    /// Sets the bound on one command's literals together (default [`total_bound`]).
    pub fn with_max_total(mut self, max_total: usize) -> Framer {
        self.max_total = max_total.max(self.max_literal);
        self
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes of a next command are already buffered (pipelining).
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Drops buffered bytes, e.g. the plaintext that followed STARTTLS (RFC 3207-style
    /// command injection defence).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scan = 0;
        self.acked = false;
        self.buf.shrink_to(4096);
    }

    /// Takes the bytes buffered after the last complete command (COMPRESS: what the
    /// client pipelined after it is compressed and must go through the inflater).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.scan = 0;
        self.acked = false;
        std::mem::take(&mut self.buf)
    }

    /// Shrinks the buffer after a command so idle sessions stay small.
    fn reclaim(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else if self.buf.capacity() > 64 * 1024 && self.buf.len() < 4096 {
            self.buf.shrink_to(4096);
        }
    }

    /// One raw line (AUTHENTICATE responses, IDLE's DONE), without its CRLF.
    /// `Err(LineTooLong)` when the line is longer than `max_line`.
    pub fn take_line(&mut self) -> Result<Option<Vec<u8>>, LineTooLong> {
        match memchr(b'\n', &self.buf) {
            Some(i) => {
                if i > self.line_limit() {
                    return Err(LineTooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.scan = 0;
                self.reclaim();
                Ok(Some(line))
            }
            None if self.buf.len() > self.line_limit() => Err(LineTooLong),
            None => Ok(None),
        }
    }

    /// The next frame from what was fed so far.
    pub fn next_frame(&mut self) -> Frame {
        loop {
            let max_line = self.line_limit();
            let max_command = self.command_limit();
            let rest = &self.buf[self.scan..];
            let Some(nl) = memchr(b'\n', rest) else {
                if rest.len() > max_line || self.buf.len() > max_command {
                    return Frame::TooBig {
                        tag: self.tag(),
                        fatal: true,
                    };
                }
                return Frame::Incomplete;
            };
            if nl > max_line || self.scan + nl > max_command {
                return Frame::TooBig {
                    tag: self.tag(),
                    fatal: true,
                };
            }
            let line_end = self.scan + nl; // index of '\n'
            let mut content_end = line_end;
            if content_end > self.scan && self.buf[content_end - 1] == b'\r' {
                content_end -= 1;
            }
            match literal_marker(&self.buf[self.scan..content_end]) {
                Some((n, sync)) => {
                    if !self.literal_allowed() {
                        let tag = self.tag();
                        if sync {
                            self.buf.drain(..=line_end);
                            self.scan = 0;
                            self.acked = false;
                            return Frame::LiteralRefused { tag };
                        }
                        return Frame::TooBig { tag, fatal: true };
                    }
                    let total = (line_end as u64 + 1).saturating_add(n);
                    if n > self.max_literal as u64
                        || total > max_command as u64
                        || (self.scan as u64).saturating_add(n) > self.max_total as u64
                    {
                        let tag = self.tag();
                        if sync {
                            // The client has not sent the literal: refuse and go on.
                            self.buf.drain(..=line_end);
                            self.scan = 0;
                            self.acked = false;
                            return Frame::TooBig { tag, fatal: false };
                        }
                        return Frame::TooBig { tag, fatal: true };
                    }
                    let n = n as usize;
                    let data_start = line_end + 1;
                    if self.buf.len() < data_start + n {
                        if sync && !self.acked {
                            self.acked = true;
                            return Frame::NeedContinuation;
                        }
                        return Frame::Incomplete;
                    }
                    self.scan = data_start + n;
                    self.acked = false;
                }
                None => {
                    let cmd = self.buf[..content_end].to_vec();
                    self.buf.drain(..=line_end);
                    self.scan = 0;
                    self.acked = false;
                    self.reclaim();
                    return Frame::Command(cmd);
                }
            }
        }
    }

    /// The tag at the start of the buffer, if it looks like one.
    fn tag(&self) -> Option<String> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
        let t = &self.buf[..end];
        (!t.is_empty() && end <= 64 && t.iter().all(|&b| super::parse::is_tag_char(b)))
            .then(|| String::from_utf8_lossy(t).into_owned())
    }
}

/// `{123}` or `{123+}` at the end of a line: (length, synchronising).
pub(crate) fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let mut digits = &body[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, sync))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> Framer {
        Framer::new(1000, 100)
    }

    #[test]
    fn simple_and_pipelined() {
        let mut f = framer();
        f.feed(b"a1 NOOP\r\na2 CAPA");
        assert_eq!(f.next_frame(), Frame::Command(b"a1 NOOP".to_vec()));
        assert_eq!(f.next_frame(), Frame::Incomplete);
        f.feed(b"BILITY\r\n");
        assert_eq!(f.next_frame(), Frame::Command(b"a2 CAPABILITY".to_vec()));
        assert!(!f.has_pending());
    }

    #[test]
    fn sync_literal_split_across_packets() {
        let mut f = framer();
        f.feed(b"a LOGIN {4}\r\n");
        assert_eq!(f.next_frame(), Frame::NeedContinuation);
        assert_eq!(f.next_frame(), Frame::Incomplete);
        f.feed(b"jo");
        assert_eq!(f.next_frame(), Frame::Incomplete);
        f.feed(b"hn {3+}\r\npw");
        assert_eq!(f.next_frame(), Frame::Incomplete);
        f.feed(b"d\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::Command(b"a LOGIN {4}\r\njohn {3+}\r\npwd".to_vec())
        );
    }

    #[test]
    fn literal_may_contain_crlf_and_braces() {
        let mut f = framer();
        f.feed(b"a APPEND x {7+}\r\nq {1}\r\n\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::Command(b"a APPEND x {7+}\r\nq {1}\r\n".to_vec())
        );
    }

    #[test]
    fn limits() {
        let mut f = framer();
        f.feed(b"t1 APPEND x {101}\r\nt2 NOOP\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::TooBig {
                tag: Some("t1".into()),
                fatal: false
            }
        );
        assert_eq!(f.next_frame(), Frame::Command(b"t2 NOOP".to_vec()));
        f.feed(b"t3 APPEND x {101+}\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::TooBig {
                tag: Some("t3".into()),
                fatal: true
            }
        );
        let mut f = framer();
        f.feed(&[b'x'; 1200]);
        assert!(matches!(f.next_frame(), Frame::TooBig { fatal: true, .. }));
    }

    #[test]
    fn total_bound_over_several_literals() {
        let mut f = Framer::new(1000, 100).with_max_total(150);
        f.feed(b"t1 APPEND x {80+}\r\n");
        f.feed(&[b'a'; 80]);
        f.feed(b" {80}\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::TooBig {
                tag: Some("t1".into()),
                fatal: false
            }
        );
        f.feed(b"t2 NOOP\r\n");
        assert_eq!(f.next_frame(), Frame::Command(b"t2 NOOP".to_vec()));
        let mut f = Framer::new(1000, 100).with_max_total(150);
        f.feed(b"t1 APPEND x {60+}\r\n");
        f.feed(&[b'a'; 60]);
        f.feed(b" ~{60+}\r\n");
        f.feed(&[b'b'; 60]);
        f.feed(b"\r\n");
        assert!(matches!(f.next_frame(), Frame::Command(_)));
    }

    #[test]
    fn lines() {
        let mut f = framer();
        f.feed(b"DONE\r\nrest");
        assert_eq!(f.take_line(), Ok(Some(b"DONE".to_vec())));
        assert_eq!(f.take_line(), Ok(None));
    }

    #[test]
    fn pre_auth_commands_are_bounded_in_total() {
        // 30 literals of 10 MiB in one LOGIN: refused at the first one past the bound,
        // before the client sends it.
        let mut f = Framer::new(64 * 1024, 10 << 20).pre_auth();
        f.feed(b"a1 LOGIN {4000}\r\n");
        assert_eq!(f.next_frame(), Frame::NeedContinuation);
        f.feed(&[b'u'; 4000]);
        f.feed(b" {10485760}\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::TooBig {
                tag: Some("a1".into()),
                fatal: false
            }
        );
        // APPEND before login: no `+`, a BAD instead.
        let mut f = Framer::new(64 * 1024, 10 << 20).pre_auth();
        f.feed(b"a2 APPEND INBOX {100}\r\n");
        assert_eq!(
            f.next_frame(),
            Frame::LiteralRefused {
                tag: Some("a2".into())
            }
        );
        f.feed(b"a3 APPEND INBOX {100+}\r\n");
        assert!(matches!(f.next_frame(), Frame::TooBig { fatal: true, .. }));
        // A long line before login.
        let mut f = Framer::new(64 * 1024, 10 << 20).pre_auth();
        f.feed(&[b'x'; PRE_AUTH_COMMAND + 10]);
        assert!(matches!(f.next_frame(), Frame::TooBig { fatal: true, .. }));
        // After login APPEND may carry a message of the literal limit, others less.
        let mut f = Framer::new(64 * 1024, 10 << 20).pre_auth();
        f.authenticated();
        f.feed(b"a4 APPEND INBOX {10485760}\r\n");
        assert_eq!(f.next_frame(), Frame::NeedContinuation);
        let mut f = Framer::new(64 * 1024, 10 << 20);
        f.feed(b"a5 SEARCH TEXT {2000000}\r\n");
        assert!(matches!(f.next_frame(), Frame::TooBig { fatal: false, .. }));
    }
}
