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
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
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
