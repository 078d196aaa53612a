//! The LAN POP3 server (RFC 1939 with UIDL, TOP, CAPA, STLS and SASL PLAIN), serving
//! each user's INBOX from the spool. Uses spool, auth and net; knows nothing of
//! delivery, fetching or the queue.
//!
//! * [`proto`]: the wire format, pure.
//! * [`session`]: one connection's state machine.
//! * [`server`]: the listeners.

pub mod proto;
pub mod server;
pub mod session;
pub mod store;

pub use session::{DropEntry, MaildropStore};
