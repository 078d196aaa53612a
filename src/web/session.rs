//! Sessions and CSRF: the login form, `POST /login`, `POST /logout`, and the
//! [`User`] extractor every other page uses.
//!
//! A session is a random 32-byte cookie (`zolder_session`); the database holds its
//! SHA-256 with the user, the session's csrf value and when it was last used, so it
//! survives a restart and ends after `[web] session_idle` without use. The login form
//! has no session yet: its csrf value is a keyed hash of a random `zolder_login`
//! cookie (double submit), so a page elsewhere cannot post a login here.
//!
//! # Security
//! Cookies are `HttpOnly; SameSite=Strict; Path=/` and `Secure` over HTTPS. A wrong
//! password is answered after the per-address delay IMAP and POP3 use; the log names
//! the user and address, the page says only that the login failed. A new session id
//! is made at each login (no fixation).

use std::time::Duration;

use axum::Form;
use axum::extract::ConnectInfo;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{AppState, Conn, WebError, templates};

pub const SESSION_COOKIE: &str = "zolder_session";
pub const LOGIN_COOKIE: &str = "zolder_login";

/// The signed-in user of a request, with the session's csrf value.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub csrf: String,
    pub admin: bool,
}

impl User {
    /// Checks a form's csrf value (constant time).
    pub fn check_csrf(&self, got: &str) -> Result<(), WebError> {
        if eq_ct(self.csrf.as_bytes(), got.as_bytes()) {
            Ok(())
        } else {
            Err(WebError::Forbidden)
        }
    }
}

fn eq_ct(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for h in headers.get_all(COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for kv in s.split(';') {
            if let Some((k, v)) = kv.trim().split_once('=')
                && k == name
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    hex::encode(b)
}

fn set_cookie(name: &str, value: &str, tls: bool, max_age: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if tls {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Why a request has no user: a page redirects to the login form.
pub struct NoSession;

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        Redirect::to("/").into_response()
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(NoSession.into_response());
        };
        let h = token_hash(&token);
        let now = super::now();
        let since = now - app.cfg().web.session_idle as i64;
        let row = app
            .db(move |c| crate::db::web::touch_session(c, &h, since, now))
            .await
            .map_err(IntoResponse::into_response)?;
        match row {
            Some(r) => Ok(User {
                admin: app
                    .cfg()
                    .admins
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&r.user)),
                name: r.user,
                csrf: r.csrf,
            }),
            None => Err(NoSession.into_response()),
        }
    }
}

/// The csrf value of a login form whose cookie is `nonce`.
fn login_csrf(app: &AppState, nonce: &str) -> String {
    let mut h = Sha256::new();
    h.update(app.login_key);
    h.update(b"login:");
    h.update(nonce.as_bytes());
    hex::encode(h.finalize())
}

/// The login form (with a fresh `zolder_login` cookie when the browser has none).
fn login_page(app: &AppState, conn: &Conn, headers: &HeaderMap, message: Option<&str>) -> Response {
    let (nonce, fresh) = match cookie(headers, LOGIN_COOKIE).filter(|n| n.len() == 64) {
        Some(n) => (n, false),
        None => (random_hex(), true),
    };
    let csrf = login_csrf(app, &nonce);
    let body = html! {
        div.login {
            h1 { "Mail at " (app.cfg().hostname) }
            @if let Some(m) = message { p.error role="alert" { (m) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "User " input type="text" name="user" autocomplete="username" autofocus required; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        }
    };
    let code = if message.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut resp = (code, templates::page("Log in", None, body)).into_response();
    if fresh {
        resp.headers_mut()
            .append(SET_COOKIE, set_cookie(LOGIN_COOKIE, &nonce, conn.tls, None));
    }
    resp
}

/// `GET /`: the login form, or the INBOX for a signed-in browser.
pub async fn index(
    State(app): State<AppState>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    user: Result<User, Response>,
) -> Response {
    if user.is_ok() {
        return Redirect::to("/mail/INBOX").into_response();
    }
    login_page(&app, &conn, &headers, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: checks the csrf pair and the password, then starts a session.
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, WebError> {
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if nonce.len() != 64 || !eq_ct(login_csrf(&app, &nonce).as_bytes(), f.csrf.as_bytes()) {
        return Err(WebError::Forbidden);
    }
    let who = f.user.trim().to_string();
    if who.is_empty() || who.len() > 256 || f.password.len() > 1024 {
        return Ok(login_page(
            &app,
            &conn,
            &headers,
            Some("Login failed: wrong user name or password."),
        ));
    }
    let delays = app.delays.clone();
    let Ok(guess) = delays.begin(conn.peer.ip(), &who) else {
        warn!(user = %who, peer = %conn.peer, "web: login refused, too many failures from this address");
        let mut r = login_page(
            &app,
            &conn,
            &headers,
            Some("Too many failed logins from your address; try again later."),
        );
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return Ok(r);
    };
    let name = match crate::auth::check_login(app.svc.config.clone(), &who, &f.password).await {
        Ok(n) => {
            guess.succeeded();
            n
        }
        Err(crate::auth::LoginError::Unavailable(e)) => {
            drop(guess);
            return Err(WebError::Internal(format!("login of {who}: {e}")));
        }
        Err(e) => {
            let d: Duration = guess.failed();
            warn!(user = %who, peer = %conn.peer, reason = ?e, "web: login failed");
            tokio::time::sleep(d).await;
            return Ok(login_page(
                &app,
                &conn,
                &headers,
                Some("Login failed: wrong user name or password."),
            ));
        }
    };
    let token = random_hex();
    let (h, csrf, user) = (token_hash(&token), random_hex(), name.clone());
    let now = super::now();
    app.db(move |c| crate::db::web::create_session(c, &h, &user, &csrf, now))
        .await?;
    info!(user = %name, peer = %conn.peer, "web: logged in");
    let mut resp = (StatusCode::SEE_OTHER, [("location", "/mail/INBOX")]).into_response();
    let hs = resp.headers_mut();
    hs.append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, conn.tls, None),
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(app): State<AppState>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    user: User,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check_csrf(&f.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let h = token_hash(&token);
        app.db(move |c| crate::db::web::delete_session(c, &h))
            .await?;
    }
    let mut resp = (StatusCode::SEE_OTHER, [("location", "/")]).into_response();
    resp.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", conn.tls, Some(0)),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; zolder_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "zolder"), None);
        assert!(eq_ct(b"abc", b"abc"));
        assert!(!eq_ct(b"abc", b"abd"));
        assert!(!eq_ct(b"abc", b"ab"));
        let c = set_cookie("x", "y", true, Some(0));
        assert_eq!(
            c.to_str().unwrap(),
            "x=y; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
    }
}
