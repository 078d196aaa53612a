//! imapd against real clients: async-imap driving the real daemon (`daemon::start` on
//! 127.0.0.1:0), raw-socket transcripts for protocol edge cases and the start-up
//! sequences of Thunderbird and Apple Mail, and two connections on one mailbox.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use zolder::config::Config;
use zolder::daemon::{self, Running};

const PASSWORD: &str = "geheim";

struct Server {
    _dir: tempfile::TempDir,
    running: Running,
    addr: SocketAddr,
    config_path: PathBuf,
}

async fn start() -> Server {
    start_with("").await
}

/// Starts the daemon with `imap` on 127.0.0.1:0 plus `extra_listen` lines.
async fn start_with(extra_listen: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hash = zolder::auth::hash_password(PASSWORD).unwrap();
    let text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\n\
         [listen]\nimap = \"127.0.0.1:0\"\n{extra_listen}\n\
         [[users]]\nname = \"bouke\"\npassword_hash = \"{hash}\"\n"
    );
    let path = dir.path().join("zolder.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(&path).unwrap();
    let running = daemon::start(cfg, path.clone()).await.unwrap();
    let addr = running.addr("imap");
    Server {
        _dir: dir,
        running,
        addr,
        config_path: path,
    }
}

/// A line-oriented raw IMAP client for transcripts.
struct Raw {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> (Raw, String) {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            r: BufReader::new(r),
            w,
        };
        let greeting = raw.line().await;
        (raw, greeting)
    }

    async fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).await.unwrap();
        self.w.flush().await.unwrap();
    }

    /// One response line; a trailing literal `{n}` is read and appended.
    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut l))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        let trimmed = l.trim_end_matches("\r\n");
        if let Some(open) = trimmed.rfind('{')
            && trimmed.ends_with('}')
            && let Ok(n) = trimmed[open + 1..trimmed.len() - 1].parse::<usize>()
        {
            let mut buf = vec![0u8; n];
            self.r.read_exact(&mut buf).await.unwrap();
            let rest = Box::pin(self.line()).await;
            return format!("{trimmed}\r\n{}{rest}", String::from_utf8_lossy(&buf));
        }
        trimmed.to_string()
    }

    /// Reads until the tagged completion of `tag`; returns all lines.
    async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }

    async fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(&format!("{tag} {cmd}\r\n")).await;
        self.until(tag).await
    }

    async fn login(&mut self) {
        let r = self.cmd("L", &format!("LOGIN bouke {PASSWORD}")).await;
        assert!(r.last().unwrap().starts_with("L OK"), "{r:?}");
    }
}

fn last(r: &[String]) -> &str {
    r.last().map(String::as_str).unwrap_or("")
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Sjoerd <sjoerd@zolder.test>\r\nTo: bouke@zolder.test\r\nSubject: {subject}\r\n\
         Date: Tue, 5 Mar 2024 10:00:00 +0100\r\nMessage-ID: <{subject}@zolder.test>\r\n\r\n{body}\r\n"
    )
}

async fn append(raw: &mut Raw, mailbox: &str, msg: &str) -> String {
    let r = raw
        .cmd(
            "AP",
            &format!("APPEND {mailbox} {{{}+}}\r\n{msg}", msg.len()),
        )
        .await;
    assert!(last(&r).starts_with("AP OK [APPENDUID "), "{r:?}");
    last(&r).to_string()
}

#[tokio::test]
async fn async_imap_client_session() {
    let srv = start().await;
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().unwrap();
    let mut s = client
        .login("bouke", PASSWORD)
        .await
        .map_err(|e| e.0)
        .unwrap();

    let caps = s.capabilities().await.unwrap();
    for c in [
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "NAMESPACE",
        "LITERAL+",
        "SPECIAL-USE",
        "CONDSTORE",
    ] {
        assert!(caps.has_str(c), "missing {c}");
    }
    s.append(
        "INBOX",
        Some("(\\Flagged)"),
        None,
        message("een", "Hallo daar"),
    )
    .await
    .unwrap();
    s.append("INBOX", None, None, message("twee", "Tweede bericht"))
        .await
        .unwrap();
    let mb = s.select("INBOX").await.unwrap();
    assert_eq!(mb.exists, 2);
    assert!(mb.uid_validity.is_some());
    assert_eq!(mb.uid_next, Some(3));

    let msgs: Vec<_> = s
        .fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])")
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(msgs.len(), 2);
    let m0 = msgs[0].as_ref().unwrap();
    assert_eq!(m0.uid, Some(1));
    let env = m0.envelope().unwrap();
    assert_eq!(env.subject.as_deref(), Some(&b"een"[..]));
    assert_eq!(m0.body().unwrap(), message("een", "Hallo daar").as_bytes());
    assert_eq!(m0.size, Some(message("een", "Hallo daar").len() as u32));
    assert!(m0.flags().any(|f| f == async_imap::types::Flag::Flagged));
    drop(msgs);

    let found = s.uid_search("SUBJECT twee").await.unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![2]);
    let found = s.search("FLAGGED").await.unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![1]);
    let found = s.search("BODY bericht NOT FLAGGED").await.unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![2]);

    s.create("Archief").await.unwrap();
    s.uid_mv("1", "Archief").await.unwrap();
    let st = s.status("Archief", "(MESSAGES UIDNEXT)").await.unwrap();
    assert_eq!(st.exists, 1);

    let upd: Vec<_> = s
        .store("1", "+FLAGS (\\Deleted)")
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(upd.len(), 1);
    drop(upd);
    let gone: Vec<_> = s.expunge().await.unwrap().collect::<Vec<_>>().await;
    assert_eq!(gone.len(), 1);
    drop(gone);
    let mb = s.select("INBOX").await.unwrap();
    assert_eq!(mb.exists, 0);

    let names: Vec<String> = s
        .list(Some(""), Some("*"))
        .await
        .unwrap()
        .filter_map(|n| async { n.ok().map(|n| n.name().to_string()) })
        .collect()
        .await;
    assert!(names.contains(&"INBOX".to_string()) && names.contains(&"Archief".to_string()));
    s.logout().await.unwrap();
    srv.running.shutdown().await;
}

#[tokio::test]
async fn literal_split_pipelining_and_bad_syntax() {
    let srv = start().await;
    let (mut c, greeting) = Raw::connect(srv.addr).await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{greeting}"
    );
    // A synchronising literal: the server asks for it, the bytes come in pieces.
    c.send("a1 LOGIN {5}\r\n").await;
    assert!(c.line().await.starts_with("+ "));
    c.send("bo").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&format!("uke {{{}+}}\r\n", PASSWORD.len())).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&format!("{PASSWORD}\r\n")).await;
    let r = c.until("a1").await;
    assert!(last(&r).starts_with("a1 OK"), "{r:?}");

    // Bad syntax: BAD, and the connection keeps working.
    let r = c.cmd("a2", "FETCH 1:* (FLAGS").await;
    assert!(last(&r).starts_with("a2 BAD"), "{r:?}");
    let r = c.cmd("a3", "FROBNICATE").await;
    assert!(last(&r).starts_with("a3 BAD"), "{r:?}");
    let r = c.cmd("a4", "FETCH 1 FLAGS").await;
    assert!(last(&r).starts_with("a4 BAD"), "not selected: {r:?}");
    c.send("\r\n").await;
    assert!(c.line().await.starts_with("* BAD"));

    // Pipelined commands in one packet, answered in order.
    let msg = message("pijp", "pipelined");
    c.send(&format!(
        "p1 APPEND INBOX {{{}+}}\r\n{msg}\r\np2 SELECT INBOX\r\np3 FETCH 1 (UID BODY[HEADER.FIELDS (SUBJECT)])\r\np4 NOOP\r\n",
        msg.len()
    ))
    .await;
    let r1 = c.until("p1").await;
    assert!(last(&r1).starts_with("p1 OK [APPENDUID"), "{r1:?}");
    let r2 = c.until("p2").await;
    assert!(r2.iter().any(|l| l == "* 1 EXISTS"), "{r2:?}");
    assert!(last(&r2).starts_with("p2 OK [READ-WRITE]"));
    let r3 = c.until("p3").await;
    assert_eq!(
        r3[0],
        "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: pijp\r\n\r\n FLAGS (\\Seen \\Recent))"
    );
    let r4 = c.until("p4").await;
    assert_eq!(r4, vec!["p4 OK NOOP completed".to_string()]);

    // A literal over the limit is refused before it is sent.
    let r = c.cmd("t1", "APPEND INBOX {999999999999}").await;
    assert!(last(&r).starts_with("t1 BAD [TOOBIG]"), "{r:?}");
    let r = c.cmd("t2", "NOOP").await;
    assert!(last(&r).starts_with("t2 OK"));
    srv.running.shutdown().await;
}

#[tokio::test]
async fn fetch_sections_flags_and_seen() {
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let mime = "From: a@b.c\r\nSubject: multi\r\nMIME-Version: 1.0\r\n\
                Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--XX\r\n\
                Content-Type: application/octet-stream; name=\"x.bin\"\r\n\
                Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--XX--\r\n";
    append(&mut c, "INBOX", mime).await;
    let r = c.cmd("s", "SELECT INBOX").await;
    assert!(
        r.iter().any(|l| l == "* OK [UNSEEN 1] First unseen."),
        "{r:?}"
    );
    let r = c.cmd("f1", "FETCH 1 (BODYSTRUCTURE)").await;
    assert_eq!(
        r[0],
        "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 8 1 NIL NIL NIL NIL)\
(\"APPLICATION\" \"OCTET-STREAM\" (\"name\" \"x.bin\") NIL NIL \"BASE64\" 4 NIL NIL NIL NIL) \"MIXED\" (\"boundary\" \"XX\") NIL NIL NIL))"
    );
    let r = c
        .cmd(
            "f2",
            "FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[]<0.6>)",
        )
        .await;
    assert_eq!(
        r[0],
        "* 1 FETCH (BODY[1] {8}\r\npart one BODY[2.MIME] {91}\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n BODY[]<0> {6}\r\nFrom: )"
    );
    let r = c.cmd("f3", "FETCH 1 FLAGS").await;
    // The session that selected first holds \Recent (RFC 3501 §2.3.2).
    assert_eq!(r[0], "* 1 FETCH (FLAGS (\\Recent))", "PEEK must not set \\Seen");
    let r = c.cmd("f4", "FETCH 1 BODY[TEXT]<0.4>").await;
    assert_eq!(
        r[0],
        "* 1 FETCH (BODY[TEXT]<0> {4}\r\n--XX FLAGS (\\Seen \\Recent))"
    );
    let r = c.cmd("f5", "UID STORE 1 -FLAGS.SILENT (\\Seen)").await;
    assert_eq!(r, vec!["f5 OK Store completed".to_string()]);
    let r = c.cmd("f6", "STORE 1 +FLAGS ($Label1 \\Answered)").await;
    // The new keyword is announced first (RFC 3501 §7.2.6).
    assert_eq!(
        r[..3],
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)] Flags permitted.",
            "* 1 FETCH (FLAGS ($Label1 \\Answered \\Recent) UID 1)"
        ]
    );
    let r = c.cmd("f7", "FETCH 2 FLAGS").await;
    assert!(last(&r).starts_with("f7 BAD"), "{r:?}");
    let r = c.cmd("f8", "UID FETCH 5:* (FLAGS)").await;
    assert_eq!(
        r[0], "* 1 FETCH (UID 1 FLAGS ($Label1 \\Answered \\Recent))",
        "5:* includes the highest UID"
    );
    srv.running.shutdown().await;
}

#[tokio::test]
async fn thunderbird_startup_sequence() {
    // The commands Thunderbird 115 sends on start-up (from its IMAP protocol log).
    use base64::Engine;
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    let r = c.cmd("1", "capability").await;
    assert!(
        r[0].contains("AUTH=PLAIN") && r[0].contains(" ID "),
        "{r:?}"
    );
    c.send("2 authenticate PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ ");
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("\0bouke\0{PASSWORD}"));
    c.send(&format!("{cred}\r\n")).await;
    let r = c.until("2").await;
    assert!(last(&r).starts_with("2 OK [CAPABILITY IMAP4rev1"), "{r:?}");
    let r = c
        .cmd(
            "3",
            "ID (\"name\" \"Thunderbird\" \"version\" \"115.10.0\")",
        )
        .await;
    assert!(r[0].starts_with("* ID (\"name\" \"zolder\""), "{r:?}");
    let r = c.cmd("4", "namespace").await;
    assert_eq!(r[0], "* NAMESPACE ((\"\" \".\")) NIL NIL");
    let r = c
        .cmd("5", "list (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)")
        .await;
    assert!(
        r.iter()
            .any(|l| l == "* LIST (\\HasNoChildren \\Sent \\Subscribed) \".\" \"Sent\""),
        "{r:?}"
    );
    let r = c.cmd("6", "select \"INBOX\"").await;
    assert!(r.iter().any(|l| l == "* 0 EXISTS"), "{r:?}");
    assert!(last(&r).starts_with("6 OK [READ-WRITE]"));
    // No limits configured: the mailbox has no quota root.
    let r = c.cmd("7", "getquotaroot \"INBOX\"").await;
    assert_eq!(r[0], "* QUOTAROOT \"INBOX\"", "{r:?}");
    assert!(last(&r).starts_with("7 OK"), "{r:?}");
    let r = c.cmd("8", "UID fetch 1:* (FLAGS)").await;
    assert_eq!(r, vec!["8 OK Fetch completed".to_string()]);
    let r = c.cmd("8b", "fetch 1:* (FLAGS)").await;
    assert_eq!(
        r,
        vec!["8b OK Fetch completed".to_string()],
        "1:* of an empty mailbox"
    );
    let r = c.cmd("9", "list \"\" \"INBOX\"").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \".\" \"INBOX\"");
    c.send("10 IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling");
    c.send("DONE\r\n").await;
    let r = c.until("10").await;
    assert_eq!(last(&r), "10 OK Idle completed");
    let r = c.cmd("11", "logout").await;
    assert!(r[0].starts_with("* BYE"));
    srv.running.shutdown().await;
}

#[tokio::test]
async fn apple_mail_startup_sequence() {
    // Apple Mail (macOS 14) start-up: SASL-IR login, ID, ENABLE, LIST-STATUS,
    // CONDSTORE select, ESEARCH.
    use base64::Engine;
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    let r = c.cmd("1.1", "CAPABILITY").await;
    assert!(r[0].contains("SASL-IR"));
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("\0bouke\0{PASSWORD}"));
    let r = c.cmd("2.1", &format!("AUTHENTICATE PLAIN {cred}")).await;
    assert!(last(&r).starts_with("2.1 OK"), "{r:?}");
    let r = c
        .cmd("3.1", "ID (\"name\" \"Mac OS X Mail\" \"version\" \"16.0 (3774.500.171.1.1)\" \"os\" \"Mac OS X\")")
        .await;
    assert!(last(&r).starts_with("3.1 OK"));
    let r = c.cmd("4.1", "ENABLE CONDSTORE").await;
    assert_eq!(r[0], "* ENABLED CONDSTORE");
    append(&mut c, "INBOX", &message("apple", "body")).await;
    let r = c
        .cmd(
            "5.1",
            "LIST \"\" \"*\" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ))",
        )
        .await;
    assert!(
        r.iter()
            .any(|l| l
                .starts_with("* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1 UIDNEXT 2 HIGHESTMODSEQ ")),
        "{r:?}"
    );
    let r = c.cmd("6.1", "SELECT INBOX (CONDSTORE)").await;
    assert!(
        r.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")),
        "{r:?}"
    );
    let r = c
        .cmd("7.1", "UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 1)")
        .await;
    assert!(
        r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Recent) MODSEQ ("),
        "{r:?}"
    );
    let r = c
        .cmd("8.1", "UID SEARCH RETURN (ALL COUNT) UNDELETED")
        .await;
    assert_eq!(r[0], "* ESEARCH (TAG \"8.1\") UID ALL 1 COUNT 1");
    let r = c
        .cmd("9.1", "UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)")
        .await;
    assert_eq!(last(&r), "9.1 OK [MODIFIED 1] Conditional store failed");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn two_sessions_see_each_others_changes() {
    let srv = start().await;
    let (mut a, _) = Raw::connect(srv.addr).await;
    let (mut b, _) = Raw::connect(srv.addr).await;
    a.login().await;
    b.login().await;
    append(&mut a, "INBOX", &message("m1", "one")).await;
    append(&mut a, "INBOX", &message("m2", "two")).await;
    a.cmd("s", "SELECT INBOX").await;
    b.cmd("s", "SELECT INBOX").await;

    // B appends while A is selected: A learns of it at its next command.
    append(&mut b, "INBOX", &message("m3", "three")).await;
    let r = a.cmd("n1", "NOOP").await;
    assert!(r.iter().any(|l| l == "* 3 EXISTS"), "{r:?}");

    // B flags and expunges message 1 while A fetches by sequence number: A gets the
    // flag change but no EXPUNGE until a command that allows it.
    b.cmd("d1", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = b.cmd("d2", "EXPUNGE").await;
    assert!(r.iter().any(|l| l == "* 1 EXPUNGE"), "{r:?}");
    let r = a.cmd("f1", "FETCH 1:* (UID)").await;
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    assert_eq!(r.len(), 4, "{r:?}");
    let r = a.cmd("n2", "NOOP").await;
    assert!(r.iter().any(|l| l == "* 1 EXPUNGE"), "{r:?}");
    let r = a.cmd("f2", "FETCH 1:* (UID)").await;
    assert_eq!(r[0], "* 1 FETCH (UID 2)");

    // A idles; B deletes: A hears the EXPUNGE during IDLE without asking.
    a.send("i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling");
    b.cmd("d3", "UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("d4", "UID EXPUNGE 2").await;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "* 1 EXPUNGE") {
        seen.push(a.line().await);
    }
    // B appends: A hears EXISTS during IDLE (in-process notification).
    append(&mut b, "INBOX", &message("m4", "four")).await;
    loop {
        let l = a.line().await;
        if l == "* 2 EXISTS" {
            break;
        }
    }
    a.send("DONE\r\n").await;
    let r = a.until("i").await;
    assert_eq!(last(&r), "i OK Idle completed");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn other_process_delivery_wakes_idle() {
    let srv = start().await;
    let (mut a, _) = Raw::connect(srv.addr).await;
    a.login().await;
    a.cmd("s", "SELECT INBOX").await;
    a.send("i IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling");
    // A second Spool on the same data, as `zolder deliver` in another process has.
    let cfg = Config::load(&srv.config_path).unwrap();
    let spool = zolder::spool::Spool::open(&cfg).unwrap();
    let bytes = message("extern", "from another process").into_bytes();
    tokio::task::spawn_blocking(move || {
        spool
            .append("bouke", "INBOX", bytes, &zolder::spool::Flags::new(), None)
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(a.line().await, "* 1 EXISTS");
    a.send("DONE\r\n").await;
    a.until("i").await;
    srv.running.shutdown().await;
}

#[tokio::test]
async fn mailbox_management() {
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let r = c.cmd("c1", "CREATE Werk.2025").await;
    assert_eq!(last(&r), "c1 OK Create completed");
    let r = c.cmd("c2", "CREATE Werk.2025").await;
    assert!(last(&r).starts_with("c2 NO [ALREADYEXISTS]"), "{r:?}");
    let r = c.cmd("c3", "CREATE &ANw-berweisung").await;
    assert!(last(&r).starts_with("c3 OK"));
    let r = c.cmd("l1", "LIST \"\" %").await;
    assert!(
        r.contains(&"* LIST (\\HasNoChildren) \".\" \"&ANw-berweisung\"".to_string()),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("HasChildren") && l.ends_with("\"Werk\"")),
        "{r:?}"
    );
    let r = c.cmd("l2", "LIST \"\" Werk.*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \".\" \"Werk.2025\"");
    let r = c.cmd("r1", "RENAME Werk.2025 Werk.2026").await;
    assert_eq!(last(&r), "r1 OK Rename completed");
    append(&mut c, "INBOX", &message("x", "y")).await;
    let r = c.cmd("r2", "RENAME INBOX Oud").await;
    assert_eq!(last(&r), "r2 OK Rename completed");
    let r = c.cmd("st", "STATUS Oud (MESSAGES)").await;
    assert_eq!(r[0], "* STATUS \"Oud\" (MESSAGES 1)");
    let r = c.cmd("st2", "STATUS INBOX (MESSAGES UIDNEXT)").await;
    assert!(r[0].starts_with("* STATUS \"INBOX\" (MESSAGES 0 "), "{r:?}");
    let r = c.cmd("u1", "UNSUBSCRIBE Oud").await;
    assert!(last(&r).starts_with("u1 OK"));
    let r = c.cmd("ls", "LSUB \"\" *").await;
    assert!(!r.iter().any(|l| l.ends_with("\"Oud\"")), "{r:?}");
    let r = c.cmd("d1", "DELETE Oud").await;
    assert_eq!(last(&r), "d1 OK Delete completed");
    let r = c.cmd("d2", "DELETE INBOX").await;
    assert!(last(&r).starts_with("d2 NO"));
    let r = c.cmd("a1", "APPEND Nergens {3+}\r\nx\r\n").await;
    assert!(last(&r).starts_with("a1 NO [TRYCREATE]"), "{r:?}");
    let r = c.cmd("e1", "EXAMINE INBOX").await;
    assert!(last(&r).starts_with("e1 OK [READ-ONLY]"));
    let r = c.cmd("e2", "STORE 1:* +FLAGS (\\Seen)").await;
    assert!(
        last(&r).starts_with("e2 BAD") || last(&r).starts_with("e2 NO"),
        "{r:?}"
    );
    srv.running.shutdown().await;
}

#[tokio::test]
async fn plaintext_login_refused_off_loopback_rules() {
    // From loopback, plain LOGIN is allowed (the family's own machine); the
    // capability list says so, and a wrong password is refused after a delay.
    let srv = start().await;
    let (mut c, greeting) = Raw::connect(srv.addr).await;
    assert!(greeting.contains("AUTH=PLAIN"), "{greeting}");
    let r = c.cmd("x", "LOGIN bouke wrong").await;
    assert_eq!(
        last(&r),
        "x NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    let r = c.cmd("y", "SELECT INBOX").await;
    assert!(last(&r).starts_with("y BAD"), "{r:?}");
    srv.running.shutdown().await;
}

/// A TLS client that accepts the server's self-signed certificate (the family member
/// compares the fingerprint once; a test has nobody to ask).
fn tls_connector() -> async_native_tls::TlsConnector {
    async_native_tls::TlsConnector::new()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
}

async fn tls_lines<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    tag: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_line(&mut l))
            .await
            .unwrap()
            .unwrap();
        let l = l.trim_end().to_string();
        let done = l.starts_with(&format!("{tag} "));
        out.push(l);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn starttls_and_implicit_tls() {
    let srv = start_with("imaps = \"127.0.0.1:0\"").await;
    // STARTTLS on the plain port.
    let (mut c, greeting) = Raw::connect(srv.addr).await;
    assert!(greeting.contains("STARTTLS"), "{greeting}");
    // A command pipelined after STARTTLS in plain text is dropped, not run after
    // the handshake (command injection).
    c.send("t1 STARTTLS\r\nt9 NOOP\r\n").await;
    let r = c.until("t1").await;
    assert_eq!(last(&r), "t1 OK Begin TLS negotiation now");
    let Raw { r, w } = c;
    let tcp = r.into_inner().reunite(w).unwrap();
    let tls = tls_connector().connect("localhost", tcp).await.unwrap();
    let mut s = BufReader::new(tls);
    s.get_mut().write_all(b"t2 CAPABILITY\r\n").await.unwrap();
    let r = tls_lines(&mut s, "t2").await;
    assert!(
        !r[0].contains("STARTTLS") && r[0].contains("AUTH=PLAIN"),
        "{r:?}"
    );
    assert!(!r.iter().any(|l| l.starts_with("t9")), "{r:?}");
    s.get_mut()
        .write_all(format!("t3 LOGIN bouke {PASSWORD}\r\n").as_bytes())
        .await
        .unwrap();
    let r = tls_lines(&mut s, "t3").await;
    assert!(r.last().unwrap().starts_with("t3 OK"), "{r:?}");
    let r = {
        s.get_mut().write_all(b"t4 STARTTLS\r\n").await.unwrap();
        tls_lines(&mut s, "t4").await
    };
    assert!(r.last().unwrap().starts_with("t4 BAD"), "{r:?}");

    // Implicit TLS on imaps.
    let tcp = TcpStream::connect(srv.running.addr("imaps")).await.unwrap();
    let tls = tls_connector().connect("localhost", tcp).await.unwrap();
    let mut s = BufReader::new(tls);
    let mut greeting = String::new();
    s.read_line(&mut greeting).await.unwrap();
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1"),
        "{greeting}"
    );
    assert!(!greeting.contains("STARTTLS"), "{greeting}");
    s.get_mut()
        .write_all(format!("i1 LOGIN bouke {PASSWORD}\r\ni2 SELECT INBOX\r\n").as_bytes())
        .await
        .unwrap();
    tls_lines(&mut s, "i1").await;
    let r = tls_lines(&mut s, "i2").await;
    assert!(r.last().unwrap().starts_with("i2 OK [READ-WRITE]"), "{r:?}");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn junk_moves_queue_spam_and_ham_training() {
    use zolder::imapd::backend::Backend;
    use zolder::imapd::store::SpoolBackend;
    let dir = tempfile::tempdir().unwrap();
    let spool = zolder::spool::Spool::open_with(
        dir.path(),
        "zolder.test",
        vec![("bouke".into(), zolder::config::SpoolKind::Maildir)],
    )
    .unwrap();
    let db = dir.path().join("zolder.db");
    let b = SpoolBackend::new(spool).with_training(db.clone());
    b.list("bouke").unwrap();
    let (_, uid) = b
        .append(
            "bouke",
            "INBOX",
            message("spam", "buy").into_bytes(),
            "",
            None,
        )
        .unwrap();
    let (_, pairs) = b.copy("bouke", "INBOX", &[uid], "Junk").unwrap();
    b.create("bouke", "Archief", None).unwrap();
    let (_, back) = b.copy("bouke", "Junk", &[pairs[0].1], "Archief").unwrap();
    b.copy("bouke", "Junk", &[pairs[0].1], "Trash").unwrap();
    let conn = zolder::db::open(&db).unwrap();
    let rows = zolder::db::quarantine::pending_training(&conn, 10).unwrap();
    let got: Vec<(String, u32, zolder::db::quarantine::TrainKind)> = rows
        .into_iter()
        .map(|r| (r.mailbox, r.uid, r.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "Junk".to_string(),
                pairs[0].1,
                zolder::db::quarantine::TrainKind::Spam
            ),
            (
                "Archief".to_string(),
                back[0].1,
                zolder::db::quarantine::TrainKind::Ham
            ),
        ],
        "into Junk = spam, out of Junk = ham, into Trash = nothing"
    );
}

// ---- Extensions: QRESYNC, APPENDLIMIT, COMPRESS=DEFLATE, SORT/THREAD, QUOTA, UTF8=ACCEPT.

/// Starts the daemon with `extra_top` appended after `[listen]` (more tables) and
/// `extra_user` inside bouke's `[[users]]` entry.
async fn start_ext(extra_top: &str, extra_user: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hash = zolder::auth::hash_password(PASSWORD).unwrap();
    let text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\n\
         [listen]\nimap = \"127.0.0.1:0\"\n{extra_top}\n\
         [[users]]\nname = \"bouke\"\npassword_hash = \"{hash}\"\n{extra_user}\n"
    );
    let path = dir.path().join("zolder.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(&path).unwrap();
    let running = daemon::start(cfg, path.clone()).await.unwrap();
    let addr = running.addr("imap");
    Server {
        _dir: dir,
        running,
        addr,
        config_path: path,
    }
}

/// The number after `key` in a response line (`[HIGHESTMODSEQ 7]` → 7).
fn number_after(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| {
            let i = l.find(key)? + key.len();
            let digits: String = l[i..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

#[tokio::test]
async fn qresync_resync_after_another_session_expunged_and_flagged() {
    let srv = start().await;
    let (mut a, _) = Raw::connect(srv.addr).await;
    a.login().await;
    for i in 1..=6 {
        append(&mut a, "INBOX", &message(&format!("q{i}"), "body")).await;
    }
    // Without ENABLE QRESYNC the SELECT parameter is refused, and nothing breaks.
    let r = a.cmd("a0", "SELECT INBOX (QRESYNC (1 1))").await;
    assert!(last(&r).starts_with("a0 BAD"), "{r:?}");
    let r = a.cmd("a1", "ENABLE QRESYNC").await;
    assert_eq!(r[0], "* ENABLED QRESYNC");
    let r = a.cmd("a2", "SELECT INBOX").await;
    let validity = number_after(&r, "[UIDVALIDITY");
    let modseq = number_after(&r, "[HIGHESTMODSEQ");
    a.cmd("a3", "LOGOUT").await;

    // Another client flags 2, deletes 3 and 4, and 6 (which the first client will
    // say it does not know).
    let (mut b, _) = Raw::connect(srv.addr).await;
    b.login().await;
    b.cmd("b1", "SELECT INBOX").await;
    b.cmd("b2", "STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    b.cmd("b3", "STORE 3,4,6 +FLAGS.SILENT (\\Deleted)").await;
    let r = b.cmd("b4", "EXPUNGE").await;
    assert!(last(&r).starts_with("b4 OK"), "{r:?}");

    // The first client comes back and resyncs knowing UIDs 1:5.
    let (mut a, _) = Raw::connect(srv.addr).await;
    a.login().await;
    a.cmd("c1", "ENABLE QRESYNC").await;
    let r = a
        .cmd(
            "c2",
            &format!("SELECT INBOX (QRESYNC ({validity} {modseq} 1:5))"),
        )
        .await;
    assert!(last(&r).starts_with("c2 OK [READ-WRITE]"), "{r:?}");
    assert!(r.iter().any(|l| l == "* 3 EXISTS"), "{r:?}");
    let vanished: Vec<&String> = r.iter().filter(|l| l.contains("VANISHED")).collect();
    assert_eq!(vanished, vec!["* VANISHED (EARLIER) 3:4"], "{r:?}");
    let fetch: Vec<&String> = r.iter().filter(|l| l.contains("FETCH")).collect();
    assert_eq!(fetch.len(), 1, "{r:?}");
    assert!(
        fetch[0].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("),
        "{r:?}"
    );
    let highest = number_after(&r, "[HIGHESTMODSEQ");
    assert!(highest > modseq);

    // A wrong UIDVALIDITY: a plain SELECT, no resync data.
    let r = a
        .cmd(
            "c3",
            &format!("EXAMINE INBOX (QRESYNC ({} {modseq}))", validity + 1),
        )
        .await;
    assert!(
        !r.iter()
            .any(|l| l.contains("VANISHED") || l.contains("FETCH")),
        "{r:?}"
    );
    let r = a.cmd("c4", "SELECT INBOX").await;
    assert!(last(&r).starts_with("c4 OK"), "{r:?}");

    // UID FETCH ... (CHANGEDSINCE m VANISHED): expunges in the set, then changes.
    let r = a
        .cmd(
            "c5",
            &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"),
        )
        .await;
    assert_eq!(r[0], "* VANISHED (EARLIER) 3:4,6", "{r:?}");
    assert!(
        r[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("),
        "{r:?}"
    );
    assert_eq!(r.len(), 3, "{r:?}");
    // VANISHED without CHANGEDSINCE, or on FETCH by sequence number, is bad syntax.
    let r = a.cmd("c6", "UID FETCH 1:* (FLAGS) (VANISHED)").await;
    assert!(last(&r).starts_with("c6 BAD"), "{r:?}");
    let r = a
        .cmd("c7", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert!(last(&r).starts_with("c7 BAD"), "{r:?}");

    // Live: the other client expunges UID 5; this one hears VANISHED, not EXPUNGE.
    b.cmd("b5", "UID STORE 5 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("b6", "EXPUNGE").await;
    let r = a.cmd("c8", "NOOP").await;
    assert!(r.iter().any(|l| l == "* VANISHED 5"), "{r:?}");
    assert!(!r.iter().any(|l| l.ends_with("EXPUNGE")), "{r:?}");
    // Its own EXPUNGE too.
    a.cmd("c9", "UID STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = a.cmd("c10", "EXPUNGE").await;
    assert_eq!(r[0], "* VANISHED 1", "{r:?}");
    let after = number_after(&r, "[HIGHESTMODSEQ");
    assert!(after > highest, "{r:?}");
    let r = a.cmd("c11", "STATUS INBOX (HIGHESTMODSEQ)").await;
    assert_eq!(number_after(&r, "HIGHESTMODSEQ"), after, "{r:?}");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn appendlimit_is_the_configured_message_size() {
    let srv = start_ext("[limits]\nmessage_size = 2000\n", "").await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let r = c.cmd("a1", "CAPABILITY").await;
    assert!(r[0].contains(" APPENDLIMIT=2000"), "{r:?}");
    let big = message("big", &"x".repeat(2500));
    let r = c
        .cmd("a2", &format!("APPEND INBOX {{{}}}", big.len()))
        .await;
    assert!(last(&r).contains("[TOOBIG]"), "{r:?}");
    let small = message("small", "fits");
    append(&mut c, "INBOX", &small).await;
    srv.running.shutdown().await;
}

/// A client side of COMPRESS=DEFLATE over any stream.
struct Zc<S> {
    s: S,
    def: flate2::Compress,
    inf: flate2::Decompress,
    plain: Vec<u8>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Zc<S> {
    fn new(s: S) -> Zc<S> {
        Zc {
            s,
            def: flate2::Compress::new(flate2::Compression::default(), false),
            inf: flate2::Decompress::new(false),
            plain: Vec::new(),
        }
    }

    async fn send_raw(&mut self, data: &[u8]) {
        let mut out = Vec::with_capacity(data.len() + 1024);
        let mut rest = data;
        loop {
            let before = self.def.total_in();
            self.def
                .compress_vec(rest, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            rest = &rest[(self.def.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(64 * 1024);
        }
        self.s.write_all(&out).await.unwrap();
        self.s.flush().await.unwrap();
    }

    async fn fill(&mut self) {
        let mut buf = vec![0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(20), self.s.read(&mut buf))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        let mut input = &buf[..n];
        while !input.is_empty() {
            let mut out = Vec::with_capacity(64 * 1024);
            let before = self.inf.total_in();
            self.inf
                .decompress_vec(input, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            input = &input[(self.inf.total_in() - before) as usize..];
            self.plain.extend_from_slice(&out);
        }
    }

    /// One response line, with a trailing literal read and appended.
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.plain.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.plain.drain(..=i).collect();
                let l = String::from_utf8_lossy(&l).trim_end().to_string();
                if let Some(open) = l.rfind('{')
                    && l.ends_with('}')
                    && let Ok(n) = l[open + 1..l.len() - 1].parse::<usize>()
                {
                    while self.plain.len() < n {
                        self.fill().await;
                    }
                    let lit: Vec<u8> = self.plain.drain(..n).collect();
                    let rest = Box::pin(self.line()).await;
                    return format!("{l}\r\n{}{rest}", String::from_utf8_lossy(&lit));
                }
                return l;
            }
            self.fill().await;
        }
    }

    async fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send_raw(format!("{tag} {cmd}\r\n").as_bytes()).await;
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn compress_deflate_session_runs_real_commands() {
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    let r = c.cmd("z0", "CAPABILITY").await;
    assert!(!r[0].contains("COMPRESS"), "only after login: {r:?}");
    c.login().await;
    let r = c.cmd("z1", "CAPABILITY").await;
    assert!(r[0].contains(" COMPRESS=DEFLATE"), "{r:?}");
    let r = c.cmd("z2", "COMPRESS LZW").await;
    assert!(last(&r).starts_with("z2 BAD"), "{r:?}");
    let r = c.cmd("z3", "COMPRESS DEFLATE").await;
    assert_eq!(last(&r), "z3 OK DEFLATE active");
    let Raw { r, w } = c;
    let tcp = r.into_inner().reunite(w).unwrap();
    let mut z = Zc::new(tcp);

    let msg = message("gezipt", &"compressible text ".repeat(200));
    let r = z
        .cmd("z4", &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert!(last(&r).starts_with("z4 OK [APPENDUID"), "{r:?}");
    let r = z.cmd("z5", "SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    let r = z.cmd("z6", "FETCH 1 (BODY.PEEK[])").await;
    assert!(r[0].ends_with(&format!("{msg})")), "{r:?}");
    let r = z.cmd("z7", "UID SEARCH SUBJECT gezipt").await;
    assert_eq!(r[0], "* SEARCH 1");
    // Bad syntax under compression: BAD, and the stream goes on.
    let r = z.cmd("z8", "FETCH 1:* (FLAGS").await;
    assert!(last(&r).starts_with("z8 BAD"), "{r:?}");
    let r = z.cmd("z9", "COMPRESS DEFLATE").await;
    assert!(last(&r).starts_with("z9 NO [COMPRESSIONACTIVE]"), "{r:?}");
    let r = z.cmd("z10", "CAPABILITY").await;
    assert!(!r[0].contains("COMPRESS"), "{r:?}");
    // IDLE under compression: DONE arrives compressed.
    z.send_raw(b"z11 IDLE\r\n").await;
    assert!(z.line().await.starts_with("+ "));
    z.send_raw(b"DONE\r\n").await;
    assert_eq!(z.line().await, "z11 OK Idle completed");
    let r = z.cmd("z12", "LOGOUT").await;
    assert!(r[0].starts_with("* BYE"), "{r:?}");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn compress_bomb_meets_the_line_limit() {
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    c.cmd("z1", "COMPRESS DEFLATE").await;
    let Raw { r, w } = c;
    let tcp = r.into_inner().reunite(w).unwrap();
    let mut z = Zc::new(tcp);
    // 8 MiB of one byte compresses to a few KiB; inflated, it is one endless line.
    z.send_raw(&vec![b'A'; 8 << 20]).await;
    let l = z.line().await;
    assert!(l.contains("BAD [TOOBIG]"), "{l}");
    assert!(z.line().await.starts_with("* BYE"));
    srv.running.shutdown().await;
}

#[tokio::test]
async fn compress_after_implicit_tls() {
    let srv = start_with("imaps = \"127.0.0.1:0\"").await;
    let tcp = TcpStream::connect(srv.running.addr("imaps")).await.unwrap();
    let tls = tls_connector().connect("localhost", tcp).await.unwrap();
    let mut s = BufReader::new(tls);
    let mut greeting = String::new();
    s.read_line(&mut greeting).await.unwrap();
    s.get_mut()
        .write_all(format!("i1 LOGIN bouke {PASSWORD}\r\ni2 COMPRESS DEFLATE\r\n").as_bytes())
        .await
        .unwrap();
    tls_lines(&mut s, "i1").await;
    let r = tls_lines(&mut s, "i2").await;
    assert_eq!(r.last().unwrap(), "i2 OK DEFLATE active");
    assert!(s.buffer().is_empty());
    let mut z = Zc::new(s.into_inner());
    let r = z.cmd("i3", "SELECT INBOX").await;
    assert!(last(&r).starts_with("i3 OK [READ-WRITE]"), "{r:?}");
    let r = z.cmd("i4", "LIST \"\" *").await;
    assert!(r.iter().any(|l| l.contains("INBOX")), "{r:?}");
    srv.running.shutdown().await;
}

/// Fixture messages for SORT and THREAD: (subject, from, to, date, message-id,
/// references, body). Appended in this order with rising INTERNALDATEs.
const THREAD_FIXTURE: &[(&str, &str, &str, &str, &str, &str, usize)] = &[
    // 1
    (
        "Vakantieplannen",
        "an@zolder.test",
        "bouke@zolder.test",
        "Mon, 4 Mar 2024 09:00:00 +0000",
        "<v1@x>",
        "",
        100,
    ),
    // 2
    (
        "Re: Vakantieplannen",
        "bouke@zolder.test",
        "an@zolder.test",
        "Mon, 4 Mar 2024 11:00:00 +0000",
        "<v2@x>",
        "<v1@x>",
        3000,
    ),
    // 3
    (
        "Fietsen",
        "cor@zolder.test",
        "an@zolder.test",
        "Sun, 3 Mar 2024 08:00:00 +0000",
        "<f1@x>",
        "",
        500,
    ),
    // 4
    (
        "RE: Re: Vakantieplannen",
        "an@zolder.test",
        "bouke@zolder.test",
        "Mon, 4 Mar 2024 12:00:00 +0000",
        "<v3@x>",
        "<v1@x> <v2@x>",
        200,
    ),
    // 5
    (
        "Re: Vakantieplannen",
        "dirk@zolder.test",
        "an@zolder.test",
        "Mon, 4 Mar 2024 10:00:00 +0000",
        "<v4@x>",
        "<v1@x>",
        50,
    ),
    // 6: a reply whose parent never arrived; same subject as 3
    (
        "Re: Fietsen",
        "bouke@zolder.test",
        "cor@zolder.test",
        "Tue, 5 Mar 2024 08:00:00 +0000",
        "<f2@x>",
        "<f0@x>",
        700,
    ),
];

async fn load_thread_fixture(c: &mut Raw) {
    for (i, (subj, from, to, date, id, refs, body)) in THREAD_FIXTURE.iter().enumerate() {
        let refs = if refs.is_empty() {
            String::new()
        } else {
            format!("References: {refs}\r\n")
        };
        let msg = format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subj}\r\nDate: {date}\r\nMessage-ID: {id}\r\n{refs}\r\n{}\r\n",
            "x".repeat(*body)
        );
        let r = c
            .cmd(
                "AP",
                &format!(
                    "APPEND INBOX \"0{}-Mar-2024 10:00:00 +0000\" {{{}+}}\r\n{msg}",
                    9 - i,
                    msg.len()
                ),
            )
            .await;
        assert!(last(&r).starts_with("AP OK"), "{r:?}");
    }
}

#[tokio::test]
async fn sort_and_thread_on_fixture_messages() {
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let r = c.cmd("s0", "CAPABILITY").await;
    for cap in ["SORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"] {
        assert!(r[0].split(' ').any(|x| x == cap), "{cap}: {r:?}");
    }
    load_thread_fixture(&mut c).await;
    c.cmd("s1", "SELECT INBOX").await;
    let sort = |r: Vec<String>| r[0].clone();
    // DATE: the Date: header. 3 (Sun) < 1 (09:00) < 5 (10:00) < 2 < 4 < 6.
    assert_eq!(
        sort(c.cmd("a", "SORT (DATE) UTF-8 ALL").await),
        "* SORT 3 1 5 2 4 6"
    );
    assert_eq!(
        sort(c.cmd("b", "SORT (REVERSE DATE) UTF-8 ALL").await),
        "* SORT 6 4 2 5 1 3"
    );
    // ARRIVAL: INTERNALDATE was given falling, from 09-Mar down to 04-Mar.
    assert_eq!(
        sort(c.cmd("c", "SORT (ARRIVAL) UTF-8 ALL").await),
        "* SORT 6 5 4 3 2 1"
    );
    // SUBJECT: base subjects FIETSEN (3, 6) < VAKANTIEPLANNEN (1, 2, 4, 5), ties by
    // sequence number; then DATE as second key.
    assert_eq!(
        sort(c.cmd("d", "SORT (SUBJECT) UTF-8 ALL").await),
        "* SORT 3 6 1 2 4 5"
    );
    assert_eq!(
        sort(c.cmd("e", "SORT (SUBJECT REVERSE DATE) UTF-8 ALL").await),
        "* SORT 6 3 4 2 5 1"
    );
    // FROM: local parts an (1, 4) < bouke (2, 6) < cor (3) < dirk (5).
    assert_eq!(
        sort(c.cmd("f", "SORT (FROM) UTF-8 ALL").await),
        "* SORT 1 4 2 6 3 5"
    );
    assert_eq!(
        sort(c.cmd("g", "SORT (TO DATE) UTF-8 ALL").await),
        "* SORT 3 5 2 1 4 6"
    );
    // CC: nobody has one; all equal, sequence order.
    assert_eq!(
        sort(c.cmd("h", "SORT (CC) UTF-8 ALL").await),
        "* SORT 1 2 3 4 5 6"
    );
    // SIZE follows the body lengths 100, 3000, 500, 200, 50, 700 (headers differ a little).
    assert_eq!(
        sort(c.cmd("i", "SORT (SIZE) UTF-8 ALL").await),
        "* SORT 5 1 4 3 6 2"
    );
    // With search keys, and by UID.
    assert_eq!(
        sort(c.cmd("j", "SORT (DATE) UTF-8 SUBJECT fietsen").await),
        "* SORT 3 6"
    );
    assert_eq!(
        sort(c.cmd("k", "UID SORT (REVERSE SIZE) US-ASCII 2:5").await),
        "* SORT 2 3 4 5"
    );

    // THREAD ORDEREDSUBJECT: per base subject, by date; threads by first date. A
    // single child continues its parent's list (RFC 5256 thread-members).
    assert_eq!(
        sort(c.cmd("l", "THREAD ORDEREDSUBJECT UTF-8 ALL").await),
        "* THREAD (3 6)(1 (5)(2)(4))"
    );
    // THREAD REFERENCES: 1 → {5, 2 → 4}; 6's parent is missing, so 6 joins 3 by
    // subject (a reply under the original).
    assert_eq!(
        sort(c.cmd("m", "THREAD REFERENCES UTF-8 ALL").await),
        "* THREAD (3 6)(1 (5)(2 4))"
    );
    // The header keys were parsed once and cached in the index; an expunge drops
    // the message's row with it.
    let db = srv.config_path.parent().unwrap().join("data/zolder.db");
    let cached = |db: std::path::PathBuf| {
        let c = zolder::db::open(&db).unwrap();
        let mut v: Vec<u32> = zolder::db::sortkeys::load(&c, "bouke", "INBOX")
            .unwrap()
            .iter()
            .map(|r| r.uid)
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(cached(db.clone()), vec![1, 2, 3, 4, 5, 6]);
    // Without 1 (searched away) its replies hang under a dummy, by date.
    c.cmd("n0", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert_eq!(
        sort(c.cmd("n", "UID THREAD REFERENCES UTF-8 UNDELETED").await),
        "* THREAD (3 6)((5)(2 4))"
    );
    c.cmd("n1", "EXPUNGE").await;
    assert_eq!(cached(db), vec![2, 3, 4, 5, 6]);
    assert_eq!(
        sort(c.cmd("n2", "UID SORT (DATE) UTF-8 ALL").await),
        "* SORT 3 5 2 4 6"
    );
    let r = c
        .cmd("o", "THREAD REFERENCES UTF-8 SUBJECT nothing-matches")
        .await;
    assert_eq!(r[0], "* THREAD");

    // Bad syntax answers BAD and the connection stays usable.
    for (t, bad) in [
        ("p1", "SORT DATE UTF-8 ALL"),
        ("p2", "SORT (DATE) ALL"),
        ("p3", "SORT (WEIGHT) UTF-8 ALL"),
        ("p4", "THREAD REFS UTF-8 ALL"),
        ("p5", "THREAD REFERENCES UTF-8"),
    ] {
        let r = c.cmd(t, bad).await;
        assert!(last(&r).starts_with(&format!("{t} BAD")), "{r:?}");
    }
    let r = c.cmd("p6", "SORT (BADCHARSET) KOI8-R ALL").await;
    assert!(last(&r).starts_with("p6 BAD"), "{r:?}");
    let r = c.cmd("p7", "SORT (DATE) KOI8-R ALL").await;
    assert!(last(&r).starts_with("p7 BAD [BADCHARSET"), "{r:?}");
    let r = c.cmd("p8", "NOOP").await;
    assert!(last(&r).starts_with("p8 OK"), "{r:?}");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn quota_roots_usage_and_overquota() {
    let srv = start_ext("", "quota_storage = 4096\nquota_messages = 3").await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let r = c.cmd("q0", "CAPABILITY").await;
    assert!(
        r[0].contains(" QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE"),
        "{r:?}"
    );
    let r = c.cmd("q1", "GETQUOTAROOT INBOX").await;
    assert_eq!(
        r[..2],
        [
            "* QUOTAROOT \"INBOX\" \"\"".to_string(),
            "* QUOTA \"\" (STORAGE 0 4 MESSAGE 0 3)".to_string()
        ],
        "{r:?}"
    );
    let m1 = message("een", &"x".repeat(1500));
    let m2 = message("twee", "kort");
    append(&mut c, "INBOX", &m1).await;
    append(&mut c, "Sent", &m2).await;
    let kib = (m1.len() + m2.len()).div_ceil(1024);
    let r = c.cmd("q2", "GETQUOTA \"\"").await;
    assert_eq!(
        r[0],
        format!("* QUOTA \"\" (STORAGE {kib} 4 MESSAGE 2 3)"),
        "{r:?}"
    );
    // Too big for what is left.
    let m3 = message("drie", &"y".repeat(3000));
    let r = c
        .cmd("q3", &format!("APPEND INBOX {{{}+}}\r\n{m3}", m3.len()))
        .await;
    assert!(last(&r).starts_with("q3 NO [OVERQUOTA]"), "{r:?}");
    // Two copies would make four messages.
    c.cmd("q4", "SELECT INBOX").await;
    append(&mut c, "INBOX", &message("vier", "k")).await;
    // STATUS=SIZE and RFC 9208's DELETED / DELETED-STORAGE.
    c.cmd("q4b", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let r = c
        .cmd("q4c", "STATUS Sent (MESSAGES SIZE DELETED DELETED-STORAGE)")
        .await;
    assert_eq!(
        r[0],
        format!(
            "* STATUS \"Sent\" (MESSAGES 1 SIZE {} DELETED 0 DELETED-STORAGE 0)",
            m2.len()
        )
    );
    let r = c.cmd("q4d", "STATUS INBOX (DELETED DELETED-STORAGE)").await;
    assert_eq!(
        r[0],
        format!(
            "* STATUS \"INBOX\" (DELETED 1 DELETED-STORAGE {})",
            m1.len()
        )
    );
    let r = c.cmd("q5", "COPY 1:2 Sent").await;
    assert!(last(&r).starts_with("q5 NO [OVERQUOTA]"), "{r:?}");
    // A move changes no usage and is allowed.
    let r = c.cmd("q6", "MOVE 1 Sent").await;
    assert!(last(&r).starts_with("q6 OK"), "{r:?}");
    let r = c.cmd("q7", "SETQUOTA \"\" (STORAGE 99999)").await;
    assert!(last(&r).starts_with("q7 NO"), "{r:?}");
    let r = c.cmd("q8", "GETQUOTA \"other\"").await;
    assert!(last(&r).starts_with("q8 NO"), "{r:?}");
    let r = c.cmd("q9", "GETQUOTAROOT Nergens").await;
    assert!(last(&r).starts_with("q9 NO [NONEXISTENT]"), "{r:?}");
    let r = c.cmd("q10", "GETQUOTA").await;
    assert!(last(&r).starts_with("q10 BAD"), "{r:?}");
    srv.running.shutdown().await;

    // Without configured limits there is no quota root (usage alone is not a valid
    // QUOTA response).
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let r = c.cmd("r1", "GETQUOTAROOT INBOX").await;
    assert_eq!(
        r,
        vec!["* QUOTAROOT \"INBOX\"", "r1 OK Getquotaroot completed"]
    );
    let r = c.cmd("r2", "GETQUOTA \"\"").await;
    assert!(last(&r).starts_with("r2 NO"), "{r:?}");
    srv.running.shutdown().await;
}

#[tokio::test]
async fn utf8_accept_names_and_append() {
    let srv = start().await;
    let (mut c, _) = Raw::connect(srv.addr).await;
    c.login().await;
    let r = c.cmd("u0", "CAPABILITY").await;
    assert!(r[0].contains(" UTF8=ACCEPT"), "{r:?}");
    // Before ENABLE, names travel in modified UTF-7.
    let r = c.cmd("u1", "CREATE \"Caf&AOk-\"").await;
    assert!(last(&r).starts_with("u1 OK"), "{r:?}");
    let r = c.cmd("u2", "LIST \"\" Caf*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \".\" \"Caf&AOk-\"");
    let r = c.cmd("u3", "ENABLE UTF8=ACCEPT").await;
    assert_eq!(r[0], "* ENABLED UTF8=ACCEPT");
    // After it, in UTF-8 both ways.
    let r = c.cmd("u4", "LIST \"\" Caf*").await;
    assert_eq!(r[0], "* LIST (\\HasNoChildren) \".\" \"Café\"");
    let r = c.cmd("u5", "CREATE \"Brieven van Oma Ünal\"").await;
    assert!(last(&r).starts_with("u5 OK"), "{r:?}");
    let r = c
        .cmd("u6", "STATUS \"Brieven van Oma Ünal\" (MESSAGES)")
        .await;
    assert_eq!(r[0], "* STATUS \"Brieven van Oma Ünal\" (MESSAGES 0)");
    // APPEND with the UTF8 data item and an 8-bit header.
    let msg = "From: Ünal <unal@zolder.test>\r\nSubject: Grüße\r\n\r\nHallo\r\n";
    let r = c
        .cmd(
            "u7",
            &format!("APPEND \"Café\" UTF8 (~{{{}+}}\r\n{msg})", msg.len()),
        )
        .await;
    assert!(last(&r).starts_with("u7 OK [APPENDUID"), "{r:?}");
    let r = c.cmd("u8", "EXAMINE \"Café\"").await;
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    let r = c.cmd("u9", "FETCH 1 BODY.PEEK[]").await;
    assert!(r[0].contains("Subject: Grüße"), "{r:?}");
    // SEARCH with CHARSET is refused once UTF8=ACCEPT is on; without it works.
    let r = c.cmd("u10", "SEARCH CHARSET UTF-8 ALL").await;
    assert!(last(&r).starts_with("u10 BAD"), "{r:?}");
    let r = c.cmd("u11", "SEARCH SUBJECT \"Grüße\"").await;
    assert_eq!(r[0], "* SEARCH 1");
    // The old-style name no longer means Café.
    let r = c.cmd("u12", "STATUS \"Caf&AOk-\" (MESSAGES)").await;
    assert!(last(&r).starts_with("u12 NO"), "{r:?}");
    srv.running.shutdown().await;
}
