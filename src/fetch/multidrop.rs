//! Multidrop: one ISP mailbox shared by the whole family, split into local recipients
//! by the envelope headers the ISP wrote (fetchmail's `envelope`, `aka`,
//! `localdomains`, `is` mapping). Pure: no I/O, no config loading.
//!
//! Also the tiny header reader the fetcher uses for `Return-Path` and `Message-ID`
//! (parsing is only for decisions; the message bytes are never rewritten).
//!
//! # Security
//! Headers are ISP input. Only the header block is read, at most [`MAX_HEADER`] bytes;
//! recipients are de-duplicated and at most [`MAX_RECIPIENTS`] are returned, so a
//! message with a thousand `Delivered-To:` lines costs nothing and fans out to no more
//! than that. An address outside the account's domains is never a recipient: a
//! multidrop account cannot be turned into a relay.

use crate::config::account::MultidropConfig;

/// Bytes of header block examined.
pub const MAX_HEADER: usize = 256 * 1024;
/// Most local recipients one message may fan out to.
pub const MAX_RECIPIENTS: usize = 100;

/// Envelope headers tried in order when the account names none.
pub const DEFAULT_ENVELOPE: &[&str] = &[
    "X-Original-To",
    "Delivered-To",
    "Envelope-To",
    "X-Envelope-To",
    "Received",
];

/// The header fields of `raw` as (name, unfolded value), in order, up to the first
/// empty line (or [`MAX_HEADER`] bytes). Accepts CRLF and bare LF.
pub fn headers(raw: &[u8]) -> Vec<(String, String)> {
    let block = &raw[..raw.len().min(MAX_HEADER)];
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
            continue;
        }
        if let Some((name, value)) = text.split_once(':')
            && !name.is_empty()
            && !name.contains(' ')
        {
            out.push((name.to_string(), value.trim().to_string()));
        }
    }
    out
}

/// The value of the first header `name` (case-insensitive).
pub fn first_header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The envelope sender from `Return-Path:` (`None` for `<>` or when absent).
pub fn return_path(hs: &[(String, String)]) -> Option<String> {
    let v = first_header(hs, "Return-Path")?;
    addresses(v).into_iter().next()
}

/// The envelope sender of a fetched message, as fetchmail takes it: `Return-Path:`
/// when the ISP wrote one (`<>` stays the null sender of a bounce), else the first
/// address of `From:` — never an invented `<>`, which would make it look like a bounce.
pub fn envelope_sender(hs: &[(String, String)]) -> Option<String> {
    if first_header(hs, "Return-Path").is_some() {
        return return_path(hs);
    }
    first_header(hs, "From").and_then(|v| addresses(v).into_iter().next())
}

/// Every address in a header value: `<a@b>`, bare `a@b`, `Name <a@b>`, comma lists.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in value.split(',') {
        let a = if let (Some(l), Some(r)) = (piece.find('<'), piece.rfind('>')) {
            if l < r {
                piece[l + 1..r].trim().to_string()
            } else {
                String::new()
            }
        } else {
            piece
                .split_whitespace()
                .find(|w| w.contains('@'))
                .unwrap_or("")
                .trim_matches(|c| c == ';' || c == '"')
                .to_string()
        };
        if !a.is_empty() && a.contains('@') {
            out.push(a);
        }
    }
    out
}

/// The address after `for` in a `Received:` header (`… by mx for <a@b>; date`).
fn received_for(value: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let mut idx = 0;
    while let Some(i) = lower[idx..].find("for ") {
        let at = idx + i;
        // "for" must be a word of its own.
        if at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace() {
            let rest = &value[at + 4..];
            let token = rest.split([';', ' ', '\t']).find(|t| !t.is_empty())?;
            if let Some(a) = addresses(token).into_iter().next() {
                return Some(a);
            }
        }
        idx = at + 4;
    }
    None
}

/// What the envelope headers say: the addresses, and which header they came from.
pub fn envelope_addresses(
    hs: &[(String, String)],
    md: &MultidropConfig,
) -> Option<(String, Vec<String>)> {
    let names: Vec<&str> = match &md.envelope {
        Some(e) => vec![e.as_str()],
        None => DEFAULT_ENVELOPE.to_vec(),
    };
    for name in names {
        let occ: Vec<&str> = hs
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .skip(md.envelope_skip)
            .collect();
        if occ.is_empty() {
            continue;
        }
        let found: Vec<String> = if name.eq_ignore_ascii_case("Received") {
            // The newest Received line that names a recipient.
            occ.iter()
                .find_map(|v| received_for(v))
                .into_iter()
                .collect()
        } else if name.eq_ignore_ascii_case("Delivered-To") {
            // Delivered-To is prepended per hop: the first is the ISP's final one.
            addresses(occ[0])
        } else {
            // X-Original-To / Envelope-To: one per recipient of this copy.
            occ.iter().flat_map(|v| addresses(v)).collect()
        };
        if !found.is_empty() {
            return Some((name.to_string(), found));
        }
    }
    None
}

/// Is `domain` one of this mailbox's domains: the ISP host, an `aka` (suffix match) or
/// a `local_domains` entry (the domain or a subdomain of it)?
pub fn is_our_domain(domain: &str, md: &MultidropConfig, host: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let suffix = |s: &str| {
        let s = s.trim_start_matches('.').to_ascii_lowercase();
        d == s || d.ends_with(&format!(".{s}"))
    };
    d == host.to_ascii_lowercase()
        || md.aka.iter().any(|a| suffix(a))
        || md.local_domains.iter().any(|l| suffix(l))
}

/// How a message was routed, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Local recipient names, de-duplicated, in order of appearance.
    pub recipients: Vec<String>,
    /// The envelope header used, or `None` when none was found.
    pub header: Option<String>,
    /// True when nobody matched and the message went to the fall-back.
    pub fallback: bool,
}

/// Splits one multidrop message into local recipients.
///
/// For each envelope address in one of our domains: the `map` entry for the whole
/// address, else for the local part; else the local part itself when `is_local_name`
/// knows it (a user or alias) or the map has `"*"`. Nothing matched → `fallback`
/// (default `postmaster`).
pub fn route(
    raw: &[u8],
    md: &MultidropConfig,
    host: &str,
    postmaster: &str,
    is_local_name: &dyn Fn(&str) -> bool,
) -> Routing {
    let hs = headers(raw);
    let env = envelope_addresses(&hs, md);
    let mut recipients: Vec<String> = Vec::new();
    let star = md.map.contains_key("*");
    let lookup = |key: &str| {
        md.map
            .iter()
            .find(|(k, _)| k.as_str() != "*" && k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    if let Some((_, addrs)) = &env {
        for a in addrs {
            let Some((local, domain)) = a.rsplit_once('@') else {
                continue;
            };
            if !is_our_domain(domain, md, host) {
                continue;
            }
            // qmail virtual domains prefix the local part (fetchmail `qvirtual`).
            let local = md
                .qvirtual
                .as_deref()
                .and_then(|q| local.strip_prefix(q))
                .unwrap_or(local);
            let name = lookup(a)
                .or_else(|| lookup(local))
                .or_else(|| (is_local_name(local) || star).then(|| local.to_ascii_lowercase()));
            if let Some(n) = name
                && !recipients.iter().any(|r| r.eq_ignore_ascii_case(&n))
                && recipients.len() < MAX_RECIPIENTS
            {
                recipients.push(n);
            }
        }
    }
    let fallback = recipients.is_empty();
    if fallback {
        recipients.push(
            md.fallback
                .clone()
                .unwrap_or_else(|| postmaster.to_string()),
        );
    }
    Routing {
        recipients,
        header: env.map(|(h, _)| h),
        fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md() -> MultidropConfig {
        MultidropConfig {
            envelope: None,
            envelope_skip: 0,
            local_domains: vec!["family.nl".into()],
            aka: vec!["isp.example".into()],
            map: [
                ("pa".to_string(), "sjoerd".to_string()),
                ("ma@family.nl".to_string(), "bouke".to_string()),
            ]
            .into_iter()
            .collect(),
            fallback: None,
            qvirtual: None,
        }
    }
    fn known(n: &str) -> bool {
        matches!(n, "sjoerd" | "bouke" | "anna")
    }

    #[test]
    fn header_reader_unfolds_and_stops_at_body() {
        let raw = b"Return-Path: <x@y.org>\r\nSubject: a\r\n  b\r\nX-Original-To: anna@family.nl\r\n\r\nX-Original-To: evil@family.nl\r\n";
        let hs = headers(raw);
        assert_eq!(hs.len(), 3);
        assert_eq!(first_header(&hs, "subject"), Some("a b"));
        assert_eq!(return_path(&hs).as_deref(), Some("x@y.org"));
        let r = route(raw, &md(), "pop.isp.example", "postmaster", &known);
        assert_eq!(r.recipients, vec!["anna"]);
        assert_eq!(r.header.as_deref(), Some("X-Original-To"));
    }

    #[test]
    fn envelope_sender_from_return_path_else_from() {
        let hs = headers(b"From: Oma <oma@family.example>\r\nSubject: x\r\n\r\n");
        assert_eq!(envelope_sender(&hs).as_deref(), Some("oma@family.example"));
        let hs = headers(b"Return-Path: <isp@bounce.example>\r\nFrom: oma@family.example\r\n\r\n");
        assert_eq!(envelope_sender(&hs).as_deref(), Some("isp@bounce.example"));
        // A real bounce keeps its null sender.
        let hs = headers(b"Return-Path: <>\r\nFrom: MAILER-DAEMON@isp.example\r\n\r\n");
        assert_eq!(envelope_sender(&hs), None);
        assert_eq!(envelope_sender(&headers(b"Subject: x\r\n\r\n")), None);
    }

    #[test]
    fn order_of_default_envelope_headers() {
        // X-Original-To wins over Delivered-To.
        let raw = b"Delivered-To: pa@family.nl\nX-Original-To: anna@family.nl\n\nbody";
        assert_eq!(
            route(raw, &md(), "h", "pm", &known).recipients,
            vec!["anna"]
        );
        // Only Delivered-To: its first occurrence (the ISP's last hop).
        let raw = b"Delivered-To: pa@family.nl\nDelivered-To: list@lists.example\n\n";
        assert_eq!(
            route(raw, &md(), "h", "pm", &known).recipients,
            vec!["sjoerd"]
        );
        // Received as a last resort.
        let raw = b"Received: from a by mx.isp.example with ESMTP id 1\n\tfor <ma@family.nl>; Mon, 1 Jan 2024\nReceived: from b by c for <pa@family.nl>;\n\n";
        let r = route(raw, &md(), "h", "pm", &known);
        assert_eq!(r.recipients, vec!["bouke"]);
        assert_eq!(r.header.as_deref(), Some("Received"));
    }

    #[test]
    fn envelope_skip_and_named_header() {
        let mut m = md();
        m.envelope = Some("Delivered-To".into());
        m.envelope_skip = 1;
        let raw = b"Delivered-To: family@isp.example\nDelivered-To: anna@family.nl\n\n";
        assert_eq!(route(raw, &m, "h", "pm", &known).recipients, vec!["anna"]);
    }

    #[test]
    fn one_copy_per_recipient_and_foreign_domains_dropped() {
        let raw = b"X-Original-To: anna@family.nl\nX-Original-To: ANNA@family.nl, pa@mail.family.nl\nX-Original-To: anna@elsewhere.org\nX-Original-To: sjoerd@isp.example\n\n";
        let r = route(raw, &md(), "h", "pm", &known);
        assert_eq!(r.recipients, vec!["anna", "sjoerd"]);
        assert!(!r.fallback);
    }

    #[test]
    fn aka_and_host_are_ours_and_fallback_to_postmaster() {
        assert!(is_our_domain("pop.isp.example", &md(), "x"));
        assert!(is_our_domain("POP.ISP.EXAMPLE.", &md(), "x"));
        assert!(!is_our_domain("notisp.example", &md(), "x"));
        assert!(is_our_domain(
            "mail.provider.nl",
            &MultidropConfig::default(),
            "mail.provider.nl"
        ));
        let raw = b"X-Original-To: stranger@family.nl\n\n";
        let r = route(raw, &md(), "h", "sjoerd", &known);
        assert_eq!(r.recipients, vec!["sjoerd"]);
        assert!(r.fallback);
        let mut m = md();
        m.fallback = Some("bouke".into());
        let r = route(b"Subject: no envelope\n\n", &m, "h", "sjoerd", &known);
        assert_eq!(r.recipients, vec!["bouke"]);
        assert_eq!(r.header, None);
    }

    #[test]
    fn star_passes_unknown_names_through() {
        let mut m = md();
        m.map.insert("*".into(), "*".into());
        let raw = b"Envelope-To: stranger@family.nl\n\n";
        assert_eq!(
            route(raw, &m, "h", "pm", &known).recipients,
            vec!["stranger"]
        );
    }

    #[test]
    fn qvirtual_prefix_is_stripped() {
        let mut m = md();
        m.qvirtual = Some("family-".into());
        let raw = b"Delivered-To: family-anna@family.nl\n\n";
        assert_eq!(route(raw, &m, "h", "pm", &known).recipients, vec!["anna"]);
    }

    #[test]
    fn addresses_forms() {
        assert_eq!(
            addresses("A <a@b>, c@d, \"x, y\" <e@f>"),
            vec!["a@b", "c@d", "e@f"]
        );
        assert_eq!(addresses("<>"), Vec::<String>::new());
    }
}
