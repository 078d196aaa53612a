//! `zolder backup` while mail arrives, `--incremental`, `--verify`, and `zolder
//! restore` into a new data_dir that a second daemon then serves: every message the
//! snapshot's index holds is there over IMAP, with its size and its bytes.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;

const PASSWORD: &str = "geheim";

fn write_config(dir: &Path, data: &str) -> std::path::PathBuf {
    let hash = zolder::auth::hash_password(PASSWORD).unwrap();
    let text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"{data}\"\nlocal_domains = [\"zolder.test\"]\n\
         postmaster = \"bouke\"\n[listen]\nimap = \"127.0.0.1:0\"\n\
         [[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.test\"]\npassword_hash = \"{hash}\"\n"
    );
    let p = dir.join(format!("{data}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn zolder(cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zolder"))
        .env_remove("ZOLDER_CONFIG")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// (uid, size) of bouke's INBOX in the database at `db`.
fn indexed(db: &Path) -> Vec<(u32, u32)> {
    let c = zolder::db::open(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT m.uid, m.size FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
             WHERE b.user = 'bouke' AND b.name = 'INBOX' ORDER BY m.uid",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_delivery_restore_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = write_config(dir.path(), "live");
    let cfg = zolder::config::Config::load(&cfg_path).unwrap();
    let running = zolder::daemon::start(cfg, cfg_path.clone()).await.unwrap();
    let queue = running.queue.clone().unwrap();

    // Continuous delivery: messages of growing size, one after another.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let deliver = {
        let (stop, sent, queue) = (stop.clone(), sent.clone(), queue.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let body = "x".repeat(100 + (i * 37) % 20_000);
                let bytes = format!(
                    "From: oma@family.example\r\nSubject: msg {i}\r\nMessage-ID: <{i}@family.example>\r\n\r\n{body}\r\n"
                );
                queue
                    .enqueue(zolder::queue::NewMessage {
                        id: None,
                        sender: Some("oma@family.example".into()),
                        recipients: vec![zolder::queue::NewRcpt::plain("bouke")],
                        bytes: bytes.into_bytes(),
                        source: "test".into(),
                        envid: None,
                        ret: None,
                        auth_user: None,
                    })
                    .await
                    .unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let live_db = dir.path().join("live/zolder.db");
    while indexed(&live_db).len() < 50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dest = dir.path().join("backups");
    let (c, d) = (cfg_path.clone(), dest.clone());
    let out = tokio::task::spawn_blocking(move || zolder(&c, &["backup", d.to_str().unwrap()]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(s(&out.stdout).contains("hard-linked"), "{}", s(&out.stdout));
    let during = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    deliver.await.unwrap();
    assert!(during > 50, "delivery went on while the backup ran");

    // A second, incremental snapshot reuses the first one's files.
    let (c, d) = (cfg_path.clone(), dest.clone());
    let out = tokio::task::spawn_blocking(move || {
        zolder(&c, &["backup", d.to_str().unwrap(), "--incremental"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let line = s(&out.stdout).trim().to_string();
    let reused: usize = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" from the last snapshot)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(reused >= 50, "{line}");
    running.shutdown().await;

    let out = zolder(&cfg_path, &["backup", "--verify", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));

    // Restore the first (taken during delivery) into a new data_dir and serve it.
    let first = std::fs::read_dir(&dest)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("MANIFEST").exists() && !p.is_symlink())
        .min()
        .unwrap();
    let new_cfg = write_config(dir.path(), "restored");
    let out = zolder(&new_cfg, &["restore", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    // Not into a data_dir that has something in it.
    let out = zolder(&new_cfg, &["restore", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(73), "{}", s(&out.stderr));

    let want = indexed(&first.join("zolder.db"));
    assert!(want.len() >= 50, "{}", want.len());
    let cfg = zolder::config::Config::load(&new_cfg).unwrap();
    let running = zolder::daemon::start(cfg, new_cfg.clone()).await.unwrap();
    let tcp = tokio::net::TcpStream::connect(running.addr("imap"))
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().unwrap();
    let mut sess = client
        .login("bouke", PASSWORD)
        .await
        .map_err(|e| e.0)
        .unwrap();
    let mb = sess.select("INBOX").await.unwrap();
    assert!(mb.exists as usize >= want.len());
    let got: Vec<(u32, u32, usize)> = sess
        .fetch("1:*", "(UID RFC822.SIZE BODY.PEEK[])")
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|m| {
            let m = m.unwrap();
            (m.uid.unwrap(), m.size.unwrap(), m.body().unwrap().len())
        })
        .collect();
    for (uid, size) in &want {
        let g = got.iter().find(|g| g.0 == *uid);
        assert_eq!(
            g.map(|g| (g.1, g.2 as u32)),
            Some((*size, *size)),
            "uid {uid}"
        );
    }
    drop(sess);
    running.shutdown().await;

    // Tampering is found: a snapshot file replaced by other bytes.
    let victim = std::fs::read_dir(first.join("files/mail/bouke/Maildir/new"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::remove_file(&victim).unwrap();
    std::fs::write(&victim, b"not the message").unwrap();
    let out = zolder(&cfg_path, &["backup", "--verify", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", s(&out.stderr));
    assert!(
        s(&out.stderr).contains("files/mail/bouke/Maildir/new/"),
        "{}",
        s(&out.stderr)
    );
}
