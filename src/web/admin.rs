//! `/admin` for the users named in `admins`: the ISP accounts' last polls, the queue
//! per recipient (retry now, delete), the quarantine (show, release, delete), the
//! scanners, users and mailbox sizes, recent events, and SVG charts of the per-hour
//! counters (`stats_hourly`: fetched, delivered, sent, queue length). Also `/health`
//! and `/status.json`, the same report as `zolder status`.
//!
//! # Security
//! Every page and action checks that the session's user is an admin (403 otherwise);
//! actions are POSTs with the session's csrf value. A quarantined message is shown as
//! escaped text, never rendered.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::charts::{self, Series};
use super::session::User;
use super::templates::{self, csrf};
use super::{AppState, WebError};
use crate::db;

fn admin(user: &User) -> Result<(), WebError> {
    if user.admin {
        Ok(())
    } else {
        Err(WebError::Forbidden)
    }
}

/// `GET /health`
pub async fn health() -> &'static str {
    "ok\n"
}

/// `GET /status.json` (admins only: it names accounts and senders).
pub async fn status_json(State(app): State<AppState>, user: User) -> Result<Response, WebError> {
    admin(&user)?;
    let cfg = app.svc.config.clone();
    let report = app.db(move |c| crate::status::gather(&cfg, c)).await?;
    Ok(axum::Json(report).into_response())
}

/// The charts of the admin page, by name.
async fn chart_svg(app: &AppState, name: &str) -> Result<Markup, WebError> {
    let now = super::now();
    let days = 30usize;
    let labels: Vec<String> = (0..days)
        .map(|i| {
            let t = now - (days - 1 - i) as i64 * 86_400;
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        })
        .collect();
    let from = now.div_euclid(3600) - 24 * days as i64;
    match name {
        "traffic" => {
            let (f, d, s) = app
                .db(move |c| {
                    Ok((
                        db::web::series(c, "fetched", from)?,
                        db::web::series(c, "delivered", from)?,
                        db::web::series(c, "sent", from)?,
                    ))
                })
                .await?;
            Ok(charts::lines(
                "Messages per day, last 30 days",
                &labels,
                &[
                    Series {
                        name: "fetched",
                        color: "#2d6a4f",
                        values: charts::daily(&f, now, days, false),
                    },
                    Series {
                        name: "delivered",
                        color: "#4a78a8",
                        values: charts::daily(&d, now, days, false),
                    },
                    Series {
                        name: "sent",
                        color: "#c05621",
                        values: charts::daily(&s, now, days, false),
                    },
                ],
            ))
        }
        "queue" => {
            let q = app.db(move |c| db::web::series(c, "queue", from)).await?;
            Ok(charts::lines(
                "Queue length (recipients waiting), daily maximum",
                &labels,
                &[Series {
                    name: "waiting",
                    color: "#9b2c2c",
                    values: charts::daily(&q, now, days, true),
                }],
            ))
        }
        "mailboxes" => {
            let users: Vec<String> = app.cfg().users.iter().map(|u| u.name.clone()).collect();
            let rows = app
                .db(move |c| {
                    let mut out = Vec::new();
                    for u in users {
                        let usage = db::quota::usage(c, &u)?;
                        out.push((u, usage.bytes as i64));
                    }
                    Ok(out)
                })
                .await?;
            Ok(charts::bars("Mailbox sizes", &rows, &|v| {
                templates::size(v as u64)
            }))
        }
        _ => Err(WebError::NotFound),
    }
}

/// `GET /admin/chart/{name}`: one chart as an SVG image.
pub async fn chart(
    State(app): State<AppState>,
    user: User,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    admin(&user)?;
    let svg = chart_svg(&app, &name).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg.into_string(),
    )
        .into_response())
}

/// Whether each configured scanner answers.
async fn scanners(app: &AppState) -> Vec<(String, String)> {
    let s = &app.cfg().scan;
    let mut out = Vec::new();
    if let Some(spec) = &s.clamd {
        let state = match crate::deliver::scan::clamd::Clamd::parse(spec, s.clamd_max_size) {
            Some(c) => {
                match tokio::time::timeout(std::time::Duration::from_secs(3), c.ping()).await {
                    Ok(Ok(true)) => "up".to_string(),
                    Ok(Ok(false)) => "down: no PONG".to_string(),
                    Ok(Err(e)) => format!("down: {e}"),
                    Err(_) => "down: no answer in 3 s".to_string(),
                }
            }
            None => "bad address".to_string(),
        };
        out.push((format!("clamd {spec}"), state));
    }
    for (name, v) in [("spamd", &s.spamd), ("rspamd", &s.rspamd)] {
        if let Some(addr) = v {
            let state = match tokio::time::timeout(
                std::time::Duration::from_secs(3),
                tokio::net::TcpStream::connect(
                    addr.trim_start_matches("http://").trim_end_matches('/'),
                ),
            )
            .await
            {
                Ok(Ok(_)) => "up (accepts connections)".to_string(),
                Ok(Err(e)) => format!("down: {e}"),
                Err(_) => "down: no answer in 3 s".to_string(),
            };
            out.push((format!("{name} {addr}"), state));
        }
    }
    if s.bogofilter {
        let p = &s.bogofilter_path;
        let found = p.starts_with('/') && std::path::Path::new(p).exists()
            || std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).any(|d| d.join(p).exists()))
                .unwrap_or(false);
        out.push((
            format!("bogofilter {p}"),
            if found {
                "installed".into()
            } else {
                "missing".into()
            },
        ));
    }
    if let Some(cmd) = &s.command {
        out.push((format!("command {}", cmd.join(" ")), "configured".into()));
    }
    out
}

/// `GET /admin`
pub async fn page(State(app): State<AppState>, user: User) -> Result<Response, WebError> {
    admin(&user)?;
    let cfg = app.svc.config.clone();
    let users: Vec<String> = cfg.users.iter().map(|u| u.name.clone()).collect();
    let (report, usage) = app
        .db(move |c| {
            let r = crate::status::gather(&cfg, c)?;
            let mut u = Vec::new();
            for name in users {
                u.push((name.clone(), db::quota::usage(c, &name)?));
            }
            Ok((r, u))
        })
        .await?;
    let (traffic, queue, boxes) = (
        chart_svg(&app, "traffic").await?,
        chart_svg(&app, "queue").await?,
        chart_svg(&app, "mailboxes").await?,
    );
    let scan = scanners(&app).await;
    let now = super::now();
    let w = |t: Option<i64>| crate::status::when(t, now);
    let body = html! {
        main {
            section.content {
                h1 { "zolder on " (report.hostname) " " small { "version " (report.version) } }
                div.charts { (traffic) (queue) (boxes) }
                h2 { "ISP accounts" }
                table {
                    thead { tr { th { "Account" } th { "Kind" } th { "Last poll" } th { "Result" } th { "Fetched" } th { "Next" } th { "Last error" } } }
                    tbody {
                        @for a in &report.accounts {
                            tr {
                                td { (a.name) }
                                td { (a.kind.clone().unwrap_or_else(|| "not configured".into())) }
                                td { (w(a.last_poll)) }
                                td { (a.result.clone().unwrap_or_default()) }
                                td { (a.fetched) }
                                td { (w(a.next_poll)) }
                                td.error { (a.last_error.clone().unwrap_or_default()) }
                            }
                        }
                    }
                }
                h2 { "Queue: " (report.queue.messages) " message(s), " (report.queue.recipients) " recipient(s) waiting" }
                table {
                    thead { tr { th { "Queue id" } th { "Sender" } th { "Recipient" } th { "Attempts" } th { "Next attempt" } th { "Why it waits" } th {} } }
                    tbody {
                        @for d in &report.queue.deferred {
                            tr {
                                td { (d.id) }
                                td { (d.sender.clone().unwrap_or_else(|| "<>".into())) }
                                td { (d.recipient) }
                                td { (d.attempts) }
                                td { (w(Some(d.next_attempt))) }
                                td { (d.last_error.clone().unwrap_or_else(|| "not tried yet".into())) }
                                td { (queue_buttons(&user, &d.id)) }
                            }
                        }
                    }
                }
                h2 { "Quarantine: " (report.quarantine.held) " held" }
                table {
                    thead { tr { th { "Id" } th { "Held" } th { "Sender" } th { "Recipients" } th { "Verdict" } th {} } }
                    tbody {
                        @for q in &report.quarantine.newest {
                            tr {
                                td { a href={ "/admin/quarantine/" (q.id) } { (q.id) } }
                                td { (w(Some(q.created))) }
                                td { (q.sender.clone().unwrap_or_else(|| "<>".into())) }
                                td { (q.recipients.join(", ")) }
                                td { (q.verdict) ": " (q.reason) }
                                td { (quarantine_buttons(&user, q.id)) }
                            }
                        }
                    }
                }
                h2 { "Scanners" }
                @if scan.is_empty() { p { "No scanners configured." } }
                ul { @for (n, s) in &scan { li { (n) ": " strong { (s) } } } }
                h2 { "Users" }
                table {
                    thead { tr { th { "User" } th { "Messages" } th { "Size" } } }
                    tbody { @for (u, us) in &usage { tr { td { (u) } td { (us.messages) } td { (templates::size(us.bytes)) } } } }
                }
                h2 { "Mailboxes" }
                table {
                    thead { tr { th { "User" } th { "Mailbox" } th { "Messages" } th { "Unseen" } } }
                    tbody { @for m in &report.mailboxes { tr { td { (m.user) } td { (m.mailbox) } td { (m.messages) } td { (m.unseen) } } } }
                }
                h2 { "Recent events" }
                table {
                    tbody { @for e in &report.events { tr { td { (w(Some(e.time))) } td { (e.kind) } td { (e.subject) } td { (e.text) } } } }
                }
                p { a href="/status.json" { "status.json" } }
            }
        }
    };
    Ok(templates::page("Admin", Some(&user), body).into_response())
}

fn queue_buttons(user: &User, id: &str) -> Markup {
    html! {
        form.inline method="post" action="/admin/queue" {
            (csrf(user))
            input type="hidden" name="id" value=(id);
            button name="op" value="retry" { "Retry now" }
            " "
            button name="op" value="delete" { "Delete" }
        }
    }
}

fn quarantine_buttons(user: &User, id: i64) -> Markup {
    html! {
        form.inline method="post" action="/admin/quarantine" {
            (csrf(user))
            input type="hidden" name="id" value=(id);
            button name="op" value="release" { "Release" }
            " "
            button name="op" value="delete" { "Delete" }
        }
    }
}

/// The `csrf`, `op` and `id` of an admin form, after the checks.
fn admin_form(user: &User, body: &[u8]) -> Result<(String, String), WebError> {
    admin(user)?;
    let (mut token, mut op, mut id) = (String::new(), String::new(), String::new());
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "csrf" => token = v.into_owned(),
            "op" => op = v.into_owned(),
            "id" => id = v.into_owned(),
            _ => {}
        }
    }
    user.check_csrf(&token)?;
    Ok((op, id))
}

fn back() -> Response {
    (StatusCode::SEE_OTHER, [("location", "/admin")]).into_response()
}

/// `POST /admin/queue`: `op` = `retry` | `delete`, `id` = a queue id.
pub async fn queue_action(
    State(app): State<AppState>,
    user: User,
    body: Bytes,
) -> Result<Response, WebError> {
    let (op, id) = admin_form(&user, &body)?;
    if !crate::queue::valid_id(&id) {
        return Err(WebError::BadRequest("bad queue id".into()));
    }
    match op.as_str() {
        "retry" => {
            let i = id.clone();
            app.db(move |c| db::queue::retry_now(c, Some(&i), db::now()))
                .await?;
            app.svc.queue.wake();
        }
        "delete" => {
            let i = id.clone();
            let n = app
                .db(move |c| {
                    // delete_messages needs a &mut connection: a fresh one.
                    let mut c2 = db::open(
                        c.path()
                            .map(std::path::Path::new)
                            .unwrap_or(std::path::Path::new("")),
                    )?;
                    db::queue::delete_messages(&mut c2, std::slice::from_ref(&i))
                })
                .await?;
            if n > 0 {
                let _ = app.svc.queue.store().remove(&id);
            }
            tracing::info!(admin = %user.name, queue_id = %id, "web: queue message deleted");
        }
        _ => return Err(WebError::BadRequest("unknown action".into())),
    }
    Ok(back())
}

/// `GET /admin/quarantine/{id}`: the held message's facts and header, as text.
pub async fn quarantine_show(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    admin(&user)?;
    let dir = app.cfg().data_dir.clone();
    let found = app
        .db(move |c| {
            let Some(r) = db::quarantine::get(c, id)? else {
                return Ok(None);
            };
            let q = crate::deliver::quarantine::Quarantine::new(&dir);
            let bytes = q.read(&r).map_err(|e| db::DbError::Other(e.to_string()))?;
            Ok(Some((r, bytes)))
        })
        .await?;
    let Some((r, bytes)) = found else {
        return Err(WebError::NotFound);
    };
    let shown = &bytes[..bytes.len().min(64 * 1024)];
    let body = html! {
        main {
            section.content {
                h1 { "Quarantined message " (r.id) }
                table.headers {
                    tr { th { "Verdict" } td { (r.verdict) " (" (r.reason) ")" } }
                    tr { th { "Scanner" } td { (r.scanner) } }
                    tr { th { "Sender" } td { (r.sender.clone().unwrap_or_default()) } }
                    tr { th { "Recipients" } td { (r.recipients.join(", ")) } }
                    tr { th { "Size" } td { (templates::size(r.size as u64)) } }
                }
                (quarantine_buttons(&user, r.id))
                div.body { pre { (String::from_utf8_lossy(shown)) } }
            }
        }
    };
    Ok(templates::page("Quarantine", Some(&user), body).into_response())
}

/// `POST /admin/quarantine`: `op` = `release` | `delete`, `id` = a quarantine id.
pub async fn quarantine_action(
    State(app): State<AppState>,
    user: User,
    body: Bytes,
) -> Result<Response, WebError> {
    let (op, id) = admin_form(&user, &body)?;
    let id: i64 = id
        .parse()
        .map_err(|_| WebError::BadRequest("bad id".into()))?;
    let cfg = app.svc.config.clone();
    let q = crate::deliver::quarantine::Quarantine::new(&cfg.data_dir);
    match op.as_str() {
        "delete" => {
            let q2 = q.clone();
            app.db(move |c| {
                q2.delete(c, id)
                    .map_err(|e| db::DbError::Other(e.to_string()))
            })
            .await?;
        }
        "release" => {
            let q2 = q.clone();
            let (row, incoming) = app
                .db(move |c| {
                    q2.release_incoming(c, id)
                        .map_err(|e| db::DbError::Other(e.to_string()))
                })
                .await?;
            let mut report = crate::deliver::scan::stage::redeliver(&cfg, &row.scanner, incoming)
                .await
                .map_err(|e| WebError::Internal(format!("releasing {id}: {e}")))?;
            for g in std::mem::take(&mut report.generated) {
                let m = crate::queue::NewMessage::from(g);
                if let Err(e) = app.svc.queue.enqueue(m).await {
                    tracing::warn!(error = %e, "web: cannot queue mail generated by a release");
                }
            }
            if !report.is_final() {
                return Err(WebError::BadRequest(format!(
                    "{id} stays in the quarantine: delivery failed for now; try again later"
                )));
            }
            app.db(move |c| {
                q.finish_release(c, &row)
                    .map_err(|e| db::DbError::Other(e.to_string()))
            })
            .await?;
            tracing::info!(admin = %user.name, id, "web: quarantined message released");
        }
        _ => return Err(WebError::BadRequest("unknown action".into())),
    }
    Ok(back())
}
