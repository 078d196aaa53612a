//! imapd against the RFC text, one test per defect of issue 14: raw IMAP lines to the
//! real daemon (`daemon::start` on 127.0.0.1:0), expectations taken from RFC 3501,
//! 5256, 5258, 7162 and Dovecot's answers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use zolder::config::Config;
use zolder::daemon::{self, Running};

const PASSWORD: &str = "geheim";

struct Server {
    _dir: tempfile::TempDir,
    _running: Running,
    addr: SocketAddr,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hash = zolder::auth::hash_password(PASSWORD).unwrap();
    let text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\n\
         [listen]\nimap = \"127.0.0.1:0\"\n\
         [[users]]\nname = \"bouke\"\npassword_hash = \"{hash}\"\n"
    );
    let path = dir.path().join("zolder.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(&path).unwrap();
    let running = daemon::start(cfg, path.clone()).await.unwrap();
    let addr = running.addr("imap");
    Server {
        _dir: dir,
        _running: running,
        addr,
    }
}

/// A line-oriented raw IMAP client.
struct Raw {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            r: BufReader::new(r),
            w,
        };
        let greeting = raw.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let r = raw.cmd("L", &format!("LOGIN bouke {PASSWORD}")).await;
        assert!(last(&r).starts_with("L OK"), "{r:?}");
        raw
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

    async fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(&format!("{tag} {cmd}\r\n")).await;
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

    /// Runs `cmd` and asserts its tagged OK.
    async fn ok(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        let r = self.cmd(tag, cmd).await;
        assert!(last(&r).starts_with(&format!("{tag} OK")), "{cmd}: {r:?}");
        r
    }

    async fn append(&mut self, mailbox: &str, msg: &str) {
        self.ok(
            "AP",
            &format!("APPEND {mailbox} {{{}+}}\r\n{msg}", msg.len()),
        )
        .await;
    }
}

fn last(r: &[String]) -> &str {
    r.last().map(String::as_str).unwrap_or("")
}

fn message(subject: &str, headers: &str) -> String {
    format!(
        "From: Sjoerd <sjoerd@zolder.test>\r\nTo: bouke@zolder.test\r\nSubject: {subject}\r\n\
         Date: Tue, 5 Mar 2024 10:00:00 +0100\r\nMessage-ID: <{subject}@zolder.test>\r\n{headers}\r\nbody\r\n"
    )
}

/// The untagged line that starts with `prefix`.
fn find<'a>(r: &'a [String], prefix: &str) -> Option<&'a str> {
    r.iter().map(String::as_str).find(|l| l.starts_with(prefix))
}

/// The LIST/LSUB line of mailbox `name` (quoted or not).
fn named<'a>(r: &'a [String], name: &str) -> Option<&'a String> {
    r.iter()
        .find(|l| l.ends_with(&format!(" {name}")) || l.ends_with(&format!(" \"{name}\"")))
}

fn pos(r: &[String], pred: impl Fn(&str) -> bool) -> Option<usize> {
    r.iter().position(|l| pred(l))
}

// ---- 1. Keywords announced in FLAGS and PERMANENTFLAGS.

#[tokio::test]
async fn new_keywords_are_announced_before_use_in_every_session() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    let mut b = Raw::connect(srv.addr).await;
    a.append("INBOX", &message("k1", "")).await;
    a.ok("s", "SELECT INBOX").await;
    b.ok("s", "SELECT INBOX").await;
    let r = a.ok("st", "STORE 1 +FLAGS ($Label1)").await;
    let flags = pos(&r, |l| l.starts_with("* FLAGS (") && l.contains("$Label1"))
        .unwrap_or_else(|| panic!("no FLAGS with $Label1: {r:?}"));
    let perm = pos(&r, |l| {
        l.starts_with("* OK [PERMANENTFLAGS (") && l.contains("$Label1") && l.contains("\\*)")
    })
    .unwrap_or_else(|| panic!("no PERMANENTFLAGS with $Label1: {r:?}"));
    let fetch = pos(&r, |l| l.contains("FETCH") && l.contains("$Label1")).unwrap();
    assert!(flags < fetch && perm < fetch, "{r:?}");
    // The other session learns at its next command, before the FETCH.
    let r = b.ok("n", "NOOP").await;
    let flags = pos(&r, |l| l.starts_with("* FLAGS (") && l.contains("$Label1"))
        .unwrap_or_else(|| panic!("other session: {r:?}"));
    assert!(
        pos(&r, |l| l.starts_with("* OK [PERMANENTFLAGS (") && l.contains("$Label1")).is_some(),
        "{r:?}"
    );
    if let Some(f) = pos(&r, |l| l.contains("FETCH")) {
        assert!(flags < f, "{r:?}");
    }
    // Announced once: a second use of the same keyword brings no FLAGS.
    let r = a.ok("st2", "STORE 1 -FLAGS ($Label1)").await;
    assert!(find(&r, "* FLAGS").is_none(), "{r:?}");
    let r = a.ok("st2", "STORE 1 +FLAGS ($Label1)").await;
    assert!(find(&r, "* FLAGS").is_none(), "{r:?}");
    // A session selecting afterwards gets the keyword in SELECT's FLAGS.
    a.ok("st3", "STORE 1 +FLAGS (Work)").await;
    let mut c = Raw::connect(srv.addr).await;
    let r = c.ok("s", "SELECT INBOX").await;
    let f = find(&r, "* FLAGS (").unwrap();
    assert!(f.contains("Work"), "{r:?}");
    let p = find(&r, "* OK [PERMANENTFLAGS (").unwrap();
    assert!(p.contains("Work") && p.contains("\\*"), "{r:?}");
}

// ---- 2. \Recent.

#[tokio::test]
async fn recent_goes_to_the_first_session_and_search_new_old_work() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    a.append("INBOX", &message("r1", "")).await;
    a.append("INBOX", &message("r2", "")).await;
    let r = a.ok("st", "STATUS INBOX (RECENT MESSAGES)").await;
    assert!(find(&r, "* STATUS").unwrap().contains("RECENT 2"), "{r:?}");
    // EXAMINE sees them as recent but does not take them.
    let mut e = Raw::connect(srv.addr).await;
    let r = e.ok("x", "EXAMINE INBOX").await;
    assert!(r.iter().any(|l| l == "* 2 RECENT"), "{r:?}");
    let r = a.ok("s", "SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 2 RECENT"), "{r:?}");
    let r = a.ok("f", "FETCH 1:2 FLAGS").await;
    assert!(r[0].contains("\\Recent") && r[1].contains("\\Recent"), "{r:?}");
    a.ok("st", "STORE 1 +FLAGS (\\Seen)").await;
    let r = a.ok("n", "SEARCH NEW").await;
    assert_eq!(r[0], "* SEARCH 2");
    let r = a.ok("n", "SEARCH RECENT").await;
    assert_eq!(r[0], "* SEARCH 1 2");
    let r = a.ok("n", "SEARCH OLD").await;
    assert_eq!(r[0], "* SEARCH");
    // A second session gets no recent messages: the first took them.
    let mut b = Raw::connect(srv.addr).await;
    let r = b.ok("s", "SELECT INBOX").await;
    assert!(r.iter().any(|l| l == "* 0 RECENT"), "{r:?}");
    let r = b.ok("f", "FETCH 1 FLAGS").await;
    assert!(!r[0].contains("\\Recent"), "{r:?}");
    let r = b.ok("n", "SEARCH OLD").await;
    assert_eq!(r[0], "* SEARCH 1 2");
    // A new message goes to the first session that notices it.
    let mut c = Raw::connect(srv.addr).await;
    c.append("INBOX", &message("r3", "")).await;
    let r = b.ok("n", "NOOP").await;
    assert!(r.iter().any(|l| l == "* 3 EXISTS"), "{r:?}");
    assert!(r.iter().any(|l| l == "* 1 RECENT"), "{r:?}");
    let r = a.ok("n", "NOOP").await;
    assert!(r.iter().any(|l| l == "* 3 EXISTS"), "{r:?}");
    assert!(r.iter().any(|l| l == "* 2 RECENT"), "{r:?}");
    let r = b.ok("n", "SEARCH NEW").await;
    assert_eq!(r[0], "* SEARCH 3");
    let r = c.ok("st", "STATUS INBOX (RECENT)").await;
    assert!(find(&r, "* STATUS").unwrap().contains("RECENT 0"), "{r:?}");
    // \Recent cannot be stored.
    let r = b.ok("st", "STORE 3 -FLAGS (\\Recent)").await;
    assert!(r[0].contains("\\Recent"), "{r:?}");
}

// ---- 3. CONDSTORE.

#[tokio::test]
async fn condstore_store_modseq_highestmodseq_and_modified() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    a.append("INBOX", &message("c1", "")).await;
    a.append("INBOX", &message("c2", "")).await;
    a.ok("s", "SELECT INBOX").await;
    // Before CONDSTORE is on: no MODSEQ.
    let r = a.ok("st", "STORE 1 +FLAGS (\\Seen)").await;
    assert!(!r[0].contains("MODSEQ"), "{r:?}");
    // FETCH MODSEQ enables it, with HIGHESTMODSEQ on first use.
    let r = a.ok("f", "FETCH 1 (MODSEQ)").await;
    assert!(
        find(&r, "* OK [HIGHESTMODSEQ ").is_some(),
        "no HIGHESTMODSEQ on first use: {r:?}"
    );
    let r = a.ok("st", "STORE 1 +FLAGS (\\Flagged)").await;
    let f = find(&r, "* 1 FETCH").unwrap();
    assert!(f.contains("MODSEQ ("), "{r:?}");
    let m1: u64 = f.split("MODSEQ (").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    // UNCHANGEDSINCE below message 1's MODSEQ: 1 is MODIFIED, 2 is stored.
    let r = a
        .ok("st", &format!("STORE 1:2 (UNCHANGEDSINCE {}) +FLAGS (\\Answered)", m1 - 1))
        .await;
    assert!(last(&r).contains("[MODIFIED 1]"), "{r:?}");
    assert!(find(&r, "* 2 FETCH").unwrap().contains("MODSEQ"), "{r:?}");
    // SEARCH MODSEQ and ESEARCH with MODSEQ.
    let r = a.ok("se", &format!("SEARCH MODSEQ {m1}")).await;
    assert!(r[0].starts_with("* SEARCH 1 2 (MODSEQ "), "{r:?}");
    let r = a
        .ok("es", &format!("SEARCH RETURN (ALL COUNT) MODSEQ {m1}"))
        .await;
    assert!(
        r[0].starts_with("* ESEARCH (TAG \"es\") ALL 1:2 MODSEQ ") || r[0].contains(" MODSEQ "),
        "{r:?}"
    );
    let r = a
        .ok(
            "es2",
            "UID SEARCH RETURN (MIN MAX) MODSEQ \"/flags/\\\\draft\" all 1",
        )
        .await;
    assert!(r[0].contains(" MODSEQ "), "{r:?}");
    let r = a.ok("n", "NOOP").await;
    assert!(last(&r).starts_with("n OK"));
    // A fresh session: SEARCH MODSEQ alone enables CONDSTORE with HIGHESTMODSEQ.
    let mut b = Raw::connect(srv.addr).await;
    b.ok("s", "SELECT INBOX").await;
    let r = b.ok("se", "SEARCH MODSEQ 1").await;
    assert!(find(&r, "* OK [HIGHESTMODSEQ ").is_some(), "{r:?}");
    let r = b.ok("st", "STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    // .SILENT with CONDSTORE still reports the new MODSEQ (RFC 7162 §3.2).
    assert!(find(&r, "* 2 FETCH").is_some_and(|l| l.contains("MODSEQ")), "{r:?}");
}

// ---- 4-6. SEARCH keys and ENVELOPE.

#[tokio::test]
async fn sent_dates_use_the_header_zone_and_addresses_match_with_comments() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    // 23:30 -0800 on 4 March is 5 March in UTC; its own date is the 4th.
    let m1 = "From: \"User\" (comment) <user-from@domain.org>\r\nTo: Group: <a@b.c>;\r\n\
              Cc: Some One <one@domain.org> (work)\r\nSubject: s1\r\n\
              Date: Mon, 4 Mar 2024 23:30:00 -0800\r\n\r\nx\r\n";
    let m2 = "From: other@example.com\r\nSubject: s2\r\n\
              Date: Wed, 6 Mar 2024 00:30:00 +0200\r\n\r\nx\r\n";
    a.append("INBOX", m1).await;
    a.append("INBOX", m2).await;
    a.ok("s", "SELECT INBOX").await;
    let r = a.ok("a", "SEARCH SENTON 4-Mar-2024").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = a.ok("a", "SEARCH SENTBEFORE 5-Mar-2024").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = a.ok("a", "SEARCH SENTSINCE 6-Mar-2024").await;
    assert_eq!(r[0], "* SEARCH 2");
    let r = a.ok("a", "SEARCH SENTON 5-Mar-2024").await;
    assert_eq!(r[0], "* SEARCH");
    for q in [
        "user-from@domain.org",
        "USER-FROM",
        "\"User\"",
        "er-fr",
        "domain.org",
    ] {
        let r = a.ok("f", &format!("SEARCH FROM {q}")).await;
        assert_eq!(r[0], "* SEARCH 1", "FROM {q}");
    }
    let r = a.ok("f", "SEARCH CC \"some one\"").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = a.ok("f", "SEARCH TO a@b.c").await;
    assert_eq!(r[0], "* SEARCH 1");
    // Dovecot's normalized form of the address matches as a whole too.
    let r = a.ok("f", "SEARCH FROM \"User <user-from@domain.org>\"").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = a.ok("f", "SEARCH CC \"Some One <one@domain.org>\"").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = a.ok("f", "SEARCH FROM nobody").await;
    assert_eq!(r[0], "* SEARCH");
}

#[tokio::test]
async fn envelope_of_groups_has_only_start_and_end_markers() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    let m = "From: a@b.c\r\nTo: team: x@y.z, \"W Q\" <w@q.r>;\r\nCc: group:;, group2: (foo) ;\r\n\
             Subject: g\r\n\r\nx\r\n";
    a.append("INBOX", m).await;
    a.ok("s", "SELECT INBOX").await;
    let r = a.ok("f", "FETCH 1 ENVELOPE").await;
    let e = &r[0];
    assert!(
        e.contains(
            "((NIL NIL \"team\" NIL)(NIL NIL \"x\" \"y.z\")(\"W Q\" NIL \"w\" \"q.r\")(NIL NIL NIL NIL))"
        ),
        "{e}"
    );
    assert!(
        e.contains(
            "((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL))"
        ),
        "{e}"
    );
}

// ---- 7. SORT address keys, SORT=DISPLAY.

#[tokio::test]
async fn sort_by_address_uses_the_mailbox_and_display_uses_the_name() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    let mk = |from: &str, cc: &str| {
        format!("From: {from}\r\nTo: x@y.z\r\nCc: {cc}\r\nSubject: s\r\n\r\nx\r\n")
    };
    // mailbox order: b, a, c; display order: Zed(b) / ann(a) / Bob(c) → a, c, b
    a.append("INBOX", &mk("Zed <b@zzz.example>", "\"Zed\" <B@x>")).await;
    a.append("INBOX", &mk("ann <A@yyy.example>", "Ann <a@x>, z@x")).await;
    a.append("INBOX", &mk("\"Bob\" <c@aaa.example>", "c@x")).await;
    a.ok("s", "SELECT INBOX").await;
    let r = a.ok("o", "SORT (FROM) UTF-8 ALL").await;
    assert_eq!(r[0], "* SORT 2 1 3");
    let r = a.ok("o", "SORT (CC) UTF-8 ALL").await;
    assert_eq!(r[0], "* SORT 2 1 3");
    let r = a.ok("o", "SORT (REVERSE CC) UTF-8 ALL").await;
    assert_eq!(r[0], "* SORT 3 1 2");
    let r = a.ok("c", "CAPABILITY").await;
    assert!(r[0].contains(" SORT=DISPLAY"), "{r:?}");
    let r = a.ok("o", "SORT (DISPLAYFROM) UTF-8 ALL").await;
    assert_eq!(r[0], "* SORT 2 3 1");
    let r = a.ok("o", "SORT (DISPLAYTO) UTF-8 ALL").await;
    assert_eq!(r[0], "* SORT 1 2 3");
}

// ---- 8. THREAD=REFERENCES.

#[tokio::test]
async fn thread_references_follows_rfc5256() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    let mk = |subj: &str, date: &str, id: &str, extra: &str| {
        format!(
            "From: a@b.c\r\nSubject: {subj}\r\nDate: {date}\r\nMessage-ID: {id}\r\n{extra}\r\nx\r\n"
        )
    };
    // 1: a thread root; 2: reply to an absent <m0> (dummy parent) whose sibling 3 is
    // older; 2 and 3 share the dummy and sort by date: 3 before 2. 1 is newer than 3
    // and 2 with another subject, so the threads are (3 2) then (1).
    a.append(
        "INBOX",
        &mk("alpha", "Thu, 7 Mar 2024 10:00:00 +0000", "<m1@x>", ""),
    )
    .await;
    a.append(
        "INBOX",
        &mk(
            "Re: beta",
            "Wed, 6 Mar 2024 10:00:00 +0000",
            "<m2@x>",
            "References: <m0@x>\r\n",
        ),
    )
    .await;
    a.append(
        "INBOX",
        &mk(
            "Re: beta",
            "Tue, 5 Mar 2024 10:00:00 +0000",
            "<m3@x>",
            "In-Reply-To: <m0@x>\r\n",
        ),
    )
    .await;
    a.ok("s", "SELECT INBOX").await;
    let r = a.ok("t", "THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(r[0], "* THREAD ((3)(2))(1)");
    // Subject merge in the root set: a message with the same base subject and no
    // references joins the thread of an earlier root with it, as a sibling under a
    // dummy when both are non-replies (§4 step 5 C).
    a.append(
        "INBOX",
        &mk("beta", "Fri, 8 Mar 2024 10:00:00 +0000", "<m4@x>", ""),
    )
    .await;
    a.ok("n", "NOOP").await;
    let r = a.ok("t", "THREAD REFERENCES UTF-8 ALL").await;
    // The dummy <m0> is in the subject table, so 4 joins it as a sibling of 3 and 2
    // (step 5 B keeps a dummy in the table; 5 C puts the message under it).
    assert_eq!(r[0], "* THREAD ((3)(2)(4))(1)");
    // A References list that claims a parent for a message with no References of
    // its own does not stick (step 1 B): 2 is 3's reply, 1 stands alone.
    a.ok("c", "CREATE T2").await;
    a.append(
        "T2",
        &mk("one", "Sun, 10 Mar 2024 10:00:00 +0000", "<a1@x>", ""),
    )
    .await;
    a.append(
        "T2",
        &mk(
            "two",
            "Sat, 9 Mar 2024 10:00:00 +0000",
            "<a2@x>",
            "References: <a1@x> <a3@x>\r\n",
        ),
    )
    .await;
    a.append(
        "T2",
        &mk("three", "Fri, 8 Mar 2024 10:00:00 +0000", "<a3@x>", ""),
    )
    .await;
    a.ok("s", "SELECT T2").await;
    let r = a.ok("t", "THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(r[0], "* THREAD (3 2)(1)");
}

// ---- 9. LIST (SUBSCRIBED) and LSUB.

#[tokio::test]
async fn list_subscribed_nonexistent_and_lsub_noselect_parent() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    a.ok("c", "CREATE Gone").await;
    a.ok("c", "CREATE Top.Child").await;
    a.ok("c", "SUBSCRIBE Gone").await;
    a.ok("c", "SUBSCRIBE Top.Child").await;
    a.ok("c", "DELETE Gone").await;
    let r = a.ok("l", "LIST (SUBSCRIBED) \"\" *").await;
    let gone = named(&r, "Gone").unwrap_or_else(|| panic!("no Gone: {r:?}"));
    assert!(
        gone.contains("\\Subscribed") && gone.contains("\\NonExistent"),
        "{gone}"
    );
    let child = named(&r, "Top.Child").unwrap();
    assert!(child.contains("\\Subscribed"), "{r:?}");
    assert!(named(&r, "Top").is_none(), "Top is not subscribed: {r:?}");
    // LSUB %: the unsubscribed parent appears as \Noselect.
    let r = a.ok("l", "LSUB \"\" %").await;
    let top = named(&r, "Top").unwrap_or_else(|| panic!("{r:?}"));
    assert!(top.contains("\\Noselect"), "{top}");
    assert!(named(&r, "Top.Child").is_none(), "{r:?}");
    // LSUB * lists the subscribed names, the deleted one included (RFC 3501 §6.3.9:
    // subscriptions outlive the mailbox), without \Noselect on existing ones.
    let r = a.ok("l", "LSUB \"\" *").await;
    let child = named(&r, "Top.Child").unwrap();
    assert!(!child.contains("\\Noselect"), "{r:?}");
    assert!(named(&r, "Gone").is_some(), "{r:?}");
    assert!(named(&r, "Top").is_none(), "{r:?}");
    // RECURSIVEMATCH: the parent is reported with CHILDINFO.
    let r = a
        .ok("l", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %")
        .await;
    let top = r
        .iter()
        .find(|l| l.contains("\"Top\" (") || l.contains(" Top ("))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(top.contains("(\"CHILDINFO\" (\"SUBSCRIBED\"))"), "{r:?}");
}

// ---- 10. ESORT and IMAP4rev2 rules.

#[tokio::test]
async fn esort_returns_esearch_in_sort_order() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    for (s, d) in [("b", 7), ("a", 5), ("c", 6), ("d", 8)] {
        let m = format!("From: x@y.z\r\nSubject: {s}\r\nDate: Tue, {d} Mar 2024 10:00:00 +0000\r\n\r\nx\r\n");
        a.append("INBOX", &m).await;
    }
    a.ok("s", "SELECT INBOX").await;
    let r = a.ok("c", "CAPABILITY").await;
    assert!(r[0].contains(" ESORT"), "{r:?}");
    let r = a
        .ok("e1", "SORT RETURN (MIN MAX ALL COUNT) (SUBJECT) UTF-8 ALL")
        .await;
    assert_eq!(r[0], "* ESEARCH (TAG \"e1\") MIN 2 MAX 4 ALL 2,1,3:4 COUNT 4");
    let r = a.ok("e2", "UID SORT RETURN () (DATE) UTF-8 ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"e2\") UID ALL 2:3,1,4");
    let r = a.ok("e3", "SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT zzz").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"e3\") COUNT 0");
}

#[tokio::test]
async fn imap4rev2_sessions_get_no_recent_and_esearch_answers() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    a.append("INBOX", &message("v1", "")).await;
    let r = a.ok("e", "ENABLE IMAP4rev2").await;
    assert_eq!(r[0], "* ENABLED IMAP4rev2");
    let r = a.ok("s", "SELECT INBOX").await;
    assert!(r.iter().all(|l| !l.contains("RECENT")), "{r:?}");
    let r = a.ok("f", "FETCH 1 FLAGS").await;
    assert_eq!(r[0], "* 1 FETCH (FLAGS ())");
    let r = a.ok("q", "SEARCH ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"q\") ALL 1");
    let r = a.ok("q2", "UID SEARCH DELETED").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"q2\") UID");
    // A new message: EXISTS, but no RECENT.
    let mut b = Raw::connect(srv.addr).await;
    b.append("INBOX", &message("v2", "")).await;
    let r = a.ok("n", "NOOP").await;
    assert!(r.iter().any(|l| l == "* 2 EXISTS"), "{r:?}");
    assert!(r.iter().all(|l| !l.contains("RECENT")), "{r:?}");
}

#[tokio::test]
async fn searchres_saves_and_reuses_the_result() {
    let srv = start().await;
    let mut a = Raw::connect(srv.addr).await;
    for i in 1..=4 {
        a.append("INBOX", &message(&format!("sr{i}"), "")).await;
    }
    a.ok("s", "SELECT INBOX").await;
    let r = a.ok("c", "CAPABILITY").await;
    assert!(r[0].contains(" SEARCHRES"), "{r:?}");
    a.ok("st", "STORE 2,4 +FLAGS (\\Flagged)").await;
    // SAVE alone: no ESEARCH response.
    let r = a.ok("sv", "UID SEARCH RETURN (SAVE) FLAGGED").await;
    assert_eq!(r.len(), 1, "{r:?}");
    let r = a.ok("f", "FETCH $ (UID)").await;
    assert_eq!(r[..2], ["* 2 FETCH (UID 2)", "* 4 FETCH (UID 4)"]);
    let r = a.ok("q", "SEARCH $ SUBJECT sr4").await;
    assert_eq!(r[0], "* SEARCH 4");
    let r = a.ok("q", "SEARCH NOT $").await;
    assert_eq!(r[0], "* SEARCH 1 3");
    a.ok("st", "STORE $ +FLAGS (\\Deleted)").await;
    let r = a.ok("x", "UID EXPUNGE $").await;
    assert!(r.iter().any(|l| l == "* 4 EXPUNGE"), "{r:?}");
    // SAVE with MIN keeps only the minimum; the expunged one dropped out before.
    let r = a.ok("sv", "SEARCH RETURN (SAVE MIN) ALL").await;
    assert_eq!(r[0], "* ESEARCH (TAG \"sv\") MIN 1");
    let r = a.ok("f", "UID FETCH $ (UID)").await;
    assert_eq!(r[0], "* 1 FETCH (UID 1)");
    assert_eq!(r.len(), 2, "{r:?}");
}
