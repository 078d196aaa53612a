//! The `sendmail` injector's logic, without I/O: Postfix-compatible argument parsing
//! (sendmail(1)) and turning what arrived on stdin into an envelope and message.
//! The CLI (`cli/sendmail.rs`) reads stdin, calls these, and queues the result
//! directly or through the maildrop.

use std::path::PathBuf;

use crate::config::Config;
use crate::message::headers;

/// What the command was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (default): read a message and queue it.
    Deliver,
    /// `-bs`: SMTP on stdin/stdout.
    Smtp,
    /// `-bp` / `mailq`: list the queue.
    ListQueue,
    /// `-q`: flush everything; `-qRsite`: messages for one site; `-qIid`: one message.
    Flush(crate::queue::FlushTarget),
    /// `-bi` / `-I` / `newaliases`: aliases live in zolder.toml; nothing to build.
    NewAliases,
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    pub mode: Mode,
    /// `-t`
    pub extract: bool,
    /// `-i` / `-oi`: a lone `.` does not end the input.
    pub ignore_dots: bool,
    /// `-f` / `-r`
    pub sender: Option<String>,
    /// `-F`
    pub full_name: Option<String>,
    /// `-v`
    pub verbose: bool,
    /// `-N`
    pub notify: Option<String>,
    /// `-R full|hdrs`
    pub ret: Option<String>,
    /// `-V envid`
    pub envid: Option<String>,
    /// `-C file`
    pub config: Option<PathBuf>,
    pub recipients: Vec<String>,
}

/// Parses sendmail arguments (without argv[0]). `Err` is a usage message (exit 64).
pub fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        mode: Mode::Deliver,
        extract: false,
        ignore_dots: false,
        sender: None,
        full_name: None,
        verbose: false,
        notify: None,
        ret: None,
        envid: None,
        config: None,
        recipients: vec![],
    };
    let mut i = 0;
    // Value of an option given as `-fX` or `-f X`.
    let value = |i: &mut usize, a: &str, flag_len: usize| -> Result<String, String> {
        if a.len() > flag_len {
            Ok(a[flag_len..].to_string())
        } else {
            *i += 1;
            args.get(*i)
                .cloned()
                .ok_or_else(|| format!("option {a} needs a value"))
        }
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            o.recipients.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            o.recipients.push(a.to_string());
            i += 1;
            continue;
        }
        match a {
            "-t" => o.extract = true,
            "-i" | "-oi" => o.ignore_dots = true,
            "-v" => o.verbose = true,
            "-bm" => o.mode = Mode::Deliver,
            "-bs" => o.mode = Mode::Smtp,
            "-bp" => o.mode = Mode::ListQueue,
            "-bi" | "-I" => o.mode = Mode::NewAliases,
            "-bd" | "-bl" => return Err("run `zolder serve` to start the daemon".into()),
            "-bv" => return Err("-bv (verify) is not supported".into()),
            // Accepted and ignored, as Postfix does.
            "-Am" | "-Ac" | "-bh" | "-bH" | "-n" | "-o7" | "-o8" | "-om" | "-U" | "-G" | "-m"
            | "-oem" | "-oee" | "-oep" | "-oeq" | "-oew" | "-odb" | "-odi" | "-odq" | "-ods" => {}
            _ if a.starts_with("-q") => {
                use crate::queue::FlushTarget;
                let target = if a.starts_with("-qR") || a.starts_with("-qI") {
                    let v = value(&mut i, a, 3)?;
                    let cmd = if a.starts_with("-qR") {
                        format!("flush site {v}")
                    } else {
                        format!("flush id {v}")
                    };
                    FlushTarget::parse(&cmd)
                        .ok_or_else(|| format!("bad {} value `{v}`", &a[..3]))?
                } else if a.starts_with("-qS") {
                    return Err("-qS is not implemented".into());
                } else {
                    // -q, and -q30m (sendmail's daemon interval): flush once.
                    FlushTarget::All
                };
                o.mode = Mode::Flush(target);
            }
            _ if a.starts_with("-f") => o.sender = Some(value(&mut i, a, 2)?),
            _ if a.starts_with("-r") => o.sender = Some(value(&mut i, a, 2)?),
            _ if a.starts_with("-F") => o.full_name = Some(value(&mut i, a, 2)?),
            _ if a.starts_with("-N") => {
                let v = value(&mut i, a, 2)?.to_ascii_uppercase().replace(' ', "");
                let ok = v == "NEVER"
                    || v.split(',')
                        .all(|x| matches!(x, "SUCCESS" | "FAILURE" | "DELAY"));
                if !ok {
                    return Err(format!("bad -N value `{v}`"));
                }
                o.notify = Some(v);
            }
            _ if a.starts_with("-R") => {
                let v = value(&mut i, a, 2)?.to_ascii_uppercase();
                if v != "FULL" && v != "HDRS" {
                    return Err(format!("bad -R value `{v}` (full or hdrs)"));
                }
                o.ret = Some(v);
            }
            _ if a.starts_with("-V") => o.envid = Some(value(&mut i, a, 2)?),
            _ if a.starts_with("-C") => o.config = Some(PathBuf::from(value(&mut i, a, 2)?)),
            _ if a.starts_with("-B")
                || a.starts_with("-h")
                || a.starts_with("-L")
                || a.starts_with("-X") =>
            {
                let _ = value(&mut i, a, 2)?;
            }
            _ if a.starts_with("-O") => {}
            _ if a.starts_with("-o") => {
                // -oX value (e.g. -oAfile): Postfix ignores these; some take a value.
                if a.len() == 3 && matches!(&a[2..], "A" | "B" | "F" | "L" | "M" | "R") {
                    i += 1;
                }
            }
            _ => return Err(format!("unknown option {a}")),
        }
        i += 1;
    }
    if o.extract && o.mode != Mode::Deliver {
        return Err("-t can only be used when sending a message".into());
    }
    Ok(o)
}

/// Reads the message from `input` as sendmail does: until EOF, or a line holding only
/// `.` unless `ignore_dots`. Line endings become CRLF (the form SMTP carries).
/// `Err(None)` = larger than `limit`.
pub fn read_message(
    input: &mut dyn std::io::BufRead,
    ignore_dots: bool,
    limit: usize,
) -> Result<Vec<u8>, Option<std::io::Error>> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).map_err(Some)?;
        if n == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !ignore_dots && body == b"." {
            break;
        }
        if out.len() + body.len() + 2 > limit {
            return Err(None);
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The envelope and final bytes of a locally submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub bytes: Vec<u8>,
}

/// The default sender: `login@` the first local domain (or the host name).
pub fn default_sender(cfg: &Config, login: &str) -> String {
    let dom = cfg
        .local_domains
        .first()
        .cloned()
        .unwrap_or_else(|| cfg.hostname.clone());
    format!("{login}@{dom}")
}

/// Applies `-t`, `-f`, `-F`: recipients from headers (Resent-* first), Bcc removed,
/// `From:` added when missing, then `Date:`/`Message-ID:` when missing.
/// `Err` = (exit code, message).
pub fn prepare(
    cfg: &Config,
    o: &Opts,
    login: &str,
    msg: Vec<u8>,
    id: &str,
) -> Result<Prepared, (i32, String)> {
    let mut rcpts = o.recipients.clone();
    let mut bytes = msg;
    if o.extract {
        let resent: Vec<String> = ["Resent-To", "Resent-Cc", "Resent-Bcc"]
            .iter()
            .flat_map(|h| headers::get_all(&bytes, h))
            .flat_map(|v| headers::addresses(&v))
            .collect();
        if !resent.is_empty() {
            rcpts.extend(resent);
        } else {
            rcpts.extend(
                ["To", "Cc", "Bcc"]
                    .iter()
                    .flat_map(|h| headers::get_all(&bytes, h))
                    .flat_map(|v| headers::addresses(&v)),
            );
        }
        bytes = headers::remove(&headers::remove(&bytes, "Bcc"), "Resent-Bcc");
    }
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|r| !r.trim().is_empty() && seen.insert(r.to_ascii_lowercase()));
    if rcpts.is_empty() {
        return Err((64, "No recipient addresses found in message header".into()));
    }
    for r in &rcpts {
        if crate::message::Address::parse(r).is_none() {
            return Err((64, format!("bad recipient address `{r}`")));
        }
    }
    let sender = match &o.sender {
        Some(s) if s.is_empty() || s == "<>" => None,
        Some(s) => Some(s.trim_start_matches('<').trim_end_matches('>').to_string()),
        None => Some(default_sender(cfg, login)),
    };
    if headers::get(&bytes, "From").is_none() {
        let addr = sender.clone().unwrap_or_else(|| default_sender(cfg, login));
        let name = o
            .full_name
            .clone()
            .or_else(|| std::env::var("NAME").ok())
            .filter(|n| !n.is_empty());
        let line = match name {
            Some(n) => format!(
                "From: \"{}\" <{addr}>\r\n",
                n.replace(['"', '\\', '\r', '\n'], "")
            ),
            None => format!("From: {addr}\r\n"),
        };
        let mut v = line.into_bytes();
        v.extend_from_slice(&bytes);
        bytes = v;
    }
    let bytes = crate::queue::complete_headers(bytes, &cfg.hostname, id);
    Ok(Prepared {
        sender,
        recipients: rcpts,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_postfix_flags() {
        let o = parse_args(&args(
            "-t -oi -f bouke@zolder.thuis -FBouke -N success,failure -R hdrs -V E1 -odi -- -x root",
        ))
        .unwrap();
        assert!(o.extract && o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("bouke@zolder.thuis"));
        assert_eq!(o.full_name.as_deref(), Some("Bouke"));
        assert_eq!(o.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(o.ret.as_deref(), Some("HDRS"));
        assert_eq!(o.recipients, vec!["-x", "root"]);
        assert_eq!(parse_args(&args("-bp")).unwrap().mode, Mode::ListQueue);
        use crate::queue::FlushTarget;
        assert_eq!(
            parse_args(&args("-q")).unwrap().mode,
            Mode::Flush(FlushTarget::All)
        );
        assert_eq!(
            parse_args(&args("-q30m")).unwrap().mode,
            Mode::Flush(FlushTarget::All)
        );
        assert_eq!(
            parse_args(&args("-qRExample.NET")).unwrap().mode,
            Mode::Flush(FlushTarget::Site("example.net".into()))
        );
        assert_eq!(
            parse_args(&args("-qR example.net")).unwrap().mode,
            Mode::Flush(FlushTarget::Site("example.net".into()))
        );
        assert!(parse_args(&args("-qRbad/site")).is_err());
        assert!(parse_args(&args("-qI../x")).is_err());
        assert!(parse_args(&args("-Z")).is_err());
        assert!(parse_args(&args("-t -bp")).is_err());
        assert!(parse_args(&args("-f")).is_err());
    }

    #[test]
    fn reads_until_dot_unless_i() {
        let mut r: &[u8] = b"a\n.\nb\n";
        assert_eq!(read_message(&mut r, false, 100).unwrap(), b"a\r\n");
        let mut r: &[u8] = b"a\n.\nb\n";
        assert_eq!(read_message(&mut r, true, 100).unwrap(), b"a\r\n.\r\nb\r\n");
        let mut r: &[u8] = b"aaaaaaaaaaaa\n";
        assert!(matches!(read_message(&mut r, true, 5), Err(None)));
    }

    #[test]
    fn extracts_recipients_and_drops_bcc() {
        let cfg = Config::from_str_at(
            "hostname = \"zolder.thuis\"\nlocal_domains = [\"zolder.thuis\"]\n",
            std::path::Path::new("/tmp/z.toml"),
            false,
        )
        .unwrap();
        let o = parse_args(&args("-t")).unwrap();
        let p = prepare(&cfg, &o, "cron", b"To: root\r\nCc: A <a@x.example>\r\nBcc: secret@y.example\r\nSubject: s\r\n\r\nbody\r\n".to_vec(), "ID1").unwrap();
        assert_eq!(
            p.recipients,
            vec!["root", "a@x.example", "secret@y.example"]
        );
        let s = String::from_utf8(p.bytes).unwrap();
        assert!(!s.contains("secret@"), "{s}");
        assert!(s.contains("From: cron@zolder.thuis\r\n"), "{s}");
        assert_eq!(p.sender.as_deref(), Some("cron@zolder.thuis"));
        assert_eq!(
            prepare(&cfg, &o, "cron", b"Subject: x\r\n\r\n".to_vec(), "I")
                .unwrap_err()
                .0,
            64
        );
    }
}
