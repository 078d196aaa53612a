//! A message's structure as IMAP shows it: ENVELOPE, BODY/BODYSTRUCTURE, body
//! sections by MIME part number (`BODY[1.2.MIME]`), and the text tests SEARCH needs.
//!
//! Structure comes from mail-parser; the bytes served are always the stored bytes
//! (sections are slices of the original message, never re-encoded). A
//! `message/rfc822` part is re-parsed from its own bytes so that every offset this
//! module uses is relative to the buffer it slices.
//!
//! Part numbering (RFC 3501 §6.4.5): the parts of a multipart are numbered from 1;
//! a non-multipart message has one part, numbered 1, which is its body; the parts of
//! an encapsulated message continue the path of the part that holds it.

use std::borrow::Cow;

use base64::Engine;
use mail_parser::{Address, Encoding, HeaderName, HeaderValue, Message, MessagePart, PartType};

use crate::message::mime_limits::{self, Budget};

use super::response::{nstring, string};
use super::types::{Section, SectionText};

/// Deepest message/rfc822 nesting followed.
const MAX_NESTING: usize = 8;

/// Parses stored bytes (headers only parsed lazily by mail-parser; cheap enough per FETCH),
/// within the depth and size limits of [`mime_limits`].
pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    mime_limits::parse(raw)
}

/// A header field's raw value (after the colon), unfolded and trimmed.
fn raw_header<'a>(raw: &'a [u8], part: &MessagePart<'_>, name: &str) -> Option<Cow<'a, [u8]>> {
    let h = part
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let v = raw.get(h.offset_start as usize..h.offset_end as usize)?;
    Some(unfold(v))
}

fn unfold(v: &[u8]) -> Cow<'_, [u8]> {
    let t = trim(v);
    if !t.contains(&b'\n') {
        return Cow::Borrowed(t);
    }
    Cow::Owned(
        t.iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect(),
    )
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &v[s..e.max(s)]
}

/// RFC 2047 encodes text that is not 7-bit (names mail-parser already decoded).
fn encode_word(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        ))
    }
}

/// Writes the ENVELOPE of a (top-level or encapsulated) message.
pub fn envelope(out: &mut Vec<u8>, msg: &Message<'_>) {
    let raw = msg.raw_message();
    let Some(root) = msg.parts.first() else {
        out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    };
    out.push(b'(');
    nstring(out, raw_header(raw, root, "Date").as_deref());
    out.push(b' ');
    nstring(out, raw_header(raw, root, "Subject").as_deref());
    let from = root.headers.iter().find(|h| h.name == HeaderName::From);
    let addr_of = |n: HeaderName<'static>| {
        root.headers
            .iter()
            .find(|h| h.name == n)
            .and_then(|h| h.value.as_address())
    };
    let from_a = from.and_then(|h| h.value.as_address());
    for (i, name) in [
        HeaderName::From,
        HeaderName::Sender,
        HeaderName::ReplyTo,
        HeaderName::To,
        HeaderName::Cc,
        HeaderName::Bcc,
    ]
    .into_iter()
    .enumerate()
    {
        out.push(b' ');
        let a = addr_of(name).or(if (1..=2).contains(&i) { from_a } else { None });
        addresses(out, a);
    }
    out.push(b' ');
    nstring(out, raw_header(raw, root, "In-Reply-To").as_deref());
    out.push(b' ');
    nstring(out, raw_header(raw, root, "Message-ID").as_deref());
    out.push(b')');
}

fn addresses(out: &mut Vec<u8>, a: Option<&Address<'_>>) {
    let mut list = Vec::new();
    let one = |list: &mut Vec<u8>, name: Option<&str>, addr: Option<&str>| {
        let addr = addr.unwrap_or("");
        let (local, host) = match addr.rsplit_once('@') {
            Some((l, h)) => (l, Some(h)),
            None => (addr, None),
        };
        list.push(b'(');
        nstring(
            list,
            name.map(|n| encode_word(n).into_owned().into_bytes())
                .as_deref(),
        );
        list.extend_from_slice(b" NIL ");
        string(list, encode_word(local).as_bytes());
        list.push(b' ');
        match host {
            Some(h) => string(list, h.as_bytes()),
            None => string(list, b"missing-host"),
        }
        list.push(b')');
    };
    match a {
        Some(Address::List(v)) if !v.is_empty() => {
            for x in v {
                one(&mut list, x.name.as_deref(), x.address.as_deref());
            }
        }
        Some(Address::Group(groups)) if !groups.is_empty() => {
            for g in groups {
                match &g.name {
                    Some(name) => {
                        list.extend_from_slice(b"(NIL NIL ");
                        string(&mut list, encode_word(name).as_bytes());
                        list.extend_from_slice(b" NIL)");
                        // Members only: a comment inside the group (`g: (c) ;`) is
                        // no address (RFC 3501 §7.4.2: start marker, members, end).
                        for x in g.addresses.iter().filter(|x| has_address(x)) {
                            one(&mut list, x.name.as_deref(), x.address.as_deref());
                        }
                        list.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => {
                        for x in &g.addresses {
                            one(&mut list, x.name.as_deref(), x.address.as_deref());
                        }
                    }
                }
            }
        }
        _ => {}
    }
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&list);
        out.push(b')');
    }
}

/// Whether a parsed address has an address part (not a lone comment or phrase).
fn has_address(a: &mail_parser::Addr<'_>) -> bool {
    a.address.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// Writes BODYSTRUCTURE (`extended`) or BODY of a message.
///
/// Past [`mime_limits::MAX_DEPTH`] levels or [`mime_limits::MAX_PARTS`] parts the
/// rest is described as one opaque `APPLICATION/OCTET-STREAM` leaf.
pub fn body_structure(out: &mut Vec<u8>, msg: &Message<'_>, extended: bool) {
    let mut budget = Budget::new();
    write_part(out, msg, 0, extended, 0, 0, &mut budget);
}

fn content_type<'p>(part: &'p MessagePart<'_>) -> Option<&'p mail_parser::ContentType<'p>> {
    part.headers
        .iter()
        .find(|h| h.name == HeaderName::ContentType)
        .and_then(|h| h.value.as_content_type())
}

fn params(out: &mut Vec<u8>, ct: Option<&mail_parser::ContentType<'_>>, default_charset: bool) {
    let attrs = ct.and_then(|c| c.attributes.as_deref()).unwrap_or(&[]);
    if attrs.is_empty() {
        if default_charset {
            out.extend_from_slice(b"(\"charset\" \"us-ascii\")");
        } else {
            out.extend_from_slice(b"NIL");
        }
        return;
    }
    out.push(b'(');
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, a.name.as_bytes());
        out.push(b' ');
        string(out, encode_word(&a.value).as_bytes());
    }
    out.push(b')');
}

fn upper_or(out: &mut Vec<u8>, s: Option<&str>, default: &str) {
    let s = s.unwrap_or(default);
    string(out, s.to_ascii_uppercase().as_bytes());
}

/// Disposition, language, location: the extension data both kinds of part end with.
fn extension_tail(out: &mut Vec<u8>, raw: &[u8], part: &MessagePart<'_>) {
    out.push(b' ');
    match part
        .headers
        .iter()
        .find(|h| h.name == HeaderName::ContentDisposition)
        .and_then(|h| h.value.as_content_type())
    {
        Some(d) => {
            out.push(b'(');
            string(out, d.c_type.as_bytes());
            out.push(b' ');
            params(out, Some(d), false);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match raw_header(raw, part, "Content-Language") {
        Some(l) => {
            let langs: Vec<&[u8]> = l
                .split(|&b| b == b',')
                .map(trim)
                .filter(|x| !x.is_empty())
                .collect();
            out.push(b'(');
            for (i, x) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, x);
            }
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, raw_header(raw, part, "Content-Location").as_deref());
}

fn count_lines(b: &[u8]) -> usize {
    let n = memchr::memchr_iter(b'\n', b).count();
    if !b.is_empty() && b.last() != Some(&b'\n') {
        n + 1
    } else {
        n
    }
}

/// The bytes of an encapsulated message held by `part`, with its transfer encoding
/// undone (message/rfc822 should be 7bit/8bit, but base64 is seen in the wild).
fn encapsulated<'a>(raw: &'a [u8], part: &'a MessagePart<'_>) -> Cow<'a, [u8]> {
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(&[]);
    match (&part.body, part.encoding) {
        (_, Encoding::None) => Cow::Borrowed(body),
        (PartType::Message(m), _) => Cow::Borrowed(m.raw_message()),
        _ => Cow::Borrowed(body),
    }
}

/// One part of BODYSTRUCTURE. `depth` counts encapsulated messages (re-parsed, at
/// most [`MAX_NESTING`]), `level` every nesting level (bounded by `budget`).
fn write_part(
    out: &mut Vec<u8>,
    msg: &Message<'_>,
    id: usize,
    extended: bool,
    depth: usize,
    level: usize,
    budget: &mut Budget,
) {
    let raw = msg.raw_message();
    let Some(part) = msg.parts.get(id) else {
        out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        return;
    };
    if !budget.enter(level) {
        // Past the limits: the rest of this subtree is one opaque leaf.
        let size = (part.offset_end as usize).saturating_sub(part.offset_body as usize);
        out.extend_from_slice(
            format!("(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" {size})").as_bytes(),
        );
        return;
    }
    let ct = content_type(part);
    if let PartType::Multipart(children) = &part.body {
        out.push(b'(');
        if children.is_empty() {
            // A multipart without parts is shown as one empty text part (as Dovecot does).
            out.extend_from_slice(
                b"(\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)",
            );
        }
        for &c in children {
            write_part(out, msg, c as usize, extended, depth, level + 1, budget);
        }
        out.push(b' ');
        upper_or(out, ct.and_then(|c| c.c_subtype.as_deref()), "MIXED");
        if extended {
            out.push(b' ');
            params(out, ct, false);
            extension_tail(out, raw, part);
        }
        out.push(b')');
        return;
    }
    let (mut ty, mut sub) = match ct {
        Some(c) => (
            c.c_type.to_ascii_uppercase(),
            c.c_subtype
                .as_deref()
                .map(str::to_ascii_uppercase)
                .unwrap_or_else(|| "PLAIN".into()),
        ),
        None => ("TEXT".to_string(), "PLAIN".to_string()),
    };
    let is_rfc822 = ty == "MESSAGE" && (sub == "RFC822" || sub == "GLOBAL");
    let nested = if is_rfc822 && depth < MAX_NESTING {
        let bytes = encapsulated(raw, part);
        Some(bytes)
    } else {
        None
    };
    let nested_msg = nested.as_deref().and_then(parse);
    if is_rfc822 && nested_msg.is_none() {
        // Unparseable encapsulated message: describe it as opaque data rather than
        // break the grammar, which requires an envelope for message/rfc822.
        ty = "APPLICATION".into();
        sub = "OCTET-STREAM".into();
    }
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(&[]);
    out.push(b'(');
    string(out, ty.as_bytes());
    out.push(b' ');
    string(out, sub.as_bytes());
    out.push(b' ');
    params(out, ct, ty == "TEXT");
    out.push(b' ');
    nstring(out, raw_header(raw, part, "Content-ID").as_deref());
    out.push(b' ');
    nstring(out, raw_header(raw, part, "Content-Description").as_deref());
    out.push(b' ');
    let cte = raw_header(raw, part, "Content-Transfer-Encoding")
        .map(|v| String::from_utf8_lossy(&v).to_ascii_uppercase());
    upper_or(out, cte.as_deref(), "7BIT");
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    if let Some(m) = &nested_msg {
        out.push(b' ');
        envelope(out, m);
        out.push(b' ');
        write_part(out, m, 0, extended, depth + 1, level + 1, budget);
        out.extend_from_slice(format!(" {}", count_lines(body)).as_bytes());
    } else if ty == "TEXT" {
        out.extend_from_slice(format!(" {}", count_lines(body)).as_bytes());
    }
    if extended {
        out.push(b' ');
        nstring(out, raw_header(raw, part, "Content-MD5").as_deref());
        extension_tail(out, raw, part);
    }
    out.push(b')');
}

/// The bytes of `section` of a stored message, or `None` when the part does not
/// exist (answered as an empty string, as RFC 3501 allows).
pub fn section<'a>(raw: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
    if section.parts.is_empty() {
        // The whole message, its header or its text: no MIME parse needed (the
        // common FETCH of headers for a message list stays cheap).
        let end = header_end(raw);
        return match &section.text {
            None => Some(Cow::Borrowed(raw)),
            Some(SectionText::Header) => Some(Cow::Borrowed(&raw[..end])),
            Some(SectionText::Text) => Some(Cow::Borrowed(&raw[end..])),
            Some(SectionText::HeaderFields(n)) => {
                Some(Cow::Owned(header_fields(&raw[..end], n, false)))
            }
            Some(SectionText::HeaderFieldsNot(n)) => {
                Some(Cow::Owned(header_fields(&raw[..end], n, true)))
            }
            Some(SectionText::Mime) => None,
        };
    }
    if section.parts.len() > mime_limits::MAX_DEPTH {
        return None; // deeper than any part that is walked
    }
    let msg = parse(raw)?;
    section_in(&msg, &section.parts, section.text.as_ref(), 0).map(|c| Cow::Owned(c.into_owned()))
}

fn section_in<'a>(
    msg: &'a Message<'a>,
    path: &[u32],
    text: Option<&SectionText>,
    depth: usize,
) -> Option<Cow<'a, [u8]>> {
    let raw = msg.raw_message();
    let root = msg.parts.first()?;
    if path.is_empty() {
        let header_end = (root.offset_body as usize).min(raw.len());
        return Some(match text {
            None => Cow::Borrowed(raw),
            Some(SectionText::Header) => Cow::Borrowed(&raw[..header_end]),
            Some(SectionText::Text) => Cow::Borrowed(&raw[header_end..]),
            Some(SectionText::HeaderFields(names)) => {
                Cow::Owned(header_fields(&raw[..header_end], names, false))
            }
            Some(SectionText::HeaderFieldsNot(names)) => {
                Cow::Owned(header_fields(&raw[..header_end], names, true))
            }
            Some(SectionText::Mime) => return None,
        });
    }
    // Walk the path within this message.
    let mut id = 0usize;
    let mut first = true;
    for (i, &n) in path.iter().enumerate() {
        let cur = msg.parts.get(id)?;
        match &cur.body {
            PartType::Multipart(children) => {
                id = *children.get(n as usize - 1)? as usize;
            }
            PartType::Message(_) if !first => {
                // Descend into the encapsulated message with the rest of the path.
                if depth >= MAX_NESTING {
                    return None;
                }
                let bytes = encapsulated(raw, cur).into_owned();
                let inner = parse(&bytes)?;
                let r = section_in(&inner, &path[i..], text, depth + 1)?.into_owned();
                return Some(Cow::Owned(r));
            }
            _ if n == 1 && first => {}
            _ => return None,
        }
        first = false;
    }
    let part = msg.parts.get(id)?;
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    match text {
        None => Some(Cow::Borrowed(body)),
        Some(SectionText::Mime) => raw
            .get(part.offset_header as usize..part.offset_body as usize)
            .map(Cow::Borrowed),
        Some(t) => {
            // HEADER/TEXT of a part apply to the message it encapsulates.
            if !matches!(part.body, PartType::Message(_)) || depth >= MAX_NESTING {
                return None;
            }
            let bytes = encapsulated(raw, part).into_owned();
            let inner = parse(&bytes)?;
            let r = section_in(&inner, &[], Some(t), depth + 1)?.into_owned();
            Some(Cow::Owned(r))
        }
    }
}

/// Where the header ends: just after the first empty line (CRLF CRLF or LF LF), or
/// the end of the message when it has no body.
pub fn header_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &raw[i..]) {
        let nl = i + p;
        let next = nl + 1;
        if raw.get(next) == Some(&b'\n') {
            return next + 1;
        }
        if raw.get(next) == Some(&b'\r') && raw.get(next + 1) == Some(&b'\n') {
            return next + 2;
        }
        if nl == 0 || (nl == 1 && raw[0] == b'\r') {
            // The message starts with an empty line: no header at all.
            return next;
        }
        i = next;
    }
    raw.len()
}

/// The header fields named (or, with `not`, all others), followed by the blank line.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| trim(&line[..i]))
                .unwrap_or(&[]);
            let listed = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
            keep = listed != not && !name.is_empty();
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Case-insensitive substring test (Unicode simple case folding via lowercase).
fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    needle_lower.is_empty() || hay.to_lowercase().contains(needle_lower)
}

/// SEARCH HEADER/FROM/TO/...: does a field `name` contain `needle`? Compared against
/// both the decoded value and the raw text so `=?..?=` words and plain text both match.
pub fn header_contains(msg: &Message<'_>, name: &str, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    let raw = msg.raw_message();
    let Some(root) = msg.parts.first() else {
        return false;
    };
    root.headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .any(|h| {
            let rawv = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or(&[]);
            if contains_ci(&String::from_utf8_lossy(rawv), &needle) {
                return true;
            }
            contains_ci(&decoded(&h.value), &needle) || contains_ci(&addresses_text(&h.value), &needle)
        })
}

/// An address field as Dovecot writes it for SEARCH: `Name <local@domain>, addr`,
/// with the display name decoded and comments left out.
fn addresses_text(v: &HeaderValue<'_>) -> String {
    let HeaderValue::Address(a) = v else {
        return String::new();
    };
    let mut s = String::new();
    let mut push = |x: &mail_parser::Addr<'_>| {
        if !s.is_empty() {
            s.push_str(", ");
        }
        let name = x.name.as_deref().map(strip_comments).unwrap_or_default();
        match (&x.address, name.is_empty()) {
            (Some(ad), false) => {
                s.push_str(&name);
                s.push_str(" <");
                s.push_str(ad);
                s.push('>');
            }
            (Some(ad), true) => s.push_str(ad),
            (None, _) => s.push_str(&name),
        }
    };
    match a {
        Address::List(l) => l.iter().for_each(&mut push),
        Address::Group(g) => g.iter().flat_map(|g| g.addresses.iter()).for_each(push),
    }
    s
}

/// `User (comment)` → `User`: parenthesised comments removed (bounded nesting).
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => depth = depth.saturating_add(1),
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decoded(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::Address(a) => {
            let mut s = String::new();
            let mut push = |x: &mail_parser::Addr<'_>| {
                if let Some(n) = &x.name {
                    s.push_str(n);
                    s.push(' ');
                }
                if let Some(ad) = &x.address {
                    s.push('<');
                    s.push_str(ad);
                    s.push_str("> ");
                }
            };
            match a {
                Address::List(l) => l.iter().for_each(&mut push),
                Address::Group(g) => g.iter().flat_map(|g| g.addresses.iter()).for_each(push),
            }
            s
        }
        _ => String::new(),
    }
}

/// SEARCH BODY: text in any decoded text part (or raw body when none decode).
/// Looks at no more than [`mime_limits::MAX_PARTS`] parts, [`mime_limits::MAX_DEPTH`] deep.
pub fn body_contains(msg: &Message<'_>, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    let mut budget = Budget::new();
    // An explicit stack: encapsulated messages nest, and this must not recurse.
    let mut stack = vec![(msg, 0usize)];
    while let Some((m, level)) = stack.pop() {
        for p in &m.parts {
            if !budget.enter(level) {
                return false;
            }
            match &p.body {
                PartType::Text(t) | PartType::Html(t) if contains_ci(t, &needle) => return true,
                PartType::Message(inner) if level + 1 < mime_limits::MAX_DEPTH => {
                    stack.push((inner, level + 1))
                }
                _ => {}
            }
        }
    }
    false
}

/// SEARCH TEXT: header or body.
pub fn text_contains(msg: &Message<'_>, needle: &str) -> bool {
    let raw = msg.raw_message();
    let hdr_end = msg
        .parts
        .first()
        .map_or(0, |p| p.offset_body as usize)
        .min(raw.len());
    let needle_l = needle.to_lowercase();
    contains_ci(&String::from_utf8_lossy(&raw[..hdr_end]), &needle_l)
        || msg.parts.first().is_some_and(|r| {
            r.headers
                .iter()
                .any(|h| contains_ci(&decoded(&h.value), &needle_l))
        })
        || body_contains(msg, needle)
}

/// The Date: header as unix seconds.
pub fn sent_date(msg: &Message<'_>) -> Option<i64> {
    msg.date().map(|d| d.to_timestamp())
}

/// Fuzzing entry (fuzz/ `mime_walk`): every MIME walk IMAP does, on `data` as a
/// stored message. Must never panic nor recurse without bound.
#[doc(hidden)]
pub fn fuzz_walk(data: &[u8]) {
    let mut out = Vec::new();
    if let Some(msg) = parse(data) {
        body_structure(&mut out, &msg, true);
        body_structure(&mut out, &msg, false);
        envelope(&mut out, &msg);
        let _ = text_contains(&msg, "zolder");
        let _ = header_contains(&msg, "subject", "x");
    }
    for parts in [vec![1], vec![1, 1], vec![2, 1, 1], vec![1; 120]] {
        for text in [None, Some(SectionText::Mime), Some(SectionText::Header)] {
            let _ = section(
                data,
                &Section {
                    parts: parts.clone(),
                    text,
                },
            );
        }
    }
}

/// The day the Date: header names, in its own zone, as unix seconds of 00:00 UTC
/// of that date (SEARCH SENT*: RFC 3501 §6.4.4 ignores the time and the zone).
pub fn sent_day(msg: &Message<'_>) -> Option<i64> {
    let d = msg.date()?;
    let day = mail_parser::DateTime {
        year: d.year,
        month: d.month,
        day: d.day,
        hour: 0,
        minute: 0,
        second: 0,
        tz_before_gmt: false,
        tz_hour: 0,
        tz_minute: 0,
    };
    Some(day.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"From: \"Bouke de Vries\" <bouke@zolder.thuis>\r\n\
To: sjoerd@zolder.thuis, \"An\" <an@example.nl>\r\n\
Subject: =?ISO-8859-1?Q?caf=E9?= plans\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0100\r\n\
Message-ID: <abc@zolder.thuis>\r\n\
\r\n\
Hello\r\nthere\r\n";

    const MULTI: &[u8] = b"From: a@b.c\r\n\
Subject: multi\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
part one\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@x.y\r\n\
Subject: inner\r\n\
Content-Type: multipart/alternative; boundary=YY\r\n\
\r\n\
--YY\r\n\
Content-Type: text/plain\r\n\
\r\n\
inner plain\r\n\
--YY\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>inner</p>\r\n\
--YY--\r\n\
\r\n\
--XX\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--XX--\r\n";

    fn env(raw: &[u8]) -> String {
        let m = parse(raw).unwrap();
        let mut o = Vec::new();
        envelope(&mut o, &m);
        String::from_utf8(o).unwrap()
    }

    fn bs(raw: &[u8], ext: bool) -> String {
        let m = parse(raw).unwrap();
        let mut o = Vec::new();
        body_structure(&mut o, &m, ext);
        String::from_utf8(o).unwrap()
    }

    fn sec(raw: &[u8], parts: &[u32], text: Option<SectionText>) -> Option<String> {
        section(
            raw,
            &Section {
                parts: parts.to_vec(),
                text,
            },
        )
        .map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    #[test]
    fn envelope_golden() {
        assert_eq!(
            env(SIMPLE),
            "(\"Tue, 5 Mar 2024 10:00:00 +0100\" \"=?ISO-8859-1?Q?caf=E9?= plans\" \
((\"Bouke de Vries\" NIL \"bouke\" \"zolder.thuis\")) \
((\"Bouke de Vries\" NIL \"bouke\" \"zolder.thuis\")) \
((\"Bouke de Vries\" NIL \"bouke\" \"zolder.thuis\")) \
((NIL NIL \"sjoerd\" \"zolder.thuis\")(\"An\" NIL \"an\" \"example.nl\")) \
NIL NIL NIL \"<abc@zolder.thuis>\")"
        );
    }

    #[test]
    fn bodystructure_simple() {
        assert_eq!(
            bs(SIMPLE, false),
            "(\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 14 2)"
        );
        assert_eq!(
            bs(SIMPLE, true),
            "(\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 14 2 NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn bodystructure_multipart_with_message() {
        assert_eq!(
            bs(MULTI, false),
            "((\"TEXT\" \"PLAIN\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 8 1)\
(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 187 \
(NIL \"inner\" ((NIL NIL \"inner\" \"x.y\")) ((NIL NIL \"inner\" \"x.y\")) ((NIL NIL \"inner\" \"x.y\")) NIL NIL NIL NIL NIL) \
((\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 1)(\"TEXT\" \"HTML\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 12 1) \"ALTERNATIVE\") 13)\
(\"APPLICATION\" \"PDF\" (\"name\" \"a.pdf\") NIL NIL \"BASE64\" 8) \"MIXED\")"
        );
        let ext = bs(MULTI, true);
        assert!(
            ext.contains("(\"attachment\" (\"filename\" \"a.pdf\"))"),
            "{ext}"
        );
        assert!(
            ext.ends_with("\"MIXED\" (\"boundary\" \"XX\") NIL NIL NIL)"),
            "{ext}"
        );
    }

    #[test]
    fn sections() {
        assert_eq!(sec(SIMPLE, &[1], None).unwrap(), "Hello\r\nthere\r\n");
        assert_eq!(
            sec(SIMPLE, &[], Some(SectionText::Text)).unwrap(),
            "Hello\r\nthere\r\n"
        );
        assert!(
            sec(SIMPLE, &[], Some(SectionText::Header))
                .unwrap()
                .ends_with("thuis>\r\n\r\n")
        );
        assert_eq!(
            sec(
                SIMPLE,
                &[],
                Some(SectionText::HeaderFields(vec![
                    "subject".into(),
                    "X-None".into()
                ]))
            )
            .unwrap(),
            "Subject: =?ISO-8859-1?Q?caf=E9?= plans\r\n\r\n"
        );
        assert_eq!(sec(SIMPLE, &[2], None), None);
        assert_eq!(sec(MULTI, &[1], None).unwrap(), "part one");
        assert_eq!(
            sec(MULTI, &[1], Some(SectionText::Mime)).unwrap(),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(sec(MULTI, &[2, 1], None).unwrap(), "inner plain");
        assert_eq!(sec(MULTI, &[2, 2], None).unwrap(), "<p>inner</p>");
        assert_eq!(
            sec(
                MULTI,
                &[2],
                Some(SectionText::HeaderFields(vec!["Subject".into()]))
            )
            .unwrap(),
            "Subject: inner\r\n\r\n"
        );
        assert!(
            sec(MULTI, &[2], None)
                .unwrap()
                .starts_with("From: inner@x.y\r\n")
        );
        assert_eq!(sec(MULTI, &[3], None).unwrap(), "JVBERi0=");
        assert_eq!(sec(MULTI, &[4], None), None);
        assert_eq!(
            sec(
                MULTI,
                &[],
                Some(SectionText::HeaderFieldsNot(vec![
                    "From".into(),
                    "Subject".into(),
                    "MIME-Version".into()
                ]))
            )
            .unwrap(),
            "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
        );
    }

    #[test]
    fn header_ends() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_end(b"A: b\n\nbody"), 6);
        assert_eq!(header_end(b"A: b\r\n"), 6);
        assert_eq!(header_end(b"\r\nbody"), 2);
        assert_eq!(header_end(b""), 0);
    }

    #[test]
    fn text_search() {
        let m = parse(SIMPLE).unwrap();
        assert!(header_contains(&m, "subject", "CAFÉ"));
        assert!(header_contains(&m, "From", "de vries"));
        assert!(header_contains(&m, "To", "an@example"));
        assert!(!header_contains(&m, "Cc", ""));
        assert!(body_contains(&m, "THERE"));
        assert!(!body_contains(&m, "bouke"));
        assert!(text_contains(&m, "bouke"));
        let m = parse(MULTI).unwrap();
        assert!(body_contains(&m, "inner plain"));
        assert_eq!(sent_date(&parse(SIMPLE).unwrap()), Some(1709629200));
    }

    fn deep_multipart(depth: usize) -> Vec<u8> {
        let mut m = b"From: a@b.c\r\nSubject: deep\r\n".to_vec();
        for d in 0..depth {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{d}\"\r\n\r\n--b{d}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nneedle at the bottom\r\n");
        for d in (0..depth).rev() {
            m.extend_from_slice(format!("--b{d}--\r\n").as_bytes());
        }
        m
    }

    /// Runs `f` on a thread with a tokio worker's default stack (2 MiB).
    fn on_worker_sized_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .expect("walk overflowed or panicked");
    }

    #[test]
    fn deep_multipart_is_cut_to_an_opaque_leaf() {
        on_worker_sized_stack(|| {
            let raw = deep_multipart(20_000);
            let msg = parse(&raw).unwrap();
            let mut out = Vec::new();
            body_structure(&mut out, &msg, true);
            let opens = out.iter().filter(|&&b| b == b'(').count();
            assert!(opens < 20 * mime_limits::MAX_DEPTH, "{opens} parens");
            assert!(
                out.windows(14).any(|w| w == b"\"OCTET-STREAM\""),
                "the cut is an opaque leaf"
            );
            let sec = Section {
                parts: vec![1, 1, 1],
                text: None,
            };
            assert!(section(&raw, &sec).is_some());
            let deep = Section {
                parts: vec![1; 20_001],
                text: None,
            };
            assert!(section(&raw, &deep).is_none());
            // SEARCH is bounded too (the needle lies past the depth limit).
            let _ = text_contains(&msg, "needle");
        });
    }

    #[test]
    fn deep_rfc822_chain_is_bounded() {
        on_worker_sized_stack(|| {
            let mut raw = Vec::new();
            for _ in 0..100_000 {
                raw.extend_from_slice(b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
            }
            raw.extend_from_slice(b"Subject: bottom\r\n\r\nbottom\r\n");
            let msg = parse(&raw).unwrap();
            let mut out = Vec::new();
            body_structure(&mut out, &msg, true);
            assert!(out.starts_with(b"(\"MESSAGE\" \"RFC822\"") || out.starts_with(b"(\"TEXT\""));
            let _ = body_contains(&msg, "bottom");
            let sec = Section {
                parts: vec![1, 1, 1],
                text: None,
            };
            let _ = section(&raw, &sec);
        });
    }
}
