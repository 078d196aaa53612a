//! Shared harness for the outgoing-mail tests: a config in a temp dir, the daemon on
//! loopback with a recording local pipeline and a movable clock, a small fake
//! smarthost with per-recipient fault injection, and a raw SMTP client.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use zolder::message::{Deliver, DeliveryReport, Generated, Incoming, RcptOutcome};

/// What the local pipeline was handed.
#[derive(Debug, Clone)]
pub struct LocalGot {
    pub sender: Option<String>,
    pub rcpts: Vec<String>,
    pub bytes: Vec<u8>,
}

/// A local `Deliver` that records; a recipient named `auto@…` makes it generate an
/// auto-reply to the sender (like a Sieve vacation), to test the daemon's wrapper.
#[derive(Default)]
pub struct RecordingLocal {
    pub got: Mutex<Vec<LocalGot>>,
}

#[async_trait::async_trait]
impl Deliver for RecordingLocal {
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        let mut out = Vec::new();
        for m in msgs {
            self.got.lock().unwrap().push(LocalGot {
                sender: m.envelope.sender.clone(),
                rcpts: m.envelope.recipients.clone(),
                bytes: m.message.bytes.clone(),
            });
            let mut generated = Vec::new();
            if let Some(s) = &m.envelope.sender
                && m.envelope.recipients.iter().any(|r| r.starts_with("auto@"))
            {
                generated.push(Generated {
                        sender: None,
                        recipients: vec![s.clone()],
                        bytes: b"From: auto@zolder.thuis\r\nSubject: Away\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n".to_vec(),
                        reason: "vacation".into(),
                    });
            }
            out.push(DeliveryReport {
                outcomes: m
                    .envelope
                    .recipients
                    .iter()
                    .map(|r| (r.clone(), RcptOutcome::Delivered))
                    .collect(),
                generated,
                ..Default::default()
            });
        }
        out
    }
}

impl RecordingLocal {
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
    pub fn all(&self) -> Vec<LocalGot> {
        self.got.lock().unwrap().clone()
    }
}

/// One message the fake smarthost accepted.
#[derive(Debug, Clone)]
pub struct SinkGot {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    /// The MAIL line and the accepted RCPT lines as received (ESMTP parameters).
    pub lines: Vec<String>,
}

/// A minimal SMTP server playing the ISP: `reject*` → 550 at RCPT, `tempfail*` → 451
/// at RCPT, everything else accepted. [`FakeSink::start_pipelining`] also offers
/// PIPELINING (RFC 2920) and then answers DATA without recipients with 554 (and a
/// second MAIL inside an open transaction with 503, like Postfix);
/// [`FakeSink::start_dsn`] offers DSN (RFC 3461) as well.
pub struct FakeSink {
    pub port: u16,
    pub got: Arc<Mutex<Vec<SinkGot>>>,
    pub connections: Arc<AtomicUsize>,
}

impl FakeSink {
    pub async fn start() -> FakeSink {
        Self::start_with(false, false, 0).await
    }
    pub async fn start_pipelining() -> FakeSink {
        Self::start_with(true, false, 0).await
    }
    pub async fn start_dsn() -> FakeSink {
        Self::start_with(true, true, 0).await
    }
    /// Pipelining, and after `limit` messages per session the next MAIL gets
    /// "421 too many messages" and the connection is closed (some ISPs do this).
    pub async fn start_limited(limit: usize) -> FakeSink {
        Self::start_with(true, false, limit).await
    }
    async fn start_with(pipelining: bool, dsn: bool, limit: usize) -> FakeSink {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<SinkGot>>> = Arc::default();
        let connections: Arc<AtomicUsize> = Arc::default();
        let (g, c) = (got.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let g = g.clone();
                tokio::spawn(async move {
                    let _ = sink_session(s, g, pipelining, dsn, limit).await;
                });
            }
        });
        FakeSink {
            port,
            got,
            connections,
        }
    }
    pub fn all(&self) -> Vec<SinkGot> {
        self.got.lock().unwrap().clone()
    }
}

async fn sink_session(
    s: TcpStream,
    got: Arc<Mutex<Vec<SinkGot>>>,
    pipelining: bool,
    dsn: bool,
    limit: usize,
) -> std::io::Result<()> {
    let mut taken = 0usize;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    let mut from = String::new();
    let mut rcpts = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut in_tx = false;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let up = line.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") && dsn {
            b"250-sink\r\n250-PIPELINING\r\n250-DSN\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        } else if up.starts_with("EHLO") && pipelining {
            b"250-sink\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        } else if up.starts_with("EHLO") {
            b"250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        } else if up.starts_with("AUTH PLAIN ") {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(line[11..].trim())
                .unwrap_or_default();
            if raw.ends_with(b"\0good") {
                b"235 2.7.0 ok\r\n"
            } else {
                b"535 5.7.8 Authentication credentials invalid\r\n"
            }
        } else if up.starts_with("AUTH XOAUTH2 ") {
            // Only the second access token of the test's endpoint is good: the first
            // gets the JSON challenge, then 535 (Gmail's behaviour).
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(line[13..].trim())
                .unwrap_or_default();
            if raw == b"user=sjoerd\x01auth=Bearer tok-2\x01\x01" {
                b"235 2.7.0 Accepted\r\n"
            } else {
                w.write_all(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n").await?;
                line.clear();
                r.read_line(&mut line).await?;
                b"535 5.7.8 Username and Password not accepted\r\n"
            }
        } else if up.starts_with("MAIL FROM:") && limit > 0 && taken >= limit {
            w.write_all(b"421 4.7.0 Too many messages in this session\r\n")
                .await?;
            return Ok(());
        } else if up.starts_with("MAIL FROM:") && in_tx && pipelining {
            b"503 5.5.1 Error: nested MAIL command\r\n"
        } else if up.starts_with("MAIL FROM:") {
            in_tx = true;
            lines = vec![line.trim_end().to_string()];
            from = line[10..]
                .trim()
                .trim_matches(['<', '>'])
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            rcpts.clear();
            b"250 2.1.0 ok\r\n"
        } else if up.starts_with("RCPT TO:") {
            let a = line[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            if a.starts_with("reject") {
                b"550 5.1.1 No such user here\r\n"
            } else if a.starts_with("tempfail") {
                b"451 4.3.0 Try again later\r\n"
            } else {
                rcpts.push(a);
                lines.push(line.trim_end().to_string());
                b"250 2.1.5 ok\r\n"
            }
        } else if up.starts_with("DATA") && pipelining && rcpts.is_empty() {
            b"554 5.5.1 no valid recipients\r\n"
        } else if up.starts_with("DATA") {
            w.write_all(b"354 go\r\n").await?;
            let mut data = Vec::new();
            let mut l = Vec::new();
            loop {
                l.clear();
                if r.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                let body: &[u8] = if l.starts_with(b".") { &l[1..] } else { &l };
                data.extend_from_slice(body);
            }
            got.lock().unwrap().push(SinkGot {
                from: from.clone(),
                rcpts: std::mem::take(&mut rcpts),
                data,
                lines: std::mem::take(&mut lines),
            });
            in_tx = false;
            taken += 1;
            b"250 2.0.0 queued\r\n"
        } else if up.starts_with("RSET") {
            in_tx = false;
            rcpts.clear();
            b"250 ok\r\n"
        } else if up.starts_with("NOOP") {
            b"250 ok\r\n"
        } else if up.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 no\r\n"
        };
        w.write_all(reply).await?;
    }
}

/// A clock tests can move forward.
#[derive(Clone, Default)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn clock(&self) -> zolder::queue::Clock {
        let off = self.0.clone();
        Arc::new(move || zolder::db::now() + off.load(Ordering::SeqCst))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// Writes `zolder.toml` into `dir`; `extra` is appended (e.g. a `[smarthost]` table).
pub fn write_config(dir: &Path, listen: &str, lan: &str, extra: &str) -> PathBuf {
    // argon2id hash of "geheim" for the user bouke.
    let hash = zolder::auth::hash_password("geheim").unwrap();
    let text = format!(
        r#"hostname = "zolder.thuis"
data_dir = "data"
local_domains = ["zolder.thuis"]
lan_networks = [{lan}]
postmaster = "bouke"

[listen]
submission = [{listen}]

[[users]]
name = "bouke"
addresses = ["bouke@zolder.thuis"]
password_hash = "{hash}"

[[users]]
name = "sjoerd"
addresses = ["sjoerd@zolder.thuis"]

[aliases]
root = ["sjoerd"]
auto = ["bouke"]

{extra}
"#
    );
    let p = dir.join("zolder.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn smarthost_table(port: u16, extra: &str) -> String {
    format!(
        r#"[smarthost]
host = "127.0.0.1"
port = {port}
tls = "none"
schedule = "manual"
{extra}
[smarthost.masquerade]
"bouke@zolder.thuis" = "bouke@provider.nl"
"@zolder.thuis" = "family@provider.nl"
"#
    )
}

/// The daemon, with its recording local pipeline and clock.
pub struct Daemon {
    pub running: zolder::daemon::Running,
    pub local: Arc<RecordingLocal>,
    pub clock: TestClock,
}

impl Daemon {
    pub async fn start(cfg_path: &Path) -> Daemon {
        Self::start_with(cfg_path, Arc::default(), TestClock::default()).await
    }
    pub async fn start_with(
        cfg_path: &Path,
        local: Arc<RecordingLocal>,
        clock: TestClock,
    ) -> Daemon {
        let cfg = zolder::config::Config::load(cfg_path).unwrap();
        let hooks = zolder::daemon::Hooks {
            local: Some(local.clone()),
            clock: Some(clock.clock()),
            data_check: None,
        };
        let running = zolder::daemon::start_with(cfg, cfg_path.to_path_buf(), hooks)
            .await
            .unwrap();
        Daemon {
            running,
            local,
            clock,
        }
    }
    pub fn submission(&self) -> std::net::SocketAddr {
        self.running.addr("submission")
    }
    pub fn queue(&self) -> &zolder::queue::Queue {
        self.running.queue.as_ref().unwrap()
    }
    pub async fn flush(&self) -> zolder::queue::FlushSummary {
        self.queue().flush().await.expect("runner running")
    }
    /// Waits (up to 10 s) until `f` holds, nudging the runner.
    pub async fn wait_for(&self, what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            self.queue().wake();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
    pub fn queue_rows(
        &self,
    ) -> Vec<(
        zolder::db::queue::MessageRow,
        Vec<zolder::db::queue::RcptRow>,
    )> {
        let c = zolder::db::open(&self.running.ctx.config.db_path()).unwrap();
        zolder::db::queue::list(&c).unwrap()
    }
}

/// A raw SMTP client for protocol-level tests.
pub struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr, from_ip: Option<&str>) -> Raw {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = from_ip {
            sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        }
        let s = sock.connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut raw = Raw {
            r: BufReader::new(r),
            w,
        };
        let (code, _) = raw.reply().await;
        assert_eq!(code, 220);
        raw
    }
    /// Reads one (possibly multi-line) reply: (code, all text).
    pub async fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).await.unwrap();
            assert!(l.len() >= 4, "short reply {l:?}");
            all.push_str(&l);
            if l.as_bytes()[3] == b' ' {
                return (l[..3].parse().unwrap(), all);
            }
        }
    }
    pub async fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }
    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line).await;
        self.reply().await
    }
    pub async fn data(&mut self, body: &str) -> (u16, String) {
        let (c, t) = self.cmd("DATA").await;
        assert_eq!(c, 354, "{t}");
        self.w.write_all(body.as_bytes()).await.unwrap();
        self.w.write_all(b"\r\n.\r\n").await.unwrap();
        self.reply().await
    }
}
