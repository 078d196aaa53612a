//! One ManageSieve connection: greeting, STARTTLS, AUTHENTICATE PLAIN, and the
//! script commands against the user's [`Scripts`].
//!
//! # Security
//! Anyone who reaches the port talks to it. Until AUTHENTICATE succeeds only
//! CAPABILITY, STARTTLS, NOOP and LOGOUT are served; PLAIN is offered only over TLS or
//! from loopback (or from `lan_networks` with `allow_plaintext_auth`). A failed login is
//! answered after the per-address delay IMAP uses. The buffer is bounded by the line
//! limit plus the largest script; a read waits at most [`IDLE`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use super::proto::{self, Command, Parsed};
use super::scripts::{ScriptError, Scripts, check};
use crate::config::Config;
use crate::net::Stream;

/// How long a client may stay silent.
pub const IDLE: Duration = Duration::from_secs(600);

/// What every session shares.
#[derive(Clone)]
pub struct Shared {
    pub cfg: Arc<Config>,
    pub scripts: Scripts,
    pub tls: Option<async_native_tls::TlsAcceptor>,
    pub delays: Arc<crate::auth::FailureDelays>,
}

struct Session {
    shared: Shared,
    peer: SocketAddr,
    tls: bool,
    user: Option<String>,
    buf: Vec<u8>,
}

enum Next {
    Go,
    Close,
    StartTls,
}

impl Session {
    fn max_literal(&self) -> usize {
        self.shared.scripts.max_size as usize + 1024
    }

    fn may_auth(&self) -> bool {
        crate::auth::plaintext_auth_allowed(&self.shared.cfg, self.peer.ip(), self.tls)
    }

    fn capability(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(
            format!(
                "\"IMPLEMENTATION\" \"zolder {}\"\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        if self.user.is_none() {
            o.extend_from_slice(if self.may_auth() {
                b"\"SASL\" \"PLAIN\"\r\n".as_slice()
            } else {
                b"\"SASL\" \"\"\r\n".as_slice()
            });
        }
        o.extend_from_slice(b"\"SIEVE\" ");
        proto::string(&mut o, super::scripts::capabilities().as_bytes());
        o.extend_from_slice(b"\r\n");
        if !self.tls && self.shared.tls.is_some() {
            o.extend_from_slice(b"\"STARTTLS\"\r\n");
        }
        o.extend_from_slice(b"\"MAXREDIRECTS\" \"2\"\r\n\"VERSION\" \"1.0\"\r\n");
        if let Some(u) = &self.user {
            o.extend_from_slice(b"\"OWNER\" ");
            proto::string(&mut o, u.as_bytes());
            o.extend_from_slice(b"\r\n");
        }
        o
    }

    /// Reads more bytes into the buffer; `false` at EOF, timeout or overflow.
    async fn fill(&mut self, io: &mut Stream) -> bool {
        if self.buf.len() > proto::MAX_LINE + self.max_literal() + 64 {
            return false;
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(IDLE, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn run(mut self, mut io: Stream) {
        let mut greeting = self.capability();
        greeting.extend(proto::response("OK", None, "zolder ManageSieve ready"));
        if io.write_all(&greeting).await.is_err() {
            return;
        }
        loop {
            let parsed = proto::parse(&self.buf, self.max_literal());
            let cmd = match parsed {
                Parsed::Incomplete => {
                    if !self.fill(&mut io).await {
                        return;
                    }
                    continue;
                }
                Parsed::Bad(msg, 0) => {
                    let _ = io.write_all(&proto::response("BYE", None, &msg)).await;
                    return;
                }
                Parsed::Bad(msg, skip) => {
                    self.buf.drain(..skip.min(self.buf.len()));
                    if io
                        .write_all(&proto::response("NO", None, &msg))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Parsed::Done(c, n) => {
                    self.buf.drain(..n);
                    c
                }
            };
            let (out, next) = self.handle(cmd, &mut io).await;
            if io.write_all(&out).await.is_err() {
                return;
            }
            match next {
                Next::Go => {}
                Next::Close => return,
                Next::StartTls => {
                    let Some(acc) = self.shared.tls.clone() else {
                        return;
                    };
                    // Bytes sent before the handshake are not trusted (RFC 5804 §2.2).
                    self.buf.clear();
                    io = match io.accept_tls(&acc).await {
                        Ok(s) => s,
                        Err(e) => {
                            info!(peer = %self.peer, error = %e, "managesieve: STARTTLS failed");
                            return;
                        }
                    };
                    self.tls = true;
                    let mut caps = self.capability();
                    caps.extend(proto::response("OK", None, ""));
                    if io.write_all(&caps).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Scripts, &str) -> Result<T, ScriptError> + Send + 'static,
    ) -> Result<T, ScriptError> {
        let (s, u) = (
            self.shared.scripts.clone(),
            self.user.clone().unwrap_or_default(),
        );
        tokio::task::spawn_blocking(move || f(&s, &u))
            .await
            .unwrap_or_else(|e| Err(ScriptError::Io(e.to_string())))
    }

    async fn handle(&mut self, cmd: Command, io: &mut Stream) -> (Vec<u8>, Next) {
        let ok = |t: &str| (proto::response("OK", None, t), Next::Go);
        // Before login, only these.
        match &cmd {
            Command::Capability => {
                let mut o = self.capability();
                o.extend(proto::response("OK", None, ""));
                return (o, Next::Go);
            }
            Command::Logout => return (proto::response("OK", None, "Bye"), Next::Close),
            Command::Noop(tag) => {
                return match tag {
                    Some(t) => (
                        proto::response("OK", Some(&format!("TAG {}", quoted(t))), "Done"),
                        Next::Go,
                    ),
                    None => ok("Done"),
                };
            }
            Command::StartTls => {
                if self.tls || self.shared.tls.is_none() {
                    return (
                        proto::response("NO", None, "STARTTLS is not available"),
                        Next::Go,
                    );
                }
                return (
                    proto::response("OK", None, "Begin TLS negotiation now"),
                    Next::StartTls,
                );
            }
            Command::Authenticate(mech, initial) => {
                if self.user.is_some() {
                    return (
                        proto::response("NO", None, "Already authenticated"),
                        Next::Go,
                    );
                }
                return self.authenticate(mech.clone(), initial.clone(), io).await;
            }
            _ => {}
        }
        if self.user.is_none() {
            return (proto::response("NO", None, "Authenticate first"), Next::Go);
        }
        let r = match cmd {
            Command::Unauthenticate => {
                self.user = None;
                return ok("");
            }
            Command::ListScripts => self.blocking(|s, u| s.list(u)).await.map(|l| {
                let mut o = Vec::new();
                for (n, active) in l {
                    proto::string(&mut o, n.as_bytes());
                    if active {
                        o.extend_from_slice(b" ACTIVE");
                    }
                    o.extend_from_slice(b"\r\n");
                }
                o.extend(proto::response("OK", None, ""));
                o
            }),
            Command::PutScript(name, text) => self
                .blocking(move |s, u| s.put(u, &name, &text))
                .await
                .map(|_| proto::response("OK", None, "")),
            Command::CheckScript(text) => {
                if text.len() as u64 > self.shared.scripts.max_size {
                    Err(ScriptError::Quota("script too large".into()))
                } else {
                    check(&text)
                        .map_err(ScriptError::Invalid)
                        .map(|_| proto::response("OK", None, ""))
                }
            }
            Command::GetScript(name) => self.blocking(move |s, u| s.get(u, &name)).await.map(|b| {
                let mut o = format!("{{{}}}\r\n", b.len()).into_bytes();
                o.extend_from_slice(&b);
                o.extend_from_slice(b"\r\n");
                o.extend(proto::response("OK", None, ""));
                o
            }),
            Command::SetActive(name) => self
                .blocking(move |s, u| s.set_active(u, (!name.is_empty()).then_some(name.as_str())))
                .await
                .map(|_| proto::response("OK", None, "")),
            Command::DeleteScript(name) => self
                .blocking(move |s, u| s.delete(u, &name))
                .await
                .map(|_| proto::response("OK", None, "")),
            Command::RenameScript(a, b) => self
                .blocking(move |s, u| s.rename(u, &a, &b))
                .await
                .map(|_| proto::response("OK", None, "")),
            Command::HaveSpace(name, size) => self
                .blocking(move |s, u| s.have_space(u, &name, size))
                .await
                .map(|_| proto::response("OK", None, "")),
            _ => Ok(proto::response("NO", None, "Not available")),
        };
        match r {
            Ok(o) => (o, Next::Go),
            Err(e) => (error_response(&e, self.user.as_deref()), Next::Go),
        }
    }

    async fn authenticate(
        &mut self,
        mech: String,
        initial: Option<String>,
        io: &mut Stream,
    ) -> (Vec<u8>, Next) {
        if !mech.eq_ignore_ascii_case("PLAIN") {
            return (
                proto::response("NO", None, "Only PLAIN is offered"),
                Next::Go,
            );
        }
        if !self.may_auth() {
            return (
                proto::response("NO", Some("ENCRYPT-NEEDED"), "Use STARTTLS first"),
                Next::Go,
            );
        }
        let b64 = match initial {
            Some(s) => s,
            None => {
                if io.write_all(b"\"\"\r\n").await.is_err() {
                    return (Vec::new(), Next::Close);
                }
                loop {
                    match proto::parse_sasl(&self.buf, proto::MAX_LINE) {
                        Parsed::Done(v, n) => {
                            self.buf.drain(..n);
                            match v {
                                Some(s) => break s,
                                None => {
                                    return (
                                        proto::response("NO", None, "Authentication cancelled"),
                                        Next::Go,
                                    );
                                }
                            }
                        }
                        Parsed::Incomplete => {
                            if !self.fill(io).await {
                                return (Vec::new(), Next::Close);
                            }
                        }
                        Parsed::Bad(m, skip) => {
                            self.buf.drain(..skip.min(self.buf.len()));
                            return (
                                proto::response("NO", None, &m),
                                if skip == 0 { Next::Close } else { Next::Go },
                            );
                        }
                    }
                }
            }
        };
        let Some((login, pass)) = crate::auth::decode_sasl_plain(&b64) else {
            return (proto::response("NO", None, "Bad PLAIN response"), Next::Go);
        };
        let delays = self.shared.delays.clone();
        let Ok(guess) = delays.begin(self.peer.ip(), &login) else {
            warn!(user = %login, peer = %self.peer, "managesieve: login refused, too many failures from this address");
            return (
                proto::response("BYE", None, "Too many authentication failures"),
                Next::Close,
            );
        };
        match crate::auth::check_login(self.shared.cfg.clone(), &login, &pass).await {
            Ok(user) => {
                guess.succeeded();
                crate::net::listener::authenticated();
                info!(user = %user, peer = %self.peer, "managesieve: logged in");
                self.user = Some(user);
                (proto::response("OK", None, "Logged in"), Next::Go)
            }
            Err(crate::auth::LoginError::Unavailable(e)) => {
                drop(guess);
                warn!(user = %login, error = %e, "managesieve: login check failed");
                (
                    proto::response("NO", Some("TRYLATER"), "Try again later"),
                    Next::Go,
                )
            }
            Err(e) => {
                let d = guess.failed();
                warn!(user = %login, peer = %self.peer, reason = ?e, "managesieve: login failed");
                tokio::time::sleep(d).await;
                (
                    proto::response("NO", None, "Authentication failed"),
                    Next::Go,
                )
            }
        }
    }
}

fn quoted(s: &str) -> String {
    let mut o = Vec::new();
    proto::string(&mut o, s.as_bytes());
    String::from_utf8_lossy(&o).into_owned()
}

fn error_response(e: &ScriptError, user: Option<&str>) -> Vec<u8> {
    match e {
        ScriptError::NonExistent => {
            proto::response("NO", Some("NONEXISTENT"), "There is no script of that name")
        }
        ScriptError::AlreadyExists => {
            proto::response("NO", Some("ALREADYEXISTS"), "A script of that name exists")
        }
        ScriptError::Active => {
            proto::response("NO", Some("ACTIVE"), "The active script cannot be deleted")
        }
        ScriptError::BadName => proto::response("NO", None, "Bad script name"),
        ScriptError::Invalid(t) => proto::response("NO", None, t),
        ScriptError::Quota(t) if t.starts_with("at most") => {
            proto::response("NO", Some("QUOTA/MAXSCRIPTS"), t)
        }
        ScriptError::Quota(t) => proto::response("NO", Some("QUOTA/MAXSIZE"), t),
        ScriptError::Io(t) => {
            warn!(user = ?user, error = %t, "managesieve: script store error");
            proto::response("NO", None, "Internal error; the server log has the details")
        }
    }
}

/// Serves one connection.
pub async fn run(shared: Shared, io: Stream, peer: SocketAddr) {
    let tls = io.is_tls();
    Session {
        shared,
        peer,
        tls,
        user: None,
        buf: Vec::new(),
    }
    .run(io)
    .await
}
