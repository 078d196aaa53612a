//! Port 25 for an own domain, end to end with no outside programs: the daemon with
//! `[listen] smtp` and `[inbound]`, a small DNS server on loopback (tests/common/dns.rs)
//! serving DNSBL, SPF, DKIM and DMARC records, and raw SMTP clients bound to
//! 127.0.0.x source addresses (none of them in `lan_networks`).

mod common;
use common::dns;
use common::outgoing as support;

use std::path::Path;
use std::time::{Duration, Instant};

use dns::TestDns;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use support::{Daemon, Raw};

const HOST: &str = "mx.zolder.test";

fn config(dir: &Path, dns: &TestDns, inbound: &str) -> std::path::PathBuf {
    let text = format!(
        r#"hostname = "{HOST}"
data_dir = "data"
local_domains = ["zolder.test"]
lan_networks = ["192.168.1.0/24"]
postmaster = "bouke"

[listen]
smtp = ["127.0.0.1:0"]

[[users]]
name = "bouke"
addresses = ["bouke@zolder.test"]

[[users]]
name = "sjoerd"
addresses = ["sjoerd@zolder.test"]

{}
[inbound]
{inbound}
"#,
        dns.config()
    );
    let p = dir.join("zolder.toml");
    std::fs::write(&p, text).unwrap();
    p
}

async fn start(dns: &TestDns, inbound: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), dns, inbound);
    let d = Daemon::start(&cfg).await;
    (dir, d)
}

fn smtp(d: &Daemon) -> std::net::SocketAddr {
    d.running.addr("smtp")
}

async fn client(d: &Daemon, from: &str) -> Raw {
    Raw::connect(smtp(d), Some(from)).await
}

/// EHLO, MAIL, RCPT, DATA: each reply in turn (stops at the first refusal).
async fn send(
    d: &Daemon,
    from_ip: &str,
    helo: &str,
    sender: &str,
    rcpts: &[&str],
    body: &str,
) -> Vec<(u16, String)> {
    let mut c = client(d, from_ip).await;
    let mut out = vec![c.cmd(&format!("EHLO {helo}")).await];
    if out[0].0 != 250 {
        return out;
    }
    out.push(c.cmd(&format!("MAIL FROM:<{sender}>")).await);
    if out[1].0 != 250 {
        return out;
    }
    let mut any = false;
    for r in rcpts {
        let x = c.cmd(&format!("RCPT TO:<{r}>")).await;
        any |= x.0 == 250;
        out.push(x);
    }
    if any {
        out.push(c.data(body).await);
    }
    let _ = c.cmd("QUIT").await;
    out
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <bouke@zolder.test>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n\r\nHello from the test.\r\n"
    )
}

fn signed(domain: &str, selector: &str, key: &[u8], from: &str, subject: &str) -> String {
    let msg = message(from, subject);
    let k = Ed25519Key::from_pkcs8_der(key).unwrap();
    let sig = DkimSigner::from_key(k)
        .domain(domain)
        .selector(selector)
        .headers(["From", "To", "Subject", "Message-ID", "Date"])
        .sign(msg.as_bytes())
        .unwrap();
    format!("{}{msg}", sig.to_header())
}

/// An Ed25519 key pair: (PKCS#8 private, DKIM TXT record).
fn dkim_key() -> (Vec<u8>, String) {
    let pair = mail_auth::dkim::generate::DkimKeyPair::generate_ed25519().unwrap();
    let txt = format!("v=DKIM1; k=ed25519; p={}", pair.encoded_public_key());
    (pair.private_key().to_vec(), txt)
}

fn delivered(d: &Daemon) -> Vec<String> {
    d.local
        .all()
        .iter()
        .map(|g| String::from_utf8_lossy(&g.bytes).into_owned())
        .collect()
}

async fn wait_delivered(d: &Daemon, n: usize) -> Vec<String> {
    d.wait_for("local delivery", || d.local.count() >= n).await;
    delivered(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnsbl_listing_refused_after_ehlo_with_reason_and_slow_list_skipped() {
    let dns = TestDns::start().await;
    dns.list(
        "bl.test",
        "127.0.0.5",
        "Listed at bl.test, see http://bl.test/127.0.0.5",
    );
    dns.list("bl.test", "127.0.0.8", "also listed");
    dns.list("wl.test", "127.0.0.8", "known good");
    dns.silence("slow.test");
    let (_dir, d) = start(
        &dns,
        "dnsbl = [\"slow.test\", \"bl.test\"]\ndnswl = [\"wl.test\"]\nauth = false",
    )
    .await;

    let t0 = Instant::now();
    let r = send(
        &d,
        "127.0.0.5",
        "mail.spam.example",
        "x@spam.example",
        &["bouke@zolder.test"],
        "",
    )
    .await;
    assert_eq!(r[0].0, 554, "{r:?}");
    assert!(
        r[0].1.contains("5.7.1") && r[0].1.contains("Listed at bl.test"),
        "{r:?}"
    );
    // The silent list is skipped once the 2 s DNS timeout is over, never longer.
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());

    // Cached: the second connection does not wait for the lists again (only the
    // silent one, which is not cached).
    let mut c = client(&d, "127.0.0.5").await;
    assert_eq!(c.cmd("EHLO mail.spam.example").await.0, 554);
    // Still refused at MAIL FROM for a client that ignores the EHLO reply.
    assert_eq!(c.cmd("MAIL FROM:<x@spam.example>").await.0, 503);

    // Not listed: accepted. Listed but on the allow list: accepted.
    for ip in ["127.0.0.6", "127.0.0.8"] {
        let r = send(
            &d,
            ip,
            "mail.good.example",
            "a@good.example",
            &["bouke@zolder.test"],
            &message("a@good.example", "hi"),
        )
        .await;
        assert_eq!(r.last().unwrap().0, 250, "{ip}: {r:?}");
    }
    wait_delivered(&d, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnsbl_at_rcpt_recipient_checks_helo_and_limits() {
    let dns = TestDns::start().await;
    dns.list("bl.test", "127.0.0.5", "go away");
    let (_dir, d) = start(
        &dns,
        "dnsbl = [\"bl.test\"]\ndnsbl_reject_at = \"rcpt\"\nauth = false\nmax_recipients = 2\nmax_messages_per_minute = 3",
    )
    .await;
    let mut c = client(&d, "127.0.0.5").await;
    assert_eq!(c.cmd("EHLO mail.spam.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<x@spam.example>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<bouke@zolder.test>").await;
    assert_eq!(code, 554, "{text}");
    assert!(text.contains("go away"));

    // Recipient verification: unknown local user → 550 5.1.1 at RCPT.
    let mut c = client(&d, "127.0.0.6").await;
    assert_eq!(c.cmd("EHLO mail.good.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@good.example>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<nobody@zolder.test>").await;
    assert_eq!((code, text.contains("5.1.1")), (550, true), "{text}");
    // Relay refused for strangers on port 25.
    assert_eq!(c.cmd("RCPT TO:<x@elsewhere.example>").await.0, 554);
    // Recipient limit for Internet clients.
    assert_eq!(c.cmd("RCPT TO:<bouke@zolder.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<sjoerd@zolder.test>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<postmaster@zolder.test>").await;
    assert_eq!(code, 452, "{text}");

    // HELO sanity: our own name, a wrong address literal, a bare word.
    for (helo, want) in [
        ("mx.zolder.test", 550),
        ("[127.0.0.9]", 550),
        ("localhost", 504),
    ] {
        let mut c = client(&d, "127.0.0.6").await;
        assert_eq!(c.cmd(&format!("EHLO {helo}")).await.0, want, "{helo}");
    }
    let mut c = client(&d, "127.0.0.6").await;
    assert_eq!(c.cmd("EHLO [127.0.0.6]").await.0, 250);

    // Rate: 3 messages a minute from one client (one MAIL above counts).
    let mut c = client(&d, "127.0.0.6").await;
    assert_eq!(c.cmd("EHLO mail.good.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@good.example>").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@good.example>").await.0, 250);
    assert_eq!(c.cmd("RSET").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@good.example>").await.0, 421);
    // Another client has its own budget.
    let mut c = client(&d, "127.0.0.7").await;
    assert_eq!(c.cmd("EHLO mail.good.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@good.example>").await.0, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_pass_fail_softfail_and_one_results_header() {
    let dns = TestDns::start().await;
    dns.txt("spf.example", "v=spf1 ip4:127.0.0.6 -all");
    dns.txt("soft.example", "v=spf1 ip4:127.0.0.6 ~all");
    dns.a("mail.spf.example", "127.0.0.6");
    let (_dir, d) = start(&dns, "").await;

    // fail (-all) from an address not listed: 550 5.7.1 at MAIL FROM.
    let r = send(
        &d,
        "127.0.0.7",
        "mail.other.example",
        "a@spf.example",
        &["bouke@zolder.test"],
        "",
    )
    .await;
    assert_eq!(r[1].0, 550, "{r:?}");
    assert!(r[1].1.contains("5.7.1"));

    // pass, with a forged A-R claiming our id that must not survive.
    let body = format!(
        "Authentication-Results: {HOST}; dkim=pass header.d=spf.example\r\n{}",
        message("a@spf.example", "pass")
    );
    let r = send(
        &d,
        "127.0.0.6",
        "mail.spf.example",
        "a@spf.example",
        &["bouke@zolder.test"],
        &body,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");
    // softfail is delivered, and says so.
    let r = send(
        &d,
        "127.0.0.7",
        "mail.other.example",
        "a@soft.example",
        &["bouke@zolder.test"],
        &message("a@soft.example", "soft"),
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");

    let got = wait_delivered(&d, 2).await;
    let pass = got.iter().find(|m| m.contains("Subject: pass")).unwrap();
    assert!(
        pass.starts_with(&format!("Authentication-Results: {HOST};")),
        "{pass}"
    );
    assert_eq!(pass.matches("Authentication-Results:").count(), 1, "{pass}");
    assert!(pass.contains("spf=pass"), "{pass}");
    assert!(
        !pass.contains("header.d=spf.example"),
        "forged result kept: {pass}"
    );
    let soft = got.iter().find(|m| m.contains("Subject: soft")).unwrap();
    assert!(soft.contains("spf=softfail"), "{soft}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_and_dmarc_policies() {
    let dns = TestDns::start().await;
    let (key, txt) = dkim_key();
    let (wrong_key, _) = dkim_key();
    dns.txt("s1._domainkey.strict.example", &txt);
    dns.txt("_dmarc.strict.example", "v=DMARC1; p=reject");
    dns.txt("strict.example", "v=spf1 -all");
    dns.txt("s1._domainkey.q.example", &txt);
    dns.txt("_dmarc.q.example", "v=DMARC1; p=quarantine");
    dns.txt("s1._domainkey.other.example", &txt);
    let (_dir, d) = start(&dns, "spf_fail = \"accept\"").await;
    let rc = ["bouke@zolder.test"];

    // Aligned DKIM pass from a p=reject domain (SPF fails): delivered.
    let ok = signed("strict.example", "s1", &key, "a@strict.example", "aligned");
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "a@strict.example",
        &rc,
        &ok,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");

    // Body altered after signing: dkim not pass, DMARC p=reject → 550 5.7.1 at DATA.
    let broken = ok.replace("Hello from the test.", "Hello from the forger.");
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "a@strict.example",
        &rc,
        &broken,
    )
    .await;
    let (code, text) = r.last().unwrap();
    assert_eq!(*code, 550, "{r:?}");
    assert!(text.contains("5.7.1") && text.contains("DMARC"), "{text}");

    // Signed with the wrong key: refused too.
    let wrong = signed(
        "strict.example",
        "s1",
        &wrong_key,
        "a@strict.example",
        "wrongkey",
    );
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "a@strict.example",
        &rc,
        &wrong,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 550, "{r:?}");

    // A pass for another domain does not count for From: strict.example.
    let msg = message("a@strict.example", "unaligned");
    let k = Ed25519Key::from_pkcs8_der(&key).unwrap();
    let sig = DkimSigner::from_key(k)
        .domain("other.example")
        .selector("s1")
        .headers(["From", "To", "Subject"])
        .sign(msg.as_bytes())
        .unwrap();
    let unaligned = format!("{}{msg}", sig.to_header());
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "a@other.example",
        &rc,
        &unaligned,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 550, "{r:?}");

    // p=quarantine failure: delivered, marked for Junk.
    let q = signed("q.example", "s1", &wrong_key, "a@q.example", "quarantined");
    let r = send(&d, "127.0.0.6", "mail.x.example", "a@q.example", &rc, &q).await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");

    let got = wait_delivered(&d, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let a = got.iter().find(|m| m.contains("Subject: aligned")).unwrap();
    assert!(a.contains("dkim=pass") && a.contains("dmarc=pass"), "{a}");
    let qm = got
        .iter()
        .find(|m| m.contains("Subject: quarantined"))
        .unwrap();
    assert!(
        qm.contains("dmarc=fail") && qm.contains("policy.dmarc=quarantine"),
        "{qm}"
    );
    assert!(!qm.contains("dkim=pass"), "{qm}");
    let cfg = &d.running.ctx.config;
    assert!(zolder::inbound::auth::junk_marked(cfg, qm.as_bytes()));
    assert!(!zolder::inbound::auth::junk_marked(cfg, a.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_mx_judged_by_its_received_header_and_not_limited() {
    let dns = TestDns::start().await;
    dns.list("bl.test", "198.51.100.66", "spam source");
    dns.list("bl.test", "127.0.0.9", "the backup itself is on a list");
    dns.txt("spf.example", "v=spf1 ip4:198.51.100.7 -all");
    let (_dir, d) = start(
        &dns,
        "dnsbl = [\"bl.test\"]\nbackup_mx = [\"127.0.0.9\"]\nmax_recipients = 1",
    )
    .await;
    let hop = |origin: &str, subject: &str| {
        format!(
            "Received: from mail.origin.example (mail.origin.example [{origin}])\r\n\tby mx2.example.net with ESMTP id 1;\r\n\tThu, 03 Dec 2026 12:00:00 +0000\r\n{}",
            message("a@spf.example", subject)
        )
    };
    let rc = ["bouke@zolder.test", "sjoerd@zolder.test"];
    // From a clean origin whose SPF passes: accepted, both recipients (no limit).
    let r = send(
        &d,
        "127.0.0.9",
        "mx2.example.net",
        "a@spf.example",
        &rc,
        &hop("198.51.100.7", "viabackup"),
    )
    .await;
    assert!(r[2..].iter().all(|x| x.0 == 250), "{r:?}");
    // From a listed origin: 554 at DATA.
    let r = send(
        &d,
        "127.0.0.9",
        "mx2.example.net",
        "a@spf.example",
        &rc,
        &hop("198.51.100.66", "listed"),
    )
    .await;
    let (code, text) = r.last().unwrap();
    assert_eq!(*code, 554, "{r:?}");
    assert!(text.contains("spam source"));
    // From an origin SPF does not allow: 550 at DATA.
    let r = send(
        &d,
        "127.0.0.9",
        "mx2.example.net",
        "a@spf.example",
        &rc,
        &hop("198.51.100.8", "spffail"),
    )
    .await;
    assert_eq!(r.last().unwrap().0, 550, "{r:?}");

    let got = wait_delivered(&d, 1).await;
    assert!(
        got[0].contains("spf=pass") && got[0].contains("198.51.100.7"),
        "{}",
        got[0]
    );
    // A non-backup client still meets the limit.
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "b@nospf.example",
        &rc,
        &message("b@nospf.example", "x"),
    )
    .await;
    assert_eq!(r[3].0, 452, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_defers_first_time_triples_only() {
    let dns = TestDns::start().await;
    dns.list("wl.test", "127.0.0.8", "known good");
    let (key, txt) = dkim_key();
    dns.txt("s1._domainkey.signed.example", &txt);
    let (_dir, d) = start(
        &dns,
        "dnswl = [\"wl.test\"]\ngreylist = true\ngreylist_delay = 2",
    )
    .await;
    let rc = ["bouke@zolder.test"];
    let body = message("a@grey.example", "grey");
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "a@grey.example",
        &rc,
        &body,
    )
    .await;
    let (code, text) = r.last().unwrap();
    assert_eq!((*code, text.contains("4.7.1")), (451, true), "{r:?}");
    // Too early: still deferred, also from a sibling address in the same /24.
    let r = send(
        &d,
        "127.0.0.7",
        "mail.x.example",
        "a@grey.example",
        &rc,
        &body,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 451, "{r:?}");
    // Allow-listed client and DKIM-passing mail are not greylisted.
    let r = send(
        &d,
        "127.0.0.8",
        "mail.x.example",
        "b@grey.example",
        &rc,
        &message("b@grey.example", "wl"),
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");
    let s = signed("signed.example", "s1", &key, "c@signed.example", "signed");
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "c@signed.example",
        &rc,
        &s,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");
    // After the delay the retry passes.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = send(
        &d,
        "127.0.0.6",
        "mail.x.example",
        "a@grey.example",
        &rc,
        &body,
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");
    wait_delivered(&d, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_clients_are_not_checked() {
    let dns = TestDns::start().await;
    dns.list("bl.test", "127.0.0.1", "loopback listed");
    // lan_networks naming loopback exempts it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dns, "dnsbl = [\"bl.test\"]");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[\"192.168.1.0/24\"]", "[\"127.0.0.1/32\"]");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg).await;
    let r = send(
        &d,
        "127.0.0.1",
        "localhost",
        "x@anything.example",
        &["bouke@zolder.test"],
        &message("x@anything.example", "lan"),
    )
    .await;
    assert_eq!(r.last().unwrap().0, 250, "{r:?}");
    let got = wait_delivered(&d, 1).await;
    assert!(!got[0].contains("Authentication-Results"), "{}", got[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_clients_are_not_checked() {
    let dns = TestDns::start().await;
    dns.list("bl.test", "127.0.0.5", "listed");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &dns,
        "dnsbl = [\"bl.test\"]\ndnsbl_reject_at = \"rcpt\"",
    );
    let hash = zolder::auth::hash_password("geheim").unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "addresses = [\"bouke@zolder.test\"]",
        &format!("addresses = [\"bouke@zolder.test\"]\npassword_hash = \"{hash}\""),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg).await;
    // Without AUTH the listed client is refused at RCPT …
    let mut c = client(&d, "127.0.0.5").await;
    assert_eq!(c.cmd("EHLO roaming.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<bouke@zolder.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<sjoerd@zolder.test>").await.0, 554);
    assert_eq!(c.cmd("RSET").await.0, 250);
    // … after AUTH (offered from loopback) no check applies.
    use base64::Engine;
    let creds = base64::engine::general_purpose::STANDARD.encode("\0bouke\0geheim");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {creds}")).await.0, 235);
    assert_eq!(c.cmd("MAIL FROM:<bouke@zolder.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<sjoerd@zolder.test>").await.0, 250);
    let (code, t) = c.data(&message("bouke@zolder.test", "authed")).await;
    assert_eq!(code, 250, "{t}");
    let got = wait_delivered(&d, 1).await;
    assert!(!got[0].contains("Authentication-Results"), "{}", got[0]);
}
