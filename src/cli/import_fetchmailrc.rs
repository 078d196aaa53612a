//! `zolder import-fetchmailrc FILE [--idfile F] [--with-passwords]`: prints the
//! `[[accounts]]` equivalent of a fetchmailrc (warnings as comments), and imports
//! fetchmail's seen-UID file into the database so `keep` accounts do not fetch the whole
//! mailbox again. The parsing is `config::fetchmailrc`; this file renders and reports.
//!
//! # Security
//! Passwords are printed only with `--with-passwords`; otherwise each account gets a
//! `password_file = "secrets/<account>"` placeholder. A fetchmailrc holding a password
//! that group or others may read is refused before anything is printed.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{EX_CONFIG, EX_NOPERM, EX_OK};
use crate::config::Config;
use crate::config::account::AccountConfig;
use crate::config::fetchmailrc::load::{self, FetchmailrcError};
use crate::config::fetchmailrc::{Import, ImportedAccount};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The fetchmailrc to import (~/.fetchmailrc, /etc/fetchmailrc, …; `-` = stdin).
    pub file: PathBuf,
    /// fetchmail's seen-UID file to import into the database of --config (default: the
    /// file's `set idfile`, else $FETCHMAILHOME/.fetchids, ~/.fetchids and Debian's
    /// /var/lib/fetchmail places).
    #[arg(long, value_name = "F")]
    pub idfile: Option<PathBuf>,
    /// Print the passwords written in the fetchmailrc instead of password_file
    /// placeholders (the output then holds secrets: keep it mode 600).
    #[arg(long)]
    pub with_passwords: bool,
    /// For entries with `proto auto` (or none), ask the server which protocol it
    /// speaks, as fetchmail did at every poll: IMAP first, then POP3 (5 s per try).
    #[arg(long)]
    pub probe: bool,
}

pub fn run(config: &Path, args: Args) -> anyhow::Result<i32> {
    // The config is optional here: it only lends its host name (an smtphost naming this
    // machine counts as local) and its database (for the seen-UID import).
    let cfg = config
        .exists()
        .then(|| Config::load(config))
        .transpose()
        .unwrap_or_else(|e| {
            eprintln!("zolder: {e} (continuing without it)");
            None
        });
    let hostname = cfg.as_ref().map(|c| c.hostname.as_str());
    let loaded = if args.file.as_os_str() == "-" {
        read_stdin(hostname)
    } else {
        load::read_fetchmailrc(&args.file, hostname)
    };
    let mut import = match loaded {
        Ok(i) => i,
        Err(e @ FetchmailrcError::Insecure(_)) => {
            eprintln!("zolder: {e}");
            return Ok(EX_NOPERM);
        }
        Err(e) => {
            eprintln!("zolder: {e}");
            return Ok(EX_CONFIG);
        }
    };
    if args.probe {
        for ia in import.accounts.iter_mut().filter(|ia| ia.protocol_guessed) {
            let a = &mut ia.account;
            match probe(&a.host, a.port, a.tls, PROBE_TIMEOUT) {
                Some((proto, port)) => {
                    eprintln!("zolder: {}: {}:{port} answers {proto:?}", a.name, a.host);
                    a.protocol = proto;
                    ia.warnings.retain(|w| w.keyword != "proto auto");
                }
                None => eprintln!(
                    "zolder: {}: {} gave no answer that names its protocol; kept {:?}",
                    a.name, a.host, a.protocol
                ),
            }
        }
    }
    // Paths the output names are read relative to the config's folder: rewrite them so.
    let base = config
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    for ia in &mut import.accounts {
        for p in [&mut ia.account.password_file, &mut ia.account.ca_file]
            .into_iter()
            .flatten()
        {
            *p = relative_to(p, base);
        }
    }
    print!("{}", render(&import, &args.file, args.with_passwords));
    print!("{}", users_section(&import, cfg.as_ref()));
    for w in import.all_warnings() {
        eprintln!("warning: {w}");
    }

    // Seen state.
    let explicit = args.idfile.is_some();
    let idfile = args
        .idfile
        .clone()
        .or_else(|| import.idfile.clone())
        .or_else(|| load::idfile_candidates(&args.file).into_iter().next());
    let Some(idfile) = idfile else {
        let kept_pop3 = import.accounts.iter().any(|ia| {
            ia.account.keep && ia.account.protocol == crate::config::account::Protocol::Pop3
        });
        eprintln!(
            "zolder: no .fetchids found; no seen state to import (give --idfile F){}",
            if kept_pop3 {
                ": the POP3 `keep` accounts will fetch every message on the server once"
            } else {
                ""
            }
        );
        return Ok(EX_OK);
    };
    let Some(cfg) = cfg else {
        eprintln!(
            "zolder: seen state in {} NOT imported: no config at {} (give --config FILE)",
            idfile.display(),
            config.display()
        );
        return Ok(if explicit { EX_CONFIG } else { EX_OK });
    };
    if !idfile.exists() && !explicit {
        eprintln!(
            "zolder: {} (from `set idfile`) does not exist; no seen state to import",
            idfile.display()
        );
        return Ok(EX_OK);
    }
    let ids = load::read_fetchids(&idfile)?;
    let mut conn = crate::db::open(&cfg.db_path())
        .with_context(|| format!("opening the database of {}", config.display()))?;
    let report = seed(&mut conn, &import, &ids)?;
    eprintln!(
        "zolder: imported seen state from {} into {}:",
        idfile.display(),
        cfg.db_path().display()
    );
    for line in report {
        eprintln!("  {line}");
    }
    Ok(EX_OK)
}

/// `-`: the fetchmailrc on standard input (fetchmail's `-f -`; no permission check, as
/// in fetchmail). The invoking user is whoever runs this; relative paths resolve
/// against the current folder.
fn read_stdin(hostname: Option<&str>) -> Result<Import, FetchmailrcError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(load::MAX_RC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FetchmailrcError::Read {
            file: PathBuf::from("-"),
            source: e,
        })?;
    if bytes.len() as u64 > load::MAX_RC_BYTES {
        return Err(FetchmailrcError::TooLarge(PathBuf::from("-")));
    }
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into());
    let opts = crate::config::fetchmailrc::Options {
        invoking_user: me,
        base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        hostname: hostname.map(str::to_string),
    };
    Ok(crate::config::fetchmailrc::parse(
        &bytes,
        Path::new("(stdin)"),
        &opts,
    )?)
}

const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What fetchmail's `proto auto` did at every poll, done once: IMAP first, then POP3.
/// On plain ports the greeting decides (`* OK` / `+OK`); on implicit-TLS ports without
/// an explicit port, a port that accepts a connection does. Returns the protocol and the
/// port that answered.
fn probe(
    host: &str,
    port: Option<u16>,
    tls: crate::config::account::TlsMode,
    timeout: std::time::Duration,
) -> Option<(crate::config::account::Protocol, u16)> {
    use crate::config::account::{Protocol, TlsMode};
    use std::io::Read;
    use std::net::{TcpStream, ToSocketAddrs};
    let connect = |port: u16| -> Option<TcpStream> {
        let addrs = (host, port).to_socket_addrs().ok()?;
        addrs
            .into_iter()
            .find_map(|a| TcpStream::connect_timeout(&a, timeout).ok())
    };
    let greeting = |port: u16| -> Option<Protocol> {
        let mut s = connect(port)?;
        s.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        let g = &buf[..n];
        if g.starts_with(b"* OK") || g.starts_with(b"* PREAUTH") {
            Some(Protocol::Imap)
        } else if g.starts_with(b"+OK") {
            Some(Protocol::Pop3)
        } else {
            None
        }
    };
    match (port, tls) {
        (Some(p), TlsMode::Implicit) => {
            let _ = p;
            None // a TLS port on a custom number: only a handshake would tell
        }
        (Some(p), _) => greeting(p).map(|proto| (proto, p)),
        (None, TlsMode::Implicit) => [(Protocol::Imap, 993), (Protocol::Pop3, 995)]
            .into_iter()
            .find(|(_, p)| connect(*p).is_some()),
        (None, _) => [143, 110]
            .into_iter()
            .find_map(|p| greeting(p).map(|proto| (proto, p))),
    }
}

/// Stores the seen UIDs of every POP3 account; returns what it did, one line each.
fn seed(
    conn: &mut crate::db::Connection,
    import: &Import,
    ids: &crate::config::fetchmailrc::FetchIds,
) -> anyhow::Result<Vec<String>> {
    let plan = crate::config::fetchmailrc::fetchids::plan(import, ids);
    let mut report = Vec::new();
    let now = crate::db::now();
    for (name, uids) in &plan.pop3 {
        let added =
            crate::db::fetchids::seed_seen(conn, name, "", uids.iter().map(String::as_str), now)?;
        let ia = import.accounts.iter().find(|a| &a.account.name == name);
        let key = ia
            .map(|a| format!("{}@{}", a.uid_user, a.uid_host))
            .unwrap_or_default();
        report.push(format!(
            "{name}: {} seen UIDLs ({added} new) from {key}",
            uids.len()
        ));
    }
    for (name, n) in &plan.imap_skipped {
        report.push(format!(
            "{name}: {n} UIDs skipped (IMAP: zolder tracks UIDVALIDITY and UIDs itself)"
        ));
    }
    for (key, n) in &plan.unmatched {
        report.push(format!(
            "{key}: {n} UIDs match no account in the fetchmailrc; not imported"
        ));
    }
    if ids.skipped_lines > 0 {
        report.push(format!(
            "{} lines were not `user@host uid` and were skipped",
            ids.skipped_lines
        ));
    }
    if report.is_empty() {
        report.push("nothing to import (the file is empty)".into());
    }
    Ok(report)
}

/// `p` (relative = to the current directory, as the fetchmailrc parser resolved it)
/// as the config at `base` reads it: relative to `base` when inside it, else absolute.
pub fn relative_to(p: &Path, base: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let base_abs = std::fs::canonicalize(base).unwrap_or_else(|_| cwd.join(base));
    let abs_c = abs
        .parent()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .and_then(|d| abs.file_name().map(|f| d.join(f)))
        .unwrap_or(abs.clone());
    match abs_c.strip_prefix(&base_abs) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
        _ => abs,
    }
}

/// `[[users]]` tables for the local names the accounts deliver to that the config
/// (when there is one) does not know yet, so the output appended to it passes
/// `zolder check`.
pub fn users_section(import: &Import, cfg: Option<&Config>) -> String {
    let mut names: Vec<&str> = Vec::new();
    for ia in &import.accounts {
        for n in &ia.account.deliver_to {
            let known = cfg.is_some_and(|c| c.user(n).is_some() || c.aliases.contains_key(n));
            if !n.contains('@') && !known && !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let mut out = String::new();
    if !names.is_empty() {
        out.push_str(
            "\n# The local users the accounts deliver to (set passwords with `zolder user add`).\n",
        );
    }
    for n in names {
        out.push_str(&format!("[[users]]\nname = \"{n}\"\n\n"));
    }
    out
}

/// The TOML for an import: a header, the file-level warnings, then one `[[accounts]]`
/// table per entry, each preceded by its origin and warnings as comments.
pub fn render(import: &Import, file: &Path, with_passwords: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Accounts imported from {} by `zolder import-fetchmailrc`.\n",
        file.display()
    ));
    if !with_passwords {
        out.push_str(
            "# Passwords are not copied: put each in its password_file (relative paths are in the\n\
             # config's folder), readable by zolder only; there:\n\
             #   (umask 077; mkdir -p secrets; printf '%s\\n' 'PASSWORD' > secrets/ACCOUNT)\n",
        );
    }
    if let Some(p) = &import.postmaster {
        out.push_str(&format!(
            "# `set postmaster`: unmatched multidrop mail goes to {p:?} (the top-level `postmaster` key is the default).\n"
        ));
    }
    for w in &import.warnings {
        out.push_str(&format!("# warning: {w}\n"));
    }
    let mut shown = import.warnings.clone();
    for ia in &import.accounts {
        out.push('\n');
        out.push_str(&render_account(ia, file, with_passwords, &mut shown));
    }
    out
}

fn render_account(
    ia: &ImportedAccount,
    file: &Path,
    with_passwords: bool,
    shown: &mut Vec<crate::config::fetchmailrc::Warning>,
) -> String {
    let mut a: AccountConfig = ia.account.clone();
    let mut s = format!("# from {}:{}\n", file.display(), ia.line);
    for w in &ia.warnings {
        // Warnings that come from `defaults` apply to every entry; say them once.
        if shown.contains(w) {
            continue;
        }
        shown.push(w.clone());
        s.push_str(&format!(
            "# warning: {}:{}: `{}`: {}\n",
            w.file.display(),
            w.line,
            w.keyword,
            w.message
        ));
    }
    if a.keep && a.protocol == crate::config::account::Protocol::Imap && !a.disabled {
        s.push_str(
            "# note: fetchmail picked new IMAP mail by the \\Seen flag and kept no record; zolder\n\
             #   tracks UIDs, so its first poll fetches every message still in the folder once.\n",
        );
    }
    let no_secret = a.password_file.is_none() && a.password_command.is_none();
    if !with_passwords || a.password.is_none() {
        a.password = None;
        if no_secret {
            a.password_file = Some(PathBuf::from(format!("secrets/{}", a.name)));
        }
    }
    let table = match toml::Value::try_from(&a) {
        Ok(toml::Value::Table(t)) => prune(t),
        _ => unreachable!("an AccountConfig serializes to a table"),
    };
    #[derive(serde::Serialize)]
    struct Doc {
        accounts: Vec<toml::Table>,
    }
    s.push_str(
        &toml::to_string(&Doc {
            accounts: vec![table],
        })
        .unwrap_or_default(),
    );
    s
}

/// Drops keys that only repeat the default (false, empty lists and tables, skip 0) so the
/// output reads like a hand-written config.
fn prune(t: toml::Table) -> toml::Table {
    t.into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                toml::Value::Table(inner) => toml::Value::Table(prune(inner)),
                other => other,
            };
            let default = match &v {
                toml::Value::Boolean(b) => !b,
                toml::Value::Array(a) => a.is_empty(),
                toml::Value::Table(t) => t.is_empty(),
                toml::Value::Integer(0) => k == "envelope_skip",
                _ => false,
            };
            (!default).then_some((k, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fetchmailrc::{Options, parse};

    fn import(src: &[u8]) -> Import {
        let opts = Options {
            invoking_user: "root".into(),
            base_dir: PathBuf::from("/etc"),
            hostname: None,
        };
        parse(src, Path::new("/etc/fetchmailrc"), &opts).unwrap()
    }

    /// What the printed TOML reads back as, through the real config loader.
    fn round_trip(i: &Import, with_passwords: bool) -> Vec<AccountConfig> {
        let text = render(i, Path::new("/etc/fetchmailrc"), with_passwords);
        let cfg = Config::from_str_at(&text, Path::new("/z/zolder.toml"), false)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        cfg.accounts
    }

    #[test]
    fn every_example_round_trips_through_the_config_loader() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fetchmailrc");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with('e') || name.starts_with('t')) {
                continue;
            }
            let i = import(&std::fs::read(&path).unwrap());
            for with_passwords in [false, true] {
                let back = round_trip(&i, with_passwords);
                assert_eq!(back.len(), i.accounts.len(), "{name}");
                for (b, ia) in back.iter().zip(&i.accounts) {
                    let mut want = ia.account.clone();
                    // Secrets: a placeholder file, or the password with --with-passwords.
                    if !(with_passwords && want.password.is_some()) {
                        want.password = None;
                        if want.password_file.is_none() && want.password_command.is_none() {
                            want.password_file =
                                Some(PathBuf::from(format!("/z/secrets/{}", want.name)));
                        }
                    }
                    assert_eq!(b, &want, "{name} with_passwords={with_passwords}");
                }
                n += 1;
            }
        }
        assert!(n >= 20, "fixtures found: {n}");
    }

    #[test]
    fn output_hides_passwords_and_carries_warnings() {
        let i = import(b"poll pop.example.net proto pop3 user u password 'hunter2' is bob here mda /bin/mail\n");
        let text = render(&i, Path::new("/etc/fetchmailrc"), false);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("password_file = \"secrets/u@pop.example.net\""),
            "{text}"
        );
        assert!(text.contains("# from /etc/fetchmailrc:1"), "{text}");
        assert!(
            text.contains("# warning: /etc/fetchmailrc:1: `mda`"),
            "{text}"
        );
        let text = render(&i, Path::new("/etc/fetchmailrc"), true);
        assert!(text.contains("password = \"hunter2\""), "{text}");
    }

    #[test]
    fn probe_reads_the_greeting() {
        use crate::config::account::{Protocol, TlsMode};
        use std::io::Write;
        for (greeting, want) in [
            (&b"+OK POP3 ready\r\n"[..], Some(Protocol::Pop3)),
            (
                &b"* OK [CAPABILITY IMAP4rev1] ready\r\n"[..],
                Some(Protocol::Imap),
            ),
            (&b"220 smtp here\r\n"[..], None),
        ] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(greeting).unwrap();
            });
            let got = probe("127.0.0.1", Some(port), TlsMode::Starttls, PROBE_TIMEOUT);
            assert_eq!(got.map(|g| g.0), want);
            t.join().unwrap();
        }
    }

    #[test]
    fn seeds_pop3_seen_state_by_fetchmail_key() {
        let i = import(
            b"poll label via pop.example.net proto pop3 user u password p keep\n\
              poll imap.example.net proto imap user v password p keep\n",
        );
        let ids = crate::config::fetchmailrc::parse_fetchids(
            b"u@pop.example.net UID1\nU@POP.EXAMPLE.NET UID2\nv@imap.example.net 17\nw@elsewhere X\n",
        );
        let mut conn = crate::db::open_memory().unwrap();
        let report = seed(&mut conn, &i, &ids).unwrap();
        assert_eq!(
            crate::db::fetchids::count_seen(&conn, "u@label", "").unwrap(),
            2
        );
        assert!(
            report
                .iter()
                .any(|l| l.starts_with("u@label: 2 seen UIDLs (2 new)")),
            "{report:?}"
        );
        assert!(report.iter().any(|l| l.contains("IMAP")), "{report:?}");
        assert!(
            report.iter().any(|l| l.starts_with("w@elsewhere")),
            "{report:?}"
        );
        // Twice: nothing new.
        let report = seed(&mut conn, &i, &ids).unwrap();
        assert!(report.iter().any(|l| l.contains("(0 new)")), "{report:?}");
    }
}
