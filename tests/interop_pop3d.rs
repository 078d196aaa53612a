//! Interop: real POP3 clients fetching from zolder's pop3d as if it were an ISP —
//! fetchmail 6.4 (UIDL with `keep`, then delete over implicit TLS with our certificate
//! trusted) and getmail6 (into a Maildir, deleting). Prints "skipped: <prog> not
//! installed" and returns when a program is missing, so `cargo test` passes anywhere.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Zolder, have};
use zolder::daemon::Running;
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};

const PASSWORD: &str = "geheim";

/// The daemon in `dir` with POP3 and POP3S listeners and the user bouke@zolder.test.
async fn start(dir: &Path) -> Running {
    Zolder::new("localhost")
        .top("local_domains = [\"zolder.test\"]")
        .top("postmaster = \"bouke\"")
        .listen("pop3")
        .listen("pop3s")
        .user("bouke", PASSWORD, &["bouke@zolder.test"])
        .in_dir(dir)
        .start()
        .await
        .running
}

async fn deliver_n(running: &Running, n: usize) {
    let msgs = (0..n)
        .map(|i| Incoming {
            envelope: Envelope::new(
                Some("alice@example.org".into()),
                vec!["bouke@zolder.test".into()],
                Source::Local { user: "test".into() },
            ),
            message: RawMessage::new(
                format!(
                    "From: Alice <alice@example.org>\nTo: bouke@zolder.test\nMessage-ID: <m{i}@example.org>\nSubject: number {i}\n\nbody {i}\n.dot line\n"
                )
                .into_bytes(),
            ),
        })
        .collect();
    let reports = running.ctx.local_delivery.deliver_batch(msgs).await;
    assert!(reports.iter().all(|r| r.all_delivered()));
}

fn inbox_count(running: &Running) -> usize {
    running
        .ctx
        .spool
        .select("bouke", "INBOX")
        .unwrap()
        .messages
        .len()
}

async fn fetchmail(rc: &Path, bsmtp: &Path, extra: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new("fetchmail")
        .arg("-f")
        .arg(rc)
        .arg("--nodetach")
        .arg("--bsmtp")
        .arg(bsmtp)
        .args(extra)
        .env("FETCHMAILHOME", rc.parent().unwrap())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn bsmtp_messages(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == "DATA")
        .count()
}

#[tokio::test]
async fn fetchmail_keep_then_delete_over_tls() {
    if !have("fetchmail") {
        println!("skipped: fetchmail not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    deliver_n(&running, 30).await;
    let port = running.addr("pop3").port();
    let tls_port = running.addr("pop3s").port();
    let cert = dir.path().join("data/tls/cert.pem");

    // 1. keep + UIDL: everything once, then nothing new.
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set idfile \"{}/fetchids\"\npoll 127.0.0.1 service {port} protocol pop3 uidl\n  user bouke password \"{PASSWORD}\" is root here keep sslproto ''\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out1 = dir.path().join("keep1.bsmtp");
    let (code, log) = fetchmail(&rc, &out1, &[]).await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(bsmtp_messages(&out1), 30, "{log}");
    let out2 = dir.path().join("keep2.bsmtp");
    let (code, log) = fetchmail(&rc, &out2, &[]).await;
    assert_eq!(code, 1, "fetchmail says 'no mail' the second time: {log}");
    assert_eq!(bsmtp_messages(&out2), 0);
    assert_eq!(inbox_count(&running), 30);

    // 2. implicit TLS with zolder's certificate trusted, deleting.
    let rc2 = dir.path().join("fetchmailrc-tls");
    std::fs::write(
        &rc2,
        format!(
            "poll localhost service {tls_port} protocol pop3\n  user bouke password \"{PASSWORD}\" is root here nokeep ssl sslcertck sslcertfile \"{}\"\n",
            cert.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc2, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out3 = dir.path().join("tls.bsmtp");
    let (code, log) = fetchmail(&rc2, &out3, &[]).await;
    assert_eq!(code, 0, "{log}");
    assert_eq!(bsmtp_messages(&out3), 30, "{log}");
    let text = std::fs::read_to_string(&out3).unwrap();
    assert!(text.contains("Subject: number 17"), "bodies arrive intact");
    assert!(
        text.contains("\n..dot line") || text.contains("\n.dot line"),
        "dot line kept"
    );
    assert_eq!(
        inbox_count(&running),
        0,
        "nokeep deleted everything at QUIT"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn getmail_into_maildir() {
    if !have("getmail") {
        println!("skipped: getmail (getmail6) not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    deliver_n(&running, 25).await;
    let md = dir.path().join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    // getmail refuses to deliver as root: as root, deliver as `nobody` into a Maildir
    // that `nobody` owns.
    let as_root = nix::unistd::geteuid().is_root();
    let dest_user = if as_root {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for p in [md.clone(), md.join("tmp"), md.join("new"), md.join("cur")] {
            nix::unistd::chown(&p, Some(nobody.uid), Some(nobody.gid)).unwrap();
        }
        "user = nobody\n"
    } else {
        ""
    };
    let rc = dir.path().join("getmailrc");
    std::fs::write(
        &rc,
        format!(
            "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {}\nusername = bouke\npassword = {PASSWORD}\n\n[destination]\ntype = Maildir\npath = {}/\n{dest_user}\n[options]\ndelete = true\nread_all = true\nverbose = 1\n",
            running.addr("pop3").port(),
            md.display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("getmail")
        .arg(format!("--getmaildir={}", dir.path().display()))
        .arg(format!("--rcfile={}", rc.display()))
        .output()
        .await
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let n = std::fs::read_dir(md.join("new")).unwrap().count();
    assert_eq!(n, 25, "{log}");
    assert_eq!(inbox_count(&running), 0, "{log}");
    running.shutdown().await;
}
