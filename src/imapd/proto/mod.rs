//! The IMAP wire protocol with no I/O and no tokio: framing of client bytes into
//! commands ([`frame`]), the command grammar ([`parse`]) producing [`types`],
//! sequence sets ([`seq`]), dates ([`date`]), response encoding ([`response`]),
//! mailbox name encoding ([`utf7`]), message structure for FETCH and SEARCH ([`mime`])
//! and the SORT/THREAD algorithms ([`thread`]).
//!
//! Hand-written rather than imap-codec: imap-codec 2.0 is alpha (API churn between
//! alphas), models every extension we do not serve, and would still need a mapping
//! layer to our session types; the grammar we accept is ~900 lines here, fed in
//! fragments with explicit bounds, and tested with golden strings.
//!
//! # Security
//! All input is untrusted client bytes. The framer bounds line and literal sizes;
//! the parser bounds nesting depth and never panics on malformed input (it answers
//! with a [`parse::ParseError`] carrying the tag for a `BAD`).

pub mod binary;
pub mod date;
pub mod frame;
pub mod mime;
pub mod parse;
pub mod response;
pub mod seq;
pub mod thread;
pub mod types;
pub mod url;
pub mod utf7;

pub use frame::{Frame, Framer};
pub use parse::{ParseError, parse_command, parse_command_opts};
pub use seq::SeqSet;
pub use types::*;

/// Fuzzing entry (fuzz/ `imap_command`, tests/fuzz_corpus.rs): `data` as a client's
/// byte stream through the framer (before and after login) and the command parser.
/// Must never panic, and holds no more than the framer's bounds.
#[doc(hidden)]
pub fn fuzz_command(data: &[u8]) {
    for pre_auth in [true, false] {
        let mut f = Framer::new(64 * 1024, 1 << 20);
        if pre_auth {
            f = f.pre_auth();
        }
        for chunk in data.chunks(977) {
            f.feed(chunk);
            loop {
                match f.next_frame() {
                    Frame::Command(c) => {
                        let _ = parse_command_opts(&c, pre_auth);
                    }
                    Frame::TooBig { fatal: true, .. } => return,
                    Frame::Incomplete => break,
                    Frame::NeedContinuation
                    | Frame::TooBig { .. }
                    | Frame::LiteralRefused { .. } => {}
                }
            }
        }
        let _ = f.take_line();
    }
}
