//! OAuth2 for ISP logins (XOAUTH2 and OAUTHBEARER): trades the configured refresh token
//! at the token endpoint for an access token, caches it until shortly before it
//! expires, and refreshes it once more when the server refuses it.
//!
//! Owns the token cache and a minimal HTTP/1.0 POST client (plain or TLS, one request
//! per connection); nothing else. Rotated refresh tokens in a response are not written
//! back: the configured one stays in use.
//!
//! # Security
//! The token endpoint's answer is untrusted: it is read up to 64 KiB, the status must
//! be 200 and the body JSON with an `access_token` string. Secrets come from files
//! checked by [`crate::config::read_secret_file`] and never reach a log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::FetchError;
use crate::config::account::OAuth2Config;
use crate::net::Stream;

/// Largest token-endpoint response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Tokens are refreshed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Access tokens by account name, shared by every poll of this process.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    /// A valid access token for `account`: the cached one unless `force` or expired.
    pub async fn token(
        &self,
        account: &str,
        cfg: &OAuth2Config,
        force: bool,
    ) -> Result<String, FetchError> {
        if !force
            && let Some((t, until)) = self.tokens.lock().unwrap().get(account)
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let (tok, lifetime) = refresh(cfg).await?;
        let until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        self.tokens
            .lock()
            .unwrap()
            .insert(account.to_string(), (tok.clone(), until));
        Ok(tok)
    }

    /// Forgets `account`'s token (after the server refused it).
    pub fn invalidate(&self, account: &str) {
        self.tokens.lock().unwrap().remove(account);
    }
}

/// The SASL initial response for `mechanism` (`xoauth2` or `oauthbearer`), unencoded.
pub fn sasl_response(mechanism: &str, user: &str, host: &str, port: u16, token: &str) -> Vec<u8> {
    if mechanism.eq_ignore_ascii_case("oauthbearer") {
        // RFC 7628 §3.1: gs2 header, then key=value pairs separated by ^A.
        format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
            .into_bytes()
    } else {
        format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
    }
}

/// The SASL mechanism name as the server advertises it.
pub fn mechanism_name(mechanism: &str) -> &'static str {
    if mechanism.eq_ignore_ascii_case("oauthbearer") {
        "OAUTHBEARER"
    } else {
        "XOAUTH2"
    }
}

/// base64 of [`sasl_response`].
pub fn sasl_b64(mechanism: &str, user: &str, host: &str, port: u16, token: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(sasl_response(mechanism, user, host, port, token))
}

/// One refresh-token grant (RFC 6749 §6): returns the access token and its lifetime.
pub async fn refresh(cfg: &OAuth2Config) -> Result<(String, Duration), FetchError> {
    let refresh_token = match (&cfg.refresh_token, &cfg.refresh_token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => crate::config::read_secret_file(f).map_err(FetchError::Config)?,
        (None, None) => {
            return Err(FetchError::Config(
                "oauth2 needs refresh_token or refresh_token_file".into(),
            ));
        }
    };
    let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(f)) => Some(crate::config::read_secret_file(f).map_err(FetchError::Config)?),
        (None, None) => None,
    };
    let mut form = format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}",
        form_encode(&refresh_token),
        form_encode(&cfg.client_id)
    );
    if let Some(s) = secret {
        form.push_str("&client_secret=");
        form.push_str(&form_encode(&s));
    }
    let (status, body) = post(&cfg.token_url, &form).await?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        FetchError::Auth(format!("token endpoint {}: not JSON ({e})", cfg.token_url))
    })?;
    if status != 200 {
        let err = v.get("error").and_then(|e| e.as_str()).unwrap_or("?");
        return Err(FetchError::Auth(format!(
            "token endpoint {}: HTTP {status}, error {err}",
            cfg.token_url
        )));
    }
    let tok = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| {
            FetchError::Auth(format!("token endpoint {}: no access_token", cfg.token_url))
        })?;
    let secs = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(3600);
    Ok((tok.to_string(), Duration::from_secs(secs)))
}

/// application/x-www-form-urlencoded for one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// POSTs a form to an http:// or https:// URL; returns (status, body).
async fn post(url: &str, form: &str) -> Result<(u16, Vec<u8>), FetchError> {
    let bad = || FetchError::Config(format!("oauth2 token_url `{url}` is not an http(s) URL"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (hostport, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let io = |e: std::io::Error| FetchError::Connect(format!("token endpoint {url}: {e}"));
    let tcp = tokio::time::timeout(
        super::conn::CONNECT_TIMEOUT,
        TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| FetchError::Connect(format!("token endpoint {url}: timed out")))?
    .map_err(io)?;
    let mut s = Stream::Plain(tcp);
    if tls {
        let mut b = native_tls::TlsConnector::builder();
        b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        s = s
            .connect_tls(&async_native_tls::TlsConnector::from(b), host)
            .await
            .map_err(io)?;
    }
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let fut = async {
        s.write_all(req.as_bytes()).await?;
        s.flush().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            if buf.len() + n > MAX_RESPONSE {
                return Err(std::io::Error::other("response larger than 64 KiB"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .map_err(|_| FetchError::Connect(format!("token endpoint {url}: timed out")))?
        .map_err(io)?;
    parse_http_response(&buf).ok_or_else(|| {
        FetchError::Protocol(format!("token endpoint {url}: malformed HTTP response"))
    })
}

/// (status, body) of a complete HTTP/1.x response without chunked encoding.
fn parse_http_response(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return None;
    }
    Some((status, buf[end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    #[test]
    fn sasl_strings() {
        assert_eq!(
            sasl_response("xoauth2", "u@x", "h", 993, "T"),
            b"user=u@x\x01auth=Bearer T\x01\x01".to_vec()
        );
        assert_eq!(
            sasl_response("oauthbearer", "u@x", "imap.x", 993, "T"),
            b"n,a=u@x,\x01host=imap.x\x01port=993\x01auth=Bearer T\x01\x01".to_vec()
        );
        assert_eq!(form_encode("a b/c+d"), "a%20b%2Fc%2Bd");
    }

    /// A token endpoint on loopback that hands out "tok-1", "tok-2", … and checks the form.
    async fn endpoint(hits: Arc<AtomicUsize>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let hits = hits.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    // Read headers and body (Content-Length) of the POST.
                    loop {
                        let n = s.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..e]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .unwrap()
                                .trim()
                                .parse()
                                .unwrap();
                            if buf.len() >= e + 4 + len || n == 0 {
                                break;
                            }
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let ok = text.starts_with("POST /token HTTP/1.0")
                        && text
                            .contains("grant_type=refresh_token&refresh_token=R%2F1&client_id=cid");
                    let resp = if ok {
                        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!(
                            "{{\"access_token\":\"tok-{n}\",\"expires_in\":3600,\"token_type\":\"Bearer\"}}"
                        );
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        let body = "{\"error\":\"invalid_grant\"}";
                        format!(
                            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    s.write_all(resp.as_bytes()).await.unwrap();
                });
            }
        });
        format!("http://{addr}/token")
    }

    fn cfg(url: String, token: &str) -> OAuth2Config {
        OAuth2Config {
            token_url: url,
            client_id: "cid".into(),
            client_secret: None,
            client_secret_file: None,
            refresh_token_file: None,
            refresh_token: Some(token.into()),
            mechanism: "xoauth2".into(),
        }
    }

    #[tokio::test]
    async fn refresh_caches_and_forces() {
        let hits = Arc::new(AtomicUsize::new(0));
        let url = endpoint(hits.clone()).await;
        let cache = TokenCache::default();
        let c = cfg(url.clone(), "R/1");
        assert_eq!(cache.token("acc", &c, false).await.unwrap(), "tok-1");
        // Cached: no second request.
        assert_eq!(cache.token("acc", &c, false).await.unwrap(), "tok-1");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Refused by the server → forced refresh.
        assert_eq!(cache.token("acc", &c, true).await.unwrap(), "tok-2");
        cache.invalidate("acc");
        assert_eq!(cache.token("acc", &c, false).await.unwrap(), "tok-3");
        // A bad refresh token is an auth error naming the endpoint.
        let e = cache
            .token("other", &cfg(url, "wrong"), false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid_grant"), "{e}");
    }
}
