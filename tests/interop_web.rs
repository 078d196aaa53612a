//! Interop: a real browser through the webmail — Debian's chromium, headless, driven
//! over WebDriver (chromedriver) by `tests/interop/webmail_browser.py` (python3-
//! selenium): log in, open a message, reply, move one to Junk, see the admin charts.
//! Screenshots land in `target/web-screenshots/`. Prints "skipped: …" and returns when
//! chromium, chromedriver or selenium is missing (unless ZOLDER_INTEROP=1).

use std::path::{Path, PathBuf};

mod common;
use common::Zolder;
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};

fn missing() -> Option<&'static str> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("chromium");
    }
    if !Path::new("/usr/bin/chromedriver").exists() {
        return Some("chromium-driver");
    }
    let ok = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import selenium"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (!ok).then_some("python3-selenium")
}

fn incoming(subject: &str, body: &str, html: bool) -> Incoming {
    let ct = if html { "text/html" } else { "text/plain" };
    let msg = format!(
        "From: Anna Berg <anna.berg@example.org>\r\nTo: bouke@zolder.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\nDate: Mon, 1 Dec 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: {ct}; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len()
    );
    Incoming {
        envelope: Envelope::new(
            Some("anna.berg@example.org".into()),
            vec!["bouke@zolder.test".into()],
            Source::Local {
                user: "test".into(),
            },
        ),
        message: RawMessage::new(msg.into_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reads_replies_junks_and_sees_the_charts() {
    if let Some(p) = missing() {
        assert!(
            std::env::var_os("ZOLDER_INTEROP").is_none(),
            "ZOLDER_INTEROP is set but {p} is missing"
        );
        println!("skipped: {p} not installed");
        return;
    }
    let srv = Zolder::new("zolder.thuis")
        .top("local_domains = [\"zolder.test\"]")
        .top("postmaster = \"bouke\"")
        .top("admins = [\"bouke\"]")
        .listen("web")
        .user("bouke", "geheim", &["bouke@zolder.test"])
        .user("anna", "geheim", &["anna@zolder.test"])
        .start()
        .await;
    let running = &srv.running;
    for m in [
        incoming(
            "You have won a prize",
            "Click <a href=\"http://prize.example/\">here</a> <script>alert(1)</script>",
            true,
        ),
        incoming(
            "Etentje zaterdag",
            "<p>Hoi Bouke,</p><p>Zullen we zaterdag om zes uur eten? <b>Neem je de wijn mee?</b></p>\
             <img src=\"http://tracker.example/p.gif\"><p>Groet, Anna</p>",
            true,
        ),
        incoming(
            "Foto's van de verjaardag",
            "Ze staan op de gedeelde schijf.",
            false,
        ),
    ] {
        assert!(running.ctx.local_delivery.deliver(m).await.all_delivered());
    }
    let base = format!("http://{}", running.addr("web"));
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/webmail_browser.py");
    let res = tokio::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .args([&base, "bouke", "geheim", out.to_str().unwrap()])
        .output();
    let res = tokio::time::timeout(std::time::Duration::from_secs(240), res)
        .await
        .expect("the browser test hung")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    println!("{text}");
    assert!(res.status.success(), "browser test failed:\n{text}");
    assert!(text.contains("browser test passed"));
    // What the browser did is in the store: the reply queued, the spam in Junk.
    let junk = running.ctx.spool.select("bouke", "Junk").unwrap();
    assert_eq!(junk.messages.len(), 1);
    let sent = running.ctx.spool.select("bouke", "Sent").unwrap();
    assert_eq!(sent.messages.len(), 1);
    assert!(out.join("webmail.png").exists() && out.join("07-admin.png").exists());
    srv.shutdown().await;
}
