//! AUTHENTICATE (RFC 3501 §6.2.2) with PLAIN (RFC 4616) and LOGIN, and SASL-IR
//! (RFC 4959) initial responses.
//!
//! # Format
//! `AUTHENTICATE PLAIN [initial]` → `+ ` → base64(authzid NUL authcid NUL passwd)
//!
//! # Security
//! Same rules as LOGIN: only over TLS or loopback unless configured otherwise; a
//! `*` response cancels. Responses are bounded by the framer's line limit.

use base64::Engine;

use crate::imapd::session::{Fatal, Reply, Session};

fn b64(s: &[u8]) -> Option<Vec<u8>> {
    if s == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

impl Session {
    /// Sends a continuation and reads the client's base64 answer; `None` = cancelled.
    async fn sasl_step(&mut self, challenge: &str) -> Result<Option<Vec<u8>>, Fatal> {
        self.out
            .extend_from_slice(format!("+ {challenge}\r\n").as_bytes());
        self.flush().await?;
        let line = self.read_line().await?;
        if line == b"*" {
            return Ok(None);
        }
        Ok(Some(line))
    }

    pub(crate) async fn op_authenticate(
        &mut self,
        _tag: &str,
        mechanism: String,
        initial: Option<String>,
    ) -> Result<Reply, Fatal> {
        if !self.auth_allowed() {
            return Ok(
                Reply::no("Plaintext authentication disallowed on non-secure connections")
                    .code("PRIVACYREQUIRED"),
            );
        }
        let enc = base64::engine::general_purpose::STANDARD;
        let cancelled = || Reply::bad("Authentication cancelled");
        let invalid = || Reply::bad("Invalid base64 data");
        match mechanism.as_str() {
            "PLAIN" => {
                let data = match initial {
                    Some(i) => i.into_bytes(),
                    None => match self.sasl_step("").await? {
                        Some(d) => d,
                        None => return Ok(cancelled()),
                    },
                };
                let Some(raw) = b64(&data) else {
                    return Ok(invalid());
                };
                let mut it = raw.split(|&b| b == 0);
                let (Some(authz), Some(user), Some(pass), None) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return Ok(Reply::bad("Invalid PLAIN response"));
                };
                let user = String::from_utf8_lossy(user).into_owned();
                if !authz.is_empty() && authz != user.as_bytes() {
                    return Ok(
                        Reply::no("Proxy authentication not supported").code("AUTHORIZATIONFAILED")
                    );
                }
                let pass = String::from_utf8_lossy(pass).into_owned();
                self.authenticate_user(user, pass).await
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => b64(i.as_bytes()),
                    None => match self.sasl_step(&enc.encode("Username:")).await? {
                        Some(d) => b64(&d),
                        None => return Ok(cancelled()),
                    },
                };
                let Some(user) = user else {
                    return Ok(invalid());
                };
                let pass = match self.sasl_step(&enc.encode("Password:")).await? {
                    Some(d) => b64(&d),
                    None => return Ok(cancelled()),
                };
                let Some(pass) = pass else {
                    return Ok(invalid());
                };
                self.authenticate_user(
                    String::from_utf8_lossy(&user).into_owned(),
                    String::from_utf8_lossy(&pass).into_owned(),
                )
                .await
            }
            _ => Ok(Reply::no("Unsupported authentication mechanism")),
        }
    }
}
