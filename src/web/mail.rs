//! The folder page (`GET /mail/{mailbox}`: newest first, paged with `?page=N`,
//! searched with `?q=` through imapd's SEARCH engine), the message page
//! (`GET /mail/{mailbox}/{uid}`, which marks it `\Seen`), attachment downloads and the
//! raw message.

use axum::extract::ConnectInfo;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::sanitize;
use super::session::User;
use super::templates::{self, csrf};
use super::{AppState, Conn, WebError, seg};
use crate::imapd::backend::{Backend, MailboxInfo};
use crate::imapd::proto::{SearchKey, StoreMode};

/// Search words used at most, and their length.
const MAX_WORDS: usize = 10;
const MAX_WORD: usize = 200;

/// The IMAP search program for a search box: every word (up to [`MAX_WORDS`]) must
/// occur in the header or body text (IMAP `TEXT w1 TEXT w2 …`).
pub fn search_key(q: &str) -> Option<SearchKey> {
    let words: Vec<SearchKey> = q
        .split_whitespace()
        .take(MAX_WORDS)
        .map(|w| SearchKey::Text(w.chars().take(MAX_WORD).collect()))
        .collect();
    (!words.is_empty()).then_some(SearchKey::And(words))
}

#[derive(Deserialize, Default)]
pub struct FolderQuery {
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    q: Option<String>,
}

/// One row of the folder page.
struct Row {
    uid: u32,
    from: String,
    subject: String,
    date: i64,
    size: u64,
    flags: String,
}

/// The folder list of the side bar (with unseen counts).
pub fn folders(b: &dyn Backend, user: &str) -> Result<Vec<(MailboxInfo, u32)>, WebError> {
    let mut out = Vec::new();
    for m in b.list(user)? {
        let unseen = b.status(user, &m.name).map(|s| s.unseen).unwrap_or(0);
        out.push((m, unseen));
    }
    // INBOX first, then by name.
    out.sort_by(|a, b| {
        (a.0.name != "INBOX", a.0.name.to_lowercase())
            .cmp(&(b.0.name != "INBOX", b.0.name.to_lowercase()))
    });
    Ok(out)
}

pub fn sidebar(folders: &[(MailboxInfo, u32)], current: &str) -> Markup {
    html! {
        nav.folders {
            ul {
                @for (f, unseen) in folders {
                    li class=[(f.name == current).then_some("current")] {
                        a href={ "/mail/" (seg(&f.name)) } { (f.name) }
                        @if *unseen > 0 { " (" (unseen) ")" }
                    }
                }
            }
        }
    }
}

/// One message's bytes (CRLF); `None` when there is no such UID.
pub fn read_one(
    b: &dyn Backend,
    user: &str,
    mailbox: &str,
    uid: u32,
) -> Result<Option<Vec<u8>>, crate::imapd::backend::StoreError> {
    Ok(b.read_many(user, mailbox, &[uid], false)?.pop().flatten())
}

/// `GET /mail/{mailbox}`
pub async fn folder(
    State(app): State<AppState>,
    user: User,
    Path(mailbox): Path<String>,
    Query(q): Query<FolderQuery>,
) -> Result<Response, WebError> {
    let page = q.page.unwrap_or(1).max(1);
    let per = app.cfg().web.page_size.clamp(5, 500);
    let query = q.q.clone().unwrap_or_default();
    let key = search_key(&query);
    let (u, mb) = (user.name.clone(), mailbox.clone());
    let (folders, rows, total) = app
        .store(move |b| {
            let folders = folders(b, &u).map_err(|e| match e {
                WebError::Internal(t) => crate::imapd::backend::StoreError::Internal(t),
                _ => crate::imapd::backend::StoreError::NoMailbox,
            })?;
            let view = b.open_view(&u, &mb, true)?;
            let mut uids: Vec<u32> = match &key {
                Some(k) => crate::imapd::search_view(b, &u, &view, k)?,
                None => view.msgs.iter().map(|m| m.uid).collect(),
            };
            uids.reverse();
            let total = uids.len();
            let shown: Vec<u32> = uids.into_iter().skip((page - 1) * per).take(per).collect();
            let heads = b.read_many(&u, &mb, &shown, true)?;
            let mut rows = Vec::with_capacity(shown.len());
            for (uid, head) in shown.iter().zip(heads) {
                let Some(i) = view.index_of(*uid) else {
                    continue;
                };
                let m = &view.msgs[i];
                let (from, subject) = head
                    .as_deref()
                    .and_then(|h| mail_parser::MessageParser::default().parse_headers(h))
                    .map(|p| {
                        (
                            sanitize::addresses(p.from()),
                            p.subject().unwrap_or("").to_string(),
                        )
                    })
                    .unwrap_or_default();
                rows.push(Row {
                    uid: *uid,
                    from,
                    subject,
                    date: m.internal_date(),
                    size: m.size as u64,
                    flags: view.flags(m).to_string(),
                });
            }
            Ok((folders, rows, total))
        })
        .await?;
    let pages = total.div_ceil(per).max(1);
    let qs = |p: usize| {
        let mut s = format!("?page={p}");
        if !query.is_empty() {
            s.push_str("&q=");
            s.push_str(&seg(&query));
        }
        s
    };
    let base = format!("/mail/{}", seg(&mailbox));
    let body = html! {
        main {
            (sidebar(&folders, &mailbox))
            section.content {
                h1 { (mailbox) }
                form method="get" action=(base) {
                    input type="search" name="q" value=(query) placeholder="Search";
                    button type="submit" { "Search" }
                }
                @if !query.is_empty() { p { (total) " found" } }
                form method="post" action="/action" {
                    (csrf(&user))
                    input type="hidden" name="mailbox" value=(mailbox);
                    div.actions {
                        button name="op" value="read" { "Mark read" }
                        button name="op" value="unread" { "Mark unread" }
                        button name="op" value="flag" { "Flag" }
                        button name="op" value="delete" { "Delete" }
                        @if mailbox == "Junk" { button name="op" value="notjunk" { "Not junk" } }
                        @else { button name="op" value="junk" { "Junk" } }
                        (move_select(&folders, &mailbox))
                    }
                    table.messages {
                        thead { tr { th {} th { "From" } th { "Subject" } th { "Date" } th { "Size" } th { "Flags" } } }
                        tbody {
                            @for r in &rows {
                                tr class=[(!r.flags.contains("\\Seen")).then_some("unseen")] {
                                    td { input type="checkbox" name="uid" value=(r.uid) aria-label="select"; }
                                    td { (r.from) }
                                    td { a href={ (base) "/" (r.uid) } { @if r.subject.is_empty() { "(no subject)" } @else { (r.subject) } } }
                                    td { (templates::date(r.date)) }
                                    td { (templates::size(r.size)) }
                                    td { @if r.flags.contains("\\Flagged") { span.flag { "★" } } " " (r.flags) }
                                }
                            }
                        }
                    }
                }
                div.pager {
                    @if page > 1 { a href={ (base) (qs(page - 1)) } rel="prev" { "← Newer" } " " }
                    "Page " (page) " of " (pages)
                    @if page < pages { " " a href={ (base) (qs(page + 1)) } rel="next" { "Older →" } }
                }
            }
        }
    };
    Ok(templates::page(&mailbox, Some(&user), body).into_response())
}

/// The "move to" control of an action form.
pub fn move_select(folders: &[(MailboxInfo, u32)], current: &str) -> Markup {
    html! {
        select name="to" aria-label="folder" {
            @for (f, _) in folders {
                @if f.name != current { option value=(f.name) { (f.name) } }
            }
        }
        button name="op" value="move" { "Move" }
    }
}

#[derive(Deserialize, Default)]
pub struct MessageQuery {
    #[serde(default)]
    images: Option<u8>,
}

/// `GET /mail/{mailbox}/{uid}`: shows the message and marks it `\Seen`.
pub async fn message(
    State(app): State<AppState>,
    user: User,
    Path((mailbox, uid)): Path<(String, u32)>,
    Query(q): Query<MessageQuery>,
) -> Result<Response, WebError> {
    let allow = q.images == Some(1);
    let (u, mb) = (user.name.clone(), mailbox.clone());
    let base = format!("/mail/{}/{}", seg(&mailbox), uid);
    let base2 = base.clone();
    let (folders, r, flags) = app
        .store(move |b| {
            // None: no such message (expunged, or never there).
            let Some(raw) = read_one(b, &u, &mb, uid)? else {
                return Ok(None);
            };
            let ch = b.store_flags(
                &u,
                &mb,
                &[uid],
                StoreMode::Add,
                &["\\Seen".to_string()],
                None,
            )?;
            let flags = ch
                .updated
                .first()
                .map(|m| m.flags.clone())
                .unwrap_or_default();
            let r = sanitize::render(&raw, allow, &|id| format!("{base2}/part/{id}?inline=1"));
            let folders = folders(b, &u).unwrap_or_default();
            Ok(Some((folders, r, flags)))
        })
        .await?
        .ok_or(WebError::NotFound)?;
    let body = html! {
        main {
            (sidebar(&folders, &mailbox))
            section.content {
                h1 { @if r.subject.is_empty() { "(no subject)" } @else { (r.subject) } }
                table.headers {
                    tr { th { "From" } td { (r.from) } }
                    tr { th { "To" } td { (r.to) } }
                    @if !r.cc.is_empty() { tr { th { "Cc" } td { (r.cc) } } }
                    tr { th { "Date" } td { (r.date) } }
                }
                div.actions {
                    a href={ "/compose?reply=" (seg(&mailbox)) "/" (uid) } { "Reply" }
                    a href={ "/compose?forward=" (seg(&mailbox)) "/" (uid) } { "Forward" }
                    a href={ (base) "/raw" } { "Source" }
                }
                form.actions method="post" action="/action" {
                    (csrf(&user))
                    input type="hidden" name="mailbox" value=(mailbox);
                    input type="hidden" name="uid" value=(uid);
                    button name="op" value="unread" { "Mark unread" }
                    @if flags.contains("\\Flagged") { button name="op" value="unflag" { "Unflag" } }
                    @else { button name="op" value="flag" { "Flag" } }
                    button name="op" value="delete" { "Delete" }
                    @if mailbox == "Junk" { button name="op" value="notjunk" { "Not junk" } }
                    @else { button name="op" value="junk" { "Junk" } }
                    (move_select(&folders, &mailbox))
                }
                @if r.blocked_images > 0 {
                    p.notice {
                        (r.blocked_images) " remote image(s) not loaded. "
                        a href={ (base) "?images=1" } { "Load remote images" }
                    }
                }
                @if !r.attachments.is_empty() {
                    ul.attachments {
                        @for a in &r.attachments {
                            li { a href={ (base) "/part/" (a.id) } download { (a.name) } " (" (a.content_type) ", " (templates::size(a.size as u64)) ")" }
                        }
                    }
                }
                div.body {
                    @match &r.html {
                        Some(h) => { (PreEscaped(h)) }
                        None => { pre { (r.text) } }
                    }
                }
            }
        }
    };
    let mut resp = templates::page(&r.subject, Some(&user), body).into_response();
    // No script runs on a message page, whatever the sanitiser missed; remote
    // images only after the click.
    let img = if allow {
        "img-src 'self' http: https:"
    } else {
        "img-src 'self'"
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; {img}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
}

#[derive(Deserialize, Default)]
pub struct PartQuery {
    #[serde(default)]
    inline: Option<u8>,
}

/// Image types shown inline (never SVG: it may hold script).
fn inline_image(ct: &str) -> bool {
    matches!(ct, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// `GET /mail/{mailbox}/{uid}/part/{part}`: an attachment, as a download.
pub async fn part(
    State(app): State<AppState>,
    user: User,
    Path((mailbox, uid, part)): Path<(String, u32, u32)>,
    Query(q): Query<PartQuery>,
) -> Result<Response, WebError> {
    let u = user.name.clone();
    let found = app
        .store(move |b| Ok(read_one(b, &u, &mailbox, uid)?.and_then(|m| sanitize::part(&m, part))))
        .await?;
    let Some((bytes, name, ct)) = found else {
        return Err(WebError::NotFound);
    };
    let inline = q.inline == Some(1) && inline_image(&ct);
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            })
            .collect::<String>(),
        seg(&name)
    );
    let ctype = if inline {
        ct
    } else {
        "application/octet-stream".to_string()
    };
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /mail/{mailbox}/{uid}/raw`: the stored message as text.
pub async fn raw(
    State(app): State<AppState>,
    user: User,
    ConnectInfo(_conn): ConnectInfo<Conn>,
    Path((mailbox, uid)): Path<(String, u32)>,
) -> Result<Response, WebError> {
    let u = user.name.clone();
    let bytes = app
        .store(move |b| read_one(b, &u, &mailbox, uid))
        .await?
        .ok_or(WebError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_box_becomes_text_keys() {
        assert_eq!(search_key("  "), None);
        assert_eq!(
            search_key("anna  foto"),
            Some(SearchKey::And(vec![
                SearchKey::Text("anna".into()),
                SearchKey::Text("foto".into())
            ]))
        );
        let many = "w ".repeat(50);
        match search_key(&many) {
            Some(SearchKey::And(v)) => assert_eq!(v.len(), MAX_WORDS),
            other => panic!("{other:?}"),
        }
    }
}
