//! Small, byte-exact helpers for the header section of a raw message: find it, read
//! a header, add missing ones. Used for decisions and for prepending headers only; the
//! body is never rewritten (design.md rule 4). Pure byte work with no I/O, here in
//! `message` because the queue, submission (sendmail) and the relay all use it.

/// Index just past the blank line that ends the header section (or the whole length
/// when there is no body).
pub fn header_end(b: &[u8]) -> usize {
    let mut i = 0;
    while i < b.len() {
        let line_end = match memchr(b'\n', &b[i..]) {
            Some(n) => i + n + 1,
            None => return b.len(),
        };
        let line = &b[i..line_end];
        if line == b"\n" || line == b"\r\n" {
            return line_end;
        }
        i = line_end;
    }
    b.len()
}

fn memchr(c: u8, b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == c)
}

/// Every value of header `name` (case-insensitive), unfolded, without the trailing CRLF.
pub fn get_all(b: &[u8], name: &str) -> Vec<String> {
    let head = &b[..header_end(b)];
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for raw in head.split(|&c| c == b'\n') {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(c) = cur.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = cur.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            cur = Some(v.trim().to_string());
        }
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

pub fn get(b: &[u8], name: &str) -> Option<String> {
    get_all(b, name).into_iter().next()
}

/// Removes every header named `name` (with its continuation lines).
pub fn remove(b: &[u8], name: &str) -> Vec<u8> {
    let end = header_end(b);
    let mut out = Vec::with_capacity(b.len());
    let mut skipping = false;
    let mut i = 0;
    while i < end {
        let e = memchr(b'\n', &b[i..end]).map(|n| i + n + 1).unwrap_or(end);
        let line = &b[i..e];
        let cont = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if !cont {
            skipping = line.iter().position(|&c| c == b':').is_some_and(|p| {
                String::from_utf8_lossy(&line[..p])
                    .trim()
                    .eq_ignore_ascii_case(name)
            });
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        i = e;
    }
    out.extend_from_slice(&b[end..]);
    out
}

/// Line ending the message uses (CRLF unless its first line ends in a bare LF).
pub fn eol(b: &[u8]) -> &'static str {
    match memchr(b'\n', b) {
        Some(n) if n > 0 && b[n - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => "\r\n",
    }
}

/// Pulls the addresses out of an address-list header value (`"A" <a@x>, b@y`),
/// skipping group names and comments. Good enough for `sendmail -t` and for DSN
/// decisions; never used to rewrite a message.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut cur = String::new();
    let push = |s: &str, out: &mut Vec<String>| {
        let s = s.trim();
        let addr = match (s.rfind('<'), s.rfind('>')) {
            (Some(a), Some(b)) if a < b => s[a + 1..b].trim().to_string(),
            _ => s.split_whitespace().last().unwrap_or("").to_string(),
        };
        let addr = addr.trim_end_matches(';').to_string();
        if !addr.is_empty() && !addr.ends_with(':') {
            out.push(addr);
        }
    };
    for c in value.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                cur.push(c)
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ',' | ';' if !quoted => {
                push(&cur, &mut out);
                cur.clear();
            }
            ':' if !quoted && !cur.contains('<') => cur.clear(), // group "name:"
            _ => cur.push(c),
        }
    }
    push(&cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let m = b"From: A <a@x>\r\nTo: b@y,\r\n c@z\r\nBcc: d@w\r\n\r\nbody\r\nTo: no\r\n";
        assert_eq!(get(m, "to").unwrap(), "b@y, c@z");
        assert_eq!(addresses(&get(m, "to").unwrap()), vec!["b@y", "c@z"]);
        let r = remove(m, "bcc");
        assert!(!String::from_utf8_lossy(&r).contains("d@w"));
        assert!(String::from_utf8_lossy(&r).ends_with("body\r\nTo: no\r\n"));
        assert_eq!(eol(m), "\r\n");
        assert_eq!(
            addresses("\"Doe, J\" <j@x>, team: p@q, r@s;, (c) t@u"),
            vec!["j@x", "p@q", "r@s", "t@u"]
        );
    }
}
