//! Trace headers: `Return-Path:`, `Delivered-To:` and `Received:`, prepended to the
//! message bytes as received (never re-serialising the message).
//!
//! Pure code, no I/O.
//!
//! # Security
//! Values here come partly from the network (HELO names, envelope addresses, ISP host
//! names): control characters are dropped and lengths bounded, so a peer cannot
//! inject header lines.

use crate::message::{Envelope, Source};

/// The line ending the message itself uses ("\r\n" if its first line ends so), so the
/// prepended lines match it.
pub fn line_ending(msg: &[u8]) -> &'static str {
    match msg.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && msg[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Printable, single-line, at most `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// An RFC 5322 date for `unix` seconds (UTC).
pub fn rfc5322_date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

/// The `Received:` value for a message entering through `source`, for `rcpt`.
pub fn received(
    env: &Envelope,
    hostname: &str,
    id: &str,
    rcpt: &str,
    date: i64,
    nl: &str,
) -> String {
    let host = clean(hostname, 255);
    let from = match &env.source {
        Source::Fetch {
            account,
            protocol,
            host: isp,
        } => format!(
            "from {} ({} account {})\n\tby {host} (zolder) with {}",
            clean(isp, 255),
            clean(&protocol.to_ascii_uppercase(), 16),
            clean(account, 64),
            clean(&protocol.to_ascii_uppercase(), 16),
        ),
        Source::Submit {
            peer,
            helo,
            auth_user,
            tls,
        } => {
            let mut with = String::from("ESMTP");
            if *tls {
                with.push('S');
            }
            if auth_user.is_some() {
                with.push('A');
            }
            format!(
                "from {} ([{}])\n\tby {host} (zolder) with {with}",
                clean(helo, 255),
                peer.ip()
            )
        }
        Source::Local { user } => {
            format!("by {host} (zolder deliver, from user {})", clean(user, 64))
        }
        Source::Queue { queue_id } => {
            format!("by {host} (zolder queue {})", clean(queue_id, 64))
        }
        Source::Import => format!("by {host} (zolder import)"),
    };
    format!(
        "Received: {from}\n\tid {id}\n\tfor <{}>; {}",
        clean(rcpt, 320),
        rfc5322_date(date)
    )
    .replace('\n', nl)
}

/// The header block to put in front of the message for one local recipient:
/// `Return-Path`, `Delivered-To`, `Received`, then `extra` lines (e.g. the scan
/// stage's `X-Spam-Status`), each ending with `nl`.
pub fn headers(
    env: &Envelope,
    hostname: &str,
    id: &str,
    delivered_to: &str,
    date: i64,
    extra: &[(String, String)],
    nl: &str,
) -> Vec<u8> {
    let mut h = String::new();
    let sender = match &env.sender {
        Some(s) => format!("<{}>", clean(s, 320)),
        None => "<>".to_string(),
    };
    h.push_str(&format!("Return-Path: {sender}{nl}"));
    h.push_str(&format!("Delivered-To: {}{nl}", clean(delivered_to, 320)));
    h.push_str(&received(env, hostname, id, delivered_to, date, nl));
    h.push_str(nl);
    for (name, value) in extra {
        h.push_str(&format!("{}: {}{nl}", clean(name, 76), clean(value, 2000)));
    }
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_follow_the_message_line_ending() {
        assert_eq!(line_ending(b"A: b\r\n\r\n"), "\r\n");
        assert_eq!(line_ending(b"A: b\n\n"), "\n");
        assert_eq!(line_ending(b""), "\n");
        let env = Envelope::new(
            Some("a@b.example".into()),
            vec!["bouke".into()],
            Source::Fetch {
                account: "acct".into(),
                protocol: "pop3".into(),
                host: "pop.isp.example\r\nX-Evil: 1".into(),
            },
        );
        let h = headers(
            &env,
            "zolder.thuis",
            "ID1",
            "bouke@zolder.thuis",
            0,
            &[],
            "\r\n",
        );
        let s = String::from_utf8(h).unwrap();
        assert!(s.starts_with("Return-Path: <a@b.example>\r\nDelivered-To: bouke@zolder.thuis\r\nReceived: from pop.isp.exampleX-Evil: 1 (POP3 account acct)\r\n\tby zolder.thuis"), "{s}");
        assert!(
            s.ends_with("for <bouke@zolder.thuis>; Thu, 01 Jan 1970 00:00:00 +0000\r\n"),
            "{s}"
        );
        assert!(!s.replace("\r\n", "").contains('\n'));
    }
}
