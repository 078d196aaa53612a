//! Bounds on how much MIME structure zolder will look at in one message.
//!
//! Every walk of a message's MIME tree (IMAP BODYSTRUCTURE and sections, SEARCH,
//! the scanners, Sieve) goes through [`parse`] or [`bounded`], and then stops at
//! [`MAX_DEPTH`] levels and [`MAX_PARTS`] parts: past either limit the rest of the
//! message is one opaque leaf. That is the answer Dovecot gave to CVE-2020-12100
//! (100 levels, 10 000 parts); it is never an error, and the stored message is
//! never changed.
//!
//! # Security
//!
//! The input is a message from anyone (fetched from the ISP, or planted over SMTP).
//! mail-parser parses multiparts iteratively into one flat list, but it nests
//! `message/rfc822` parts as `Message` values inside one another: a 100 000-deep
//! chain costs about 1 GB and its `Drop` recurses once per level, which overflows a
//! tokio worker's stack and aborts the daemon. It also re-parses a base64-encoded
//! `message/rfc822` recursively, with content the raw bytes do not show.
//!
//! [`bounded`] therefore hands mail-parser a copy of the message, of the same length
//! (so that every offset it reports is valid in the stored bytes), in which
//! - only the first [`MAX_NESTING_MARKERS`] occurrences of the subtypes that can
//!   nest (`rfc822`, `global`, `digest`, any case) keep their spelling, so no more
//!   than that many `Message` levels can exist;
//! - an encapsulated message whose header block also names a transfer encoding is
//!   not re-parsed (RFC 2046 §5.2.1 forbids encoding `message/rfc822` anyway);
//! - after [`MAX_BOUNDARY_PAIRS`] pairs of `-` no further boundary can match, which
//!   bounds the number of parts (and so mail-parser's memory) by the input.
//!
//! The copy is made only when one of those limits is actually reached; an ordinary
//! message is parsed in place. The scan is one pass over the bytes, no recursion.

use std::borrow::Cow;

use mail_parser::{Message, MessageParser};

/// Deepest MIME nesting (multipart and encapsulated messages together) walked.
pub const MAX_DEPTH: usize = 100;
/// Most MIME parts walked in one message (all levels together).
pub const MAX_PARTS: usize = 10_000;
/// Occurrences of a nesting subtype (`rfc822`, `global`, `digest`) kept as written.
pub const MAX_NESTING_MARKERS: usize = MAX_DEPTH;
/// Pairs of `--` after which no boundary can match in the parsed copy. Larger than
/// [`MAX_PARTS`] because text uses dashes too (separator lines); the walkers enforce
/// [`MAX_PARTS`] themselves, this only bounds what mail-parser allocates.
pub const MAX_BOUNDARY_PAIRS: usize = 50_000;

/// How far around a nesting marker its header block is looked for (bytes each way).
const HEADER_BLOCK_WINDOW: usize = 16 * 1024;

const MARKERS: [&[u8]; 3] = [b"rfc822", b"global", b"digest"];
const ENCODINGS: [&[u8]; 2] = [b"base64", b"quoted-printable"];

/// Parses `raw` with mail-parser under the limits above (see the module header).
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    match bounded(raw) {
        Cow::Borrowed(b) => MessageParser::default().parse(b),
        Cow::Owned(copy) => MessageParser::default()
            .parse(&copy)
            .map(Message::into_owned),
    }
}

/// `raw`, or a same-length copy of it that mail-parser can parse within bounded
/// depth and size (see the module header). Only for parsing: never store or serve it.
pub fn bounded(raw: &[u8]) -> Cow<'_, [u8]> {
    let mut edits: Vec<(usize, u8)> = Vec::new();
    let mut markers = 0usize;
    let mut digests: Vec<usize> = Vec::new();
    let mut pairs = 0usize;
    let mut any_encoding = false;
    let mut i = 0usize;
    while i < raw.len() {
        let b = raw[i];
        if b == b'-' && raw.get(i + 1) == Some(&b'-') {
            pairs += 1;
            if pairs > MAX_BOUNDARY_PAIRS {
                // Break the pair: mail-parser matches a boundary after any `--`.
                edits.push((i + 1, b'_'));
            }
            i += 2;
            continue;
        }
        let lower = b | 0x20;
        if matches!(lower, b'r' | b'g' | b'd') {
            if let Some(m) = MARKERS.iter().find(|m| starts_with_ci(&raw[i..], m)) {
                markers += 1;
                if markers > MAX_NESTING_MARKERS {
                    edits.push((i, b'x'));
                } else if m[0] == b'd' {
                    digests.push(i);
                } else if block_has_encoding(raw, i) {
                    // An encoded encapsulated message would be decoded and re-parsed
                    // by mail-parser, out of this scan's sight: keep it opaque.
                    edits.push((i, b'x'));
                }
                i += m.len();
                continue;
            }
        } else if matches!(lower, b'b' | b'q')
            && !any_encoding
            && ENCODINGS.iter().any(|e| starts_with_ci(&raw[i..], e))
        {
            any_encoding = true;
        }
        i += 1;
    }
    if any_encoding {
        // A digest's parts default to message/rfc822, and an encoded one of those is
        // re-parsed just the same; such digests are shown flat.
        edits.extend(digests.into_iter().map(|p| (p, b'x')));
    }
    if edits.is_empty() {
        return Cow::Borrowed(raw);
    }
    let mut copy = raw.to_vec();
    for (p, b) in edits {
        copy[p] = b;
    }
    Cow::Owned(copy)
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

/// Does the header block around `at` (between the blank lines before and after it)
/// name a transfer encoding? A block larger than the window counts as "yes".
fn block_has_encoding(raw: &[u8], at: usize) -> bool {
    let lo = at.saturating_sub(HEADER_BLOCK_WINDOW);
    let hi = (at + HEADER_BLOCK_WINDOW).min(raw.len());
    let start = match memchr::memmem::rfind(&raw[lo..at], b"\n\r\n")
        .map(|p| lo + p + 3)
        .into_iter()
        .chain(memchr::memmem::rfind(&raw[lo..at], b"\n\n").map(|p| lo + p + 2))
        .max()
    {
        Some(s) => s,
        None if lo == 0 => 0,
        None => return true,
    };
    let end = match [
        memchr::memmem::find(&raw[at..hi], b"\n\r\n"),
        memchr::memmem::find(&raw[at..hi], b"\n\n"),
    ]
    .into_iter()
    .flatten()
    .min()
    {
        Some(e) => at + e,
        None if hi == raw.len() => hi,
        None => return true,
    };
    let block = &raw[start..end];
    block.windows(6).any(|w| w.eq_ignore_ascii_case(b"base64"))
        || block
            .windows(16)
            .any(|w| w.eq_ignore_ascii_case(b"quoted-printable"))
}

/// A budget for one walk of a MIME tree: [`MAX_DEPTH`] levels, [`MAX_PARTS`] parts.
#[derive(Debug)]
pub struct Budget {
    parts: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    pub fn new() -> Self {
        Budget { parts: MAX_PARTS }
    }

    /// Takes one part at `depth` (0 = the message itself); `false` means: show it
    /// (and everything under it) as an opaque leaf.
    pub fn enter(&mut self, depth: usize) -> bool {
        if depth >= MAX_DEPTH || self.parts == 0 {
            return false;
        }
        self.parts -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth` nested multiparts, each with its own boundary.
    fn nested_multipart(depth: usize) -> Vec<u8> {
        let mut m = b"From: a@b.c\r\nSubject: deep\r\n".to_vec();
        for d in 0..depth {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{d}\"\r\n\r\n--b{d}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbottom\r\n");
        for d in (0..depth).rev() {
            m.extend_from_slice(format!("--b{d}--\r\n").as_bytes());
        }
        m
    }

    fn rfc822_chain(depth: usize) -> Vec<u8> {
        let mut m = Vec::new();
        for _ in 0..depth {
            m.extend_from_slice(b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        m.extend_from_slice(b"Subject: bottom\r\n\r\nbottom\r\n");
        m
    }

    fn message_depth(m: &Message<'_>) -> usize {
        // Iterative on purpose: this test must not be the thing that overflows.
        let mut max = 0;
        let mut stack: Vec<(&Message<'_>, usize)> = vec![(m, 1)];
        while let Some((m, d)) = stack.pop() {
            max = max.max(d);
            for p in &m.parts {
                if let mail_parser::PartType::Message(inner) = &p.body {
                    stack.push((inner, d + 1));
                }
            }
        }
        max
    }

    #[test]
    fn ordinary_messages_are_parsed_in_place() {
        let m = nested_multipart(5);
        assert!(matches!(bounded(&m), Cow::Borrowed(_)));
        let chain = rfc822_chain(20);
        assert!(matches!(bounded(&chain), Cow::Borrowed(_)));
        assert_eq!(message_depth(&parse(&chain).unwrap()), 21);
    }

    #[test]
    fn a_deep_rfc822_chain_is_cut_at_the_limit() {
        let chain = rfc822_chain(100_000);
        let copy = bounded(&chain);
        assert_eq!(copy.len(), chain.len(), "same length, same offsets");
        let msg = parse(&chain).expect("still a message");
        let depth = message_depth(&msg);
        assert!(depth <= MAX_NESTING_MARKERS + 1, "depth {depth}");
        // Dropping it must not recurse 100 000 times either (it would abort here).
        drop(msg);
    }

    #[test]
    fn encoded_encapsulated_messages_stay_opaque() {
        let m = b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n\
Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp4DQo=\r\n--X--\r\n";
        let c = bounded(m);
        assert!(matches!(c, Cow::Owned(_)));
        let msg = parse(m).unwrap();
        assert!(
            msg.parts
                .iter()
                .all(|p| !matches!(p.body, mail_parser::PartType::Message(_)))
        );
    }

    #[test]
    fn boundary_pairs_past_the_limit_are_broken() {
        let mut m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..(MAX_BOUNDARY_PAIRS + 10) {
            m.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        let msg = parse(&m).unwrap();
        assert!(
            msg.parts.len() <= MAX_BOUNDARY_PAIRS + 2,
            "{}",
            msg.parts.len()
        );
        assert!(msg.parts.len() > MAX_PARTS);
    }

    #[test]
    fn the_budget_stops_at_depth_and_count() {
        let mut b = Budget::new();
        assert!(b.enter(0));
        assert!(!b.enter(MAX_DEPTH));
        let mut n = 1;
        while b.enter(1) {
            n += 1;
        }
        assert_eq!(n, MAX_PARTS);
    }
}
