//! The delivery keywords of a fetchmail record: `mda` (which local delivery agent the
//! command runs and which fixed recipient it names), `smtphost` (is it this machine?)
//! and the shell-free word splitting that `mda`, `preconnect`/`postconnect` and the
//! other command keywords share. Pure: it reads strings from the rcfile and adds
//! warnings to the caller's [`Ctx`]; it runs nothing and touches no file.

use super::Ctx;

/// Is an smtphost entry this machine? `localhost[/port]`, a loopback address, our own
/// host name, or an LMTP socket path. fetchmail 6.6's `/tls`-style suffixes are ignored.
pub(super) fn smtphost_is_local(h: &str, hostname: Option<&str>) -> bool {
    if h.starts_with('/') {
        return true;
    }
    let host = h.split('/').next().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with("127.")
        || host == "::1"
        || hostname.is_some_and(|n| host.eq_ignore_ascii_case(n))
}

/// Looks at an `mda` command: warns unless it is a local delivery agent zolder replaces,
/// and returns the fixed recipient it names (`-d bob`, `--user bob`), if any (`%T` is
/// not fixed).
pub(super) fn mda_delivery(cx: &mut Ctx, mda: &str, line: usize) -> Option<String> {
    let (argv, _) = split_command(mda);
    let prog = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    let arg_after = |flags: &[&str]| -> Option<String> {
        argv.iter()
            .position(|a| flags.contains(&a.as_str()))
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let fixed = match prog.as_str() {
        "procmail" => {
            let rcfile = argv
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-') && !a.contains('%') && a.contains('/'));
            let which = match rcfile {
                Some(f) => format!("the procmail rules in {f}"),
                None => "the user's ~/.procmailrc".to_string(),
            };
            cx.warn(
                line,
                "mda",
                format!("procmail: zolder stores the mail itself, so {which} no longer run; port them to Sieve (data_dir/sieve/USER.sieve)"),
            );
            arg_after(&["-d"])
        }
        "maildrop" => {
            cx.warn(
                line,
                "mda",
                "maildrop: zolder stores the mail itself; port ~/.mailfilter rules to Sieve (data_dir/sieve/USER.sieve)",
            );
            arg_after(&["-d"])
        }
        "dovecot-lda" | "deliver" => arg_after(&["-d"]),
        "sendmail" => argv
            .iter()
            .skip(1)
            .rev()
            .find(|a| !a.starts_with('-') && !a.contains('%'))
            .filter(|a| !a.contains('@'))
            .cloned(),
        "zolder" if argv.get(1).map(String::as_str) == Some("deliver") => {
            arg_after(&["--user", "-u"])
        }
        _ => {
            cx.warn(
                line,
                "mda",
                format!("`{mda}` is not a local delivery agent zolder knows (procmail, maildrop, dovecot-lda, sendmail, zolder deliver): zolder delivers to the local names itself"),
            );
            None
        }
    };
    fixed.filter(|f| !f.contains('%') && !f.is_empty())
}

/// Splits a command line into argv the way a POSIX shell would for simple words
/// (blanks, `'…'`, `"…"` with `\` escapes, `\c`), without running a shell. Also returns
/// the first shell metacharacter found outside quotes, if any: such commands used the
/// shell fetchmail runs them with (`sh -c`), which zolder does not.
pub fn split_command(s: &str) -> (Vec<String>, Option<char>) {
    let mut argv = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut meta = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    argv.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            cur.push(chars.next().unwrap_or('\\'));
                        }
                        '$' | '`' => {
                            meta.get_or_insert(d);
                            cur.push(d);
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '~' | '{'
            | '}' => {
                in_word = true;
                meta.get_or_insert(c);
                cur.push(c);
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        argv.push(cur);
    }
    (argv, meta)
}
