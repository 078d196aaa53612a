//! `GET /compose` (also `?reply={mailbox}/{uid}` and `?forward={mailbox}/{uid}`) and
//! `POST /send`, which hands the message to the queue the way SMTP submission does and
//! files a copy in Sent.
//!
//! # Format
//! `POST /send` is `multipart/form-data` with `csrf`, `to`, `cc`, `bcc`, `subject`,
//! `body`, any number of `attachment` files, and the hidden `in_reply_to`,
//! `references` and `forward` (the original, attached as `message/rfc822`).
//!
//! # Security
//! Only a signed-in user sends, as an authenticated SMTP client would: recipients go
//! through submission's relay control (`submit::policy::check_rcpt` with relaying
//! allowed, so routing tricks and unknown local users are refused as over SMTP), the
//! envelope sender and `From:` are the user's own first address, and the content check
//! SMTP runs before `250` runs here too. The request body is bounded by
//! `limits.message_size` (plus form overhead) and the built message by
//! `limits.message_size` itself.

use axum::extract::ConnectInfo;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use maud::html;
use serde::Deserialize;
use tracing::{info, warn};

use super::session::User;
use super::templates::{self, csrf};
use super::{AppState, Conn, WebError, sanitize};
use crate::submit::policy::{self, RcptDecision};

/// Recipients one message may have (To + Cc + Bcc).
const MAX_RCPTS: usize = 100;
/// Form fields read at most.
const MAX_FIELDS: usize = 200;

/// What the compose form shows (and shows again after a refused send).
#[derive(Debug, Default, Clone)]
pub struct Draft {
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    pub body: String,
    pub in_reply_to: String,
    pub references: String,
    pub forward: String,
}

#[derive(Deserialize, Default)]
pub struct ComposeQuery {
    #[serde(default)]
    reply: Option<String>,
    #[serde(default)]
    forward: Option<String>,
}

/// Splits `mailbox/uid` (the mailbox may hold `/`-free dots only).
fn split_ref(r: &str) -> Option<(String, u32)> {
    let (mb, uid) = r.rsplit_once('/')?;
    Some((mb.to_string(), uid.parse().ok()?))
}

fn form_page(user: &User, d: &Draft, error: Option<&str>) -> maud::Markup {
    templates::page(
        "Compose",
        Some(user),
        html! {
            main {
                section.content.compose {
                    h1 { "New message" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/send" enctype="multipart/form-data" {
                        (csrf(user))
                        input type="hidden" name="in_reply_to" value=(d.in_reply_to);
                        input type="hidden" name="references" value=(d.references);
                        input type="hidden" name="forward" value=(d.forward);
                        label { "To " input type="text" name="to" value=(d.to) required; }
                        label { "Cc " input type="text" name="cc" value=(d.cc); }
                        label { "Bcc " input type="text" name="bcc" value=(d.bcc); }
                        label { "Subject " input type="text" name="subject" value=(d.subject); }
                        label { "Message " textarea name="body" rows="16" { (d.body) } }
                        @if !d.forward.is_empty() { p { "The original message is attached." } }
                        label { "Attachments " input type="file" name="attachment" multiple; }
                        button type="submit" { "Send" }
                    }
                }
            }
        },
    )
}

/// A draft replying to (or forwarding) a stored message.
pub fn draft_from(raw: &[u8], forward: bool, reference: &str) -> Draft {
    let p = mail_parser::MessageParser::default().parse_headers(raw);
    let r = sanitize::render(raw, false, &|_| String::new());
    let subject = r.subject.clone();
    let prefixed = |pre: &str| {
        let lower = subject.to_ascii_lowercase();
        if lower.starts_with(&pre.to_ascii_lowercase()) {
            subject.clone()
        } else {
            format!("{pre} {subject}")
        }
    };
    if forward {
        return Draft {
            subject: prefixed("Fwd:"),
            forward: reference.to_string(),
            ..Draft::default()
        };
    }
    let to = p
        .as_ref()
        .and_then(|p| {
            sanitize::first_address(p.reply_to()).or_else(|| sanitize::first_address(p.from()))
        })
        .unwrap_or_default();
    let mut body = format!("\n\nOn {}, {} wrote:\n", r.date, r.from);
    for line in r.text.lines().take(2000) {
        body.push_str("> ");
        body.push_str(line);
        body.push('\n');
    }
    let mid = r
        .message_id
        .as_ref()
        .map(|m| format!("<{m}>"))
        .unwrap_or_default();
    let mut refs: Vec<String> = r.references.iter().map(|x| format!("<{x}>")).collect();
    if !mid.is_empty() {
        refs.push(mid.clone());
    }
    Draft {
        to,
        subject: prefixed("Re:"),
        body,
        in_reply_to: mid,
        references: refs.join(" "),
        ..Draft::default()
    }
}

/// `GET /compose`
pub async fn form(
    State(app): State<AppState>,
    user: User,
    Query(q): Query<ComposeQuery>,
) -> Result<Response, WebError> {
    let (reference, forward) = match (&q.reply, &q.forward) {
        (Some(r), _) => (r.clone(), false),
        (None, Some(f)) => (f.clone(), true),
        _ => return Ok(form_page(&user, &Draft::default(), None).into_response()),
    };
    let (mb, uid) = split_ref(&reference).ok_or(WebError::NotFound)?;
    let u = user.name.clone();
    let raw = app
        .store(move |b| super::mail::read_one(b, &u, &mb, uid))
        .await?
        .ok_or(WebError::NotFound)?;
    let d = draft_from(&raw, forward, &reference);
    Ok(form_page(&user, &d, None).into_response())
}

/// Addresses of a To/Cc/Bcc field: (display name, address), parsed as a header is.
pub fn parse_addresses(field: &str) -> Result<Vec<(Option<String>, String)>, String> {
    let field = field.replace(['\r', '\n'], " ");
    if field.trim().is_empty() {
        return Ok(Vec::new());
    }
    let hdr = format!("To: {field}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(hdr.as_bytes())
        .ok_or_else(|| format!("cannot read the addresses `{field}`"))?;
    let mut out = Vec::new();
    if let Some(a) = parsed.to() {
        for x in a.iter().take(MAX_RCPTS + 1) {
            match x.address() {
                Some(e) if e.contains('@') => {
                    out.push((x.name().map(str::to_string), e.to_string()))
                }
                _ => {
                    return Err(format!(
                        "`{}` is not a mail address",
                        x.name().unwrap_or("")
                    ));
                }
            }
        }
    }
    if out.is_empty() {
        return Err(format!("`{field}` holds no mail address"));
    }
    Ok(out)
}

/// What `POST /send` read from the form.
#[derive(Default)]
struct SendForm {
    csrf: String,
    draft: Draft,
    attachments: Vec<(String, String, Vec<u8>)>,
}

async fn read_form(mut mp: Multipart) -> Result<SendForm, WebError> {
    let mut f = SendForm::default();
    let mut n = 0;
    let too_large = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::TooLarge
        } else {
            WebError::BadRequest(format!("form: {e}"))
        }
    };
    while let Some(field) = mp.next_field().await.map_err(too_large)? {
        n += 1;
        if n > MAX_FIELDS {
            return Err(WebError::BadRequest("too many form fields".into()));
        }
        let name = field.name().unwrap_or("").to_string();
        if name == "attachment" {
            let fname = field.file_name().unwrap_or("").to_string();
            let ct = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            let data = field.bytes().await.map_err(too_large)?;
            if !fname.is_empty() || !data.is_empty() {
                let fname = if fname.is_empty() {
                    "attachment".into()
                } else {
                    fname
                };
                f.attachments.push((fname, ct, data.to_vec()));
            }
            continue;
        }
        let text = field.text().await.map_err(too_large)?;
        let d = &mut f.draft;
        match name.as_str() {
            "csrf" => f.csrf = text,
            "to" => d.to = text,
            "cc" => d.cc = text,
            "bcc" => d.bcc = text,
            "subject" => d.subject = text.replace(['\r', '\n'], " "),
            "body" => d.body = text,
            "in_reply_to" => d.in_reply_to = text.replace(['\r', '\n'], " "),
            "references" => d.references = text.replace(['\r', '\n'], " "),
            "forward" => d.forward = text,
            _ => {}
        }
    }
    Ok(f)
}

/// The user's sending address: the first configured one, else `user@hostname`.
pub fn sender_of(cfg: &crate::config::Config, user: &str) -> String {
    cfg.user(user)
        .and_then(|u| u.addresses.first().cloned())
        .unwrap_or_else(|| format!("{user}@{}", cfg.hostname))
}

fn ids(s: &str) -> Vec<String> {
    s.split_whitespace()
        .take(100)
        .map(|x| x.trim_matches(|c| c == '<' || c == '>').to_string())
        .filter(|x| !x.is_empty() && x.contains('@'))
        .collect()
}

/// `POST /send`
pub async fn send(
    State(app): State<AppState>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    user: User,
    mp: Multipart,
) -> Result<Response, WebError> {
    let f = read_form(mp).await?;
    user.check_csrf(&f.csrf)?;
    let d = f.draft.clone();
    let refuse = |msg: String| -> Result<Response, WebError> {
        Ok((StatusCode::BAD_REQUEST, form_page(&user, &d, Some(&msg))).into_response())
    };
    let cfg = app.svc.config.clone();

    // 1. Recipients, through submission's relay control.
    let mut lists = Vec::new();
    for field in [&d.to, &d.cc, &d.bcc] {
        match parse_addresses(field) {
            Ok(v) => lists.push(v),
            Err(e) => return refuse(e),
        }
    }
    let envelope: Vec<String> = lists.iter().flatten().map(|(_, a)| a.clone()).collect();
    if envelope.is_empty() {
        return refuse("Who is it for? The To field is empty.".into());
    }
    if envelope.len() > MAX_RCPTS {
        return refuse(format!("At most {MAX_RCPTS} recipients, please."));
    }
    for a in &envelope {
        if let RcptDecision::Reject(r) = policy::check_rcpt(&cfg, a, true) {
            return refuse(format!("{a}: {}", r.lines.join(" ")));
        }
    }

    // 2. The forwarded original, if any.
    let mut forwarded = None;
    if let Some((mb, uid)) = split_ref(&d.forward) {
        let u = user.name.clone();
        forwarded = app
            .store(move |b| super::mail::read_one(b, &u, &mb, uid))
            .await?;
    }

    // 3. The message.
    let id = crate::queue::new_id();
    let sender = sender_of(&cfg, &user.name);
    let addr = |v: &[(Option<String>, String)]| -> MbAddress<'static> {
        MbAddress::new_list(
            v.iter()
                .map(|(n, a)| MbAddress::new_address(n.clone(), a.clone()))
                .collect(),
        )
    };
    let mut mb = MessageBuilder::new()
        .from(MbAddress::new_address(None::<String>, sender.clone()))
        .message_id(format!("{id}@{}", cfg.hostname))
        .subject(d.subject.clone())
        .text_body(d.body.replace("\r\n", "\n").replace('\n', "\r\n"));
    if !lists[0].is_empty() {
        mb = mb.to(addr(&lists[0]));
    }
    if !lists[1].is_empty() {
        mb = mb.cc(addr(&lists[1]));
    }
    let irt = ids(&d.in_reply_to);
    if !irt.is_empty() {
        mb = mb.in_reply_to(irt);
    }
    let refs = ids(&d.references);
    if !refs.is_empty() {
        mb = mb.references(refs);
    }
    for (name, ct, data) in f.attachments {
        mb = mb.attachment(ct, name, data);
    }
    if let Some(orig) = forwarded {
        mb = mb.attachment("message/rfc822", "forwarded.eml", orig);
    }
    let built = mb
        .write_to_vec()
        .map_err(|e| WebError::Internal(format!("building the message: {e}")))?;
    let received = format!(
        "Received: from [{}] by {} (zolder) with {} id {}\r\n\tfor <{}>;\r\n\t{}\r\n",
        conn.peer.ip(),
        cfg.hostname,
        if conn.tls { "HTTPS" } else { "HTTP" },
        id,
        user.name,
        crate::queue::rfc2822_now()
    );
    let mut bytes = received.into_bytes();
    bytes.extend_from_slice(&crate::queue::complete_headers(built, &cfg.hostname, &id));
    if bytes.len() as u64 > cfg.limits.message_size {
        return Err(WebError::TooLarge);
    }

    // 4. The content check SMTP runs before answering DATA.
    if let Some(check) = &app.svc.check {
        let env = crate::message::Envelope::new(
            Some(sender.clone()),
            envelope.clone(),
            crate::message::Source::Submit {
                peer: conn.peer,
                helo: "webmail".into(),
                auth_user: Some(user.name.clone()),
                tls: conn.tls,
            },
        );
        match check.check(&bytes, &env).await {
            crate::submit::DataVerdict::Accept => {}
            crate::submit::DataVerdict::Reject(_, t) | crate::submit::DataVerdict::TempFail(t) => {
                return refuse(format!("Not sent: {t}"));
            }
        }
    }

    // 5. Queue it (durable before we say so), then the copy in Sent.
    let m = crate::queue::NewMessage {
        id: Some(id),
        sender: Some(sender),
        recipients: envelope
            .into_iter()
            .map(crate::queue::NewRcpt::plain)
            .collect(),
        bytes: bytes.clone(),
        source: format!("web:{}", conn.peer),
        envid: None,
        ret: None,
        auth_user: Some(user.name.clone()),
    };
    let qid = match app.svc.queue.enqueue(m).await {
        Ok(q) => q,
        Err(e) => {
            warn!(user = %user.name, error = %e, "web: cannot queue message");
            return refuse("Not sent: the queue cannot take it now; try again later.".into());
        }
    };
    info!(user = %user.name, queue_id = %qid, "web: queued");
    let u = user.name.clone();
    let saved = app
        .store(move |b| {
            let sent = super::actions::special(b, &u, "\\Sent", "Sent");
            b.append(&u, &sent, bytes, "\\Seen", None)
        })
        .await;
    if let Err(e) = saved {
        warn!(user = %user.name, queue_id = %qid, error = ?e, "web: sent, but no copy in Sent");
    }
    Ok((StatusCode::SEE_OTHER, [("location", "/mail/Sent")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_fields() {
        assert_eq!(
            parse_addresses("Anna Berg <anna@example.org>, bob@example.net").unwrap(),
            vec![
                (Some("Anna Berg".into()), "anna@example.org".into()),
                (None, "bob@example.net".into())
            ]
        );
        assert_eq!(
            parse_addresses("\"Berg, Anna\" <anna@example.org>").unwrap(),
            vec![(Some("Berg, Anna".into()), "anna@example.org".into())]
        );
        assert!(parse_addresses("  ").unwrap().is_empty());
        assert!(parse_addresses("not an address").is_err());
    }

    #[test]
    fn reply_and_forward_drafts() {
        let m = b"From: Anna <anna@example.org>\r\nReply-To: lijst@example.org\r\n\
Subject: Etentje\r\nMessage-ID: <m1@example.org>\r\nReferences: <m0@example.org>\r\n\
Date: Mon, 5 Jan 2026 10:00:00 +0100\r\n\r\nZaterdag?\r\nGroet\r\n";
        let d = draft_from(m, false, "INBOX/4");
        assert_eq!(d.to, "lijst@example.org");
        assert_eq!(d.subject, "Re: Etentje");
        assert!(d.body.contains("> Zaterdag?\n> Groet\n"), "{}", d.body);
        assert_eq!(d.in_reply_to, "<m1@example.org>");
        assert_eq!(d.references, "<m0@example.org> <m1@example.org>");
        let f = draft_from(m, true, "INBOX/4");
        assert_eq!(
            (f.subject.as_str(), f.forward.as_str()),
            ("Fwd: Etentje", "INBOX/4")
        );
        assert_eq!(
            split_ref("Family.Kids/12"),
            Some(("Family.Kids".into(), 12))
        );
        assert_eq!(split_ref("INBOX"), None);
    }
}
