//! POP3 wire format (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 SASL): command
//! parsing and response encoding. Pure: no I/O, no tokio.
//!
//! # Security
//! Input is one line from an unauthenticated network peer. Lines longer than
//! [`MAX_LINE`] are refused by the session before they reach [`parse`]; arguments are
//! validated here (numbers must be numbers, names must be printable).

/// RFC 2449: a command line is at most 255 octets; SASL responses may be longer.
pub const MAX_LINE: usize = 8 * 1024;

/// One POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    /// `AUTH mechanism [initial-response]`; bare `AUTH` lists mechanisms.
    Auth(Option<String>, Option<String>),
    Capa,
    Stls,
    Quit,
    Stat,
    /// `LIST [msg]`
    List(Option<u32>),
    /// `UIDL [msg]`
    Uidl(Option<u32>),
    Retr(u32),
    /// `TOP msg n`
    Top(u32, u32),
    Dele(u32),
    Noop,
    Rset,
}

/// Why a line is not a command; the session answers `-ERR` with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Unknown(String),
    BadArguments(&'static str),
}

impl ParseError {
    pub fn text(&self) -> String {
        match self {
            ParseError::Unknown(c) => format!("unknown command {}", sanitize(c)),
            ParseError::BadArguments(usage) => format!("syntax: {usage}"),
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(16)
        .collect()
}

fn number(s: Option<&str>, usage: &'static str) -> Result<u32, ParseError> {
    s.and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n > 0)
        .ok_or(ParseError::BadArguments(usage))
}

/// Parses one line (without CRLF).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let mut args = rest.split(' ').filter(|s| !s.is_empty());
    let verb_uc = verb.to_ascii_uppercase();
    let no_more = |args: &mut dyn Iterator<Item = &str>, usage| match args.next() {
        Some(_) => Err(ParseError::BadArguments(usage)),
        None => Ok(()),
    };
    Ok(match verb_uc.as_str() {
        "USER" => {
            let name = rest.trim();
            if name.is_empty() {
                return Err(ParseError::BadArguments("USER name"));
            }
            Command::User(name.to_string())
        }
        // The password may contain spaces: everything after the first space.
        "PASS" => Command::Pass(rest.to_string()),
        "AUTH" => {
            let mech = args.next().map(|m| m.to_ascii_uppercase());
            let ir = args.next().map(str::to_string);
            no_more(&mut args, "AUTH [mechanism [initial-response]]")?;
            Command::Auth(mech, ir)
        }
        "CAPA" => Command::Capa,
        "STLS" => Command::Stls,
        "QUIT" => Command::Quit,
        "STAT" => Command::Stat,
        "NOOP" => Command::Noop,
        "RSET" => Command::Rset,
        "LIST" | "UIDL" => {
            let usage = if verb_uc == "LIST" {
                "LIST [msg]"
            } else {
                "UIDL [msg]"
            };
            let n = match args.next() {
                Some(a) => Some(number(Some(a), usage)?),
                None => None,
            };
            no_more(&mut args, usage)?;
            if verb_uc == "LIST" {
                Command::List(n)
            } else {
                Command::Uidl(n)
            }
        }
        "RETR" => {
            let n = number(args.next(), "RETR msg")?;
            no_more(&mut args, "RETR msg")?;
            Command::Retr(n)
        }
        "DELE" => {
            let n = number(args.next(), "DELE msg")?;
            no_more(&mut args, "DELE msg")?;
            Command::Dele(n)
        }
        "TOP" => {
            let n = number(args.next(), "TOP msg lines")?;
            let lines = args
                .next()
                .and_then(|l| l.parse::<u32>().ok())
                .ok_or(ParseError::BadArguments("TOP msg lines"))?;
            no_more(&mut args, "TOP msg lines")?;
            Command::Top(n, lines)
        }
        _ => return Err(ParseError::Unknown(verb.to_string())),
    })
}

/// Encodes a message body for RETR/TOP: CRLF line ends, dot-stuffing, the final `.`.
/// With `top = Some(n)`, only the header and the first `n` body lines.
pub fn encode_multiline(msg: &[u8], top: Option<u32>, out: &mut Vec<u8>) {
    out.reserve(msg.len() + msg.len() / 40 + 8);
    let mut in_body = false;
    let mut body_lines = 0u32;
    let mut rest = msg;
    while !rest.is_empty() {
        let (line, next) = match memchr_nl(rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if let Some(n) = top
                && body_lines >= n
            {
                break;
            }
            body_lines += 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if !in_body && line.is_empty() {
            in_body = true;
        }
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The size a message has on the wire with CRLF line ends (what LIST reports).
pub fn crlf_size(msg: &[u8]) -> u64 {
    let lf = msg.iter().filter(|&&c| c == b'\n').count();
    let crlf = msg.windows(2).filter(|w| w == b"\r\n").count();
    (msg.len() + (lf - crlf)) as u64
}

/// Fuzzing entry (fuzz/ `pop3_command`): each line of `data` as a command, and
/// `data` as a message for RETR/TOP encoding.
#[doc(hidden)]
pub fn fuzz_command(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = parse(&String::from_utf8_lossy(line));
    }
    let mut out = Vec::new();
    encode_multiline(data, Some(3), &mut out);
    let _ = crlf_size(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("USER bouke"), Ok(Command::User("bouke".into())));
        assert_eq!(
            parse("pass my secret"),
            Ok(Command::Pass("my secret".into()))
        );
        assert_eq!(parse("LIST"), Ok(Command::List(None)));
        assert_eq!(parse("list 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse("TOP 2 0"), Ok(Command::Top(2, 0)));
        assert_eq!(
            parse("AUTH PLAIN AGJvdWtlAHg="),
            Ok(Command::Auth(
                Some("PLAIN".into()),
                Some("AGJvdWtlAHg=".into())
            ))
        );
        assert_eq!(parse("AUTH"), Ok(Command::Auth(None, None)));
        assert!(matches!(parse("RETR 0"), Err(ParseError::BadArguments(_))));
        assert!(matches!(parse("RETR x"), Err(ParseError::BadArguments(_))));
        assert!(matches!(
            parse("DELE 1 2"),
            Err(ParseError::BadArguments(_))
        ));
        assert!(matches!(parse("XYZZY"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse(""), Err(ParseError::Unknown(_))));
    }

    #[test]
    fn multiline_stuffing_and_top() {
        let msg = b"Subject: x\n\n.hidden\nline2\nline3\n";
        let mut out = Vec::new();
        encode_multiline(msg, None, &mut out);
        assert_eq!(
            out,
            b"Subject: x\r\n\r\n..hidden\r\nline2\r\nline3\r\n.\r\n"
        );
        let mut out = Vec::new();
        encode_multiline(msg, Some(1), &mut out);
        assert_eq!(out, b"Subject: x\r\n\r\n..hidden\r\n.\r\n");
        let mut out = Vec::new();
        encode_multiline(b"A: b\r\n\r\nbody", None, &mut out);
        assert_eq!(out, b"A: b\r\n\r\nbody\r\n.\r\n");
        assert_eq!(crlf_size(b"a\nb\r\n"), 6);
    }
}
