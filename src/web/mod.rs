//! The web server (`[listen] web`, and `webs` over HTTPS with the LAN certificate):
//! webmail for the family and `/admin` for the users named in `admins`, one axum
//! router.
//!
//! * [`server`]: the listeners (plain and TLS) and graceful shutdown.
//! * [`session`]: SQLite sessions (cookie, idle expiry) and CSRF values.
//! * [`mail`]: the folder and message pages, attachment downloads.
//! * [`sanitize`]: HTML mail through ammonia; the bounded MIME walk.
//! * [`actions`]: move, Junk / Not junk, delete, flag, mark unread (POST + csrf).
//! * [`compose`]: the compose form and `POST /send` into the queue.
//! * [`settings`]: vacation and simple filters, written as the user's Sieve script.
//! * [`admin`] and [`charts`]: the admin pages and their server-side SVG charts.
//! * [`templates`]: the page frame and shared bits of HTML (maud; no external assets,
//!   no JavaScript).
//!
//! Everything the server needs comes in [`Services`], built by the daemon: the web
//! module does not know the daemon.
//!
//! # Security
//! Browsers on the LAN talk to it. Nothing but `/`, `/login` and `/health` answers
//! without a session; every state-changing request is a POST carrying the session's
//! csrf value (403 otherwise); cookies are `HttpOnly; SameSite=Strict` (and `Secure`
//! over HTTPS). Login failures are delayed per client address as IMAP's are. Request
//! bodies are bounded (`limits.message_size` for `/send`, 64 KiB elsewhere). Mail HTML is
//! sanitised and served under a Content-Security-Policy without scripts; remote images
//! load only after a click for that message.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::imapd::backend::Backend;

pub mod actions;
pub mod admin;
pub mod charts;
pub mod compose;
pub mod mail;
pub mod sanitize;
pub mod server;
pub mod session;
pub mod settings;
pub mod templates;

/// What the web server uses, handed over by the daemon.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    /// The mail store as imapd sees it (with bogofilter training of Junk moves, when
    /// on): the webmail reads, moves and flags through the same seam.
    pub backend: Arc<dyn Backend>,
    /// The outgoing queue: `/send` enqueues here as SMTP submission does.
    pub queue: crate::queue::Queue,
    /// The content check SMTP runs before answering DATA, if any.
    pub check: Option<Arc<dyn crate::submit::DataCheck>>,
    /// The LAN certificate, for `webs`.
    pub tls: Result<async_native_tls::TlsAcceptor, String>,
    pub shutdown: CancellationToken,
}

/// Shared state of every request.
pub struct App {
    pub svc: Services,
    /// Failed logins, per client address: the daemon's one counter, shared with IMAP,
    /// POP3 and SMTP AUTH.
    pub delays: Arc<crate::auth::FailureDelays>,
    /// Database connections for the web's own tables (sessions, settings, counters).
    pool: Mutex<Vec<crate::db::Connection>>,
    /// The key that binds a login form's csrf value to its cookie.
    login_key: [u8; 32],
}

pub type AppState = Arc<App>;

/// Whether the request came over HTTPS (cookies get `Secure`), and from where.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub tls: bool,
    pub peer: SocketAddr,
}

/// Why a page could not be served, as the browser sees it.
#[derive(Debug)]
pub enum WebError {
    NotFound,
    Forbidden,
    BadRequest(String),
    TooLarge,
    Internal(String),
}

impl From<crate::imapd::backend::StoreError> for WebError {
    fn from(e: crate::imapd::backend::StoreError) -> Self {
        use crate::imapd::backend::StoreError;
        match e {
            StoreError::NoMailbox => WebError::NotFound,
            StoreError::Refused(t) => WebError::BadRequest(t),
            StoreError::Exists => WebError::BadRequest("mailbox already exists".into()),
            StoreError::Internal(t) => WebError::Internal(t),
        }
    }
}

impl From<crate::db::DbError> for WebError {
    fn from(e: crate::db::DbError) -> Self {
        WebError::Internal(e.to_string())
    }
}

impl axum::response::IntoResponse for WebError {
    fn into_response(self) -> axum::response::Response {
        use axum::http::StatusCode;
        let (code, text) = match self {
            WebError::NotFound => (StatusCode::NOT_FOUND, "Not found".to_string()),
            WebError::Forbidden => (StatusCode::FORBIDDEN, "Forbidden".to_string()),
            WebError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            WebError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request is too large".to_string(),
            ),
            WebError::Internal(t) => {
                tracing::warn!(error = %t, "web: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error; the server log has the details".to_string(),
                )
            }
        };
        (code, templates::error_page(code.as_u16(), &text)).into_response()
    }
}

impl App {
    pub fn new(svc: Services) -> Result<App, crate::db::DbError> {
        let conn = crate::db::open(&svc.config.db_path())?;
        let hexkey = crate::db::web::secret(&conn, "login_key", || {
            let mut k = [0u8; 32];
            rand::fill(&mut k);
            hex::encode(k)
        })?;
        let mut login_key = [0u8; 32];
        if let Ok(v) = hex::decode(&hexkey)
            && v.len() == 32
        {
            login_key.copy_from_slice(&v);
        }
        Ok(App {
            delays: crate::auth::FailureDelays::shared(&svc.config),
            svc,
            pool: Mutex::new(vec![conn]),
            login_key,
        })
    }

    pub fn cfg(&self) -> &Config {
        &self.svc.config
    }

    /// Runs `f` with a database connection on the blocking pool.
    pub async fn db<T, F>(self: &Arc<Self>, f: F) -> Result<T, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::db::Connection) -> crate::db::Result<T> + Send + 'static,
    {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = app.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => crate::db::open(&app.svc.config.db_path())?,
            };
            let out = f(&conn);
            let mut p = app.pool.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() < 8 && conn.is_autocommit() {
                p.push(conn);
            }
            out
        })
        .await
        .map_err(|e| WebError::Internal(format!("web task failed: {e}")))?
        .map_err(WebError::from)
    }

    /// Runs `f` on the mail store on the blocking pool.
    pub async fn store<T, F>(self: &Arc<Self>, f: F) -> Result<T, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, crate::imapd::backend::StoreError> + Send + 'static,
    {
        let b = self.svc.backend.clone();
        tokio::task::spawn_blocking(move || f(b.as_ref()))
            .await
            .map_err(|e| WebError::Internal(format!("store task failed: {e}")))?
            .map_err(WebError::from)
    }
}

/// Largest request body outside `/send`.
pub const FORM_LIMIT: usize = 64 * 1024;

/// The router: every route of the webmail and the admin pages.
pub fn router(app: AppState) -> Router {
    let send_limit = (app.cfg().limits.message_size as usize).saturating_add(256 * 1024);
    Router::new()
        .route("/", get(session::index))
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/health", get(admin::health))
        .route("/status.json", get(admin::status_json))
        .route("/mail/{mailbox}", get(mail::folder))
        .route("/mail/{mailbox}/{uid}", get(mail::message))
        .route("/mail/{mailbox}/{uid}/part/{part}", get(mail::part))
        .route("/mail/{mailbox}/{uid}/raw", get(mail::raw))
        .route("/action", post(actions::action))
        .route("/compose", get(compose::form))
        .route(
            "/send",
            post(compose::send).layer(DefaultBodyLimit::max(send_limit)),
        )
        .route("/settings", get(settings::page).post(settings::save))
        .route("/admin", get(admin::page))
        .route("/admin/queue", post(admin::queue_action))
        .route("/admin/quarantine", post(admin::quarantine_action))
        .route("/admin/quarantine/{id}", get(admin::quarantine_show))
        .route("/admin/chart/{name}", get(admin::chart))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(app)
}

/// Percent-encodes a path segment (a mailbox name in a link).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    crate::db::now()
}
