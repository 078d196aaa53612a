//! LAN users' authentication: argon2id hashing and verification, password lookup
//! (database first, then `password_hash` in the config), and growing delays after
//! failures per client address.
//!
//! # Security
//! Called by imapd, pop3d and submit with credentials from the network. Verification
//! runs on a blocking thread (argon2 is deliberately slow). Failures are answered
//! generically; the log says which user and address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks `password` against a PHC hash; a malformed hash never matches.
///
/// A successful check is remembered for the process lifetime (see [`VerifyCache`]),
/// so a client that logs in again and again (mail clients open a connection per
/// folder and per check) pays for argon2 once, as Dovecot's auth cache does.
/// Failures are never cached: each one costs the full argon2 work.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let cache = VerifyCache::global();
    if cache.hit(phc, password) {
        return true;
    }
    let ok = match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    };
    if ok {
        cache.insert(phc, password);
    }
    ok
}

/// Successful password verifications, bounded (oldest dropped first) and expiring
/// after [`VerifyCache::TTL`].
///
/// # Security
/// The key is the stored PHC string (unique per user and per password change: it
/// holds a random salt, so `zolder user passwd` invalidates the entry by itself); the
/// value is SHA-256 over a random per-process secret and the password. Neither the
/// password nor an unsalted fast hash of it is kept, and nothing leaves the process.
pub struct VerifyCache {
    secret: [u8; 32],
    entries: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl VerifyCache {
    /// Entries kept at most; a full cache drops its oldest entry.
    pub const MAX: usize = 1024;
    /// How long a verification is trusted (Dovecot's `auth_cache_ttl` default).
    pub const TTL: Duration = Duration::from_secs(3600);

    fn new() -> VerifyCache {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        VerifyCache {
            secret,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The process-wide cache.
    pub fn global() -> &'static VerifyCache {
        static CACHE: std::sync::OnceLock<VerifyCache> = std::sync::OnceLock::new();
        CACHE.get_or_init(VerifyCache::new)
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Was `password` verified against `phc` within the TTL?
    pub fn hit(&self, phc: &str, password: &str) -> bool {
        let d = self.digest(password);
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.get(phc)
            .is_some_and(|(v, at)| at.elapsed() < Self::TTL && constant_time_eq(v, &d))
    }

    /// Remembers a successful verification.
    pub fn insert(&self, phc: &str, password: &str) {
        let d = self.digest(password);
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::MAX && !m.contains_key(phc) {
            m.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if m.len() >= Self::MAX
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(phc.to_string(), (d, Instant::now()));
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Growing delays after failed logins, per client address (1 s, 2 s, 4 s … 30 s),
/// forgotten after 15 minutes without failures.
#[derive(Default)]
pub struct FailureDelays {
    inner: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureDelays {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure and returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(900));
        let e = m.entry(ip).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        let secs = 1u64 << (e.0 - 1).min(5);
        Duration::from_secs(secs.min(30))
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("geheim").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("geheim", &h));
        assert!(!verify_password("fout", &h));
        assert!(!verify_password("geheim", "not-a-hash"));
    }

    #[test]
    fn verification_cache_keeps_successes_only() {
        let h = hash_password("geheim").unwrap();
        let c = VerifyCache::new();
        assert!(!c.hit(&h, "geheim"));
        c.insert(&h, "geheim");
        assert!(c.hit(&h, "geheim"));
        assert!(!c.hit(&h, "fout"), "another password is not a hit");
        let other = hash_password("geheim").unwrap();
        assert!(
            !c.hit(&other, "geheim"),
            "a changed hash (new salt) is not a hit"
        );
        // Through the global cache: a wrong password still fails after a success.
        assert!(verify_password("geheim", &h));
        assert!(verify_password("geheim", &h));
        assert!(!verify_password("fout", &h));
        // Bounded.
        for i in 0..VerifyCache::MAX + 10 {
            c.insert(&format!("phc{i}"), "x");
        }
        assert!(c.entries.lock().unwrap().len() <= VerifyCache::MAX);
    }

    #[test]
    fn delays_grow() {
        let d = FailureDelays::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(d.failed(ip), Duration::from_secs(1));
        assert_eq!(d.failed(ip), Duration::from_secs(2));
        assert_eq!(d.failed(ip), Duration::from_secs(4));
        d.succeeded(ip);
        assert_eq!(d.failed(ip), Duration::from_secs(1));
    }
}

/// Why a login was refused (for the log; clients get a generic answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// No such user, or no password set (a configured user without one can't log in).
    UnknownUser,
    BadPassword,
    /// The database could not be read: try again later.
    Unavailable(String),
}

/// Checks a LAN user's password: the database hash (`zolder user add`) first, then
/// `password_hash` in the config. Returns the canonical user name from the config.
/// Runs argon2 on a blocking thread. Login names are matched case-insensitively and
/// may be the user's name or one of their addresses.
pub async fn check_login(
    cfg: std::sync::Arc<crate::config::Config>,
    login: &str,
    password: &str,
) -> Result<String, LoginError> {
    let login = login.to_string();
    let password = password.to_string();
    tokio::task::spawn_blocking(move || check_login_blocking(&cfg, &login, &password))
        .await
        .map_err(|e| LoginError::Unavailable(e.to_string()))?
}

/// The blocking body of [`check_login`].
pub fn check_login_blocking(
    cfg: &crate::config::Config,
    login: &str,
    password: &str,
) -> Result<String, LoginError> {
    let user = cfg
        .users
        .iter()
        .find(|u| {
            u.name.eq_ignore_ascii_case(login)
                || u.addresses.iter().any(|a| a.eq_ignore_ascii_case(login))
        })
        .ok_or(LoginError::UnknownUser)?;
    let conn =
        crate::db::open(&cfg.db_path()).map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let stored = crate::db::users::password_hash(&conn, &user.name)
        .map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let hash = stored
        .or_else(|| user.password_hash.clone())
        .ok_or(LoginError::UnknownUser)?;
    if verify_password(password, &hash) {
        Ok(user.name.clone())
    } else {
        Err(LoginError::BadPassword)
    }
}

/// Decodes a SASL PLAIN response (`authzid NUL authcid NUL password`, base64).
/// Returns (authcid, password); an authzid other than empty or the authcid is refused.
pub fn decode_sasl_plain(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let mut parts = raw.split(|&b| b == 0);
    let authz = parts.next()?;
    let authc = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let pass = std::str::from_utf8(parts.next()?).ok()?.to_string();
    if parts.next().is_some() || authc.is_empty() {
        return None;
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc.as_bytes()) {
        return None;
    }
    Some((authc, pass))
}

/// May a client at `peer` send a password over a connection with `tls` state?
/// Over TLS always; in plain text only from loopback, or from `lan_networks` when
/// `allow_plaintext_auth` is set.
pub fn plaintext_auth_allowed(cfg: &crate::config::Config, peer: IpAddr, tls: bool) -> bool {
    tls || peer.is_loopback()
        || (cfg.allow_plaintext_auth && cfg.lan_networks.iter().any(|n| n.contains(&peer)))
}

#[cfg(test)]
mod login_tests {
    use super::*;

    #[test]
    fn sasl_plain() {
        use base64::Engine;
        let e = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            decode_sasl_plain(&e(b"\0bouke\0geheim")),
            Some(("bouke".into(), "geheim".into()))
        );
        assert_eq!(
            decode_sasl_plain(&e(b"bouke\0bouke\0geheim")),
            Some(("bouke".into(), "geheim".into()))
        );
        assert_eq!(decode_sasl_plain(&e(b"admin\0bouke\0geheim")), None);
        assert_eq!(decode_sasl_plain("!!"), None);
    }

    #[test]
    fn login_against_config_and_db() {
        let dir = tempfile::tempdir().unwrap();
        let h = hash_password("demo").unwrap();
        let text = format!(
            "data_dir = \"{}\"\n[[users]]\nname = \"demo\"\naddresses = [\"demo@x.test\"]\npassword_hash = \"{h}\"\n[[users]]\nname = \"nopass\"\n",
            dir.path().display()
        );
        let cfg =
            crate::config::Config::from_str_at(&text, &dir.path().join("z.toml"), false).unwrap();
        assert_eq!(
            check_login_blocking(&cfg, "demo", "demo"),
            Ok("demo".into())
        );
        assert_eq!(
            check_login_blocking(&cfg, "DEMO@x.test", "demo"),
            Ok("demo".into())
        );
        assert_eq!(
            check_login_blocking(&cfg, "demo", "x"),
            Err(LoginError::BadPassword)
        );
        assert_eq!(
            check_login_blocking(&cfg, "nopass", ""),
            Err(LoginError::UnknownUser)
        );
        assert_eq!(
            check_login_blocking(&cfg, "ghost", "x"),
            Err(LoginError::UnknownUser)
        );
        // A database password wins over the config's.
        let conn = crate::db::open(&cfg.db_path()).unwrap();
        crate::db::users::set_password(&conn, "demo", Some(&hash_password("new").unwrap()))
            .unwrap();
        assert_eq!(check_login_blocking(&cfg, "demo", "new"), Ok("demo".into()));
    }
}
