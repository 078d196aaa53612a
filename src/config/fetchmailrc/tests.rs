//! The importer against every example, tricky string and negative case of the research
//! (`/work/shared/reference/fetchmail.md` §2), kept as files in
//! `tests/fixtures/fetchmailrc/`. Expected values are what fetchmail 6.4.37's
//! `--configdump` printed for the same files (`tests/interop_fetchmailrc.rs` re-checks
//! that against the installed fetchmail when there is one).

use std::path::{Path, PathBuf};

use super::*;
use crate::config::account::{Protocol, TlsMode};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fetchmailrc/",
            $name
        ))
    };
}

fn opts() -> Options {
    Options {
        invoking_user: "root".into(),
        base_dir: PathBuf::from("/etc"),
        hostname: Some("zolder.thuis".into()),
    }
}

fn import(src: &[u8]) -> Import {
    match parse(src, Path::new("rc"), &opts()) {
        Ok(i) => i,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn fail(src: &[u8]) -> ParseError {
    match parse(src, Path::new("rc"), &opts()) {
        Ok(i) => panic!(
            "expected an error, got {:#?}",
            i.accounts.iter().map(|a| &a.account).collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

fn has_warning(i: &Import, keyword: &str, needle: &str) -> bool {
    i.all_warnings()
        .iter()
        .any(|w| w.keyword == keyword && w.message.contains(needle))
}

fn password_of(src: &[u8]) -> String {
    let i = import(src);
    assert_eq!(i.accounts.len(), 1);
    i.accounts[0].account.password.clone().expect("a password")
}

#[test]
fn e01_manpage_noise_words_and_quoted_password() {
    let i = import(fixture!("e01-manpage.rc"));
    assert_eq!(i.accounts.len(), 2);
    let a = &i.accounts[0].account;
    assert_eq!(a.name, "jsmith@pop.provider.net");
    assert_eq!(a.protocol, Protocol::Pop3);
    assert_eq!(a.username, "jsmith");
    assert_eq!(a.password.as_deref(), Some("secret1"));
    assert_eq!(a.deliver_to, ["jsmith"]);
    let b = &i.accounts[1].account;
    assert_eq!(b.host, "mail.provider.net");
    assert_eq!(b.username, "jsmith");
    assert_eq!(b.password.as_deref(), Some("4u but u cannot krak this"));
    assert_eq!(b.deliver_to, ["jws"]);
    assert_eq!(i.accounts[1].line, 3);
    // `/bin/mail` is no local delivery agent zolder knows: said, at the mda's line.
    let w = i.accounts[1]
        .warnings
        .iter()
        .find(|w| w.keyword == "mda")
        .expect("mda warning");
    assert_eq!(w.line, 5);
    assert!(w.message.contains("/bin/mail"), "{w}");
}

#[test]
fn e02_defaults_carry_the_user_and_skip_is_disabled() {
    let i = import(fixture!("e02-defaults-user.rc"));
    assert_eq!(i.daemon, Some(300));
    assert_eq!(i.accounts.len(), 2);
    for ia in &i.accounts {
        let a = &ia.account;
        assert_eq!(a.username, "esr");
        assert!(a.fetchall);
        assert_eq!(a.interval, Some(300));
        let md = a.multidrop.as_ref().expect("three local names = multidrop");
        assert_eq!(
            md.map.keys().cloned().collect::<Vec<_>>(),
            ["esr", "fetchmail-friends", "magic-numbers"]
        );
        assert!(a.deliver_to.is_empty());
    }
    let a = &i.accounts[0].account;
    assert_eq!(a.protocol, Protocol::Imap);
    assert_eq!(a.password.as_deref(), Some("my_remote_password"));
    assert!(!a.disabled);
    let md = a.multidrop.as_ref().unwrap();
    assert_eq!(
        md.aka,
        [
            "snark.thyrsus.com",
            "thyrsus.com",
            "locke.example.org",
            "example.org"
        ]
    );
    let b = &i.accounts[1].account;
    assert!(b.disabled, "skip entry");
    assert_eq!(b.host, "pop3.netaxs.com");
    assert_eq!(b.password.as_deref(), Some("my_netaxs.password"));
    // proto auto (not given): said, and a choice made.
    assert!(has_warning(&i, "proto auto", "--probe"));
    // fetchmail's own warning: multidrop without envelope.
    assert!(has_warning(&i, "envelope", "multidrop without `envelope`"));
}

#[test]
fn e02b_defaults_protocol_and_user_are_overridable() {
    let i = import(fixture!("e02b-defaults-variant.rc"));
    assert_eq!(i.accounts.len(), 2);
    assert_eq!(i.accounts[0].account.username, "jsmith");
    assert_eq!(i.accounts[0].account.password.as_deref(), Some("secret1"));
    assert_eq!(i.accounts[0].account.protocol, Protocol::Pop3);
    assert_eq!(i.accounts[1].account.username, "jjsmith");
    assert_eq!(i.accounts[1].account.password.as_deref(), Some("secret2"));
    assert_eq!(i.accounts[1].account.protocol, Protocol::Pop3);
}

#[test]
fn e03_several_users_share_server_options_and_mappings() {
    let i = import(fixture!("e03-several-users.rc"));
    assert_eq!(i.accounts.len(), 3);
    let (a, b, c) = (
        &i.accounts[0].account,
        &i.accounts[1].account,
        &i.accounts[2].account,
    );
    assert_eq!(
        (a.username.as_str(), a.port, a.keep),
        ("jsmith", Some(3111), false)
    );
    assert_eq!(a.deliver_to, ["smith"]);
    assert_eq!(
        (b.username.as_str(), b.port, b.keep),
        ("jones", Some(3111), true)
    );
    assert_eq!(b.deliver_to, ["jjones"]);
    assert_eq!(b.password.as_deref(), Some("secret2"));
    // Second entry: protocol not inherited from the first (auto → imap, said).
    assert_eq!(c.port, None);
    assert_eq!(c.protocol, Protocol::Imap);
    assert_eq!(c.username, "maildrop");
    let md = c.multidrop.as_ref().expect("multidrop");
    assert_eq!(md.map.get("golux").map(String::as_str), Some("golux"));
    assert_eq!(md.map.get("hurkle").map(String::as_str), Some("happy"));
    assert_eq!(md.map.get("snark").map(String::as_str), Some("snark"));
    assert_eq!(md.map.len(), 3);
}

#[test]
fn e04_multidrop_localdomains_envelope_skip_qvirtual_via() {
    let i = import(fixture!("e04-multidrop.rc"));
    assert_eq!(i.postmaster.as_deref(), Some("postmaster"));
    let a = &i.accounts[0].account;
    let md = a.multidrop.as_ref().unwrap();
    assert_eq!(md.local_domains, ["loonytoons.org", "toons.org"]);
    assert_eq!(md.envelope.as_deref(), Some("X-Envelope-To"));
    assert_eq!(md.envelope_skip, 0);
    // `to * here` also adds the invoking user, as fetchmail's `['root', '*']`.
    assert_eq!(md.map.get("*").map(String::as_str), Some("*"));
    assert_eq!(md.map.get("root").map(String::as_str), Some("root"));
    assert_eq!(md.fallback.as_deref(), Some("postmaster"));

    let b = &i.accounts[1].account;
    assert_eq!(b.host, "pop3.isp.example");
    assert_eq!(b.name, "home-drop@mx.isp.example");
    assert_eq!(b.protocol, Protocol::Pop3);
    assert_eq!(b.password.as_deref(), Some("s3cr3t"));
    let md = b.multidrop.as_ref().unwrap();
    assert_eq!(md.envelope.as_deref(), Some("Delivered-To"));
    assert_eq!(md.envelope_skip, 1);
    assert_eq!(md.qvirtual.as_deref(), Some("mbox-userstr-"));
    // The poll name is one of the server's names too.
    assert_eq!(md.aka, ["isp.example", "mx.isp.example"]);
    assert_eq!(
        (
            i.accounts[1].uid_user.as_str(),
            i.accounts[1].uid_host.as_str()
        ),
        ("home-drop", "pop3.isp.example")
    );
    // localhost/2525 is local delivery: no smtphost warning; smtpaddress is said.
    assert!(
        !i.accounts[1]
            .warnings
            .iter()
            .any(|w| w.keyword == "smtphost")
    );
    assert!(
        i.accounts[1]
            .warnings
            .iter()
            .any(|w| w.keyword == "smtpaddress" && w.line == 10)
    );
    // `no dns` given on entry 2, not on entry 1.
    assert!(i.accounts[0].warnings.iter().any(|w| w.keyword == "dns"));
    assert!(!i.accounts[1].warnings.iter().any(|w| w.keyword == "dns"));
}

#[test]
fn e05_fetchmailconf_file() {
    let i = import(fixture!("e05-fetchmailconf.rc"));
    assert_eq!(i.accounts.len(), 1);
    let a = &i.accounts[0].account;
    assert_eq!(a.protocol, Protocol::Imap);
    assert_eq!(a.tls, TlsMode::Implicit);
    assert!(a.keep);
    assert_eq!(a.username, "jan");
    assert_eq!(a.password.as_deref(), Some("PASSWORD"));
    assert_eq!(a.deliver_to, ["jasan"]);
    // procmail -d %T: delivered by zolder; the user is told procmail rules no longer run.
    assert!(has_warning(&i, "mda", "procmail"));
    assert!(has_warning(&i, "set bouncemail", "postmaster"));
    assert!(
        !has_warning(&i, "set properties", ""),
        "empty properties are fine"
    );
}

#[test]
fn e06_trailing_mda_belongs_to_the_last_user_only() {
    let i = import(fixture!("e06-trailing-mda.rc"));
    assert_eq!(i.accounts.len(), 2);
    let (a, b) = (&i.accounts[0], &i.accounts[1]);
    assert_eq!(a.account.username, "user@example.com");
    assert_eq!(a.account.name, "user@example.com");
    assert!(a.account.keep && a.account.fetchall);
    assert_eq!(a.account.tls, TlsMode::Starttls);
    assert!(!a.warnings.iter().any(|w| w.keyword == "mda"));
    assert_eq!(b.account.username, "someone@gmail.com");
    assert_eq!(b.account.deliver_to, ["jqian"]);
    assert_eq!(b.account.tls, TlsMode::Implicit);
    let mda = b
        .warnings
        .iter()
        .find(|w| w.keyword == "mda")
        .expect("mda on the last user");
    assert_eq!(mda.line, 14);
    // set daemon after the polls still applies; logfile is said.
    assert_eq!(a.account.interval, Some(300));
    assert!(has_warning(&i, "set logfile", "standard error"));
    // /etc/ssl/certs is the system store: nothing to say.
    assert!(!has_warning(&i, "sslcertpath", ""));
    // Gmail with a plain password: the user is told about app passwords.
    assert!(
        b.warnings
            .iter()
            .any(|w| w.keyword == "password" && w.message.contains("app password"))
    );
}

#[test]
fn e07_semicolon_does_not_end_the_user() {
    let i = import(fixture!("e07-semicolon.rc"));
    assert_eq!(i.accounts.len(), 1);
    let a = &i.accounts[0];
    assert!(a.account.keep);
    assert_eq!(a.account.tls, TlsMode::Implicit);
    assert_eq!(a.account.username, "your_mail");
    assert_eq!(a.account.deliver_to, ["bhaskar"]);
    assert_eq!(a.line, 2);
    assert!(a.warnings.iter().any(|w| w.keyword == "mda" && w.line == 6));
}

#[test]
fn e08_same_login_twice_for_different_folders() {
    let i = import(fixture!("e08-same-login-folders.rc"));
    assert_eq!(i.accounts.len(), 2);
    let (a, b) = (&i.accounts[0].account, &i.accounts[1].account);
    assert!(a.folders.is_empty());
    assert!(!a.keep && a.fetchall);
    assert_eq!(b.folders, ["Calendar"]);
    assert!(b.keep);
    assert_eq!(a.name, "vmiklos@gwmail.emea.novell.com");
    assert_eq!(b.name, "vmiklos@gwmail.emea.novell.com-2");
    assert_eq!(a.interval, Some(30));
    // The custom procmail rcfile is named in the warning.
    assert!(
        i.accounts[1]
            .warnings
            .iter()
            .any(|w| w.message.contains(".procmailrc.susecom-calendar"))
    );
}

#[test]
fn e09_socks_plugin_disables_the_account() {
    let i = import(fixture!("e09-plugin.rc"));
    let a = &i.accounts[0].account;
    assert!(a.disabled);
    assert!(a.keep);
    assert_eq!(a.deliver_to, ["localuser"]);
    assert!(has_warning(&i, "plugin", "cannot tunnel"));
    let i = import(fixture!("e09b-plugin-ssh.rc"));
    let a = &i.accounts[0].account;
    assert!(a.disabled);
    assert_eq!(a.tls, TlsMode::None, "sslproto '' = no STARTTLS");
}

#[test]
fn e10_system_wide_defaults_and_remote_smtphost() {
    let i = import(fixture!("e10-system-wide.rc"));
    assert_eq!(i.accounts.len(), 1);
    let a = &i.accounts[0];
    assert_eq!(a.account.username, "baka");
    assert_eq!(a.account.deliver_to, ["localbaka"]);
    assert_eq!(a.account.password, None);
    // antispam -1 is the safe setting: nothing to say. batchlimit from defaults is said
    // (at the defaults line), and so are the remote smtphost and the missing password.
    assert!(!has_warning(&i, "antispam", ""));
    assert!(
        i.all_warnings()
            .iter()
            .any(|w| w.keyword == "batchlimit" && w.line == 8)
    );
    assert!(has_warning(&i, "smtphost", "smtp.foo.bar.org"));
    assert!(has_warning(&i, "password", "no password"));
    assert!(has_warning(&i, "set syslog", ""));
}

#[test]
fn e11_one_token_per_line() {
    let i = import(fixture!("e11-one-token-per-line.rc"));
    let a = &i.accounts[0].account;
    assert_eq!(a.protocol, Protocol::Pop3);
    assert_eq!(a.username, "bamccaig");
    assert_eq!(a.deliver_to, ["bambams"]);
    assert!(a.keep);
    assert_eq!(a.tls, TlsMode::Implicit);
    assert_eq!(a.password, None);
}

#[test]
fn e12_oauthbearer_and_passwordfile_accepted_on_purpose() {
    let i = import(fixture!("e12-oauth2-next.rc"));
    let a = &i.accounts[0].account;
    assert_eq!(a.auth.as_deref(), Some("oauthbearer"));
    assert_eq!(
        a.password_file.as_deref(),
        Some(Path::new("/home/yourname/.fetchmail-token"))
    );
    assert_eq!(a.password, None);
    assert_eq!(a.username, "someone@gmail.com");
    assert_eq!(a.fetchlimit, Some(10));
    assert_eq!(a.folders, ["Download"]);
    assert!(a.keep);
    assert_eq!(a.tls, TlsMode::Implicit);
    assert!(!i.has_inline_secret());
}

#[test]
fn e13_idle_on_several_accounts_and_folders_accepted_on_purpose() {
    let i = import(fixture!("e13-idle-several.rc"));
    assert_eq!(i.accounts.len(), 2);
    assert!(i.accounts.iter().all(|a| a.account.idle));
    assert_eq!(i.accounts[0].account.folders, ["INBOX", "Lists"]);
}

#[test]
fn tricky_strings() {
    assert_eq!(password_of(fixture!("t01-hex-quote.rc")), "a \"quoted\" pw");
    assert_eq!(
        password_of(fixture!("t02-other-quote.rc")),
        "has \"double\" quotes"
    );
    assert_eq!(
        password_of(fixture!("t03-punct-in-quotes.rc")),
        "hash#semi;colon:comma,eq=end"
    );
    assert_eq!(
        password_of(fixture!("t04-escapes.rc")),
        "back\\slash and dec\"quote and oct\u{8}1 and tab\tend"
    );
    assert_eq!(password_of(fixture!("t05-continued.rc")), "long continued");
    assert_eq!(password_of(fixture!("t06-multiline.rc")), "multi\nline");
    assert_eq!(password_of(fixture!("t07-number.rc")), "12345");
    assert_eq!(password_of(fixture!("t08-keyword.rc")), "keep");
    assert_eq!(password_of(fixture!("t09-hash.rc")), "abc#def");
    assert_eq!(password_of(fixture!("t10-doubled-quote.rc")), "'it''s'");
}

fn neg(src: &[u8], line: usize, keyword: &str, needle: &str) {
    let e = fail(src);
    assert_eq!((e.line, e.keyword.as_str()), (line, keyword), "{e}");
    assert!(e.message.contains(needle), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("rc:{line}: at `{keyword}`")),
        "{shown}"
    );
}

#[test]
fn negative_cases_name_line_and_keyword() {
    // The string ends at the first `"`; what follows is a stray word.
    neg(
        fixture!("n01-escaped-quote.rc"),
        1,
        "quoted\\\"",
        "syntax error",
    );
    neg(fixture!("n02-colon-splits.rc"), 1, "cd", "syntax error");
    neg(fixture!("n03-unquoted-mda.rc"), 2, "-d", "syntax error");
    neg(
        fixture!("n04-proto-mixed-case.rc"),
        1,
        "Pop3",
        "protocol is one of",
    );
    neg(
        fixture!("n05-poll-capital.rc"),
        1,
        "Poll",
        "keywords are lower case (`poll`)",
    );
    neg(fixture!("n06-daemon-equals.rc"), 1, "600", "bare number");
    neg(
        fixture!("n07-nosslcertck.rc"),
        1,
        "nosslcertck",
        "syntax error",
    );
    neg(fixture!("n08-nossl.rc"), 1, "nossl", "syntax error");
    neg(
        fixture!("n09-set-nosyslog.rc"),
        1,
        "nosyslog",
        "syntax error",
    );
    neg(
        fixture!("n10-set-nosoftbounce.rc"),
        1,
        "nosoftbounce",
        "syntax error",
    );
    neg(fixture!("n11-keepalive.rc"), 1, "keepalive", "syntax error");
    neg(
        fixture!("n12-server-after-user.rc"),
        2,
        "timeout",
        "server option after user options",
    );
    neg(
        fixture!("n13-defaults-not-first.rc"),
        2,
        "defaults",
        "must be the first record",
    );
    neg(
        fixture!("n14-user-after-implicit.rc"),
        1,
        "user",
        "move them after `user",
    );
    neg(
        fixture!("n15-two-defaults.rc"),
        2,
        "defaults",
        "multiple \"defaults\"",
    );
    // More, checked against fetchmail by tests/interop_fetchmailrc.rs.
    neg(
        fixture!("n16-backslash-after-keyword.rc"),
        1,
        "keep\\",
        "backslash",
    );
    neg(
        fixture!("n17-two-remote-names.rc"),
        1,
        "password",
        "must end with `here`",
    );
    neg(
        fixture!("n18-second-local-keyword.rc"),
        1,
        "here",
        "syntax error",
    );
    neg(
        fixture!("n19-envelope-number-only.rc"),
        2,
        "user",
        "`envelope` wants a string",
    );
    neg(
        fixture!("n20-poll-without-name.rc"),
        2,
        "end of input",
        "`poll` wants a string",
    );
    neg(
        fixture!("n21-numeric-folder.rc"),
        1,
        "2024",
        "`folder` wants a string",
    );
    neg(
        fixture!("n22-limit-word.rc"),
        1,
        "big",
        "`limit` wants a number",
    );
    neg(
        fixture!("n23-lmtp-default-port.rc"),
        2,
        "lmtp",
        "LMTP cannot use the default SMTP port",
    );
}

#[test]
fn more_quirks() {
    // `is X there` names the remote user; `user X here` the local one.
    let i = import(b"poll h proto pop3 user esr here is eric there password p");
    let a = &i.accounts[0].account;
    assert_eq!(
        (a.username.as_str(), a.deliver_to.as_slice()),
        ("eric", &["esr".to_string()][..])
    );
    // Only the first name after `is` is read in NAME state: a keyword second name ends
    // the list, and the stray `here` is then an error.
    let e = fail(b"poll h proto pop3 user u password p is a keep here");
    assert_eq!((e.line, e.keyword.as_str()), (1, "here"));
    // A bare entry is legal.
    let i = import(b"poll mail.example.org\n");
    assert_eq!(i.accounts[0].account.username, "root");
    assert_eq!(i.accounts[0].account.deliver_to, ["root"]);
    // Protocol names in upper case; `set logfile = x` is fine; `#` comments.
    let i = import(b"set logfile = \"/x\" # log\npoll h proto POP3 user u pass p\n");
    assert_eq!(i.accounts[0].account.protocol, Protocol::Pop3);
    // A comment on the last line without a newline.
    import(b"poll h proto pop3 user u pass p # the end");
    // `interval N`: every Nth cycle.
    let i = import(b"set daemon 600\npoll h proto imap interval 3 user u pass p\n");
    assert_eq!(i.accounts[0].account.interval, Some(1800));
    // sslproto floors, fingerprints (MD5, as fetchmail prints it), timeout, limits.
    let i = import(
        b"poll h proto imap timeout 90 user u pass p sslproto TLS1.2+ \
          sslfingerprint 'd4:1d:8c:d9:8f:00:b2:04:e9:80:09:98:ec:f8:42:7e' \
          no sslcertck limit 100000 fetchlimit 50 idle folders INBOX,Lists",
    );
    let a = &i.accounts[0].account;
    assert_eq!(a.tls, TlsMode::Starttls);
    assert_eq!(a.tls_min_version.as_deref(), Some("1.2"));
    assert_eq!(
        a.tls_fingerprint.as_deref(),
        Some("D4:1D:8C:D9:8F:00:B2:04:E9:80:09:98:EC:F8:42:7E")
    );
    assert!(!has_warning(&i, "no sslcertck", ""), "pinned: no warning");
    assert_eq!(a.timeout, Some(90));
    assert_eq!((a.limit, a.fetchlimit), (Some(100000), Some(50)));
    assert!(a.idle);
    assert_eq!(a.folders, ["INBOX", "Lists"]);
    // no sslcertck without a pin is said; zolder keeps checking.
    let i = import(b"poll h proto imap user u pass p no sslcertck");
    assert!(has_warning(&i, "no sslcertck", "keeps checking"));
    // Port 995 without ssl: implicit TLS, said.
    let i = import(b"poll h proto pop3 port 995 user u pass p");
    assert_eq!(i.accounts[0].account.tls, TlsMode::Implicit);
    assert!(has_warning(&i, "port", "without `ssl`"));
    // flush is not imported, loudly.
    let i = import(b"poll h proto pop3 user u pass p flush");
    assert!(has_warning(&i, "flush", "NOT imported"));
    // preconnect: argv without a shell; shell syntax is said.
    let i = import(b"poll h proto pop3 user u pass p preconnect \"/usr/local/bin/dial 'my isp'\" postconnect \"pppstats | logger\"");
    let a = &i.accounts[0].account;
    assert_eq!(
        a.preconnect.as_deref(),
        Some(&["/usr/local/bin/dial".to_string(), "my isp".to_string()][..])
    );
    assert!(!has_warning(&i, "preconnect", ""));
    assert!(has_warning(&i, "postconnect", "`|` is shell syntax"));
    // mda naming a user: that user gets the mail.
    let i = import(
        b"poll h proto pop3 user u pass p is bob here mda \"/usr/bin/zolder deliver --user alice\"",
    );
    assert_eq!(i.accounts[0].account.deliver_to, ["alice"]);
    let i = import(
        b"poll h proto pop3 user u pass p is bob here mda \"/usr/lib/dovecot/dovecot-lda -d %T\"",
    );
    assert_eq!(i.accounts[0].account.deliver_to, ["bob"]);
    assert!(!has_warning(&i, "mda", ""));
    // smtpname names the recipient of a single-drop entry.
    let i = import(b"poll h proto pop3 user u pass p is bob here smtpname carol@zolder.thuis");
    assert_eq!(i.accounts[0].account.deliver_to, ["carol"]);
    // An smtphost naming this machine is local; fetchmail 6.6's suffixes are accepted.
    let i = import(
        b"poll h proto pop3 user u pass p smtphost zolder.thuis/tls,127.0.0.1/25,/var/run/lmtp",
    );
    assert!(!has_warning(&i, "smtphost", ""));
    // proto apop → POP3 with APOP; etrn → disabled.
    let i = import(b"poll h proto apop user u pass p\npoll e proto etrn\n");
    assert_eq!(i.accounts[0].account.auth.as_deref(), Some("apop"));
    assert!(i.accounts[1].account.disabled);
    // Relative passwordfile resolves against the rc's folder.
    let i = import(b"poll h proto imap user u passwordfile secrets/u");
    assert_eq!(
        i.accounts[0].account.password_file.as_deref(),
        Some(Path::new("/etc/secrets/u"))
    );
    // A warning names file, line and keyword.
    let w = &i.all_warnings()[0];
    assert!(w.to_string().starts_with("rc:1: `"), "{w}");
    // The kitchen sink: every 6.4 keyword in a legal place.
    let i = import(fixture!("e14-every-keyword.rc"));
    assert_eq!(i.accounts.len(), 4);
    assert_eq!(
        i.accounts[0].account.interval,
        Some(1200),
        "daemon 600 × interval 2"
    );
    assert_eq!(i.accounts[0].account.port, Some(1110));
    assert_eq!(
        i.accounts[1].account.ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(
        i.accounts[2].account.timeout,
        Some(120),
        "timeout from defaults"
    );
    assert!(i.accounts[3].account.disabled);
}

#[test]
fn secrets_anywhere_count() {
    assert!(import(b"defaults password x\n").has_inline_secret());
    assert!(import(b"poll h proto pop3 esmtppassword x user u is u here\n").has_inline_secret());
    assert!(!import(b"poll h proto pop3 user u passwordfile f is u here\n").has_inline_secret());
}

#[test]
fn empty_file_and_only_sets() {
    let i = import(b"");
    assert!(i.accounts.is_empty());
    let i = import(b"set daemon 60\nset idfile .fetchids\nset postmaster 'bob'\n");
    assert_eq!(i.idfile.as_deref(), Some(Path::new("/etc/.fetchids")));
    assert_eq!(i.postmaster.as_deref(), Some("bob"));
}

#[test]
fn garbage_never_panics() {
    // A crude fuzz: every prefix of every fixture, and some junk, parse or fail cleanly.
    let all: &[&[u8]] = &[
        fixture!("e02-defaults-user.rc"),
        fixture!("e04-multidrop.rc"),
        fixture!("e08-same-login-folders.rc"),
        fixture!("t04-escapes.rc"),
        b"\\",
        b"\"",
        b"poll \xff\xfe user \x00 pass \\x",
        b"set set set = = =",
        b"poll h envelope -3 X user u pass p to * = here",
    ];
    for src in all {
        for n in 0..=src.len() {
            let _ = parse(&src[..n], Path::new("rc"), &opts());
        }
    }
}
