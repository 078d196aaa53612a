//! zolder as a service: SIGHUP reloads every part of the config (and refuses a broken
//! file), `zolder flush` without a smarthost or with `--no-wait`, and the privilege
//! drop of `zolder serve` (the root-only parts skip when not run as root).

#[path = "support/outgoing.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn zolder_cmd(cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zolder"));
    c.env_remove("ZOLDER_CONFIG").arg("--config").arg(cfg);
    c
}

async fn http_get(addr: std::net::SocketAddr) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    s(&out)
}

/// A household config: `root` goes to `alias`, one account, the given listeners.
fn household(dir: &Path, listen: &str, alias: &str, account: &str, smarthost_port: u16) {
    let text = format!(
        r#"hostname = "zolder.thuis"
data_dir = "data"
local_domains = ["zolder.thuis"]
lan_networks = ["127.0.0.1/32"]
postmaster = "bouke"

[listen]
{listen}

[[users]]
name = "bouke"
addresses = ["bouke@zolder.thuis"]

[[users]]
name = "sjoerd"
addresses = ["sjoerd@zolder.thuis"]

[aliases]
root = ["{alias}"]

[[accounts]]
name = "{account}"
protocol = "pop3"
host = "127.0.0.1"
port = 9
tls = "none"
username = "u"
password = "p"
deliver_to = ["bouke"]
schedule = "manual"

{}
"#,
        smarthost_table(smarthost_port, "")
    );
    let p = dir.join("zolder.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

fn new_files(dir: &Path, user: &str) -> usize {
    std::fs::read_dir(dir.join("data/mail").join(user).join("Maildir/new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn queue_mail(sup: &zolder::service::Supervisor, rcpt: &str, subject: &str) {
    let q = sup.running().queue.clone().unwrap();
    q.enqueue(zolder::queue::NewMessage {
        id: None,
        sender: Some("bouke@zolder.thuis".into()),
        recipients: vec![zolder::queue::NewRcpt::plain(rcpt)],
        bytes: format!("From: bouke@zolder.thuis\r\nSubject: {subject}\r\n\r\nx\r\n").into_bytes(),
        source: "test".into(),
        envid: None,
        ret: None,
        auth_user: None,
    })
    .await
    .unwrap();
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_aliases_smarthost_listeners_and_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let (isp1, isp2) = (FakeSink::start().await, FakeSink::start().await);
    household(
        dir.path(),
        "submission = \"127.0.0.1:0\"\nstatus = \"127.0.0.1:0\"",
        "sjoerd",
        "isp-old",
        isp1.port,
    );
    let path = dir.path().join("zolder.toml");
    let cfg = zolder::config::Config::load(&path).unwrap();
    let mut sup = zolder::service::Supervisor::start(cfg, path.clone(), Default::default())
        .await
        .unwrap();
    let submission = sup.running().addr("submission");
    let status = sup.running().addr("status");
    assert!(http_get(status).await.contains("isp-old: pop3"));
    queue_mail(&sup, "root", "before").await;
    wait_until("root's mail at sjoerd", || {
        new_files(dir.path(), "sjoerd") == 1
    })
    .await;

    // New aliases, smarthost, account; pop3 added, the status page removed.
    household(
        dir.path(),
        "submission = \"127.0.0.1:0\"\npop3 = \"127.0.0.1:0\"",
        "bouke",
        "isp-new",
        isp2.port,
    );
    sup.reload().await.unwrap();
    let r = sup.running();
    assert_eq!(
        r.addr("submission"),
        submission,
        "the kept socket serves on"
    );
    assert!(r.addrs.contains_key("pop3") && !r.addrs.contains_key("status"));
    assert!(
        tokio::net::TcpStream::connect(status).await.is_err(),
        "status listener closed"
    );
    let mut p = tokio::net::TcpStream::connect(r.addr("pop3"))
        .await
        .unwrap();
    let mut greet = [0u8; 3];
    p.read_exact(&mut greet).await.unwrap();
    assert_eq!(&greet, b"+OK");
    queue_mail(&sup, "root", "after").await;
    wait_until("root's mail at bouke", || {
        new_files(dir.path(), "bouke") == 1
    })
    .await;
    assert_eq!(new_files(dir.path(), "sjoerd"), 1);
    queue_mail(&sup, "friend@remote.example", "out").await;
    let sum = sup.running().queue.as_ref().unwrap().flush().await.unwrap();
    assert_eq!(sum.sent, 1, "{sum:?}");
    assert_eq!(isp2.all().len(), 1, "the new smarthost got it");
    assert!(isp1.all().is_empty());

    // The status page (back again) shows the reloaded account as configured.
    household(
        dir.path(),
        "submission = \"127.0.0.1:0\"\nstatus = \"127.0.0.1:0\"",
        "bouke",
        "isp-new",
        isp2.port,
    );
    sup.reload().await.unwrap();
    let page = http_get(sup.running().addr("status")).await;
    assert!(page.contains("isp-new: pop3 u@127.0.0.1"), "{page}");
    assert!(!page.contains("isp-new: (no longer"), "{page}");
    assert!(page.contains("config reloaded"), "{page}");

    // A broken file changes nothing and says where it is broken.
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("postmaster = \"bouke\"", "postmaster = "),
    )
    .unwrap();
    let e = sup.reload().await.unwrap_err();
    assert!(e.contains("zolder.toml:5"), "{e}");
    std::fs::write(
        &path,
        good.replace("submission = \"127.0.0.1:0\"", "submission = \"nowhere\""),
    )
    .unwrap();
    let e = sup.reload().await.unwrap_err();
    assert!(
        e.contains("listen.submission") && e.contains("nowhere"),
        "{e}"
    );
    assert_eq!(sup.running().addr("submission"), submission);
    assert_eq!(sup.running().ctx.config.aliases["root"], vec!["bouke"]);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_no_wait_starts_a_manual_run() {
    let dir = tempfile::tempdir().unwrap();
    let isp = FakeSink::start().await;
    let cfg = write_config(
        dir.path(),
        "\"127.0.0.1:0\"",
        "\"127.0.0.1/32\"",
        &smarthost_table(isp.port, ""),
    );
    let d = Daemon::start(&cfg).await;
    let mut c = zolder_cmd(&cfg)
        .args(["sendmail", "friend@remote.example"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: x\n\nx\n")
        .unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(0));
    // schedule = "manual": only a flush sends; --no-wait returns at once but starts it.
    let out = zolder_cmd(&cfg)
        .args(["flush", "--no-wait"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    wait_until("the smarthost got it", || isp.all().len() == 1).await;
    d.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_smarthost_flush_exits_75_and_the_queue_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "\"127.0.0.1:0\"", "\"127.0.0.1/32\"", "");
    let out = zolder_cmd(&cfg).arg("check").output().unwrap();
    let text = s(&out.stdout) + &s(&out.stderr);
    assert!(
        text.contains("listen.submission") && text.contains("no [smarthost]"),
        "{text}"
    );
    let mut c = zolder_cmd(&cfg)
        .args(["sendmail", "friend@remote.example"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: x\n\nx\n")
        .unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(0));
    // No daemon: flush runs the queue itself.
    let out = zolder_cmd(&cfg).arg("flush").output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", s(&out.stdout));
    assert!(s(&out.stdout).contains("deferred=1"), "{}", s(&out.stdout));
    let out = zolder_cmd(&cfg).args(["queue", "list"]).output().unwrap();
    assert!(
        s(&out.stdout).contains("no smarthost configured"),
        "{}",
        s(&out.stdout)
    );
    // The run is in the event log `zolder status` shows.
    let out = zolder_cmd(&cfg).arg("status").output().unwrap();
    let st = s(&out.stdout);
    let events = st.split("Recent events").nth(1).unwrap_or_default();
    assert!(
        events.contains("relay") && events.contains("deferred=1"),
        "{st}"
    );
    // Through a running daemon: the same answer.
    let d = Daemon::start(&cfg).await;
    let out = zolder_cmd(&cfg).arg("flush").output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", s(&out.stdout));
    d.running.shutdown().await;
}

#[test]
fn serve_as_root_drops_to_user_or_refuses() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The dropped daemon must reach its config and data_dir.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let base =
        "hostname = \"zolder.thuis\"\ndata_dir = \"data\"\n[listen]\nstatus = \"127.0.0.1:0\"\n";
    let cfg = dir.path().join("zolder.toml");
    std::fs::write(&cfg, base).unwrap();
    let out = zolder_cmd(&cfg).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(77));
    assert!(
        s(&out.stderr).contains("refusing to run as root"),
        "{}",
        s(&out.stderr)
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing written before refusing"
    );

    std::fs::write(&cfg, format!("user = \"nobody\"\n{base}")).unwrap();
    let mut child = zolder_cmd(&cfg)
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let db = dir.path().join("data/zolder.db");
    let mut seen = String::new();
    for _ in 0..200 {
        seen = std::fs::read_to_string(&status_file).unwrap_or_default();
        if db.exists() && seen.contains(&format!("Uid:\t{0}\t{0}\t{0}\t{0}", nobody.uid)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = s(&out.stderr);
    assert!(
        seen.contains(&format!("Uid:\t{0}\t{0}\t{0}\t{0}", nobody.uid)),
        "{seen}\n{log}"
    );
    assert!(
        seen.contains(&format!("Gid:\t{0}\t{0}\t{0}\t{0}", nobody.gid)),
        "{seen}"
    );
    let groups = seen.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(groups.trim(), "Groups:", "supplementary groups cleared");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), nobody.uid.as_raw());
    assert_eq!(
        std::fs::metadata(dir.path().join("data")).unwrap().mode() & 0o777,
        0o750
    );
    assert!(log.contains("running as `nobody`"), "{log}");
    assert_eq!(out.status.code(), Some(0), "{log}");
}

#[test]
fn exit_codes_and_sendmail_help_are_documented() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `zolder fetch"))
        .unwrap();
    assert!(row.contains("69 when an account needs the admin"), "{row}");
    let out = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .args(["fetch", "--help"])
        .output()
        .unwrap();
    assert!(
        s(&out.stdout).contains("69 when an account needs the admin"),
        "{}",
        s(&out.stdout)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .args(["sendmail", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(
        s(&out.stdout).contains("usage: sendmail"),
        "{}",
        s(&out.stdout)
    );

    // Called as mailq, its errors say mailq.
    let dir = tempfile::tempdir().unwrap();
    let mailq = dir.path().join("mailq");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_zolder"), &mailq).unwrap();
    let out = Command::new(&mailq)
        .env("ZOLDER_CONFIG", dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(s(&out.stderr).starts_with("mailq: "), "{}", s(&out.stderr));
}
