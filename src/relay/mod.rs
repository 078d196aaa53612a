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
//! TLS: implicit or STARTTLS (refused when the server lacks it), certificate checked
//! against the system roots or `ca_file`, or pinned by `tls_fingerprint` (SHA-256 of
//! the certificate). AUTH is never sent in clear unless `tls = "none"` is set.
//! Sender masquerading ([`masquerade`]) happens here and only here.
//!
//! Uses message and config; never touches the queue or the database.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::config::SmarthostConfig;
use crate::config::account::TlsMode;
use crate::message::{Deliver, DeliveryReport, Incoming, MessageSource, RcptOutcome};

pub mod masquerade;

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
}

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
        if s.username.is_some() && password.is_none() {
            return Err(RelayError::Config(
                "`username` is set but no `password` or `password_file`".into(),
            ));
        }
        Ok(Some(Relay {
            cfg: s.clone(),
            hostname: cfg.hostname.clone(),
            password,
            timeout: Duration::from_secs(s.timeout.max(1)),
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
        if self.cfg.tls_fingerprint.is_some() {
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

    /// Connects, secures and authenticates one session; `true` when the server
    /// offers PIPELINING (RFC 2920).
    async fn connect(&self) -> Result<(AsyncSmtpConnection, bool), ConnFailure> {
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
            // Our own socket, so TCP_NODELAY can be set: lettre writes the body and
            // the final "." separately, and Nagle plus the peer's delayed ACK would
            // otherwise add ~40 ms to every message.
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
        if matches!(self.cfg.tls, TlsMode::Starttls) {
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
        // lettre keeps only the EHLO keywords it knows, and PIPELINING is not one of
        // them: ask again (secured, before AUTH, so no state is reset) and look.
        let pipelining = match conn.command(Line(format!("EHLO {}", self.hostname))).await {
            Ok(r) => r.message().any(|l| {
                l.split_ascii_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
            }),
            Err(e) if e.status().is_some() => false,
            Err(e) => {
                conn.abort().await;
                return Err(ConnFailure(format!(
                    "EHLO to {}: {}",
                    self.cfg.host,
                    reply_text(&e).1
                )));
            }
        };
        if let (Some(user), Some(pass)) = (&self.cfg.username, &self.password) {
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
        debug!(host = %self.cfg.host, port, tls = conn.is_encrypted(), pipelining, "smarthost connected");
        Ok((conn, pipelining))
    }

    /// Sends one message over `conn`. `Err` = the connection is no longer usable
    /// (the report inside is this message's outcome).
    async fn send_one(
        &self,
        conn: &mut AsyncSmtpConnection,
        pipelining: bool,
        msg: &Incoming,
    ) -> Result<DeliveryReport, DeliveryReport> {
        let rcpts = &msg.envelope.recipients;
        let all = |o: RcptOutcome| DeliveryReport {
            outcomes: rcpts.iter().map(|r| (r.clone(), o.clone())).collect(),
            generated: vec![],
        };
        // Masquerading: envelope sender and From:/Sender: on the way out only.
        let sender = msg
            .envelope
            .sender
            .clone()
            .map(|s| masquerade::lookup(&self.cfg.masquerade, &s).unwrap_or(s));
        let rewritten = masquerade::rewrite_headers(&self.cfg.masquerade, &msg.message.bytes);
        let body: &[u8] = rewritten.as_deref().unwrap_or(&msg.message.bytes);

        let info = conn.server_info();
        let mut mail = format!("MAIL FROM:<{}>", sender.unwrap_or_default());
        if info.supports_feature(lettre::transport::smtp::extension::Extension::EightBitMime)
            && body.iter().any(|b| *b >= 0x80)
        {
            mail.push_str(" BODY=8BITMIME");
        }
        if pipelining {
            return self.send_pipelined(conn, mail, rcpts, body).await;
        }
        if let Err(e) = conn.command(Line(mail)).await {
            let (code, t) = reply_text(&e);
            return match code {
                Some(c) if c >= 500 => Ok(all(RcptOutcome::PermFail(c, t))),
                Some(_) => {
                    let _ = conn.command(Line("RSET".into())).await;
                    Ok(all(RcptOutcome::TempFail(t)))
                }
                None => Err(all(RcptOutcome::TempFail(t))),
            };
        }
        let mut outcomes: Vec<(String, Option<RcptOutcome>)> = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            match conn.command(Line(format!("RCPT TO:<{r}>"))).await {
                Ok(_) => outcomes.push((r.clone(), None)),
                Err(e) => {
                    let (code, t) = reply_text(&e);
                    match code {
                        Some(c) if c >= 500 => {
                            outcomes.push((r.clone(), Some(RcptOutcome::PermFail(c, t))))
                        }
                        Some(_) => outcomes.push((r.clone(), Some(RcptOutcome::TempFail(t)))),
                        None => {
                            outcomes.push((r.clone(), Some(RcptOutcome::TempFail(t.clone()))));
                            let rest = outcomes
                                .into_iter()
                                .map(|(r, o)| (r, o.unwrap_or(RcptOutcome::TempFail(t.clone()))))
                                .chain(
                                    rcpts
                                        .iter()
                                        .skip_while(|x| *x != r)
                                        .skip(1)
                                        .map(|r| (r.clone(), RcptOutcome::TempFail(t.clone()))),
                                )
                                .collect();
                            return Err(DeliveryReport {
                                outcomes: rest,
                                generated: vec![],
                            });
                        }
                    }
                }
            }
        }
        let finish =
            |outcomes: Vec<(String, Option<RcptOutcome>)>, o: RcptOutcome| DeliveryReport {
                outcomes: outcomes
                    .into_iter()
                    .map(|(r, x)| (r, x.unwrap_or_else(|| o.clone())))
                    .collect(),
                generated: vec![],
            };
        if outcomes.iter().all(|(_, o)| o.is_some()) {
            // Nobody accepted: no DATA (reference §1.7 step 2).
            let _ = conn.command(Line("RSET".into())).await;
            return Ok(finish(outcomes, RcptOutcome::Delivered));
        }
        let data = match conn.command(Line("DATA".into())).await {
            Ok(_) => conn.message(body).await,
            Err(e) => Err(e),
        };
        match data {
            Ok(resp) => {
                debug!(reply = %resp.first_line().unwrap_or(""), "smarthost accepted");
                Ok(finish(outcomes, RcptOutcome::Delivered))
            }
            Err(e) => {
                let (code, t) = reply_text(&e);
                match code {
                    Some(c) if c >= 500 => Ok(finish(outcomes, RcptOutcome::PermFail(c, t))),
                    Some(_) => Ok(finish(outcomes, RcptOutcome::TempFail(t))),
                    // Lost inside the synchronization gap: defer; may duplicate.
                    None => Err(finish(
                        outcomes,
                        RcptOutcome::TempFail(format!("connection lost after DATA: {t}")),
                    )),
                }
            }
        }
    }
}

impl Relay {
    /// One message with PIPELINING (RFC 2920): `MAIL`, every `RCPT` and `DATA` go
    /// out in one write and the replies are read back in order, so a message costs
    /// two round trips instead of 3 + recipients. Same per-recipient rules as the
    /// lock-step path: MAIL decides for all, each RCPT reply for its recipient, the
    /// DATA / final-dot reply for the accepted ones; a lost connection defers
    /// whatever is still open (`Err`).
    async fn send_pipelined(
        &self,
        conn: &mut AsyncSmtpConnection,
        mail: String,
        rcpts: &[String],
        body: &[u8],
    ) -> Result<DeliveryReport, DeliveryReport> {
        let mut group = mail;
        for r in rcpts {
            group.push_str("\r\nRCPT TO:<");
            group.push_str(r);
            group.push('>');
        }
        group.push_str("\r\nDATA");
        // A lost connection: every recipient without a final answer is deferred.
        let lost = |outcomes: Vec<(String, Option<RcptOutcome>)>, t: String| {
            let mut out: Vec<(String, RcptOutcome)> = outcomes
                .into_iter()
                .map(|(r, o)| (r, o.unwrap_or_else(|| RcptOutcome::TempFail(t.clone()))))
                .collect();
            for r in rcpts.iter().skip(out.len()) {
                out.push((r.clone(), RcptOutcome::TempFail(t.clone())));
            }
            DeliveryReport {
                outcomes: out,
                generated: vec![],
            }
        };
        let classify = |e: &lettre::transport::smtp::Error| -> Result<RcptOutcome, String> {
            let (code, t) = reply_text(e);
            match code {
                Some(c) if c >= 500 => Ok(RcptOutcome::PermFail(c, t)),
                Some(_) => Ok(RcptOutcome::TempFail(t)),
                None => Err(t),
            }
        };
        // MAIL FROM reply (the command() call wrote the whole group).
        let mail_fail = match conn.command(Line(group)).await {
            Ok(_) => None,
            Err(e) => match classify(&e) {
                Ok(o) => Some(o),
                Err(t) => return Err(lost(vec![], t)),
            },
        };
        let mut outcomes: Vec<(String, Option<RcptOutcome>)> = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            match conn.read_response().await {
                Ok(_) => outcomes.push((r.clone(), mail_fail.clone())),
                Err(e) => match classify(&e) {
                    // After a refused MAIL the RCPT replies (503) mean nothing.
                    Ok(o) => outcomes.push((r.clone(), Some(mail_fail.clone().unwrap_or(o)))),
                    Err(t) => return Err(lost(outcomes, t)),
                },
            }
        }
        let data_ok = match conn.read_response().await {
            Ok(_) => None,
            Err(e) => match classify(&e) {
                Ok(o) => Some(o),
                Err(t) => return Err(lost(outcomes, t)),
            },
        };
        let finish =
            |outcomes: Vec<(String, Option<RcptOutcome>)>, o: RcptOutcome| DeliveryReport {
                outcomes: outcomes
                    .into_iter()
                    .map(|(r, x)| (r, x.unwrap_or_else(|| o.clone())))
                    .collect(),
                generated: vec![],
            };
        let nobody = outcomes.iter().all(|(_, o)| o.is_some());
        if nobody {
            if data_ok.is_none() {
                // The server took DATA without a recipient (RFC 2920 §3.1 says it must
                // not): end the empty transaction with a lone dot.
                if let Err(e) = conn.command(Line(".".into())).await
                    && e.status().is_none()
                {
                    return Err(finish(outcomes, RcptOutcome::Delivered));
                }
            }
            if let Some(RcptOutcome::TempFail(_)) = mail_fail {
                let _ = conn.command(Line("RSET".into())).await;
            }
            return Ok(finish(outcomes, RcptOutcome::Delivered));
        }
        if let Some(o) = data_ok {
            return Ok(finish(outcomes, o));
        }
        match conn.message(body).await {
            Ok(resp) => {
                debug!(reply = %resp.first_line().unwrap_or(""), "smarthost accepted");
                Ok(finish(outcomes, RcptOutcome::Delivered))
            }
            Err(e) => match classify(&e) {
                Ok(o) => Ok(finish(outcomes, o)),
                // Lost inside the synchronization gap: defer; may duplicate.
                Err(t) => Err(finish(
                    outcomes,
                    RcptOutcome::TempFail(format!("connection lost after DATA: {t}")),
                )),
            },
        }
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

    /// One connection for the whole run; reconnects once after a lost connection,
    /// and defers the rest of the run when connecting fails.
    async fn deliver_stream(&self, source: &mut dyn MessageSource) {
        let mut conn: Option<(AsyncSmtpConnection, bool)> = None;
        let mut dead: Option<String> = None;
        let mut sent = 0usize;
        while let Some(msg) = source.next().await {
            if let Some(reason) = &dead {
                let r = DeliveryReport {
                    outcomes: msg
                        .envelope
                        .recipients
                        .iter()
                        .map(|r| (r.clone(), RcptOutcome::TempFail(reason.clone())))
                        .collect(),
                    generated: vec![],
                };
                source.done(r).await;
                continue;
            }
            if conn.is_none() {
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
                    Ok(c) => conn = Some(c),
                    Err(ConnFailure(reason)) => {
                        warn!(host = %self.cfg.host, %reason, "smarthost unavailable; deferring this run");
                        dead = Some(reason.clone());
                        let r = DeliveryReport {
                            outcomes: msg
                                .envelope
                                .recipients
                                .iter()
                                .map(|r| (r.clone(), RcptOutcome::TempFail(reason.clone())))
                                .collect(),
                            generated: vec![],
                        };
                        source.done(r).await;
                        continue;
                    }
                }
            }
            let (c, pipelining) = conn.as_mut().expect("connected");
            // Each reply within `timeout`, plus time to move the bytes at a slow 10 kB/s.
            let limit = self.timeout + Duration::from_millis(msg.message.bytes.len() as u64 / 10);
            let res = match tokio::time::timeout(limit, self.send_one(c, *pipelining, &msg)).await {
                Ok(r) => r,
                Err(_) => Err(DeliveryReport {
                    outcomes: msg
                        .envelope
                        .recipients
                        .iter()
                        .map(|r| {
                            (
                                r.clone(),
                                RcptOutcome::TempFail(format!(
                                    "smarthost did not answer within {} s",
                                    limit.as_secs()
                                )),
                            )
                        })
                        .collect(),
                    generated: vec![],
                }),
            };
            match res {
                Ok(r) => {
                    sent += 1;
                    source.done(r).await;
                }
                Err(r) => {
                    warn!(host = %self.cfg.host, "smarthost connection lost; reconnecting for the next message");
                    if let Some((mut c, _)) = conn.take() {
                        c.abort().await;
                    }
                    source.done(r).await;
                }
            }
        }
        if let Some((mut c, _)) = conn {
            let _ = c.quit().await;
        }
        if sent > 0 {
            info!(host = %self.cfg.host, messages = sent, "relay run finished");
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
