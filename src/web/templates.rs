//! The page frame and the shared bits of HTML (maud escapes every value it writes).
//! One stylesheet, inline; no scripts, fonts or images from anywhere.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::User;

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#2d4a6b;color:#fff;padding:.5em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a,header button{color:#fff;background:none;border:0;font:inherit;cursor:pointer;text-decoration:underline}
header .who{margin-left:auto}
main{display:flex;gap:1em;padding:1em}
nav.folders{min-width:12em}
nav.folders ul{list-style:none;padding:0;margin:0}
nav.folders li{padding:.2em 0}
nav.folders .current{font-weight:bold}
section.content{flex:1;min-width:0}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #ddd;vertical-align:top}
tr.unseen td{font-weight:bold}
.error{color:#a00}
.notice{color:#064}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #ccc}
.login label{display:block;margin:.6em 0}
.login input{width:100%}
form.inline{display:inline}
.headers th{width:7em;color:#555;font-weight:normal}
.body{background:#fff;border:1px solid #ddd;padding:1em;overflow-wrap:anywhere}
.body pre{white-space:pre-wrap}
.actions{margin:.6em 0;display:flex;gap:.4em;flex-wrap:wrap}
.compose label{display:block;margin:.5em 0}
.compose input[type=text],.compose textarea{width:100%}
.pager{margin:.6em 0}
.charts svg{background:#fff;border:1px solid #ddd;margin:.3em}
.flag{color:#c60}
"#;

/// A whole page: the header bar (when signed in) and `body`.
pub fn page(title: &str, user: Option<&User>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — zolder" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                @if let Some(u) = user {
                    header {
                        a href="/mail/INBOX" { "Mail" }
                        a href="/compose" { "Compose" }
                        a href="/settings" { "Settings" }
                        @if u.admin { a href="/admin" { "Admin" } }
                        span.who { (u.name) }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(u.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                (body)
            }
        }
    }
}

/// The page of an error answer.
pub fn error_page(code: u16, text: &str) -> Markup {
    page(
        "Error",
        None,
        html! {
            div.login {
                h1 { "Error " (code) }
                p { (text) }
                p { a href="/" { "Back" } }
            }
        },
    )
}

/// A hidden csrf input.
pub fn csrf(u: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(u.csrf); }
}

/// A size in B, KB, MB.
pub fn size(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.0} KB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}

/// A date for lists: "2026-01-05 10:00".
pub fn date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}
