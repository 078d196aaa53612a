//! pop3d against the real daemon on 127.0.0.1:0: raw-socket transcripts for every
//! command, STLS, SASL PLAIN, deletion only at QUIT, and bad input answered with
//! -ERR while the session stays usable.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use zolder::config::Config;
use zolder::daemon::{self, Running};
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};

const PASSWORD: &str = "geheim";

async fn start() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().unwrap();
    let hash = zolder::auth::hash_password(PASSWORD).unwrap();
    let text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\nlocal_domains = [\"zolder.test\"]\npostmaster = \"bouke\"\n\
         [listen]\npop3 = \"127.0.0.1:0\"\npop3s = \"127.0.0.1:0\"\n\
         [[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.test\"]\npassword_hash = \"{hash}\"\n"
    );
    let path = dir.path().join("zolder.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(&path).unwrap();
    let running = daemon::start(cfg, path).await.unwrap();
    (dir, running)
}

async fn deliver(running: &Running, bodies: &[&[u8]]) {
    let msgs = bodies
        .iter()
        .map(|b| Incoming {
            envelope: Envelope::new(
                Some("alice@example.org".into()),
                vec!["bouke@zolder.test".into()],
                Source::Local {
                    user: "test".into(),
                },
            ),
            message: RawMessage::new(b.to_vec()),
        })
        .collect();
    let reports = running.ctx.local_delivery.deliver_batch(msgs).await;
    assert!(reports.iter().all(|r| r.all_delivered()), "{reports:?}");
}

struct Client {
    io: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Client {
            io: BufReader::new(s),
        };
        let g = c.line().await;
        assert!(g.starts_with("+OK"), "{g}");
        c
    }
    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.io.read_line(&mut l))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        l.trim_end_matches("\r\n").to_string()
    }
    async fn cmd(&mut self, c: &str) -> String {
        self.io
            .get_mut()
            .write_all(format!("{c}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }
    /// Reads a multi-line body up to the lone ".", un-stuffing dots.
    async fn multiline(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            if l == "." {
                return out;
            }
            out.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
        }
    }
    async fn login(&mut self) {
        assert!(self.cmd("USER bouke").await.starts_with("+OK"));
        let r = self.cmd(&format!("PASS {PASSWORD}")).await;
        assert!(r.starts_with("+OK"), "{r}");
    }
}

#[tokio::test]
async fn full_transcript() {
    let (_dir, running) = start().await;
    deliver(
        &running,
        &[
            b"Subject: one\n\nfirst body\n.starts with a dot\n",
            b"Subject: two\r\nX-A: b\r\n\r\nline1\r\nline2\r\nline3\r\n",
        ],
    )
    .await;
    let addr = running.addr("pop3");
    let mut c = Client::connect(addr).await;
    let r = c.cmd("CAPA").await;
    assert!(r.starts_with("+OK"));
    let caps = c.multiline().await;
    for want in ["TOP", "UIDL", "USER", "SASL PLAIN", "STLS", "PIPELINING"] {
        assert!(
            caps.iter().any(|l| l == want),
            "{want} missing from {caps:?}"
        );
    }
    assert!(c.cmd("STAT").await.starts_with("-ERR"));
    assert!(c.cmd("XYZZY").await.starts_with("-ERR"));
    let r = c.cmd("USER bouke").await;
    assert!(r.starts_with("+OK"));
    let r = c.cmd("PASS wrong").await;
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    c.login().await;
    let stat = c.cmd("STAT").await;
    let parts: Vec<&str> = stat.split(' ').collect();
    assert_eq!(parts[0], "+OK");
    assert_eq!(parts[1], "2");
    assert!(c.cmd("LIST").await.starts_with("+OK"));
    let list = c.multiline().await;
    assert_eq!(list.len(), 2);
    let total: u64 = list
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(parts[2].parse::<u64>().unwrap(), total);
    assert!(c.cmd("UIDL").await.starts_with("+OK"));
    let uidl = c.multiline().await;
    assert_eq!(uidl.len(), 2);
    assert_ne!(uidl[0].split(' ').nth(1), uidl[1].split(' ').nth(1));
    // RETR: the size announced by LIST is the size of what is sent (CRLF, unstuffed).
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    let body = c.multiline().await;
    let sent: usize = body.iter().map(|l| l.len() + 2).sum();
    assert_eq!(
        sent as u64,
        list[0].split(' ').nth(1).unwrap().parse::<u64>().unwrap()
    );
    assert!(body.iter().any(|l| l == ".starts with a dot"), "{body:?}");
    assert!(
        body.iter().any(|l| l.starts_with("Delivered-To:")),
        "{body:?}"
    );
    // TOP 2 1: headers plus one body line.
    assert!(c.cmd("TOP 2 1").await.starts_with("+OK"));
    let top = c.multiline().await;
    assert!(top.iter().any(|l| l == "line1"));
    assert!(!top.iter().any(|l| l == "line2"));
    assert!(c.cmd("RETR 3").await.starts_with("-ERR"));
    assert!(c.cmd("RETR x").await.starts_with("-ERR"));
    // DELE then RSET undoes; DELE then a dropped connection deletes nothing.
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("-ERR"));
    assert!(c.cmd("STAT").await.starts_with("+OK 1 "));
    assert!(c.cmd("RSET").await.starts_with("+OK"));
    assert!(c.cmd("STAT").await.starts_with("+OK 2 "));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    drop(c);
    let mut c = Client::connect(addr).await;
    c.login().await;
    assert!(c.cmd("STAT").await.starts_with("+OK 2 "));
    // DELE + QUIT removes it, and the UIDL of the other message is unchanged.
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    let mut c = Client::connect(addr).await;
    c.login().await;
    assert!(c.cmd("STAT").await.starts_with("+OK 1 "));
    assert!(
        c.cmd("UIDL 1")
            .await
            .ends_with(uidl[1].split(' ').nth(1).unwrap())
    );
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    running.shutdown().await;
}

#[tokio::test]
async fn sasl_plain_and_long_lines() {
    use base64::Engine;
    let (_dir, running) = start().await;
    let mut c = Client::connect(running.addr("pop3")).await;
    // An over-long line is refused and the session goes on.
    let long = "NOOP ".to_string() + &"x".repeat(20_000);
    assert!(c.cmd(&long).await.starts_with("-ERR"));
    let bad = base64::engine::general_purpose::STANDARD.encode("\0bouke\0nope");
    assert!(
        c.cmd(&format!("AUTH PLAIN {bad}"))
            .await
            .starts_with("-ERR")
    );
    // Without an initial response: the server asks with "+ ".
    assert_eq!(c.cmd("AUTH PLAIN").await.trim_end(), "+");
    let good = base64::engine::general_purpose::STANDARD.encode(format!("\0bouke\0{PASSWORD}"));
    let r = c.cmd(&good).await;
    assert!(r.starts_with("+OK"), "{r}");
    assert!(c.cmd("STAT").await.starts_with("+OK 0 0"));
    running.shutdown().await;
}

#[tokio::test]
async fn implicit_tls_and_stls() {
    let (dir, running) = start().await;
    deliver(&running, &[b"Subject: tls\n\nsecret\n"]).await;
    let cert = std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap();
    let connector = async_native_tls::TlsConnector::new()
        .add_root_certificate(native_tls::Certificate::from_pem(&cert).unwrap());
    // pop3s
    let tcp = TcpStream::connect(running.addr("pop3s")).await.unwrap();
    let tls = connector.connect("localhost", tcp).await.unwrap();
    let mut io = BufReader::new(tls);
    let mut l = String::new();
    io.read_line(&mut l).await.unwrap();
    assert!(l.starts_with("+OK"), "{l}");
    io.get_mut()
        .write_all(format!("USER bouke\r\nPASS {PASSWORD}\r\nSTAT\r\n").as_bytes())
        .await
        .unwrap();
    for want in ["+OK", "+OK", "+OK 1 "] {
        l.clear();
        io.read_line(&mut l).await.unwrap();
        assert!(l.starts_with(want), "{l}");
    }
    // STLS on the plain port, then the same login over TLS.
    let mut c = Client::connect(running.addr("pop3")).await;
    assert!(c.cmd("STLS").await.starts_with("+OK"));
    let tls = connector
        .connect("localhost", c.io.into_inner())
        .await
        .unwrap();
    let mut io = BufReader::new(tls);
    io.get_mut().write_all(b"CAPA\r\n").await.unwrap();
    let mut caps = String::new();
    loop {
        l.clear();
        io.read_line(&mut l).await.unwrap();
        if l == ".\r\n" {
            break;
        }
        caps.push_str(&l);
    }
    assert!(!caps.contains("STLS"), "{caps}");
    io.get_mut()
        .write_all(format!("USER bouke\r\nPASS {PASSWORD}\r\nQUIT\r\n").as_bytes())
        .await
        .unwrap();
    for want in ["+OK", "+OK", "+OK"] {
        l.clear();
        io.read_line(&mut l).await.unwrap();
        assert!(l.starts_with(want), "{l}");
    }
    running.shutdown().await;
}
