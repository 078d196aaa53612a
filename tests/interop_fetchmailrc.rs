//! Interop: zolder's fetchmailrc parser against the real fetchmail (Debian's 6.4.x),
//! fixture by fixture (`tests/fixtures/fetchmailrc/`). `fetchmail --configdump` parses a
//! file without connecting anywhere; for every file both must agree on whether it is
//! acceptable, on the line and token of a syntax error, and — for accepted files — on
//! every entry's login, password, local names, keep/fetchall, TLS, folders, limits and
//! envelope. The files zolder accepts on purpose (OAuth, passwordfile, idle on several
//! accounts or folders) must fail in fetchmail and pass here.
//!
//! Prints "skipped: fetchmail not installed" and returns when fetchmail is missing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::have;
use zolder::config::account::TlsMode;
use zolder::config::fetchmailrc::{Import, Options, parse};

/// zolder accepts these although fetchmail 6.4 refuses them.
const ACCEPTED_ON_PURPOSE: &[&str] = &["e12-oauth2-next.rc", "e13-idle-several.rc"];

/// zolder refuses these although fetchmail 6.4.37 loads them: two `defaults` records
/// back to back at the top pass fetchmail's check, and the second becomes a poll entry
/// for a host called "defaults" — the error its own message promises is the better
/// answer.
const REFUSED_ON_PURPOSE: &[&str] = &["n15-two-defaults.rc"];

/// One user record from `--configdump`.
#[derive(Debug, Default, Clone)]
struct Dumped {
    pollname: String,
    active: bool,
    via: Option<String>,
    envelope: Option<String>,
    envskip: i64,
    service: Option<String>,
    remote: String,
    password: Option<String>,
    localnames: Vec<(String, Option<String>)>,
    keep: bool,
    fetchall: bool,
    ssl: bool,
    idle: bool,
    limit: i64,
    fetchlimit: i64,
    mailboxes: Vec<String>,
}

/// The C-style escapes `--configdump` prints inside "…".
fn unescape_dump(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('r') => out.push('\r'),
            Some(d) if d.is_digit(8) => {
                let mut v = d.to_digit(8).unwrap();
                for _ in 0..2 {
                    match it.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            it.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('?'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `"key":"value"` or `"key":None` → Some/None.
fn str_value(line: &str) -> Option<String> {
    let v = line.split_once(':')?.1.trim().trim_end_matches(',');
    if v == "None" {
        return None;
    }
    Some(unescape_dump(v.strip_prefix('"')?.strip_suffix('"')?))
}

fn num_value(line: &str) -> i64 {
    line.split_once(':')
        .map(|x| x.1.trim().trim_end_matches(','))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn bool_value(line: &str) -> bool {
    line.contains("TRUE")
}

/// The quoted strings of a list line, tuples kept as pairs: `["a", ("b", "c"), '*']`.
fn list_value(line: &str) -> Vec<(String, Option<String>)> {
    let body = line.split_once(':').map(|x| x.1).unwrap_or("");
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    let mut in_tuple = false;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' => in_tuple = true,
            ')' => {
                in_tuple = false;
                if let Some(p) = pending.take() {
                    out.push((p, None));
                }
            }
            '"' | '\'' => {
                let mut s = String::new();
                let mut esc = false;
                for d in chars.by_ref() {
                    if esc {
                        s.push('\\');
                        s.push(d);
                        esc = false;
                    } else if d == '\\' {
                        esc = true;
                    } else if d == c {
                        break;
                    } else {
                        s.push(d);
                    }
                }
                let s = unescape_dump(&s);
                if in_tuple {
                    match pending.take() {
                        None => pending = Some(s),
                        Some(first) => out.push((first, Some(s))),
                    }
                } else {
                    out.push((s, None));
                }
            }
            _ => {}
        }
    }
    out
}

fn parse_dump(text: &str) -> Vec<Dumped> {
    let mut out = Vec::new();
    let mut server = Dumped::default();
    let mut cur: Option<Dumped> = None;
    for line in text.lines() {
        let l = line.trim();
        let key = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim_matches(|c| c == '"' || c == '\'');
        if key == "pollname" {
            if let Some(u) = cur.take() {
                out.push(u);
            }
            server = Dumped {
                pollname: str_value(l).unwrap_or_default(),
                ..Dumped::default()
            };
            continue;
        }
        if key == "remote" {
            if let Some(u) = cur.take() {
                out.push(u);
            }
            let mut u = server.clone();
            u.remote = str_value(l).unwrap_or_default();
            cur = Some(u);
            continue;
        }
        let target = match cur.as_mut() {
            Some(u) => u,
            None => &mut server,
        };
        match key {
            "active" => target.active = bool_value(l),
            "via" => target.via = str_value(l),
            "envelope" => target.envelope = str_value(l),
            "envskip" => target.envskip = num_value(l),
            "service" => target.service = str_value(l),
            "password" => target.password = str_value(l),
            "localnames" => target.localnames = list_value(l),
            "keep" => target.keep = bool_value(l),
            "fetchall" => target.fetchall = bool_value(l),
            "ssl" => target.ssl = bool_value(l),
            "idle" => target.idle = bool_value(l),
            "limit" => target.limit = num_value(l),
            "fetchlimit" => target.fetchlimit = num_value(l),
            "mailboxes" => target.mailboxes = list_value(l).into_iter().map(|x| x.0).collect(),
            _ => {}
        }
    }
    if let Some(u) = cur.take() {
        out.push(u);
    }
    out
}

fn whoami() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

fn compare(name: &str, d: &[Dumped], ours: &Import) {
    assert_eq!(
        d.len(),
        ours.accounts.len(),
        "{name}: number of entries\n{d:#?}"
    );
    for (f, z) in d.iter().zip(&ours.accounts) {
        let a = &z.account;
        let ctx = format!("{name}: {}@{}", f.remote, f.pollname);
        assert_eq!(a.username, f.remote, "{ctx}: login");
        // With `auth ssh`/`external` fetchmail fills the password with the login so it
        // never prompts; zolder leaves it unset.
        if !(a.password.is_none() && f.password.as_ref() == Some(&f.remote)) {
            assert_eq!(a.password, f.password, "{ctx}: password");
        }
        if !f.active {
            assert!(a.disabled, "{ctx}: skip");
        } else if a.disabled {
            // zolder disables what it cannot do (a `plugin` tunnel, POP2, ETRN) and says so.
            assert!(
                z.warnings.iter().any(|w| w.message.contains("disabled")),
                "{ctx}: disabled without a word"
            );
        }
        assert_eq!(a.keep, f.keep, "{ctx}: keep");
        assert_eq!(a.fetchall, f.fetchall, "{ctx}: fetchall");
        assert_eq!(
            a.host,
            f.via.clone().unwrap_or(f.pollname.clone()),
            "{ctx}: host"
        );
        if f.ssl {
            assert_eq!(a.tls, TlsMode::Implicit, "{ctx}: ssl");
        }
        if a.protocol == zolder::config::account::Protocol::Imap {
            assert_eq!(a.folders, f.mailboxes, "{ctx}: folders");
            assert_eq!(a.idle, f.idle, "{ctx}: idle");
        }
        assert_eq!(a.limit.unwrap_or(0) as i64, f.limit, "{ctx}: limit");
        assert_eq!(
            a.fetchlimit.unwrap_or(0) as i64,
            f.fetchlimit,
            "{ctx}: fetchlimit"
        );
        if let Some(svc) = &f.service {
            assert_eq!(
                a.port.map(|p| p.to_string()).as_ref(),
                Some(svc),
                "{ctx}: port"
            );
        }
        // Local names: fetchmail's list (with `*` and the invoking user it adds) against
        // deliver_to or the multidrop map.
        let wildcard = f.localnames.iter().any(|(n, _)| n == "*");
        let names: Vec<(String, String)> = f
            .localnames
            .iter()
            .filter(|(n, _)| n != "*")
            .map(|(r, l)| (r.clone(), l.clone().unwrap_or_else(|| r.clone())))
            .collect();
        match &a.multidrop {
            None => {
                assert!(!wildcard && names.len() == 1, "{ctx}: singledrop {names:?}");
                // An mda naming a fixed user may override; the fixtures have none.
                assert_eq!(a.deliver_to, [names[0].1.clone()], "{ctx}: local name");
            }
            Some(md) => {
                assert_eq!(md.map.contains_key("*"), wildcard, "{ctx}: wildcard");
                let mut ours: Vec<(String, String)> = md
                    .map
                    .iter()
                    .filter(|(k, _)| *k != "*")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut theirs = names.clone();
                ours.sort();
                theirs.sort();
                theirs.dedup();
                assert_eq!(ours, theirs, "{ctx}: local names");
                // fetchmail shows its default `Received` when none was given; zolder
                // then tries its list of envelope headers (None).
                let given = f
                    .envelope
                    .as_ref()
                    .filter(|e| !(*e == "Received" && md.envelope.is_none()));
                if let Some(env) = given {
                    assert_eq!(md.envelope.as_ref(), Some(env), "{ctx}: envelope");
                    assert_eq!(md.envelope_skip as i64, f.envskip, "{ctx}: envskip");
                }
            }
        }
    }
}

#[test]
fn every_fixture_agrees_with_fetchmail() {
    if !have("fetchmail") {
        println!("skipped: fetchmail not installed");
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fetchmailrc");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rc"))
        .collect();
    names.sort();
    assert!(names.len() >= 30, "{names:?}");
    let home = tempfile::tempdir().unwrap();
    let me = whoami();
    for name in &names {
        let src = std::fs::read(fixtures.join(name)).unwrap();
        let rc = home.path().join("fetchmailrc");
        std::fs::write(&rc, &src).unwrap();
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new("fetchmail")
            .arg("--configdump")
            .arg("-f")
            .arg(&rc)
            .env("HOME", home.path())
            .env_remove("FETCHMAILHOME")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let theirs_ok = out.status.success();
        let opts = Options {
            invoking_user: me.clone(),
            base_dir: home.path().to_path_buf(),
            hostname: None,
        };
        let ours = parse(&src, &rc, &opts);
        if ACCEPTED_ON_PURPOSE.contains(&name.as_str()) {
            assert!(
                !theirs_ok,
                "{name}: fetchmail was expected to refuse it\n{stdout}"
            );
            assert!(ours.is_ok(), "{name}: {:?}", ours.err());
            continue;
        }
        // Fixture naming: e*/t* are files fetchmail loads, n* files it refuses.
        if !name.starts_with('n') {
            assert!(theirs_ok, "{name}: fetchmail refused it:\n{stderr}");
        } else if !REFUSED_ON_PURPOSE.contains(&name.as_str()) {
            assert!(!theirs_ok, "{name}: fetchmail accepted it");
        }
        if REFUSED_ON_PURPOSE.contains(&name.as_str()) {
            assert!(ours.is_err(), "{name}: zolder should refuse it");
            continue;
        }
        match (&ours, theirs_ok) {
            (Ok(i), true) => compare(name, &parse_dump(&stdout), i),
            (Err(e), false) => {
                // "fetchmail:FILE:LINE: syntax error at TOKEN" when it is a syntax error.
                let prefix = format!("{}:", rc.display());
                if let Some(rest) = stderr
                    .lines()
                    .find_map(|l| l.split_once(prefix.as_str()).map(|x| x.1.to_string()))
                {
                    let (line, msg) = rest.split_once(':').unwrap();
                    assert_eq!(e.line.to_string(), line, "{name}: line ({stderr}) vs {e}");
                    // For "server option after user options" fetchmail names the token
                    // after the option (`60`); zolder names the option (`timeout`).
                    if msg.contains("syntax error") {
                        let token = msg.rsplit(" at ").next().unwrap().trim();
                        assert_eq!(e.keyword, token, "{name}: token ({stderr}) vs {e}");
                    }
                }
            }
            (Ok(_), false) => panic!("{name}: fetchmail refuses it but zolder accepts:\n{stderr}"),
            (Err(e), true) => panic!("{name}: fetchmail accepts it but zolder says {e}"),
        }
    }
}
