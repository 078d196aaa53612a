//! OAuth2 for ISP logins (XOAUTH2 and OAUTHBEARER): trades the configured refresh token
//! at the token endpoint for an access token, caches it until shortly before it
//! expires, and refreshes it once more when the server refuses it.
//!
//! Owns the token cache and a minimal HTTP/1.0 POST client (plain or TLS, one request
//! per connection); nothing else. Tokens live in memory and in the database
//! (`fetch_oauth2`, through `db::fetch`): the access token, so that `zolder fetch` run
//! from cron does not refresh on every run, and the refresh token — an endpoint that
//! rotates refresh tokens (RFC 6749 §6; Microsoft's and many others do) hands out a new
//! one with each access token and may refuse the old one from then on, so the new one
//! is committed before it is used, and used next time instead of the configured one.
//! A changed refresh token in the config (a new grant by the admin) starts a new chain.
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

use sha2::{Digest, Sha256};

use super::{FetchDb, FetchError};
use crate::config::account::OAuth2Config;
use crate::db;
use crate::net::Stream;

/// Largest token-endpoint response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Tokens are refreshed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Access tokens by account name, shared by every poll of this process.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Without a database: the latest tokens of each account's chain.
    rotated: Mutex<HashMap<String, db::fetch::OAuth2Tokens>>,
}

impl TokenCache {
    /// A valid access token for `account`, kept in memory only (the smarthost's; a
    /// rotated refresh token lives as long as the process): see [`Self::token_in`].
    pub async fn token(
        &self,
        account: &str,
        cfg: &OAuth2Config,
        force: bool,
    ) -> Result<String, FetchError> {
        self.token_in(None, account, cfg, force).await
    }

    /// A valid access token for `account`: the cached one (memory, then `db`) unless
    /// `force` or expired; otherwise a refresh, whose tokens are stored in `db` (and in
    /// memory, where a rotated refresh token is also used when there is no `db`).
    pub async fn token_in(
        &self,
        db: Option<&FetchDb>,
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
        let configured = configured_refresh_token(cfg)?;
        let origin = hex::encode(Sha256::digest(configured.as_bytes()));
        let acc = account.to_string();
        let stored = match db {
            Some(db) => db.run(move |c| db::fetch::oauth2_tokens(c, &acc)).await?,
            None => self.rotated.lock().unwrap().get(account).cloned(),
        }
        .filter(|t| t.origin == origin);
        let now = db::now();
        if !force
            && let Some(t) = &stored
            && let (Some(tok), Some(exp)) = (&t.access_token, t.expires_at)
            && exp > now + EXPIRY_MARGIN.as_secs() as i64
        {
            let left = Duration::from_secs((exp - now) as u64) - EXPIRY_MARGIN;
            self.remember(account, tok, left);
            return Ok(tok.clone());
        }
        // The newest refresh token of this chain; the configured one if the stored one
        // is refused (it may be the endpoint that lost state, not us).
        let mut candidates = Vec::new();
        if let Some(t) = &stored {
            candidates.push(t.refresh_token.clone());
        }
        if !candidates.contains(&configured) {
            candidates.push(configured);
        }
        let mut last_err = None;
        for (i, rt) in candidates.iter().enumerate() {
            match refresh_with(cfg, rt).await {
                Ok(g) => {
                    if g.refresh_token.as_deref().is_some_and(|n| n != rt) {
                        tracing::info!(
                            account,
                            "token endpoint rotated the refresh token; stored the new one"
                        );
                    }
                    let row = db::fetch::OAuth2Tokens {
                        origin: origin.clone(),
                        refresh_token: g.refresh_token.clone().unwrap_or_else(|| rt.clone()),
                        access_token: Some(g.access_token.clone()),
                        expires_at: Some(db::now() + g.lifetime.as_secs() as i64),
                    };
                    match db {
                        Some(db) => {
                            let acc = account.to_string();
                            db.run(move |c| db::fetch::set_oauth2_tokens(c, &acc, &row, db::now()))
                                .await?
                        }
                        None => {
                            self.rotated
                                .lock()
                                .unwrap()
                                .insert(account.to_string(), row);
                        }
                    }
                    self.remember(
                        account,
                        &g.access_token,
                        g.lifetime.saturating_sub(EXPIRY_MARGIN),
                    );
                    return Ok(g.access_token);
                }
                Err(e @ FetchError::Auth(_)) if i + 1 < candidates.len() => {
                    tracing::warn!(
                        account,
                        "stored refresh token refused ({e}); trying the configured one"
                    );
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| FetchError::Config("oauth2: no refresh token".into())))
    }

    fn remember(&self, account: &str, token: &str, valid_for: Duration) {
        self.tokens.lock().unwrap().insert(
            account.to_string(),
            (token.to_string(), Instant::now() + valid_for),
        );
    }

    /// Forgets `account`'s access token (after the server refused it).
    pub fn invalidate(&self, account: &str) {
        self.tokens.lock().unwrap().remove(account);
        if let Some(t) = self.rotated.lock().unwrap().get_mut(account) {
            t.access_token = None;
        }
    }

    /// [`Self::invalidate`], in `db` too; the refresh token stays.
    pub async fn invalidate_in(&self, db: &FetchDb, account: &str) {
        self.invalidate(account);
        let acc = account.to_string();
        if let Err(e) = db
            .run(move |c| db::fetch::clear_oauth2_access(c, &acc))
            .await
        {
            tracing::warn!(account, "forgetting the refused access token: {e}");
        }
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

/// What one refresh-token grant returned.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: String,
    pub lifetime: Duration,
    /// A new refresh token, when the endpoint rotates them.
    pub refresh_token: Option<String>,
}

/// The refresh token from the config: inline or from a mode-600 file.
fn configured_refresh_token(cfg: &OAuth2Config) -> Result<String, FetchError> {
    match (&cfg.refresh_token, &cfg.refresh_token_file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(f)) => crate::config::read_secret_file(f).map_err(FetchError::Config),
        (None, None) => Err(FetchError::Config(
            "oauth2 needs refresh_token or refresh_token_file".into(),
        )),
    }
}

/// One refresh-token grant (RFC 6749 §6) with `refresh_token`.
pub async fn refresh_with(cfg: &OAuth2Config, refresh_token: &str) -> Result<Grant, FetchError> {
    let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(f)) => Some(crate::config::read_secret_file(f).map_err(FetchError::Config)?),
        (None, None) => None,
    };
    let mut form = format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}",
        form_encode(refresh_token),
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
    // Bounded: an absurd lifetime must not overflow the expiry arithmetic.
    let secs = v
        .get("expires_in")
        .and_then(|e| e.as_u64())
        .unwrap_or(3600)
        .min(7 * 86_400);
    let rotated = v
        .get("refresh_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && t.len() <= 8192)
        .map(str::to_string);
    Ok(Grant {
        access_token: tok.to_string(),
        lifetime: Duration::from_secs(secs),
        refresh_token: rotated,
    })
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
    use std::collections::HashSet;
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

    /// A token endpoint on loopback. It accepts the refresh tokens in `valid` and hands
    /// out "tok-1", "tok-2", …; with `rotate`, each grant also returns a new refresh
    /// token "R/<n+1>" and refuses the one it was given from then on, as Microsoft's
    /// endpoint does.
    struct Endpoint {
        url: String,
        hits: Arc<AtomicUsize>,
        valid: Arc<Mutex<HashSet<String>>>,
    }

    async fn endpoint(valid: &[&str], rotate: bool) -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let valid = Arc::new(Mutex::new(
            valid.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        ));
        let (h, v) = (hits.clone(), valid.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let (hits, valid) = (h.clone(), v.clone());
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
                    let form = text.split("\r\n\r\n").nth(1).unwrap_or("");
                    let rt = form
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("refresh_token="))
                        .unwrap_or("")
                        .replace("%2F", "/");
                    let ok = text.starts_with("POST /token HTTP/1.0")
                        && form.starts_with("grant_type=refresh_token&")
                        && form.ends_with("&client_id=cid")
                        && valid.lock().unwrap().contains(&rt);
                    let resp = if ok {
                        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                        let rotated = if rotate {
                            let mut v = valid.lock().unwrap();
                            v.remove(&rt);
                            v.insert(format!("R/{}", n + 1));
                            format!(",\"refresh_token\":\"R/{}\"", n + 1)
                        } else {
                            String::new()
                        };
                        let body = format!(
                            "{{\"access_token\":\"tok-{n}\",\"expires_in\":3600,\"token_type\":\"Bearer\"{rotated}}}"
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
        Endpoint {
            url: format!("http://{addr}/token"),
            hits,
            valid,
        }
    }

    fn cfg(url: &str, token: &str) -> OAuth2Config {
        OAuth2Config {
            token_url: url.to_string(),
            client_id: "cid".into(),
            client_secret: None,
            client_secret_file: None,
            refresh_token_file: None,
            refresh_token: Some(token.into()),
            mechanism: "xoauth2".into(),
        }
    }

    fn test_db() -> (tempfile::TempDir, FetchDb) {
        let d = tempfile::tempdir().unwrap();
        let db = FetchDb::open(&d.path().join("z.db")).unwrap();
        (d, db)
    }

    async fn stored(db: &FetchDb, acc: &str) -> Option<db::fetch::OAuth2Tokens> {
        let acc = acc.to_string();
        db.run(move |c| db::fetch::oauth2_tokens(c, &acc))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn refresh_caches_and_forces() {
        let ep = endpoint(&["R/1"], false).await;
        let (_d, db) = test_db();
        let cache = TokenCache::default();
        let c = cfg(&ep.url, "R/1");
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-1"
        );
        // Cached: no second request.
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-1"
        );
        assert_eq!(ep.hits.load(Ordering::SeqCst), 1);
        // Refused by the server → forced refresh.
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, true).await.unwrap(),
            "tok-2"
        );
        cache.invalidate_in(&db, "acc").await;
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-3"
        );
        // The next process (`zolder fetch` from cron) finds the access token in the
        // database: no request.
        let next = TokenCache::default();
        assert_eq!(
            next.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-3"
        );
        assert_eq!(ep.hits.load(Ordering::SeqCst), 3);
        // A bad refresh token is an auth error naming the endpoint.
        let e = cache
            .token_in(Some(&db), "other", &cfg(&ep.url, "wrong"), false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid_grant"), "{e}");
    }

    #[tokio::test]
    async fn rotated_refresh_token_is_stored_and_used() {
        let ep = endpoint(&["R/1"], true).await;
        let (_d, db) = test_db();
        let c = cfg(&ep.url, "R/1");
        let cache = TokenCache::default();
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-1"
        );
        // The endpoint now only accepts R/2; it is in the database.
        assert_eq!(stored(&db, "acc").await.unwrap().refresh_token, "R/2");
        // A forced refresh (the server refused tok-1) in the same process and one in a
        // new process both use the newest refresh token; the configured R/1 is dead.
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, true).await.unwrap(),
            "tok-2"
        );
        let next = TokenCache::default();
        next.invalidate_in(&db, "acc").await;
        assert_eq!(
            next.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-3"
        );
        let row = stored(&db, "acc").await.unwrap();
        assert_eq!(row.refresh_token, "R/4");
        assert_eq!(row.access_token.as_deref(), Some("tok-3"));
        // The admin grants again and puts the new token in the config: it wins over the
        // stored chain.
        ep.valid.lock().unwrap().insert("R/new".into());
        let c2 = cfg(&ep.url, "R/new");
        assert_eq!(
            next.token_in(Some(&db), "acc", &c2, true).await.unwrap(),
            "tok-4"
        );
        assert_eq!(stored(&db, "acc").await.unwrap().refresh_token, "R/5");
        assert_eq!(ep.hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn without_a_database_the_rotated_token_lives_in_memory() {
        let ep = endpoint(&["R/1"], true).await;
        let c = cfg(&ep.url, "R/1");
        let cache = TokenCache::default();
        assert_eq!(cache.token("smarthost", &c, false).await.unwrap(), "tok-1");
        cache.invalidate("smarthost");
        // R/1 is dead now: only the remembered R/2 works.
        assert_eq!(cache.token("smarthost", &c, false).await.unwrap(), "tok-2");
    }

    #[tokio::test]
    async fn refused_stored_token_falls_back_to_the_configured_one() {
        let ep = endpoint(&["R/1"], false).await;
        let (_d, db) = test_db();
        let c = cfg(&ep.url, "R/1");
        // A stored chain the endpoint no longer knows (its state was reset).
        let origin = hex::encode(Sha256::digest(b"R/1"));
        db.run(move |c| {
            db::fetch::set_oauth2_tokens(
                c,
                "acc",
                &db::fetch::OAuth2Tokens {
                    origin,
                    refresh_token: "R/lost".into(),
                    access_token: None,
                    expires_at: None,
                },
                1,
            )
        })
        .await
        .unwrap();
        let cache = TokenCache::default();
        assert_eq!(
            cache.token_in(Some(&db), "acc", &c, false).await.unwrap(),
            "tok-1"
        );
        assert_eq!(stored(&db, "acc").await.unwrap().refresh_token, "R/1");
    }
}
