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

/// Password verifications (argon2id, ~19 MiB each) that run at the same time, in
/// the whole process; more wait in a queue instead of adding threads and memory.
pub const VERIFY_POOL: usize = 2;
/// Guesses an address may have outstanding (failed, or still running) within
/// [`FORGET_AFTER`] before it is refused without any password check and disconnected.
pub const MAX_GUESSES: u32 = 10;
/// A failure is forgotten after this long without another from the same address.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);

/// Runs `f` (a password check: argon2 and SQLite) on a blocking thread, at most
/// [`VERIFY_POOL`] at a time process-wide; the rest queue here. `None` if the task
/// failed.
pub async fn run_verification<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    static POOL: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VERIFY_POOL);
    let _permit = POOL.acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
}

/// The login-failure counter per client address, shared by every protocol of one
/// daemon (IMAP, POP3, SMTP AUTH, the web login): get it with [`FailureDelays::shared`].
///
/// A guess counts when it *starts* ([`FailureDelays::begin`]), so parallel guesses
/// see each other: the delays grow with every guess outstanding (1 s, 2 s, 4 s … 30 s)
/// and past [`MAX_GUESSES`] an address is refused before any password is checked.
/// A success takes back only the failures for the user who logged in: a family
/// member logging in does not clear a stranger's guesses from the same address.
#[derive(Default)]
pub struct FailureDelays {
    inner: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Default)]
struct Failures {
    total: u32,
    per_user: HashMap<String, u32>,
    last: Option<Instant>,
}

/// The address has too many failed guesses: answer "no" and disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked;

/// One password guess in progress; see [`FailureDelays::begin`]. Dropped without a
/// verdict (the client hung up), it stays counted as a failure.
#[must_use]
pub struct Guess<'a> {
    delays: &'a FailureDelays,
    ip: IpAddr,
    user: String,
}

impl Guess<'_> {
    /// The guess was right: takes back this user's failures from the address.
    pub fn succeeded(self) {
        let mut m = self.delays.lock();
        if let Some(f) = m.get_mut(&self.ip) {
            let mine = f.per_user.remove(&self.user).unwrap_or(0);
            f.total = f.total.saturating_sub(mine);
            if f.total == 0 {
                m.remove(&self.ip);
            }
        }
    }

    /// The guess was wrong: how long to wait before answering.
    pub fn failed(self) -> Duration {
        let m = self.delays.lock();
        let n = m.get(&self.ip).map_or(1, |f| f.total.max(1));
        Duration::from_secs((1u64 << (n - 1).min(5)).min(30))
    }
}

impl FailureDelays {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter of the daemon whose data lives in `cfg.data_dir`: one per process
    /// and data_dir, so IMAP, POP3, SMTP and the web login count together.
    pub fn shared(cfg: &crate::config::Config) -> std::sync::Arc<FailureDelays> {
        use std::sync::{Arc, OnceLock};
        type Registry = Mutex<HashMap<std::path::PathBuf, Arc<FailureDelays>>>;
        static ALL: OnceLock<Registry> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.entry(cfg.data_dir.clone()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a guess for `user` from `ip`, now, before the password is checked.
    /// `Err(Blocked)` when the address already has [`MAX_GUESSES`] outstanding.
    pub fn begin(&self, ip: IpAddr, user: &str) -> Result<Guess<'_>, Blocked> {
        let mut m = self.lock();
        let now = Instant::now();
        m.retain(|_, f| f.last.is_some_and(|t| now.duration_since(t) < FORGET_AFTER));
        let f = m.entry(ip).or_default();
        f.last = Some(now);
        if f.total >= MAX_GUESSES {
            return Err(Blocked);
        }
        f.total += 1;
        let user = user.to_ascii_lowercase();
        *f.per_user.entry(user.clone()).or_default() += 1;
        Ok(Guess {
            delays: self,
            ip,
            user,
        })
    }

    /// Guesses outstanding for `ip`.
    pub fn outstanding(&self, ip: IpAddr) -> u32 {
        self.lock().get(&ip).map_or(0, |f| f.total)
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
    fn guesses_count_when_they_start_and_successes_are_per_user() {
        let d = FailureDelays::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // Parallel guesses see each other.
        let g1 = d.begin(ip, "bouke").unwrap();
        let g2 = d.begin(ip, "bouke").unwrap();
        assert_eq!(d.outstanding(ip), 2);
        assert_eq!(g2.failed(), Duration::from_secs(2));
        assert_eq!(g1.failed(), Duration::from_secs(2));
        // A success for another user leaves bouke's failures counted.
        d.begin(ip, "sjoerd").unwrap().succeeded();
        assert_eq!(d.outstanding(ip), 2);
        for _ in 2..MAX_GUESSES {
            let _ = d.begin(ip, "bouke").unwrap().failed();
        }
        assert!(d.begin(ip, "bouke").is_err(), "blocked past MAX_GUESSES");
        assert!(d.begin(ip, "sjoerd").is_err(), "the address, not the user");
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(d.begin(other, "bouke").is_ok());
        // bouke's own success takes back bouke's failures.
        let d = FailureDelays::new();
        let _ = d.begin(ip, "bouke").unwrap().failed();
        d.begin(ip, "Bouke").unwrap().succeeded();
        assert_eq!(d.outstanding(ip), 0);
    }

    #[tokio::test]
    async fn verification_pool_queues() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (now, peak) = (now.clone(), peak.clone());
            tasks.push(tokio::spawn(run_verification(move || {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                now.fetch_sub(1, Ordering::SeqCst);
            })));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= VERIFY_POOL);
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
    /// Too many failed guesses from this address: refuse and disconnect.
    Blocked,
}

/// Checks a LAN user's password: the database hash (`zolder user add`) first, then
/// `password_hash` in the config. Returns the canonical user name from the config.
/// Runs argon2 on the bounded verification pool ([`run_verification`]). Login names
/// are matched case-insensitively and may be the user's name or one of their addresses.
pub async fn check_login(
    cfg: std::sync::Arc<crate::config::Config>,
    login: &str,
    password: &str,
) -> Result<String, LoginError> {
    let login = login.to_string();
    let password = password.to_string();
    run_verification(move || check_login_blocking(&cfg, &login, &password))
        .await
        .unwrap_or_else(|| Err(LoginError::Unavailable("verification task failed".into())))
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
