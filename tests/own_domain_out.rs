//! Sending for an own domain, with no outside programs: `zolder dkim keygen`, DKIM
//! signing after masquerading (verified by mail-auth against the TXT records served by
//! the loopback test DNS), and `zolder dns`.

mod common;
use common::dns;
use common::outgoing as support;

use std::path::Path;
use std::process::Command;

use dns::TestDns;
use mail_auth::{AuthenticatedMessage, DkimResult};
use support::*;

/// Runs `zolder dkim keygen`; returns (key path, TXT value).
fn keygen(cfg: &Path, domain: &str, selector: &str, alg: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .args(["--config", cfg.to_str().unwrap(), "dkim", "keygen", domain])
        .args(["--selector", selector, "--algorithm", alg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let path = lines.next().unwrap().to_string();
    let rec = lines.next().unwrap();
    let prefix = format!("{selector}._domainkey.{domain}. IN TXT ");
    assert!(rec.starts_with(&prefix), "{rec}");
    // Zone-file strings: "part" "part" → one value.
    let txt: String = rec[prefix.len()..]
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    (path, txt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_mail_is_signed_after_masquerading_and_verifies() {
    let dns = TestDns::start().await;
    let sink = FakeSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "\"127.0.0.1:0\"",
        "\"127.0.0.1/32\"",
        &smarthost_table(sink.port, ""),
    );
    let (rsa, rsa_txt) = keygen(&cfg, "provider.nl", "r2026", "rsa");
    let (ed, ed_txt) = keygen(&cfg, "provider.nl", "e2026", "ed25519");
    assert!(rsa.ends_with("data/dkim/provider.nl.r2026.key"), "{rsa}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&rsa).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(rsa_txt.starts_with("v=DKIM1; k=rsa; p="));
    assert!(ed_txt.starts_with("v=DKIM1; k=ed25519; p="));
    // A second keygen for the same name refuses to overwrite.
    let again = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "dkim",
            "keygen",
            "provider.nl",
        ])
        .args(["--selector", "r2026"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(73), "{again:?}");
    dns.txt("r2026._domainkey.provider.nl", &rsa_txt);
    dns.txt("e2026._domainkey.provider.nl", &ed_txt);

    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replacen(
        "[smarthost]",
        &format!(
            "{}\n[[dkim]]\ndomain = \"provider.nl\"\nselector = \"r2026\"\nkey_file = \"{rsa}\"\n\n[[dkim]]\ndomain = \"provider.nl\"\nselector = \"e2026\"\nkey_file = \"{ed}\"\n\n[smarthost]",
            dns.config()
        ),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg).await;

    let mut c = Raw::connect(d.submission(), None).await;
    c.cmd("EHLO lan.example").await;
    assert_eq!(c.cmd("MAIL FROM:<bouke@zolder.thuis>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<friend@elsewhere.example>").await.0, 250);
    let (code, t) = c
        .data("From: Bouke <bouke@zolder.thuis>\r\nTo: friend@elsewhere.example\r\nSubject: signed\r\n\r\nHallo.\r\n")
        .await;
    assert_eq!(code, 250, "{t}");
    d.flush().await;
    let got = sink.all();
    assert_eq!(got.len(), 1);
    let data = &got[0].data;
    let s = String::from_utf8_lossy(data);
    assert!(s.contains("From: Bouke <bouke@provider.nl>"), "{s}");
    assert_eq!(s.matches("DKIM-Signature:").count(), 2, "{s}");

    let resolver = zolder::net::dns::Dns::from_config(&d.running.ctx.config.dns).unwrap();
    let parsed = AuthenticatedMessage::parse(data).unwrap();
    let results = resolver.authenticator().verify_dkim(&parsed).await;
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r.result(), &DkimResult::Pass, "{r:?}");
    }
    // Mail from a domain without a key goes out unsigned.
    let mut c = Raw::connect(d.submission(), None).await;
    c.cmd("EHLO lan.example").await;
    assert_eq!(c.cmd("MAIL FROM:<x@unsigned.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<friend@elsewhere.example>").await.0, 250);
    let (code, _) = c
        .data("From: x@unsigned.example\r\nSubject: plain\r\n\r\nx\r\n")
        .await;
    assert_eq!(code, 250);
    d.flush().await;
    let got = sink.all();
    assert!(!String::from_utf8_lossy(&got[1].data).contains("DKIM-Signature"));

    // `zolder dns provider.nl`: the DKIM records are published, the MX is not.
    let out = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .args(["--config", cfg.to_str().unwrap(), "dns", "provider.nl"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("r2026._domainkey.provider.nl")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("e2026._domainkey.provider.nl")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("MISSING") && l.contains(" MX ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("MISSING") && l.contains("_dmarc.provider.nl")),
        "{text}"
    );
}

/// (MAIL line, RCPT lines, data) per message.
type Got = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<String>, String)>>>;

/// A bare SMTP server on `addr` (no STARTTLS): counts connections and records
/// (MAIL, RCPTs, data) per message.
struct Sink {
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    got: Got,
}

async fn sink_on(addr: &str) -> Sink {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let connections: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
    let got: Got = Default::default();
    let (c, g) = (connections.clone(), got.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let g = g.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let (mut from, mut rcpts) = (String::new(), Vec::new());
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let u = l.to_ascii_uppercase();
                    let reply: &[u8] = if u.starts_with("EHLO") {
                        b"250-sink\r\n250 8BITMIME\r\n"
                    } else if u.starts_with("MAIL") {
                        from = l.trim().to_string();
                        b"250 ok\r\n"
                    } else if u.starts_with("RCPT") {
                        rcpts.push(l.trim().to_string());
                        b"250 ok\r\n"
                    } else if u.starts_with("DATA") {
                        w.write_all(b"354 go\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            r.read_line(&mut l).await.unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        g.lock()
                            .unwrap()
                            .push((from.clone(), std::mem::take(&mut rcpts), data));
                        b"250 queued\r\n"
                    } else if u.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    Sink { connections, got }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_mode_delivers_by_preference_batched_per_domain_with_opportunistic_tls() {
    let dns = TestDns::start().await;
    // One port for every MX host (the test's stand-in for 25).
    let port = std::net::TcpListener::bind("127.0.0.22:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    dns.mx("dest.test", 10, "mx1.dest.test");
    dns.mx("dest.test", 20, "mx2.dest.test");
    dns.a("mx1.dest.test", "127.0.0.21"); // nothing listens: falls back to mx2
    dns.a("mx2.dest.test", "127.0.0.22");
    dns.a("plain.test", "127.0.0.23"); // no MX: the A record
    dns.mx("nomail.test", 0, ".");

    // mx2: another zolder, receiving on port 25's stand-in with STARTTLS offered.
    let rdir = tempfile::tempdir().unwrap();
    let rcfg = rdir.path().join("zolder.toml");
    std::fs::write(
        &rcfg,
        format!(
            "hostname = \"mx2.dest.test\"\ndata_dir = \"data\"\nlocal_domains = [\"dest.test\"]\nlan_networks = [\"127.0.0.0/8\"]\n[listen]\nsmtp = [\"127.0.0.22:{port}\"]\n[[users]]\nname = \"a\"\naddresses = [\"a@dest.test\"]\n[[users]]\nname = \"b\"\naddresses = [\"b@dest.test\"]\n"
        ),
    )
    .unwrap();
    let receiver = Daemon::start(&rcfg).await;
    let plain = sink_on(&format!("127.0.0.23:{port}")).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "\"127.0.0.1:0\"",
        "\"127.0.0.1/32\"",
        &format!(
            "{}\n[relay]\nmode = \"mx\"\nmx_port = {port}\n",
            dns.config()
        ),
    );
    let d = Daemon::start(&cfg).await;
    let send = async |rcpts: &[&str], subject: &str| {
        let mut c = Raw::connect(d.submission(), None).await;
        c.cmd("EHLO lan.example").await;
        assert_eq!(c.cmd("MAIL FROM:<bouke@zolder.thuis>").await.0, 250);
        for r in rcpts {
            assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).await.0, 250);
        }
        let (code, t) = c
            .data(&format!(
                "From: bouke@zolder.thuis\r\nSubject: {subject}\r\n\r\nx\r\n"
            ))
            .await;
        assert_eq!(code, 250, "{t}");
    };
    send(&["a@dest.test", "x@plain.test", "b@dest.test"], "one").await;
    send(
        &["b@dest.test", "nobody@nomail.test", "y@plain.test"],
        "two",
    )
    .await;
    d.flush().await;

    // dest.test: both messages on one connection to mx2, over TLS.
    receiver
        .wait_for("mx2 delivery", || receiver.local.count() >= 2)
        .await;
    let got = receiver.local.all();
    let mut rc: Vec<Vec<String>> = got.iter().map(|g| g.rcpts.clone()).collect();
    rc.sort();
    assert_eq!(
        rc,
        vec![
            vec!["a@dest.test".to_string(), "b@dest.test".into()],
            vec!["b@dest.test".into()]
        ]
    );
    for g in &got {
        let s = String::from_utf8_lossy(&g.bytes);
        assert!(s.contains("with ESMTPS"), "not over TLS: {s}");
    }
    // plain.test: through its A record, without TLS (none offered).
    let p = plain.got.lock().unwrap().clone();
    // Both messages for plain.test over one connection.
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].1, vec!["RCPT TO:<x@plain.test>".to_string()]);
    assert_eq!(p[1].1, vec!["RCPT TO:<y@plain.test>".to_string()]);
    assert_eq!(
        plain.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // nomail.test (null MX) fails permanently: the sender gets a bounce.
    d.wait_for("bounce for the null MX", || {
        d.local.all().iter().any(|g| {
            let s = String::from_utf8_lossy(&g.bytes);
            s.contains("nobody@nomail.test") && s.contains("null MX")
        })
    })
    .await;

    // Once mx1 (the preferred host) answers, it gets the mail.
    let mx1 = sink_on(&format!("127.0.0.21:{port}")).await;
    send(&["a@dest.test"], "three").await;
    d.flush().await;
    let g = mx1.got.lock().unwrap().clone();
    assert_eq!(g.len(), 1, "{g:?}");
    assert!(g[0].2.contains("Subject: three"));
    assert_eq!(receiver.local.count(), 2);
}
