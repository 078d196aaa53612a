//! The fetchmailrc lexer: fetchmail 6.4's `rcfile_l.l` rules, reimplemented with the
//! same longest-match semantics, so that the quirks users' files rely on (or trip over)
//! come out the same. Pure: bytes in, tokens out.
//!
//! How flex decides, and therefore how [`Lexer::next_token`] decides: at each position
//! every rule that can match is tried, the longest match wins, and among equally long
//! matches the rule written first wins. The rules, in fetchmail's order:
//!
//! 1. a quoted string, `"…"` or `'…'` (no escape for the delimiter; may span lines);
//! 2. in the NAME state (after `user`, `pass`, `is`, `to`, `=`): any run of bytes
//!    without white space and without `= ; : ,`, which is always a string;
//! 3. keywords (lower case only), the fused `no…` forms, noise words, protocol names
//!    (all-lower or all-upper);
//! 4. `(#.*)?\\?\n`: a comment to end of line, a backslash-newline, or a newline;
//! 5. a number `-?[0-9]+`;
//! 6. any other run without white space and `= ; : ,`: a string.
//!
//! Consequences worth knowing: `keepalive` is a string (rule 6 is longer than `keep`);
//! `'it''s'` after `password` is the 7-byte string `'it''s'` (rule 2 beats rule 1's
//! `'it'`); `abc#def` is one string, but `#` at the start of a token opens a comment;
//! `password 12345` is a string, `limit 12345` a number. Escapes (`\n`, `\x41`, `\065`,
//! `\0101` = byte 8 then `1`) apply to quoted and unquoted strings alike.
//!
//! Unlike fetchmail, newlines inside quoted strings are counted, so line numbers in
//! errors stay right after a multi-line string.

use super::ast::{AuthKind, ProtoKind};

/// A keyword of the fetchmailrc language (synonyms folded: `server` → `Poll`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kw {
    Set,
    Logfile,
    Idfile,
    Pidfile,
    Daemon,
    Syslog,
    Invisible,
    Showdots,
    Postmaster,
    Bouncemail,
    Spambounce,
    Softbounce,
    Warnings,
    Tracepolls,
    Defaults,
    Poll,
    Skip,
    Via,
    Aka,
    LocalDomains,
    Protocol,
    Service,
    Port,
    Interval,
    Authenticate,
    Timeout,
    Envelope,
    Qvirtual,
    Principal,
    EsmtpName,
    EsmtpPassword,
    BadHeader,
    Accept,
    Reject,
    User,
    Password,
    Folder,
    SmtpHost,
    FetchDomains,
    SmtpAddress,
    SmtpName,
    Antispam,
    Mda,
    Bsmtp,
    Lmtp,
    Preconnect,
    Postconnect,
    Interface,
    Monitor,
    Plugin,
    Plugout,
    Batchlimit,
    Fetchlimit,
    Fetchsizelimit,
    Fastuidl,
    Expunge,
    Properties,
    Is,
    Here,
    There,
    To,
    No,
    Keep,
    Flush,
    Limitflush,
    Fetchall,
    Rewrite,
    Forcecr,
    Stripcr,
    Pass8bits,
    Dropstatus,
    Dropdelivered,
    Mimedecode,
    Idle,
    Dns,
    Uidl,
    Ssl,
    Sslkey,
    Sslcert,
    Sslproto,
    Sslcertck,
    Sslcertfile,
    Sslcertpath,
    Sslcommonname,
    Sslfingerprint,
    Checkalias,
    Limit,
    // From fetchmail's `next` branch and distribution patches (openSUSE): accepted by
    // zolder on purpose, although fetchmail 6.4 calls them syntax errors.
    Passwordfile,
    Passwordfd,
    Passwordeval,
    Sslmode,
    Idletimeout,
    Forceidle,
    RetrieveError,
    Pwmd,
}

/// One token: what it is, the line it starts on, and its source text (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Tok,
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Kw(Kw),
    /// A protocol name (`pop3`, `IMAP`, …): only the argument of `proto`.
    Proto(ProtoKind),
    /// An authentication type (`any`, `cram-md5`, …): only the argument of `auth`.
    AuthType(AuthKind),
    Number(i64),
    Str(String),
    /// `=` in `remote=local` mappings and `set logfile = …`.
    Map,
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Initial,
    /// The next token is a string whatever it looks like.
    Name,
    /// Right after `auth`: `password` is an auth type here.
    Auth,
}

pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    state: State,
}

fn is_run_byte(b: u8) -> bool {
    !matches!(b, b'=' | b';' | b':' | b',' | b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
            state: State::Initial,
        }
    }

    /// Every token up to and including [`Tok::Eof`].
    pub fn tokens(mut self) -> Vec<Token> {
        let mut out = Vec::new();
        loop {
            let t = self.next_token();
            let end = t.kind == Tok::Eof;
            out.push(t);
            if end {
                return out;
            }
        }
    }

    fn run_len(&self, from: usize) -> usize {
        self.src[from..]
            .iter()
            .take_while(|&&b| is_run_byte(b))
            .count()
    }

    /// Length of a quoted string starting at `from` (quotes included), if it closes.
    fn quoted_len(&self, from: usize) -> Option<usize> {
        let q = self.src[from];
        if q != b'"' && q != b'\'' {
            return None;
        }
        self.src[from + 1..]
            .iter()
            .position(|&b| b == q)
            .map(|i| i + 2)
    }

    /// Length of rule 4 (`(#.*)?\\?\n`) at `from`, if it matches.
    fn newline_len(&self, from: usize) -> Option<usize> {
        let rest = &self.src[from..];
        match rest.first()? {
            b'\n' => Some(1),
            b'\\' if rest.get(1) == Some(&b'\n') => Some(2),
            // fetchmail needs the newline; a comment on the file's last line without one
            // would be a stray string there. zolder reads it as the comment it is.
            b'#' => Some(
                rest.iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            ),
            _ => None,
        }
    }

    pub fn next_token(&mut self) -> Token {
        loop {
            // White space and the ignored punctuation.
            while let Some(&b) = self.src.get(self.pos) {
                if matches!(b, b' ' | b'\t' | b'\r' | b';' | b':' | b',') {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            let start = self.pos;
            let line = self.line;
            let Some(&b) = self.src.get(start) else {
                return Token {
                    kind: Tok::Eof,
                    line,
                    text: String::new(),
                };
            };
            if b == b'=' {
                self.pos += 1;
                self.state = State::Name;
                return Token {
                    kind: Tok::Map,
                    line,
                    text: "=".into(),
                };
            }
            let quoted = self.quoted_len(start).unwrap_or(0);
            let run = self.run_len(start);
            let newline = self.newline_len(start).unwrap_or(0);
            // A comment or newline wins when it is strictly longer than any string
            // (rules 1, 2, 6 all come before it, so ties go to them).
            if newline > quoted && newline > run {
                self.pos += newline;
                self.line += 1;
                continue;
            }
            if quoted > 0 && quoted >= run {
                let raw = &self.src[start..start + quoted];
                self.line += raw.iter().filter(|&&c| c == b'\n').count();
                self.pos += quoted;
                self.state = State::Initial;
                return Token {
                    kind: Tok::Str(unescape(&raw[1..raw.len() - 1])),
                    line,
                    text: String::from_utf8_lossy(raw).into_owned(),
                };
            }
            // Here run > 0: every byte that is neither white space, punctuation, `=`,
            // a quote that closes nor a newline starts a run.
            let raw = &self.src[start..start + run];
            let text = String::from_utf8_lossy(raw).into_owned();
            if self.state == State::Name {
                self.pos += run;
                self.state = State::Initial;
                return Token {
                    kind: Tok::Str(unescape(raw)),
                    line,
                    text,
                };
            }
            if self.state == State::Auth {
                // Only the word right after `auth` is read in this state.
                self.state = State::Initial;
                if let Some(a) = auth_state_word(&text) {
                    self.pos += run;
                    return Token {
                        kind: Tok::AuthType(a),
                        line,
                        text,
                    };
                }
            }
            if let Some(rest) = fused_no(&text) {
                // `nokeep` = `no` + `keep`: hand out `no`, lex the rest next time.
                self.pos += text.len() - rest.len();
                return Token {
                    kind: Tok::Kw(Kw::No),
                    line,
                    text: "no".into(),
                };
            }
            self.pos += run;
            if is_noise(&text) {
                continue;
            }
            let kind = if let Some(kw) = keyword(&text) {
                match kw {
                    Kw::User
                    | Kw::Password
                    | Kw::Is
                    | Kw::To
                    | Kw::Passwordfile
                    | Kw::Passwordeval => self.state = State::Name,
                    Kw::Authenticate => self.state = State::Auth,
                    _ => {}
                }
                Tok::Kw(kw)
            } else if let Some(a) = auth_word(&text) {
                self.state = State::Initial;
                Tok::AuthType(a)
            } else if let Some(p) = proto_word(&text) {
                Tok::Proto(p)
            } else if let Some(n) = number(&text) {
                Tok::Number(n)
            } else {
                Tok::Str(unescape(raw))
            };
            return Token { kind, line, text };
        }
    }
}

/// `-?[0-9]+` as C's `atoi` reads it (saturating instead of undefined on overflow).
fn number(t: &str) -> Option<i64> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(t.parse::<i64>().unwrap_or(if t.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}

fn is_noise(t: &str) -> bool {
    matches!(t, "with" | "and" | "has" | "wants" | "options")
}

/// The fused `no…` forms fetchmail 6.4 knows (plus `noforceidle` from `next`); returns
/// the keyword part. Others (`nossl`, `nosslcertck`, `nosyslog`) are plain strings.
fn fused_no(t: &str) -> Option<&str> {
    const FUSED: &[&str] = &[
        "nobouncemail",
        "nouidl",
        "nocheckalias",
        "nodns",
        "noenvelope",
        "nokeep",
        "noflush",
        "nolimitflush",
        "nofetchall",
        "norewrite",
        "noforcecr",
        "nostripcr",
        "nopass8",
        "nopass8bits",
        "nodropstatus",
        "nodropdelivered",
        "nomimedec",
        "nomimedecode",
        "nospambounce",
        "noidle",
        "noforceidle",
    ];
    FUSED.contains(&t).then(|| &t[2..])
}

fn keyword(t: &str) -> Option<Kw> {
    use Kw::*;
    Some(match t {
        "set" => Set,
        "logfile" => Logfile,
        "idfile" => Idfile,
        "pidfile" => Pidfile,
        "daemon" => Daemon,
        "syslog" => Syslog,
        "invisible" => Invisible,
        "showdots" => Showdots,
        "postmaster" => Postmaster,
        "bouncemail" => Bouncemail,
        "spambounce" => Spambounce,
        "softbounce" => Softbounce,
        "warnings" => Warnings,
        "tracepolls" => Tracepolls,
        "defaults" => Defaults,
        "server" | "poll" => Poll,
        "skip" => Skip,
        "via" => Via,
        "aka" => Aka,
        "local" | "localdomains" => LocalDomains,
        "proto" | "protocol" => Protocol,
        "service" => Service,
        "port" => Port,
        "interval" => Interval,
        "preauth" | "preauthenticate" | "auth" | "authenticate" => Authenticate,
        "timeout" => Timeout,
        "envelope" => Envelope,
        "qvirtual" => Qvirtual,
        "principal" => Principal,
        "esmtpname" => EsmtpName,
        "esmtppassword" => EsmtpPassword,
        "bad-header" => BadHeader,
        "accept" => Accept,
        "reject" => Reject,
        "user" | "username" => User,
        "pass" | "password" => Password,
        "folder" | "folders" => Folder,
        "smtp" | "smtphost" => SmtpHost,
        "fetchdomains" => FetchDomains,
        "smtpaddress" => SmtpAddress,
        "smtpname" => SmtpName,
        "antispam" => Antispam,
        "mda" => Mda,
        "bsmtp" => Bsmtp,
        "lmtp" => Lmtp,
        "pre" | "preconnect" => Preconnect,
        "post" | "postconnect" => Postconnect,
        "interface" => Interface,
        "monitor" => Monitor,
        "plugin" => Plugin,
        "plugout" => Plugout,
        "batchlimit" => Batchlimit,
        "fetchlimit" => Fetchlimit,
        "fetchsizelimit" => Fetchsizelimit,
        "fastuidl" => Fastuidl,
        "expunge" => Expunge,
        "properties" => Properties,
        "is" => Is,
        "here" => Here,
        "there" => There,
        "to" => To,
        "no" => No,
        "keep" => Keep,
        "flush" => Flush,
        "limitflush" => Limitflush,
        "fetchall" => Fetchall,
        "rewrite" => Rewrite,
        "forcecr" => Forcecr,
        "stripcr" => Stripcr,
        "pass8" | "pass8bits" => Pass8bits,
        "dropstatus" => Dropstatus,
        "dropdelivered" => Dropdelivered,
        "mimedec" | "mimedecode" => Mimedecode,
        "idle" => Idle,
        "dns" => Dns,
        "uidl" => Uidl,
        "ssl" => Ssl,
        "sslkey" => Sslkey,
        "sslcert" => Sslcert,
        "sslproto" | "sslprotover" | "sslprotoversion" | "sslprotocolver"
        | "sslprotocolversion" => Sslproto,
        "sslcertck" => Sslcertck,
        "sslcertfile" => Sslcertfile,
        "sslcertpath" => Sslcertpath,
        "sslcommonname" => Sslcommonname,
        "sslfingerprint" => Sslfingerprint,
        "checkalias" => Checkalias,
        "limit" => Limit,
        "passwordfile" => Passwordfile,
        "passwordfd" => Passwordfd,
        "passwordeval" => Passwordeval,
        "sslmode" => Sslmode,
        "idletimeout" => Idletimeout,
        "forceidle" => Forceidle,
        "retrieve-error" => RetrieveError,
        "pwmd_socket" | "pwmd_socket_args" | "pwmd_file" | "pinentry_timeout" => Pwmd,
        _ => return None,
    })
}

/// Auth types recognised in any state (fetchmail 6.4 lexes these words everywhere).
fn auth_word(t: &str) -> Option<AuthKind> {
    Some(match t {
        "any" => AuthKind::Any,
        "gssapi" => AuthKind::Gssapi,
        "kerberos" | "kerberos4" | "kerberos_v4" => AuthKind::Kerberos4,
        "kerberos5" | "kerberos_v5" => AuthKind::Kerberos5,
        "ssh" => AuthKind::Ssh,
        "external" => AuthKind::External,
        "otp" | "opie" => AuthKind::Otp,
        "cram" | "cram-md5" => AuthKind::CramMd5,
        "msn" => AuthKind::Msn,
        "ntlm" => AuthKind::Ntlm,
        _ => return None,
    })
}

/// Auth types recognised only right after `auth`: `password` (as in fetchmail 6.4) and
/// the ones distribution builds and fetchmail's `next` branch added.
fn auth_state_word(t: &str) -> Option<AuthKind> {
    Some(match t {
        "password" => AuthKind::Password,
        "oauthbearer" => AuthKind::OAuthBearer,
        "xoauth2" => AuthKind::XOAuth2,
        "implicit" => AuthKind::Ssh,
        "apop" => AuthKind::Apop,
        "plain" => AuthKind::Password,
        _ => return None,
    })
}

/// Protocol names: all-lower or all-upper only (`Pop3` is a string, hence an error).
fn proto_word(t: &str) -> Option<ProtoKind> {
    let lower = t.to_ascii_lowercase();
    if t != lower && t != t.to_ascii_uppercase() {
        return None;
    }
    Some(match lower.as_str() {
        "auto" => ProtoKind::Auto,
        "pop2" => ProtoKind::Pop2,
        "pop3" => ProtoKind::Pop3,
        "imap" => ProtoKind::Imap,
        "apop" => ProtoKind::Apop,
        "rpop" => ProtoKind::Rpop,
        "kpop" => ProtoKind::Kpop,
        "sdps" => ProtoKind::Sdps,
        "etrn" => ProtoKind::Etrn,
        "odmr" => ProtoKind::Odmr,
        _ => return None,
    })
}

/// fetchmail's `escapes()`: C-style escapes, `\xhh` (at most two hex digits), `\0oo`
/// (octal, the leading 0 counts toward three digits), `\nnn` (decimal, at most three),
/// backslash-newline joins lines, any other `\c` is `c`. A NUL ends the string, as it
/// does in C. Bytes that are not UTF-8 are replaced (U+FFFD).
pub fn unescape(s: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let byte: u8;
        if c == b'\\' && i + 1 < s.len() && b"0123456789xX".contains(&s[i + 1]) {
            i += 1;
            let mut val: u32 = 0;
            let mut count = 0;
            if s[i] == b'x' || s[i] == b'X' {
                i += 1;
                while i < s.len() && count < 2 {
                    let Some(d) = (s[i] as char).to_digit(16) else {
                        break;
                    };
                    val = val * 16 + d;
                    count += 1;
                    i += 1;
                }
            } else {
                let radix = if s[i] == b'0' { 8 } else { 10 };
                while i < s.len() && count < 3 {
                    let Some(d) = (s[i] as char).to_digit(radix) else {
                        break;
                    };
                    val = val * radix + d;
                    count += 1;
                    i += 1;
                }
            }
            byte = (val & 0xff) as u8;
        } else if c == b'\\' {
            i += 1;
            let Some(&e) = s.get(i) else {
                break; // a backslash at the very end is dropped
            };
            i += 1;
            byte = match e {
                b'\n' => continue,
                b'n' => b'\n',
                b't' => b'\t',
                b'b' => 8,
                b'r' => b'\r',
                other => other,
            };
        } else {
            byte = c;
            i += 1;
        }
        if byte == 0 {
            break;
        }
        out.push(byte);
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        Lexer::new(src.as_bytes())
            .tokens()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }
    fn s(v: &str) -> Tok {
        Tok::Str(v.into())
    }

    #[test]
    fn escapes_like_fetchmail() {
        assert_eq!(unescape(br"a \x22quoted\x22 pw"), "a \"quoted\" pw");
        assert_eq!(
            unescape(br"back\\slash and dec\34quote and oct\0101 and tab\tend"),
            "back\\slash and dec\"quote and oct\u{8}1 and tab\tend"
        );
        assert_eq!(unescape(b"long \\\ncontinued"), "long continued");
        assert_eq!(unescape(br"\x414"), "A4");
        assert_eq!(unescape(br"\q"), "q");
        assert_eq!(unescape(b"end\\"), "end");
        assert_eq!(unescape(br"cut\x00here"), "cut");
        assert_eq!(unescape(br"\xc3\xa9"), "é");
    }

    #[test]
    fn name_state_makes_strings() {
        assert_eq!(
            kinds("password 12345 limit 12345"),
            vec![
                Tok::Kw(Kw::Password),
                s("12345"),
                Tok::Kw(Kw::Limit),
                Tok::Number(12345),
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("is keep here keep"),
            vec![
                Tok::Kw(Kw::Is),
                s("keep"),
                Tok::Kw(Kw::Here),
                Tok::Kw(Kw::Keep),
                Tok::Eof
            ]
        );
        // Longest match: the NAME run beats the quoted string.
        assert_eq!(
            kinds("password 'it''s'"),
            vec![Tok::Kw(Kw::Password), s("'it''s'"), Tok::Eof]
        );
        // `=` enters NAME state: `600` is a string there.
        assert_eq!(
            kinds("set daemon = 600"),
            vec![
                Tok::Kw(Kw::Set),
                Tok::Kw(Kw::Daemon),
                Tok::Map,
                s("600"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn punctuation_comments_and_continuations() {
        assert_eq!(
            kinds("folder INBOX,Lists;: # comment, here\n keep \\\n ssl"),
            vec![
                Tok::Kw(Kw::Folder),
                s("INBOX"),
                s("Lists"),
                Tok::Kw(Kw::Keep),
                Tok::Kw(Kw::Ssl),
                Tok::Eof
            ]
        );
        // Without the blank, `keep\` is one run, longer than `keep`: a string (the
        // trailing backslash is dropped), and fetchmail reports "syntax error at keep\".
        assert_eq!(
            kinds("keep\\\n ssl"),
            vec![s("keep"), Tok::Kw(Kw::Ssl), Tok::Eof]
        );
        assert_eq!(
            kinds("password abc#def"),
            vec![Tok::Kw(Kw::Password), s("abc#def"), Tok::Eof]
        );
        assert_eq!(kinds("ab:cd"), vec![s("ab"), s("cd"), Tok::Eof]);
        assert_eq!(
            kinds("\"hash#semi;colon:comma,eq=end\""),
            vec![s("hash#semi;colon:comma,eq=end"), Tok::Eof]
        );
    }

    #[test]
    fn keywords_case_and_fused_no() {
        assert_eq!(kinds("Poll"), vec![s("Poll"), Tok::Eof]);
        assert_eq!(
            kinds("IMAP imap Pop3"),
            vec![
                Tok::Proto(ProtoKind::Imap),
                Tok::Proto(ProtoKind::Imap),
                s("Pop3"),
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("nokeep no keep nossl keepalive"),
            vec![
                Tok::Kw(Kw::No),
                Tok::Kw(Kw::Keep),
                Tok::Kw(Kw::No),
                Tok::Kw(Kw::Keep),
                s("nossl"),
                s("keepalive"),
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("auth password pass x"),
            vec![
                Tok::Kw(Kw::Authenticate),
                Tok::AuthType(AuthKind::Password),
                Tok::Kw(Kw::Password),
                s("x"),
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("with and has wants options here there"),
            vec![Tok::Kw(Kw::Here), Tok::Kw(Kw::There), Tok::Eof]
        );
    }

    #[test]
    fn line_numbers_count_newlines_in_strings() {
        let toks = Lexer::new(b"a \"x\ny\"\n\nb").tokens();
        assert_eq!(toks[1].kind, s("x\ny"));
        assert_eq!(toks[1].line, 1);
        assert_eq!(toks[2].line, 4);
    }
}
