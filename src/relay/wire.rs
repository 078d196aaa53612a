//! The DATA form of a queued message, built in one pass into one buffer: line ends
//! normalised to CRLF (a queue file from `sendmail` may use bare LF), every line that
//! starts with "." stuffed (RFC 5321 §4.5.2), and the terminating "." line appended.
//! The result goes out in ONE write together with whatever is pipelined behind it.
//!
//! Also builds the envelope command group (MAIL, RCPT…, DATA) with the ESMTP
//! parameters the smarthost offered (8BITMIME, SIZE, DSN).
//!
//! Pure functions: no I/O, no network input (the bytes are our own queue file).

use crate::message::EnvelopeDsn;

/// A message ready for the wire.
pub(crate) enum Wire {
    /// Valid UTF-8 (nearly every message): stuffed, CRLF-normalised, terminated with
    /// ".\r\n"; it can share one write with the commands pipelined behind it.
    Text(String),
    /// Other 8-bit content: CRLF-normalised, NOT stuffed, without the final line
    /// break — the form lettre's `message()` stuffs and terminates itself.
    Binary(Vec<u8>),
}

impl Wire {
    pub(crate) fn len(&self) -> usize {
        match self {
            Wire::Text(s) => s.len(),
            Wire::Binary(b) => b.len(),
        }
    }
}

/// Encodes `body` for DATA.
pub(crate) fn encode(body: &[u8]) -> Wire {
    // Room for the terminator and some stuffed dots / added CRs without regrowing.
    let mut out = Vec::with_capacity(body.len() + body.len() / 512 + 8);
    normalise(body, true, &mut out);
    if !out.ends_with(b"\r\n") && !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    match String::from_utf8(out) {
        Ok(s) => Wire::Text(s),
        Err(_) => {
            let mut b = Vec::with_capacity(body.len() + body.len() / 512 + 8);
            normalise(body, false, &mut b);
            if b.ends_with(b"\r\n") {
                b.truncate(b.len() - 2);
            }
            Wire::Binary(b)
        }
    }
}

/// The longest line sent, without its CRLF (RFC 5321 §4.5.3.1.6, RFC 5322 §2.1.1).
pub(crate) const MAX_LINE: usize = 998;

/// Copies `body` into `out` line by line (memchr on LF, one slice copy per line):
/// a bare LF and a bare CR each become CRLF, a line longer than [`MAX_LINE`] is
/// broken by inserting CRLF SPACE (as Postfix's `smtp_line_length_limit` does), and
/// with `stuff` a leading "." is doubled. So nothing the smarthost receives can end
/// DATA early or be read differently by a server that treats bare CR/LF as line ends.
fn normalise(body: &[u8], stuff: bool, out: &mut Vec<u8>) {
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let had_lf = next.len() < rest.len() - line.len();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut pieces = line.split(|&b| b == b'\r').peekable();
        while let Some(piece) = pieces.next() {
            emit_line(piece, stuff, out);
            if had_lf || pieces.peek().is_some() {
                out.extend_from_slice(b"\r\n");
            }
        }
        rest = next;
    }
}

/// One line without its line end, stuffed and broken at [`MAX_LINE`].
fn emit_line(mut line: &[u8], stuff: bool, out: &mut Vec<u8>) {
    let mut first = true;
    loop {
        let lead = if first { 0 } else { 1 }; // the SPACE of a continuation
        let dot = usize::from(first && line.first() == Some(&b'.'));
        let room = MAX_LINE - lead - dot;
        if !first {
            out.extend_from_slice(b"\r\n ");
        }
        if line.len() <= room {
            if stuff && dot == 1 {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            return;
        }
        // Do not cut a UTF-8 sequence in two.
        let mut cut = room;
        while cut > room - 3 && (line[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        if stuff && dot == 1 {
            out.push(b'.');
        }
        out.extend_from_slice(&line[..cut]);
        line = &line[cut..];
        first = false;
    }
}

/// What the smarthost's EHLO offered, as far as the envelope is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EnvCaps {
    pub eightbit: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub size: bool,
}

/// `MAIL FROM:<…> [BODY=8BITMIME] [SMTPUTF8] [SIZE=n] [RET= ENVID=]`, the RCPT lines
/// (with `NOTIFY=`/`ORCPT=` when DSN is offered) and `DATA`, CRLF-separated, without
/// the final CRLF.
pub(crate) fn envelope(
    sender: &str,
    rcpts: &[String],
    dsn: Option<&EnvelopeDsn>,
    body: &[u8],
    size: usize,
    caps: EnvCaps,
) -> String {
    let mut s = String::with_capacity(64 + rcpts.len() * 48);
    s.push_str("MAIL FROM:<");
    s.push_str(sender);
    s.push('>');
    let eight = caps.eightbit && !body.is_ascii();
    if eight {
        s.push_str(" BODY=8BITMIME");
    }
    if caps.smtputf8 && (!sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii())) {
        s.push_str(" SMTPUTF8");
    }
    if caps.size {
        s.push_str(&format!(" SIZE={size}"));
    }
    let dsn = dsn.filter(|_| caps.dsn);
    if let Some(d) = dsn {
        if let Some(r) = &d.ret {
            s.push_str(" RET=");
            s.push_str(r);
        }
        if let Some(e) = &d.envid {
            s.push_str(" ENVID=");
            s.push_str(&xtext(e));
        }
    }
    for (i, r) in rcpts.iter().enumerate() {
        s.push_str("\r\nRCPT TO:<");
        s.push_str(r);
        s.push('>');
        if let Some(d) = dsn {
            if let Some(Some(n)) = d.notify.get(i) {
                s.push_str(" NOTIFY=");
                s.push_str(n);
            }
            if let Some(Some(o)) = d.orcpt.get(i) {
                // Stored as the client gave it, `type;address` decoded.
                let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o));
                s.push_str(" ORCPT=");
                s.push_str(kind.trim());
                s.push(';');
                s.push_str(&xtext(addr.trim()));
            }
        }
    }
    s.push_str("\r\nDATA");
    s
}

/// RFC 3461 §4 xtext: "+", "=", controls, space and non-ASCII as "+XX".
pub(crate) fn xtext(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for b in v.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            o.push(b as char);
        } else {
            o.push_str(&format!("+{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &[u8]) -> String {
        match encode(b) {
            Wire::Text(s) => s,
            Wire::Binary(_) => panic!("expected text"),
        }
    }

    #[test]
    fn stuffs_normalises_and_terminates() {
        assert_eq!(text(b"a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(text(b"a\n.\nb"), "a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(text(b".x"), "..x\r\n.\r\n");
        assert_eq!(text(b""), ".\r\n");
        // A message that already ends with CRLF gets no extra blank line.
        assert_eq!(
            text(b"Subject: x\r\n\r\nbody\r\n"),
            "Subject: x\r\n\r\nbody\r\n.\r\n"
        );
        // A dot in the middle of a line is left alone; a lone CR too.
        // A bare CR is a line end too: "<CR>.<CR>" cannot end DATA at the smarthost.
        assert_eq!(text(b"a.b\rc\r\n"), "a.b\r\nc\r\n.\r\n");
        assert_eq!(text(b"a\r.\rMAIL\r\n"), "a\r\n..\r\nMAIL\r\n.\r\n");
        assert_eq!(text(b"a\n.\nb\r\n.\r\n"), "a\r\n..\r\nb\r\n..\r\n.\r\n");
    }

    #[test]
    fn non_utf8_goes_out_unstuffed_for_lettre() {
        match encode(b"Subject: \xe9\n.dot\r\nend\r\n") {
            Wire::Binary(b) => assert_eq!(b, b"Subject: \xe9\r\n.dot\r\nend".to_vec()),
            Wire::Text(_) => panic!("latin-1 is not UTF-8"),
        }
    }

    #[test]
    fn envelope_parameters_only_when_offered() {
        let dsn = EnvelopeDsn {
            ret: Some("HDRS".into()),
            envid: Some("id 1+2".into()),
            notify: vec![Some("SUCCESS,FAILURE".into()), None],
            orcpt: vec![Some("rfc822;Bouke=X@zolder.thuis".into()), None],
        };
        let rc = vec!["a@x.example".to_string(), "b@x.example".to_string()];
        let plain = envelope("s@z", &rc, Some(&dsn), b"hi", 2, EnvCaps::default());
        assert_eq!(
            plain,
            "MAIL FROM:<s@z>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA"
        );
        let caps = EnvCaps {
            eightbit: true,
            smtputf8: true,
            dsn: true,
            size: true,
        };
        let full = envelope("s@z", &rc, Some(&dsn), "é".as_bytes(), 2, caps);
        assert_eq!(
            full,
            "MAIL FROM:<s@z> BODY=8BITMIME SIZE=2 RET=HDRS ENVID=id+201+2B2\r\n\
             RCPT TO:<a@x.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bouke+3DX@zolder.thuis\r\n\
             RCPT TO:<b@x.example>\r\nDATA"
        );
    }

    #[test]
    fn long_lines_are_broken_at_998() {
        let long = format!(
            "Subject: {}\r\n\r\n.{}\r\n",
            "s".repeat(3000),
            "b".repeat(2500)
        );
        let t = text(long.as_bytes());
        for l in t.split("\r\n") {
            assert!(l.len() <= MAX_LINE, "{} octets", l.len());
        }
        // Nothing is lost: joining the continuations gives the original text back.
        let joined = t.replace("\r\n ", "");
        assert!(joined.contains(&"s".repeat(3000)));
        assert!(joined.contains(&format!("..{}", "b".repeat(2500))));
        // A multi-byte character is not cut.
        let utf = format!("{}\r\n", "é".repeat(1000));
        assert!(matches!(encode(utf.as_bytes()), Wire::Text(_)));
    }
}
