//! Writing responses: strings (atom, quoted or literal as the bytes require), NIL,
//! flag lists, mailbox names. Callers append into one `Vec<u8>` per response so a
//! FETCH of many messages is written with few syscalls.

/// Appends `s` as a quoted string when that is safe (7-bit, no CR/LF/NUL, short),
/// otherwise as a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024 && s.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t');
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `{n}\r\n` and the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A mailbox name in modified UTF-7, always quoted (as Dovecot does) unless it
/// needs a literal.
pub fn mailbox(out: &mut Vec<u8>, name: &str) {
    string(out, super::utf7::encode(name).as_bytes());
}

/// A mailbox name in UTF-8 when UTF8=ACCEPT is enabled (RFC 6855 §3: quoted
/// strings may then carry UTF-8), else in modified UTF-7.
pub fn mailbox_as(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if !utf8 {
        return mailbox(out, name);
    }
    if name.len() <= 1024 && !name.chars().any(char::is_control) {
        out.push(b'"');
        for &b in name.as_bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, name.as_bytes());
    }
}

/// `(\Seen $Junk)`
pub fn flag_list<S: AsRef<str>>(out: &mut Vec<u8>, flags: &[S]) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_ref().as_bytes());
    }
    out.push(b')');
}

/// A text for a status response: CR/LF removed so a client-supplied name cannot
/// inject a line.
pub fn text(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings() {
        assert_eq!(s(|o| string(o, b"hi \"x\" \\")), r#""hi \"x\" \\""#);
        assert_eq!(s(|o| string(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(s(|o| string(o, "é".as_bytes())), "{2}\r\né");
        assert_eq!(s(|o| nstring(o, None)), "NIL");
        assert_eq!(s(|o| flag_list(o, &["\\Seen", "$Junk"])), "(\\Seen $Junk)");
        assert_eq!(s(|o| flag_list::<&str>(o, &[])), "()");
        assert_eq!(text("a\r\nb"), "a  b");
        assert!(s(|o| mailbox_as(o, "Brieven/Één", false)).is_ascii());
        assert_eq!(s(|o| mailbox_as(o, "Één \"x\"", true)), "\"Één \\\"x\\\"\"");
    }
}
