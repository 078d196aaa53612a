//! SMTP server wire code with no I/O: parsing one command line into a [`Command`]
//! and formatting replies. The session (`session.rs`) owns all state and I/O.
//!
//! # Security
//! Lines come straight from the network. The session bounds their length before they
//! get here; this parser never allocates more than the line and rejects anything it
//! does not understand with a syntax error reply instead of guessing.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// # Format
    /// `EHLO domain` / `HELO domain`
    Ehlo(String),
    Helo(String),
    /// `MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=FULL|HDRS] [ENVID=xtext] [AUTH=...]`
    Mail {
        from: Path,
        params: MailParams,
    },
    /// `RCPT TO:<path> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=type;xtext]`
    Rcpt {
        to: Path,
        params: RcptParams,
    },
    Data,
    Rset,
    Noop,
    Quit,
    /// `VRFY`/`EXPN`: answered 252 without looking anything up.
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `AUTH mechanism [initial-response]`
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// BDAT (CHUNKING) is not offered.
    Bdat,
}

/// A reverse- or forward-path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `<>`
    Null,
    /// The address inside the brackets, exactly as written (may hold relay tricks the
    /// session refuses: source routes, `%`, `!`, quoted local parts).
    Addr(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// `FULL` or `HDRS`
    pub ret: Option<String>,
    /// xtext-decoded
    pub envid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NEVER` or a comma list of `SUCCESS`, `FAILURE`, `DELAY` (upper case).
    pub notify: Option<String>,
    /// `type;address`, xtext-decoded.
    pub orcpt: Option<String>,
}

/// A reply: code, optional enhanced status (RFC 3463), text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: (!status.is_empty()).then_some(status),
            lines: vec![text.into()],
        }
    }
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status: None,
            lines,
        }
    }
    /// Wire form, CRLF-terminated, continuation lines with `-`.
    pub fn to_wire(&self) -> String {
        let mut s = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 < n { '-' } else { ' ' };
            let _ = write!(s, "{}{}", self.code, sep);
            if let Some(st) = self.status {
                let _ = write!(s, "{st} ");
            }
            let _ = write!(s, "{text}\r\n");
        }
        s
    }
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
}

fn syntax(text: &str) -> Reply {
    Reply::new(501, "5.5.4", text)
}

/// Decodes RFC 3461 xtext (`+HH` escapes).
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            c if (33..=126).contains(&c) && c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `FROM:<path> params` after the keyword; tolerates a space after the colon.
fn split_path<'a>(rest: &'a str, kw: &str) -> Result<(Path, &'a str), Reply> {
    let r = rest.trim_start();
    if r.len() < kw.len() || !r[..kw.len()].eq_ignore_ascii_case(kw) {
        return Err(syntax(&format!("Syntax: expected {kw}<address>")));
    }
    let r = r[kw.len()..].trim_start();
    if !r.starts_with('<') {
        return Err(syntax("Syntax: address must be in <>"));
    }
    // Find the closing '>' outside quotes.
    let mut quoted = false;
    let mut end = None;
    let bytes = r.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let end = end.ok_or_else(|| syntax("Syntax: missing '>'"))?;
    let inner = &r[1..end];
    let path = if inner.is_empty() {
        Path::Null
    } else {
        if inner.len() > 512
            || inner.chars().any(|c| c.is_control() || c == ' ') && !inner.contains('"')
        {
            return Err(syntax("Syntax: bad address"));
        }
        Path::Addr(inner.to_string())
    };
    Ok((path, r[end + 1..].trim()))
}

/// Parses one command line (without CRLF). `Err` is the reply to send.
pub fn parse(line: &str) -> Result<Command, Reply> {
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let d = rest.trim();
            if d.is_empty() || d.len() > 255 || d.contains(char::is_whitespace) {
                return Err(syntax(&format!("Syntax: {verb} hostname")));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(d.to_string())
            } else {
                Command::Helo(d.to_string())
            })
        }
        "MAIL" => {
            let (from, ps) = split_path(rest, "FROM:")?;
            let mut p = MailParams::default();
            for kv in ps.split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k.to_ascii_uppercase().as_str() {
                    "SIZE" => p.size = Some(v.parse().map_err(|_| syntax("Bad SIZE"))?),
                    "BODY" => match v.to_ascii_uppercase().as_str() {
                        "7BIT" => p.eight_bit = false,
                        "8BITMIME" => p.eight_bit = true,
                        _ => return Err(Reply::new(555, "5.5.4", "Unsupported BODY type")),
                    },
                    "SMTPUTF8" if v.is_empty() => p.smtputf8 = true,
                    "RET" => match v.to_ascii_uppercase().as_str() {
                        "FULL" | "HDRS" => p.ret = Some(v.to_ascii_uppercase()),
                        _ => return Err(syntax("Bad RET")),
                    },
                    "ENVID" => {
                        let d = xtext_decode(v)
                            .filter(|d| d.len() <= 100)
                            .ok_or_else(|| syntax("Bad ENVID"))?;
                        p.envid = Some(d);
                    }
                    // RFC 4954 AUTH= on MAIL: accepted and ignored.
                    "AUTH" => {}
                    _ => {
                        return Err(Reply::new(
                            555,
                            "5.5.4",
                            format!("Unsupported parameter {k}"),
                        ));
                    }
                }
            }
            Ok(Command::Mail { from, params: p })
        }
        "RCPT" => {
            let (to, ps) = split_path(rest, "TO:")?;
            let mut p = RcptParams::default();
            for kv in ps.split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k.to_ascii_uppercase().as_str() {
                    "NOTIFY" => {
                        let v = v.to_ascii_uppercase();
                        let parts: Vec<&str> = v.split(',').collect();
                        let ok = if parts == ["NEVER"] {
                            true
                        } else {
                            !parts.is_empty()
                                && parts
                                    .iter()
                                    .all(|x| matches!(*x, "SUCCESS" | "FAILURE" | "DELAY"))
                        };
                        if !ok {
                            return Err(syntax("Bad NOTIFY"));
                        }
                        p.notify = Some(v);
                    }
                    "ORCPT" => {
                        let (t, a) = v.split_once(';').ok_or_else(|| syntax("Bad ORCPT"))?;
                        let a = xtext_decode(a)
                            .filter(|a| a.len() <= 500)
                            .ok_or_else(|| syntax("Bad ORCPT"))?;
                        p.orcpt = Some(format!("{};{a}", t.to_ascii_lowercase()));
                    }
                    _ => {
                        return Err(Reply::new(
                            555,
                            "5.5.4",
                            format!("Unsupported parameter {k}"),
                        ));
                    }
                }
            }
            Ok(Command::Rcpt { to, params: p })
        }
        "DATA" => Ok(Command::Data),
        "RSET" => Ok(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => Ok(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => {
            if rest.trim().is_empty() {
                Ok(Command::StartTls)
            } else {
                Err(syntax("Syntax: STARTTLS"))
            }
        }
        "AUTH" => {
            let mut it = rest.split_whitespace();
            let mechanism = it
                .next()
                .ok_or_else(|| syntax("Syntax: AUTH mechanism"))?
                .to_ascii_uppercase();
            let initial = it.next().map(String::from);
            Ok(Command::Auth { mechanism, initial })
        }
        "BDAT" => Ok(Command::Bdat),
        _ => Err(Reply::new(500, "5.5.2", "Error: command not recognized")),
    }
}

/// Decodes SASL PLAIN (`authzid \0 authcid \0 passwd`, base64): (user, password).
pub fn decode_plain(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let mut parts = raw.split(|&c| c == 0);
    let authz = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let user = String::from_utf8(user.to_vec()).ok()?;
    let authz = String::from_utf8(authz.to_vec()).ok()?;
    if !authz.is_empty() && authz != user {
        return None; // acting as someone else is not offered
    }
    Some((user, String::from_utf8(pass.to_vec()).ok()?))
}

pub fn decode_b64_line(s: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    String::from_utf8(raw).ok()
}

/// How DATA treats a bare LF or a bare CR (one not part of CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewlines {
    /// Read to the end marker, then refuse the message with 5.5.2 (Postfix 3.9's
    /// `smtpd_forbid_bare_newline = yes`): port 25 and unauthenticated clients.
    Reject,
    /// Store each bare LF or CR as CRLF (`= normalize`): LAN and authenticated
    /// submission, whose clients are the household's own programs.
    Normalise,
}

/// The DATA framer (RFC 5321 §4.1.1.4, §4.5.2), fed one line at a time: each line as
/// read, through its LF (or without one at end of input).
///
/// Only `<CR><LF>.<CR><LF>` ends the data: a "." line counts as the end marker only
/// when it ends in CRLF and the line before it did too (or it is the first line).
/// `<LF>.<LF>`, `<CR><LF>.<LF>`, `<LF>.<CR><LF>` and `<CR>.<CR>` are content, so a
/// second transaction hidden in a message can never become a message of its own
/// (SMTP smuggling).
#[derive(Debug, Clone)]
pub struct DataFramer {
    policy: BareNewlines,
    /// The previous line ended in CRLF (true at the start of DATA).
    after_crlf: bool,
    /// A bare CR or LF was seen.
    pub bare: bool,
}

/// What one DATA line was.
#[derive(Debug, PartialEq, Eq)]
pub enum DataLine<'a> {
    /// The end marker: the message is complete.
    End,
    /// Content to append (unstuffed, and normalised under [`BareNewlines::Normalise`]).
    Content(Cow<'a, [u8]>),
}

impl DataFramer {
    pub fn new(policy: BareNewlines) -> Self {
        DataFramer {
            policy,
            after_crlf: true,
            bare: false,
        }
    }

    /// Classifies one line (see the type's documentation).
    pub fn line<'a>(&mut self, line: &'a [u8]) -> DataLine<'a> {
        let crlf = line.ends_with(b"\r\n");
        let after_crlf = std::mem::replace(&mut self.after_crlf, crlf);
        if after_crlf && line == b".\r\n" {
            return DataLine::End;
        }
        let body = if crlf {
            &line[..line.len() - 2]
        } else {
            line.strip_suffix(b"\n").unwrap_or(line)
        };
        let bare_lf = !crlf && line.ends_with(b"\n");
        let bare_cr = memchr::memchr(b'\r', body).is_some();
        if bare_lf || bare_cr {
            self.bare = true;
        }
        // Dot-unstuffing at the start of every line.
        let line = if line.first() == Some(&b'.') {
            &line[1..]
        } else {
            line
        };
        if !(bare_lf || bare_cr) || self.policy == BareNewlines::Reject {
            // Rejected messages are never stored: no need to copy them.
            return DataLine::Content(Cow::Borrowed(line));
        }
        let body = body.strip_prefix(b".").unwrap_or(body);
        let mut out = Vec::with_capacity(body.len() + 4);
        for (i, piece) in body.split(|&b| b == b'\r').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(piece);
        }
        if crlf || bare_lf {
            out.extend_from_slice(b"\r\n");
        }
        DataLine::Content(Cow::Owned(out))
    }
}

/// Fuzzing entry (fuzz/ `smtp_session`): `data` as a client's lines, each parsed as
/// a command until one is `DATA`; what follows goes through the DATA framer (both
/// policies) until the end marker, then commands again.
#[doc(hidden)]
pub fn fuzz_session(data: &[u8]) {
    let mut framers: Option<[DataFramer; 2]> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        match &mut framers {
            Some([a, b]) => {
                let end = a.line(line) == DataLine::End;
                let _ = b.line(line);
                if end {
                    framers = None;
                }
            }
            None => {
                if let Ok(Command::Data) = parse(&String::from_utf8_lossy(line)) {
                    framers = Some([
                        DataFramer::new(BareNewlines::Reject),
                        DataFramer::new(BareNewlines::Normalise),
                    ]);
                }
                let _ = decode_plain(&String::from_utf8_lossy(line));
                let _ = xtext_decode(&String::from_utf8_lossy(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mail_with_dsn() {
        let c =
            parse("MAIL FROM:<bouke@zolder.thuis> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1")
                .unwrap();
        assert_eq!(
            c,
            Command::Mail {
                from: Path::Addr("bouke@zolder.thuis".into()),
                params: MailParams {
                    size: Some(1000),
                    eight_bit: true,
                    smtputf8: false,
                    ret: Some("HDRS".into()),
                    envid: Some("QQ+1".into())
                }
            }
        );
        assert!(matches!(
            parse("mail from: <>").unwrap(),
            Command::Mail {
                from: Path::Null,
                ..
            }
        ));
        assert_eq!(parse("MAIL FROM:<a@b> FOO=1").unwrap_err().code, 555);
        assert_eq!(parse("MAIL FROM:a@b").unwrap_err().code, 501);
    }

    #[test]
    fn parses_rcpt_with_tricks_kept() {
        let c = parse(
            "RCPT TO:<@zolder.thuis:user@remote.example> NOTIFY=success,failure ORCPT=rfc822;x+40y",
        )
        .unwrap();
        match c {
            Command::Rcpt { to, params } => {
                assert_eq!(to, Path::Addr("@zolder.thuis:user@remote.example".into()));
                assert_eq!(params.notify.as_deref(), Some("SUCCESS,FAILURE"));
                assert_eq!(params.orcpt.as_deref(), Some("rfc822;x@y"));
            }
            _ => panic!(),
        }
        assert!(
            matches!(parse("RCPT TO:<\"a>b\"@zolder.thuis>").unwrap(), Command::Rcpt { to: Path::Addr(a), .. } if a == "\"a>b\"@zolder.thuis")
        );
        assert!(parse("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS").is_err());
    }

    #[test]
    fn replies_and_misc() {
        assert_eq!(Reply::new(250, "2.0.0", "Ok").to_wire(), "250 2.0.0 Ok\r\n");
        assert_eq!(
            Reply::multi(250, vec!["a".into(), "b".into()]).to_wire(),
            "250-a\r\n250 b\r\n"
        );
        assert_eq!(parse("FOO").unwrap_err().code, 500);
        assert_eq!(
            decode_plain("AGJvdWtlAGdlaGVpbQ==").unwrap(),
            ("bouke".into(), "geheim".into())
        );
        let mut f = DataFramer::new(BareNewlines::Reject);
        assert_eq!(
            f.line(b"..x\r\n"),
            DataLine::Content(Cow::Borrowed(b".x\r\n"))
        );
        assert_eq!(f.line(b".\r\n"), DataLine::End);
        assert_eq!(xtext_decode("a+2Bb"), Some("a+b".into()));
        assert_eq!(xtext_decode("a+zz"), None);
    }

    fn frame(policy: BareNewlines, data: &[u8]) -> (Vec<u8>, bool, bool) {
        let mut f = DataFramer::new(policy);
        let mut out = Vec::new();
        for l in data.split_inclusive(|&b| b == b'\n') {
            match f.line(l) {
                DataLine::End => return (out, true, f.bare),
                DataLine::Content(c) => out.extend_from_slice(&c),
            }
        }
        (out, false, f.bare)
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        let (m, end, bare) = frame(BareNewlines::Reject, b"a\r\n..b\r\n.\r\nMAIL FROM:<x>\r\n");
        assert!(end && !bare);
        assert_eq!(m, b"a\r\n.b\r\n");
        // The smuggling variants: none of them ends the data.
        for v in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\r\n.\nMAIL FROM:<x>\r\n",
            b"a\n.\r\nMAIL FROM:<x>\r\n",
            b"a\r.\rMAIL FROM:<x>\r\n",
        ] {
            for p in [BareNewlines::Reject, BareNewlines::Normalise] {
                let (_, end, bare) = frame(p, v);
                assert!(!end, "{v:?} ended DATA");
                assert!(bare, "{v:?} not seen as bare");
            }
        }
    }

    #[test]
    fn normalise_turns_bare_newlines_into_crlf() {
        let (m, end, bare) = frame(
            BareNewlines::Normalise,
            b"a\nb\rc\r\n.\n..d\n.\r\n..e\r\n.\r\n",
        );
        assert!(bare && end);
        // ".\n" and the ".\r\n" after a bare LF are content, not the end.
        assert_eq!(m, b"a\r\nb\r\nc\r\n\r\n.d\r\n\r\n.e\r\n");
    }
}
