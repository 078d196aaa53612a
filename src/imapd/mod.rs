//! imapd: the LAN IMAP server the family's mail clients talk to.
//!
//! * [`proto`]: the pure wire layer (framing, grammar, responses, MIME structure); no tokio.
//! * [`backend`]: the small trait the sessions need from the mail store;
//!   [`store`] implements it over `crate::spool`.
//! * [`view`]: the selected mailbox as one session sees it, and the diffing that
//!   turns other sessions' changes into untagged responses.
//! * [`session`]: one connection's state machine; `op/<command>.rs`: one handler each.
//! * [`compress`]: COMPRESS=DEFLATE state (bounded inflate), sans-I/O.
//! * [`server`]: the `imap` (STARTTLS) and `imaps` listeners.
//!
//! imapd reads and writes mail only through the store; it never touches deliver,
//! fetch, queue or the spool's files directly.

pub mod backend;
pub mod compress;
mod op;
pub mod proto;
pub mod server;
pub mod session;
pub mod store;
pub mod urlauth;
pub mod view;

pub use op::check_password;
pub use op::search::search_view;
