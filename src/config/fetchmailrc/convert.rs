//! From fetchmail records to zolder accounts: `defaults` merging, fetchmail's built-in
//! defaults, and the mapping of every keyword (honoured, mapped, or accepted with a
//! warning that names its line). Pure: the caller says who "the invoking user" is and
//! where relative paths resolve.
//!
//! The delivery keywords (`mda`, `smtphost`) and the shell-free splitting of command
//! keywords live in [`delivery`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::ast::*;
use super::parser::SyntaxError;
use super::{Import, ImportedAccount, Options, Warning};
use crate::config::account::{AccountConfig, MultidropConfig, Protocol, TlsMode};

mod delivery;

pub use delivery::split_command;
use delivery::{mda_delivery, smtphost_is_local};

/// Debian's init script runs `fetchmail -d 300` when the file has no `set daemon`.
pub const DEFAULT_DAEMON_SECS: u64 = 300;

struct Ctx<'a> {
    file: &'a Path,
    opts: &'a Options,
    warnings: Vec<Warning>,
}

impl Ctx<'_> {
    fn warn(&mut self, line: usize, keyword: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_path_buf(),
            line,
            keyword: keyword.to_string(),
            message: message.into(),
        });
    }
    fn take(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }
}

/// fetchmail's `prependdir`: relative paths in the rcfile resolve against its folder.
fn prepend_dir(base: &Path, p: &str) -> PathBuf {
    if p.is_empty() || p.starts_with('/') || p == "-" {
        PathBuf::from(p)
    } else {
        base.join(p)
    }
}

/// fetchmail's fatal load-time check that zolder keeps: LMTP to the default SMTP port
/// (no smtphost, or one without a port, or port 25) exits with a configuration error.
fn lmtp_check(rec: &Record) -> Result<(), SyntaxError> {
    let Some((true, line)) = rec.user.lmtp else {
        return Ok(());
    };
    let default = vec!["localhost".to_string()];
    let hunt = rec.user.smtphunt.as_ref().map_or(&default, |x| &x.0);
    for h in hunt {
        let bad = match h.rfind('/') {
            None => true,
            Some(i) => matches!(&h[i + 1..], "25" | "smtp"),
        };
        if bad {
            return Err(SyntaxError {
                line,
                keyword: "lmtp".into(),
                message: format!(
                    "configuration invalid: LMTP cannot use the default SMTP port (smtphost `{h}`); name the LMTP socket or port, e.g. smtphost localhost/24"
                ),
            });
        }
    }
    Ok(())
}

/// Merges `defaults` into each entry and maps every entry to an account. Fails only on
/// the load-time checks fetchmail treats as fatal (and zolder keeps).
pub fn convert(
    file: &Path,
    opts: &Options,
    records: Vec<Record>,
    globals: Globals,
) -> Result<Import, SyntaxError> {
    let mut cx = Ctx {
        file,
        opts,
        warnings: Vec::new(),
    };
    globals_warnings(&mut cx, &globals);
    let daemon = match globals.daemon {
        Some((n, _)) if n > 0 => n as u64,
        Some((n, line)) => {
            cx.warn(
                line,
                "set daemon",
                format!(
                    "`set daemon {n}` means one poll per run in fetchmail; zolder polls every {DEFAULT_DAEMON_SECS} s"
                ),
            );
            DEFAULT_DAEMON_SECS
        }
        None => {
            cx.warn(
                1,
                "set daemon",
                format!(
                    "no `set daemon`: polling every {DEFAULT_DAEMON_SECS} s, as Debian's init script does (`fetchmail -d {DEFAULT_DAEMON_SECS}`)"
                ),
            );
            DEFAULT_DAEMON_SECS
        }
    };
    let global_warnings = cx.take();

    // Any secret written in the file, used or not (`esmtppassword` is ignored but still
    // a password): decides whether the file's permissions matter.
    let inline_secret = records
        .iter()
        .any(|r| r.user.password.is_some() || r.server.esmtppassword.is_some());
    let mut records = records.into_iter().peekable();
    let defaults = match records.peek() {
        Some(r) if r.is_defaults => records.next(),
        _ => None,
    };
    let mut accounts = Vec::new();
    let mut names = HashSet::new();
    let mut pop3_keys: BTreeMap<(String, String), usize> = BTreeMap::new();
    for mut rec in records {
        if let Some(d) = &defaults {
            rec.server.merge_defaults(&d.server);
            rec.user.merge_defaults(&d.user);
        }
        lmtp_check(&rec)?;
        let mut acc = account(&mut cx, &rec, daemon, globals.postmaster.as_ref());
        // Unique, stable names: the second `vmiklos@host` becomes `vmiklos@host-2`.
        let base = acc.account.name.clone();
        let mut n = 1;
        while !names.insert(acc.account.name.to_ascii_lowercase()) {
            n += 1;
            acc.account.name = format!("{base}-{n}");
        }
        if acc.account.protocol == Protocol::Pop3 && !acc.account.disabled {
            let key = (
                acc.uid_user.to_ascii_lowercase(),
                acc.uid_host.to_ascii_lowercase(),
            );
            if let Some(first) = pop3_keys.insert(key, rec.line) {
                cx.warn(
                    rec.line,
                    "poll",
                    format!(
                        "same POP3 server and login as the entry at line {first}: fetchmail mixed their seen lists; zolder keeps one per account, so each sees the whole mailbox"
                    ),
                );
            }
        }
        acc.warnings = cx.take();
        accounts.push(acc);
    }
    Ok(Import {
        inline_secret,
        accounts,
        warnings: global_warnings,
        idfile: globals
            .idfile
            .as_ref()
            .map(|(p, _)| prepend_dir(&opts.base_dir, p)),
        postmaster: globals.postmaster.map(|(p, _)| p),
        daemon: globals.daemon.map(|(n, _)| n),
    })
}

fn globals_warnings(cx: &mut Ctx, g: &Globals) {
    if let Some((_, l)) = &g.logfile {
        cx.warn(
            *l,
            "set logfile",
            "zolder logs to standard error (the journal under systemd); RUST_LOG sets the level",
        );
    }
    if let Some((true, l)) = g.syslog {
        cx.warn(
            l,
            "set syslog",
            "zolder logs to standard error, which systemd sends to the journal and syslog",
        );
    }
    if let Some((_, l)) = &g.pidfile {
        cx.warn(*l, "set pidfile", "ignored: zolder needs no pid file");
    }
    if let Some((true, l)) = g.invisible {
        cx.warn(
            l,
            "set invisible",
            "ignored: zolder always adds its Received: header",
        );
    }
    if let Some((true, l)) = g.showdots {
        cx.warn(
            l,
            "set showdots",
            "ignored: zolder shows a progress bar on a terminal and log lines otherwise",
        );
    }
    if let Some((true, l)) = g.spambounce {
        cx.warn(
            l,
            "set spambounce",
            "ignored: zolder never bounces spam (the sender is usually forged)",
        );
    }
    if let Some((true, l)) = g.bouncemail {
        cx.warn(
            l,
            "set bouncemail",
            "zolder does not bounce fetched mail it cannot place: it goes to the postmaster (fetchmail's `set no bouncemail`)",
        );
    }
    if let Some((false, l)) = g.softbounce {
        cx.warn(
            l,
            "set no softbounce",
            "ignored: zolder leaves mail it could not deliver on the server and retries (fetchmail's softbounce)",
        );
    }
    if let Some((p, l)) = &g.properties
        && !p.is_empty()
    {
        cx.warn(*l, "set properties", "ignored (fetchmail ignores it too)");
    }
}

fn looks_like_host(s: &str) -> bool {
    !s.is_empty()
        && s.contains('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// Account names end up in logs, the database and `secrets/<name>` paths.
fn sanitize_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn account(
    cx: &mut Ctx,
    rec: &Record,
    daemon: u64,
    postmaster: Option<&(String, usize)>,
) -> ImportedAccount {
    let s = &rec.server;
    let u = &rec.user;
    let line = rec.line;
    let invoking = cx.opts.invoking_user.clone();

    // Who and where.
    let remote = match &u.remotename {
        Some((r, _)) => r.clone(),
        None => {
            cx.warn(
                rec.user_line,
                "user",
                format!("no `user`: logging in as `{invoking}`, as fetchmail does for the user running it"),
            );
            invoking.clone()
        }
    };
    let host = s
        .via
        .as_ref()
        .map(|(v, _)| v.clone())
        .unwrap_or_else(|| rec.pollname.clone());
    if !looks_like_host(&host) && host != "localhost" {
        cx.warn(
            line,
            "poll",
            format!("`{host}` does not look like a host name; use `via` to name the real server"),
        );
    }
    let name = sanitize_name(&if remote.contains('@') {
        remote.clone()
    } else {
        format!("{remote}@{}", rec.pollname)
    });
    let mut disabled = rec.skip;

    // Port.
    let port = s.service.as_ref().and_then(|(svc, l)| {
        let p = match svc.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => match svc.as_str() {
                "pop3" | "pop-3" => Some(110),
                "pop3s" => Some(995),
                "imap" | "imap2" | "imap4" => Some(143),
                "imaps" => Some(993),
                "kpop" => Some(1109),
                _ => None,
            },
        };
        match p {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            _ => {
                cx.warn(
                    *l,
                    "service",
                    format!("`{svc}` is not a port zolder knows; using the protocol's default"),
                );
                None
            }
        }
    });

    // Protocol.
    let mut auth: Option<String> = None;
    let (proto_kind, proto_line) = s.protocol.unwrap_or((ProtoKind::Auto, line));
    let protocol = match proto_kind {
        ProtoKind::Pop3 => Protocol::Pop3,
        ProtoKind::Imap => Protocol::Imap,
        ProtoKind::Apop => {
            auth = Some("apop".into());
            Protocol::Pop3
        }
        ProtoKind::Auto => {
            let (p, why) = match port {
                Some(110) | Some(995) => (Protocol::Pop3, "its port is a POP3 port"),
                Some(143) | Some(993) => (Protocol::Imap, "its port is an IMAP port"),
                _ if u.folders.is_some() => (Protocol::Imap, "it names folders"),
                _ => (Protocol::Imap, "fetchmail tries IMAP first"),
            };
            cx.warn(
                proto_line,
                "proto auto",
                format!(
                    "zolder cannot ask the server from here: chose {} because {why} (`zolder import-fetchmailrc --probe` asks it)",
                    if p == Protocol::Pop3 { "pop3" } else { "imap" }
                ),
            );
            p
        }
        ProtoKind::Rpop | ProtoKind::Sdps | ProtoKind::Kpop => {
            cx.warn(
                proto_line,
                "proto",
                "obsolete POP3 variant: zolder speaks plain POP3 (USER/PASS, APOP, SASL) to this server",
            );
            Protocol::Pop3
        }
        ProtoKind::Pop2 => {
            disabled = true;
            cx.warn(
                proto_line,
                "proto pop2",
                "zolder does not speak POP2: account disabled",
            );
            Protocol::Pop3
        }
        ProtoKind::Etrn | ProtoKind::Odmr => {
            disabled = true;
            cx.warn(
                proto_line,
                "proto",
                "ETRN/ODMR ask the ISP to push mail to us over SMTP, a different model: zolder only polls POP3/IMAP; account disabled",
            );
            Protocol::Pop3
        }
    };

    // TLS.
    let ssl = matches!(u.ssl, Some((true, _)));
    let implicit_port = matches!(port, Some(993) | Some(995));
    let plain_port = matches!(port, Some(110) | Some(143));
    let mut tls_min_version = None;
    let mut tls = if ssl {
        if plain_port {
            cx.warn(
                u.ssl.map_or(line, |x| x.1),
                "ssl",
                format!("`ssl` on port {}: that is usually the STARTTLS port (kept implicit TLS as written)", port.unwrap_or(0)),
            );
        }
        TlsMode::Implicit
    } else {
        TlsMode::Starttls
    };
    if let Some((mode, l)) = &u.sslmode {
        tls = match mode.to_ascii_lowercase().as_str() {
            "wrapped" | "ssl" | "tls" => TlsMode::Implicit,
            "none" => TlsMode::None,
            m if m.starts_with("starttls") => TlsMode::Starttls,
            _ => {
                cx.warn(
                    *l,
                    "sslmode",
                    format!("unknown mode `{mode}`; kept {tls:?}"),
                );
                tls
            }
        };
    }
    if let Some((proto, l)) = &u.sslproto {
        let p = proto.to_ascii_lowercase();
        match p.as_str() {
            "" => {
                if !ssl {
                    tls = TlsMode::None;
                    cx.warn(
                        *l,
                        "sslproto",
                        "`sslproto ''`: no TLS at all, the password crosses the line in clear text",
                    );
                }
            }
            "auto" | "tls1+" | "tls1.0+" => {}
            "tls1.1+" => tls_min_version = Some("1.1".to_string()),
            "tls1.2+" => tls_min_version = Some("1.2".to_string()),
            "tls1.3+" => tls_min_version = Some("1.3".to_string()),
            "tls1" | "tls1.0" | "tls1.1" | "tls1.2" | "tls1.3" => {
                let v = p.trim_start_matches("tls");
                let v = if v == "1" { "1.0" } else { v };
                tls_min_version = Some(v.to_string());
                cx.warn(
                    *l,
                    "sslproto",
                    format!("`{proto}` allows exactly that version in fetchmail; zolder takes it as the minimum ({v} or newer)"),
                );
            }
            "ssl3" | "ssl3+" | "ssl23" => cx.warn(
                *l,
                "sslproto",
                "SSLv3 is not supported; the TLS library's minimum applies",
            ),
            _ => cx.warn(
                *l,
                "sslproto",
                format!("unknown `{proto}`: treated as `auto`, as fetchmail does"),
            ),
        }
        if !ssl && tls == TlsMode::Starttls && u.sslmode.is_none() && !p.is_empty() {
            // `sslproto tls1.2+` without `ssl`: STARTTLS, required.
        }
    } else if !ssl && u.sslmode.is_none() {
        if implicit_port {
            tls = TlsMode::Implicit;
            cx.warn(
                s.service.as_ref().map_or(line, |x| x.1),
                "port",
                format!("port {} without `ssl`: fetchmail would talk plain text to a TLS port; zolder uses implicit TLS", port.unwrap_or(0)),
            );
        } else if !disabled {
            cx.warn(
                line,
                "ssl",
                "no `ssl`/`sslproto`: fetchmail uses STARTTLS when offered and plain text otherwise; zolder requires STARTTLS (write tls = \"none\" if this ISP has no TLS)",
            );
        }
    }
    let fingerprint = u.sslfingerprint.as_ref().map(|(fp, l)| {
        let hex: String = fp.chars().filter(|c| *c != ':').collect();
        if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            cx.warn(
                *l,
                "sslfingerprint",
                "not an MD5 fingerprint (16 hex pairs, as fetchmail prints them); kept as written",
            );
            fp.clone()
        } else {
            fp.to_ascii_uppercase()
        }
    });
    if let Some((false, l)) = u.sslcertck
        && fingerprint.is_none()
    {
        cx.warn(
                l,
                "no sslcertck",
                "zolder keeps checking the server certificate; if it is self-signed, pin it with tls_fingerprint (or give its CA as ca_file)",
            );
    }
    let ca_file = u
        .sslcertfile
        .as_ref()
        .map(|(p, _)| prepend_dir(&cx.opts.base_dir, p));
    if let Some((p, l)) = &u.sslcertpath {
        let system = [
            "/etc/ssl/certs",
            "/etc/ssl/certs/",
            "/usr/share/ca-certificates",
            "/etc/pki/tls/certs",
            "/etc/pki/ca-trust/extracted/pem",
        ];
        if !system.contains(&p.as_str()) {
            cx.warn(
                *l,
                "sslcertpath",
                format!("zolder takes one CA file (ca_file), not a folder: pick the file in {p}"),
            );
        }
    }
    if let Some((_, l)) = &u.sslcommonname {
        cx.warn(
            *l,
            "sslcommonname",
            "ignored: zolder checks the certificate against the host name (use via, or pin with tls_fingerprint)",
        );
    }
    for (kw, v) in [("sslcert", &u.sslcert), ("sslkey", &u.sslkey)] {
        if let Some((_, l)) = v {
            cx.warn(
                *l,
                kw,
                "ignored: zolder does not log in with a client certificate",
            );
        }
    }

    // Credentials.
    let mut password = u.password.as_ref().map(|(p, _)| p.clone());
    let password_file = u
        .passwordfile
        .as_ref()
        .map(|(p, _)| prepend_dir(&cx.opts.base_dir, p));
    let mut password_command = u.passwordeval.as_ref().map(|(c, l)| {
        let (argv, meta) = split_command(c);
        if let Some(m) = meta {
            cx.warn(
                *l,
                "passwordeval",
                format!("`{m}` is shell syntax: zolder runs the command without a shell (wrap it as [\"/bin/sh\", \"-c\", …] if it needs one)"),
            );
        }
        argv
    });
    let given = [
        password.is_some(),
        password_file.is_some(),
        password_command.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given > 1 {
        cx.warn(
            rec.user_line,
            "password",
            "more than one of password, passwordfile, passwordeval: zolder uses passwordfile, then passwordeval",
        );
        if password_file.is_some() {
            password = None;
            password_command = None;
        } else {
            password = None;
        }
    }
    if let Some((_, l)) = u.passwordfd {
        cx.warn(
            l,
            "passwordfd",
            "ignored: zolder reads no password from a file descriptor; use password_file",
        );
    }
    if let Some((kw, l)) = &u.pwmd {
        cx.warn(
            *l,
            "pwmd",
            format!("`{kw}`: pwmd is not supported; use password_file or password_command"),
        );
    }
    if password.is_none() && password_file.is_none() && password_command.is_none() && !disabled {
        cx.warn(
            rec.user_line,
            "password",
            "no password: fetchmail would look in ~/.netrc or ask; give zolder a password_file",
        );
    }
    if let Some((a, l)) = s.auth {
        match a {
            AuthKind::Any | AuthKind::Password => {}
            AuthKind::OAuthBearer | AuthKind::XOAuth2 => {
                auth = Some(
                    if a == AuthKind::OAuthBearer {
                        "oauthbearer"
                    } else {
                        "xoauth2"
                    }
                    .into(),
                );
                cx.warn(
                    l,
                    "auth",
                    "the password file holds an access token refreshed by another program (fetchmail-oauth2.py); zolder refreshes tokens itself and logs in with OAuth only through an [accounts.oauth2] table (token_url, client_id, refresh_token_file): add one in place of the password file",
                );
            }
            AuthKind::Apop => auth = Some("apop".into()),
            AuthKind::Ssh => {
                if s.plugin.is_none() {
                    cx.warn(
                        l,
                        "auth ssh",
                        "`auth ssh` relies on a pre-authenticated tunnel (`plugin`); zolder logs in normally",
                    );
                }
            }
            AuthKind::CramMd5 | AuthKind::External => cx.warn(
                l,
                "auth",
                "not supported: zolder uses USER/PASS, APOP, PLAIN or OAuth2 (over TLS)",
            ),
            _ => cx.warn(
                l,
                "auth",
                "Kerberos, GSSAPI, OTP, NTLM and MSN are not supported: zolder uses USER/PASS, APOP, PLAIN or OAuth2 (over TLS)",
            ),
        }
    }
    if password.is_some() && auth.is_none() {
        let h = host.to_ascii_lowercase();
        if [
            "gmail.com",
            "googlemail.com",
            "office365.com",
            "outlook.com",
            "hotmail.com",
            "live.com",
        ]
        .iter()
        .any(|d| h == *d || h.ends_with(&format!(".{d}")))
        {
            cx.warn(
                rec.user_line,
                "password",
                "Google and Microsoft refuse plain passwords: use an app password (Google) or OAuth2 (Microsoft: [accounts.oauth2])",
            );
        }
    }

    // Local delivery: singledrop or multidrop.
    let mut localnames: Vec<Mapping> = u
        .localnames
        .as_ref()
        .map(|x| x.0.clone())
        .unwrap_or_default();
    let wildcard = matches!(u.wildcard, Some((true, _)));
    if localnames.is_empty() {
        if !wildcard {
            cx.warn(
                rec.user_line,
                "is",
                format!("no local name: delivering to `{invoking}`, as fetchmail does for the user running it"),
            );
        }
        localnames.push(Mapping {
            remote: invoking.clone(),
            local: None,
        });
    }
    let multidrop_mode = localnames.len() > 1 || wildcard;
    let mut deliver_to = Vec::new();
    let mut multidrop = None;
    if multidrop_mode {
        let mut md = MultidropConfig::default();
        for m in &localnames {
            md.map.insert(
                m.remote.clone(),
                m.local.clone().unwrap_or_else(|| m.remote.clone()),
            );
        }
        if wildcard {
            md.map.insert("*".into(), "*".into());
        }
        match &s.envelope {
            Some((Envelope::Header { skip, name }, l)) => {
                if name.eq_ignore_ascii_case("received") {
                    cx.warn(
                        *l,
                        "envelope",
                        "`Received` is the least reliable envelope header (its `for` clause is often missing or hidden); ask the ISP which header carries the recipient (X-Original-To, Delivered-To)",
                    );
                }
                if *skip < 0 {
                    cx.warn(*l, "envelope", "negative skip count: taken as 0");
                }
                md.envelope = Some(name.clone());
                md.envelope_skip = (*skip).max(0) as usize;
            }
            Some((Envelope::Disabled, l)) => cx.warn(
                *l,
                "no envelope",
                "zolder always looks for an envelope header (X-Original-To, Delivered-To, Envelope-To, X-Envelope-To, Received); it does not guess from To/Cc",
            ),
            None => cx.warn(
                line,
                "envelope",
                "multidrop without `envelope` (fetchmail warns too): zolder tries X-Original-To, Delivered-To, Envelope-To, X-Envelope-To, then Received; name the ISP's header with `envelope`",
            ),
        }
        if let Some((d, _)) = &s.localdomains {
            md.local_domains = d.clone();
        }
        if let Some((a, _)) = &s.aka {
            md.aka = a.clone();
        }
        if s.via.is_some() && looks_like_host(&rec.pollname) && !md.aka.contains(&rec.pollname) {
            // fetchmail matches the poll name as well as `via`.
            md.aka.push(rec.pollname.clone());
        }
        md.qvirtual = s.qvirtual.as_ref().map(|(q, _)| q.clone());
        md.fallback = postmaster.map(|(p, _)| p.clone());
        if !matches!(s.dns, Some((false, _))) {
            cx.warn(
                s.dns.map_or(line, |x| x.1),
                "dns",
                "zolder does no DNS lookups to recognise the ISP's names in multidrop: list them with aka or localdomains (fetchmail: `no dns`)",
            );
        }
        if let Some((true, l)) = s.checkalias {
            cx.warn(
                l,
                "checkalias",
                "ignored: zolder compares names, not IP addresses",
            );
        }
        multidrop = Some(md);
    } else {
        let m = &localnames[0];
        deliver_to.push(m.local.clone().unwrap_or_else(|| m.remote.clone()));
        for (kw, set) in [
            ("envelope", s.envelope.as_ref().map(|x| x.1)),
            ("localdomains", s.localdomains.as_ref().map(|x| x.1)),
            ("aka", s.aka.as_ref().map(|x| x.1)),
            ("qvirtual", s.qvirtual.as_ref().map(|x| x.1)),
        ] {
            if let Some(l) = set {
                cx.warn(
                    l,
                    kw,
                    "ignored: only one local name, so no multidrop (fetchmail ignores it too)",
                );
            }
        }
    }

    // Where fetchmail handed the mail: an MDA, an SMTP/LMTP listener or a BSMTP file.
    if let Some((mda, l)) = &u.mda {
        if let Some(fixed) = mda_delivery(cx, mda, *l) {
            if multidrop_mode {
                cx.warn(
                    *l,
                    "mda",
                    format!("the mda delivers everything to `{fixed}`; zolder splits the multidrop mailbox by envelope instead"),
                );
            } else if deliver_to != [fixed.clone()] {
                cx.warn(
                    *l,
                    "mda",
                    format!("the mda names `{fixed}`: delivering to `{fixed}`"),
                );
                deliver_to = vec![fixed];
            }
        }
        if let Some((_, l2)) = &u.smtphunt {
            cx.warn(
                *l2,
                "smtphost",
                "ignored: `mda` takes precedence (as in fetchmail)",
            );
        }
    } else if let Some((hosts, l)) = &u.smtphunt {
        for h in hosts {
            if !smtphost_is_local(h, cx.opts.hostname.as_deref()) {
                cx.warn(
                    *l,
                    "smtphost",
                    format!("`{h}`: zolder delivers to local users itself instead of forwarding to another mail server"),
                );
            }
        }
    }
    if let Some((_, l)) = &u.bsmtp {
        cx.warn(
            *l,
            "bsmtp",
            "ignored: zolder delivers locally instead of writing batched SMTP",
        );
    }
    if let Some((_, l)) = &u.smtpaddress {
        cx.warn(
            *l,
            "smtpaddress",
            "ignored: zolder delivers to local user names, no SMTP envelope is built",
        );
    }
    if let Some((name, l)) = &u.smtpname {
        // `smtpname` is the whole RCPT TO: in a single-drop entry, its local part is
        // the recipient.
        let local = name.split('@').next().unwrap_or("").to_string();
        if !multidrop_mode && !local.is_empty() && u.mda.is_none() {
            if deliver_to != [local.clone()] {
                cx.warn(
                    *l,
                    "smtpname",
                    format!("delivering to `{local}`, the local part of the smtpname"),
                );
            }
            deliver_to = vec![local];
        } else {
            cx.warn(
                *l,
                "smtpname",
                "ignored: zolder delivers to local user names, no SMTP envelope is built",
            );
        }
    }
    if let Some((_, l)) = &u.fetchdomains {
        cx.warn(*l, "fetchdomains", "ignored: only meaningful for ETRN/ODMR");
    }
    if let Some((codes, l)) = &u.antispam
        && codes.as_slice() != [-1]
    {
        cx.warn(
                *l,
                "antispam",
                "ignored: zolder's spam scanning decides (see [scan]); no message is discarded on an SMTP code",
            );
    }

    // What to fetch and what to leave.
    let keep = matches!(u.keep, Some((true, _)));
    let fetchall = matches!(u.fetchall, Some((true, _)));
    if keep && fetchall {
        cx.warn(
            u.fetchall.map_or(line, |x| x.1),
            "fetchall",
            "`fetchall` with `keep` fetches every kept message again on every poll in fetchmail; zolder's delivery keys drop the copies, but it still downloads them",
        );
    }
    if let Some((true, l)) = u.flush {
        cx.warn(
            l,
            "flush",
            "NOT imported: `flush` deletes seen messages that may never have been fetched (mail loss); zolder deletes only what it has stored",
        );
    }
    if let Some((true, l)) = u.limitflush {
        cx.warn(
            l,
            "limitflush",
            "NOT imported: oversized messages stay on the server",
        );
    }
    let mut folders = u.folders.as_ref().map(|x| x.0.clone()).unwrap_or_default();
    if protocol == Protocol::Pop3 && !folders.is_empty() {
        cx.warn(
            u.folders.as_ref().map_or(line, |x| x.1),
            "folder",
            "ignored: POP3 has no folders",
        );
        folders.clear();
    }
    let mut idle = matches!(u.idle, Some((true, _)));
    if let Some((true, l)) = u.forceidle {
        idle = true;
        cx.warn(l, "forceidle", "taken as `idle`");
    }
    if idle && protocol == Protocol::Pop3 {
        cx.warn(
            u.idle.map_or(line, |x| x.1),
            "idle",
            "ignored: IDLE needs IMAP",
        );
        idle = false;
    }
    if let Some((_, l)) = u.idletimeout {
        cx.warn(
            l,
            "idletimeout",
            "ignored: zolder re-issues IDLE on its own schedule",
        );
    }
    let limit = u.limit.and_then(|(n, _)| (n > 0).then_some(n as u64));
    if let Some((_, l)) = u.warnings {
        cx.warn(
            l,
            "warnings",
            "ignored: zolder logs skipped oversized messages instead of mailing notices",
        );
    }
    let fetchlimit = u
        .fetchlimit
        .and_then(|(n, _)| (n > 0).then_some(n.min(u32::MAX as i64) as u32));
    for (kw, v) in [
        ("fetchsizelimit", u.fetchsizelimit),
        ("fastuidl", u.fastuidl),
        ("batchlimit", u.batchlimit),
    ] {
        if let Some((_, l)) = v {
            cx.warn(l, kw, "ignored: zolder batches on its own");
        }
    }
    if let Some((_, l)) = u.expunge {
        cx.warn(
            l,
            "expunge",
            "ignored: zolder commits every message as it is stored and expunges in batches itself",
        );
    }
    if let Some((false, l)) = s.uidl {
        cx.warn(l, "no uidl", "ignored: zolder always tracks UIDLs");
    }

    // Schedule.
    let interval = match s.interval {
        Some((n, _)) if n > 1 => daemon.saturating_mul(n as u64),
        Some((n, l)) if n < 1 => {
            cx.warn(l, "interval", "not a positive number: ignored");
            daemon
        }
        _ => daemon,
    };
    let timeout = s.timeout.and_then(|(n, _)| (n > 0).then_some(n as u64));

    // Hooks.
    let mut hook = |v: &At<String>, kw: &str| -> Option<Vec<String>> {
        v.as_ref().map(|(c, l)| {
            let (argv, meta) = split_command(c);
            if let Some(m) = meta {
                cx.warn(
                    *l,
                    kw,
                    format!("`{m}` is shell syntax: zolder runs the command without a shell (wrap it as [\"/bin/sh\", \"-c\", …] if it needs one)"),
                );
            }
            argv
        })
    };
    let preconnect = hook(&u.preconnect, "preconnect");
    let postconnect = hook(&u.postconnect, "postconnect");

    // Server options zolder has no use for.
    if let Some((_, l)) = &s.plugin {
        disabled = true;
        cx.warn(
            *l,
            "plugin",
            "zolder connects directly and cannot tunnel through a command: account disabled until you check a direct connection is acceptable",
        );
    }
    if let Some((_, l)) = &s.plugout {
        cx.warn(*l, "plugout", "ignored: zolder delivers locally");
    }
    if let Some((_, l)) = &s.interface {
        cx.warn(
            *l,
            "interface",
            "not supported: run `zolder fetch` from /etc/ppp/ip-up.d (or a preconnect check) to poll only when the link is up",
        );
    }
    if let Some((_, l)) = &s.monitor {
        cx.warn(
            *l,
            "monitor",
            "ignored: zolder does not watch link activity",
        );
    }
    if let Some((_, l)) = &s.principal {
        cx.warn(*l, "principal", "ignored: no Kerberos");
    }
    for (kw, v) in [
        ("esmtpname", &s.esmtpname),
        ("esmtppassword", &s.esmtppassword),
    ] {
        if let Some((_, l)) = v {
            cx.warn(
                *l,
                kw,
                "ignored: zolder delivers locally, no SMTP AUTH needed",
            );
        }
    }
    if let Some((true, l)) = s.tracepolls {
        cx.warn(
            l,
            "tracepolls",
            "ignored: zolder's Received: header always names the account",
        );
    }
    if let Some((false, l)) = s.badheader_accept {
        cx.warn(
            l,
            "bad-header reject",
            "zolder delivers messages with malformed headers verbatim instead of leaving them on the server",
        );
    }
    for (kw, v) in [
        ("rewrite", u.rewrite),
        ("dropstatus", u.dropstatus),
        ("dropdelivered", u.dropdelivered),
        ("mimedecode", u.mimedecode),
        ("stripcr", u.stripcr),
        ("forcecr", u.forcecr),
        ("pass8bits", u.pass8bits),
    ] {
        if let Some((true, l)) = v {
            cx.warn(l, kw, "ignored: zolder stores messages exactly as fetched");
        }
    }
    if let Some((p, l)) = &u.properties
        && !p.is_empty()
    {
        cx.warn(*l, "properties", "ignored (fetchmail ignores it too)");
    }
    if let Some((v, l)) = &u.retrieve_error {
        cx.warn(
            *l,
            "retrieve-error",
            format!("`{v}` ignored: zolder leaves a message it could not fetch on the server and retries"),
        );
    }

    let account = AccountConfig {
        name,
        protocol,
        host: host.clone(),
        port,
        tls,
        username: remote.clone(),
        password,
        password_file,
        password_command,
        oauth2: None,
        auth,
        deliver_to,
        multidrop,
        keep,
        fetchall,
        folders,
        limit,
        fetchlimit,
        delete_after_days: None,
        idle,
        schedule: None,
        interval: Some(interval),
        preconnect,
        postconnect,
        tls_fingerprint: fingerprint,
        ca_file,
        tls_min_version,
        timeout,
        disabled,
        source: None,
    };
    ImportedAccount {
        account,
        line,
        pollname: rec.pollname.clone(),
        protocol_guessed: proto_kind == ProtoKind::Auto,
        uid_user: remote,
        uid_host: host,
        warnings: Vec::new(),
    }
}
