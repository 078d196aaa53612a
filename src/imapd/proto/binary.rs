//! FETCH BINARY (RFC 3516): a body part with its Content-Transfer-Encoding undone
//! (base64, quoted-printable; 7bit/8bit/binary as they are), for `BINARY[1.2]`,
//! `BINARY.PEEK[..]` and `BINARY.SIZE[..]`.
//!
//! Only the transfer encoding is undone: the charset stays as stored (a client asked
//! for the octets). Structure comes from mail-parser, as in [`super::mime`]; an
//! encapsulated message is re-parsed from its own bytes.
//!
//! # Security
//! The message is stored mail (possibly hostile). The walk follows at most
//! [`MAX_DEPTH`] encapsulation levels and refuses messages of more than
//! [`MAX_PARTS`] parts; the decoders are single passes whose output is never longer
//! than their input, so memory stays bounded by the message size.

use mail_parser::{MessagePart, PartType};

/// Deepest message/rfc822 nesting followed (and longest part path accepted).
pub const MAX_DEPTH: usize = 100;
/// Most MIME parts in one (encapsulated) message walked.
pub const MAX_PARTS: usize = 10_000;

/// Why a BINARY section could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// The part's Content-Transfer-Encoding is not one we decode: `NO [UNKNOWN-CTE]`.
    UnknownCte(String),
    /// No such part (served as an empty string, like BODY[]).
    NoPart,
    /// Deeper or larger than the bounds above.
    TooComplex,
}

/// The decoded bytes of part `path` of `raw` (`[]` = the whole message, as stored).
pub fn section(raw: &[u8], path: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if path.is_empty() {
        return Ok(raw.to_vec());
    }
    if path.len() > MAX_DEPTH {
        return Err(BinaryError::TooComplex);
    }
    find(raw, path, 0)
}

fn find(raw: &[u8], path: &[u32], depth: usize) -> Result<Vec<u8>, BinaryError> {
    if depth >= MAX_DEPTH {
        return Err(BinaryError::TooComplex);
    }
    let msg = super::mime::parse(raw).ok_or(BinaryError::NoPart)?;
    if msg.parts.len() > MAX_PARTS {
        return Err(BinaryError::TooComplex);
    }
    let raw = msg.raw_message();
    let mut id = 0usize;
    for (i, &n) in path.iter().enumerate() {
        let cur = msg.parts.get(id).ok_or(BinaryError::NoPart)?;
        match &cur.body {
            PartType::Multipart(children) => {
                id = *children
                    .get((n as usize).wrapping_sub(1))
                    .ok_or(BinaryError::NoPart)? as usize;
            }
            PartType::Message(_) if i > 0 => {
                // The rest of the path is inside the encapsulated message.
                let body = body_of(raw, cur);
                return find(body, &path[i..], depth + 1);
            }
            _ if n == 1 && i == 0 => {}
            _ => return Err(BinaryError::NoPart),
        }
    }
    let part = msg.parts.get(id).ok_or(BinaryError::NoPart)?;
    let body = body_of(raw, part);
    if matches!(part.body, PartType::Multipart(_)) {
        return Ok(body.to_vec());
    }
    decode(body, &cte(raw, part))
}

fn body_of<'a>(raw: &'a [u8], part: &MessagePart<'_>) -> &'a [u8] {
    raw.get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(&[])
}

/// The part's Content-Transfer-Encoding, lower-cased (`7bit` when absent).
fn cte(raw: &[u8], part: &MessagePart<'_>) -> String {
    part.headers
        .iter()
        .find(|h| {
            h.name
                .as_str()
                .eq_ignore_ascii_case("Content-Transfer-Encoding")
        })
        .and_then(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .map(|v| {
            let v = String::from_utf8_lossy(v);
            // Drop a trailing comment: `base64 (as sent)`.
            let v = v.split('(').next().unwrap_or("");
            v.trim().to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "7bit".into())
}

/// Undoes one transfer encoding.
pub fn decode(body: &[u8], cte: &str) -> Result<Vec<u8>, BinaryError> {
    match cte {
        "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        "base64" => Ok(base64_decode(body)),
        "quoted-printable" => Ok(qp_decode(body)),
        other => Err(BinaryError::UnknownCte(other.to_string())),
    }
}

/// Lenient base64 (RFC 2045 §6.8): characters outside the alphabet are ignored,
/// decoding stops at the first `=`, a dangling sextet is dropped.
fn base64_decode(body: &[u8]) -> Vec<u8> {
    fn val(b: u8) -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let (mut acc, mut n) = (0u32, 0u8);
    for &b in body {
        if b == b'=' {
            break;
        }
        let Some(v) = val(b) else { continue };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` octets, `=` CRLF soft breaks; a `=`
/// not followed by two hex digits is kept as it is.
fn qp_decode(body: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &body[i + 1..];
        // Soft line break, perhaps after trailing blanks.
        let blanks = rest
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        match rest.get(blanks) {
            Some(b'\n') => {
                i += 2 + blanks;
                continue;
            }
            Some(b'\r') if rest.get(blanks + 1) == Some(&b'\n') => {
                i += 3 + blanks;
                continue;
            }
            _ => {}
        }
        match (
            rest.first().copied().and_then(hex),
            rest.get(1).copied().and_then(hex),
        ) {
            (Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Subject: t\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nau lait=3D\r\n\
--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAw==\r\n\
--b\r\nContent-Type: application/x-foo\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\n\
Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n\
--b--\r\n";

    #[test]
    fn decodes_parts() {
        assert_eq!(section(MSG, &[1]).unwrap(), b"caf\xe9 au lait=");
        assert_eq!(section(MSG, &[2]).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(
            section(MSG, &[3]),
            Err(BinaryError::UnknownCte("x-uuencode".into()))
        );
        assert_eq!(section(MSG, &[4, 1]).unwrap(), b"hi");
        assert_eq!(section(MSG, &[9]), Err(BinaryError::NoPart));
        assert_eq!(section(MSG, &[]).unwrap(), MSG);
    }

    #[test]
    fn lenient_decoders() {
        assert_eq!(base64_decode(b"aGVsbG8\r\n"), b"hello");
        assert_eq!(base64_decode(b"a*G=Vs"), b"h");
        assert_eq!(qp_decode(b"a=\nb=zz=4"), b"ab=zz=4");
        assert_eq!(qp_decode(b"x= \t\r\ny"), b"xy");
    }

    #[test]
    fn deep_path_is_refused() {
        let path = vec![1u32; MAX_DEPTH + 1];
        assert_eq!(section(MSG, &path), Err(BinaryError::TooComplex));
    }
}
