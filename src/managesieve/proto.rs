//! ManageSieve commands and responses (RFC 5804 §2, §4): a pure parser over a byte
//! buffer and the response formatting. No I/O.
//!
//! # Format
//! A command is an atom followed by arguments — atoms, numbers, quoted strings
//! (`"…"` with `\"` and `\\`) and literals (`{N+}` CRLF N octets; `{N}` is taken the
//! same way) — and ends with CRLF. Lines are bounded by [`MAX_LINE`], literals by the
//! caller's `max_literal`.

/// Longest command line (outside literals).
pub const MAX_LINE: usize = 8 * 1024;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Logout,
    StartTls,
    Noop(Option<String>),
    /// Mechanism and the optional initial response (base64).
    Authenticate(String, Option<String>),
    Unauthenticate,
    ListScripts,
    PutScript(String, Vec<u8>),
    CheckScript(Vec<u8>),
    GetScript(String),
    SetActive(String),
    DeleteScript(String),
    RenameScript(String, String),
    HaveSpace(String, u64),
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole item, and how many bytes it used.
    Done(T, usize),
    /// More bytes are needed.
    Incomplete,
    /// Not valid; `usize` bytes (through the line end) may be skipped to go on, or 0
    /// when the connection cannot go on (a literal too large, a line too long).
    Bad(String, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(String),
    Str(Vec<u8>),
}

/// Reads one token at `buf[i..]` (after spaces); `Ok(None)` at the line end.
#[allow(clippy::type_complexity)]
fn token(
    buf: &[u8],
    mut i: usize,
    max_literal: usize,
) -> Result<Option<(Token, usize)>, Parsed<()>> {
    while buf.get(i) == Some(&b' ') {
        i += 1;
    }
    match buf.get(i) {
        None => Err(Parsed::Incomplete),
        Some(b'\r') => match buf.get(i + 1) {
            None => Err(Parsed::Incomplete),
            Some(b'\n') => Ok(None),
            Some(_) => Err(bad("bare CR", buf)),
        },
        Some(b'\n') => Ok(None),
        Some(b'"') => {
            let mut out = Vec::new();
            let mut j = i + 1;
            loop {
                match buf.get(j) {
                    None => return Err(Parsed::Incomplete),
                    Some(b'"') => return Ok(Some((Token::Str(out), j + 1))),
                    Some(b'\\') => match buf.get(j + 1) {
                        None => return Err(Parsed::Incomplete),
                        Some(&c @ (b'"' | b'\\')) => {
                            out.push(c);
                            j += 2;
                        }
                        Some(_) => return Err(bad("bad escape in a quoted string", buf)),
                    },
                    Some(b'\r' | b'\n') => {
                        return Err(bad("line end in a quoted string", buf));
                    }
                    Some(&c) => {
                        out.push(c);
                        j += 1;
                    }
                }
            }
        }
        Some(b'{') => {
            let rest = &buf[i + 1..];
            let Some(close) = rest.iter().position(|&c| c == b'}') else {
                if rest.len() > 24 {
                    return Err(bad("bad literal", buf));
                }
                return Err(Parsed::Incomplete);
            };
            let spec = &rest[..close];
            let digits = spec.strip_suffix(b"+").unwrap_or(spec);
            let n: usize = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.len() <= 12 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| bad("bad literal", buf))?;
            if n > max_literal {
                return Err(Parsed::Bad(
                    format!("literal of {n} octets is too large"),
                    0,
                ));
            }
            let mut j = i + 1 + close + 1;
            match (buf.get(j), buf.get(j + 1)) {
                (Some(b'\r'), Some(b'\n')) => j += 2,
                (Some(b'\n'), _) => j += 1,
                (None, _) | (Some(b'\r'), None) => return Err(Parsed::Incomplete),
                _ => return Err(bad("literal without line end", buf)),
            }
            if buf.len() < j + n {
                return Err(Parsed::Incomplete);
            }
            Ok(Some((Token::Str(buf[j..j + n].to_vec()), j + n)))
        }
        Some(_) => {
            let mut j = i;
            while let Some(&c) = buf.get(j) {
                if c == b' ' || c == b'\r' || c == b'\n' {
                    break;
                }
                if !(0x21..0x7f).contains(&c) || c == b'"' || c == b'{' {
                    return Err(bad("bad character", buf));
                }
                j += 1;
            }
            if j == buf.len() {
                return Err(Parsed::Incomplete);
            }
            Ok(Some((
                Token::Atom(String::from_utf8_lossy(&buf[i..j]).into_owned()),
                j,
            )))
        }
    }
}

/// A `Bad` that skips through the end of the current line (0 when none is in view
/// yet: the session then waits for it, bounded by [`MAX_LINE`]).
fn bad(msg: &str, buf: &[u8]) -> Parsed<()> {
    let skip = buf.iter().position(|&c| c == b'\n').map_or(0, |p| p + 1);
    Parsed::Bad(msg.to_string(), skip)
}

fn text(t: Token) -> Result<String, String> {
    match t {
        Token::Str(b) => String::from_utf8(b).map_err(|_| "a string is not UTF-8".to_string()),
        Token::Atom(a) => Err(format!("a string was expected, not {a}")),
    }
}

/// Parses one command at the start of `buf`.
pub fn parse(buf: &[u8], max_literal: usize) -> Parsed<Command> {
    let mut toks = Vec::new();
    let mut i = 0;
    loop {
        match token(buf, i, max_literal) {
            Ok(Some((t, next))) => {
                toks.push(t);
                i = next;
                if toks.len() > 8 {
                    let Parsed::Bad(m, s) = bad("too many arguments", buf) else {
                        unreachable!()
                    };
                    return Parsed::Bad(m, s);
                }
            }
            Ok(None) => {
                // Past the line end.
                i += if buf.get(i) == Some(&b'\r') { 2 } else { 1 };
                break;
            }
            Err(Parsed::Incomplete) => {
                // A line past the bound without its end (literals aside) is refused.
                let line = buf[i.min(buf.len())..].len();
                if line > MAX_LINE {
                    return Parsed::Bad("line too long".into(), 0);
                }
                return Parsed::Incomplete;
            }
            Err(Parsed::Bad(m, s)) => return Parsed::Bad(m, s),
            Err(Parsed::Done(..)) => unreachable!(),
        }
    }
    match command(toks) {
        Ok(c) => Parsed::Done(c, i),
        Err(e) => Parsed::Bad(e, i),
    }
}

fn command(toks: Vec<Token>) -> Result<Command, String> {
    let mut it = toks.into_iter();
    let Some(Token::Atom(name)) = it.next() else {
        return Err("a command name was expected".into());
    };
    let args: Vec<Token> = it.collect();
    let n = args.len();
    let want = |k: usize| -> Result<(), String> {
        if n == k {
            Ok(())
        } else {
            Err(format!(
                "{} takes {k} argument(s)",
                name.to_ascii_uppercase()
            ))
        }
    };
    let mut a = args.into_iter();
    let mut next = || a.next().ok_or_else(|| "missing argument".to_string());
    Ok(match name.to_ascii_uppercase().as_str() {
        "CAPABILITY" => {
            want(0)?;
            Command::Capability
        }
        "LOGOUT" => {
            want(0)?;
            Command::Logout
        }
        "STARTTLS" => {
            want(0)?;
            Command::StartTls
        }
        "UNAUTHENTICATE" => {
            want(0)?;
            Command::Unauthenticate
        }
        "LISTSCRIPTS" => {
            want(0)?;
            Command::ListScripts
        }
        "NOOP" => match n {
            0 => Command::Noop(None),
            1 => Command::Noop(Some(text(next()?)?)),
            _ => return Err("NOOP takes at most one argument".into()),
        },
        "AUTHENTICATE" => match n {
            1 => Command::Authenticate(text(next()?)?, None),
            2 => Command::Authenticate(text(next()?)?, Some(text(next()?)?)),
            _ => return Err("AUTHENTICATE takes a mechanism and an optional response".into()),
        },
        "PUTSCRIPT" => {
            want(2)?;
            let name = text(next()?)?;
            match next()? {
                Token::Str(b) => Command::PutScript(name, b),
                Token::Atom(_) => return Err("the script must be a string".into()),
            }
        }
        "CHECKSCRIPT" => {
            want(1)?;
            match next()? {
                Token::Str(b) => Command::CheckScript(b),
                Token::Atom(_) => return Err("the script must be a string".into()),
            }
        }
        "GETSCRIPT" => {
            want(1)?;
            Command::GetScript(text(next()?)?)
        }
        "SETACTIVE" => {
            want(1)?;
            Command::SetActive(text(next()?)?)
        }
        "DELETESCRIPT" => {
            want(1)?;
            Command::DeleteScript(text(next()?)?)
        }
        "RENAMESCRIPT" => {
            want(2)?;
            Command::RenameScript(text(next()?)?, text(next()?)?)
        }
        "HAVESPACE" => {
            want(2)?;
            let name = text(next()?)?;
            match next()? {
                Token::Atom(num) => Command::HaveSpace(
                    name,
                    num.parse()
                        .map_err(|_| "HAVESPACE needs a size".to_string())?,
                ),
                Token::Str(_) => return Err("HAVESPACE needs a number".into()),
            }
        }
        other => return Err(format!("unknown command {other}")),
    })
}

/// A client's SASL response line (after the server's challenge): one string, or
/// `"*"` to cancel (`None`).
pub fn parse_sasl(buf: &[u8], max_literal: usize) -> Parsed<Option<String>> {
    match token(buf, 0, max_literal) {
        Ok(Some((t, i))) => match token(buf, i, max_literal) {
            Ok(None) => {
                let end = i + if buf.get(i) == Some(&b'\r') { 2 } else { 1 };
                match t {
                    Token::Str(b) if b == b"*" => Parsed::Done(None, end),
                    Token::Str(b) => {
                        Parsed::Done(Some(String::from_utf8_lossy(&b).into_owned()), end)
                    }
                    Token::Atom(_) => Parsed::Bad("a string was expected".into(), end),
                }
            }
            Ok(Some(_)) => match bad("one string was expected", buf) {
                Parsed::Bad(m, s) => Parsed::Bad(m, s),
                _ => unreachable!(),
            },
            Err(Parsed::Incomplete) if buf.len() > MAX_LINE => {
                Parsed::Bad("line too long".into(), 0)
            }
            Err(Parsed::Incomplete) => Parsed::Incomplete,
            Err(Parsed::Bad(m, s)) => Parsed::Bad(m, s),
            Err(Parsed::Done(..)) => unreachable!(),
        },
        Ok(None) => Parsed::Bad(
            "a string was expected".into(),
            buf.iter().position(|&c| c == b'\n').map_or(0, |p| p + 1),
        ),
        Err(Parsed::Incomplete) if buf.len() > MAX_LINE => Parsed::Bad("line too long".into(), 0),
        Err(Parsed::Incomplete) => Parsed::Incomplete,
        Err(Parsed::Bad(m, s)) => Parsed::Bad(m, s),
        Err(Parsed::Done(..)) => unreachable!(),
    }
}

/// A quoted string (or a literal when it holds CR, LF, NUL or is long).
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() > 1024 || s.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
        return;
    }
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// `OK`/`NO`/`BYE` with an optional response code and text.
pub fn response(kind: &str, code: Option<&str>, text: &str) -> Vec<u8> {
    let mut out = kind.as_bytes().to_vec();
    if let Some(c) = code {
        out.extend_from_slice(b" (");
        out.extend_from_slice(c.as_bytes());
        out.push(b')');
    }
    if !text.is_empty() {
        out.push(b' ');
        string(&mut out, text.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(b: &[u8]) -> (Command, usize) {
        match parse(b, 1000) {
            Parsed::Done(c, n) => (c, n),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(done(b"CAPABILITY\r\n"), (Command::Capability, 12));
        assert_eq!(
            done(b"Authenticate \"PLAIN\" \"AGJvdWtlAGdlaGVpbQ==\"\r\n").0,
            Command::Authenticate("PLAIN".into(), Some("AGJvdWtlAGdlaGVpbQ==".into()))
        );
        let put = b"PUTSCRIPT \"my \\\"x\\\"\" {7+}\r\nkeep;\r\n\r\nNOOP\r\n";
        let (c, n) = done(put);
        assert_eq!(
            c,
            Command::PutScript("my \"x\"".into(), b"keep;\r\n".to_vec())
        );
        assert_eq!(&put[n..], b"NOOP\r\n");
        assert_eq!(
            done(b"CHECKSCRIPT {5}\r\nkeep;\r\n").0,
            Command::CheckScript(b"keep;".to_vec())
        );
        assert_eq!(
            done(b"HAVESPACE \"a\" 100\r\n").0,
            Command::HaveSpace("a".into(), 100)
        );
        assert_eq!(
            done(b"RENAMESCRIPT \"a\" \"b\"\r\n").0,
            Command::RenameScript("a".into(), "b".into())
        );
        assert_eq!(
            done(b"SETACTIVE \"\"\r\n").0,
            Command::SetActive(String::new())
        );
        assert_eq!(
            done(b"noop \"tag\"\r\n").0,
            Command::Noop(Some("tag".into()))
        );
    }

    #[test]
    fn incomplete_bad_and_bounds() {
        assert_eq!(parse(b"CAPA", 10), Parsed::Incomplete);
        assert_eq!(
            parse(b"PUTSCRIPT \"a\" {10+}\r\nkeep", 100),
            Parsed::Incomplete
        );
        assert_eq!(parse(b"GETSCRIPT \"a", 100), Parsed::Incomplete);
        assert!(matches!(parse(b"FOO\r\nNOOP\r\n", 10), Parsed::Bad(_, 5)));
        assert!(matches!(parse(b"GETSCRIPT\r\n", 10), Parsed::Bad(_, 11)));
        assert!(matches!(
            parse(b"GETSCRIPT foo\r\n", 10),
            Parsed::Bad(_, 15)
        ));
        // A literal over the bound ends the connection (0: nothing to skip to).
        assert!(matches!(
            parse(b"PUTSCRIPT \"a\" {1000000+}\r\n", 100),
            Parsed::Bad(_, 0)
        ));
        // A line over the bound without an end, likewise.
        let long = vec![b'A'; MAX_LINE + 10];
        assert!(matches!(parse(&long, 100), Parsed::Bad(_, 0)));
        let mut q = b"GETSCRIPT \"".to_vec();
        q.extend(vec![b'a'; MAX_LINE + 10]);
        assert!(matches!(parse(&q, 100), Parsed::Bad(_, 0)));
    }

    #[test]
    fn sasl_lines() {
        assert_eq!(
            parse_sasl(b"\"AGEAYg==\"\r\n", 10),
            Parsed::Done(Some("AGEAYg==".into()), 12)
        );
        assert_eq!(
            parse_sasl(b"{8+}\r\nAGEAYg==\r\n", 10),
            Parsed::Done(Some("AGEAYg==".into()), 16)
        );
        assert_eq!(parse_sasl(b"\"*\"\r\n", 10), Parsed::Done(None, 5));
        assert_eq!(parse_sasl(b"\"AGE", 10), Parsed::Incomplete);
    }

    #[test]
    fn responses() {
        assert_eq!(response("OK", None, ""), b"OK\r\n");
        assert_eq!(
            response("NO", Some("NONEXISTENT"), "no \"x\""),
            b"NO (NONEXISTENT) \"no \\\"x\\\"\"\r\n"
        );
        let mut o = Vec::new();
        string(&mut o, b"line 1\r\nline 2");
        assert_eq!(o, b"{14}\r\nline 1\r\nline 2");
    }
}
