//! imapd's message-building extensions against the real daemon, as raw IMAP byte
//! transcripts with golden responses shaped after the RFC examples: BINARY (RFC 3516:
//! FETCH BINARY/BINARY.SIZE decoding base64 and quoted-printable, `~{n}` literals,
//! `[UNKNOWN-CTE]`), MULTIAPPEND (RFC 3502, all or nothing) and CATENATE (RFC 4469,
//! URLs of the user's own messages only).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use common::{Server, Zolder};

const PASSWORD: &str = "geheim";

async fn start() -> Server {
    Zolder::new("zolder.test")
        .top("[limits]\nmessage_size = 4000")
        .listen("imap")
        .user("bouke", PASSWORD, &[])
        .user("anna", PASSWORD, &[])
        .start()
        .await
}

/// A raw client working in bytes: BINARY answers may hold NUL and 8-bit octets.
struct Raw {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    async fn login(addr: SocketAddr, user: &str) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            r: BufReader::new(r),
            w,
        };
        raw.line().await;
        let r = raw
            .cmd(b"L", format!("LOGIN {user} {PASSWORD}").as_bytes())
            .await;
        assert!(r.last().unwrap().starts_with(b"L OK"));
        raw
    }

    /// One response line, any `{n}`/`~{n}` literal read and joined in.
    async fn line(&mut self) -> Vec<u8> {
        let mut l = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_until(b'\n', &mut l))
            .await
            .expect("server answered in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        while l.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            l.pop();
        }
        if l.ends_with(b"}")
            && let Some(open) = l.iter().rposition(|&b| b == b'{')
            && let Ok(n) = std::str::from_utf8(&l[open + 1..l.len() - 1])
                .unwrap_or("x")
                .parse::<usize>()
        {
            let mut buf = vec![0u8; n];
            self.r.read_exact(&mut buf).await.unwrap();
            let rest = Box::pin(self.line()).await;
            l.extend_from_slice(b"\r\n");
            l.extend_from_slice(&buf);
            l.extend_from_slice(&rest);
        }
        l
    }

    async fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).await.unwrap();
        self.w.flush().await.unwrap();
    }

    async fn cmd(&mut self, tag: &[u8], cmd: &[u8]) -> Vec<Vec<u8>> {
        let mut b = tag.to_vec();
        b.push(b' ');
        b.extend_from_slice(cmd);
        b.extend_from_slice(b"\r\n");
        self.send(&b).await;
        let mut want = tag.to_vec();
        want.push(b' ');
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&want);
            out.push(l);
            if done {
                return out;
            }
        }
    }

    async fn append(&mut self, mailbox: &str, msg: &[u8]) -> Vec<u8> {
        let mut c = format!("APPEND {mailbox} {{{}+}}\r\n", msg.len()).into_bytes();
        c.extend_from_slice(msg);
        let r = self.cmd(b"AP", &c).await;
        let l = r.last().unwrap().clone();
        assert!(l.starts_with(b"AP OK [APPENDUID "), "{}", show(&r));
        l
    }
}

fn show(lines: &[Vec<u8>]) -> String {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn last(r: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(r.last().unwrap()).into_owned()
}

const MIME: &[u8] = b"From: sjoerd@zolder.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nau lait\r\n\
--b\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n\
--b\r\nContent-Type: application/x-foo\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n\
--b--\r\n";

#[tokio::test]
async fn binary_fetch_decodes_parts() {
    let srv = start().await;
    let mut c = Raw::login(srv.addr("imap"), "bouke").await;
    let caps = show(&c.cmd(b"C", b"CAPABILITY").await);
    for cap in ["BINARY", "MULTIAPPEND", "CATENATE"] {
        assert!(caps.split([' ', '\n']).any(|w| w == cap), "{cap}: {caps}");
    }
    c.append("INBOX", MIME).await;
    c.cmd(b"S", b"SELECT INBOX").await;

    // RFC 3516 §4.2: decoded bytes; a literal8 only for data with a NUL.
    let r = c
        .cmd(
            b"F1",
            b"FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.SIZE[1])",
        )
        .await;
    assert_eq!(
        r[0],
        b"* 1 FETCH (BINARY[2] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[2] 4 BINARY.SIZE[1] 12)"
            .to_vec(),
        "{}",
        show(&r)
    );
    assert_eq!(last(&r), "F1 OK Fetch completed");

    // Partial, and the non-PEEK form sets \Seen (reported with FLAGS).
    let r = c.cmd(b"F2", b"FETCH 1 (BINARY[1]<0.6>)").await;
    assert_eq!(
        r[0],
        b"* 1 FETCH (BINARY[1]<0> {6}\r\ncaf\xe9 a FLAGS (\\Seen))".to_vec(),
        "{}",
        show(&r)
    );

    // A transfer encoding we do not know: the whole FETCH fails.
    let r = c.cmd(b"F3", b"FETCH 1 (UID BINARY.PEEK[3])").await;
    assert_eq!(r.len(), 1, "{}", show(&r));
    assert!(last(&r).starts_with("F3 NO [UNKNOWN-CTE]"), "{}", show(&r));
    let r = c.cmd(b"F4", b"FETCH 1 BINARY.SIZE[3]").await;
    assert!(last(&r).starts_with("F4 NO [UNKNOWN-CTE]"), "{}", show(&r));

    // A part that does not exist is empty, as for BODY[].
    let r = c.cmd(b"F5", b"FETCH 1 (BINARY.PEEK[7])").await;
    assert_eq!(
        r[0],
        b"* 1 FETCH (BINARY[7] {0}\r\n)".to_vec(),
        "{}",
        show(&r)
    );
    // BINARY has no HEADER/TEXT sections.
    let r = c.cmd(b"F6", b"FETCH 1 (BINARY[1.HEADER])").await;
    assert!(last(&r).starts_with("F6 BAD"), "{}", show(&r));
    srv.shutdown().await;
}

#[tokio::test]
async fn append_binary_literal_keeps_nul_octets() {
    let srv = start().await;
    let mut c = Raw::login(srv.addr("imap"), "bouke").await;
    let msg = b"Subject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\na\x00b\r\n";
    // RFC 3516 §4.4: APPEND with a literal8.
    let mut cmd = format!("APPEND INBOX (\\Seen) ~{{{}}}", msg.len()).into_bytes();
    cmd.extend_from_slice(b"\r\n");
    c.send(b"A1 ").await;
    c.send(&cmd).await;
    assert!(c.line().await.starts_with(b"+ "));
    c.send(msg).await;
    c.send(b"\r\n").await;
    let l = c.line().await;
    assert!(
        l.starts_with(b"A1 OK [APPENDUID "),
        "{}",
        String::from_utf8_lossy(&l)
    );
    c.cmd(b"S", b"SELECT INBOX").await;
    let r = c.cmd(b"F", b"FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[])").await;
    let want = format!(
        "* 1 FETCH (BINARY[1] ~{{5}}\r\na\0b\r\n BINARY.SIZE[] {})",
        msg.len()
    );
    assert_eq!(r[0], want.into_bytes(), "{}", show(&r));
    srv.shutdown().await;
}

fn status_messages(r: &[Vec<u8>]) -> String {
    show(r).lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn multiappend_is_all_or_nothing() {
    let srv = start().await;
    let mut c = Raw::login(srv.addr("imap"), "bouke").await;
    c.cmd(b"C", b"CREATE saved-messages").await;
    let one = b"Subject: one\r\n\r\nfirst\r\n";
    let two = b"Subject: two\r\n\r\nsecond\r\n";
    // RFC 3502 §6's example: two messages, one command, one APPENDUID set.
    let mut cmd = format!("APPEND saved-messages (\\Seen) {{{}+}}\r\n", one.len()).into_bytes();
    cmd.extend_from_slice(one);
    cmd.extend_from_slice(
        format!(
            " (\\Draft) \"05-Mar-2024 10:00:00 +0100\" {{{}+}}\r\n",
            two.len()
        )
        .as_bytes(),
    );
    cmd.extend_from_slice(two);
    let r = c.cmd(b"A1", &cmd).await;
    let l = last(&r);
    assert!(l.starts_with("A1 OK [APPENDUID "), "{l}");
    assert!(l.contains(" 1:2]"), "{l}");
    assert_eq!(srv.count("bouke", "saved-messages"), 2);

    // The third message is empty: nothing of the command is stored.
    let mut cmd = format!("APPEND saved-messages {{{}+}}\r\n", one.len()).into_bytes();
    cmd.extend_from_slice(one);
    cmd.extend_from_slice(b" {0+}\r\n");
    let r = c.cmd(b"A2", &cmd).await;
    assert!(last(&r).starts_with("A2 NO "), "{}", show(&r));
    let r = c.cmd(b"ST", b"STATUS saved-messages (MESSAGES)").await;
    assert_eq!(
        status_messages(&r),
        "* STATUS \"saved-messages\" (MESSAGES 2)"
    );

    // Each message within the size limit, or the command fails as a whole.
    let big = vec![b'x'; 3000];
    let mut cmd = format!("APPEND saved-messages {{{}+}}\r\n", big.len()).into_bytes();
    cmd.extend_from_slice(&big);
    cmd.extend_from_slice(format!(" {{{}+}}\r\n", big.len()).as_bytes());
    cmd.extend_from_slice(&big);
    let r = c.cmd(b"A3", &cmd).await;
    assert!(last(&r).starts_with("A3 OK"), "{}", show(&r));
    assert_eq!(srv.count("bouke", "saved-messages"), 4);

    // Missing mailbox: [TRYCREATE], nothing stored.
    let mut cmd = format!("APPEND nowhere {{{}+}}\r\n", one.len()).into_bytes();
    cmd.extend_from_slice(one);
    cmd.extend_from_slice(format!(" {{{}+}}\r\n", two.len()).as_bytes());
    cmd.extend_from_slice(two);
    let r = c.cmd(b"A4", &cmd).await;
    assert!(last(&r).starts_with("A4 NO [TRYCREATE]"), "{}", show(&r));
    srv.shutdown().await;
}

#[tokio::test]
async fn catenate_builds_from_own_messages_only() {
    let srv = start().await;
    let mut c = Raw::login(srv.addr("imap"), "bouke").await;
    c.cmd(b"C", b"CREATE Drafts").await;
    let draft = b"Subject: draft\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nold text\r\n--q--\r\n";
    let l = String::from_utf8(c.append("Drafts", draft).await).unwrap();
    let validity: u32 = l["AP OK [APPENDUID ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // RFC 4469 §5's example shape: the old header, new text, a part of the old message.
    let text = b"\r\nnew text\r\n";
    let mut cmd = format!(
        "APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"/Drafts;UIDVALIDITY={validity}/;UID=1/;section=HEADER\" TEXT {{{}+}}\r\n",
        text.len()
    )
    .into_bytes();
    cmd.extend_from_slice(text);
    cmd.extend_from_slice(
        format!(" URL \"/Drafts;UIDVALIDITY={validity}/;UID=1/;section=1\")").as_bytes(),
    );
    let r = c.cmd(b"A1", &cmd).await;
    assert!(
        last(&r).starts_with(&format!("A1 OK [APPENDUID {validity} 2]")),
        "{}",
        show(&r)
    );
    c.cmd(b"S", b"SELECT Drafts").await;
    let r = c.cmd(b"F", b"FETCH 2 (BODY.PEEK[])").await;
    let header_end = draft.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut want = draft[..header_end].to_vec();
    want.extend_from_slice(text);
    want.extend_from_slice(b"old text");
    let mut golden = format!("* 2 FETCH (BODY[] {{{}}}\r\n", want.len()).into_bytes();
    golden.extend_from_slice(&want);
    golden.push(b')');
    assert_eq!(r[0], golden, "{}", show(&r));

    // A stale UIDVALIDITY, a missing UID, another user's mailbox: [BADURL].
    let anna_msg = b"Subject: anna's\r\n\r\nprivate\r\n";
    let mut a = Raw::login(srv.addr("imap"), "anna").await;
    a.append("INBOX", anna_msg).await;
    for (tag, url) in [
        ("B1", format!("/Drafts;UIDVALIDITY={}/;UID=1", validity + 1)),
        ("B2", "/Drafts/;UID=99".to_string()),
        ("B3", "imap://anna@zolder.test/INBOX/;UID=1".to_string()),
        ("B4", "http://zolder.test/INBOX/;UID=1".to_string()),
    ] {
        let cmd = format!("APPEND Drafts CATENATE (URL \"{url}\")");
        let r = c.cmd(tag.as_bytes(), cmd.as_bytes()).await;
        assert!(
            last(&r).starts_with(&format!("{tag} NO [BADURL ")),
            "{}",
            show(&r)
        );
    }
    assert_eq!(srv.count("bouke", "Drafts"), 2);

    // The assembled message is bounded by the message size limit.
    let big = vec![b'y'; 2500];
    let mut cmd = format!("APPEND Drafts CATENATE (TEXT {{{}+}}\r\n", big.len()).into_bytes();
    cmd.extend_from_slice(&big);
    cmd.extend_from_slice(format!(" TEXT {{{}+}}\r\n", big.len()).as_bytes());
    cmd.extend_from_slice(&big);
    cmd.push(b')');
    let r = c.cmd(b"T1", &cmd).await;
    assert!(last(&r).starts_with("T1 NO [TOOBIG]"), "{}", show(&r));
    assert_eq!(srv.count("bouke", "Drafts"), 2);
    srv.shutdown().await;
}
