//! FETCH BINARY[..], BINARY.PEEK[..] and BINARY.SIZE[..] (RFC 3516 §4.2-4.3): the
//! response items, written for [`super::fetch`], and the `[UNKNOWN-CTE]` check that
//! fails the whole FETCH before any of it is sent.
//!
//! # Format
//! `FETCH 1 (BINARY[2] BINARY.SIZE[2])` → `* 1 FETCH (BINARY[2] ~{4}\r\n\0\x01\x02\x03
//! BINARY.SIZE[2] 4)`; a literal8 (`~{n}`) only when the data holds a NUL.

use std::fmt::Write as _;

use crate::imapd::proto::binary::{self, BinaryError};
use crate::imapd::proto::{BinarySection, FetchAttr};
use crate::imapd::session::Reply;
use crate::imapd::view::Bytes;

/// Writes one BINARY item of a FETCH response.
pub(super) fn write_item(out: &mut Vec<u8>, b: &BinarySection, bytes: Option<&[u8]>) {
    // Errors were answered by `check` before; a part that does not exist is an
    // empty string, as BODY[] serves one.
    let data = bytes
        .and_then(|raw| binary::section(raw, &b.parts).ok())
        .unwrap_or_default();
    let path = b
        .parts
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    if b.size {
        let _ = write!(Bytes(out), "BINARY.SIZE[{path}] {}", data.len());
        return;
    }
    let _ = write!(Bytes(out), "BINARY[{path}]");
    let slice = match b.partial {
        Some((start, len)) => {
            let _ = write!(Bytes(out), "<{start}>");
            let s = (start as usize).min(data.len());
            let e = s.saturating_add(len as usize).min(data.len());
            &data[s..e]
        }
        None => &data[..],
    };
    let tilde = if slice.contains(&0) { "~" } else { "" };
    let _ = write!(Bytes(out), " {tilde}{{{}}}\r\n", slice.len());
    out.extend_from_slice(slice);
}

/// `Some(NO)` when a BINARY item of `attrs` cannot be decoded for this message.
pub(super) fn check(attrs: &[FetchAttr], bytes: &[u8], uid: u32) -> Option<Reply> {
    for a in attrs {
        let FetchAttr::Binary(b) = a else { continue };
        match binary::section(bytes, &b.parts) {
            Ok(_) | Err(BinaryError::NoPart) => {}
            Err(BinaryError::UnknownCte(cte)) => {
                tracing::debug!(uid, cte = %cte, "BINARY of an unknown transfer encoding");
                return Some(
                    Reply::no(format!("Unknown Content-Transfer-Encoding of UID {uid}"))
                        .code("UNKNOWN-CTE"),
                );
            }
            Err(BinaryError::TooComplex) => {
                return Some(Reply::no(format!(
                    "MIME structure of UID {uid} too deep or too large"
                )));
            }
        }
    }
    None
}
