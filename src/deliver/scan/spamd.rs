//! SpamAssassin's spamd, spoken directly (the spamc protocol, `spamd/PROTOCOL`).
//!
//! # Format
//! ```text
//! C: SYMBOLS SPAMC/1.5\r\n
//! C: Content-length: <n>\r\n
//! C: User: <name>\r\n                    (optional)
//! C: \r\n
//! C: <n message bytes>                   then half-close
//! S: SPAMD/1.1 0 EX_OK\r\n
//! S: Content-length: <m>\r\n
//! S: Spam: True ; 1000.0 / 5.0\r\n
//! S: \r\n
//! S: GTUBE,NO_RECEIVED,NO_RELAYS          (SYMBOLS: comma-separated, no final CRLF)
//! ```
//! A non-zero status (`SPAMD/1.0 76 Bad header line`) or an unreadable reply is a
//! temporary failure, like a refused connection: unknown errors are temporary.
//!
//! # Security
//! spamd is the admin's daemon; its reply is still read with a 64 KiB cap.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Check, Checked, Verdict, one_line};
use crate::message::Envelope;

const MAX_REPLY: u64 = 64 * 1024;

/// spamd's answer to CHECK or SYMBOLS.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamdReply {
    pub spam: bool,
    pub score: f64,
    pub required: f64,
    pub symbols: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Spamd {
    addr: String,
    user: Option<String>,
}

impl Spamd {
    pub fn new(addr: &str, user: Option<String>) -> Spamd {
        Spamd {
            addr: addr.to_string(),
            user,
        }
    }

    /// Sends `message` with SYMBOLS and parses the answer.
    pub async fn symbols(&self, message: &[u8]) -> Result<SpamdReply, String> {
        let mut s = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("spamd {}: {e}", self.addr))?;
        let mut req = format!("SYMBOLS SPAMC/1.5\r\nContent-length: {}\r\n", message.len());
        if let Some(u) = &self.user {
            req.push_str(&format!("User: {}\r\n", one_line(u)));
        }
        req.push_str("\r\n");
        let io = async {
            s.write_all(req.as_bytes()).await?;
            s.write_all(message).await?;
            s.shutdown().await?;
            let mut out = Vec::new();
            (&mut s).take(MAX_REPLY).read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let raw = io.await.map_err(|e| format!("spamd {}: {e}", self.addr))?;
        parse_reply(&raw).map_err(|e| format!("spamd {}: {e}", self.addr))
    }
}

/// Parses a SPAMD/1.x reply to CHECK or SYMBOLS.
pub fn parse_reply(raw: &[u8]) -> Result<SpamdReply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => (text.as_ref(), ""),
    };
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut words = status.split_whitespace();
    if !words.next().is_some_and(|w| w.starts_with("SPAMD/")) {
        return Err(format!("not a spamd reply: {:?}", one_line(status)));
    }
    let code = words.next().unwrap_or("");
    if code != "0" {
        return Err(format!("spamd said {:?}", one_line(status)));
    }
    let mut reply = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("Spam") {
            // "True ; 15.0 / 5.0"
            let (flag, scores) = v.split_once(';').ok_or("bad Spam header")?;
            let (score, required) = scores.split_once('/').ok_or("bad Spam header")?;
            reply = Some(SpamdReply {
                spam: matches!(flag.trim().to_ascii_lowercase().as_str(), "true" | "yes"),
                score: score.trim().parse().map_err(|_| "bad score")?,
                required: required.trim().parse().map_err(|_| "bad required score")?,
                symbols: vec![],
            });
        }
    }
    let mut reply = reply.ok_or("no Spam header in the reply")?;
    reply.symbols = body
        .trim()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Ok(reply)
}

/// SpamAssassin's `X-Spam-Level`: one star per point, at most 50.
pub fn stars(score: f64) -> String {
    "*".repeat(score.clamp(0.0, 50.0) as usize)
}

#[async_trait::async_trait]
impl Check for Spamd {
    fn name(&self) -> &'static str {
        "spamd"
    }
    fn is_spam_check(&self) -> bool {
        true
    }
    async fn check(&self, message: &[u8], _envelope: &Envelope) -> Checked {
        match self.symbols(message).await {
            Ok(r) => {
                let status = format!(
                    "{}, score={:.1} required={:.1} tests={}",
                    if r.spam { "Yes" } else { "No" },
                    r.score,
                    r.required,
                    r.symbols.join(",")
                );
                let v = if r.spam {
                    Verdict::Spam {
                        score: r.score,
                        symbols: r.symbols,
                    }
                } else {
                    Verdict::Clean
                };
                Checked::new(v)
                    .header("X-Spam-Status", status)
                    .header("X-Spam-Level", stars(r.score))
            }
            Err(e) => Checked::new(Verdict::temporary_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let r = parse_reply(
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,NO_RECEIVED,NO_RELAYS",
        )
        .unwrap();
        assert!(r.spam);
        assert_eq!(r.score, 1000.0);
        assert_eq!(r.symbols, ["GTUBE", "NO_RECEIVED", "NO_RELAYS"]);
        let r = parse_reply(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.0 / 5.0\r\n\r\n").unwrap();
        assert!(!r.spam);
        assert!(r.symbols.is_empty());
        assert!(parse_reply(b"SPAMD/1.0 76 Bad header line: FROB SPAMC/1.5\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_reply(b"SPAMD/1.1 0 EX_OK\r\n\r\n").is_err());
        assert_eq!(stars(3.7), "***");
        assert_eq!(stars(-2.0), "");
    }
}
