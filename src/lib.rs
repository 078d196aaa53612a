//! zolder: the mail server in the attic.
//!
//! One daemon that does what fetchmail + Postfix + procmail + amavis + Dovecot did
//! together on a home network. Mail moves one way through these modules:
//!
//! ```text
//! fetch ──Deliver──▶ deliver (parse → scan → route → sieve → store) ──▶ spool ◀── imapd / pop3d
//! submit / sendmail ──enqueue──▶ queue ──runner──▶ relay (smarthost) | deliver (local)
//! mail a delivery generates (vacation, redirect, notices) ──returned to the caller──▶ queue
//! ```
//!
//! * [`message`]: the shared vocabulary (envelope, raw message, outcomes, `Deliver`).
//! * [`config`]: the TOML config and the fetchmailrc importer.
//! * [`db`]: SQLite, the only module that touches rusqlite.
//! * [`spool`]: Maildir and mbox stores and their UID index.
//! * [`deliver`]: the local delivery pipeline.
//! * [`fetch`]: POP3/IMAP clients toward the ISP, and their scheduler.
//! * [`imapd`], [`pop3d`]: serving the family's mail clients.
//! * [`submit`]: SMTP from the LAN and the `sendmail` command.
//! * [`queue`], [`relay`]: store-and-forward to the ISP's smarthost.
//! * [`daemon`]: the composition root for `zolder serve`.

pub mod auth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub mod deliver;
pub mod fetch;
pub mod imapd;
pub mod managesieve;
pub mod message;
pub mod net;
pub mod pop3d;
pub mod queue;
pub mod relay;
pub mod service;
pub mod spool;
pub mod status;
pub mod submit;
pub mod web;
