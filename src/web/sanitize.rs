//! A message as the webmail shows it: its header fields, its text or its HTML
//! sanitised by ammonia, and its attachments — from one bounded walk over the parts
//! mail-parser found.
//!
//! # Security
//! Strangers write these messages. The walk looks at at most [`MAX_PARTS`] parts and
//! never descends into an attached message (`message/rfc822` is listed as an `.eml`
//! attachment), so its depth is one; mail-parser itself keeps multipart nesting on a
//! heap stack and decodes nested messages at most three deep. A message past the
//! bound is shown as plain text (its first [`MAX_TEXT`] bytes), never lost.
//!
//! HTML keeps ammonia's default allow-list (no `<script>`, `<style>`, `<form>`,
//! `<input>`, event handlers, `style` attributes — so no CSS `url()` — nor
//! `javascript:`/`data:` URLs); links get `rel="noopener noreferrer"`. Images: `cid:`
//! references point at the message's own parts; remote (`http:`, `https:`) sources are
//! removed and counted unless the user asked to load them for this message; relative
//! URLs are dropped except the rewritten part links.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// Parts looked at, at most.
pub const MAX_PARTS: usize = 10_000;
/// How far an attached message chain is followed by this walk (it is not: attached
/// messages are attachments). Kept as a named bound for the reader.
pub const MAX_DEPTH: usize = 1;
/// Text shown at most (bytes).
pub const MAX_TEXT: usize = 2 * 1024 * 1024;

/// One attachment as listed on the message page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The part's index in mail-parser's part list (the download URL's `{part}`).
    pub id: u32,
    pub name: String,
    pub content_type: String,
    pub size: usize,
}

/// What the message page shows.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub from: String,
    pub to: String,
    pub cc: String,
    pub subject: String,
    pub date: String,
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub reply_to: String,
    /// Sanitised HTML, when the message has an HTML body.
    pub html: Option<String>,
    /// The text body (or the HTML body's text when there is no text part).
    pub text: String,
    /// Remote images removed (shown: "load remote images").
    pub blocked_images: usize,
    pub attachments: Vec<Attachment>,
    /// The message was past the bounds (or did not parse): shown as raw text.
    pub opaque: bool,
}

/// Parses `raw` (bounded) and prepares it for the page. `part_url(id)` is the link
/// to part `id` (for `cid:` images).
pub fn render(raw: &[u8], allow_remote: bool, part_url: &dyn Fn(u32) -> String) -> Rendered {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return opaque(raw);
    };
    if msg.parts.len() > MAX_PARTS {
        return opaque(raw);
    }
    let mut r = Rendered {
        from: addresses(msg.from()),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        reply_to: addresses(msg.reply_to()),
        subject: msg.subject().unwrap_or("").to_string(),
        date: msg.date().map(|d| d.to_rfc822()).unwrap_or_default(),
        message_id: msg.message_id().map(str::to_string),
        references: msg
            .references()
            .as_text_list()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        ..Rendered::default()
    };
    r.attachments = attachments(&msg);
    let text = msg
        .body_text(0)
        .map(|t| cut(t, MAX_TEXT))
        .unwrap_or_default();
    // mail-parser offers a text-only message as HTML too (converted): only a real
    // text/html part is rendered as HTML.
    let real_html = msg
        .html_part(0)
        .is_some_and(|p| matches!(p.body, PartType::Html(_)));
    if real_html && let Some(html) = msg.body_html(0) {
        let cids = content_ids(&msg);
        let (clean, blocked) = clean_html(&cut(html, MAX_TEXT), allow_remote, &|cid: &str| {
            cids.iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(cid))
                .map(|(_, id)| part_url(*id))
        });
        r.html = Some(clean);
        r.blocked_images = blocked;
    }
    r.text = text.into_owned();
    r
}

fn opaque(raw: &[u8]) -> Rendered {
    let end = raw.len().min(MAX_TEXT);
    Rendered {
        text: String::from_utf8_lossy(&raw[..end]).into_owned(),
        opaque: true,
        subject: "(message not shown in parts)".into(),
        ..Rendered::default()
    }
}

fn cut(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(s[..end].to_string())
}

/// "Name <addr>, addr2".
pub fn addresses(a: Option<&mail_parser::Address<'_>>) -> String {
    let Some(a) = a else { return String::new() };
    a.iter()
        .take(200)
        .map(|x| match (x.name(), x.address()) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first address of a field (for a reply's To).
pub fn first_address(a: Option<&mail_parser::Address<'_>>) -> Option<String> {
    a?.iter().find_map(|x| x.address().map(str::to_string))
}

/// The attachments (bounded by [`MAX_PARTS`] via the caller).
fn attachments(msg: &Message<'_>) -> Vec<Attachment> {
    msg.attachments
        .iter()
        .take(MAX_PARTS)
        .filter_map(|&id| {
            let p = msg.parts.get(id as usize)?;
            let ct = p
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s),
                    None => c.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            let name = p
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| match &p.body {
                    PartType::Message(m) => {
                        format!("{}.eml", m.subject().unwrap_or("message"))
                    }
                    _ => format!("part-{id}"),
                });
            Some(Attachment {
                id,
                name,
                content_type: ct,
                size: p.contents().len(),
            })
        })
        .collect()
}

/// (Content-ID without brackets, part id) of every part that has one.
fn content_ids(msg: &Message<'_>) -> Vec<(String, u32)> {
    msg.parts
        .iter()
        .enumerate()
        .take(MAX_PARTS)
        .filter_map(|(i, p)| {
            let cid = p.content_id()?;
            Some((
                cid.trim_matches(|c| c == '<' || c == '>').to_string(),
                i as u32,
            ))
        })
        .collect()
}

/// The bytes and type of a part that may be downloaded: an attachment, or an inline
/// part some `cid:` points at. `None` for any other part number.
pub fn part(raw: &[u8], id: u32) -> Option<(Vec<u8>, String, String)> {
    let msg = MessageParser::default().parse(raw)?;
    if msg.parts.len() > MAX_PARTS {
        return None;
    }
    let listed = attachments(&msg).into_iter().find(|a| a.id == id);
    let att = match listed {
        Some(a) => a,
        None => {
            let p = msg.parts.get(id as usize)?;
            p.content_id()?;
            if matches!(p.body, PartType::Multipart(_)) {
                return None;
            }
            let ct = p
                .content_type()
                .and_then(|c| c.subtype().map(|s| format!("{}/{}", c.ctype(), s)))
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            Attachment {
                id,
                name: p.attachment_name().unwrap_or("inline").to_string(),
                content_type: ct,
                size: 0,
            }
        }
    };
    let p = msg.parts.get(id as usize)?;
    Some((p.contents().to_vec(), att.name, att.content_type))
}

/// Relative URLs: only the part links [`clean_html`] wrote survive.
fn own_part_links(u: &str) -> Option<Cow<'_, str>> {
    (u.starts_with("/mail/") && u.contains("/part/")).then_some(Cow::Borrowed(u))
}

/// Runs ammonia over mail HTML; returns the clean HTML and how many remote images
/// were removed. `cid` maps a Content-ID to the URL of its part.
pub fn clean_html(
    html: &str,
    allow_remote: bool,
    cid: &dyn Fn(&str) -> Option<String>,
) -> (String, usize) {
    let blocked = Arc::new(AtomicUsize::new(0));
    // Resolved here (the filter must be 'static): every cid the HTML names.
    let mut cid_urls: Vec<(String, String)> = Vec::new();
    for piece in html.split("cid:").skip(1).take(MAX_PARTS) {
        let id: String = piece
            .chars()
            .take_while(|c| !matches!(c, '"' | '\'' | ' ' | '>' | ')'))
            .take(200)
            .collect();
        if let Some(u) = cid(&id) {
            cid_urls.push((id, u));
        }
    }
    let counter = blocked.clone();
    let schemes: HashSet<&str> = ["http", "https", "mailto", "cid"].into_iter().collect();
    let mut b = ammonia::Builder::default();
    b.url_schemes(schemes)
        .url_relative(ammonia::UrlRelative::Custom(Box::new(own_part_links)))
        .attribute_filter(move |element, attribute, value| {
            let lower = value.trim().to_ascii_lowercase();
            if lower.starts_with("cid:") {
                if element != "img" || attribute != "src" {
                    return None;
                }
                let id = &value.trim()[4..];
                return cid_urls
                    .iter()
                    .find(|(c, _)| c.eq_ignore_ascii_case(id))
                    .map(|(_, u)| Cow::Owned(u.clone()));
            }
            if element == "img" && attribute == "src" {
                let remote = lower.starts_with("http:")
                    || lower.starts_with("https:")
                    || lower.starts_with("//");
                if remote && !allow_remote {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
            Some(Cow::Borrowed(value))
        });
    let clean = b.clean(html).to_string();
    (clean, blocked.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = r#"<html><head><style>body{background:url(http://evil.example/bg.png)}</style>
<script>alert(1)</script></head><body onload="steal()">
<p style="background:url('http://evil.example/t.gif')">Hello <b>Anna</b></p>
<img src="http://evil.example/pixel.gif" onerror="alert(2)">
<img src="cid:logo@x">
<form action="http://evil.example/phish"><input name="pw"><button>Go</button></form>
<a href="javascript:alert(3)">js</a> <a href="https://ok.example/">ok</a>
<iframe src="http://evil.example/"></iframe>
<img src="data:image/png;base64,AAAA"> <a href="/logout">rel</a>
</body></html>"#;

    fn clean(allow: bool) -> (String, usize) {
        clean_html(HOSTILE, allow, &|c| {
            (c == "logo@x").then(|| "/mail/INBOX/7/part/3".to_string())
        })
    }

    #[test]
    fn hostile_html_is_defused() {
        let (h, blocked) = clean(false);
        for bad in [
            "<script",
            "alert(1)",
            "onload",
            "onerror",
            "<style",
            "url(",
            "<form",
            "<input",
            "javascript:",
            "<iframe",
            "evil.example",
            "data:",
            "/logout",
        ] {
            assert!(!h.contains(bad), "{bad} survived in {h}");
        }
        assert!(h.contains("Hello <b>Anna</b>"), "{h}");
        assert!(h.contains(r#"src="/mail/INBOX/7/part/3""#), "{h}");
        assert!(h.contains(r#"href="https://ok.example/""#), "{h}");
        assert!(h.contains("noopener"), "{h}");
        assert_eq!(blocked, 1);
    }

    #[test]
    fn remote_images_after_a_click() {
        let (h, blocked) = clean(true);
        assert_eq!(blocked, 0);
        assert!(h.contains(r#"src="http://evil.example/pixel.gif""#), "{h}");
        assert!(!h.contains("onerror") && !h.contains("<script"), "{h}");
    }

    #[test]
    fn rendering_lists_attachments_and_bounds_parts() {
        let m = b"From: Anna <anna@example.org>\r\nTo: bouke@zolder.test\r\nSubject: Foto\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nZie bijlage\r\n--b\r\nContent-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"plan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
JVBERi0=\r\n--b--\r\n";
        let r = render(m, false, &|i| format!("/p/{i}"));
        assert_eq!(r.from, "Anna <anna@example.org>");
        assert_eq!(r.subject, "Foto");
        assert!(r.text.contains("Zie bijlage"));
        assert_eq!(r.attachments.len(), 1);
        assert_eq!(r.attachments[0].name, "plan.pdf");
        assert_eq!(r.attachments[0].content_type, "application/pdf");
        let (bytes, name, _) = part(m, r.attachments[0].id).unwrap();
        assert_eq!(
            (bytes.as_slice(), name.as_str()),
            (b"%PDF-".as_slice(), "plan.pdf")
        );
        // A part that is neither an attachment nor a cid target is not served.
        assert!(part(m, 1).is_none());

        // Many parts: past the bound, shown as text, not walked.
        let mut big = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n".to_vec();
        for _ in 0..MAX_PARTS + 5 {
            big.extend_from_slice(b"--x\r\nContent-Type: text/plain\r\n\r\na\r\n");
        }
        big.extend_from_slice(b"--x--\r\n");
        let r = render(&big, false, &|i| format!("/p/{i}"));
        assert!(r.opaque && r.attachments.is_empty());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // 5000 nested multiparts: parsed without recursion, walked flat.
        let mut m = Vec::new();
        for i in 0..5000 {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        let r = render(&m, false, &|i| format!("/p/{i}"));
        // Parsed without overflowing the stack, the innermost part still reachable.
        assert!(
            r.opaque || r.text.contains("deep") || r.attachments.iter().any(|a| a.size == 6),
            "{r:?}"
        );
    }
}
