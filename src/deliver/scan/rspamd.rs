//! rspamd's normal worker, `POST /checkv2` over plain HTTP on loopback (rspamd's
//! "protocol" page). Hand-rolled HTTP/1.0 on tokio: one request per connection, no
//! chunked encoding in either direction, so the client stays tiny.
//!
//! # Format
//! ```text
//! C: POST /checkv2 HTTP/1.0\r\n  Host, Content-Length, From, Rcpt (repeated), Queue-Id
//! S: HTTP/1.1 200 OK ... \r\n\r\n{"score":..,"required_score":..,"action":"add header",
//!    "symbols":{"NAME":{"score":..}}, "milter":{"add_headers":{"X-..":{"value":..}}}}
//! ```
//! `action` of `reject`, `add header` or `rewrite subject` counts as spam; `no action`,
//! `greylist` and `soft reject` do not (there is no SMTP session to greylist fetched
//! mail in). Non-200 statuses and unreadable bodies are temporary failures.
//!
//! # Security
//! rspamd is the admin's daemon; the reply is still capped at 1 MiB, and the headers it
//! suggests are added only when they are single well-formed header lines.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Check, Checked, Verdict, one_line, valid_header_name};
use crate::message::Envelope;

const MAX_REPLY: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Rspamd {
    /// `host:port`
    addr: String,
}

/// The parts of rspamd's JSON reply we use.
#[derive(Debug, Clone, PartialEq)]
pub struct RspamdReply {
    pub action: String,
    pub score: f64,
    pub required: f64,
    pub symbols: Vec<String>,
    pub add_headers: Vec<(String, String)>,
}

impl Rspamd {
    /// `http://HOST:PORT[/]`.
    pub fn parse(url: &str) -> Option<Rspamd> {
        let rest = url.strip_prefix("http://")?;
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') {
            return None;
        }
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:11333")
        };
        Some(Rspamd { addr })
    }

    pub async fn checkv2(&self, message: &[u8], env: &Envelope) -> Result<RspamdReply, String> {
        let mut req = format!(
            "POST /checkv2 HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            message.len()
        );
        if let Some(s) = &env.sender {
            req.push_str(&format!("From: {}\r\n", one_line(s)));
        }
        for r in env.recipients.iter().take(100) {
            req.push_str(&format!("Rcpt: {}\r\n", one_line(r)));
        }
        req.push_str("\r\n");
        let err = |e: std::io::Error| format!("rspamd {}: {e}", self.addr);
        let mut s = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(err)?;
        s.write_all(req.as_bytes()).await.map_err(err)?;
        s.write_all(message).await.map_err(err)?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_REPLY)
            .read_to_end(&mut raw)
            .await
            .map_err(err)?;
        parse_http(&raw).map_err(|e| format!("rspamd {}: {e}", self.addr))
    }
}

/// Splits an HTTP/1.x response and parses its JSON body.
pub fn parse_http(raw: &[u8]) -> Result<RspamdReply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.lines().next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("HTTP status {:?}", one_line(status)));
    }
    let mut body = &raw[split + 4..];
    if let Some(len) = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    }) {
        body = &body[..len.min(body.len())];
    }
    parse_json(body)
}

pub fn parse_json(body: &[u8]) -> Result<RspamdReply, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad JSON reply: {e}"))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("rspamd error: {e}"));
    }
    let action = v
        .get("action")
        .and_then(|a| a.as_str())
        .ok_or("reply without action")?
        .to_string();
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let mut symbols: Vec<String> = v
        .get("symbols")
        .and_then(|s| s.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    symbols.sort();
    let mut add_headers = Vec::new();
    if let Some(h) = v.pointer("/milter/add_headers").and_then(|h| h.as_object()) {
        for (name, val) in h {
            let value = match val {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => {
                    o.get("value").and_then(|x| x.as_str()).map(String::from)
                }
                _ => None,
            };
            if let Some(value) = value
                && valid_header_name(name)
            {
                add_headers.push((name.clone(), one_line(&value)));
            }
        }
    }
    Ok(RspamdReply {
        action,
        score: num("score"),
        required: num("required_score"),
        symbols,
        add_headers,
    })
}

#[async_trait::async_trait]
impl Check for Rspamd {
    fn name(&self) -> &'static str {
        "rspamd"
    }
    fn is_spam_check(&self) -> bool {
        true
    }
    async fn check(&self, message: &[u8], envelope: &Envelope) -> Checked {
        match self.checkv2(message, envelope).await {
            Ok(r) => {
                let spam = matches!(
                    r.action.as_str(),
                    "reject" | "add header" | "rewrite subject"
                );
                let mut c = Checked::new(if spam {
                    Verdict::Spam {
                        score: r.score,
                        symbols: r.symbols.clone(),
                    }
                } else {
                    Verdict::Clean
                });
                c = c.header(
                    "X-Rspamd-Status",
                    format!(
                        "{}, score={:.2} required={:.2} action={} symbols={}",
                        if spam { "Yes" } else { "No" },
                        r.score,
                        r.required,
                        r.action,
                        r.symbols.join(",")
                    ),
                );
                c.headers.extend(r.add_headers);
                c
            }
            Err(e) => Checked::new(Verdict::temporary_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;

    const REPLY: &str = r#"{"is_skipped":false,"score":15.5,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0},"R_DKIM_NA":{"name":"R_DKIM_NA","score":0.0}},"milter":{"add_headers":{"X-Spamd-Bar":{"value":"+++","order":0},"Bad Name":{"value":"x","order":0}}}}"#;

    #[test]
    fn parses_reply() {
        let r = parse_json(REPLY.as_bytes()).unwrap();
        assert_eq!(r.action, "reject");
        assert_eq!(r.score, 15.5);
        assert_eq!(r.symbols, ["GTUBE", "R_DKIM_NA"]);
        assert_eq!(
            r.add_headers,
            [("X-Spamd-Bar".to_string(), "+++".to_string())]
        );
        assert!(parse_http(b"HTTP/1.1 500 Internal\r\n\r\n{}").is_err());
        assert!(parse_json(b"{\"error\":\"bad\"}").is_err());
        assert!(Rspamd::parse("http://127.0.0.1:11333/").is_some());
        assert_eq!(
            Rspamd::parse("http://localhost").unwrap().addr,
            "localhost:11333"
        );
        assert!(Rspamd::parse("https://x").is_none());
    }

    /// A fake rspamd: checks the request shape and answers like /checkv2.
    #[tokio::test]
    async fn talks_http() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers + the 4-byte body.
            while !(buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"spam")) {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            let req = String::from_utf8_lossy(&buf).to_string();
            let body = REPLY.as_bytes();
            s.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            )
            .await
            .unwrap();
            s.write_all(body).await.unwrap();
            req
        });
        let r = Rspamd::parse(&format!("http://{addr}")).unwrap();
        let env = Envelope::new(
            Some("a@example.org".into()),
            vec!["b@zolder.thuis".into()],
            Source::Import,
        );
        let c = r.check(b"spam", &env).await;
        assert!(matches!(c.verdict, Verdict::Spam { .. }), "{c:?}");
        assert!(c.headers.iter().any(|(n, _)| n == "X-Spamd-Bar"));
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /checkv2 HTTP/1.0\r\n"));
        assert!(req.contains("\r\nFrom: a@example.org\r\n"));
        assert!(req.contains("\r\nRcpt: b@zolder.thuis\r\n"));
        assert!(req.contains("\r\nContent-Length: 4\r\n"));
    }
}
