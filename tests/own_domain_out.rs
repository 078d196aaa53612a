//! Sending for an own domain, with no outside programs: `zolder dkim keygen`, DKIM
//! signing after masquerading (verified by mail-auth against the TXT records served by
//! the loopback test DNS), and `zolder dns`.

#[path = "support/dns.rs"]
mod dns;
#[path = "support/outgoing.rs"]
mod support;

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
