//! The status page on `[listen] status`: a read-only HTTP/1.1 endpoint for the admin.
//! `GET /` is an HTML page (refreshing every 30 s), `GET /status.json` the same report
//! as JSON (for scripts and monitoring), `GET /health` answers `ok`.
//!
//! # Security
//! The report names accounts, senders and recipients, so it is served only to loopback
//! and `lan_networks` peers (others get 403), and the example binds it to loopback.
//! Requests are bounded: one request per connection, a head of at most 8 KiB read
//! within 10 s; nothing a client sends reaches the database or a file name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::config::Config;
use crate::net::{Listener, ListenerLimits};

const MAX_HEAD: usize = 8 * 1024;

/// Binds `[listen] status` and serves the page; records the addresses under "status".
/// Takes the config and the shutdown token explicitly (the daemon passes them), so the
/// status page does not depend on the composition root.
pub async fn start(
    config: &Arc<Config>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    addrs: &mut BTreeMap<&'static str, Vec<SocketAddr>>,
) -> std::io::Result<()> {
    for a in config.listen.status.list() {
        let l = Listener::bind("status", &a).await?;
        let local = l.local_addr();
        if !local.ip().is_loopback() {
            warn!(%local, "the status page is reachable from the network; it is served to lan_networks only");
        }
        addrs.entry("status").or_default().push(local);
        let cfg = config.clone();
        let limits = ListenerLimits {
            max_connections: 32,
            max_per_ip: 8,
            ..Default::default()
        };
        tasks.spawn(l.run(limits.clone(), shutdown.clone(), move |sock, peer| {
            let cfg = cfg.clone();
            async move {
                if let Err(e) = serve(cfg, sock, peer).await {
                    debug!(error = %e, "status request failed");
                }
            }
        }));
    }
    Ok(())
}

/// Reads one request head; `None` when it is too long, too slow or not HTTP.
async fn read_head(sock: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(true)) => Ok(Some(String::from_utf8_lossy(&buf).into_owned())),
        Ok(Ok(false)) | Err(_) => Ok(None),
        Ok(Err(e)) => Err(e),
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    if !head_only {
        sock.write_all(body).await?;
    }
    sock.shutdown().await
}

async fn serve(cfg: Arc<Config>, mut sock: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let Some(head) = read_head(&mut sock).await? else {
        return respond(
            &mut sock,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            false,
        )
        .await;
    };
    let allowed =
        peer.ip().is_loopback() || cfg.lan_networks.iter().any(|n| n.contains(&peer.ip()));
    if !allowed {
        return respond(
            &mut sock,
            "403 Forbidden",
            "text/plain",
            b"forbidden\n",
            false,
        )
        .await;
    }
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut sock,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            false,
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/health" => respond(&mut sock, "200 OK", "text/plain", b"ok\n", head_only).await,
        "/" | "/status.json" => {
            let c = cfg.clone();
            let report = tokio::task::spawn_blocking(move || {
                let conn = crate::db::open(&c.db_path()).map_err(|e| e.to_string())?;
                super::gather(&c, &conn).map_err(|e| e.to_string())
            })
            .await
            .map_err(std::io::Error::other)?;
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "status: cannot read the database");
                    return respond(
                        &mut sock,
                        "503 Service Unavailable",
                        "text/plain",
                        b"database unavailable\n",
                        head_only,
                    )
                    .await;
                }
            };
            if path == "/status.json" {
                let body = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
                respond(&mut sock, "200 OK", "application/json", &body, head_only).await
            } else {
                let body = format!(
                    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">\
                     <title>zolder on {host}</title></head>\n<body><h1>zolder on {host}</h1>\n<pre>{text}</pre>\n\
                     <p><a href=\"/status.json\">JSON</a></p></body></html>\n",
                    host = escape(&report.hostname),
                    text = escape(&report.to_text())
                );
                respond(
                    &mut sock,
                    "200 OK",
                    "text/html; charset=utf-8",
                    body.as_bytes(),
                    head_only,
                )
                .await
            }
        }
        _ => {
            respond(
                &mut sock,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                head_only,
            )
            .await
        }
    }
}

/// HTML-escapes text (sender addresses and error texts come from outside).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}
