//! GENURLAUTH, URLFETCH and RESETKEY (RFC 4467, the INTERNAL mechanism); the rules
//! are in `imapd::urlauth`, this file answers on the wire.
//!
//! # Format
//! `GENURLAUTH "imap://bouke@host/Sent;UIDVALIDITY=1/;UID=3;URLAUTH=submit+bouke"
//! INTERNAL` → `* GENURLAUTH "...;URLAUTH=submit+bouke:internal:<64 hex>"`;
//! `URLFETCH url` → `* URLFETCH url {n}` + bytes, or `* URLFETCH url NIL`;
//! `RESETKEY [mailbox]` → `OK [URLMECH INTERNAL]`.

use crate::imapd::proto::response;
use crate::imapd::proto::urlauth::Requester;
use crate::imapd::session::{Reply, Session};
use crate::imapd::urlauth;

impl Session {
    pub(crate) async fn op_genurlauth(&mut self, pairs: Vec<(String, String)>) -> Reply {
        if let Some((_, m)) = pairs
            .iter()
            .find(|(_, m)| !m.eq_ignore_ascii_case("INTERNAL"))
        {
            return Reply::no(format!("Unknown URLAUTH mechanism {}", response::text(m)));
        }
        let user = self.user();
        let urls: Vec<String> = pairs.into_iter().map(|(u, _)| u).collect();
        let shown = urls.clone();
        let r = self
            .blocking(move |b| {
                Ok(urls
                    .iter()
                    .map(|u| urlauth::generate(b, &user, u))
                    .collect::<Vec<_>>())
            })
            .await;
        let results = match r {
            Ok(r) => r,
            Err(e) => return self.store_no(e),
        };
        let mut lines = Vec::new();
        for (url, r) in shown.iter().zip(results) {
            match r {
                Ok(signed) => lines.push(signed),
                Err(e) => {
                    tracing::info!(user = %self.user(), url = %url, error = %e, "GENURLAUTH refused");
                    let u: String = url
                        .chars()
                        .filter(|c| !c.is_control() && *c != ']')
                        .collect();
                    return Reply::no("Invalid URL").code(format!("BADURL {u}"));
                }
            }
        }
        let mut out = b"* GENURLAUTH".to_vec();
        for l in lines {
            out.push(b' ');
            response::string(&mut out, l.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&out);
        Reply::ok("GENURLAUTH completed")
    }

    pub(crate) async fn op_urlfetch(&mut self, urls: Vec<String>) -> Reply {
        let user = self.user();
        let asked = urls.clone();
        let r = self
            .blocking(move |b| {
                Ok(urls
                    .iter()
                    .map(|u| urlauth::fetch(b, u, Requester::Imap(&user)))
                    .collect::<Vec<_>>())
            })
            .await;
        let results = match r {
            Ok(r) => r,
            Err(e) => return self.store_no(e),
        };
        for (url, r) in asked.iter().zip(results) {
            let mut out = b"* URLFETCH ".to_vec();
            response::string(&mut out, url.as_bytes());
            out.push(b' ');
            match r {
                Ok(data) => {
                    let tilde = if data.contains(&0) { "~" } else { "" };
                    out.extend_from_slice(format!("{tilde}{{{}}}\r\n", data.len()).as_bytes());
                    out.extend_from_slice(&data);
                }
                Err(e) => {
                    tracing::info!(user = %self.user(), url = %url, error = %e, "URLFETCH refused");
                    out.extend_from_slice(b"NIL");
                }
            }
            out.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&out);
        }
        Reply::ok("URLFETCH completed")
    }

    pub(crate) async fn op_resetkey(
        &mut self,
        mailbox: Option<String>,
        mechanisms: Vec<String>,
    ) -> Reply {
        if let Some(m) = mechanisms
            .iter()
            .find(|m| !m.eq_ignore_ascii_case("INTERNAL"))
        {
            return Reply::no(format!("Unknown URLAUTH mechanism {}", response::text(m)));
        }
        let user = self.user();
        let one = mailbox.is_some();
        let r = self
            .blocking(move |b| {
                if let Some(m) = &mailbox {
                    b.state(&user, m)?;
                }
                b.urlauth_reset(&user, mailbox.as_deref())
            })
            .await;
        match r {
            Ok(()) if one => Reply::ok("Reset completed").code("URLMECH INTERNAL"),
            Ok(()) => Reply::ok("All keys removed"),
            Err(e) => self.store_no(e),
        }
    }
}
