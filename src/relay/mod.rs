//! The smarthost relay: sends queued mail to the ISP's SMTP server and reports an
//! outcome per recipient. Implements [`crate::message::Deliver`]; the queue runner
//! streams a whole run through ONE connection ([`Deliver::deliver_stream`]).
//!
//! Built on lettre's low-level `AsyncSmtpConnection` (tokio + native-tls), because its
//! high-level `send` gives up on the first refused `RCPT` while a queue needs each
//! recipient's own 2xx/4xx/5xx (reference §1.7):
//! 1. `MAIL FROM` 5xx fails every recipient, 4xx defers every one;
//! 2. each `RCPT TO` answer belongs to that recipient;
//! 3. the answer after the final dot belongs to every accepted recipient;
//! 4. a connection lost before that answer defers them all (the mail may already have
//!    arrived: at-least-once, as RFC 1047 and Postfix accept);
//! 5. a bad ISP password (535) defers, shown in `zolder queue`, never bounces
//!    (Postfix `smtp_sasl_auth_soft_bounce`).
//!
//! Throughput on the one connection comes from PIPELINING (RFC 2920) when offered: a
//! message's data, its final dot and the next message's MAIL/RCPT/DATA leave in one
//! write ([`wire`] builds the stuffed data in one buffer), so each message costs one
//! round trip. Without PIPELINING every command waits for its reply.
//!
//! DSN (RFC 3461): when the smarthost offers it, RET/ENVID/NOTIFY/ORCPT go on with
//! the message and the report says so (the smarthost then sends success notices).
//!
//! TLS: implicit or STARTTLS (refused when the server lacks it), certificate checked
//! against the system roots or `ca_file`, or pinned by `tls_fingerprint` (SHA-256 of
//! the certificate). AUTH is never sent in clear unless `tls = "none"` is set:
//! PLAIN/LOGIN with a password, or XOAUTH2/OAUTHBEARER with `[smarthost.oauth2]`
//! (token refresh shared with fetch, `crate::fetch::oauth2`).
//! Sender masquerading ([`masquerade`]) happens here and only here.
//!
//! Uses message, config and fetch's OAuth2 token cache; never touches the queue or
//! the database.
//!
//! # Security
//! Replies are read by lettre, which bounds each line and each reply.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::config::SmarthostConfig;
use crate::config::account::TlsMode;
use crate::message::{Deliver, DeliveryReport, Incoming, MessageSource, RcptOutcome};

pub mod dkim;
pub mod masquerade;
pub mod mx;
mod wire;

/// The relay `[relay] mode` asks for: the smarthost (default) or direct MX delivery.
pub fn from_config(cfg: &Config) -> Result<Option<std::sync::Arc<dyn Deliver>>, RelayError> {
    use crate::config::inbound::RelayMode;
    Ok(match cfg.relay.mode {
        RelayMode::Smarthost => Relay::new(cfg)?.map(|r| std::sync::Arc::new(r) as _),
        RelayMode::Mx => Some(std::sync::Arc::new(mx::MxRelay::new(cfg)?) as _),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("smarthost: {0}")]
    Config(String),
}

/// The relay to `[smarthost]`.
pub struct Relay {
    cfg: SmarthostConfig,
    hostname: String,
    password: Option<String>,
    timeout: Duration,
    /// OAuth2 access tokens (`[smarthost.oauth2]`), refreshed when they expire.
    tokens: crate::fetch::oauth2::TokenCache,
    /// `[[dkim]]` keys: outgoing mail is signed after masquerading.
    dkim: Option<std::sync::Arc<dkim::Signer>>,
    /// Direct MX delivery: STARTTLS when offered, any certificate, else plain.
    opportunistic: bool,
}

/// The token cache key of the smarthost login.
const OAUTH_KEY: &str = "[smarthost]";

/// One raw SMTP command line (lettre's typed commands validate addresses more
/// strictly than a queue that already accepted them can use).
struct Line(String);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\r\n", self.0)
    }
}

/// A connection-level failure: every message of the run is deferred with this reason.
#[derive(Debug, Clone)]
struct ConnFailure(String);

/// The reply text of a lettre error: `451 4.3.0 text` when it was an SMTP reply.
fn reply_text(e: &lettre::transport::smtp::Error) -> (Option<u16>, String) {
    let code = e.status().map(u16::from);
    let mut text = e.to_string();
    // lettre prints "permanent error (550): text"; keep "550 text".
    if let (Some(c), Some(p)) = (code, text.find("): ")) {
        text = format!("{c} {}", &text[p + 3..]);
    }
    (code, text.trim().to_string())
}

impl Relay {
    /// The relay for `cfg.smarthost`, or `None` when there is none. The password is
    /// read here (the secret file's permissions are checked).
    pub fn new(cfg: &Config) -> Result<Option<Relay>, RelayError> {
        let Some(s) = &cfg.smarthost else {
            return Ok(None);
        };
        let password = match (&s.password, &s.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => {
                Some(crate::config::read_secret_file(f).map_err(RelayError::Config)?)
            }
            (None, None) => None,
        };
        if s.oauth2.is_some() {
            if password.is_some() {
                return Err(RelayError::Config(
                    "give either `password`/`password_file` or `oauth2`, not both".into(),
                ));
            }
            if s.username.is_none() {
                return Err(RelayError::Config(
                    "`oauth2` needs `username` (the account the token belongs to)".into(),
                ));
            }
        } else if s.username.is_some() && password.is_none() {
            return Err(RelayError::Config(
                "`username` is set but no `password`, `password_file` or `oauth2`".into(),
            ));
        }
        Ok(Some(Relay {
            cfg: s.clone(),
            hostname: cfg.hostname.clone(),
            password,
            timeout: Duration::from_secs(s.timeout.max(1)),
            tokens: Default::default(),
            dkim: dkim::Signer::from_config(cfg)
                .map_err(RelayError::Config)?
                .map(std::sync::Arc::new),
            opportunistic: false,
        }))
    }

    fn tls_params(&self) -> Result<TlsParameters, ConnFailure> {
        let mut b = TlsParameters::builder(self.cfg.host.clone());
        if let Some(ca) = &self.cfg.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| ConnFailure(format!("{}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| ConnFailure(format!("{}: {e}", ca.display())))?;
            b = b
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        if self.cfg.tls_fingerprint.is_some() || self.opportunistic {
            // The pin replaces the CA check; it is verified right after the handshake.
            b = b
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        b.build_native()
            .map_err(|e| ConnFailure(format!("TLS setup: {e}")))
    }

    fn check_pin(&self, conn: &AsyncSmtpConnection) -> Result<(), ConnFailure> {
        let Some(want) = &self.cfg.tls_fingerprint else {
            return Ok(());
        };
        let der = conn
            .peer_certificate()
            .map_err(|e| ConnFailure(format!("no server certificate: {e}")))?;
        let got = hex::encode(Sha256::digest(&der));
        let want_norm: String = want
            .trim()
            .trim_start_matches("sha256:")
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect::<String>()
            .to_ascii_lowercase();
        if got != want_norm {
            return Err(ConnFailure(format!(
                "smarthost certificate fingerprint {got} does not match tls_fingerprint"
            )));
        }
        Ok(())
    }

    /// Connects, secures and authenticates one session, noting what the server's
    /// EHLO offered.
    async fn connect(&self) -> Result<Session, ConnFailure> {
        let port = self.cfg.effective_port();
        let client_id = ClientId::Domain(self.hostname.clone());
        let implicit = matches!(self.cfg.tls, TlsMode::Implicit);
        let params = if matches!(self.cfg.tls, TlsMode::None) {
            None
        } else {
            Some(self.tls_params()?)
        };
        let mut conn = if implicit {
            AsyncSmtpConnection::connect_tokio1(
                (self.cfg.host.as_str(), port),
                Some(self.timeout),
                &client_id,
                params.clone(),
                None,
            )
            .await
        } else {
            // Our own socket, so TCP_NODELAY can be set: every write is a complete
            // command group or message, and Nagle plus the peer's delayed ACK would
            // otherwise hold its tail back ~40 ms.
            let tcp = tokio::net::TcpStream::connect((self.cfg.host.as_str(), port))
                .await
                .map_err(|e| {
                    ConnFailure(format!("cannot connect to {}:{port}: {e}", self.cfg.host))
                })?;
            let _ = tcp.set_nodelay(true);
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &client_id).await
        }
        .map_err(|e| {
            ConnFailure(format!(
                "cannot connect to {}:{port}: {}",
                self.cfg.host,
                reply_text(&e).1
            ))
        })?;
        let plain_ok = self.opportunistic && !conn.can_starttls();
        if matches!(self.cfg.tls, TlsMode::Starttls) && !plain_ok {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(ConnFailure(format!(
                    "{} does not offer STARTTLS",
                    self.cfg.host
                )));
            }
            let p = params.clone().expect("TLS parameters for STARTTLS");
            conn.starttls(p, &client_id).await.map_err(|e| {
                ConnFailure(format!(
                    "STARTTLS with {}: {}",
                    self.cfg.host,
                    reply_text(&e).1
                ))
            })?;
        }
        if params.is_some()
            && let Err(e) = self.check_pin(&conn)
        {
            conn.abort().await;
            return Err(e);
        }
        // lettre keeps only the EHLO keywords it knows (not PIPELINING, DSN, SIZE,
        // SMTPUTF8, nor every AUTH mechanism): ask again (secured, before AUTH, so no
        // state is reset) and look.
        let keywords: Vec<String> =
            match conn.command(Line(format!("EHLO {}", self.hostname))).await {
                Ok(r) => r
                    .message()
                    .skip(1)
                    .map(|l| l.trim().to_ascii_uppercase())
                    .collect(),
                Err(e) if e.status().is_some() => Vec::new(),
                Err(e) => {
                    conn.abort().await;
                    return Err(ConnFailure(format!(
                        "EHLO to {}: {}",
                        self.cfg.host,
                        reply_text(&e).1
                    )));
                }
            };
        let has = |k: &str| {
            keywords
                .iter()
                .any(|l| l.split_ascii_whitespace().next() == Some(k))
        };
        let caps = wire::EnvCaps {
            eightbit: has("8BITMIME"),
            smtputf8: has("SMTPUTF8"),
            dsn: has("DSN"),
            size: has("SIZE"),
        };
        let pipelining = has("PIPELINING");
        let auth_mechs: Vec<&str> = keywords
            .iter()
            .filter_map(|l| l.strip_prefix("AUTH").map(|r| (l, r)))
            .filter(|(_, r)| r.starts_with([' ', '=']))
            .flat_map(|(_, r)| r[1..].split_ascii_whitespace())
            .collect();
        if let Some(o) = &self.cfg.oauth2 {
            let user = self.cfg.username.as_deref().unwrap_or_default();
            let mech = crate::fetch::oauth2::mechanism_name(&o.mechanism);
            if !auth_mechs.contains(&mech) {
                debug!(host = %self.cfg.host, mechanism = mech, offered = ?auth_mechs, "smarthost does not list the OAuth mechanism; trying it anyway");
            }
            if let Err(f) = self.oauth_login(&mut conn, o, user, port).await {
                conn.abort().await;
                return Err(f);
            }
        } else if let (Some(user), Some(pass)) = (&self.cfg.username, &self.password) {
            let creds = Credentials::new(user.clone(), pass.clone());
            let res = tokio::time::timeout(
                self.timeout,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await;
            // 535 and friends: defer, never bounce (smtp_sasl_auth_soft_bounce).
            let failure = match res {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!(
                    "smarthost refused our login as {user}: {}",
                    reply_text(&e).1
                )),
                Err(_) => Some(format!(
                    "no answer to our login as {user} within {} s",
                    self.timeout.as_secs()
                )),
            };
            if let Some(f) = failure {
                conn.abort().await;
                return Err(ConnFailure(f));
            }
        }
        debug!(host = %self.cfg.host, port, tls = conn.is_encrypted(), pipelining, ?caps, "smarthost connected");
        Ok(Session {
            conn,
            pipelining,
            caps,
        })
    }

    /// AUTH XOAUTH2 / OAUTHBEARER with an access token from the refresh token; a
    /// refused token is refreshed once and tried again on the same session. Any
    /// failure defers (like a refused password).
    async fn oauth_login(
        &self,
        conn: &mut AsyncSmtpConnection,
        o: &crate::config::account::OAuth2Config,
        user: &str,
        port: u16,
    ) -> Result<(), ConnFailure> {
        let mech = crate::fetch::oauth2::mechanism_name(&o.mechanism);
        let mut last = String::new();
        for force in [false, true] {
            let token = self
                .tokens
                .token(OAUTH_KEY, o, force)
                .await
                .map_err(|e| ConnFailure(format!("OAuth2 token for the smarthost: {e}")))?;
            let b64 =
                crate::fetch::oauth2::sasl_b64(&o.mechanism, user, &self.cfg.host, port, &token);
            let res = tokio::time::timeout(self.timeout, async {
                match conn.command(Line(format!("AUTH {mech} {b64}"))).await {
                    // 334 = the server's JSON error challenge: an empty line ends it
                    // and brings the final refusal.
                    Ok(r) if r.code().to_string().starts_with('3') => {
                        conn.command(Line(String::new())).await.map(|_| ())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await;
            match res {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if e.status().is_some() => {
                    last = format!(
                        "smarthost refused our {mech} login as {user}: {}",
                        reply_text(&e).1
                    );
                    self.tokens.invalidate(OAUTH_KEY);
                }
                Ok(Err(e)) => {
                    return Err(ConnFailure(format!(
                        "{mech} login as {user}: {}",
                        reply_text(&e).1
                    )));
                }
                Err(_) => {
                    return Err(ConnFailure(format!(
                        "no answer to our {mech} login as {user} within {} s",
                        self.timeout.as_secs()
                    )));
                }
            }
        }
        Err(ConnFailure(last))
    }

    /// Reads the replies to one envelope (MAIL, each RCPT, DATA). With PIPELINING the
    /// whole group goes out in one write, unless it already went out behind the
    /// previous message's final dot (`sent`); without it, lock-step. `Err` = the
    /// connection was lost (the text says how).
    async fn envelope(
        &self,
        s: &mut Session,
        env: &str,
        sent: bool,
        n: usize,
    ) -> Result<EnvReplies, String> {
        let mut out = EnvReplies {
            mail: None,
            rcpts: Vec::with_capacity(n),
            data: None,
        };
        if s.pipelining {
            let mail = if sent {
                s.conn.read_response().await
            } else {
                s.conn.command(Line(env.to_string())).await
            };
            out.mail = classify(mail)?;
            for _ in 0..n {
                let r = classify(s.conn.read_response().await)?;
                // After a refused MAIL the RCPT replies (503) mean nothing.
                out.rcpts.push(out.mail.clone().or(r));
            }
            out.data = Some(classify(s.conn.read_response().await)?);
            return Ok(out);
        }
        let mut lines = env.split("\r\n");
        out.mail = classify(
            s.conn
                .command(Line(lines.next().unwrap_or("").into()))
                .await,
        )?;
        if let Some(o) = &out.mail {
            out.rcpts = vec![Some(o.clone()); n];
            return Ok(out);
        }
        for line in lines.by_ref().take(n) {
            out.rcpts
                .push(classify(s.conn.command(Line(line.into())).await)?);
        }
        if out.rcpts.iter().any(|o| o.is_none()) {
            out.data = Some(classify(s.conn.command(Line("DATA".into())).await)?);
        }
        Ok(out)
    }

    /// Ends an open transaction that carried no message (every RCPT refused, or DATA
    /// refused): a lone "." if the server wrongly said 354, then RSET so the next
    /// MAIL is not "nested". `false` = the connection is gone.
    async fn abandon(&self, s: &mut Session, data_started: bool) -> bool {
        if data_started
            && let Err(e) = s.conn.command(Line(".".into())).await
            && e.status().is_none()
        {
            return false;
        }
        match s.conn.command(Line("RSET".into())).await {
            Ok(_) => true,
            Err(e) => e.status().is_some(),
        }
    }

    /// Builds the envelope command group of `msg` (masqueraded sender, parameters the
    /// server offered) and its DATA form.
    fn prepare(&self, caps: &wire::EnvCaps, msg: &Incoming) -> Prepared {
        // Masquerading: envelope sender and From:/Sender: on the way out only.
        let sender = msg
            .envelope
            .sender
            .clone()
            .map(|s| masquerade::lookup(&self.cfg.masquerade, &s).unwrap_or(s))
            .unwrap_or_default();
        let rewritten = masquerade::rewrite_headers(&self.cfg.masquerade, &msg.message.bytes);
        let body: &[u8] = rewritten.as_deref().unwrap_or(&msg.message.bytes);
        // DKIM: after masquerading (the From: domain signed is the one that leaves).
        let signed = self.dkim.as_ref().and_then(|d| d.sign(body));
        let body: &[u8] = signed.as_deref().unwrap_or(body);
        let data = wire::encode(body);
        let env = wire::envelope(
            &sender,
            &msg.envelope.recipients,
            msg.envelope.dsn.as_ref(),
            body,
            data.len(),
            *caps,
        );
        Prepared { env, data }
    }

    /// Sends the message data and, when given, the next message's envelope behind the
    /// final dot in the SAME write (RFC 2920 §3.1 allows a group to start with the
    /// message content). Returns the reply to the dot and whether `next` went out (a
    /// non-UTF-8 message goes through lettre's own stuffing, without it).
    async fn data(
        &self,
        s: &mut Session,
        data: &wire::Wire,
        next: Option<&str>,
    ) -> (Result<Response, lettre::transport::smtp::Error>, bool) {
        match data {
            wire::Wire::Text(t) => (s.conn.command(Raw { data: t, next }).await, next.is_some()),
            wire::Wire::Binary(b) => (s.conn.message(b).await, false),
        }
    }
}

/// The replies to one envelope: `None` = accepted.
struct EnvReplies {
    mail: Option<RcptOutcome>,
    rcpts: Vec<Option<RcptOutcome>>,
    /// `None` = DATA never sent (lock-step, nobody accepted).
    data: Option<Option<RcptOutcome>>,
}

/// One message ready for the wire.
struct Prepared {
    env: String,
    data: wire::Wire,
}

/// An open smarthost session.
struct Session {
    conn: AsyncSmtpConnection,
    pipelining: bool,
    caps: wire::EnvCaps,
}

/// Message data (already stuffed and terminated) followed by pipelined commands.
struct Raw<'a> {
    data: &'a str,
    next: Option<&'a str>,
}

impl std::fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.data)?;
        if let Some(n) = self.next {
            f.write_str(n)?;
            f.write_str("\r\n")?;
        }
        Ok(())
    }
}

/// A reply: `Ok(None)` positive, `Ok(Some(outcome))` a 4xx/5xx, `Err` no reply at all.
fn classify(
    r: Result<Response, lettre::transport::smtp::Error>,
) -> Result<Option<RcptOutcome>, String> {
    match r {
        Ok(_) => Ok(None),
        Err(e) => {
            let (code, t) = reply_text(&e);
            match code {
                Some(c) if c >= 500 => Ok(Some(RcptOutcome::PermFail(c, t))),
                Some(_) => Ok(Some(RcptOutcome::TempFail(t))),
                None => Err(t),
            }
        }
    }
}

/// Every recipient of `msg` deferred with `reason`.
fn all_deferred(msg: &Incoming, reason: &str) -> DeliveryReport {
    DeliveryReport {
        outcomes: msg
            .envelope
            .recipients
            .iter()
            .map(|r| (r.clone(), RcptOutcome::TempFail(reason.to_string())))
            .collect(),
        ..Default::default()
    }
}

/// Per-recipient outcomes: the RCPT reply where there was a refusal, else `o`.
fn finish(msg: &Incoming, rcpts: &[Option<RcptOutcome>], o: &RcptOutcome) -> DeliveryReport {
    DeliveryReport {
        outcomes: msg
            .envelope
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let x = rcpts.get(i).cloned().flatten();
                (r.clone(), x.unwrap_or_else(|| o.clone()))
            })
            .collect(),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl Deliver for Relay {
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        let mut src = VecSource {
            msgs: msgs.into_iter(),
            reports: Vec::new(),
        };
        self.deliver_stream(&mut src).await;
        src.reports
    }

    /// One connection for the whole run. With PIPELINING each message costs one
    /// round trip: its data, final dot and the NEXT message's MAIL/RCPT/DATA leave in
    /// one write, and the replies (dot, MAIL, RCPT…, 354) come back together. The
    /// outcome of a message is handed to `source.done` (which records it) before the
    /// next message's data is sent, so at most one message is ever past its final dot
    /// without a recorded outcome. A lost connection is re-opened for the next
    /// message; when connecting fails the rest of the run is deferred.
    async fn deliver_stream(&self, source: &mut dyn MessageSource) {
        self.deliver_stream_on(source, None).await
    }
}

impl Relay {
    /// [`Deliver::deliver_stream`], starting on `sess` when one is already open (the
    /// MX relay connects first to pick a working host).
    async fn deliver_stream_on(&self, source: &mut dyn MessageSource, sess: Option<Session>) {
        let mut sess = sess;
        let mut dead: Option<String> = None;
        let mut sent = 0usize;
        // The next message, its prepared form when its envelope is on the wire, and
        // whether it already went to a fresh connection after losing one.
        let mut carry: Option<(Incoming, Option<Prepared>, bool)> = None;
        loop {
            let (msg, ready, retried) = match carry.take() {
                Some(c) => c,
                None => match source.next().await {
                    Some(m) => (m, None, false),
                    None => break,
                },
            };
            if let Some(reason) = &dead {
                source.done(all_deferred(&msg, reason)).await;
                continue;
            }
            if sess.is_none() {
                let connected = tokio::time::timeout(self.timeout * 3, self.connect())
                    .await
                    .unwrap_or_else(|_| {
                        Err(ConnFailure(format!(
                            "no answer from {} within {} s (greeting, TLS or login)",
                            self.cfg.host,
                            self.timeout.as_secs()
                        )))
                    });
                match connected {
                    Ok(s) => sess = Some(s),
                    Err(ConnFailure(reason)) => {
                        warn!(host = %self.cfg.host, %reason, "smarthost unavailable; deferring this run");
                        source.done(all_deferred(&msg, &reason)).await;
                        dead = Some(reason);
                        continue;
                    }
                }
            }
            let s = sess.as_mut().expect("connected");
            let on_wire = ready.is_some();
            let p = ready.unwrap_or_else(|| self.prepare(&s.caps, &msg));
            let n = msg.envelope.recipients.len();
            let replies = match tokio::time::timeout(
                self.timeout,
                self.envelope(s, &p.env, on_wire, n),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(t)) if !retried => {
                    // Nothing of this message was sent yet (a smarthost that closes
                    // after N messages per session): once more on a new connection.
                    warn!(host = %self.cfg.host, error = %t, "smarthost connection lost; reconnecting");
                    self.drop_session(&mut sess).await;
                    carry = Some((msg, None, true));
                    continue;
                }
                Ok(Err(t)) => {
                    warn!(host = %self.cfg.host, error = %t, "smarthost connection lost; reconnecting for the next message");
                    self.drop_session(&mut sess).await;
                    source.done(all_deferred(&msg, &t)).await;
                    continue;
                }
                Err(_) => {
                    let t = format!(
                        "smarthost did not answer within {} s",
                        self.timeout.as_secs()
                    );
                    warn!(host = %self.cfg.host, "{t}; reconnecting for the next message");
                    self.drop_session(&mut sess).await;
                    source.done(all_deferred(&msg, &t)).await;
                    continue;
                }
            };
            let dsn_passed_on = s.caps.dsn;
            if let Some(RcptOutcome::TempFail(t)) = &replies.mail
                && t.starts_with("421")
            {
                // 421: the server is closing this session ("too many messages").
                self.drop_session(&mut sess).await;
                if !retried {
                    info!(host = %self.cfg.host, reply = %t, "smarthost ended the session; reconnecting");
                    carry = Some((msg, None, true));
                } else {
                    source.done(all_deferred(&msg, t)).await;
                }
                continue;
            }
            if let Some(o) = &replies.mail {
                // MAIL refused: it decides for everyone; no transaction is open.
                let mut r = finish(&msg, &replies.rcpts, o);
                r.dsn_passed_on = dsn_passed_on;
                source.done(r).await;
                continue;
            }
            let nobody = replies.rcpts.iter().all(|o| o.is_some());
            let data_refused = matches!(&replies.data, Some(Some(_)));
            if nobody || data_refused {
                let started = matches!(&replies.data, Some(None));
                let o = match &replies.data {
                    Some(Some(o)) => o.clone(),
                    _ => RcptOutcome::Delivered, // unused: everyone has a refusal
                };
                let mut r = finish(&msg, &replies.rcpts, &o);
                r.dsn_passed_on = dsn_passed_on;
                let alive = tokio::time::timeout(self.timeout, self.abandon(s, started))
                    .await
                    .unwrap_or(false);
                if !alive {
                    self.drop_session(&mut sess).await;
                }
                source.done(r).await;
                continue;
            }
            // 354: the data, with the next message's envelope behind the dot.
            let next = if s.pipelining {
                source.next().await.map(|m| {
                    let np = self.prepare(&s.caps, &m);
                    (m, np)
                })
            } else {
                None
            };
            // Each reply within `timeout`, plus time to move the bytes at a slow 10 kB/s.
            let limit = self.timeout + Duration::from_millis(p.data.len() as u64 / 10);
            let res = tokio::time::timeout(
                limit,
                self.data(s, &p.data, next.as_ref().map(|(_, np)| np.env.as_str())),
            )
            .await;
            let (outcome, next_sent, broken) = match res {
                Ok((Ok(resp), next_sent)) => {
                    debug!(reply = %resp.first_line().unwrap_or(""), "smarthost accepted");
                    sent += 1;
                    (RcptOutcome::Delivered, next_sent, false)
                }
                Ok((Err(e), next_sent)) => match classify(Err(e)) {
                    Ok(Some(o)) => (o, next_sent, false),
                    Ok(None) => unreachable!("classify(Err) is never Ok(None)"),
                    // Lost inside the synchronization gap: defer; may duplicate.
                    Err(t) => (
                        RcptOutcome::TempFail(format!("connection lost after DATA: {t}")),
                        false,
                        true,
                    ),
                },
                Err(_) => (
                    RcptOutcome::TempFail(format!(
                        "smarthost did not answer within {} s after the message data",
                        limit.as_secs()
                    )),
                    false,
                    true,
                ),
            };
            if broken {
                warn!(host = %self.cfg.host, "smarthost connection lost; reconnecting for the next message");
                self.drop_session(&mut sess).await;
            }
            let mut r = finish(&msg, &replies.rcpts, &outcome);
            r.dsn_passed_on = dsn_passed_on;
            // Recorded before the next message's data goes out.
            source.done(r).await;
            carry = next.map(|(m, np)| {
                if next_sent {
                    (m, Some(np), false)
                } else {
                    (m, None, false)
                }
            });
        }
        if let Some(mut s) = sess {
            let _ = s.conn.quit().await;
        }
        if sent > 0 {
            info!(host = %self.cfg.host, messages = sent, "relay run finished");
        }
    }
}

impl Relay {
    async fn drop_session(&self, sess: &mut Option<Session>) {
        if let Some(mut s) = sess.take() {
            s.conn.abort().await;
        }
    }
}

struct VecSource {
    msgs: std::vec::IntoIter<Incoming>,
    reports: Vec<DeliveryReport>,
}

#[async_trait::async_trait]
impl MessageSource for VecSource {
    async fn next(&mut self) -> Option<Incoming> {
        self.msgs.next()
    }
    async fn done(&mut self, report: DeliveryReport) {
        self.reports.push(report);
    }
}
