//! The own domain against real programs: swaks as the Internet's senders (bound to
//! 127.0.0.x source addresses, none in `lan_networks`), Debian's python3-dkim signing
//! (valid, broken body hash, wrong key) and verifying our outgoing signatures against
//! the TXT records the loopback test DNS (tests/common/dns.rs) serves, and the real
//! delivery pipeline (Junk folder for DMARC p=quarantine).
//! Skips, printing why, when swaks or python3-dkim is missing — unless
//! ZOLDER_INTEROP=1, where a missing program is a failure.

mod common;
use common::dns;
use common::outgoing as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dns::TestDns;
use support::*;

fn missing() -> Option<String> {
    let have = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("swaks") {
        return Some("swaks not installed".into());
    }
    let py = Command::new("/usr/bin/python3")
        .args(["-c", "import dkim, dnslib, nacl"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !py {
        return Some("python3-dkim / python3-dnslib not installed".into());
    }
    None
}

fn skip() -> bool {
    if let Some(why) = missing() {
        if std::env::var("ZOLDER_INTEROP").as_deref() == Ok("1") {
            panic!("ZOLDER_INTEROP=1 but {why}");
        }
        println!("skipped: {why}");
        return true;
    }
    false
}

/// swaks from `source` to `server`; (accepted, transcript).
fn swaks(server: std::net::SocketAddr, source: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["--server", &server.to_string(), "--local-interface", source])
        .args(["--timeout", "20", "--hide-informational"])
        .args(args)
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), t)
}

/// python3-dkim: sign `msg` for domain/selector with the PEM key in `key`.
fn py_sign(msg: &str, domain: &str, selector: &str, key: &Path) -> String {
    let script = "import sys, dkim\nmsg = sys.stdin.buffer.read()\nkey = open(sys.argv[3], 'rb').read()\nsig = dkim.sign(msg, sys.argv[2].encode(), sys.argv[1].encode(), key, include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])\nsys.stdout.buffer.write(sig + msg)\n";
    let mut c = Command::new("/usr/bin/python3")
        .args(["-c", script, domain, selector, key.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// python3-dkim: verify every DKIM-Signature of `msg`, the keys asked from the test
/// DNS on `port` (dnslib). True when all verify.
fn py_verify(msg: &[u8], port: u16) -> (bool, String) {
    let script = r#"
import sys, dkim, dnslib
port = int(sys.argv[1])
def dnsfunc(name, timeout=5):
    q = dnslib.DNSRecord.question(name.decode().rstrip('.'), 'TXT')
    a = dnslib.DNSRecord.parse(q.send('127.0.0.1', port, timeout=timeout))
    for rr in a.rr:
        if rr.rtype == dnslib.QTYPE.TXT:
            return b''.join(rr.rdata.data)
    return b''
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = msg.split(b'\r\n\r\n', 1)[0].lower().count(b'\ndkim-signature:') + (1 if msg.lower().startswith(b'dkim-signature:') else 0)
res = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n)]
print(n, res)
sys.exit(0 if n > 0 and all(res) else 1)
"#;
    let mut c = Command::new("/usr/bin/python3")
        .args(["-c", script, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(msg).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `zolder dkim keygen`: (key path, TXT value).
fn keygen(cfg: &Path, domain: &str, selector: &str, out: Option<&Path>) -> (PathBuf, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zolder"));
    c.args([
        "--config",
        cfg.to_str().unwrap(),
        "dkim",
        "keygen",
        domain,
        "--selector",
        selector,
    ]);
    if let Some(o) = out {
        c.args(["--out", o.to_str().unwrap()]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let t = String::from_utf8(o.stdout).unwrap();
    let mut l = t.lines();
    let path = PathBuf::from(l.next().unwrap());
    let rec = l.next().unwrap();
    let txt: String = rec
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    (path, txt)
}

fn msg(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <bouke@zolder.test>\r\nSubject: {subject}\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@interop>\r\n\r\nHello from swaks.\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_and_python_dkim_against_port_25() {
    if skip() {
        return;
    }
    let dns = TestDns::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("zolder.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"hostname = "mx.zolder.test"
data_dir = "data"
local_domains = ["zolder.test"]
lan_networks = ["192.168.1.0/24"]
postmaster = "bouke"
[listen]
smtp = ["127.0.0.1:0"]
[[users]]
name = "bouke"
addresses = ["bouke@zolder.test"]
{}
[inbound]
dnsbl = ["bl.test"]
backup_mx = ["127.0.0.9"]
"#,
            dns.config()
        ),
    )
    .unwrap();
    let (good, txt) = keygen(
        &cfg_path,
        "strict.example",
        "s1",
        Some(&dir.path().join("good.key")),
    );
    let (wrong, _) = keygen(
        &cfg_path,
        "strict.example",
        "s1",
        Some(&dir.path().join("wrong.key")),
    );
    dns.txt("s1._domainkey.strict.example", &txt);
    dns.txt("_dmarc.strict.example", "v=DMARC1; p=reject");
    dns.txt("strict.example", "v=spf1 ip4:127.0.0.6 -all");
    dns.txt("s1._domainkey.q.example", &txt);
    dns.txt("_dmarc.q.example", "v=DMARC1; p=quarantine");
    dns.txt("soft.example", "v=spf1 ip4:127.0.0.6 ~all");
    dns.list("bl.test", "127.0.0.5", "Listed for the interop test");
    dns.list("bl.test", "198.51.100.66", "Listed origin");

    // The real pipeline (Maildir), so Junk is a folder on disk.
    let cfg = zolder::config::Config::load(&cfg_path).unwrap();
    let hooks = zolder::daemon::Hooks {
        local: None,
        clock: None,
        data_check: None,
    };
    let running = zolder::daemon::start_with(cfg, cfg_path.clone(), hooks)
        .await
        .unwrap();
    let server = running.addr("smtp");
    let send = |source: &str, from: &str, data: &str| {
        let f = dir.path().join(format!("m{}.eml", rand_suffix()));
        std::fs::write(&f, data).unwrap();
        swaks(
            server,
            source,
            &[
                "--ehlo",
                "mail.sender.example",
                "--from",
                from,
                "--to",
                "bouke@zolder.test",
                "--data",
                &format!("@{}", f.display()),
            ],
        )
    };

    // DNSBL: listed source refused with the list's reason.
    let (ok, t) = send(
        "127.0.0.5",
        "a@else.example",
        &msg("a@else.example", "listed"),
    );
    assert!(
        !ok && t.contains("554") && t.contains("Listed for the interop test"),
        "{t}"
    );
    // SPF: fail → refused at MAIL FROM; softfail delivered.
    let (ok, t) = send(
        "127.0.0.7",
        "a@strict.example",
        &msg("a@strict.example", "spffail"),
    );
    assert!(!ok && t.contains("550 5.7.1"), "{t}");
    let (ok, t) = send(
        "127.0.0.7",
        "a@soft.example",
        &msg("a@soft.example", "soft"),
    );
    assert!(ok, "{t}");
    // python3-dkim signed: valid (aligned pass, p=reject) delivered.
    let signed = py_sign(
        &msg("a@strict.example", "valid"),
        "strict.example",
        "s1",
        &good,
    );
    // (The envelope sender is another domain: SPF cannot align, DKIM decides.)
    let (ok, t) = send("127.0.0.6", "bounce@else.example", &signed);
    assert!(ok, "{t}");
    // Broken body hash and wrong key: DMARC p=reject → 550 5.7.1 at DATA.
    let broken = signed.replace("Hello from swaks.", "Hello from a forger.");
    let (ok, t) = send("127.0.0.6", "bounce@else.example", &broken);
    assert!(!ok && t.contains("550 5.7.1") && t.contains("DMARC"), "{t}");
    let wrongly = py_sign(
        &msg("a@strict.example", "wrongkey"),
        "strict.example",
        "s1",
        &wrong,
    );
    let (ok, t) = send("127.0.0.6", "bounce@else.example", &wrongly);
    assert!(!ok && t.contains("550"), "{t}");
    // p=quarantine failure → delivered into Junk.
    let q = py_sign(&msg("a@q.example", "quarantine"), "q.example", "s1", &wrong);
    let (ok, t) = send("127.0.0.6", "bounce@else.example", &q);
    assert!(ok, "{t}");
    // Backup MX hop: the backup's Received: names a listed origin → 554; clean → 250.
    let hop = |origin: &str, subject: &str| {
        format!(
            "Received: from mail.origin.example (mail.origin.example [{origin}])\r\n\tby mx2.example.net with ESMTP id 1;\r\n\tThu, 03 Dec 2026 12:00:00 +0000\r\n{}",
            msg("a@else.example", subject)
        )
    };
    let (ok, t) = send(
        "127.0.0.9",
        "a@else.example",
        &hop("198.51.100.66", "viabad"),
    );
    assert!(
        !ok && t.contains("554") && t.contains("Listed origin"),
        "{t}"
    );
    let (ok, t) = send(
        "127.0.0.9",
        "a@else.example",
        &hop("198.51.100.7", "viagood"),
    );
    assert!(ok, "{t}");

    // What landed where.
    let md = dir.path().join("data/mail/bouke/Maildir");
    let read_dir = |sub: &str| -> Vec<String> {
        let mut v = Vec::new();
        for d in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(md.join(sub).join(d)) {
                for e in rd.flatten() {
                    v.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        v
    };
    let mut inbox = Vec::new();
    let mut junk = Vec::new();
    for _ in 0..100 {
        inbox = read_dir("");
        junk = read_dir(".Junk");
        if inbox.len() + junk.len() >= 4 {
            break;
        }
        running.queue.as_ref().unwrap().wake();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let subj = |v: &Vec<String>| -> Vec<String> {
        let mut s: Vec<String> = v
            .iter()
            .filter_map(|m| {
                m.lines()
                    .find(|l| l.starts_with("Subject: "))
                    .map(|l| l[9..].to_string())
            })
            .collect();
        s.sort();
        s
    };
    assert_eq!(subj(&inbox), ["soft", "valid", "viagood"], "{inbox:?}");
    assert_eq!(subj(&junk), ["quarantine"], "{junk:?}");
    let valid = inbox.iter().find(|m| m.contains("Subject: valid")).unwrap();
    assert!(
        valid.contains("dkim=pass") && valid.contains("dmarc=pass"),
        "{valid}"
    );
    let soft = inbox.iter().find(|m| m.contains("Subject: soft")).unwrap();
    assert!(soft.contains("spf=softfail"), "{soft}");
    running.ctx.shutdown.cancel();
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_with_swaks_retry() {
    if skip() {
        return;
    }
    let dns = TestDns::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zolder.toml");
    std::fs::write(
        &cfg,
        format!(
            "hostname = \"mx.zolder.test\"\ndata_dir = \"data\"\nlocal_domains = [\"zolder.test\"]\n[listen]\nsmtp = [\"127.0.0.1:0\"]\n[[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.test\"]\n{}\n[inbound]\ngreylist = true\ngreylist_delay = 2\n",
            dns.config()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg).await;
    let args = [
        "--ehlo",
        "mail.x.example",
        "--from",
        "a@grey.example",
        "--to",
        "bouke@zolder.test",
    ];
    let (ok, t) = swaks(d.running.addr("smtp"), "127.0.0.6", &args);
    assert!(!ok && t.contains("451 4.7.1"), "{t}");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (ok, t) = swaks(d.running.addr("smtp"), "127.0.0.6", &args);
    assert!(ok, "{t}");
    d.wait_for("delivery", || d.local.count() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_signatures_verify_with_python_dkim() {
    if skip() {
        return;
    }
    let dns = TestDns::start().await;
    let port = std::net::TcpListener::bind("127.0.0.31:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    dns.mx("far.test", 10, "mx.far.test");
    dns.a("mx.far.test", "127.0.0.31");
    // The receiving MX: another zolder (records what it got).
    let rdir = tempfile::tempdir().unwrap();
    let rcfg = rdir.path().join("zolder.toml");
    std::fs::write(
        &rcfg,
        format!("hostname = \"mx.far.test\"\ndata_dir = \"data\"\nlocal_domains = [\"far.test\"]\nlan_networks = [\"127.0.0.0/8\"]\n[listen]\nsmtp = [\"127.0.0.31:{port}\"]\n[[users]]\nname = \"f\"\naddresses = [\"friend@far.test\"]\n"),
    )
    .unwrap();
    let receiver = Daemon::start(&rcfg).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "\"127.0.0.1:0\"", "\"127.0.0.1/32\"", "");
    let (rsa, rsa_txt) = keygen(&cfg, "zolder.thuis", "r1", None);
    let ed_out = dir.path().join("ed.key");
    let out = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "dkim",
            "keygen",
            "zolder.thuis",
        ])
        .args([
            "--selector",
            "e1",
            "--algorithm",
            "ed25519",
            "--out",
            ed_out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ed_txt: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    dns.txt("r1._domainkey.zolder.thuis", &rsa_txt);
    dns.txt("e1._domainkey.zolder.thuis", &ed_txt);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "{}\n[relay]\nmode = \"mx\"\nmx_port = {port}\n\n[[dkim]]\ndomain = \"zolder.thuis\"\nselector = \"r1\"\nkey_file = \"{}\"\n\n[[dkim]]\ndomain = \"zolder.thuis\"\nselector = \"e1\"\nkey_file = \"{}\"\n",
        dns.config(),
        rsa.display(),
        ed_out.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg).await;
    let (ok, t) = swaks(
        d.submission(),
        "127.0.0.1",
        &[
            "--ehlo",
            "lan.example",
            "--from",
            "bouke@zolder.thuis",
            "--to",
            "friend@far.test",
            "--header",
            "Subject: signed by zolder",
        ],
    );
    assert!(ok, "{t}");
    d.flush().await;
    receiver
        .wait_for("arrival at the MX", || receiver.local.count() == 1)
        .await;
    let got = receiver.local.all();
    let bytes = &got[0].bytes;
    let s = String::from_utf8_lossy(bytes);
    assert_eq!(s.matches("DKIM-Signature:").count(), 2, "{s}");
    let (ok, out) = py_verify(bytes, dns.addr.port());
    assert!(ok, "python3-dkim: {out}\n{s}");
}
