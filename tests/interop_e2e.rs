//! End to end through the real binary: a Dovecot ISP, `zolder fetch` with the whole
//! delivery pipeline, and a real clamd. While clamd is down the fetched mail stays at
//! the ISP (a temporary failure, never delivered unscanned); once clamd is back, the next
//! `zolder fetch` delivers the clean message, quarantines the EICAR one with a notice to
//! the postmaster, and empties the ISP mailbox. Skips (printing why) without Dovecot,
//! clamd or root.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ClamdServer, Isp, interop_dir};

fn zolder(cfg: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zolder"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn inbox_files(data: &Path, user: &str) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(data.join("mail").join(user).join("Maildir").join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn clamd_down_keeps_mail_at_the_isp_then_delivers_and_quarantines() {
    let Some(clamd) = ClamdServer::prepare() else {
        assert!(
            std::env::var_os("ZOLDER_INTEROP").is_none(),
            "ZOLDER_INTEROP is set but clamd is missing"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(isp) = rt.block_on(async { Isp::start(None) }) else {
        return;
    };
    let scripts = interop_dir().expect("interop scripts");

    // Two messages at the ISP: a clean one and one carrying the EICAR test file.
    let eicar = Command::new("bash")
        .arg(scripts.join("eicar.sh"))
        .output()
        .unwrap()
        .stdout;
    let clean = b"From: Oma <oma@example.org>\r\nTo: bouke@zolder.test\r\nSubject: clean\r\nMessage-ID: <clean@example.org>\r\n\r\nHallo!\r\n".to_vec();
    let mut virus = b"From: Bad <bad@example.org>\r\nTo: bouke@zolder.test\r\nSubject: virus\r\nMessage-ID: <virus@example.org>\r\n\r\n".to_vec();
    virus.extend_from_slice(&eicar);
    virus.extend_from_slice(b"\r\n");
    isp.doveadm(&["save", "-u", "alice", "-m", "INBOX"], Some(&clean));
    isp.doveadm(&["save", "-u", "alice", "-m", "INBOX"], Some(&virus));
    assert_eq!(isp.count("alice", "INBOX"), 2);

    let dir = tempfile::tempdir().unwrap();
    let clam_port = clamd.port;
    std::fs::write(dir.path().join("isp-pass"), "secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("isp-pass"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cfg = dir.path().join("zolder.toml");
    std::fs::write(
        &cfg,
        format!(
            "hostname = \"zolder.test\"\ndata_dir = \"data\"\nlocal_domains = [\"zolder.test\"]\npostmaster = \"sjoerd\"\n\
             [[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.test\"]\n\
             [[users]]\nname = \"sjoerd\"\naddresses = [\"sjoerd@zolder.test\"]\n\
             [scan]\nclamd = \"tcp:127.0.0.1:{clam_port}\"\n\
             [[accounts]]\nname = \"isp\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             username = \"alice\"\npassword_file = \"isp-pass\"\ndeliver_to = [\"bouke\"]\n",
            isp.pop3
        ),
    )
    .unwrap();
    let data = dir.path().join("data");

    // 1. clamd is not running: temporary failure, nothing delivered, nothing deleted.
    let (code, log) = zolder(&cfg, &["fetch"]);
    assert_eq!(code, 75, "exit 75 = try again later: {log}");
    assert_eq!(
        isp.count("alice", "INBOX"),
        2,
        "mail stays at the ISP: {log}"
    );
    assert_eq!(
        inbox_files(&data, "bouke"),
        0,
        "nothing delivered unscanned: {log}"
    );

    // 2. clamd back: the clean message arrives, the virus is quarantined, the ISP is empty.
    clamd.up();
    let (code, log) = zolder(&cfg, &["fetch"]);
    clamd.down();
    assert_eq!(code, 0, "{log}");
    assert_eq!(isp.count("alice", "INBOX"), 0, "{log}");
    assert_eq!(inbox_files(&data, "bouke"), 1, "{log}");
    let (code, list) = zolder(&cfg, &["quarantine", "list"]);
    assert_eq!(code, 0, "{list}");
    assert!(list.contains("EICAR") || list.contains("Eicar"), "{list}");
    // The postmaster's notice waits in (or has left) the queue as generated mail; with no
    // daemon running it is queued for local delivery.
    let (_, q) = zolder(&cfg, &["queue", "list"]);
    assert!(
        q.contains("sjoerd") || inbox_files(&data, "sjoerd") == 1,
        "notice for the postmaster: {q}"
    );

    // 3. A re-poll finds nothing and delivers nothing twice.
    let (code, log) = zolder(&cfg, &["fetch"]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(inbox_files(&data, "bouke"), 1);
}
