//! imapd: the LAN IMAP server the family's mail clients talk to.
//!
//! [`proto`] is the pure wire layer (no tokio).

pub mod proto;
