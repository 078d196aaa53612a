//! LOGIN (RFC 3501 §6.2.3), and the password check AUTHENTICATE shares.
//!
//! # Security
//! Passwords are compared with argon2 on a blocking thread; a failure is answered
//! after a delay that grows per client address, logged with user and address, and
//! answered with the same text whether the user exists or not.

use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use crate::imapd::session::{Fatal, Reply, Session, State};

/// Looks up `user`'s password hash (database first, then `password_hash` in the
/// config) and verifies `password`. Returns the canonical user name on success.
/// Blocking: argon2 and SQLite.
pub fn check_password(cfg: &Config, user: &str, password: &str) -> Option<String> {
    let conf_user = cfg.users.iter().find(|u| u.name.eq_ignore_ascii_case(user));
    let db_hash = with_conn(cfg, |c| {
        crate::db::users::password_hash(c, user).ok().flatten()
    });
    let name = match conf_user {
        Some(u) => u.name.clone(),
        None if db_hash.is_some() => user.to_string(),
        None => return None,
    };
    let hash = db_hash.or_else(|| conf_user.and_then(|u| u.password_hash.clone()))?;
    crate::auth::verify_password(password, &hash).then_some(name)
}

/// Runs `f` on a database connection kept for logins (opening one costs a file open
/// and the schema check; a mail client may log in every few seconds per folder).
fn with_conn<T>(cfg: &Config, f: impl FnOnce(&crate::db::Connection) -> Option<T>) -> Option<T> {
    use std::sync::Mutex;
    static POOL: Mutex<Vec<(std::path::PathBuf, crate::db::Connection)>> = Mutex::new(Vec::new());
    let path = cfg.db_path();
    let pooled = {
        let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
        p.iter()
            .position(|(pp, _)| *pp == path)
            .map(|i| p.swap_remove(i).1)
    };
    let conn = match pooled {
        Some(c) => c,
        None => crate::db::open(&path).ok()?,
    };
    let out = f(&conn);
    let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if p.len() < 4 {
        p.push((path, conn));
    }
    out
}

impl Session {
    pub(crate) async fn op_login(
        &mut self,
        user: String,
        password: String,
    ) -> Result<Reply, Fatal> {
        if !self.auth_allowed() {
            return Ok(
                Reply::no("Plaintext authentication disallowed on non-secure connections")
                    .code("PRIVACYREQUIRED"),
            );
        }
        self.authenticate_user(user, password).await
    }

    /// Verifies the credentials and, on success, enters the authenticated state.
    pub(crate) async fn authenticate_user(
        &mut self,
        user: String,
        password: String,
    ) -> Result<Reply, Fatal> {
        let ip = self.peer.ip();
        let delays = self.shared.delays.clone();
        // Counted before the check, so parallel guesses see each other (auth).
        let Ok(guess) = delays.begin(ip, &user) else {
            warn!(user = %user, peer = %self.peer, "login refused: too many failures from this address");
            return Err(Fatal::Protocol("Too many authentication failures"));
        };
        let cfg = self.shared.config.clone();
        let u = user.clone();
        let ok = crate::auth::run_verification(move || check_password(&cfg, &u, &password))
            .await
            .flatten();
        match ok {
            Some(name) => {
                guess.succeeded();
                info!(user = %name, "logged in");
                tracing::Span::current().record("user", name.as_str());
                self.user = Some(name);
                self.state = State::Authenticated;
                self.framer.authenticated();
                crate::net::listener::authenticated();
                let caps = self.capabilities();
                Ok(Reply::ok("Logged in").code(format!("CAPABILITY {caps}")))
            }
            None => {
                let delay = guess.failed();
                warn!(user = %user, peer = %self.peer, "login failed");
                tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
                if delays.outstanding(ip) >= crate::auth::MAX_GUESSES {
                    return Err(Fatal::Protocol("Too many authentication failures"));
                }
                Ok(Reply::no("Authentication failed.").code("AUTHENTICATIONFAILED"))
            }
        }
    }
}
