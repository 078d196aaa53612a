//! imapd against real client programs: Python's imaplib exercising every command,
//! mbsync (isync) syncing a Maildir both ways and then finding nothing to do (and once
//! more over COMPRESS=DEFLATE), and
//! mutt reading and moving a message in batch mode, fetchmail and getmail6 fetching
//! from it over IMAP as from an ISP. Each test prints
//! "skipped: <prog> not installed" and returns when its program is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, Zolder, have};
use zolder::config::Config;

const PASSWORD: &str = "geheim";

/// The daemon with an IMAP listener and the user bouke.
async fn start() -> Server {
    Zolder::new("zolder.test")
        .listen("imap")
        .user("bouke", PASSWORD, &[])
        .start()
        .await
}

async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("program runs"))
        .await
        .unwrap()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_imaplib_every_command() {
    if !have("python3") {
        println!("skipped: python3 not installed");
        return;
    }
    let srv = start().await;
    let mut cmd = Command::new("python3");
    cmd.arg(script("imap_imaplib.py"))
        .arg("127.0.0.1")
        .arg(srv.addr("imap").port().to_string())
        .arg("bouke")
        .arg(PASSWORD);
    let out = run(cmd).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "imaplib: {text}");
    assert!(text.contains("all commands OK"), "{text}");
    srv.running.shutdown().await;
}

fn write_maildir_message(dir: &Path, name: &str, subject: &str) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let msg = format!(
        "From: Oma <oma@example.nl>\nTo: bouke@zolder.test\nSubject: {subject}\n\
         Message-ID: <{name}@example.nl>\nDate: Mon, 4 Mar 2024 12:00:00 +0100\n\nHallo\n"
    );
    std::fs::write(dir.join("cur").join(format!("{name}:2,S")), msg).unwrap();
}

fn count_files(dir: &Path) -> usize {
    ["cur", "new"]
        .iter()
        .map(|s| {
            std::fs::read_dir(dir.join(s))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn mbsync_two_way_then_nothing_to_do() {
    if !have("mbsync") {
        println!("skipped: mbsync not installed");
        return;
    }
    let srv = start().await;
    let local = srv.root.as_path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let inbox = local.join("INBOX");
    write_maildir_message(&inbox, "1700000000.l1.host", "lokaal een");
    write_maildir_message(&inbox, "1700000001.l2.host", "lokaal twee");
    let rc = srv.root.as_path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount zolder\nHost 127.0.0.1\nPort {}\nUser bouke\nPass {PASSWORD}\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore zolder-remote\nAccount zolder\n\n\
             MaildirStore local\nPath {}/\nInbox {}\nSubFolders Verbatim\n\n\
             Channel c\nFar :zolder-remote:\nNear :local:\nPatterns INBOX\n\
             Create Both\nSync All\nExpunge Both\nSyncState *\n",
            srv.addr("imap").port(),
            local.display(),
            inbox.display()
        ),
    )
    .unwrap();
    let mbsync = |verbose: bool| {
        let mut c = Command::new("mbsync");
        c.arg("-c").arg(&rc);
        if verbose {
            c.arg("-V");
        }
        c.arg("-a");
        c
    };
    // First run: the two local messages go up.
    let out = run(mbsync(false)).await;
    assert!(
        out.status.success(),
        "mbsync 1: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A message appears on the server side (another client's APPEND).
    let cfg = Config::load(&srv.root.as_path().join("zolder.toml")).unwrap();
    let spool = zolder::spool::Spool::open(&cfg).unwrap();
    let s2 = spool.clone();
    tokio::task::spawn_blocking(move || {
        s2.append(
            "bouke",
            "INBOX",
            b"Subject: van de server\r\n\r\nhoi\r\n".to_vec(),
            &zolder::spool::Flags::new(),
            None,
        )
        .unwrap()
    })
    .await
    .unwrap();
    let out = run(mbsync(false)).await;
    assert!(out.status.success(), "mbsync 2 failed");
    assert_eq!(count_files(&inbox), 3, "server message came down");
    let st = tokio::task::spawn_blocking(move || spool.select("bouke", "INBOX").unwrap())
        .await
        .unwrap();
    assert_eq!(st.messages.len(), 3, "local messages went up");
    // Third run: nothing changed on either side, so nothing is transferred.
    let out = run(mbsync(true)).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync 3: {text}");
    assert_eq!(count_files(&inbox), 3, "{text}");
    for verb in [
        "uploading",
        "downloading",
        "expunging",
        "adding",
        "propagating",
    ] {
        assert!(
            !text.to_lowercase().contains(&format!("{verb} message")),
            "third run did work ({verb}): {text}"
        );
    }
    srv.running.shutdown().await;
}

/// mbsync (isync ≥ 1.4, built with zlib) turns on COMPRESS=DEFLATE by itself when
/// the server offers it: a sync over a compressed connection, both ways.
#[tokio::test(flavor = "multi_thread")]
async fn mbsync_over_compress_deflate() {
    if !have("mbsync") {
        println!("skipped: mbsync not installed");
        return;
    }
    let srv = start().await;
    let local = srv.root.as_path().join("local");
    let inbox = local.join("INBOX");
    write_maildir_message(&inbox, "1700000000.l1.host", "lokaal");
    let cfg = Config::load(&srv.root.as_path().join("zolder.toml")).unwrap();
    let spool = zolder::spool::Spool::open(&cfg).unwrap();
    let s2 = spool.clone();
    tokio::task::spawn_blocking(move || {
        let body = format!(
            "Subject: gecomprimeerd\r\n\r\n{}\r\n",
            "tekst ".repeat(2000)
        );
        s2.append(
            "bouke",
            "INBOX",
            body.into_bytes(),
            &zolder::spool::Flags::new(),
            None,
        )
        .unwrap()
    })
    .await
    .unwrap();
    let rc = srv.root.as_path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount zolder\nHost 127.0.0.1\nPort {}\nUser bouke\nPass {PASSWORD}\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore zolder-remote\nAccount zolder\n\n\
             MaildirStore local\nPath {}/\nInbox {}\nSubFolders Verbatim\n\n\
             Channel c\nFar :zolder-remote:\nNear :local:\nPatterns INBOX\n\
             Create Both\nSync All\nSyncState *\n",
            srv.addr("imap").port(),
            local.display(),
            inbox.display()
        ),
    )
    .unwrap();
    let mut c = Command::new("mbsync");
    c.arg("-c").arg(&rc).arg("-Dn").arg("-a");
    let out = run(c).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync: {text}");
    if !text.contains("COMPRESS DEFLATE") {
        println!("skipped: this mbsync does not use COMPRESS=DEFLATE");
        srv.running.shutdown().await;
        return;
    }
    assert!(text.contains("OK DEFLATE active"), "{text}");
    assert_eq!(count_files(&inbox), 2, "server message came down: {text}");
    let st = tokio::task::spawn_blocking(move || spool.select("bouke", "INBOX").unwrap())
        .await
        .unwrap();
    assert_eq!(st.messages.len(), 2, "local message went up: {text}");
    srv.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutt_reads_and_moves_a_message() {
    if !have("mutt") || !have("script") {
        println!("skipped: mutt (or script) not installed");
        return;
    }
    let srv = start().await;
    let cfg = Config::load(&srv.root.as_path().join("zolder.toml")).unwrap();
    let spool = zolder::spool::Spool::open(&cfg).unwrap();
    let s2 = spool.clone();
    tokio::task::spawn_blocking(move || {
        s2.append(
            "bouke",
            "INBOX",
            b"From: oma@example.nl\r\nSubject: voor mutt\r\n\r\nLees mij.\r\n".to_vec(),
            &zolder::spool::Flags::new(),
            None,
        )
        .unwrap()
    })
    .await
    .unwrap();
    let url = format!(
        "imap://bouke:{PASSWORD}@127.0.0.1:{}/",
        srv.addr("imap").port()
    );
    let rc = srv.root.as_path().join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder=\"{url}\"\nset spoolfile=\"+INBOX\"\nset ssl_starttls=no\n\
             set ssl_force_tls=no\nset confirmappend=no\nset confirmcreate=no\nset move=no\n\
             set delete=yes\nset quit=yes\nset pager_stop=yes\nset wait_key=no\n\
             set header_cache=\"\"\nset message_cachedir=\"\"\n"
        ),
    )
    .unwrap();
    // mutt wants a terminal; `script` gives it one. The keys: open the message (it
    // becomes \Seen), leave the pager, save it to Trash, sync (expunge), quit.
    let mut cmd = Command::new("script");
    cmd.arg("-qec")
        .arg(format!(
            "mutt -n -F {} -f {url}INBOX -e 'push <display-message><exit><save-message>=Trash<enter><sync-mailbox><quit>'",
            rc.display()
        ))
        .arg("/dev/null")
        .env("TERM", "vt100");
    let out = run(cmd).await;
    assert!(out.status.success(), "mutt failed");
    let st = tokio::task::spawn_blocking(move || {
        (
            spool.select("bouke", "INBOX").unwrap(),
            spool.select("bouke", "Trash").unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(st.0.messages.len(), 0, "moved out of INBOX");
    assert_eq!(st.1.messages.len(), 1, "into Trash");
    assert!(st.1.messages[0].flags.contains("\\Seen"), "read by mutt");
    srv.running.shutdown().await;
}

/// Puts `n` messages into bouke's INBOX through the daemon's own delivery pipeline.
async fn deliver_n(server: &Server, first: usize, n: usize) {
    use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};
    let msgs = (first..first + n)
        .map(|i| Incoming {
            envelope: Envelope::new(
                Some("alice@example.org".into()),
                vec!["bouke".into()],
                Source::Local {
                    user: "test".into(),
                },
            ),
            message: RawMessage::new(
                format!(
                    "From: Alice <alice@example.org>\r\nTo: bouke@zolder.test\r\nMessage-ID: <imap{i}@example.org>\r\nSubject: imap number {i}\r\n\r\nbody {i}\r\n.dot line\r\n"
                )
                .into_bytes(),
            ),
        })
        .collect();
    let reports = server.running.ctx.local_delivery.deliver_batch(msgs).await;
    assert!(reports.iter().all(|r| r.all_delivered()));
}

fn inbox_len(server: &Server) -> usize {
    server
        .running
        .ctx
        .spool
        .select("bouke", "INBOX")
        .unwrap()
        .messages
        .len()
}

/// fetchmail and getmail6 fetching from zolder over IMAP as if it were the ISP:
/// fetchmail with `keep` (then nothing new: it goes by \Seen), then `fetchall nokeep`
/// (\Deleted + EXPUNGE); getmail6's SimpleIMAPRetriever deleting into a Maildir.
#[tokio::test(flavor = "multi_thread")]
async fn fetchmail_and_getmail_fetch_over_imap() {
    let server = start().await;
    let port = server.addr("imap").port();
    let dir = server.root.clone();
    deliver_n(&server, 0, 20).await;

    if have("fetchmail") {
        use std::os::unix::fs::PermissionsExt;
        let fetch = |rc: PathBuf, out: PathBuf| {
            let mut c = Command::new("fetchmail");
            c.arg("-f")
                .arg(&rc)
                .arg("--nodetach")
                .arg("--bsmtp")
                .arg(&out)
                .env("FETCHMAILHOME", rc.parent().unwrap());
            c
        };
        let count = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter(|l| *l == "DATA")
                .count()
        };
        let rc = dir.join("fetchmailrc-keep");
        std::fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 service {port} protocol imap\n  user bouke password \"{PASSWORD}\" is root here keep sslproto ''\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out1 = dir.join("keep1.bsmtp");
        let o = run(fetch(rc.clone(), out1.clone())).await;
        let log = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(0), "{log}");
        assert_eq!(count(&out1), 20, "{log}");
        let text = std::fs::read_to_string(&out1).unwrap();
        assert!(
            text.contains("Subject: imap number 13"),
            "bodies arrive intact"
        );
        let out2 = dir.join("keep2.bsmtp");
        let o = run(fetch(rc, out2.clone())).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "nothing new the second time (fetchmail's 'no mail'): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(count(&out2), 0);
        assert_eq!(inbox_len(&server), 20, "keep left everything");

        let rc = dir.join("fetchmailrc-delete");
        std::fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 service {port} protocol imap\n  user bouke password \"{PASSWORD}\" is root here fetchall nokeep sslproto ''\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out3 = dir.join("delete.bsmtp");
        let o = run(fetch(rc, out3.clone())).await;
        let log = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(0), "{log}");
        assert_eq!(count(&out3), 20, "{log}");
        assert_eq!(inbox_len(&server), 0, "nokeep expunged everything: {log}");
    } else {
        println!("skipped: fetchmail not installed");
    }

    if have("getmail") {
        use std::os::unix::fs::PermissionsExt;
        deliver_n(&server, 100, 12).await;
        let md = dir.join("GetmailMaildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        // getmail refuses to deliver as root: deliver as `nobody` into its own Maildir.
        let dest_user = if nix::unistd::geteuid().is_root() {
            let nobody = nix::unistd::User::from_name("nobody")
                .unwrap()
                .expect("user nobody");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            for p in [md.clone(), md.join("tmp"), md.join("new"), md.join("cur")] {
                nix::unistd::chown(&p, Some(nobody.uid), Some(nobody.gid)).unwrap();
            }
            "user = nobody\n"
        } else {
            ""
        };
        let rc = dir.join("getmailrc");
        std::fs::write(
            &rc,
            format!(
                "[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\nport = {port}\nusername = bouke\npassword = {PASSWORD}\nmailboxes = (\"INBOX\",)\n\n[destination]\ntype = Maildir\npath = {}/\n{dest_user}\n[options]\ndelete = true\nread_all = true\nverbose = 1\n",
                md.display()
            ),
        )
        .unwrap();
        let mut c = Command::new("getmail");
        c.arg(format!("--getmaildir={}", dir.display()))
            .arg(format!("--rcfile={}", rc.display()));
        let o = run(c).await;
        let log =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{log}");
        assert_eq!(
            std::fs::read_dir(md.join("new")).unwrap().count(),
            12,
            "{log}"
        );
        assert_eq!(
            inbox_len(&server),
            0,
            "getmail deleted what it fetched: {log}"
        );
    } else {
        println!("skipped: getmail (getmail6) not installed");
    }
    server.running.shutdown().await;
}
