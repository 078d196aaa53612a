//! Sender masquerading on the way out (Postfix's `smtp_generic_maps`): a LAN address
//! such as `bouke@zolder.thuis` becomes the address the ISP knows, in the envelope
//! sender and in the `From:` and `Sender:` headers — only when mail leaves through the
//! smarthost, never for local delivery, so replies between family members still work.
//!
//! The map (`[smarthost] masquerade`) has keys `local@domain` (one address) or
//! `@domain` (every address of that domain); exact keys win.

use std::collections::BTreeMap;

use crate::message::headers;

/// The outgoing address for `addr`, if the map names one.
pub fn lookup(map: &BTreeMap<String, String>, addr: &str) -> Option<String> {
    let a = addr.trim().trim_start_matches('<').trim_end_matches('>');
    let lower = a.to_ascii_lowercase();
    if let Some((k, v)) = map.iter().find(|(k, _)| k.to_ascii_lowercase() == lower) {
        let _ = k;
        return Some(v.clone());
    }
    let domain = lower.rsplit_once('@')?.1;
    map.iter()
        .find(|(k, _)| k.starts_with('@') && k[1..].eq_ignore_ascii_case(domain))
        .map(|(_, v)| v.clone())
}

/// Rewrites the addresses in the `From:` and `Sender:` header lines that the map
/// names. Only those header lines change; the body and every other header stay
/// byte-identical.
pub fn rewrite_headers(map: &BTreeMap<String, String>, msg: &[u8]) -> Option<Vec<u8>> {
    if map.is_empty() {
        return None;
    }
    let end = headers::header_end(msg);
    let mut out = Vec::with_capacity(msg.len() + 64);
    let mut changed = false;
    let mut in_target = false;
    let mut i = 0;
    while i < end {
        let e = msg[i..end]
            .iter()
            .position(|&c| c == b'\n')
            .map(|n| i + n + 1)
            .unwrap_or(end);
        let line = &msg[i..e];
        let cont = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if !cont {
            let name = line.iter().position(|&c| c == b':').map(|p| &line[..p]);
            in_target = name.is_some_and(|n| {
                n.eq_ignore_ascii_case(b"From") || n.eq_ignore_ascii_case(b"Sender")
            });
        }
        if in_target && let Ok(text) = std::str::from_utf8(line) {
            let new = rewrite_line(map, text);
            if new != text {
                changed = true;
            }
            out.extend_from_slice(new.as_bytes());
            i = e;
            continue;
        }
        out.extend_from_slice(line);
        i = e;
    }
    out.extend_from_slice(&msg[end..]);
    changed.then_some(out)
}

/// Replaces each address token (`x@y`, between `<>`, spaces, commas or quotes) that
/// the map names.
fn rewrite_line(map: &BTreeMap<String, String>, line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.contains('@')
            && let Some(n) = lookup(map, token)
        {
            out.push_str(&n);
            token.clear();
            return;
        }
        out.push_str(token);
        token.clear();
    };
    for c in line.chars() {
        if c == '<'
            || c == '>'
            || c == ','
            || c == ' '
            || c == '\t'
            || c == '"'
            || c == '\r'
            || c == '\n'
            || c == '('
            || c == ')'
            || (c == ':' && !token.contains('@'))
        {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_address_and_domain() {
        let mut m = BTreeMap::new();
        m.insert(
            "bouke@zolder.thuis".to_string(),
            "bouke@provider.nl".to_string(),
        );
        m.insert(
            "@zolder.thuis".to_string(),
            "family@provider.nl".to_string(),
        );
        assert_eq!(
            lookup(&m, "Bouke@Zolder.thuis").unwrap(),
            "bouke@provider.nl"
        );
        assert_eq!(
            lookup(&m, "<sjoerd@zolder.thuis>").unwrap(),
            "family@provider.nl"
        );
        assert_eq!(lookup(&m, "x@elsewhere.example"), None);
        let msg = b"From: Bouke <bouke@zolder.thuis>\r\nTo: bouke@zolder.thuis\r\nSubject: from bouke@zolder.thuis\r\n\r\nbouke@zolder.thuis\r\n";
        let out = String::from_utf8(rewrite_headers(&m, msg).unwrap()).unwrap();
        assert_eq!(
            out,
            "From: Bouke <bouke@provider.nl>\r\nTo: bouke@zolder.thuis\r\nSubject: from bouke@zolder.thuis\r\n\r\nbouke@zolder.thuis\r\n"
        );
        assert!(rewrite_headers(&m, b"From: x@other.example\r\n\r\n").is_none());
    }
}
