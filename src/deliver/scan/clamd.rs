//! clamd client: `zINSTREAM` over a unix socket or TCP (clamd(8) "COMMANDS").
//!
//! # Format
//! ```text
//! C: zINSTREAM\0
//! C: <len: u32 big-endian><len bytes>   (repeated; 64 KiB chunks here)
//! C: \0\0\0\0                            (end of stream)
//! S: stream: OK\0 | stream: <name> FOUND\0 | <text> ERROR\0
//! ```
//! clamd refuses a stream larger than its `StreamMaxLength` with
//! `INSTREAM size limit exceeded. ERROR` and closes. We send at most
//! `scan.clamd_max_size` bytes; when clamd's own limit is lower it says so, and we
//! learn the limit (halving until it fits) and scan the first part of the message,
//! saying so in `X-Virus-Scanned`. Any other error or a dead socket is temporary.
//!
//! # Security
//! clamd is trusted (local admin's daemon); its reply is still read with a 4 KiB cap.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Check, Checked, Verdict};
use crate::message::Envelope;

const CHUNK: usize = 64 * 1024;
const MAX_REPLY: usize = 4096;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddr {
    Unix(PathBuf),
    Tcp(String),
}

/// What clamd said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdReply {
    Clean,
    Found(String),
    SizeLimit,
    Error(String),
}

/// The clamd check.
#[derive(Debug)]
pub struct Clamd {
    addr: ClamdAddr,
    /// Most bytes we send; lowered when clamd reports its StreamMaxLength is smaller.
    limit: AtomicU64,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Clamd {
    /// `unix:PATH` or `tcp:HOST:PORT`.
    pub fn parse(spec: &str, max_size: u64) -> Option<Clamd> {
        let addr = if let Some(p) = spec.strip_prefix("unix:") {
            ClamdAddr::Unix(PathBuf::from(p))
        } else if let Some(a) = spec.strip_prefix("tcp:") {
            if !a.contains(':') {
                return None;
            }
            ClamdAddr::Tcp(a.to_string())
        } else {
            return None;
        };
        Some(Clamd {
            addr,
            limit: AtomicU64::new(max_size.max(1024)),
        })
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match &self.addr {
            ClamdAddr::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            ClamdAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        })
    }

    /// `zPING` → true on `PONG`.
    pub async fn ping(&self) -> std::io::Result<bool> {
        let mut s = self.connect().await?;
        s.write_all(b"zPING\0").await?;
        Ok(read_reply(&mut s).await? == "PONG")
    }

    /// Streams `data` to clamd and returns its parsed reply.
    pub async fn instream(&self, data: &[u8]) -> std::io::Result<ClamdReply> {
        let mut s = self.connect().await?;
        s.write_all(b"zINSTREAM\0").await?;
        let mut write_err = None;
        for chunk in data.chunks(CHUNK) {
            let mut frame = Vec::with_capacity(chunk.len() + 4);
            frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            frame.extend_from_slice(chunk);
            if let Err(e) = s.write_all(&frame).await {
                // clamd closes early on "size limit exceeded": read what it said.
                write_err = Some(e);
                break;
            }
        }
        if write_err.is_none()
            && let Err(e) = s.write_all(&[0, 0, 0, 0]).await
        {
            write_err = Some(e);
        }
        let _ = s.flush().await;
        match read_reply(&mut s).await {
            Ok(r) if !r.is_empty() => Ok(parse_reply(&r)),
            Ok(_) => {
                Err(write_err
                    .unwrap_or_else(|| std::io::Error::other("clamd closed without a reply")))
            }
            Err(e) => Err(write_err.unwrap_or(e)),
        }
    }
}

async fn read_reply(s: &mut (impl AsyncRead + Unpin)) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 256];
    loop {
        let n = s.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(end) = buf.iter().position(|&b| b == 0 || b == b'\n') {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_REPLY {
            return Err(std::io::Error::other("clamd reply too long"));
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

/// Parses `stream: OK`, `stream: NAME FOUND`, `... ERROR`.
pub fn parse_reply(r: &str) -> ClamdReply {
    let body = r.strip_prefix("stream:").map(str::trim).unwrap_or(r);
    if r.contains("size limit exceeded") {
        ClamdReply::SizeLimit
    } else if body == "OK" {
        ClamdReply::Clean
    } else if let Some(name) = body.strip_suffix(" FOUND") {
        ClamdReply::Found(name.trim().to_string())
    } else {
        ClamdReply::Error(r.to_string())
    }
}

#[async_trait::async_trait]
impl Check for Clamd {
    fn name(&self) -> &'static str {
        "clamd"
    }
    async fn check(&self, message: &[u8], _envelope: &Envelope) -> Checked {
        // At most a few rounds: each size-limit answer halves what we send.
        for _ in 0..8 {
            let limit = self.limit.load(Ordering::Relaxed) as usize;
            let part = &message[..message.len().min(limit)];
            match self.instream(part).await {
                Ok(ClamdReply::Clean) => {
                    let c = Checked::new(Verdict::Clean);
                    return if part.len() < message.len() {
                        c.header(
                            "X-Virus-Scanned-Part",
                            format!("first {} of {} bytes", part.len(), message.len()),
                        )
                    } else {
                        c
                    };
                }
                Ok(ClamdReply::Found(n)) => return Checked::new(Verdict::Infected(n)),
                Ok(ClamdReply::SizeLimit) if part.len() > 1024 => {
                    let lower = (part.len() / 2) as u64;
                    tracing::warn!(
                        sent = part.len(),
                        "clamd's StreamMaxLength is below scan.clamd_max_size; sending at most {lower} bytes from now on"
                    );
                    self.limit.fetch_min(lower, Ordering::Relaxed);
                }
                Ok(ClamdReply::SizeLimit) => {
                    return Checked::new(Verdict::temporary_error(
                        "clamd refuses even 1 KiB (StreamMaxLength)",
                    ));
                }
                Ok(ClamdReply::Error(e)) => {
                    return Checked::new(Verdict::temporary_error(format!("clamd: {e}")));
                }
                Err(e) => {
                    let where_ = match &self.addr {
                        ClamdAddr::Unix(p) => p.display().to_string(),
                        ClamdAddr::Tcp(a) => a.clone(),
                    };
                    return Checked::new(Verdict::temporary_error(format!("clamd {where_}: {e}")));
                }
            }
        }
        Checked::new(Verdict::temporary_error(
            "clamd keeps refusing the stream size",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply("stream: OK"), ClamdReply::Clean);
        assert_eq!(
            parse_reply("stream: Test.EICAR.NDB.UNOFFICIAL FOUND"),
            ClamdReply::Found("Test.EICAR.NDB.UNOFFICIAL".into())
        );
        assert_eq!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            ClamdReply::SizeLimit
        );
        assert!(matches!(
            parse_reply("UNKNOWN COMMAND"),
            ClamdReply::Error(_)
        ));
        assert!(Clamd::parse("tcp:127.0.0.1:3310", 10).is_some());
        assert!(Clamd::parse("tcp:localhost", 10).is_none());
        assert!(Clamd::parse("/run/clamd.sock", 10).is_none());
    }

    /// A fake clamd with a 2 KiB StreamMaxLength: the client learns the limit.
    #[tokio::test]
    async fn learns_stream_max_length() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut cmd = [0u8; 10];
                    s.read_exact(&mut cmd).await.unwrap();
                    assert_eq!(&cmd, b"zINSTREAM\0");
                    let mut total = 0usize;
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let n = u32::from_be_bytes(len) as usize;
                        if n == 0 {
                            break;
                        }
                        let mut d = vec![0u8; n];
                        s.read_exact(&mut d).await.unwrap();
                        total += n;
                        if total > 2048 {
                            let _ = s.write_all(b"INSTREAM size limit exceeded. ERROR\0").await;
                            return;
                        }
                    }
                    s.write_all(b"stream: OK\0").await.unwrap();
                });
            }
        });
        let c = Clamd::parse(&format!("tcp:{addr}"), 1 << 20).unwrap();
        let env = Envelope::new(None, vec![], crate::message::Source::Import);
        let r = c.check(&vec![b'a'; 10_000], &env).await;
        assert_eq!(r.verdict, Verdict::Clean);
        assert!(r.headers[0].1.starts_with("first "), "{r:?}");
        assert!(c.limit.load(Ordering::Relaxed) <= 2048);
        // Down: temporary.
        let dead = Clamd::parse("unix:/nonexistent/clamd.sock", 1024).unwrap();
        assert!(matches!(
            dead.check(b"x", &env).await.verdict,
            Verdict::Error {
                temporary: true,
                ..
            }
        ));
    }
}
