//! Faults a real Dovecot will not produce, from a scripted POP3 server on loopback:
//! the connection dropped in the middle of a RETR, and a server lying about a
//! message's size. Nothing partial may be delivered, nothing may be deleted at the
//! ISP, and the next poll must complete the job exactly once.

mod common;

use std::sync::{Arc, Mutex};

use common::{MaildirDeliver, config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use zolder::fetch::{FetchDb, FetchError, Fetcher};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Close the connection halfway through the second RETR answer.
    DropMidRetr,
    /// Announce 100 bytes in LIST, send a body far over limits.message_size.
    LieAboutSize,
}

struct Mailbox {
    msgs: Vec<(String, Vec<u8>)>,
    fault: Fault,
    connections: usize,
    /// Every command received, in order (the verb and its arguments).
    commands: Vec<String>,
}

fn message(i: usize) -> Vec<u8> {
    let mut m =
        format!("Message-ID: <fault.{i}@example.org>\r\nSubject: fault {i}\r\n\r\n").into_bytes();
    for l in 0..200 {
        m.extend_from_slice(
            format!("line {l} of message {i}\r\n.starts with a dot\r\n").as_bytes(),
        );
    }
    m
}

/// A minimal POP3 server (RFC 1939 with UIDL and PIPELINING) over `mb`.
async fn serve(mb: Arc<Mutex<Mailbox>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let mb = mb.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                let fault = {
                    let mut g = mb.lock().unwrap();
                    g.connections += 1;
                    g.fault
                };
                let mut deleted = Vec::new();
                w.write_all(b"+OK fake POP3 ready\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return; // dropped: deletions are not committed
                    }
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let msgs = {
                        let mut g = mb.lock().unwrap();
                        g.commands.push(line.trim_end().to_string());
                        g.msgs.clone()
                    };
                    let size_of = |i: usize| {
                        if fault == Fault::LieAboutSize {
                            100
                        } else {
                            msgs[i].1.len()
                        }
                    };
                    let out: Vec<u8> =
                        match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
                            Some("CAPA") => b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n".to_vec(),
                            Some("USER") | Some("PASS") | Some("NOOP") => b"+OK\r\n".to_vec(),
                            Some("UIDL") => {
                                let mut o = b"+OK\r\n".to_vec();
                                for (i, (u, _)) in msgs.iter().enumerate() {
                                    o.extend_from_slice(format!("{} {u}\r\n", i + 1).as_bytes());
                                }
                                o.extend_from_slice(b".\r\n");
                                o
                            }
                            Some("LIST") if words.len() > 1 => match words[1].parse::<usize>() {
                                Ok(n) if (1..=msgs.len()).contains(&n) => {
                                    format!("+OK {n} {}\r\n", size_of(n - 1)).into_bytes()
                                }
                                _ => b"-ERR no such message\r\n".to_vec(),
                            },
                            Some("LIST") => {
                                let mut o = b"+OK\r\n".to_vec();
                                for i in 0..msgs.len() {
                                    o.extend_from_slice(
                                        format!("{} {}\r\n", i + 1, size_of(i)).as_bytes(),
                                    );
                                }
                                o.extend_from_slice(b".\r\n");
                                o
                            }
                            Some("RETR") => {
                                let n: usize = words[1].parse().unwrap();
                                let body = if fault == Fault::LieAboutSize {
                                    vec![b'x'; 3 * 1024 * 1024]
                                } else {
                                    msgs[n - 1].1.clone()
                                };
                                let mut o = b"+OK\r\n".to_vec();
                                for l in body.split_inclusive(|&b| b == b'\n') {
                                    if l.first() == Some(&b'.') {
                                        o.push(b'.');
                                    }
                                    o.extend_from_slice(l);
                                }
                                o.extend_from_slice(b".\r\n");
                                if fault == Fault::DropMidRetr && n == 2 {
                                    w.write_all(&o[..o.len() / 2]).await.unwrap();
                                    return;
                                }
                                o
                            }
                            Some("DELE") => {
                                deleted.push(words[1].parse::<usize>().unwrap());
                                b"+OK\r\n".to_vec()
                            }
                            Some("QUIT") => {
                                {
                                    let mut g = mb.lock().unwrap();
                                    let mut keep = Vec::new();
                                    for (i, m) in g.msgs.drain(..).enumerate() {
                                        if !deleted.contains(&(i + 1)) {
                                            keep.push(m);
                                        }
                                    }
                                    g.msgs = keep;
                                }
                                let _ = w.write_all(b"+OK bye\r\n").await;
                                return;
                            }
                            _ => b"-ERR unknown\r\n".to_vec(),
                        };
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn rig(port: u16, extra: &str) -> (Fetcher, Arc<MaildirDeliver>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let acc = format!(
        "[limits]\nmessage_size = 1048576\n[[accounts]]\nname = \"fake\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\ndeliver_to = [\"bouke\"]\n{extra}\n"
    );
    let cfg = config(dir.path(), &["bouke"], &acc);
    let db = FetchDb::open(&cfg.db_path()).unwrap();
    let d = Arc::new(MaildirDeliver::new(&dir.path().join("mail")));
    let mut f = Fetcher::new(Arc::new(cfg), db, d.clone());
    f.progress = zolder::fetch::progress::Progress::quiet();
    (f, d, dir)
}

#[tokio::test]
async fn connection_dropped_mid_retr_loses_and_duplicates_nothing() {
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=3).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::DropMidRetr,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let (f, d, _dir) = rig(port, "keep = false");
    let acc = f.config.accounts[0].clone();

    let o = f.poll(&acc).await;
    let e = o.error.expect("the drop must fail the poll");
    assert!(e.is_temporary(), "{e}");
    assert!(matches!(e, FetchError::Io(_)), "{e}");
    assert_eq!(o.fetched, 0);
    assert_eq!(
        d.count("bouke"),
        0,
        "a half-received batch is not delivered"
    );
    assert_eq!(
        mb.lock().unwrap().msgs.len(),
        3,
        "nothing deleted at the ISP"
    );

    mb.lock().unwrap().fault = Fault::None;
    let o = f.poll(&acc).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!((o.fetched, o.deleted), (3, 3));
    assert_eq!(d.count("bouke"), 3);
    assert!(mb.lock().unwrap().msgs.is_empty());
    // The dot-stuffed lines arrived unstuffed, byte for byte.
    let stored: Vec<Vec<u8>> = std::fs::read_dir(d.maildir("bouke").join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    for i in 1..=3 {
        assert!(stored.contains(&message(i)), "message {i} differs");
    }
    let o = f.poll(&acc).await;
    assert_eq!((o.fetched, o.deleted), (0, 0));
    assert_eq!(d.count("bouke"), 3);
}

#[tokio::test]
async fn server_lying_about_size_is_cut_off() {
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: vec![("uidl-1".into(), message(1))],
        fault: Fault::LieAboutSize,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let (f, d, _dir) = rig(port, "keep = false");
    let acc = f.config.accounts[0].clone();
    let o = f.poll(&acc).await;
    let e = o.error.expect("an oversized answer must fail the poll");
    assert!(e.to_string().contains("larger than 1048576"), "{e}");
    assert_eq!(d.count("bouke"), 0);
    assert_eq!(mb.lock().unwrap().msgs.len(), 1);
}

#[tokio::test]
async fn deferred_delivery_keeps_the_message_at_the_isp() {
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=2).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::None,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let (f, d, _dir) = rig(port, "keep = false");
    let acc = f.config.accounts[0].clone();
    d.tempfail.lock().unwrap().insert("bouke".into());
    let o = f.poll(&acc).await;
    assert!(o.error.is_none());
    assert_eq!((o.fetched, o.deferred, o.deleted), (0, 2, 0));
    assert_eq!(o.result(), "tempfail");
    assert_eq!(mb.lock().unwrap().msgs.len(), 2);
    d.tempfail.lock().unwrap().clear();
    let o = f.poll(&acc).await;
    assert_eq!((o.fetched, o.deleted), (2, 2));
    assert_eq!(o.result(), "ok");
    assert!(mb.lock().unwrap().msgs.is_empty());
}

/// A `keep` re-poll that finds nothing new asks the server only for UIDL — no sizes,
/// no RETR; when a little new mail has come it asks just those messages' sizes
/// (`LIST n`, pipelined) instead of the whole listing, and fetches only them.
#[tokio::test]
async fn keep_repoll_asks_only_what_it_needs() {
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=5).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::None,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let (f, d, _dir) = rig(port, "keep = true");
    let acc = f.config.accounts[0].clone();
    let o = f.poll(&acc).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!((o.fetched, o.deleted), (5, 0));

    let sent = |mb: &Arc<Mutex<Mailbox>>| std::mem::take(&mut mb.lock().unwrap().commands);
    sent(&mb);
    let o = f.poll(&acc).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.fetched, 0);
    let cmds = sent(&mb);
    let verbs: Vec<&str> = cmds
        .iter()
        .filter_map(|c| c.split_whitespace().next())
        .filter(|v| !matches!(*v, "CAPA" | "USER" | "PASS"))
        .collect();
    assert_eq!(verbs, ["UIDL", "QUIT"], "nothing new: {cmds:?}");

    mb.lock()
        .unwrap()
        .msgs
        .extend((6..=7).map(|i| (format!("uidl-{i}"), message(i))));
    let o = f.poll(&acc).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.fetched, 2);
    let cmds = sent(&mb);
    for want in ["LIST 6", "LIST 7", "RETR 6", "RETR 7"] {
        assert!(cmds.iter().any(|c| c == want), "{want} missing: {cmds:?}");
    }
    assert!(
        !cmds.iter().any(|c| c == "LIST" || c == "RETR 1"),
        "no full listing, no old message: {cmds:?}"
    );
    assert_eq!(d.count("bouke"), 7);
}

/// `schedule = "manual"` (the dial-up mode): the daemon does not poll on its own, and
/// a wake-up (SIGUSR1 in `zolder serve`, what an `ip-up` script sends) polls now.
#[tokio::test(flavor = "multi_thread")]
async fn manual_account_waits_for_the_wake_up_signal() {
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=3).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::None,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let acc = format!(
        "[[accounts]]\nname = \"dialup\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\ndeliver_to = [\"bouke\"]\nkeep = false\nschedule = \"manual\"\n"
    );
    let cfg = config(dir.path(), &["bouke"], &acc);
    let running = zolder::daemon::start(cfg, dir.path().join("zolder.toml"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        mb.lock().unwrap().connections,
        0,
        "a manual account is not polled at start"
    );

    running.wake_up();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !mb.lock().unwrap().msgs.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the wake-up did not fetch the mail"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let inbox = running.ctx.spool.select("bouke", "INBOX").unwrap();
    assert_eq!(inbox.messages.len(), 3);
    assert_eq!(mb.lock().unwrap().connections, 1);
    running.shutdown().await;
}

/// `fetchmailrc = "PATH"` used live: a POP3 `keep` account starts from fetchmail's
/// `.fetchids` the first time, so what fetchmail already fetched is not fetched again;
/// once zolder has state for the account, a stale `.fetchids` changes nothing.
#[tokio::test]
async fn live_fetchmailrc_keep_account_starts_from_fetchids() {
    use std::os::unix::fs::PermissionsExt;
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=4).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::None,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set idfile \"{}/fetchids\"\npoll isp via 127.0.0.1 service {port} proto pop3 uidl\n  user u password p is bouke here keep sslproto ''\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    // fetchmail saw the first two (key: remote user @ the `via` host).
    std::fs::write(
        dir.path().join("fetchids"),
        "u@127.0.0.1 uidl-1\nu@127.0.0.1 uidl-2\n",
    )
    .unwrap();
    let text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\npostmaster = \"bouke\"\nfetchmailrc = \"{}\"\n[[users]]\nname = \"bouke\"\n",
        rc.display()
    );
    let cfg =
        zolder::config::Config::from_str_at(&text, &dir.path().join("zolder.toml"), false).unwrap();
    let (accounts, _) = zolder::config::fetchmailrc::load_accounts(&cfg).unwrap();
    assert_eq!(accounts.len(), 1);
    assert!(accounts[0].keep && accounts[0].source.is_some());
    let db = FetchDb::open(&cfg.db_path()).unwrap();
    let d = Arc::new(MaildirDeliver::new(&dir.path().join("mail")));
    let mut f = Fetcher::new(Arc::new(cfg), db, d.clone());
    f.progress = zolder::fetch::progress::Progress::quiet();

    assert_eq!(zolder::fetch::seed_from_fetchids(&f, &accounts).await, 2);
    let o = f.poll(&accounts[0]).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        (o.fetched, o.deleted),
        (2, 0),
        "only the two fetchmail never saw"
    );
    assert_eq!(d.count("bouke"), 2);
    let stored: Vec<Vec<u8>> = std::fs::read_dir(d.maildir("bouke").join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(stored.contains(&message(3)) && stored.contains(&message(4)));

    // Later: the account has state, the .fetchids is stale; nothing is seeded again.
    assert_eq!(zolder::fetch::seed_from_fetchids(&f, &accounts).await, 0);
    mb.lock().unwrap().msgs.push(("uidl-5".into(), message(5)));
    let o = f.poll(&accounts[0]).await;
    assert_eq!((o.fetched, o.deleted), (1, 0));
    assert_eq!(mb.lock().unwrap().msgs.len(), 5, "keep: nothing deleted");
}

/// SIGHUP (`Fetcher::reload`): the scheduler re-reads the config file and starts an
/// `[[accounts]]` entry added since, without a restart.
#[tokio::test]
async fn reload_starts_an_account_added_to_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=2).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::None,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &["bouke"], "");
    let db = FetchDb::open(&cfg.db_path()).unwrap();
    let d = Arc::new(MaildirDeliver::new(&dir.path().join("mail")));
    let mut f = Fetcher::new(Arc::new(cfg), db, d.clone());
    f.progress = zolder::fetch::progress::Progress::quiet();
    let task = tokio::spawn(zolder::fetch::scheduler::run(
        f.clone(),
        vec![],
        Arc::new(tokio::sync::Notify::new()),
    ));

    // The admin adds an account and sends SIGHUP.
    let path = dir.path().join("zolder.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[[accounts]]\nname = \"fake\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\ndeliver_to = [\"bouke\"]\ninterval = 1\n"
    ));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    f.reload.notify_one();

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mb.lock().unwrap().msgs.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    f.shutdown.cancel();
    task.await.unwrap();
    assert!(
        mb.lock().unwrap().msgs.is_empty(),
        "the new account was polled"
    );
    assert_eq!(d.count("bouke"), 2);
}

/// `zolder fetch` as cron or the dial-up hook runs it, twice: the first run delivers
/// through the real pipeline; the second finds nothing new, asks only for UIDL, and
/// never needs to open the delivery pipeline. The WAL stays beside the database
/// between runs (the close skips its checkpoint) and nothing in it is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_command_twice_keeps_state_between_runs() {
    let mb = Arc::new(Mutex::new(Mailbox {
        msgs: (1..=4).map(|i| (format!("uidl-{i}"), message(i))).collect(),
        fault: Fault::None,
        connections: 0,
        commands: Vec::new(),
    }));
    let port = serve(mb.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let acc = format!(
        "[[accounts]]\nname = \"fake\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\ndeliver_to = [\"bouke\"]\nkeep = true\n"
    );
    config(dir.path(), &["bouke"], &acc);
    // It holds a password: zolder refuses it readable by others.
    use std::os::unix::fs::PermissionsExt;
    let toml = dir.path().join("zolder.toml");
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_zolder"));
        c.arg("-c").arg(dir.path().join("zolder.toml")).arg("fetch");
        c.output()
    };
    let out = run().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("fake: 4 fetched"), "{stdout}");
    let new = dir.path().join("data/mail/bouke/Maildir/new");
    assert_eq!(std::fs::read_dir(&new).unwrap().count(), 4);
    assert!(
        dir.path().join("data/zolder.db-wal").exists(),
        "the WAL is kept"
    );

    mb.lock().unwrap().commands.clear();
    let out = run().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("fake: 0 fetched"), "{stdout}");
    let cmds = mb.lock().unwrap().commands.clone();
    assert!(
        !cmds
            .iter()
            .any(|c| c.starts_with("LIST") || c.starts_with("RETR")),
        "{cmds:?}"
    );
    assert_eq!(std::fs::read_dir(&new).unwrap().count(), 4);

    // What the runs recorded is in the database, WAL and all.
    let c = zolder::db::open(&dir.path().join("data/zolder.db")).unwrap();
    let seen: i64 = c
        .query_row(
            "SELECT count(*) FROM fetch_seen WHERE account = 'fake'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seen, 4);
    let (result, fetched): (String, i64) = c
        .query_row(
            "SELECT result, fetched FROM fetch_status WHERE account = 'fake'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((result.as_str(), fetched), ("ok", 0));
}
