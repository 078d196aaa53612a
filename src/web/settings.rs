//! `GET /settings` and `POST /settings`: vacation on/off with its text and dates, and
//! simple filters (sender or subject contains … → folder), written as the user's
//! Sieve script `webmail` and made active — the same script store ManageSieve edits
//! (`managesieve::scripts`), so delivery runs it at once.
//!
//! The form as saved is kept in the database (`web_settings`) so the page shows it
//! again; the script is derived from it, never parsed back.
//!
//! # Format
//! `application/x-www-form-urlencoded`: `csrf`, `vacation` (`on`), `vacation_subject`,
//! `vacation_text`, `vacation_from`, `vacation_until` (`YYYY-MM-DD`, optional), and per
//! filter row N `filter_field_N` (`from` | `subject`), `filter_contains_N`,
//! `filter_folder_N` (rows with an empty `contains` are dropped).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::{Deserialize, Serialize};

use super::session::User;
use super::templates::{self, csrf};
use super::{AppState, WebError};
use crate::managesieve::scripts::{ScriptError, Scripts};

/// The script the settings page writes.
pub const SCRIPT_NAME: &str = "webmail";
/// Filter rows kept at most.
const MAX_FILTERS: usize = 50;
/// Longest text of one field.
const MAX_FIELD: usize = 8 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vacation {
    pub enabled: bool,
    pub subject: String,
    pub text: String,
    /// `YYYY-MM-DD` or empty.
    pub from: String,
    pub until: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// `from` or `subject`.
    pub field: String,
    pub contains: String,
    pub folder: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub vacation: Vacation,
    pub filters: Vec<Filter>,
}

/// A Sieve quoted string.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn valid_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

impl Settings {
    /// Reads the posted form; `Err` names the field that is wrong.
    pub fn parse(body: &[u8]) -> Result<(String, Settings), String> {
        let mut s = Settings::default();
        let mut csrf = String::new();
        let mut rows: std::collections::BTreeMap<usize, Filter> = Default::default();
        for (k, v) in form_urlencoded::parse(body) {
            let v: String = v.chars().take(MAX_FIELD).collect();
            match &*k {
                "csrf" => csrf = v,
                "vacation" => s.vacation.enabled = v == "on",
                "vacation_subject" => s.vacation.subject = v.replace(['\r', '\n'], " "),
                "vacation_text" => s.vacation.text = v.replace("\r\n", "\n"),
                "vacation_from" => s.vacation.from = v.trim().to_string(),
                "vacation_until" => s.vacation.until = v.trim().to_string(),
                k => {
                    let Some((what, n)) =
                        k.strip_prefix("filter_").and_then(|r| r.rsplit_once('_'))
                    else {
                        continue;
                    };
                    let Ok(n) = n.parse::<usize>() else { continue };
                    if n >= MAX_FILTERS {
                        continue;
                    }
                    let f = rows.entry(n).or_default();
                    match what {
                        "field" => f.field = v,
                        "contains" => f.contains = v.replace(['\r', '\n'], " "),
                        "folder" => f.folder = v.trim().to_string(),
                        _ => {}
                    }
                }
            }
        }
        for d in [&s.vacation.from, &s.vacation.until] {
            if !d.is_empty() && !valid_date(d) {
                return Err(format!("`{d}` is not a date (YYYY-MM-DD)"));
            }
        }
        if s.vacation.enabled && s.vacation.text.trim().is_empty() {
            return Err("The vacation message needs a text.".into());
        }
        for f in rows.into_values() {
            if f.contains.trim().is_empty() {
                continue;
            }
            if f.field != "from" && f.field != "subject" {
                return Err(format!("unknown filter field `{}`", f.field));
            }
            if f.folder.is_empty() || crate::spool::normalize_name(&f.folder).is_err() {
                return Err(format!("`{}` is not a folder name", f.folder));
            }
            s.filters.push(f);
        }
        Ok((csrf, s))
    }

    /// The Sieve script for these settings; `addresses` are the user's own (the
    /// vacation reply answers mail sent to them).
    pub fn to_sieve(&self, addresses: &[String]) -> String {
        let mut out = String::from(
            "# Written by the zolder webmail's settings page; edit it there\n\
             # (changes made here are replaced when the page is saved).\n\
             require [\"fileinto\", \"vacation\", \"date\", \"relational\"];\n\n",
        );
        let v = &self.vacation;
        if v.enabled {
            let mut conds = Vec::new();
            if !v.from.is_empty() {
                conds.push(format!("currentdate :value \"ge\" \"date\" {}", q(&v.from)));
            }
            if !v.until.is_empty() {
                conds.push(format!(
                    "currentdate :value \"le\" \"date\" {}",
                    q(&v.until)
                ));
            }
            let mut action = String::from("vacation :days 7");
            if !v.subject.trim().is_empty() {
                action.push_str(&format!(" :subject {}", q(v.subject.trim())));
            }
            if !addresses.is_empty() {
                let list: Vec<String> = addresses.iter().map(|a| q(a)).collect();
                action.push_str(&format!(" :addresses [{}]", list.join(", ")));
            }
            action.push_str(&format!(" {};", q(&v.text)));
            if conds.is_empty() {
                out.push_str(&action);
                out.push('\n');
            } else {
                out.push_str(&format!(
                    "if allof ({}) {{\n    {action}\n}}\n",
                    conds.join(", ")
                ));
            }
        }
        for f in &self.filters {
            out.push_str(&format!(
                "if header :contains {} {} {{\n    fileinto {};\n    stop;\n}}\n",
                q(&f.field),
                q(&f.contains),
                q(&f.folder)
            ));
        }
        out
    }
}

fn scripts(app: &AppState) -> Scripts {
    Scripts::from_config(app.cfg())
}

async fn load(app: &AppState, user: &str) -> Result<Settings, WebError> {
    let u = user.to_string();
    let json = app.db(move |c| crate::db::web::settings(c, &u)).await?;
    Ok(json
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default())
}

fn render(
    user: &User,
    s: &Settings,
    active: Option<&str>,
    notice: Option<&str>,
    error: Option<&str>,
) -> maud::Markup {
    let rows = s.filters.len() + 3;
    let blank = Filter {
        field: "from".into(),
        ..Filter::default()
    };
    templates::page(
        "Settings",
        Some(user),
        html! {
            main {
                section.content.compose {
                    h1 { "Settings" }
                    @if let Some(n) = notice { p.notice role="status" { (n) } }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    @if let Some(a) = active.filter(|a| *a != SCRIPT_NAME) {
                        p.notice { "Your active filter script is “" (a) "” (from a Sieve client). Saving here makes the webmail's script active instead." }
                    }
                    form method="post" action="/settings" {
                        (csrf(user))
                        h2 { "Vacation" }
                        label { input type="checkbox" name="vacation" value="on" checked[s.vacation.enabled]; " Send an automatic reply" }
                        label { "From (optional) " input type="date" name="vacation_from" value=(s.vacation.from); }
                        label { "Until (optional) " input type="date" name="vacation_until" value=(s.vacation.until); }
                        label { "Subject " input type="text" name="vacation_subject" value=(s.vacation.subject); }
                        label { "Message " textarea name="vacation_text" rows="6" { (s.vacation.text) } }
                        h2 { "Filters" }
                        p { "Mail whose sender or subject contains the text goes to the folder." }
                        table {
                            thead { tr { th { "When" } th { "contains" } th { "move to folder" } } }
                            tbody {
                                @for i in 0..rows {
                                    @let f = s.filters.get(i).unwrap_or(&blank);
                                    tr {
                                        td {
                                            select name={ "filter_field_" (i) } aria-label="field" {
                                                option value="from" selected[f.field == "from"] { "Sender" }
                                                option value="subject" selected[f.field == "subject"] { "Subject" }
                                            }
                                        }
                                        td { input type="text" name={ "filter_contains_" (i) } value=(f.contains) aria-label="contains"; }
                                        td { input type="text" name={ "filter_folder_" (i) } value=(f.folder) aria-label="folder"; }
                                    }
                                }
                            }
                        }
                        button type="submit" { "Save" }
                    }
                }
            }
        },
    )
}

/// `GET /settings`
pub async fn page(State(app): State<AppState>, user: User) -> Result<Response, WebError> {
    let s = load(&app, &user.name).await?;
    let (st, u) = (scripts(&app), user.name.clone());
    let active = tokio::task::spawn_blocking(move || st.active(&u))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(render(&user, &s, active.as_deref(), None, None).into_response())
}

/// `POST /settings`: saves the form and writes (and activates) the script.
pub async fn save(
    State(app): State<AppState>,
    user: User,
    body: Bytes,
) -> Result<Response, WebError> {
    let (token, parsed) = match Settings::parse(&body) {
        Ok(v) => v,
        Err(e) => {
            let token = form_urlencoded::parse(&body)
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            user.check_csrf(&token)?;
            let s = load(&app, &user.name).await?;
            return Ok((
                StatusCode::BAD_REQUEST,
                render(&user, &s, None, None, Some(&e)),
            )
                .into_response());
        }
    };
    user.check_csrf(&token)?;
    let addresses = app
        .cfg()
        .user(&user.name)
        .map(|u| u.addresses.clone())
        .unwrap_or_default();
    let script = parsed.to_sieve(&addresses);
    let (st, u, text) = (scripts(&app), user.name.clone(), script.clone());
    let stored = tokio::task::spawn_blocking(move || {
        st.put(&u, SCRIPT_NAME, text.as_bytes())?;
        st.set_active(&u, Some(SCRIPT_NAME))
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?;
    if let Err(e) = stored {
        return match e {
            ScriptError::Invalid(t) | ScriptError::Quota(t) => Ok((
                StatusCode::BAD_REQUEST,
                render(&user, &parsed, None, None, Some(&t)),
            )
                .into_response()),
            other => Err(WebError::Internal(format!(
                "sieve script of {}: {other}",
                user.name
            ))),
        };
    }
    let json = serde_json::to_string(&parsed).map_err(|e| WebError::Internal(e.to_string()))?;
    let (u, now) = (user.name.clone(), super::now());
    app.db(move |c| crate::db::web::put_settings(c, &u, &json, now))
        .await?;
    Ok(render(&user, &parsed, Some(SCRIPT_NAME), Some("Saved."), None).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_to_sieve_compiles_and_escapes() {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("csrf", "t"),
                ("vacation", "on"),
                ("vacation_subject", "Op \"vakantie\""),
                ("vacation_text", "Tot 1 augustus weg.\r\nGroet \\ Bouke"),
                ("vacation_from", "2026-07-01"),
                ("vacation_until", "2026-07-31"),
                ("filter_field_0", "from"),
                ("filter_contains_0", "nieuwsbrief@"),
                ("filter_folder_0", "Nieuws"),
                ("filter_field_1", "subject"),
                ("filter_contains_1", ""),
                ("filter_folder_1", ""),
                ("filter_field_2", "subject"),
                ("filter_contains_2", "[club]"),
                ("filter_folder_2", "Club.Leden"),
            ])
            .finish();
        let (csrf, s) = Settings::parse(body.as_bytes()).unwrap();
        assert_eq!(csrf, "t");
        assert_eq!(s.filters.len(), 2);
        let script = s.to_sieve(&["bouke@zolder.test".into()]);
        assert!(script.contains(r#":subject "Op \"vakantie\"""#), "{script}");
        assert!(script.contains(r#"Groet \\ Bouke"#), "{script}");
        assert!(script.contains(r#"currentdate :value "ge" "date" "2026-07-01""#));
        assert!(script.contains(r#"if header :contains "subject" "[club]" {"#));
        assert!(script.contains(r#"fileinto "Club.Leden";"#));
        crate::managesieve::scripts::check(script.as_bytes()).unwrap();

        let bad = b"vacation_from=1-7-2026";
        assert!(Settings::parse(bad).unwrap_err().contains("not a date"));
        let bad = b"filter_field_0=body&filter_contains_0=x&filter_folder_0=A";
        assert!(Settings::parse(bad).is_err());
        let bad = b"vacation=on&vacation_text=";
        assert!(Settings::parse(bad).is_err());
        // Off and empty: a script that does nothing, and still compiles.
        let none = Settings::default().to_sieve(&[]);
        crate::managesieve::scripts::check(none.as_bytes()).unwrap();
    }
}
