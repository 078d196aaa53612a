//! Delivery status notifications (RFC 3464), laid out as Postfix's bounce daemon
//! writes them: a `multipart/report; report-type=delivery-status` with a readable
//! explanation, the machine-readable `message/delivery-status`, and the original
//! message (`message/rfc822`) or only its headers (`text/rfc822-headers`, when RET=HDRS
//! or the message exceeds `bounce_size_limit`). Built with mail-builder.
//!
//! Sent from `<>` so that it can never itself be bounced; the runner never makes a
//! notice about a message whose sender is already `<>`.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use crate::message::headers;

/// What happened to a recipient (`Action:` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// One recipient's report.
#[derive(Debug, Clone)]
pub struct DsnRcpt {
    pub rcpt: String,
    pub orcpt: Option<String>,
    pub action: Action,
    /// RFC 3463 code, e.g. `5.1.1`.
    pub status: String,
    /// The reply or reason, e.g. `550 5.1.1 No such user here`.
    pub diagnostic: Option<String>,
    /// `dns; smtp.isp.example` when the smarthost answered.
    pub remote_mta: Option<String>,
    pub will_retry_until: Option<i64>,
}

/// Everything a notice needs.
pub struct Dsn<'a> {
    pub hostname: &'a str,
    pub queue_id: &'a str,
    pub sender: &'a str,
    pub arrival: i64,
    pub envid: Option<&'a str>,
    /// RET=HDRS: return only the headers.
    pub headers_only: bool,
    pub bounce_size_limit: usize,
    pub original: &'a [u8],
    pub rcpts: Vec<DsnRcpt>,
    pub now: i64,
}

/// The RFC 3463 status in a reply or reason (`550 5.1.1 ...` → `5.1.1`), else a
/// generic one for the class.
pub fn status_of(text: &str, permanent: bool) -> String {
    for w in text.split_whitespace().take(3) {
        let p: Vec<&str> = w.split('.').collect();
        if p.len() == 3
            && matches!(p[0], "2" | "4" | "5")
            && p[1..]
                .iter()
                .all(|x| !x.is_empty() && x.len() <= 3 && x.bytes().all(|b| b.is_ascii_digit()))
        {
            if permanent && p[0] == "4" {
                // A temporary reply that ran out of time: report it as failed.
                return format!("5.{}.{}", p[1], p[2]);
            }
            return w.to_string();
        }
    }
    if permanent { "5.0.0" } else { "4.0.0" }.to_string()
}

fn rfc822_date(t: i64) -> String {
    mail_builder::headers::date::Date::new(t).to_rfc822()
}

/// Builds the notice. Returns the message bytes (CRLF line endings).
pub fn build(d: &Dsn<'_>) -> Vec<u8> {
    let failed = d.rcpts.iter().any(|r| r.action == Action::Failed);
    let delayed = d.rcpts.iter().any(|r| r.action == Action::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };

    // 1. The readable part.
    let mut text = format!("This is the mail system at host {}.\r\n\r\n", d.hostname);
    if failed {
        text.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n\r\n\
             For further assistance, please send mail to postmaster.\r\n\r\n",
        );
    } else if delayed {
        text.push_str(
            "####################################################################\r\n\
             # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n\
             ####################################################################\r\n\r\n\
             Your message could not be delivered yet. The mail system will keep\r\n\
             trying; you will be told if it gives up.\r\n\r\n",
        );
    } else {
        text.push_str(
            "Your message was successfully delivered to the destinations listed below.\r\n\r\n",
        );
    }
    for r in &d.rcpts {
        text.push_str(&format!(
            "<{}>: {}\r\n",
            r.rcpt,
            r.diagnostic.as_deref().unwrap_or(r.action.as_str())
        ));
    }

    // 2. The machine-readable part.
    let mut st = format!("Reporting-MTA: dns; {}\r\n", d.hostname);
    if let Some(e) = d.envid {
        st.push_str(&format!("Original-Envelope-Id: {e}\r\n"));
    }
    st.push_str(&format!("X-Zolder-Queue-ID: {}\r\n", d.queue_id));
    st.push_str(&format!("X-Zolder-Sender: rfc822; {}\r\n", d.sender));
    st.push_str(&format!("Arrival-Date: {}\r\n", rfc822_date(d.arrival)));
    for r in &d.rcpts {
        st.push_str("\r\n");
        st.push_str(&format!("Final-Recipient: rfc822; {}\r\n", r.rcpt));
        if let Some(o) = &r.orcpt {
            let o = if o.contains(';') {
                o.clone()
            } else {
                format!("rfc822; {o}")
            };
            st.push_str(&format!("Original-Recipient: {o}\r\n"));
        }
        st.push_str(&format!("Action: {}\r\n", r.action.as_str()));
        st.push_str(&format!("Status: {}\r\n", r.status));
        if let Some(m) = &r.remote_mta {
            st.push_str(&format!("Remote-MTA: {m}\r\n"));
        }
        if let Some(diag) = &r.diagnostic {
            let diag: String = diag.chars().filter(|c| !c.is_control()).collect();
            let kind = if r.remote_mta.is_some() {
                "smtp"
            } else {
                "x-zolder"
            };
            st.push_str(&format!("Diagnostic-Code: {kind}; {diag}\r\n"));
        }
        st.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc822_date(d.now)));
        if let Some(t) = r.will_retry_until {
            st.push_str(&format!("Will-Retry-Until: {}\r\n", rfc822_date(t)));
        }
    }

    // 3. The original, whole or headers only.
    let original = crlf(d.original);
    let whole = !d.headers_only && original.len() <= d.bounce_size_limit;
    let third =
        if whole {
            let eight = original.iter().any(|b| *b >= 0x80);
            MimePart::new(ContentType::new("message/rfc822"), original)
                .transfer_encoding(if eight { "8bit" } else { "7bit" })
        } else {
            let h = original[..headers::header_end(&original)].to_vec();
            let eight = h.iter().any(|b| *b >= 0x80);
            MimePart::new(ContentType::new("text/rfc822-headers"), h).transfer_encoding(if eight {
                "8bit"
            } else {
                "7bit"
            })
        };

    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "utf-8"),
                text.into_bytes(),
            )
            .transfer_encoding("8bit"),
            MimePart::new(ContentType::new("message/delivery-status"), st.into_bytes())
                .transfer_encoding("7bit"),
            third,
        ],
    );

    let mut b = MessageBuilder::new()
        .from(MbAddress::new_address(
            Some("Mail Delivery System"),
            format!("MAILER-DAEMON@{}", d.hostname),
        ))
        .to(d.sender.to_string())
        .subject(subject)
        .date(d.now)
        .message_id(format!("{}.{}@{}", d.queue_id, super::new_id(), d.hostname))
        .header("Auto-Submitted", Raw::new("auto-replied"));
    if let Some(mid) = headers::get(d.original, "Message-ID") {
        let mid = mid
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        if !mid.is_empty() && !mid.contains(char::is_whitespace) {
            b = b.in_reply_to(mid.clone()).references(mid);
        }
    }
    b.body(report).write_to_vec().unwrap_or_default()
}

fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 40);
    let mut prev = 0u8;
    for &c in b {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(status_of("550 5.1.1 No such user here", true), "5.1.1");
        assert_eq!(status_of("451 4.3.0 later", false), "4.3.0");
        assert_eq!(status_of("451 4.3.0 later", true), "5.3.0");
        assert_eq!(status_of("connection refused", false), "4.0.0");
    }

    #[test]
    fn failure_report_layout() {
        let orig = b"From: bouke@zolder.thuis\nTo: x@remote.example\nMessage-ID: <m1@zolder.thuis>\nSubject: hi\n\nbody\n";
        let out = build(&Dsn {
            hostname: "zolder.thuis",
            queue_id: "Q1",
            sender: "bouke@zolder.thuis",
            arrival: 1_700_000_000,
            envid: Some("ENV1"),
            headers_only: false,
            bounce_size_limit: 50_000,
            original: orig,
            rcpts: vec![DsnRcpt {
                rcpt: "x@remote.example".into(),
                orcpt: Some("rfc822;x@remote.example".into()),
                action: Action::Failed,
                status: "5.1.1".into(),
                diagnostic: Some("550 5.1.1 No such user here".into()),
                remote_mta: Some("dns; smtp.isp.example".into()),
                will_retry_until: None,
            }],
            now: 1_700_000_100,
        });
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("report-type=\"delivery-status\"")
                || s.contains("report-type=delivery-status"),
            "{s}"
        );
        assert!(s.contains("Content-Type: message/delivery-status"), "{s}");
        assert!(
            s.contains("Final-Recipient: rfc822; x@remote.example\r\n"),
            "{s}"
        );
        assert!(
            s.contains("Original-Recipient: rfc822;x@remote.example\r\n"),
            "{s}"
        );
        assert!(s.contains("Action: failed\r\n"), "{s}");
        assert!(s.contains("Status: 5.1.1\r\n"), "{s}");
        assert!(s.contains("Original-Envelope-Id: ENV1\r\n"), "{s}");
        assert!(
            s.contains("Diagnostic-Code: smtp; 550 5.1.1 No such user here"),
            "{s}"
        );
        assert!(s.contains("Content-Type: message/rfc822"), "{s}");
        assert!(s.contains("Subject: hi\r\n"), "{s}");
        assert!(s.contains("Auto-Submitted: auto-replied"), "{s}");
        assert!(s.contains("In-Reply-To: <m1@zolder.thuis>"), "{s}");
        assert!(
            s.contains("Subject: Undelivered Mail Returned to Sender"),
            "{s}"
        );
    }
}
