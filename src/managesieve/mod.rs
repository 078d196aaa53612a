//! ManageSieve (RFC 5804, `[listen] managesieve`): users list, upload, check,
//! activate and delete their Sieve scripts from Thunderbird's Sieve add-on,
//! Roundcube's managesieve plugin or `sieve-connect`.
//!
//! * [`scripts`]: the per-user script store (shared with the webmail's settings page)
//!   and the sieve-rs check.
//! * [`proto`]: the pure command parser and response formatting.
//! * [`session`]: one connection (state, STARTTLS, AUTHENTICATE PLAIN, commands).
//! * [`server`]: the listeners.

pub mod proto;
pub mod scripts;
pub mod server;
pub mod session;
